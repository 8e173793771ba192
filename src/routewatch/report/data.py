"""Everything the report, the exports and the dashboard show, read once from the store as of a date.

The surfaces never compute a judgement themselves: they read records (sites, looks, sightings, visits, trips,
activities, evidence) and arrange them per route, so that what an editor reads and what the API serves are the same
numbers. Records later than ``as_of`` are left out, so a report for a past date shows what was known then.
"""

from __future__ import annotations

import base64
import dataclasses
import mimetypes
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from routewatch.analysis.activity import rests_on_declared_coverage
from routewatch.fuse.io import labelled_once
from routewatch.model import (
    Activity,
    AggregateObservation,
    Estimate,
    Evidence,
    Look,
    Route,
    Scene,
    Sighting,
    Site,
    Trip,
    Vessel,
    Visit,
    ensure_utc,
)

CHIP_MAX_BYTES = 2_000_000  # a chip is a small crop; anything larger is not embedded
DEFAULT_VESSEL_LENGTH_M = 120.0  # used for coverage figures when a route names no vessel with a length


@dataclass(frozen=True, slots=True)
class QuietCoverage:
    """The looks at a route's origin between its last activity and ``as_of``: what the silence rests on."""

    start: datetime | None
    end: datetime
    looks: int
    usable_looks: int
    mean_p_detect: float | None  # mean detection probability of the usable looks for the route's vessel length
    sensors: dict[str, int]
    simulated_looks: int
    vessel_length_m: float

    def describe(self) -> str:
        if self.start is None:
            return "no activity on record, so there is no quiet period to cover"
        if self.looks == 0:
            return "no looks at the origin since the last activity: the silence is not evidence of a pause"
        sensors = ", ".join(f"{n} {s}" for s, n in sorted(self.sensors.items()))
        p = "" if self.mean_p_detect is None else (
            f"; mean detection probability {self.mean_p_detect:.0%} for a {self.vessel_length_m:.0f} m vessel")
        return f"{self.usable_looks} usable of {self.looks} looks ({sensors}){p}"


@dataclass(frozen=True, slots=True)
class RouteView:
    """One route as of a date: its judgement, trips, origin looks and the coverage of its quiet period."""

    route: Route
    activity: Activity | None
    trips: list[Trip]
    visits: list[Visit]
    origin_looks: list[Look]
    quiet: QuietCoverage
    simulated_notes: list[str]

    @property
    def simulated(self) -> bool:
        return bool(self.simulated_notes)

    @property
    def quiet_text(self) -> str:
        """The coverage of the quiet period as the judgement used it: a declared schedule says so, beside the
        ledger's own looks, so a reader never takes an assumption for observed coverage."""
        ledger = self.quiet.describe()
        a = self.activity
        if a is not None and rests_on_declared_coverage(a):
            return (f"{a.usable_looks_quiet} looks assumed by the declared schedule (an assumption, not observed "
                    f"coverage); in the ledger: {ledger}")
        return ledger


@dataclass
class ReportData:
    """Records as of ``as_of`` plus per-route views; ``workspace_root`` resolves relative chip paths."""

    as_of: datetime
    sites: dict[str, Site]
    routes: dict[str, Route]
    vessels: dict[str, Vessel]
    looks: list[Look]
    sightings: list[Sighting]
    visits: list[Visit]
    trips: list[Trip]
    scenes: dict[str, Scene]
    evidence: dict[str, Evidence]
    activities: dict[str, Activity]
    estimates: list[Estimate]
    aggregates: list[AggregateObservation] = field(default_factory=list)
    views: list[RouteView] = field(default_factory=list)
    workspace_root: Path | None = None
    labelled_from: dict[str, str] = field(default_factory=dict)  # fusion's copy id -> the detection it labels

    @property
    def looks_by_id(self) -> dict[str, Look]:
        return {lk.id: lk for lk in self.looks}

    def trip_evidence(self, trip: Trip) -> dict[str, list[Evidence]]:
        """The evidence a trip rests on, by kind: its own, its visits' and their sightings'."""
        visits = {v.id: v for v in self.visits}
        sightings = {s.id: s for s in self.sightings}
        ids: list[str] = list(trip.evidence_ids)
        for vid in (trip.origin_visit, trip.destination_visit):
            visit = visits.get(vid or "")
            if visit is None:
                continue
            ids.extend(visit.evidence_ids)
            for sid in visit.sighting_ids:
                if sid in sightings:
                    ids.extend(sightings[sid].evidence_ids)
        grouped: dict[str, list[Evidence]] = {}
        for eid in dict.fromkeys(ids):
            ev = self.evidence.get(eid)
            if ev is not None:
                grouped.setdefault(str(ev.kind), []).append(ev)
        return grouped

    def trip_scenes(self, trip: Trip) -> list[Scene]:
        """Scenes behind a trip's image sightings (sighting -> look -> scene)."""
        visits = {v.id: v for v in self.visits}
        sightings = {s.id: s for s in self.sightings}
        looks = self.looks_by_id
        found: dict[str, Scene] = {}
        for vid in (trip.origin_visit, trip.destination_visit):
            visit = visits.get(vid or "")
            for sid in visit.sighting_ids if visit else ():
                look = looks.get(sightings[sid].look_id or "") if sid in sightings else None
                if look and look.scene_id in self.scenes:
                    found[look.scene_id] = self.scenes[look.scene_id]
        return list(found.values())

    def chip_data_uri(self, ev: Evidence) -> str | None:
        return chip_data_uri(ev, self.workspace_root)


def chip_data_uri(ev: Evidence, root: Path | None = None) -> str | None:
    """A chip as a ``data:`` URI (from ``attributes['png_base64']`` or a local file), or None when unreadable."""
    if ev.attributes.get("png_base64"):
        return "data:image/png;base64," + str(ev.attributes["png_base64"])
    path = chip_path(ev, root)
    if path is None:
        return None
    data = path.read_bytes()
    mime = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg" if data[:2] == b"\xff\xd8" else None
    if mime is None:
        return None
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def chip_path(ev: Evidence, root: Path | None = None) -> Path | None:
    """The local file of a chip (``file://`` URI, absolute path, or a path relative to the workspace)."""
    uri = ev.uri or str(ev.attributes.get("path", "") or "")
    if not uri or uri.startswith(("data:", "http://", "https://")):
        return None
    path = Path(unquote(urlparse(uri).path)) if uri.startswith("file://") else Path(uri)
    if not path.is_absolute():
        if root is None:
            return None
        path = root / path
    try:
        if not path.is_file() or path.stat().st_size > CHIP_MAX_BYTES:
            return None
    except OSError:
        return None
    if (mimetypes.guess_type(path.name)[0] or "").split("/")[0] not in ("image", ""):
        return None
    return path


def _call(store: Any, name: str, *args: Any, **kwargs: Any) -> list[Any]:
    """Read a collection from the store; a store that lacks the reader gives nothing rather than failing."""
    reader = getattr(store, name, None)
    if reader is None:
        return []
    found = reader(*args, **kwargs)
    return list(found.values()) if isinstance(found, dict) else list(found)


def _as_estimate(value: Any) -> Estimate | None:
    if isinstance(value, Estimate):
        return value
    if isinstance(value, dict):
        names = {f.name for f in fields(Estimate)}
        try:
            return Estimate(**{k: v for k, v in value.items() if k in names})
        except TypeError:
            return None
    return None


def latest_activities(activities: Iterable[Activity], as_of: datetime) -> dict[str, Activity]:
    """Per route, the most recent judgement made on or before ``as_of``."""
    best: dict[str, Activity] = {}
    for act in activities:
        if act.as_of <= as_of and (act.route not in best or act.as_of > best[act.route].as_of):
            best[act.route] = act
    return best


ANALYZE_HINT = ("no analysis in the store yet, so there are no visits, trips or route status to show: run "
                "`routewatch analyze --as-of DATE` first")


def stored_as_of(store: Any) -> datetime | None:
    """The date the store's visits and trips were derived for (``Store.derived_as_of``), or None."""
    reader = getattr(store, "derived_as_of", None)
    found = reader() if reader is not None else None
    return ensure_utc(found) if found is not None else None


def derive_as_of(store: Any, watchlist: Any, as_of: datetime, coverage: Any = None) -> tuple[Any | None, str | None]:
    """The analysis to show for ``as_of``, as ``report --as-of`` and ``analyze --as-of`` derive it.

    Returns (analysis, note). The stored visits, trips and judgements are used (analysis None) when they were
    derived for exactly ``as_of``; otherwise they are re-derived for ``as_of`` without writing anything, so
    that no record later than ``as_of`` is used and a later date is judged afresh. A store never analysed, or
    one without a watchlist to re-derive from, gives None and a note saying what to run.
    """
    as_of = ensure_utc(as_of)
    derived = stored_as_of(store)
    if derived is None and watchlist is None:
        return None, ANALYZE_HINT
    if derived == as_of and coverage is None and not declared_judgements(store, as_of):
        return None, None
    if watchlist is None:
        return None, (f"the stored visits and trips were derived as of {derived:%Y-%m-%d %H:%M} UTC and there is no "
                      f"watchlist to re-derive them for {as_of:%Y-%m-%d %H:%M} UTC: run `routewatch analyze "
                      f"--as-of {as_of:%Y-%m-%d}` in the workspace")
    from routewatch.pipeline import analyze

    return analyze(store, watchlist, as_of, coverage=coverage, persist=False), None


def declared_judgements(store: Any, as_of: datetime) -> bool:
    """Whether the judgements stored for ``as_of`` were made under a declared coverage schedule (``analyze -c``):
    then they are not what the ledger says for that date, and the date is derived afresh."""
    reader = getattr(store, "activities", None)
    if reader is None:
        return False
    return any(rests_on_declared_coverage(a) for a in reader(as_of=as_of))


def gather(store: Any, as_of: datetime, analysis: Any | None = None, workspace_root: Path | None = None) -> ReportData:
    """Read the store as of ``as_of``; ``analysis`` (an AnalysisResult) overrides stored visits/trips/activities."""
    as_of = ensure_utc(as_of)
    sites = {s.key: s for s in _call(store, "sites")}
    routes = {r.key: r for r in _call(store, "routes")}
    vessels = {v.key: v for v in _call(store, "vessels")}
    looks = sorted((lk for lk in _call(store, "looks", until=as_of) if lk.time <= as_of), key=lambda lk: lk.time)
    # a detection fusion labelled is listed once, as its labelled copy (the analysis reads it so too)
    sightings, labelled_from = labelled_once(s for s in _call(store, "sightings", until=as_of) if s.time <= as_of)
    sightings.sort(key=lambda s: s.time)
    as_copy = {orig: copy for copy, orig in labelled_from.items()}
    scenes = {sc.id: sc for sc in _call(store, "scenes") if sc.acquired <= as_of}
    if analysis is not None:
        visits = list(getattr(analysis, "visits", []))
        trips = list(getattr(analysis, "trips", []))
        acts = getattr(analysis, "activities", [])
        acts = list(acts.values()) if isinstance(acts, dict) else list(acts)
        found = getattr(analysis, "estimates", [])
        found = [e for group in found.values() for e in group] if isinstance(found, dict) else list(found)
        estimates = [e for e in map(_as_estimate, found) if e is not None]
    else:
        visits, trips, acts, estimates = _call(store, "visits"), _call(store, "trips"), _call(store, "activities"), []
    visits = sorted((v for v in visits if v.start <= as_of), key=lambda v: v.start)
    if as_copy:  # visits stored before `fuse` rest on the originals: read them as the copies that replace them
        visits = [dataclasses.replace(v, sighting_ids=tuple(dict.fromkeys(as_copy.get(i, i) for i in v.sighting_ids)))
                  if as_copy.keys() & set(v.sighting_ids) else v for v in visits]
    trips = sorted((t for t in trips if t.depart <= as_of), key=lambda t: t.depart)
    judged = as_of
    if analysis is None:  # the judgements of the store's latest analysis (the one its visits and trips come from),
        # not one made earlier for a later date: that one rests on what the store held then
        derived = stored_as_of(store)
        if derived is not None and derived <= as_of and any(a.as_of == derived for a in acts):
            judged = derived
    activities = latest_activities(acts, judged)
    if not estimates:
        for act in activities.values():
            estimates.extend(e for e in map(_as_estimate, act.details.get("estimates", [])) if e is not None)
    # a count is known once its period has ended ("at least 32 trips to 29 February" is not known on the 28th)
    aggregates = [a for a in _call(store, "aggregates") if a.end <= as_of]
    ids: set[str] = set()
    for rec in (*sightings, *visits, *trips, *looks, *estimates, *aggregates, *activities.values()):
        ids.update(getattr(rec, "evidence_ids", ()))
    for act in activities.values():
        ids.update(act.last_activity_evidence)
    evidence = {e.id: e for e in _call(store, "evidence", sorted(ids))} if ids else {}
    data = ReportData(as_of, sites, routes, vessels, looks, sightings, visits, trips, scenes, evidence, activities,
                      estimates, aggregates, workspace_root=workspace_root, labelled_from=labelled_from)
    data.views = [route_view(data, r) for r in routes.values()]
    return data


def route_vessel_length(data: ReportData, route: Route) -> float:
    """The shortest known length among the route's vessels: the hardest one to see sets the coverage figure."""
    keys = route.vessels or tuple(data.vessels)
    lengths = [data.vessels[k].length_m for k in keys if k in data.vessels and data.vessels[k].length_m]
    return float(min(lengths)) if lengths else DEFAULT_VESSEL_LENGTH_M


def route_view(data: ReportData, route: Route) -> RouteView:
    """Arrange one route: its trips, the visits at its sites, origin looks and the quiet-period coverage."""
    act = data.activities.get(route.key)
    trips = [t for t in data.trips if t.route == route.key]
    route_sites = set(route.origin) | set(route.destination)
    visits = [v for v in data.visits if v.site in route_sites]
    origin_looks = [lk for lk in data.looks if lk.site in route.origin]
    length = route_vessel_length(data, route)
    start = act.last_activity if act else (max((t.depart for t in trips), default=None))
    end = act.as_of if act else data.as_of  # the quiet period the judgement speaks about
    quiet_looks = [lk for lk in origin_looks if start is not None and start < lk.time <= end]
    usable = [lk for lk in quiet_looks if lk.usable]
    sensors: dict[str, int] = {}
    for lk in quiet_looks:
        sensors[lk.sensor] = sensors.get(lk.sensor, 0) + 1
    quiet = QuietCoverage(
        start=start, end=end, looks=len(quiet_looks), usable_looks=len(usable),
        mean_p_detect=(sum(lk.probability(length) for lk in usable) / len(usable)) if usable else None,
        sensors=sensors, simulated_looks=sum(lk.simulated for lk in quiet_looks), vessel_length_m=length)
    return RouteView(route, act, trips, visits, origin_looks, quiet, simulated_notes(data, visits, origin_looks))


def simulated_notes(data: ReportData, visits: list[Visit], looks: list[Look]) -> list[str]:
    """Plain sentences saying which parts of a route's result rest on simulated data (empty when none do)."""
    notes: list[str] = []
    sightings = {s.id: s for s in data.sightings}
    used = [sightings[sid] for v in visits for sid in v.sighting_ids if sid in sightings]
    n_sim = sum(s.simulated for s in used)
    if n_sim:
        notes.append(f"{n_sim} of {len(used)} sightings behind its visits are simulated")
    n_looks = sum(lk.simulated for lk in looks)
    if n_looks:
        notes.append(f"{n_looks} of {len(looks)} looks at its origin are simulated")
    scene_ids = {lk.scene_id for lk in looks if lk.scene_id}
    n_scenes = sum(1 for sid in scene_ids if sid in data.scenes and data.scenes[sid].simulated)
    if n_scenes:
        notes.append(f"{n_scenes} of {len(scene_ids)} scenes behind those looks are simulated")
    return notes
