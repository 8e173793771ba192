"""What every benchmark shares: its own peak memory, and writing its section of BENCHMARKS.md."""

from __future__ import annotations

import resource
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


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


def write_section(key: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Put ``body`` between ``<!-- key start -->`` and ``<!-- key end -->`` in BENCHMARKS.md, replacing what was
    there (or appending the section), and leave the other benchmarks' sections alone."""
    start, end = f"<!-- {key} start -->", f"<!-- {key} end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.strip(chr(10))}\n{end}"
    i, j = text.find(start), text.find(end)
    if i >= 0 and j > i:
        text = text[:i] + block + text[j + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
