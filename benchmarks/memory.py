"""Peak memory of a benchmark process."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mib() -> float:
    """This process's own peak resident memory in MiB (``VmHWM``).

    ``ru_maxrss`` is not used where ``/proc`` exists: Linux carries it over from the parent through fork and exec,
    so a benchmark step run in a spawned child would report the parent's peak when that is larger.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
