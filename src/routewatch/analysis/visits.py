"""Visits: sightings of one vessel (or one size class of unidentified vessel) at one site, grouped in time.

Why the rules are what they are:

* a vessel seen on consecutive days is one port call; a gap longer than ``max_gap_days`` with no sighting is read
  as two calls, because a call lasts 1 to 4 days (reference case);
* a usable look in between that saw the site empty (``vessels_seen == 0``) and would have detected a vessel of
  this length with probability ``>= split_probability`` means the vessel left and came back: two visits;
* the nearest such empty looks before and after a visit bound when it can have started and ended
  (``start_bound`` / ``end_bound``), which is what trip timing and "the ship left" rest on. So does a watchlist
  vessel's AIS visit whose ship was seen leaving (its next position beyond the exit distance:
  :data:`DEPARTURE_SEEN` in its detail), once that is known by ``as_of`` (:data:`DEPARTURE_KNOWN_AFTER` past the
  visit's end): a departure that ends the visit bounds its end. It does not split a visit as an empty look
  does: AIS that leaves and comes back within days is as often one bad position, or hours at an outer
  anchorage, as a voyage (either had made a trip that never happened);
* a ship that AIS names but the watchlist does not is another ship, not an unidentified one: its AIS visits, and
  the image detections fusion identified as it, are keyed by its MMSI (``mmsi:<n>``, :func:`visit_vessel`), so
  they never join the unidentified image detections of its size that may be a fleet ship (a route with a fleet
  list ignores them; one without is any vessel's), and its departures bound only its own visits.

Unidentified vessels are grouped by size class, because "a 115 m ship" seen on two days is most likely one ship.
The size class of an identified vessel comes from the watchlist length (or the median measured length).
Unknown-size unidentified sightings are grouped but never split or bounded by looks: without a length there is
no detection probability to weigh an empty look against.

A sighting is used only if ``time <= as_of``; a report whose period runs past ``as_of`` is cut at ``as_of``.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from statistics import median
from typing import Any

import polars as pl

from routewatch.analysis.port_visits import LEVEL_CONFIDENCE
from routewatch.model import Look, Sighting, Vessel, Visit, ensure_utc, stable_id

# (lower edge m, upper edge m, label); the lower edge is also the length used for detection probabilities:
# an empty look is only trusted if it would have caught the smallest vessel of the class.
SIZE_CLASSES: tuple[tuple[float, float, str], ...] = (
    (0.0, 50.0, "0-50m"),
    (50.0, 100.0, "50-100m"),
    (100.0, 150.0, "100-150m"),
    (150.0, 250.0, "150-250m"),
    (250.0, math.inf, "250m+"),
)
UNKNOWN_SIZE = "unknown"
SMALLEST_DETECTION_LENGTH_M = 10.0  # used for the "0-50m" class, whose lower edge is 0 m


# What an AIS visit sighting's ``detail`` says when its ship was seen leaving the site (written by
# ``sources.ais.records``): an observed departure, which bounds the visit's end as an empty look would.
DEPARTURE_SEEN = "departure seen"
# The exit is told by the ship's next position beyond the exit distance, which comes at most ``split_h`` (72 h by
# default) after the last one inside; only then is the departure known: nothing later than as_of is used.
DEPARTURE_KNOWN_AFTER = timedelta(hours=72)


# An AIS visit of a ship that is not on the watchlist (``sources.ais.records`` writes its MMSI first in the
# detail), or an image detection that fusion identified as such a ship (``identified; MMSI <n>;``), is a ship that
# AIS names as another: its visits are keyed ``mmsi:<n>``. Pooled with the unidentified image detections of its
# size, every such ship at a busy destination port had counted as a fleet ship's call.
AIS_SHIP_PREFIX = "mmsi:"
AIS_DETAIL_MMSI = r"^(?:identified; )?MMSI (\d+);"


def visit_vessel(s: Sighting) -> str | None:
    """The key a sighting's visits are grouped under: its watchlist vessel, ``mmsi:<n>`` for a ship that AIS names
    and the watchlist does not, else None (an unidentified ship, grouped by size class)."""
    if s.vessel is not None:
        return s.vessel
    m = re.match(AIS_DETAIL_MMSI, s.detail or "")
    return AIS_SHIP_PREFIX + m.group(1) if m else None


def _left(s: Sighting) -> bool:
    """An AIS visit whose ship was seen leaving at its end (see :data:`DEPARTURE_SEEN`)."""
    return str(s.source_kind) == "ais" and DEPARTURE_SEEN in (s.detail or "")


def departed(s: Sighting, as_of: datetime) -> bool:
    """Whether a sighting shows a watchlist vessel leaving the site at its end (an AIS visit with the exit seen),
    known by ``as_of``."""
    return s.vessel is not None and _left(s) and s.end + DEPARTURE_KNOWN_AFTER <= as_of


def size_class(length_m: float | None) -> str:
    """The size class label of a length in metres (``unknown`` when the length is missing or not positive)."""
    if length_m is None or not math.isfinite(length_m) or length_m <= 0:
        return UNKNOWN_SIZE
    for low, high, label in SIZE_CLASSES:
        if low <= length_m < high:
            return label
    return UNKNOWN_SIZE  # pragma: no cover - the classes cover (0, inf)


def class_detection_length(label: str) -> float | None:
    """The length (m) at which empty looks are weighed for an unidentified vessel of this class."""
    for low, _high, name in SIZE_CLASSES:
        if name == label:
            return max(low, SMALLEST_DETECTION_LENGTH_M)
    return None


def vessel_map(vessels: Mapping[str, Vessel] | Iterable[Vessel] | None) -> dict[str, Vessel]:
    """Accept a mapping key -> Vessel or an iterable of vessels."""
    if vessels is None:
        return {}
    if isinstance(vessels, Mapping):
        return dict(vessels)
    return {v.key: v for v in vessels}


def reference_lengths(sightings: Iterable[Sighting], vessels: Mapping[str, Vessel]) -> dict[str, float]:
    """Length (m) per identified vessel: the watchlist value, else the median measured length of its sightings."""
    measured: dict[str, list[float]] = defaultdict(list)
    for s in sightings:
        if s.vessel is not None and s.length_m is not None and math.isfinite(s.length_m) and s.length_m > 0:
            measured[s.vessel].append(float(s.length_m))
    out = {key: float(median(values)) for key, values in measured.items()}
    for key, vessel in vessels.items():
        if vessel.length_m is not None and vessel.length_m > 0:
            out[key] = float(vessel.length_m)
    return out


# An AIS visit's confidence is its GFW-style level's (port_visits.LEVEL_CONFIDENCE), which counts an exit seen
# after the visit's end: as of a date before that exit was known (DEPARTURE_KNOWN_AFTER) it is the level without it,
# so that a judgement as of that date is the same whatever AIS arrived later.
AIS_LEVEL = r"GFW-style level (\d)"
LEVEL_WITHOUT_EXIT = {lvl: LEVEL_CONFIDENCE[lvl - 1] for lvl in (3, 4)}  # levels 3 and 4 with one end less


def sighting_confidence(s: Sighting, as_of: datetime | None = None) -> float:
    """Probability the sighting is right and, when identified, that the identification is right; as of
    ``as_of``, an AIS visit whose exit was not yet known counts without it."""
    c = float(s.confidence)
    if as_of is not None and _left(s) and s.end + DEPARTURE_KNOWN_AFTER > as_of:
        m = re.search(AIS_LEVEL, s.detail or "")
        if m and int(m.group(1)) in LEVEL_WITHOUT_EXIT:
            c = min(c, LEVEL_WITHOUT_EXIT[int(m.group(1))])
    if s.vessel is not None and s.identification_confidence is not None:
        c *= float(s.identification_confidence)
    return min(max(c, 0.0), 1.0)


def combine_confidence(values: Iterable[float]) -> float:
    """Presence is confirmed if any one sighting is right: 1 - prod(1 - c_i)."""
    miss = 1.0
    for c in values:
        miss *= 1.0 - c
    return 1.0 - miss


def visit_confidence(members: Iterable[Sighting], as_of: datetime | None = None) -> float:
    """:func:`combine_confidence` over independent observations: sightings of one source kind at one instant (one
    image's detection fused twice, from the store and from a file; two reports of one moment) are one observation,
    which counts with its best confidence, not as two chances to be right."""
    best: dict[tuple[str, datetime], float] = {}
    for s in members:
        key = (str(s.source_kind), s.time)
        best[key] = max(best.get(key, 0.0), sighting_confidence(s, as_of))
    return combine_confidence(best.values())


def visit_id(site: str, vessel: str | None, size: str | None, start: datetime) -> str:
    return stable_id("visit", site, vessel or "", "" if vessel else (size or ""), start)


def _empty_look_times(
    looks: Iterable[Look], as_of: datetime, split_probability: float
) -> dict[str, list[Look]]:
    by_site: dict[str, list[Look]] = defaultdict(list)
    for look in looks:
        if look.time <= as_of and look.usable and look.vessels_seen == 0:
            by_site[look.site].append(look)
    for items in by_site.values():
        items.sort(key=lambda lk: (lk.time, lk.id))
    return by_site


def build_visits(
    sightings: Iterable[Sighting],
    looks: Iterable[Look],
    as_of: datetime,
    *,
    max_gap_days: float = 4.0,
    vessels: Mapping[str, Vessel] | Iterable[Vessel] | None = None,
    split_probability: float = 0.8,
) -> list[Visit]:
    """Group vessel sightings at sites into visits, using only evidence up to ``as_of``.

    Returns visits sorted by (site, vessel, size class, start). See the module docstring for the rules.
    """
    as_of = ensure_utc(as_of)
    if max_gap_days <= 0:
        raise ValueError(f"max_gap_days must be positive, got {max_gap_days}")
    vmap = vessel_map(vessels)
    used = [
        s if s.vessel is not None or (ship := visit_vessel(s)) is None else replace(s, vessel=ship)
        for s in sightings if s.time <= as_of and s.site is not None and s.object_kind == "vessel"
    ]
    ref_len = reference_lengths(used, vmap)
    empty = _empty_look_times(looks, as_of, split_probability)
    max_gap = timedelta(days=max_gap_days)

    groups: dict[tuple[str, str | None, str], list[Sighting]] = defaultdict(list)
    det_len: dict[tuple[str, str | None, str], float | None] = {}
    for s in used:
        assert s.site is not None
        key: tuple[str, str | None, str]
        if s.vessel is not None:
            length = ref_len.get(s.vessel)
            key = (s.site, s.vessel, size_class(length))
            det_len[key] = length
        else:
            label = size_class(s.length_m)
            key = (s.site, None, label)
            det_len[key] = class_detection_length(label)
        groups[key].append(s)

    visits: list[Visit] = []
    for key in sorted(groups, key=lambda k: (k[0], k[1] or "", k[2])):
        site, vessel, label = key
        length = det_len[key]
        negatives = (
            [lk for lk in empty.get(site, []) if lk.probability(length) >= split_probability]
            if length is not None
            else []
        )
        members = sorted(groups[key], key=lambda s: (s.time, s.id))
        current: list[Sighting] = []
        cur_end: datetime | None = None
        for s in members:
            end = max(min(s.end, as_of), s.time)
            if cur_end is not None:
                gap_split = s.time - cur_end > max_gap
                look_split = any(cur_end < lk.time < s.time for lk in negatives)
                if gap_split or look_split:
                    visits.append(_make_visit(site, vessel, label, current, cur_end, negatives, as_of))
                    current, cur_end = [], None
            current.append(s)
            cur_end = end if cur_end is None else max(cur_end, end)
        if current and cur_end is not None:
            visits.append(_make_visit(site, vessel, label, current, cur_end, negatives, as_of))
    return visits


def _make_visit(
    site: str,
    vessel: str | None,
    label: str,
    members: Sequence[Sighting],
    end: datetime,
    negatives: Sequence[Look],
    as_of: datetime,
) -> Visit:
    start = members[0].time
    before = [lk for lk in negatives if lk.time < start]
    after = [lk for lk in negatives if lk.time > end]
    start_look = before[-1] if before else None
    end_look = after[0] if after else None
    evidence: set[str] = set()
    for s in members:
        evidence.update(s.evidence_ids)
    for lk in (start_look, end_look):
        if lk is not None:
            evidence.update(lk.evidence_ids)
    return Visit(
        id=visit_id(site, vessel, label, start),
        site=site,
        vessel=vessel,
        start=start,
        end=end,
        confidence=visit_confidence(members, as_of),
        sighting_ids=tuple(s.id for s in members),
        evidence_ids=tuple(sorted(evidence)),
        size_class=label,
        start_bound=start_look.time if start_look else None,
        # a departure seen at the end is the bound (the first empty look comes after the end, so later)
        end_bound=_departure(members, end, as_of) or (end_look.time if end_look else None),
        source_kinds=tuple(sorted({str(s.source_kind) for s in members})),
    )


def _departure(members: Sequence[Sighting], end: datetime, as_of: datetime) -> datetime | None:
    """The visit's end when a member that ends it shows the ship leaving by ``as_of``, else None."""
    ends = [max(s.end, s.time) for s in members if departed(s, as_of)]  # as the frame path clips a bad time_end
    return end if ends and max(ends) >= end else None


# --- columnar version, for millions of sightings -------------------------------------------------------------
#
# Sightings frame columns (model field names): id, time (UTC datetime), site, vessel, object_kind, time_end,
# length_m (m), confidence, identification_confidence, evidence_ids (list[str]), source_kind.
# Looks frame columns: id, site, time, usable_fraction, vessels_seen, evidence_ids, and the detection model either
# as a struct column ``detection`` {l50_m, scale_m, p_max} or flat columns l50_m, scale_m, p_max (m, m, -).
# Missing optional columns take the model's defaults. The rules are exactly those of ``build_visits``.

VISIT_FRAME_COLUMNS = (
    "id", "site", "vessel", "size_class", "start", "end", "start_bound", "end_bound", "confidence",
    "sighting_ids", "evidence_ids", "source_kinds",
)


def sightings_to_frame(sightings: Iterable[Sighting]) -> pl.DataFrame:
    """Sightings as a polars frame with the columns ``build_visits_frame`` reads."""
    rows = [
        {
            "id": s.id, "time": s.time, "site": s.site, "vessel": s.vessel, "object_kind": s.object_kind,
            "time_end": s.time_end, "length_m": s.length_m, "confidence": float(s.confidence),
            "identification_confidence": s.identification_confidence,
            "evidence_ids": list(s.evidence_ids), "source_kind": str(s.source_kind), "detail": s.detail,
        }
        for s in sightings
    ]
    return pl.DataFrame(rows, schema=_SIGHTING_SCHEMA)


def looks_to_frame(looks: Iterable[Look]) -> pl.DataFrame:
    """Looks as a polars frame (flat detection columns) with the columns ``build_visits_frame`` reads."""
    rows = [
        {
            "id": lk.id, "site": lk.site, "time": lk.time, "usable_fraction": float(lk.usable_fraction),
            "vessels_seen": lk.vessels_seen, "evidence_ids": list(lk.evidence_ids),
            "l50_m": lk.detection.l50_m, "scale_m": lk.detection.scale_m, "p_max": lk.detection.p_max,
        }
        for lk in looks
    ]
    return pl.DataFrame(rows, schema=_LOOK_SCHEMA)


_UTC = pl.Datetime("us", "UTC")
_SIGHTING_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "id": pl.String, "time": _UTC, "site": pl.String, "vessel": pl.String, "object_kind": pl.String,
    "time_end": _UTC, "length_m": pl.Float64, "confidence": pl.Float64,
    "identification_confidence": pl.Float64, "evidence_ids": pl.List(pl.String), "source_kind": pl.String,
    "detail": pl.String,
}
_LOOK_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "id": pl.String, "site": pl.String, "time": _UTC, "usable_fraction": pl.Float64,
    "vessels_seen": pl.Int64, "evidence_ids": pl.List(pl.String), "l50_m": pl.Float64, "scale_m": pl.Float64,
    "p_max": pl.Float64,
}
_SIGHTING_DEFAULTS: dict[str, object] = {
    "vessel": None, "object_kind": "vessel", "time_end": None, "length_m": None, "confidence": 0.7,
    "identification_confidence": None, "evidence_ids": [], "source_kind": "", "detail": "",
}


def _normalise_sightings(frame: pl.DataFrame) -> pl.DataFrame:
    for needed in ("id", "time", "site"):
        if needed not in frame.columns:
            raise ValueError(f"sightings frame: missing column '{needed}'")
    extra = [
        pl.lit(default, dtype=_SIGHTING_SCHEMA[name]).alias(name)
        for name, default in _SIGHTING_DEFAULTS.items()
        if name not in frame.columns
    ]
    frame = frame.with_columns(extra) if extra else frame
    return frame.select(
        [pl.col(name).cast(dtype) for name, dtype in _SIGHTING_SCHEMA.items()]
    )


def _normalise_looks(frame: pl.DataFrame) -> pl.DataFrame:
    for needed in ("id", "time", "site", "usable_fraction"):
        if needed not in frame.columns:
            raise ValueError(f"looks frame: missing column '{needed}'")
    if "detection" in frame.columns and frame.schema["detection"] == pl.Struct:
        frame = frame.with_columns(
            pl.col("detection").struct.field(f).alias(f) for f in ("l50_m", "scale_m", "p_max")
        )
    for flat in ("l50_m", "scale_m", "p_max"):
        if flat not in frame.columns and f"detection_{flat}" in frame.columns:
            frame = frame.rename({f"detection_{flat}": flat})
        if flat not in frame.columns:
            raise ValueError(f"looks frame: missing detection column '{flat}' (or struct 'detection')")
    if "vessels_seen" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Int64).alias("vessels_seen"))
    if "evidence_ids" not in frame.columns:
        frame = frame.with_columns(pl.lit([], dtype=pl.List(pl.String)).alias("evidence_ids"))
    return frame.select([pl.col(name).cast(dtype) for name, dtype in _LOOK_SCHEMA.items()])


def _class_expr(length: pl.Expr) -> pl.Expr:
    expr: Any = pl.when(length.is_null() | length.is_nan() | (length <= 0)).then(pl.lit(UNKNOWN_SIZE))
    for low, high, label in SIZE_CLASSES:
        expr = expr.when((length >= low) & (length < high)).then(pl.lit(label))
    return expr.otherwise(pl.lit(UNKNOWN_SIZE))


def _class_length_expr(label: pl.Expr) -> pl.Expr:
    expr: Any = pl.when(pl.lit(False)).then(pl.lit(None, dtype=pl.Float64))
    for low, _high, name in SIZE_CLASSES:
        expr = expr.when(label == name).then(pl.lit(max(low, SMALLEST_DETECTION_LENGTH_M)))
    return expr.otherwise(pl.lit(None, dtype=pl.Float64))


def build_visits_frame(
    sightings: pl.DataFrame,
    looks: pl.DataFrame,
    as_of: datetime,
    *,
    max_gap_days: float = 4.0,
    vessels: Mapping[str, Vessel] | Iterable[Vessel] | None = None,
    split_probability: float = 0.8,
) -> pl.DataFrame:
    """``build_visits`` over polars frames: one row per visit with ``VISIT_FRAME_COLUMNS``, same order and ids."""
    as_of = ensure_utc(as_of)
    if max_gap_days <= 0:
        raise ValueError(f"max_gap_days must be positive, got {max_gap_days}")
    vmap = vessel_map(vessels)
    as_of_lit = pl.lit(as_of).cast(_UTC)
    s = _normalise_sightings(sightings).filter(
        (pl.col("time") <= as_of_lit) & pl.col("site").is_not_null() & (pl.col("object_kind") == "vessel")
    )
    s = s.with_columns(vessel=pl.when(pl.col("vessel").is_null())  # visit_vessel
                       .then(pl.lit(AIS_SHIP_PREFIX) + pl.col("detail").str.extract(AIS_DETAIL_MMSI, 1))
                       .otherwise(pl.col("vessel")))
    # reference length per identified vessel: watchlist, else median measured length
    known = pl.DataFrame(
        {
            "vessel": [k for k, v in vmap.items() if v.length_m is not None and v.length_m > 0],
            "wl_len": [float(v.length_m) for v in vmap.values() if v.length_m is not None and v.length_m > 0],
        },
        schema={"vessel": pl.String, "wl_len": pl.Float64},
    )
    measured = (
        s.filter(pl.col("vessel").is_not_null() & (pl.col("length_m") > 0) & pl.col("length_m").is_finite())
        .group_by("vessel")
        .agg(pl.col("length_m").median().alias("med_len"))
    )
    s = (
        s.join(known, on="vessel", how="left")
        .join(measured, on="vessel", how="left")
        .with_columns(ref_len=pl.coalesce("wl_len", "med_len"))
        .with_columns(
            size_class=pl.when(pl.col("vessel").is_not_null())
            .then(_class_expr(pl.col("ref_len")))
            .otherwise(_class_expr(pl.col("length_m"))),
        )
        .with_columns(
            det_len=pl.when(pl.col("vessel").is_not_null())
            .then(pl.col("ref_len"))
            .otherwise(_class_length_expr(pl.col("size_class"))),
            end=pl.max_horizontal(pl.min_horizontal(pl.coalesce("time_end", "time"), as_of_lit), pl.col("time")),
            # an AIS visit whose ship was seen leaving (see DEPARTURE_SEEN), and whether that is known by as_of
            _left=(pl.col("source_kind") == "ais") & pl.col("detail").fill_null("").str.contains(DEPARTURE_SEEN,
                                                                                                   literal=True),
            _exit_known=pl.coalesce("time_end", "time") + DEPARTURE_KNOWN_AFTER <= as_of_lit,
        )
        .with_columns(
            # a watchlist vessel's AIS visit whose ship was seen leaving, known by as_of
            departed=pl.col("_left") & pl.col("vessel").is_not_null() & pl.col("_exit_known"),
            conf=(
                pl.when(pl.col("_left") & ~pl.col("_exit_known"))
                .then(pl.min_horizontal(pl.col("confidence"), pl.col("detail").str.extract(AIS_LEVEL, 1)
                                        .cast(pl.Int64, strict=False).replace_strict(
                                            LEVEL_WITHOUT_EXIT, default=None, return_dtype=pl.Float64)
                                        .fill_null(pl.col("confidence"))))
                .otherwise(pl.col("confidence"))
                * pl.when(pl.col("vessel").is_not_null())
                .then(pl.col("identification_confidence").fill_null(1.0))
                .otherwise(1.0)
            ).clip(0.0, 1.0),
        )
        .with_columns(vkey=pl.col("vessel").fill_null(""))
        .sort(["site", "vkey", "size_class", "time", "id"])
    )
    # groups are contiguous after the sort: a group id from "key changed" flags, no hashing
    key_changed = pl.lit(False)
    for name in ("site", "vkey", "size_class"):
        key_changed = key_changed | (pl.col(name) != pl.col(name).shift(1)).fill_null(True)
    s = s.with_columns(gid=key_changed.cast(pl.Int64).cum_sum())
    # empty looks that would have caught a vessel of the group's detection length
    combos = (
        s.filter(pl.col("det_len").is_not_null())
        .select("site", "det_len")
        .unique()
        .with_row_index("cid")
        .with_columns(pl.col("cid").cast(pl.Int64))
    )
    lk = _normalise_looks(looks).filter(
        (pl.col("time") <= as_of_lit) & (pl.col("usable_fraction") > 0) & (pl.col("vessels_seen") == 0)
    )
    q = (
        lk.join(combos, on="site", how="inner")
        .with_columns(
            p=pl.col("usable_fraction")
            * pl.col("p_max")
            / (1.0 + (-(pl.col("det_len") - pl.col("l50_m")) / pl.col("scale_m").clip(lower_bound=1e-9)).exp())
        )
        .filter(pl.col("p") >= split_probability)
        .select("cid", qtime="time", qid="id", qev="evidence_ids")
        .sort(["qtime", "qid"])
    )
    s = s.join(combos, on=["site", "det_len"], how="left", maintain_order="left")
    s = s.with_columns(prev_end=pl.col("end").cum_max().shift(1).over("gid"))
    last_neg = (
        s.select("gid", "time", "id", "cid")
        .with_row_index("row")
        .filter(pl.col("cid").is_not_null())
        .sort("time")
        .join_asof(
            q.select("cid", "qtime"), left_on="time", right_on="qtime", by="cid",
            strategy="backward", allow_exact_matches=False, check_sortedness=False,
        )
        .select("row", last_neg="qtime")
    )
    max_gap = timedelta(days=max_gap_days)
    s = (
        s.with_row_index("row")
        .join(last_neg, on="row", how="left")
        .sort("row")
        .with_columns(
            new=pl.col("prev_end").is_null()
            | ((pl.col("time") - pl.col("prev_end")) > max_gap)
            | (pl.col("last_neg").is_not_null() & (pl.col("last_neg") > pl.col("prev_end")))
        )
        .with_columns(vno=pl.col("new").cast(pl.Int64).cum_sum())
    )
    v = (
        s.group_by("vno", maintain_order=True)
        .agg(
            pl.col("site").first(), pl.col("vessel").first(), pl.col("size_class").first(),
            pl.col("cid").first(), pl.col("time").first().alias("start"), pl.col("end").max(),
            pl.col("end").filter(pl.col("departed")).max().alias("departed_at"),
            pl.col("id").alias("sighting_ids"),
            pl.col("evidence_ids").list.explode(keep_nulls=False, empty_as_null=False).alias("evidence_ids"),
            pl.col("source_kind").unique().sort().alias("source_kinds"),
        )
        .with_row_index("vrow")
    )
    # one observation per source kind and instant (see visit_confidence), then 1 - prod(1 - c)
    conf = (
        s.group_by("vno", "source_kind", "time").agg(pl.col("conf").max())
        .group_by("vno").agg((1.0 - (1.0 - pl.col("conf")).product()).alias("confidence"))
    )
    v = v.join(conf, on="vno", how="left", maintain_order="left")
    start_b = (
        v.filter(pl.col("cid").is_not_null()).select("vrow", "cid", "start").sort("start")
        .join_asof(q, left_on="start", right_on="qtime", by="cid", strategy="backward",
                   allow_exact_matches=False, check_sortedness=False)
        .select("vrow", start_bound="qtime", sb_ev="qev")
    )
    end_b = (
        v.filter(pl.col("cid").is_not_null()).select("vrow", "cid", "end").sort("end")
        .join_asof(q, left_on="end", right_on="qtime", by="cid", strategy="forward",
                   allow_exact_matches=False, check_sortedness=False)
        .select("vrow", end_bound="qtime", eb_ev="qev")
    )
    v = (
        v.join(start_b, on="vrow", how="left")
        .join(end_b, on="vrow", how="left")
        .sort("vrow")
        .with_columns(
            evidence_ids=pl.concat_list(
                "evidence_ids", pl.col("sb_ev").fill_null([]), pl.col("eb_ev").fill_null([])
            ).list.eval(pl.element().unique().sort()),  # list.unique().list.sort() is ~30x slower on strings
            # the ship seen leaving at the visit's end bounds it there (the first empty look comes after the end)
            end_bound=pl.when(pl.col("departed_at") >= pl.col("end")).then(pl.col("end")).otherwise(pl.col("end_bound")),
        )
    )
    return v.with_columns(id=_visit_ids(v)).select(VISIT_FRAME_COLUMNS)


def _visit_ids(v: pl.DataFrame) -> pl.Series:
    """``visit_id`` for every row: the hashed text is built in polars (``datetime.isoformat`` spelled as a format),
    only the hash runs per row."""
    start = pl.col("start").dt.convert_time_zone("UTC")
    iso = (
        pl.when(pl.col("start").dt.microsecond() == 0)
        .then(start.dt.strftime("%Y-%m-%dT%H:%M:%S+00:00"))
        .otherwise(start.dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00"))
    )
    identified = pl.col("vessel").is_not_null() & (pl.col("vessel") != "")
    texts = v.select(
        pl.concat_str(
            pl.col("site"),
            pl.col("vessel").fill_null(""),
            pl.when(identified).then(pl.lit("")).otherwise(pl.col("size_class").fill_null("")),
            iso,
            separator="\x1f",
        )
    ).to_series()
    sha = hashlib.sha256
    return pl.Series("id", [f"visit-{sha(t.encode()).hexdigest()[:16]}" for t in texts.to_list()], dtype=pl.String)


def _tuples(series: pl.Series) -> list[tuple[Any, ...]]:
    """A list column as Python tuples: one flat ``to_list`` sliced by lengths is several times faster than
    converting each small list on its own."""
    lengths = series.list.len().fill_null(0).to_list()
    flat = series.list.explode(keep_nulls=False, empty_as_null=False).to_list()
    out: list[tuple[Any, ...]] = []
    i = 0
    for n in lengths:
        out.append(tuple(flat[i : i + n]))
        i += n
    return out


def frame_to_visits(frame: pl.DataFrame) -> list[Visit]:
    """Rows of a ``build_visits_frame`` result as ``Visit`` records (column lists zipped: no dict per row)."""
    plain = [frame[c].to_list() for c in ("id", "site", "vessel", "start", "end", "confidence")]
    nested = [_tuples(frame[c]) for c in ("sighting_ids", "evidence_ids")]
    tail = [frame[c].to_list() for c in ("size_class", "start_bound", "end_bound")]
    kinds = _tuples(frame["source_kinds"])
    return [
        Visit(vid, site, vessel, start, end, float(conf), sids, eids, size, sb, eb, k)
        for vid, site, vessel, start, end, conf, sids, eids, size, sb, eb, k in zip(
            *plain, *nested, *tail, kinds, strict=True
        )
    ]
