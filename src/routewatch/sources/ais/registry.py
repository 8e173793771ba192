"""The AIS vessel registry: what static reports (types 5, 19, 24) and provider static columns say about each MMSI,
linked to the watchlist.

Static reports are what a crew typed into the transponder: names change, IMO numbers are missing or wrong, and a
sanctioned ship may broadcast another ship's identity. So every distinct static record is kept with the time span
it was heard, and the link to a watchlist vessel says which field matched (MMSI, IMO, call sign or name), strongest
first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from routewatch.model import Vessel

REGISTRY_FILE = "vessels.parquet"
STATIC_SCHEMA: dict[str, pl.DataType] = {
    "mmsi": pl.Int64(), "name": pl.String(), "imo": pl.Int64(), "call_sign": pl.String(),
    "length_m": pl.Float32(), "beam_m": pl.Float32(), "ship_type": pl.Int16(),
    "first_seen": pl.Datetime("us", "UTC"), "last_seen": pl.Datetime("us", "UTC"),
    "source": pl.String(), "line": pl.Int64(),
}
FIELDS = ["name", "imo", "call_sign", "length_m", "beam_m", "ship_type"]


def statics_frame(records: list[dict] | pl.DataFrame, source: str) -> pl.DataFrame:
    """NMEA static dicts or a provider static frame to the registry schema."""
    if isinstance(records, pl.DataFrame):
        frame = records
        if "t_us" in frame.columns:
            frame = frame.with_columns(pl.from_epoch("t_us", "us").dt.replace_time_zone("UTC").alias("timestamp"))
    else:
        frame = pl.DataFrame(records, infer_schema_length=None) if records else pl.DataFrame()
        if frame.height:
            frame = frame.with_columns(
                pl.from_epoch(pl.col("t_us").cast(pl.Int64), "us").dt.replace_time_zone("UTC").alias("timestamp"))
    if frame.height == 0:
        return pl.DataFrame(schema=STATIC_SCHEMA)
    exprs = []
    for k, v in STATIC_SCHEMA.items():
        if k in ("first_seen", "last_seen"):
            exprs.append(pl.col(k if k in frame.columns else "timestamp").cast(v).alias(k))
        elif k == "source":
            exprs.append(pl.lit(source).alias(k))
        else:
            exprs.append((pl.col(k) if k in frame.columns else pl.lit(None)).cast(v, strict=False).alias(k))
    return frame.select(exprs)


def merge_statics(ais_dir: Path, new: pl.DataFrame) -> int:
    """Add static records to the registry file; identical records only widen their first/last seen times."""
    path = Path(ais_dir) / REGISTRY_FILE
    old = pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=STATIC_SCHEMA)
    before = old.height
    both = pl.concat([old, new.select(list(STATIC_SCHEMA))], how="vertical")
    merged = both.group_by(["mmsi", *FIELDS], maintain_order=True).agg(
        pl.col("first_seen").min(), pl.col("last_seen").max(), pl.col("source").first(), pl.col("line").first()
    ).select(list(STATIC_SCHEMA))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    merged.write_parquet(tmp)
    os.replace(tmp, path)
    return merged.height - before


def read_statics(ais_dir: Path) -> pl.DataFrame:
    path = Path(ais_dir) / REGISTRY_FILE
    return pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=STATIC_SCHEMA)


def vessel_registry(ais_dir: Path) -> pl.DataFrame:
    """One row per MMSI: the most recently heard non-null value of each static field."""
    statics = read_statics(ais_dir).sort("last_seen", nulls_last=False)
    return statics.group_by("mmsi").agg(
        *(pl.col(f).drop_nulls().last().alias(f) for f in FIELDS),
        pl.col("first_seen").min(), pl.col("last_seen").max(),
        pl.struct("source", "line").first().alias("evidence"),
    ).sort("mmsi")


def _norm(text: str | None) -> str:
    return "".join(ch for ch in (text or "").upper() if ch.isalnum())


def link_watchlist(registry: pl.DataFrame, vessels: Mapping[str, Vessel]) -> pl.DataFrame:
    """Add ``vessel`` (watchlist key) and ``link`` (the field that matched) to a registry frame. A match by
    name alone is said (``link`` = ``name``) but names no vessel: names are reused, so only MMSI, IMO and call
    sign link a ship to the watchlist (the rule for visits, fusion and the store's registry alike)."""
    by = {"mmsi": {}, "imo": {}, "call_sign": {}, "name": {}}
    for key, v in vessels.items():
        mmsi, imo = _norm(v.mmsi), _norm(v.imo).removeprefix("IMO")
        if mmsi.isdigit():
            by["mmsi"][int(mmsi)] = key
        if imo.isdigit():
            by["imo"][int(imo)] = key
        if v.call_sign:
            by["call_sign"][_norm(v.call_sign)] = key
        by["name"][_norm(v.name)] = key
    keys, links = [], []
    for row in registry.select("mmsi", "imo", "call_sign", "name").iter_rows():
        mmsi, imo, call, name = row
        for field, value in (("mmsi", mmsi), ("imo", imo), ("call_sign", _norm(call)), ("name", _norm(name))):
            if value and value in by[field]:
                keys.append(None if field == "name" else by[field][value])
                links.append(field)
                break
        else:
            keys.append(None)
            links.append(None)
    return registry.with_columns(pl.Series("vessel", keys, pl.String), pl.Series("link", links, pl.String))


def mmsi_to_vessel(vessels: Mapping[str, Vessel], registry: pl.DataFrame | None = None) -> dict[int, str]:
    """MMSI -> watchlist key from the watchlist itself and, where given, registry links by IMO or call sign."""
    out = {int(_norm(v.mmsi)): k for k, v in vessels.items() if _norm(v.mmsi).isdigit()}
    if registry is not None and registry.height:
        linked = link_watchlist(registry, vessels).filter(pl.col("vessel").is_not_null())
        for mmsi, key in linked.select("mmsi", "vessel").iter_rows():
            out.setdefault(int(mmsi), key)
    return out
