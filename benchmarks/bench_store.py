"""Store benchmarks: bulk load and columnar reads of sightings and looks, each against a baseline in the same run.

Run: ``python -m benchmarks.bench_store`` (``--sightings 100000`` for a quick run). Every step runs in its own
process so that the peak resident memory it reports is its own. Figures go to the "store" section of
BENCHMARKS.md.

* load: ``Store.add_sightings`` (compiled once, DBAPI executemany) against SQLAlchemy Core's own executemany of the
  same upsert (the obvious way to write it);
* read: ``sightings_frame`` (connectorx into Arrow) against the same frame through the DBAPI cursor, and against
  building ``Sighting`` records with ``Store.sightings`` (the record reader);
* looks: ``looks_frame`` with evidence ids.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import peak_rss_mib, write_section

T0 = datetime(2023, 8, 1, tzinfo=UTC)
SECTION = "store"


def sightings(n: int) -> list[Any]:
    """n AIS-like sightings at 20 sites over 200 days, one evidence id each (a run of messages per 1,000)."""
    from routewatch.model import Sighting, SourceKind

    step = timedelta(days=200) / max(n, 1)
    return [Sighting(f"sig-{i:012d}", T0 + i * step, SourceKind.AIS, site=f"site-{i % 20}",
                     vessel=f"vessel-{i % 40}" if i % 3 else None, lon=130.0 + (i % 100) / 1000,
                     lat=42.0 + (i % 77) / 1000, length_m=80.0 + i % 60, confidence=0.9,
                     evidence_ids=(f"ev-ais-{i // 1000}",)) for i in range(n)]


def looks(n: int) -> list[Any]:
    from routewatch.model import SENSOR_DETECTION, Look, SourceKind

    step = timedelta(days=200) / max(n, 1)
    return [Look(f"look-{i:010d}", f"site-{i % 20}", T0 + i * step, "sentinel-2", 0.5 + (i % 50) / 100,
                 SENSOR_DETECTION["sentinel-2"], SourceKind.IMAGE, scene_id=f"scene-{i // 20}",
                 evidence_ids=(f"ev-scene-{i // 20}",), vessels_seen=i % 3) for i in range(n)]


def _step(name: str, url: str, n: int, n_looks: int, queue: Any) -> None:
    """One measured step in a fresh process: puts (seconds, peak MiB, detail)."""
    from routewatch.store import Store

    store = Store.open(url)
    detail = ""
    if name == "load":
        items, lk = sightings(n), looks(n_looks)
        t = time.perf_counter()
        store.add_sightings(items)
        store.add_looks(lk)
        detail = f"{n:,} sightings + {n_looks:,} looks"
    elif name == "load_baseline":
        from sqlalchemy.dialects.sqlite import insert

        from routewatch.store import convert, schema

        rows = [convert.sighting_row(s) for s in sightings(n)]
        stmt = insert(schema.sightings)
        stmt = stmt.on_conflict_do_update(index_elements=["id"], set_={
            c.name: stmt.excluded[c.name] for c in schema.sightings.columns if c.name != "id"})
        t = time.perf_counter()
        with store.transaction() as conn:
            for i in range(0, len(rows), 10_000):
                conn.execute(stmt, rows[i:i + 10_000])
        detail = f"{n:,} sightings, no evidence links"
    elif name == "frame":
        t = time.perf_counter()
        f = store.sightings_frame(with_evidence=True)
        g = store.looks_frame(with_evidence=True)
        detail = f"{f.height:,} + {g.height:,} rows, with evidence ids"
    elif name == "frame_columns":
        t = time.perf_counter()
        f = store.sightings_frame(columns=["site", "vessel", "time_end", "length_m", "confidence"])
        detail = f"{f.height:,} rows, 7 columns"
    elif name == "frame_dbapi":
        t = time.perf_counter()
        f = store.sightings_frame(with_evidence=True, reader="dbapi")
        g = store.looks_frame(with_evidence=True, reader="dbapi")
        detail = f"{f.height:,} + {g.height:,} rows"
    elif name == "records":
        t = time.perf_counter()
        recs = store.sightings()
        detail = f"{len(recs):,} Sighting records"
    else:
        raise ValueError(name)
    seconds = time.perf_counter() - t
    store.close()
    queue.put((seconds, peak_rss_mib(), detail))


def run_step(name: str, url: str, n: int, n_looks: int) -> tuple[float, float, str]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_step, args=(name, url, n, n_looks, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result  # type: ignore[no-any-return]


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sightings", type=int, default=1_000_000)
    ap.add_argument("--looks", type=int, default=100_000)
    ap.add_argument("--no-baseline-load", action="store_true", help="skip the slow SQLAlchemy executemany load")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args()
    console = Console()
    n, n_looks = args.sightings, args.looks
    steps = [("load", "store: add_sightings + add_looks"),
             ("load_baseline", "baseline: SQLAlchemy executemany upsert"),
             ("frame", "store: sightings_frame + looks_frame (connectorx in a reader process)"),
             ("frame_columns", "store: sightings_frame, 5 of 20 columns"),
             ("frame_dbapi", "baseline: the same frames through the DBAPI cursor"),
             ("records", "baseline: Store.sightings() records")]
    if args.no_baseline_load:
        steps = [s for s in steps if s[0] != "load_baseline"]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
        base_url = f"sqlite:///{Path(tmp) / 'baseline.sqlite'}"
        with console.status("") as status:
            for name, label in steps:
                status.update(f"{label} ...")
                seconds, mib, detail = run_step(name, base_url if name == "load_baseline" else url, n, n_looks)
                results.append((label, seconds, mib, detail))
                console.log(f"{label}: {seconds:.2f} s, {mib:.0f} MiB ({detail})")
    table = Table(title=f"store benchmark, {n:,} sightings and {n_looks:,} looks, SQLite")
    for col in ("step", "time", "peak memory", "what"):
        table.add_column(col)
    lines = [f"## {SECTION}", "",
             f"`python -m benchmarks.bench_store` on {platform.machine()}, {mp.cpu_count()} CPUs (load average "
             f"{os.getloadavg()[0]:.2f} at the end), SQLite file store, {datetime.now(UTC):%Y-%m-%d}. Each step in "
             "its own process; peak memory is that process's own peak resident set (VmHWM, data generation "
             "included).", "",
             "| step | time | peak memory | what |", "|---|---|---|---|"]
    for label, seconds, mib, detail in results:
        table.add_row(label, f"{seconds:.2f} s", f"{mib:.0f} MiB", detail)
        lines.append(f"| {label} | {seconds:.2f} s | {mib:.0f} MiB | {detail} |")
    console.print(table)
    if not args.no_write:
        write_section(SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()
