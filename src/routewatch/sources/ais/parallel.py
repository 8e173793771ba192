"""Visits and gaps over many day partitions on Dask (``dask.distributed``): the same functions as on one machine.

Vessels are independent, so the work is split by MMSI bucket (``mmsi % buckets``): each task streams every day
partition for its bucket, carrying state from day to day as the single-machine scan does, and the results are
concatenated. Parts are sorted by MMSI, so Parquet row-group statistics let each task skip most of each file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from routewatch.analysis.gaps import GapConfig, visits_and_gaps
from routewatch.analysis.port_visits import VisitConfig
from routewatch.model import Site
from routewatch.sources.ais.partitions import day_dirs, part_files

COLUMNS = ["mmsi", "timestamp", "lon", "lat", "sog_kn", "source", "line"]


def _bucket_days(ais_dir: Path, bucket: int, buckets: int):
    for _, ddir in day_dirs(ais_dir):
        files = part_files(ddir)
        if files:
            # a stable sort, as read_day's: positions of one ship at one instant (two receivers) keep the files'
            # order, so the evidence cited is the same file and line as without Dask
            yield (pl.scan_parquet(files).select(COLUMNS).filter(pl.col("mmsi") % buckets == bucket)
                   .collect().sort(["mmsi", "timestamp"], maintain_order=True))


def bucket_visits_and_gaps(ais_dir: Path, sites: Mapping[str, Site], bucket: int, buckets: int,
                           visit_config: VisitConfig | None = None, gap_config: GapConfig | None = None):
    """Visits and gaps of the vessels whose MMSI falls in one bucket (one Dask task)."""
    return visits_and_gaps(_bucket_days(Path(ais_dir), bucket, buckets), sites, visit_config, gap_config)


def visits_and_gaps_dask(client, ais_dir: Path, sites: Mapping[str, Site], buckets: int | None = None,
                         visit_config: VisitConfig | None = None, gap_config: GapConfig | None = None):
    """Run :func:`bucket_visits_and_gaps` for every bucket on a Dask client; returns (visits, gaps)."""
    n = buckets or max(1, 2 * len(client.nthreads()))
    futures = [client.submit(bucket_visits_and_gaps, str(ais_dir), dict(sites), b, n, visit_config, gap_config,
                             pure=False) for b in range(n)]
    results = client.gather(futures)
    visits = pl.concat([r[0] for r in results], how="vertical").sort("mmsi", "start", "site")  # as one machine
    gaps = pl.concat([r[1] for r in results], how="vertical").sort("mmsi", "start")
    return visits, gaps
