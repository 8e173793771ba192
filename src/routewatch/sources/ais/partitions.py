"""AIS positions as Parquet partitioned by UTC day: ``<ais_dir>/positions/day=YYYY-MM-DD/part-<id>.parquet``.

Each part is sorted by (mmsi, timestamp) so that readers can stream a day and prune row groups by MMSI. Writes are
idempotent: rows already present in a day (same mmsi, timestamp, lon, lat) are dropped before writing, and so are
copies of one message heard by receivers whose clocks differ (same mmsi and point, at most SAME_MESSAGE_S apart);
parts are written under a temporary name and renamed only once every day of the batch is written, so a failed
ingest leaves nothing half-written that a reader would see.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl

from routewatch.model import stable_id
from routewatch.sources.ais.schema import DEDUPE_KEY, POSITION_SCHEMA

POSITIONS = "positions"
MANIFEST = "manifest.json"
SAME_MESSAGE_S = 2.0  # one message heard by two receivers: stamped at most this far apart by their clocks


@dataclass
class WriteStats:
    added: int = 0
    duplicates: int = 0
    days: int = 0
    parts: tuple[str, ...] = ()


def positions_dir(ais_dir: Path) -> Path:
    return Path(ais_dir) / POSITIONS


def day_dirs(ais_dir: Path, start: date | None = None, end: date | None = None) -> list[tuple[date, Path]]:
    """Day partitions present, in date order, optionally limited to [start, end] (inclusive)."""
    root = positions_dir(ais_dir)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith("day="):
            d = date.fromisoformat(p.name[4:])
            if (start is None or d >= start) and (end is None or d <= end):
                out.append((d, p))
    return sorted(out)


def part_files(day_dir: Path) -> list[Path]:
    return sorted(day_dir.glob("part-*.parquet"))


def read_day(day_dir: Path, columns: list[str] | None = None) -> pl.DataFrame:
    """One day's positions sorted by (mmsi, timestamp); parts written by several ingests are merged."""
    files = part_files(day_dir)
    if not files:
        return pl.DataFrame(schema={k: v for k, v in POSITION_SCHEMA.items() if columns is None or k in columns})
    frame = pl.read_parquet(files, columns=columns)
    if len(files) > 1:  # stable: ties (two receivers, one instant) keep the files' order, with Dask as without
        frame = frame.sort(["mmsi", "timestamp"], maintain_order=True)
    return frame


def scan_positions(ais_dir: Path, start: datetime | None = None, end: datetime | None = None) -> pl.LazyFrame:
    """A lazy frame over the day partitions that can hold positions in [start, end]."""
    days = day_dirs(ais_dir, start.astimezone(UTC).date() if start else None, end.astimezone(UTC).date() if end else None)
    files = [f for _, d in days for f in part_files(d)]
    if not files:
        return pl.LazyFrame(schema=POSITION_SCHEMA)
    lf = pl.scan_parquet(files)
    if start is not None:
        lf = lf.filter(pl.col("timestamp") >= start)
    if end is not None:
        lf = lf.filter(pl.col("timestamp") <= end)
    return lf


DAY_US = 86_400_000_000


def _sorted_unique(frame: pl.DataFrame) -> pl.DataFrame:
    """Sort by (mmsi, timestamp) and drop exact repeats of (mmsi, timestamp, lon, lat) without a hash over all rows.

    Provider files and feeds are in time order, so a stable sort on the MMSI alone gives (mmsi, timestamp) order
    (about half the cost of a two-key sort). Repeats then sit in runs of equal (mmsi, timestamp); only the rows
    of such runs, usually a small share, go through a hash-based first-distinct test. Readers rely on this order.
    """
    if frame["timestamp"].is_sorted():
        frame = frame.sort("mmsi", maintain_order=True)
    else:
        frame = frame.sort("mmsi", "timestamp", maintain_order=True)
    not_first = pl.int_range(pl.len()) > 0
    tie = frame.select(pl.all_horizontal(
        not_first, *(pl.col(c).eq_missing(pl.col(c).shift(1)) for c in ("mmsi", "timestamp")))).to_series()
    if not tie.any():
        return frame
    member = tie | tie.shift(-1, fill_value=False)
    idx = pl.Series("_i", np.arange(frame.height, dtype=np.int64))
    cand = frame.select(list(DEDUPE_KEY)).with_columns(idx).filter(member)
    drop = cand.filter(~pl.struct(list(DEDUPE_KEY)).is_first_distinct())["_i"].to_numpy()
    keep = np.ones(frame.height, bool)
    keep[drop] = False
    return frame.filter(pl.Series(keep))


def _heard_again(frame: pl.DataFrame) -> np.ndarray:
    """Rows of a (mmsi, timestamp)-sorted frame that repeat the row before them: the same ship at the same point
    (to the 0.1 m a report gives) at most SAME_MESSAGE_S later. That is one message heard by two receivers whose
    clocks differ: a ship reports at most every 2 s, and a ship that keeps its point reports every 3 minutes."""
    if frame.height < 2:
        return np.zeros(frame.height, bool)
    mmsi = frame["mmsi"].to_numpy()
    t = frame["timestamp"].dt.epoch("us").to_numpy()
    lon, lat = frame["lon"].to_numpy(), frame["lat"].to_numpy()
    again = np.zeros(frame.height, bool)
    again[1:] = ((mmsi[1:] == mmsi[:-1]) & (lon[1:] == lon[:-1]) & (lat[1:] == lat[:-1])
                 & (t[1:] - t[:-1] <= int(SAME_MESSAGE_S * 1e6)))
    return again


def _heard_before(part: pl.DataFrame, stored: pl.DataFrame) -> np.ndarray:
    """Rows of ``part`` (sorted by mmsi and time) that another receiver's copy of the same message, already
    stored (``stored``: its keys), stands for: the same ship and point at most SAME_MESSAGE_S apart."""
    if part.height == 0 or stored.height == 0:
        return np.zeros(part.height, bool)
    stored = stored.sort("mmsi", "timestamp").with_columns(pl.col("timestamp").alias("_t"))
    with warnings.catch_warnings():  # sorted within each (mmsi, lon, lat) group, which is all the join needs
        warnings.filterwarnings("ignore", message="Sortedness of columns cannot be checked")
        near = part.select(list(DEDUPE_KEY)).join_asof(
            stored, on="timestamp", by=["mmsi", "lon", "lat"], strategy="nearest",
            tolerance=f"{int(SAME_MESSAGE_S * 1e6)}us", check_sortedness=False)
    return near["_t"].is_not_null().to_numpy()


def _heard_next_door(ais_dir: Path, day: date, part: pl.DataFrame,
                     staged: list[tuple[Path, Path]] | None) -> np.ndarray:
    """Rows of one day's ``part`` within SAME_MESSAGE_S of midnight whose copy another receiver's clock put on the
    neighbouring day, already stored there (or staged by this file's earlier chunks): the same message, which the
    day's own check cannot see (a 23:59:59.5 and a 00:00:00.8 copy had both been stored). Only the minutes near
    midnight of the neighbour's time column are read."""
    out = np.zeros(part.height, bool)
    if part.height == 0:
        return out
    reach = int(SAME_MESSAGE_S * 1e6)
    start = (day.toordinal() - date(1970, 1, 1).toordinal()) * DAY_US
    t = part["timestamp"].dt.epoch("us").to_numpy()
    for offset, near in ((-1, t < start + reach), (1, t >= start + DAY_US - reach)):
        if not near.any():
            continue
        ddir = positions_dir(ais_dir) / f"day={date.fromordinal(day.toordinal() + offset).isoformat()}"
        files = part_files(ddir) + [tmp for tmp, _final in (staged or ()) if tmp.parent == ddir]
        if not files:
            continue
        edge = start if offset < 0 else start + DAY_US  # the midnight between the two days
        window = (pl.col("timestamp").dt.epoch("us") - edge).abs() <= reach
        keys = pl.scan_parquet(files).select(list(DEDUPE_KEY)).filter(window).collect()
        if keys.height:
            out[near] = _heard_before(part.filter(pl.Series(near)), keys)
    return out


def _by_day(frame: pl.DataFrame) -> list[tuple[date, pl.DataFrame]]:
    """Split a sorted frame into UTC days (order kept); a one-day batch, the usual case, is not copied."""
    day = frame["timestamp"].dt.epoch("us") // DAY_US
    lo, hi = day.min(), day.max()
    if lo == hi:
        return [(_day_of(lo), frame)]
    parts = frame.with_columns(day.alias("_day")).partition_by("_day", as_dict=True, include_key=False)
    return sorted((_day_of(k), part) for (k,), part in parts.items())


def _day_of(day_index: int) -> date:
    return date.fromordinal(date(1970, 1, 1).toordinal() + int(day_index))


def write_positions(
    ais_dir: Path,
    frame: pl.DataFrame,
    batch_label: str = "",
    compression: str = "snappy",
    staged: list[tuple[Path, Path]] | None = None,
) -> WriteStats:
    """Add positions to the day partitions, dropping any already there; returns what was added.

    Vectorised throughout: one sort (which also dedupes), a split by day, an anti-join only for days that already
    hold parts, and Parquet written with column statistics so readers can prune row groups by MMSI and time.

    With ``staged`` (a list the caller keeps across batches) the new parts stay under their temporary names and
    are appended to it; later batches are checked against them too, and the caller makes them visible all at once
    with ``publish(staged)`` or drops them with ``discard(staged)``: how a file read in chunks lands whole or not
    at all.
    """
    stats = WriteStats()
    if frame.height == 0:
        return stats
    n_in = frame.height
    source = frame["source"]
    constant_source = source.null_count() == 0 and bool((source == source[0]).all())
    if constant_source:  # moving one repeated string through the sort costs more than the sort itself
        frame = frame.drop("source")
    frame = _sorted_unique(frame)
    again = _heard_again(frame)
    if again.any():
        frame = frame.filter(pl.Series(~again))
    mine: list[tuple[Path, Path]] = []
    try:
        for day, part in _by_day(frame):
            ddir = positions_dir(ais_dir) / f"day={day.isoformat()}"
            existing = part_files(ddir) + [tmp for tmp, _final in (staged or ()) if tmp.parent == ddir]
            if existing:
                keys = pl.read_parquet(existing, columns=list(DEDUPE_KEY))
                part = part.join(keys, on=list(DEDUPE_KEY), how="anti", nulls_equal=True, maintain_order="left")
                before = _heard_before(part, keys)
                if before.any():
                    part = part.filter(pl.Series(~before))
            before = _heard_next_door(ais_dir, day, part, staged)
            if before.any():
                part = part.filter(pl.Series(~before))
            if part.height == 0:
                continue
            if constant_source:
                part = part.with_columns(pl.lit(source[0], pl.String).alias("source"))
            part = part.select(list(POSITION_SCHEMA))
            pid = stable_id("part", batch_label, day, part.height, part["mmsi"][0], part["timestamp"][0],
                            part["line"][-1])
            ddir.mkdir(parents=True, exist_ok=True)
            taken = {f for _tmp, f in (*mine, *(staged or ()))}
            while (ddir / f"{pid}.parquet").exists() or ddir / f"{pid}.parquet" in taken:
                # a forced re-read of the same file whose rows changed (another mapping or --default-time) can
                # give the same name: its new rows go beside the earlier part, never over it
                pid = stable_id(pid, "next")
            final = ddir / f"{pid}.parquet"
            tmp = ddir / f".{pid}.parquet.tmp"
            mine.append((tmp, final))  # before writing: an interrupted write is removed with the rest
            part.write_parquet(tmp, compression=compression, statistics=True, row_group_size=256_000)
            stats.added += part.height
            stats.days += 1
    except BaseException:
        discard(mine)
        raise
    stats.parts = tuple(str(f) for _, f in mine)  # before publishing, which empties the list
    if staged is None:
        publish(mine)
    else:
        staged.extend(mine)
    stats.duplicates = n_in - stats.added
    return stats


def publish(staged: list[tuple[Path, Path]]) -> None:
    """Rename staged parts to their final names (each rename is atomic; readers only look at final names)."""
    for tmp, final in staged:
        os.replace(tmp, final)
    staged.clear()


def discard(staged: list[tuple[Path, Path]]) -> None:
    """Remove staged parts that will not be published."""
    for tmp, _final in staged:
        tmp.unlink(missing_ok=True)
    staged.clear()


def read_manifest(ais_dir: Path) -> dict[str, dict]:
    path = Path(ais_dir) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def record_in_manifest(ais_dir: Path, digest: str, entry: dict, replaces: str | None = None) -> None:
    """Remember an ingested file by content hash (atomic rewrite of a small JSON file); ``replaces`` is an older
    key of the same file, dropped in the same write."""
    manifest = read_manifest(ais_dir)
    if replaces is not None:
        manifest.pop(replaces, None)
    manifest[digest] = entry
    path = Path(ais_dir) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)


def iter_days(ais_dir: Path, start: date | None = None, end: date | None = None, columns: list[str] | None = None):
    """Yield (day, positions sorted by mmsi and time) one day at a time: memory stays at one day's worth."""
    for d, ddir in day_dirs(ais_dir, start, end):
        yield d, read_day(ddir, columns)
