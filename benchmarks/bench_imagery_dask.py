"""Imagery: `detect --site` over many stored scenes, in-process (baseline) against a Dask LocalCluster.

Simulated Sentinel-1-like scenes (2,000 x 2,000 pixel port windows, ships at anchor and at berths) are added to a
temporary workspace; the same pipeline then runs serially and on ``LocalCluster(n_workers=2)``; the records must
be identical. Figures go to the ``imagery`` section of BENCHMARKS.md.

Run: ``.venv/bin/python -m benchmarks.bench_imagery_dask [--scenes 12] [--no-write]``
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from shapely.geometry import box

from benchmarks.common import peak_rss_mib, write_section
from routewatch.model import Site, SiteKind
from routewatch.simulate import simulate_site_scenes
from routewatch.sources.imagery.ingest import add_folder, open_store
from routewatch.sources.imagery.pipeline import detect_site
from routewatch.watchlist import Watchlist
from routewatch.workspace import Workspace

# about 19 km x 19 km at 42 N: a 2,000 x 2,000 pixel window at 10 m with the margin
SITE = Site("bigport", "benchmark port", SiteKind.PORT, box(130.18, 42.16, 130.41, 42.33))


def run(n_scenes: int, workers: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.open(Path(tmp) / "ws").ensure()
        store = open_store(ws)
        store.upsert_watchlist(Watchlist(sites={SITE.key: SITE}))
        start = date(2023, 10, 1)
        ships = {start + timedelta(days=d): [90.0, 120.0, 150.0, 60.0] for d in range(0, n_scenes * 2, 2)}
        t0 = time.perf_counter()
        sims = simulate_site_scenes(SITE, start, start + timedelta(days=n_scenes - 1), "sentinel-1", ships,
                                    ws.root / "sim", seed=1, every_days=1)
        t_sim = time.perf_counter() - t0
        add_folder(ws.root / "sim", store=store)
        since = datetime(2023, 9, 1, tzinfo=UTC)
        t0 = time.perf_counter()
        serial = detect_site(ws, SITE.key, since, progress=False)
        t_serial = time.perf_counter() - t0
        ids_serial = sorted(s.id for s in store.sightings(site=SITE.key))
        from dask.distributed import Client, LocalCluster

        t0 = time.perf_counter()  # the cluster is started here, as `detect --workers N` would start it
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            par = detect_site(ws, SITE.key, since, scheduler=cluster.scheduler_address, progress=False)
            t_par = time.perf_counter() - t0
            # each worker's own peak (ru_maxrss of children would report this process's peak, carried over)
            worker_peaks = list(client.run(peak_rss_mib).values())
        ids_par = sorted(s.id for s in store.sightings(site=SITE.key))
        shape = None
        import rasterio

        with rasterio.open(sims[0].path) as ds:
            shape = (ds.height, ds.width)
        return {
            "scenes": len(sims), "shape": shape, "simulate_s": t_sim, "serial_s": t_serial, "dask_s": t_par,
            "workers": workers, "looks": par.looks, "sightings": par.sightings, "failures": len(par.failures),
            "same": sorted(par.look_ids) == sorted(serial.look_ids) and ids_par == ids_serial,
            "rss_main": peak_rss_mib(), "rss_workers": max(worker_peaks),
        }


def section(r: dict[str, object]) -> str:
    n = int(r["scenes"])  # type: ignore[arg-type]
    h, w = r["shape"]  # type: ignore[misc]
    return "\n".join([
        "## imagery: detect --site over many scenes (Dask)",
        "",
        f"`python -m benchmarks.bench_imagery_dask` on {platform.machine()}, 2 CPU cores shared with other work; "
        f"{datetime.now(UTC):%Y-%m-%d}. {n} simulated SAR scenes of {h:,} x {w:,} px over one site, packaged CFAR "
        "detector, SQLite store.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| baseline: in-process, one scene after another | {r['serial_s']:.2f} s ({n / float(r['serial_s']):.2f} scenes/s) |",  # type: ignore[arg-type]
        f"| Dask LocalCluster, {r['workers']} worker processes | {r['dask_s']:.2f} s ({n / float(r['dask_s']):.2f} scenes/s, cluster start included) |",  # type: ignore[arg-type]
        f"| looks / sightings / failures | {r['looks']} / {r['sightings']} / {r['failures']} |",
        f"| same records serial and on Dask | {'yes' if r['same'] else 'NO'} |",
        f"| peak memory (VmHWM): main process / largest worker | {r['rss_main']:.0f} MiB / {r['rss_workers']:.0f} MiB |",
        f"| simulating the scenes (not timed above) | {r['simulate_s']:.1f} s |",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scenes", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args()
    result = run(args.scenes, args.workers)
    text = section(result)
    print(text)
    if not args.no_write:
        write_section("imagery", text)


if __name__ == "__main__":
    main()
