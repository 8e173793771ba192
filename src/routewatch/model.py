"""The words of routewatch as typed records, and nothing else.

Conventions that hold for every record here:

* times are timezone-aware ``datetime`` in UTC (``ensure_utc`` converts; naive input is refused);
* positions are WGS84 longitude/latitude in degrees; geometries are shapely objects in WGS84 (EPSG:4326);
* lengths are ground metres, speeds knots, probabilities in [0, 1];
* every derived record (visit, trip, activity, estimate) carries the ids of the evidence it rests on, so a claim
  can be walked back to a report URL, a scene and image chip, or an AIS message.

Ids are deterministic (``stable_id``) so that re-importing or re-deriving the same thing gives the same id:
that is what makes every ingest and analysis idempotent.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import numpy as np
from shapely.geometry.base import BaseGeometry


def lonlat_centre(geometry: BaseGeometry) -> tuple[float, float]:
    """The centroid (lon, lat) of a WGS84 geometry. One drawn in parts either side of the antimeridian (a
    MultiPolygon split at 180 deg) is centred there, not at 0 deg, half a world away, where distances, gap cues and
    map points had put it: no watched site spans half the globe."""
    minx, _, maxx, _ = geometry.bounds
    if maxx - minx > 180.0:
        from shapely import transform

        east = transform(geometry, lambda c: np.column_stack([np.where(c[:, 0] < 0, c[:, 0] + 360.0, c[:, 0]),
                                                               c[:, 1]]))
        c = east.centroid
        return (float(c.x - 360.0 if c.x > 180.0 else c.x), float(c.y))
    c = geometry.centroid
    return (float(c.x), float(c.y))


# An observation dated later than now plus a day (a receiver clock set ahead, a local time read as UTC) is no
# observation yet: an AIS position so dated is a bad row, a scene so dated is refused, and `detect --site` reads
# scenes up to this bound. One rule for both sources.
FUTURE_SLACK = timedelta(days=1)


def latest_observation_time() -> datetime:
    """The latest time an observation can have now: the clock plus :data:`FUTURE_SLACK`."""
    return datetime.now(UTC) + FUTURE_SLACK


def ensure_utc(value: datetime) -> datetime:
    """Return ``value`` in UTC; a naive datetime is refused because its meaning is ambiguous."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()} has no time zone; give it in UTC")
    return value.astimezone(UTC)


# A written time that gives the time of day, not a date alone: a digit, then T or blanks, then the hour
# (2023-10-21T10Z, 20231021T013000, 2023-10-21 01:30); 2023-10-21, 2023-10-21Z and 2023-10-21+00:00 are dates.
# One pattern for every reader that must tell them apart (scenes, fusion input, AIS CSV times).
TIME_OF_DAY_MARK = r"\d[T\s]+\d{2}"


def stable_id(prefix: str, *parts: Any) -> str:
    """A short deterministic id: the same inputs always give the same id (idempotent ingest)."""
    text = "\x1f".join(
        "" if p is None else (p.isoformat() if isinstance(p, datetime) else str(p)) for p in parts
    )
    return f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


class SiteKind(StrEnum):
    BERTH = "berth"
    ANCHORAGE = "anchorage"
    PORT = "port"
    RAIL_YARD = "rail_yard"
    AIRFIELD = "airfield"
    SHIPYARD = "shipyard"
    BORDER_CROSSING = "border_crossing"
    DEPOT = "depot"


class Mode(StrEnum):
    SEA = "sea"
    RAIL = "rail"
    AIR = "air"


class SourceKind(StrEnum):
    """Where a sighting or look came from."""

    IMAGE = "image"
    AIS = "ais"
    REPORT = "report"
    SIMULATED = "simulated"


class EvidenceKind(StrEnum):
    REPORT = "report"  # an analyst or press report: source text and URL
    SCENE = "scene"  # an image product
    CHIP = "chip"  # an image chip around a detection (PNG)
    AIS = "ais"  # an AIS message or a run of positions
    DECLARED = "declared"  # an assumption the user declared (e.g. a coverage schedule)
    DERIVED = "derived"  # produced by routewatch from other evidence


class Status(StrEnum):
    ACTIVE = "active"
    SLOWING = "slowing"
    PAUSED = "paused"
    RESUMED = "resumed"
    UNDETERMINED = "undetermined"  # not enough coverage to call


@dataclass(frozen=True, slots=True)
class Site:
    """A watched place. ``geometry`` is a WGS84 polygon (or multipolygon)."""

    key: str
    name: str
    kind: SiteKind
    geometry: BaseGeometry
    country: str | None = None
    notes: str = ""
    sources: tuple[str, ...] = ()

    @property
    def centroid_lonlat(self) -> tuple[float, float]:
        return lonlat_centre(self.geometry)


@dataclass(frozen=True, slots=True)
class Route:
    """An ordered pair of site groups with a mode: ``rajin -> {dunai, vostochny}``.

    ``max_speed_kn`` bounds feasible transits (sea distance / speed); ``max_transit_days`` bounds how long after an
    origin visit a destination visit still counts as the same trip. ``vessels`` restricts the route to watchlist
    vessels (empty: any vessel).
    """

    key: str
    name: str
    origin: tuple[str, ...]
    destination: tuple[str, ...]
    mode: Mode = Mode.SEA
    vessels: tuple[str, ...] = ()
    max_speed_kn: float = 16.0
    max_transit_days: float = 10.0
    notes: str = ""
    sources: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Vessel:
    """A watchlist asset. Dimensions in metres, capacity in twenty-foot equivalent units (TEU)."""

    key: str
    name: str
    imo: str | None = None
    mmsi: str | None = None
    call_sign: str | None = None
    vessel_type: str = ""
    length_m: float | None = None
    beam_m: float | None = None
    capacity_teu: float | None = None
    flag: str | None = None
    sanctions: str = ""
    notes: str = ""
    sources: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Evidence:
    """Something a claim rests on: a report with its URL, a scene, an image chip, an AIS message, an assumption."""

    id: str
    kind: EvidenceKind
    description: str
    source: str = ""
    uri: str | None = None
    observed_at: datetime | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Scene:
    """One image product. ``footprint`` is a WGS84 polygon; ``resolution_m`` the ground sample distance."""

    id: str
    sensor: str  # "sentinel-1", "sentinel-2", "planetscope", "skysat", "maxar", "simulated-sar", ...
    acquired: datetime
    footprint: BaseGeometry | None
    resolution_m: float
    cloud_cover: float | None = None  # fraction [0, 1] of the whole scene, as the provider states it
    uri: str | None = None
    collection: str | None = None
    simulated: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DetectionModel:
    """Probability that a look detects a vessel of a given length: a logistic curve in length.

    p(L) = p_max / (1 + exp(-(L - l50_m) / scale_m)). ``l50_m`` is the length detected half the time; ``p_max``
    the ceiling for large vessels (a ship hidden among others at a berth is sometimes missed even in good images).
    """

    l50_m: float
    scale_m: float
    p_max: float = 0.98

    def probability(self, length_m: float) -> float:
        z = (length_m - self.l50_m) / max(self.scale_m, 1e-9)
        return self.p_max / (1.0 + math.exp(-z))


# Documented defaults per sensor. They are priors, recalibrated by the imagery evaluation (docs/coverage.md):
# roughly, a vessel needs about 4-5 resolution cells along its length to be detected half the time at a berth.
SENSOR_DETECTION: dict[str, DetectionModel] = {
    "sentinel-1": DetectionModel(l50_m=60.0, scale_m=12.0, p_max=0.95),
    "sentinel-2": DetectionModel(l50_m=45.0, scale_m=10.0, p_max=0.95),
    "planetscope": DetectionModel(l50_m=15.0, scale_m=4.0, p_max=0.97),
    "skysat": DetectionModel(l50_m=5.0, scale_m=1.5, p_max=0.98),
    "airbus": DetectionModel(l50_m=5.0, scale_m=1.5, p_max=0.98),
    "maxar": DetectionModel(l50_m=3.0, scale_m=1.0, p_max=0.98),
    "report": DetectionModel(l50_m=10.0, scale_m=3.0, p_max=0.9),
}


@dataclass(frozen=True, slots=True)
class Look:
    """One chance to see a site: the coverage ledger is the set of looks, and a look that saw nothing is evidence.

    ``usable_fraction`` is the share of the site's water that was imaged clear of cloud and no-data (0 means an
    unusable look, recorded all the same). ``detection`` gives the probability of detecting a vessel of a length
    when the whole site was usable; ``probability(length)`` scales it by the usable fraction.
    """

    id: str
    site: str
    time: datetime
    sensor: str
    usable_fraction: float
    detection: DetectionModel
    source_kind: SourceKind
    scene_id: str | None = None
    evidence_ids: tuple[str, ...] = ()
    vessels_seen: int | None = None  # number of vessels seen in this look, when known (0 for a negative look)
    simulated: bool = False
    note: str = ""

    @property
    def usable(self) -> bool:
        return self.usable_fraction > 0.0

    def probability(self, length_m: float) -> float:
        return self.usable_fraction * self.detection.probability(length_m)


@dataclass(frozen=True, slots=True)
class Sighting:
    """One observation of an object at a place and time.

    ``vessel`` is the watchlist key when identified (with ``identification_confidence``), else None.
    ``confidence`` is the probability the observation itself is right (source grade, detector score).
    ``time_end`` is set when a report covers a period (``present`` from 16 to 21 Feb).
    """

    id: str
    time: datetime
    source_kind: SourceKind
    site: str | None = None
    vessel: str | None = None
    object_kind: str = "vessel"  # vessel, containers, railcars, aircraft
    event: str = "present"  # present, loading, unloading, arrival, departure, detection, ais_position
    time_end: datetime | None = None
    lon: float | None = None
    lat: float | None = None
    length_m: float | None = None
    width_m: float | None = None
    heading_deg: float | None = None
    score: float | None = None
    count: int = 1
    confidence: float = 0.7
    identification_confidence: float | None = None
    look_id: str | None = None
    evidence_ids: tuple[str, ...] = ()
    detail: str = ""
    simulated: bool = False

    @property
    def end(self) -> datetime:
        return self.time_end or self.time


@dataclass(frozen=True, slots=True)
class AggregateObservation:
    """A reported count that cannot be split into sightings: "at least 32 trips", "activity on 49 of 109 days".

    ``scope`` is a site key or a route written ``origin>destination``. Kept as evidence beside what routewatch
    counts itself, never silently merged into it.
    """

    id: str
    start: datetime
    end: datetime
    scope: str
    event: str  # trip_count, visit_count, coverage, container_stack, railcar_count, route_change, ...
    count: float | None
    denominator: float | None
    detail: str
    evidence_ids: tuple[str, ...]
    subjects: tuple[str, ...] = ()  # vessel keys or free names the report is about
    confidence: float = 0.7
    lower_bound: bool = False  # "at least N"


@dataclass(frozen=True, slots=True)
class Visit:
    """Presence of a vessel (or an unidentified vessel of a size class) at a site over [start, end].

    ``start``/``end`` are the first and last evidence of presence; ``start_bound``/``end_bound`` widen them to the
    nearest looks that showed the site empty (None when unknown), which is what trip timing uses.
    """

    id: str
    site: str
    vessel: str | None
    start: datetime
    end: datetime
    confidence: float
    sighting_ids: tuple[str, ...]
    evidence_ids: tuple[str, ...] = ()
    size_class: str | None = None
    start_bound: datetime | None = None
    end_bound: datetime | None = None
    source_kinds: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Trip:
    """A visit at a route's origin followed by a visit at its destination in a feasible transit time."""

    id: str
    route: str
    vessel: str | None
    origin_visit: str | None
    destination_visit: str | None
    depart: datetime
    arrive: datetime | None
    confidence: float
    evidence_ids: tuple[str, ...] = ()
    kind: str = "observed"  # observed (both ends), origin_only (destination not seen), fleet (unidentified)
    distance_nm: float | None = None


@dataclass(frozen=True, slots=True)
class CoverageAssumption:
    """A declared coverage schedule, used where the actual looks are not in the store.

    ``every_days`` is the revisit, ``usable`` the share of looks that are usable (cloud, fog), ``sensor`` picks the
    detection model. "PlanetScope daily, 55 % usable" is ``CoverageAssumption("planetscope", 1.0, 0.55)``.
    """

    sensor: str
    every_days: float
    usable: float
    site: str | None = None  # None: every site
    label: str = ""

    def describe(self) -> str:
        if self.label:
            return self.label
        every = "daily" if self.every_days == 1 else f"every {self.every_days:g} days"
        return f"{self.sensor} {every}, {self.usable:.0%} usable"


@dataclass(frozen=True, slots=True)
class Activity:
    """A route's state as of a date: the judgement, with the numbers behind it.

    ``probability`` depends on the status (docs/judgement.md): for paused and undetermined it is the evidence of a
    pause, 1 - ``p_silence_if_active``; for active it is ``p_silence_if_active`` itself (how unremarkable the
    silence is), for resumed the pause probability of the gap that ended, for slowing the change-point
    probability. ``p_silence_if_active`` is the chance of the observed silence had the route kept its cadence;
    ``coverage`` says whether that rests on actual looks or a declared schedule.
    """

    route: str
    as_of: datetime
    status: Status
    probability: float
    last_activity: datetime | None
    last_activity_evidence: tuple[str, ...]
    days_quiet: float | None
    p_silence_if_active: float | None
    expected_gap_days: float | None
    trips_total: int
    trips_recent: int
    coverage: str
    usable_looks_quiet: int
    days_to_confident_call: float | None
    explanation: str
    evidence_ids: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Estimate:
    """A derived quantity with a central value and an interval (``level`` is the interval's coverage)."""

    name: str
    unit: str
    value: float
    low: float
    high: float
    level: float
    assumptions: dict[str, Any]
    evidence_ids: tuple[str, ...] = ()
