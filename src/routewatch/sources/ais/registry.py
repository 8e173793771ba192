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
from datetime import datetime
from pathlib import Path

import polars as pl

from routewatch.model import Vessel, ensure_utc

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
    """One row per MMSI: its latest name, and the most recently heard non-null value of each other static field
    among the records heard under that name, or under none since that name was first heard (a class B ship's part
    B carries no name).

    A ship that renamed itself keeps none of its former identity's fields: a type 5 as LADY R (IMO 9161003) and a
    later one as FU HAI 8 with IMO "not available" had made a row FU HAI 8, IMO 9161003."""
    # a stable order for records heard last at the same time (which name is the latest must not vary by run)
    statics = read_statics(ais_dir).sort("last_seen", "first_seen", "source", "line", "name", nulls_last=False)
    latest = pl.col("name").drop_nulls().last()
    since = pl.col("first_seen").filter(pl.col("name") == latest).min()
    # records under the latest name, and nameless ones heard since it was first heard (a class B part B, a type 5
    # with a blank name): a nameless record from before the rename belongs to the former identity
    current = (pl.col("name") == latest).fill_null(False) | (
        pl.col("name").is_null() & (latest.is_null() | (pl.col("last_seen") >= since)).fill_null(True))
    return statics.group_by("mmsi").agg(
        *(pl.col(f).filter(current).drop_nulls().last().alias(f) for f in FIELDS),
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


class VesselLinks(dict):
    """MMSI -> watchlist key: the watchlist's own MMSIs, and registry links by IMO or call sign from the identity
    each MMSI broadcast last. :meth:`at` gives the identity it broadcast at a time: a ship that took a watched
    ship's IMO only after a port call was not that ship at the call (the latest identity, applied to its whole
    history, had made a watched vessel's call, and an origin-only trip, of another ship's visit)."""

    def __init__(self, latest: Mapping[int, str], fixed: set[int] | None = None,
                 spans: Mapping[int, list[tuple[int, int, str | None]]] | None = None):
        super().__init__(latest)
        self.fixed = set(fixed or ())  # MMSIs the watchlist names: theirs at every time
        self.spans = dict(spans or {})  # MMSI -> (first, last heard in epoch us, key or None) of each identity

    def at(self, mmsi: int, start: datetime, end: datetime | None = None) -> str | None:
        """The watchlist key of ``mmsi`` over [start, end]: a watched vessel whose IMO or call sign the ship
        broadcast in that time; else none when it broadcast another identity then; else the identity heard
        nearest in time (the latest before, or the first after)."""
        mmsi = int(mmsi)
        if mmsi in self.fixed or mmsi not in self.spans:
            return self.get(mmsi)
        a = int(ensure_utc(start).timestamp() * 1_000_000)
        b = int(ensure_utc(end or start).timestamp() * 1_000_000)
        spans = self.spans[mmsi]
        during = [sp for sp in spans if sp[0] <= b and sp[1] >= a]
        if during:  # ordered by time alone (a key may be None: tuples with it do not compare)
            keys = [sp[2] for sp in sorted(during, key=lambda sp: (sp[0], sp[1])) if sp[2] is not None]
            return keys[-1] if keys else None
        before = [sp for sp in spans if sp[1] < a]
        if before:
            return max(before, key=lambda sp: sp[1])[2]
        return min(spans, key=lambda sp: (sp[0], sp[1]))[2]

    def ever(self, mmsi: int) -> list[str]:
        """Every watchlist key the MMSI's broadcast identity linked to at some time."""
        keys = {sp[2] for sp in self.spans.get(int(mmsi), ()) if sp[2] is not None}
        if int(mmsi) in self:
            keys.add(self[int(mmsi)])
        return sorted(keys)

    def as_of(self, when: datetime) -> dict[int, str]:
        """The links that hold at ``when``, as a plain mapping (fusion at an image's time)."""
        out = {m: k for m, k in self.items() if m not in self.spans}
        for m in self.spans:
            key = self.at(m, when)
            if key is not None:
                out[m] = key
        return out


def vessel_at(links: Mapping[int, str], mmsi: int, start: datetime, end: datetime | None = None) -> str | None:
    """The watchlist key of ``mmsi`` over [start, end] (:meth:`VesselLinks.at`); a plain mapping knows no history."""
    return links.at(mmsi, start, end) if isinstance(links, VesselLinks) else links.get(int(mmsi))


def links_at(links: Mapping[int, str], when: datetime) -> Mapping[int, str]:
    """The links that hold at ``when`` (:meth:`VesselLinks.as_of`); a plain mapping holds at every time."""
    return links.as_of(when) if isinstance(links, VesselLinks) else links


def also_claimed(links: Mapping[int, str], mmsi: int, key: str | None) -> list[str]:
    """The other watchlist keys ``mmsi`` linked to at some time (:meth:`VesselLinks.ever`), besides ``key``."""
    return [k for k in links.ever(mmsi) if k != key] if isinstance(links, VesselLinks) else []


def mmsi_to_vessel(vessels: Mapping[str, Vessel], registry: pl.DataFrame | None = None,
                   statics: pl.DataFrame | None = None) -> VesselLinks:
    """MMSI -> watchlist key from the watchlist itself and, where given, registry links by IMO or call sign;
    ``statics`` (every static record with the time it was heard, :func:`read_statics`) gives the identity over
    time (:meth:`VesselLinks.at`)."""
    out = {int(_norm(v.mmsi)): k for k, v in vessels.items() if _norm(v.mmsi).isdigit()}
    fixed = set(out)
    if registry is not None and registry.height:
        linked = link_watchlist(registry, vessels).filter(pl.col("vessel").is_not_null())
        for mmsi, key in linked.select("mmsi", "vessel").iter_rows():
            out.setdefault(int(mmsi), key)
    spans: dict[int, list[tuple[int, int, str | None]]] = {}
    if statics is not None and statics.height:
        # only the records that carry an IMO or a call sign say who the ship claimed to be (a name-only record,
        # a type 24 part A, says nothing for or against a link); a record without a time holds at every time
        ident = statics.filter(pl.col("imo").is_not_null() | pl.col("call_sign").is_not_null())
        if ident.height:
            linked = link_watchlist(ident, vessels)
            lo, hi = -(2**62), 2**62
            ever = linked.filter(pl.col("vessel").is_not_null())["mmsi"].unique()  # the others link at no time
            for mmsi, first, last, key in linked.filter(pl.col("mmsi").is_in(ever.implode())).select(
                    "mmsi", pl.col("first_seen").dt.epoch("us"), pl.col("last_seen").dt.epoch("us"),
                    "vessel").iter_rows():
                spans.setdefault(int(mmsi), []).append((lo if first is None else int(first),
                                                        hi if last is None else int(last), key))
    return VesselLinks(out, fixed, spans)
