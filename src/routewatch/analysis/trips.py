"""Trips: a route vessel's visit at the origin followed by its visit at the destination within a feasible time.

Rules, and why:

* the destination visit must start after the vessel was last seen at the origin plus the minimum transit (the
  shortest possible distance, great-circle between the sites' edges, / ``route.max_speed_kn``), and no later than ``route.max_transit_days`` after it; the origin visit's
  *end* is used (not its start), because a destination visit that begins while the ship is still seen at the
  origin cannot be the same voyage. It must also come before the vessel's next origin visit;
* an origin visit with no destination visit is an ``origin_only`` trip (a shipment left) only when something shows
  the ship gone: an empty look after it (``end_bound``) or a later visit of the ship elsewhere; otherwise the ship
  may still be in port and nothing is counted;
* unidentified visits of a route vessel's size class make ``fleet`` trips at a lower confidence, unless they
  overlap an identified route vessel's visit at the same site (then they are most likely that ship: not counted
  twice);
* reported round trips / transits (aggregates with event ``round_trip`` or ``transit`` and scope
  ``origin>destination``) become ``reported`` trips unless an observed trip of the same vessel overlaps them.

All times UTC; distances nautical miles; nothing after ``as_of`` is used.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import islice

from routewatch.analysis.port_visits import site_places
from routewatch.analysis.seadistance import min_sailing_nm, min_transit_days, site_distance
from routewatch.analysis.visits import AIS_SHIP_PREFIX, size_class, vessel_map
from routewatch.model import (
    AggregateObservation,
    Evidence,
    Route,
    Site,
    Trip,
    Vessel,
    Visit,
    ensure_utc,
    stable_id,
)

ORIGIN_ONLY_FACTOR = 0.7  # the ship left, but its destination was not seen: it may have gone elsewhere
FLEET_FACTOR = 0.5  # an unidentified ship of the right size may be unrelated traffic
MIN_TIMING_FACTOR = 0.5  # a destination visit at the end of the transit window leaves room for another call
REPORT_TOLERANCE = timedelta(days=1)  # reports give dates, not times
REPORTED_EVENTS = ("round_trip", "transit")


def _overlaps(a0: datetime, a1: datetime, b0: datetime, b1: datetime, tol: timedelta) -> bool:
    return a0 <= b1 + tol and b0 <= a1 + tol


def _timing_factor(transit_days: float, min_days: float, max_days: float) -> float:
    """1 for the fastest feasible transit, falling linearly to MIN_TIMING_FACTOR at the end of the window."""
    if max_days <= min_days:
        return 1.0
    frac = min(max((transit_days - min_days) / (max_days - min_days), 0.0), 1.0)
    return 1.0 - (1.0 - MIN_TIMING_FACTOR) * frac


def _days(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() / 86_400.0


def _merge(*parts: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(e for part in parts for e in part))


@dataclass(frozen=True, slots=True)
class _Leg:
    distance_nm: float | None
    min_days: float


def _leg(route: Route, sites: Mapping[str, Site], a: str, b: str, cache: dict[tuple[str, str], _Leg]) -> _Leg:
    if (a, b) not in cache:
        if a in sites and b in sites:
            d = site_distance(sites[a], sites[b]).nm  # the trip's distance, as sailed
            # the fastest feasible transit is bounded by the shortest distance a ship could sail, not the estimate
            cache[(a, b)] = _Leg(d, min_transit_days(min_sailing_nm(sites[a], sites[b]), route.max_speed_kn))
        else:
            cache[(a, b)] = _Leg(None, 0.0)  # unknown geometry: no lower bound on the transit
    return cache[(a, b)]


def _pair(
    route: Route,
    origins: Sequence[Visit],
    dests: Sequence[Visit],
    sites: Mapping[str, Site],
    cache: dict[tuple[str, str], _Leg],
) -> list[tuple[Visit, Visit | None, _Leg | None, float]]:
    """Each origin visit with its destination visit (or None), the leg and the timing factor. Both lists come
    sorted by start."""
    out: list[tuple[Visit, Visit | None, _Leg | None, float]] = []
    used: set[str] = set()
    dest_starts = [d.start for d in dests]  # dests are sorted by start: those at or before o.end are a prefix
    for i, o in enumerate(origins):
        next_origin = origins[i + 1].start if i + 1 < len(origins) else None
        match: tuple[Visit, _Leg, float] | None = None
        for d in islice(dests, bisect_right(dest_starts, o.end), None):
            if d.id in used:
                continue
            if next_origin is not None and d.start >= next_origin:
                break
            leg = _leg(route, sites, o.site, d.site, cache)
            transit = _days(o.end, d.start)
            if transit < leg.min_days:
                continue
            if transit > route.max_transit_days:
                break
            match = (d, leg, _timing_factor(transit, leg.min_days, route.max_transit_days))
            break
        if match is None:
            out.append((o, None, None, 1.0))
        else:
            used.add(match[0].id)
            out.append((o, match[0], match[1], match[2]))
    return out


def _left(o: Visit, last_start: Mapping[str, datetime], as_of: datetime) -> bool:
    """Something shows the ship gone after this origin visit: an empty look, or a later visit at another site
    (``last_start``: the latest visit start per site for this vessel)."""
    if o.end_bound is not None and o.end_bound <= as_of:
        return True
    return any(site != o.site and start > o.end for site, start in last_start.items())


class _Intervals:
    """Visits at one site, to ask "does any overlap [a, b]?" in O(log n): sorted starts, running max of ends."""

    def __init__(self, visits: Iterable[Visit]) -> None:
        items = sorted(visits, key=lambda v: v.start)
        self.starts = [v.start for v in items]
        self.max_end: list[datetime] = []
        for v in items:
            self.max_end.append(max(self.max_end[-1], v.end) if self.max_end else v.end)

    def overlaps(self, a: datetime, b: datetime) -> bool:
        k = bisect_right(self.starts, b)
        return k > 0 and self.max_end[k - 1] >= a


def build_trips(
    route: Route,
    visits: Iterable[Visit],
    as_of: datetime,
    *,
    vessels: Mapping[str, Vessel] | Iterable[Vessel],
    aggregates: Iterable[AggregateObservation] = (),
    sites: Mapping[str, Site] | Iterable[Site] = (),
) -> list[Trip]:
    """The route's trips as of ``as_of``, sorted by departure. ``sites`` give the geometry for sea distances."""
    as_of = ensure_utc(as_of)
    vmap = vessel_map(vessels)
    smap = dict(sites) if isinstance(sites, Mapping) else {s.key: s for s in sites}
    known = [v for v in visits if v.start <= as_of]
    fleet = list(route.vessels) or sorted(vmap)
    # a route without a fleet list is any vessel's: the ships AIS names (``mmsi:<n>`` keys) make their own trips
    # too; they are not the fleet whose identified visits hide an unidentified hull's fleet trip
    movers = fleet + ([] if route.vessels else sorted({v.vessel for v in known if v.vessel
                                                       and v.vessel.startswith(AIS_SHIP_PREFIX)}))
    cache: dict[tuple[str, str], _Leg] = {}
    trips: list[Trip] = []
    places = {**site_places(smap, route.origin), **site_places(smap, route.destination)} if smap else {}

    by_vessel: dict[str | None, list[Visit]] = {}
    for v in known:
        by_vessel.setdefault(v.vessel, []).append(v)
    for vessel in movers:
        mine = sorted(by_vessel.get(vessel, []), key=lambda v: (v.start, v.id))
        origins = one_per_stay([v for v in mine if v.site in route.origin], by_end=True, places=places)
        dests = one_per_stay([v for v in mine if v.site in route.destination], by_end=False, places=places)
        last_start = {v.site: v.start for v in mine}  # sorted by start: the last one wins
        for o, d, leg, timing in _pair(route, origins, dests, smap, cache):
            if d is not None and leg is not None:
                trips.append(_trip(route, "observed", vessel, o, d, leg, o.confidence * d.confidence * timing))
            elif _left(o, last_start, as_of):
                trips.append(_trip(route, "origin_only", vessel, o, None, None, o.confidence * ORIGIN_ONLY_FACTOR))

    trips.extend(_fleet_trips(route, by_vessel, fleet, vmap, smap, as_of, cache))
    trips.extend(_reported_trips(route, aggregates, trips, vmap, as_of))
    return sorted(trips, key=lambda t: (t.depart, t.kind, t.id))


def one_per_stay(visits: Sequence[Visit], by_end: bool, places: Mapping[str, str] | None = None) -> list[Visit]:
    """A vessel's visits at one end of a route that overlap in time at one place (a berth inside its port, both
    watched; AIS at the port and an image at the berth: :func:`~routewatch.analysis.port_visits.site_places`) are
    one call: it stands as the visit that ends last (``by_end``, at the origin: the departure) or that starts first
    (at the destination: the arrival), with the best confidence and the evidence of all of them. Each had made a
    trip, one of them origin-only. Visits at two places far apart at once are two hulls under one name: kept.
    Without ``places`` each site is a place of its own. Visits sorted by (start, id) come back so."""
    places = places or {}
    stays: list[list[Visit]] = []
    open_: list[tuple[int, datetime, str]] = []  # (stay, its end, its place)
    for v in sorted(visits, key=lambda v: (v.start, v.id)):
        place = places.get(v.site, v.site)
        open_ = [(k, end, pl) for k, end, pl in open_ if end >= v.start]
        k = next((k for k, _end, pl in open_ if pl == place), None)
        if k is None:
            stays.append([v])
            open_.append((len(stays) - 1, v.end, place))
        else:
            stays[k].append(v)
            open_ = [(j, max(end, v.end) if j == k else end, pl) for j, end, pl in open_]
    out = []
    for group in stays:
        rep = max(group, key=lambda v: (v.end, v.confidence)) if by_end else group[0]
        if len(group) > 1:
            rep = replace(rep, confidence=max(v.confidence for v in group),
                          evidence_ids=_merge(rep.evidence_ids, *(v.evidence_ids for v in group)),
                          sighting_ids=_merge(rep.sighting_ids, *(v.sighting_ids for v in group)))
        out.append(rep)
    return sorted(out, key=lambda v: (v.start, v.id))


def _trip(
    route: Route, kind: str, vessel: str | None, o: Visit, d: Visit | None, leg: _Leg | None, confidence: float
) -> Trip:
    return Trip(
        id=stable_id("trip", route.key, kind, o.id, d.id if d else ""),
        route=route.key,
        vessel=vessel,
        origin_visit=o.id,
        destination_visit=d.id if d else None,
        depart=o.end,
        arrive=d.start if d else None,
        confidence=confidence,
        evidence_ids=_merge(o.evidence_ids or o.sighting_ids, (d.evidence_ids or d.sighting_ids) if d else ()),
        kind=kind,
        distance_nm=leg.distance_nm if leg else None,
    )


def _fleet_trips(
    route: Route,
    by_vessel: Mapping[str | None, Sequence[Visit]],
    fleet: Sequence[str],
    vmap: Mapping[str, Vessel],
    smap: Mapping[str, Site],
    as_of: datetime,
    cache: dict[tuple[str, str], _Leg],
) -> list[Trip]:
    classes = {size_class(vmap[v].length_m) for v in fleet if v in vmap}
    classes.discard("unknown")
    sites = set(route.origin) | set(route.destination)
    at_site: dict[str, list[Visit]] = {}
    for key in fleet:
        for v in by_vessel.get(key, ()):
            if v.site in sites:
                at_site.setdefault(v.site, []).append(v)
    identified = {site: _Intervals(items) for site, items in at_site.items()}
    out: list[Trip] = []
    unidentified = sorted((v for v in by_vessel.get(None, ()) if v.site in sites), key=lambda v: (v.start, v.id))
    for label in sorted(classes):
        unid = [
            v
            for v in unidentified
            if v.size_class == label
            and not (v.site in identified and identified[v.site].overlaps(v.start, v.end))
        ]
        origins = [v for v in unid if v.site in route.origin]
        dests = [v for v in unid if v.site in route.destination]
        for o, d, leg, timing in _pair(route, origins, dests, smap, cache):
            if d is not None and leg is not None:
                conf = o.confidence * d.confidence * timing * FLEET_FACTOR
                out.append(_trip(route, "fleet", None, o, d, leg, conf))
            elif o.end_bound is not None and o.end_bound <= as_of:
                out.append(_trip(route, "fleet", None, o, None, None, o.confidence * FLEET_FACTOR * ORIGIN_ONLY_FACTOR))
    return out


def _scope(scope: str) -> tuple[str, str] | None:
    if ">" not in scope:
        return None
    a, b = (p.strip() for p in scope.split(">", 1))
    return a, b


def resolve_subjects(subjects: Iterable[str], vmap: Mapping[str, Vessel]) -> list[str]:
    """Watchlist keys for report subjects given as keys or names (case-insensitive); unknown names are dropped."""
    by_name = {v.name.casefold(): k for k, v in vmap.items()}
    by_key = {k.casefold(): k for k in vmap}
    out = []
    for s in subjects:
        key = by_key.get(s.strip().casefold()) or by_name.get(s.strip().casefold())
        if key and key not in out:
            out.append(key)
    return out


def _reported_trips(
    route: Route,
    aggregates: Iterable[AggregateObservation],
    counted: Sequence[Trip],
    vmap: Mapping[str, Vessel],
    as_of: datetime,
) -> list[Trip]:
    out: list[Trip] = []
    for agg in aggregates:
        scope = _scope(agg.scope)
        if agg.event not in REPORTED_EVENTS or scope is None or agg.end > as_of + REPORT_TOLERANCE:
            continue
        if scope[0] not in route.origin or scope[1] not in route.destination:
            continue
        subjects = resolve_subjects(agg.subjects, vmap)
        vessel = subjects[0] if subjects else None
        duplicate = any(
            (t.vessel == vessel if vessel is not None else t.kind == "fleet")
            and t.kind != "reported"
            and _overlaps(t.depart, t.arrive or t.depart, agg.start, agg.end, REPORT_TOLERANCE)
            for t in counted
        )
        if duplicate:
            continue
        n = max(int(agg.count or 1), 1)
        for k in range(n):
            out.append(
                Trip(
                    id=stable_id("trip", route.key, "reported", agg.id, k),
                    route=route.key,
                    vessel=vessel,
                    origin_visit=None,
                    destination_visit=None,
                    depart=agg.start,
                    arrive=agg.end,
                    confidence=agg.confidence,
                    evidence_ids=agg.evidence_ids,
                    kind="reported",
                )
            )
    return out


def count_trips(trips: Iterable[Trip], since: datetime, until: datetime) -> dict[str, int]:
    """Trips departing in [since, until], by kind, with ``total``."""
    since, until = ensure_utc(since), ensure_utc(until)
    counts = Counter(t.kind for t in trips if since <= t.depart <= until)
    out = {k: counts.get(k, 0) for k in ("observed", "origin_only", "fleet", "reported")}
    out["total"] = sum(counts.values())
    return out


@dataclass(frozen=True, slots=True)
class TripComparison:
    """What routewatch counted beside what was published for the same route and period."""

    since: datetime
    until: datetime
    counted: dict[str, int]
    published: float
    lower_bound: bool
    source: str
    evidence_ids: tuple[str, ...]

    @property
    def text(self) -> str:
        c = self.counted
        parts = ", ".join(f"{c[k]} {k.replace('_', '-')}" for k in ("observed", "origin_only", "fleet", "reported")
                          if c.get(k))
        published = f"{'at least ' if self.lower_bound else ''}{self.published:g}"
        return f"counted {c['total']}{f' ({parts})' if parts else ''}; published: {published} ({self.source})"


def compare_with_published(
    trips: Iterable[Trip],
    aggregates: Iterable[AggregateObservation],
    route: Route,
    as_of: datetime,
    *,
    evidence: Iterable[Evidence] = (),
) -> list[TripComparison]:
    """For each published ``trip_count`` of this route's origin up to ``as_of``, our count over the same period."""
    as_of = ensure_utc(as_of)
    sources = {e.id: e.source for e in evidence if e.source}
    trips = list(trips)
    out = []
    for agg in aggregates:
        scope = _scope(agg.scope)
        if agg.event != "trip_count" or agg.count is None or scope is None or scope[0] not in route.origin:
            continue
        if agg.end > as_of + REPORT_TOLERANCE:
            continue
        until = min(agg.end, as_of)
        source = next((sources[e] for e in agg.evidence_ids if e in sources), "") or agg.detail
        out.append(
            TripComparison(agg.start, until, count_trips(trips, agg.start, until), float(agg.count),
                           agg.lower_bound, source, agg.evidence_ids)
        )
    return out
