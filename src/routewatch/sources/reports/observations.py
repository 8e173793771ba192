"""Analyst observations (CSV or JSON) into evidence, sightings, looks and aggregate counts.

The schema, with every column and allowed value, is in docs/observations.md. A file is parsed and validated whole
before anything is written, then stored in one transaction: any error raises ``ObservationError`` naming the file,
line and field, and the store is left as it was. Ids are ``stable_id`` over each row's content (or its ``id``
column), never its line number, so importing the same rows again adds nothing.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from routewatch.model import (
    SENSOR_DETECTION,
    AggregateObservation,
    Evidence,
    EvidenceKind,
    Look,
    Sighting,
    SourceKind,
    stable_id,
)
from routewatch.sources.reports.reading import ObservationError, read_rows

if TYPE_CHECKING:
    from routewatch.store import Store
    from routewatch.watchlist import Watchlist

__all__ = ["ImportResult", "ObservationError", "Observations", "import_observations", "parse_observations"]

REQUIRED = ("date_start", "date_end", "subject", "subject_kind", "site", "event", "detail", "source", "confidence")
OPTIONAL = ("source_url", "time_start", "time_end", "count", "denominator", "lower_bound", "length_m", "lon", "lat",
            "id", "sensor")
COLUMNS = REQUIRED + OPTIONAL

SIGHTING_EVENTS = frozenset({"present", "loading", "unloading", "arrival", "departure"})
NEGATIVE_EVENTS = {"none_seen": "none_seen", "empty": "none_seen", "no_vessel": "none_seen",
                   "negative_look": "none_seen"}
COUNT_EVENTS = frozenset({"trip_count", "visit_count", "coverage", "container_stack", "railcar_count",
                          "route_change", "round_trip", "transit"})
NEEDS_COUNT = frozenset({"trip_count", "visit_count", "coverage", "container_stack", "railcar_count"})
SUBJECT_KINDS = frozenset({"vessel", "aircraft", "rail", "aggregate"})
SIGHTING_KINDS = frozenset({"vessel", "aircraft"})
GRADES = {"primary": 0.9, "secondary": 0.7, "tertiary": 0.5, "unverified": 0.5}
LENGTH_RE = re.compile(r"(?:about|approx\.?|approximately|around|c\.|~)?\s*(\d+(?:\.\d+)?)\s*m\b", re.IGNORECASE)
TRUE, FALSE = frozenset({"true", "yes", "1"}), frozenset({"false", "no", "0", ""})


@dataclass(frozen=True)
class Observations:
    """What one file makes: evidence (one per row) and the records linked to it."""

    evidence: list[Evidence] = field(default_factory=list)
    sightings: list[Sighting] = field(default_factory=list)
    looks: list[Look] = field(default_factory=list)
    aggregates: list[AggregateObservation] = field(default_factory=list)
    rows: int = 0
    uncounted: list[tuple[int, str]] = field(default_factory=list)  # (line, event) of count rows with no count


@dataclass(frozen=True)
class ImportResult:
    """How many records a file had and how many of them were new to the store."""

    path: Path
    sha256: str
    rows: int
    evidence: int = 0
    sightings: int = 0
    looks: int = 0
    aggregates: int = 0
    already_imported: bool = False
    uncounted: tuple[tuple[int, str], ...] = ()

    def __str__(self) -> str:
        if self.already_imported:
            return f"{self.path.name}: already imported (sha256 {self.sha256[:12]}), nothing added"
        text = (f"{self.path.name}: {self.rows} rows; added {self.sightings} sightings, {self.looks} looks, "
                f"{self.aggregates} aggregate counts, {self.evidence} evidence")
        if self.uncounted:
            lines = ", ".join(f"{line} ({event})" for line, event in self.uncounted[:10])
            text += (f"\nwarning: {len(self.uncounted)} count rows have no count and count nothing (kept as "
                     f"notes with their evidence): line {lines}; give the number in the count column")
        return text


class _Row:
    """One raw row with typed accessors that raise errors naming the file, line and field."""

    def __init__(self, path: Path, line: int, raw: dict[str, str]) -> None:
        self.path, self.line = path, line
        self.raw = {k: v.strip() for k, v in raw.items()}

    def error(self, fieldname: str, message: str) -> ObservationError:
        return ObservationError(self.path, self.line, fieldname, message)

    def text(self, name: str, required: bool = False) -> str:
        value = self.raw.get(name, "")
        if required and not value:
            raise self.error(name, "a value is required")
        return value

    def day(self, name: str) -> date | None:
        value = self.text(name)
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise self.error(name, f"bad date {value!r}: write YYYY-MM-DD") from None

    def instant(self, name: str) -> datetime | None:
        value = self.text(name)
        if not value:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise self.error(name, f"bad time {value!r}: write ISO 8601, e.g. 2023-10-20T02:01:00Z") from None
        if parsed.tzinfo is None:
            raise self.error(name, f"time {value!r} has no time zone: add Z (UTC) or an offset like +09:00")
        return parsed.astimezone(UTC)

    def number(self, name: str, low: float | None = None, high: float | None = None,
               low_open: bool = False) -> float | None:
        value = self.text(name)
        if not value:
            return None
        try:
            x = float(value)
        except ValueError:
            raise self.error(name, f"not a number: {value!r}") from None
        if not math.isfinite(x) or (low is not None and (x <= low if low_open else x < low)) or \
                (high is not None and x > high):
            bounds = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'}]"
            raise self.error(name, f"{value} is outside {bounds}")
        return x

    def flag(self, name: str) -> bool:
        value = self.text(name).lower()
        if value in TRUE:
            return True
        if value in FALSE:
            return False
        raise self.error(name, f"expected true or false, got {value!r}")


def _confidence(row: _Row) -> float:
    value = row.text("confidence", required=True).lower()
    if value in GRADES:
        return GRADES[value]
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not 0.0 <= x <= 1.0:
        raise row.error("confidence", f"{value!r}: use primary, secondary, tertiary, unverified or a number in [0, 1]")
    return x


def _window(row: _Row) -> tuple[datetime, datetime]:
    """[start, end] in UTC: precise times win; a date means the whole UTC day, and date_end is inclusive."""
    d0, d1 = row.day("date_start"), row.day("date_end")
    t0, t1 = row.instant("time_start"), row.instant("time_end")
    if d0 is None and t0 is None:
        raise row.error("date_start", "a value is required (or give time_start)")
    if d0 is not None and d1 is not None and d1 < d0:
        raise row.error("date_end", f"{d1} is before date_start {d0}")
    start = t0 or datetime.combine(d0, time.min, UTC)  # type: ignore[arg-type]
    if t1 is not None:
        end = t1
    elif t0 is not None and (d1 is None or d0 is None or d1 <= d0):
        end = t0  # a single-day row with a precise time: the time is the observation
    else:
        end = datetime.combine(d1 or d0 or start.date(), time.max, UTC)
    if end < start:
        raise row.error("time_end" if t1 else "date_end", f"end {end.isoformat()} is before start {start.isoformat()}")
    return start, end


class _Resolver:
    """Site keys, group names and vessels of the watchlist, matched case-insensitively."""

    def __init__(self, watchlist: Watchlist) -> None:
        self.watchlist = watchlist
        self.sites = {k.casefold(): k for k in watchlist.sites}
        groups: dict[str, tuple[str, ...]] = getattr(watchlist, "groups", {}) or {}
        self.groups = {k.casefold(): (k, tuple(v)) for k, v in groups.items()}

    def site(self, row: _Row, value: str) -> str:
        key = self.sites.get(value.casefold())
        if key is None:
            raise row.error("site", f"unknown site {value!r}; watchlist sites: {', '.join(sorted(self.sites))}")
        return key

    def scope_end(self, row: _Row, value: str) -> tuple[str, tuple[str, ...]]:
        """A site key or a group name -> (normalised name, site keys)."""
        folded = value.strip().casefold()
        if folded in self.sites:
            return self.sites[folded], (self.sites[folded],)
        if folded in self.groups:
            return self.groups[folded]
        known = sorted(self.sites) + sorted(self.groups)
        raise row.error("site", f"unknown site or group {value.strip()!r}; known: {', '.join(known)}")

    def vessel(self, subject: str) -> str | None:
        found = self.watchlist.vessel_by_name(subject)
        return found.key if found else None


def _row_records(row: _Row, res: _Resolver, out: Observations) -> str | None:
    """Validate one row and append what it makes to ``out``; returns its ``id`` column (for duplicate checks)."""
    subject_kind = row.text("subject_kind", required=True).lower()
    if subject_kind not in SUBJECT_KINDS:
        raise row.error("subject_kind", f"{subject_kind!r}: use one of {', '.join(sorted(SUBJECT_KINDS))}")
    event = row.text("event", required=True).lower()
    event = NEGATIVE_EVENTS.get(event, event)
    if event not in SIGHTING_EVENTS | COUNT_EVENTS | {"none_seen"}:
        allowed = sorted(SIGHTING_EVENTS | COUNT_EVENTS | set(NEGATIVE_EVENTS))
        raise row.error("event", f"unknown event {event!r}; allowed: {', '.join(allowed)}")
    site_text = row.text("site", required=True)
    source = row.text("source", required=True)
    confidence = _confidence(row)
    start, end = _window(row)
    sensor = row.text("sensor").lower() or "report"
    if sensor not in SENSOR_DETECTION:
        raise row.error("sensor", f"unknown sensor {sensor!r}; known: {', '.join(sorted(SENSOR_DETECTION))}")
    count = row.number("count", low=0.0)
    denominator = row.number("denominator", low=0.0, low_open=True)
    lower_bound = row.flag("lower_bound")
    length_m = row.number("length_m", low=0.0, low_open=True)
    lon, lat = row.number("lon", -180.0, 180.0), row.number("lat", -90.0, 90.0)
    if (lon is None) != (lat is None):
        raise row.error("lat" if lat is None else "lon", "give lon and lat together")
    subject = row.text("subject")
    subjects = [s.strip() for s in subject.split(";") if s.strip()]
    detail, url, row_id = row.text("detail"), row.text("source_url") or None, row.text("id") or None

    route_scope = ">" in site_text
    if event == "none_seen":
        kind = "negative_look"
    elif route_scope or subject_kind not in SIGHTING_KINDS or event in COUNT_EVENTS:
        kind = "aggregate"
    else:
        kind = "sighting"

    scope_sites: dict[str, list[str]] = {}
    if kind == "aggregate":
        parts = [p for p in site_text.split(">")] if route_scope else [site_text]
        if len(parts) > 2 or any(not p.strip() for p in parts):
            raise row.error("site", f"{site_text!r}: write a route scope as origin>destination")
        ends = [res.scope_end(row, p) for p in parts]
        scope = ">".join(name for name, _ in ends)
        scope_sites = {label: list(keys) for label, (_, keys) in zip(("origin", "destination"), ends, strict=False)}
        if event == "coverage" and count is not None and denominator is not None and count > denominator:
            raise row.error("count", f"{count:g} active days is more than the {denominator:g} imaged days")
    else:
        if route_scope:
            raise row.error("site", f"{site_text!r}: a {event} row needs one site, not a route scope")
        scope = res.site(row, site_text)
        for name in ("denominator",):
            if row.text(name):
                raise row.error(name, "only count rows (aggregates) take a denominator")
        if lower_bound:
            raise row.error("lower_bound", "only count rows (aggregates) can be lower bounds")
    if kind == "sighting":
        if not subjects:
            raise row.error("subject", f"a {event} row needs a subject (vessel names separated by ';')")
        if count is not None and (count < 1 or count != int(count) or len(subjects) > 1):
            raise row.error("count", "on a sighting row, count is a whole number >= 1 for a single subject")

    # Ids rest on the content (or the id column), never on the line number.
    key: tuple[Any, ...] = ("id", row_id) if row_id else (
        start, end, subject.casefold(), subject_kind, scope, event, detail, source, confidence, url, count,
        denominator, lower_bound, length_m, lon, lat, sensor)
    ev_id = stable_id("ev", "report", *key)
    attributes: dict[str, Any] = {
        "file": row.path.name, "line": row.line, "subject": subject, "subject_kind": subject_kind,
        "site": site_text, "event": row.text("event"), "confidence": row.text("confidence"),
        "window_start": start.isoformat(), "window_end": end.isoformat(), "record": kind,
    }
    if scope_sites:
        attributes["scope_sites"] = scope_sites
    for name in ("count", "denominator", "length_m", "sensor", "id"):
        if row.text(name):
            attributes[name] = row.text(name)
    description = detail or f"{event} at {site_text}: {subject}".strip(": ")
    out.evidence.append(Evidence(ev_id, EvidenceKind.REPORT, description, source=source, uri=url,
                                 observed_at=start, attributes=attributes))
    evidence_ids = (ev_id,)
    vessels = [res.vessel(s) for s in subjects]

    if kind == "aggregate":
        if count is None and event in NEEDS_COUNT:  # a number written only in the detail text counts nothing
            out.uncounted.append((row.line, event))
        named = tuple(v or s for v, s in zip(vessels, subjects, strict=True))
        out.aggregates.append(AggregateObservation(
            stable_id("agg", ev_id), start, end, scope, event, count, denominator, detail, evidence_ids,
            subjects=named, confidence=confidence, lower_bound=lower_bound))
        return row_id
    detection = SENSOR_DETECTION[sensor]
    look_id = stable_id("look", ev_id)
    seen = 0 if kind == "negative_look" else int(count or 1) * len(subjects)
    out.looks.append(Look(look_id, scope, start, sensor, 1.0, detection, SourceKind.REPORT,
                          evidence_ids=evidence_ids, vessels_seen=seen, note=detail))
    if kind == "sighting":
        for subject_text, vessel in zip(subjects, vessels, strict=True):
            length = length_m
            if length is None and vessel is None:
                m = LENGTH_RE.search(subject_text)
                length = float(m.group(1)) if m else None
            out.sightings.append(Sighting(
                stable_id("sig", ev_id, subject_text.casefold()), start, SourceKind.REPORT, site=scope,
                vessel=vessel, object_kind=subject_kind, event=event, time_end=end if end > start else None,
                lon=lon, lat=lat, length_m=length, count=int(count or 1), confidence=confidence,
                identification_confidence=confidence if vessel else None, look_id=look_id,
                evidence_ids=evidence_ids, detail=detail))
    return row_id


def parse_observations(path: str | Path, watchlist: Watchlist, data: bytes | None = None) -> Observations:
    """Parse and validate a whole file into records, or raise ``ObservationError`` at the first problem."""
    path = Path(path)
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ObservationError(path, None, "file", f"cannot read: {exc.strerror or exc}") from None
    raw_rows = read_rows(path, data, COLUMNS, REQUIRED)
    res = _Resolver(watchlist)
    out = Observations(rows=len(raw_rows))
    ids: dict[str, int] = {}
    for line, raw in raw_rows:
        row = _Row(path, line, raw)
        row_id = _row_records(row, res, out)
        if row_id is not None:
            if row_id in ids:
                raise row.error("id", f"duplicate id {row_id!r} (first on line {ids[row_id]})")
            ids[row_id] = line
    return out


def import_observations(store: Store, path: str | Path, watchlist: Watchlist, *,
                        force: bool = False) -> ImportResult:
    """Validate a whole observation file, then store everything it makes in one transaction.

    A file already imported (same sha256) is skipped unless ``force``; either way re-importing adds nothing,
    because every id is derived from the row's content.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ObservationError(path, None, "file", f"cannot read: {exc.strerror or exc}") from None
    sha = hashlib.sha256(data).hexdigest()
    if not force and store.has_import(sha):
        return ImportResult(path, sha, rows=0, already_imported=True)
    obs = parse_observations(path, watchlist, data)
    with store.transaction() as conn:
        evidence = store.add_evidence(obs.evidence, conn=conn)
        looks = store.add_looks(obs.looks, conn=conn)
        sightings = store.add_sightings(obs.sightings, conn=conn)
        aggregates = store.add_aggregates(obs.aggregates, conn=conn)
        store.record_import(sha, str(path), "observations", obs.rows, conn=conn)
    return ImportResult(path, sha, obs.rows, evidence, sightings, looks, aggregates, uncounted=tuple(obs.uncounted))
