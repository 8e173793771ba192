"""Run every benchmark in turn (``make bench``); each writes its own section of BENCHMARKS.md.

Each runs in its own process so that its peak memory is its own. ``--only NAME`` runs a subset.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

BENCHMARKS: tuple[tuple[str, list[str]], ...] = (
    ("analysis", ["benchmarks.bench_analysis"]),
    ("analysis-postgres", ["benchmarks.bench_analysis", "--postgres"]),
    ("store", ["benchmarks.bench_store"]),
    ("cfar", ["benchmarks.bench_cfar"]),
    ("ais", ["benchmarks.bench_ais"]),
    ("imagery", ["benchmarks.bench_imagery_dask"]),
    ("web", ["benchmarks.bench_web"]),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", action="append", choices=[name for name, _ in BENCHMARKS], help="run only these")
    args = ap.parse_args()
    failed = []
    for name, cmd in BENCHMARKS:
        if args.only and name not in args.only:
            continue
        print(f"== {name}: python -m {' '.join(cmd)}", flush=True)
        if subprocess.run([sys.executable, "-m", *cmd], check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
