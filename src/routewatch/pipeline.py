"""The analysis chain over a store: sightings and looks -> visits -> trips -> route activity -> estimates.

This is the one place that reads the store for analysis and writes the derived tables back; the steps themselves
are pure functions in ``routewatch.analysis``. Re-running it for the same ``as_of`` gives the same records (ids are
deterministic) and replaces the derived tables in one transaction, so it is idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from routewatch.analysis.activity import JudgementConfig, judge_route
from routewatch.analysis.trips import build_trips
from routewatch.analysis.visits import build_visits_frame, frame_to_visits
from routewatch.fuse.io import fused_expr, fused_id
from routewatch.model import (
    Activity,
    AggregateObservation,
    CoverageAssumption,
    DetectionModel,
    Estimate,
    Look,
    Route,
    SourceKind,
    Trip,
    Visit,
    ensure_utc,
)
from routewatch.watchlist import Watchlist


@dataclass
class AnalysisResult:
    """What one analysis run found, as of ``as_of``; ``coverage`` is the stated coverage assumption."""

    as_of: datetime
    visits: list[Visit]
    trips: list[Trip]
    activities: dict[str, Activity]
    aggregates: list[AggregateObservation]
    estimates: dict[str, list[Estimate]] = field(default_factory=dict)
    coverage: str = "actual looks in the coverage ledger"


# What visits are built from: reading only these columns halves the read of a large store.
VISIT_SIGHTING_COLUMNS = (
    "site",
    "vessel",
    "object_kind",
    "time_end",
    "length_m",
    "confidence",
    "identification_confidence",
    "source_kind",
    "detail",  # an AIS visit's says whether its ship was seen leaving (analysis.visits.DEPARTURE_SEEN)
)


def without_fused_originals(sightings: pl.DataFrame) -> pl.DataFrame:
    """Image detections that ``fuse`` labelled are read once, as the labelled copy: the original (vessel unknown)
    and its copy (vessel named, or dark) at the same moment would be two visits of one ship. A copy's id is
    ``fused_id`` of its original's (also when fused from a GeoJSON that carries the stored ids, as ``export``
    writes them): found among the sightings of the copy's site and time, or else among all image detections."""
    if sightings.height == 0:
        return sightings
    fused = fused_expr()
    copies = sightings.filter(fused).select("site", "time", copy_id="id")
    if copies.height == 0:
        return sightings
    rows = sightings.with_row_index("_row")
    candidates = rows.filter(~fused).select("_row", "site", "time", "id")
    pairs = candidates.join(copies, on=["site", "time"], how="inner")
    originals = {row: cid for row, oid, cid in pairs.select("_row", "id", "copy_id").iter_rows() if fused_id(oid) == cid}
    unmatched = set(copies["copy_id"]) - set(originals.values())
    if unmatched:  # a copy whose time or site differs from its original's (fused from a file with --time, or a site
        # assigned by fusion): found by its id alone, over the image detections
        images = candidates.join(rows.select("_row", "source_kind"), on="_row").filter(
            pl.col("source_kind") == "image") if "source_kind" in rows.columns else candidates
        for row, oid in images.select("_row", "id").iter_rows():
            if fused_id(oid) in unmatched:
                originals[row] = fused_id(oid)
    if not originals:
        return sightings
    return rows.filter(~pl.col("_row").is_in(list(originals))).drop("_row")


def looks_from_frame(frame: pl.DataFrame) -> list[Look]:
    """Look records from the store's looks frame (the judgement needs records, only for the origin sites)."""
    cols = ["id", "site", "time", "sensor", "usable_fraction", "l50_m", "scale_m", "p_max", "source_kind",
            "scene_id", "vessels_seen", "simulated", "note"]
    with_evidence = "evidence_ids" in frame.columns
    if with_evidence:
        cols.append("evidence_ids")
    models: dict[tuple[float, float, float], DetectionModel] = {}
    out = []
    for row in frame.sort("time", "id").select(cols).iter_rows():
        key = (row[5], row[6], row[7])
        model = models.get(key)
        if model is None:
            model = models[key] = DetectionModel(*key)
        out.append(
            Look(
                id=row[0],
                site=row[1],
                time=row[2],
                sensor=row[3],
                usable_fraction=float(row[4]),
                detection=model,
                source_kind=SourceKind(row[8]),
                scene_id=row[9],
                evidence_ids=tuple(row[13] or ()) if with_evidence else (),
                vessels_seen=row[10],
                simulated=bool(row[11]),
                note=row[12] or "",
            )
        )
    return out


def route_aggregates(
    route: Route, aggregates: Sequence[AggregateObservation], watchlist: Watchlist
) -> list[AggregateObservation]:
    """Aggregates about this route: scope ``origin>destination`` with the origin among the route's origin sites and
    the destination one of its destination sites, a group of them, or the route's own key."""
    out = []
    for agg in aggregates:
        if ">" not in agg.scope:
            continue
        origin, dest = (p.strip() for p in agg.scope.split(">", 1))
        if origin not in route.origin:
            continue
        dest_sites = set(watchlist.expand([dest])) if dest in watchlist.groups else {dest}
        if dest == route.key or dest_sites & set(route.destination):
            out.append(agg)
    return out


def analyze(
    store: object,
    watchlist: Watchlist,
    as_of: datetime,
    *,
    coverage: Sequence[CoverageAssumption] | None = None,
    config: JudgementConfig | None = None,
    persist: bool = True,
) -> AnalysisResult:
    """Run the chain as of ``as_of`` (nothing later is read) and, with ``persist``, store what it derived."""
    as_of = ensure_utc(as_of)
    # Columnar reads and visit building: the analysis must stay fast at millions of sightings.
    # The two reads overlap: on a large SQLite store each runs in child processes, on PostgreSQL in connectorx.
    with ThreadPoolExecutor(max_workers=2) as pool:
        looks_job = pool.submit(store.looks_frame, until=as_of, with_evidence=True, sort=False)  # type: ignore[attr-defined]
        sightings = store.sightings_frame(  # type: ignore[attr-defined]
            until=as_of, with_evidence=True, sort=False, columns=VISIT_SIGHTING_COLUMNS
        )
        looks_frame = looks_job.result()
    sightings = without_fused_originals(sightings)
    aggregates = [a for a in store.aggregates() if a.start <= as_of]  # type: ignore[attr-defined]
    visits = frame_to_visits(build_visits_frame(sightings, looks_frame, as_of, vessels=watchlist.vessels))
    by_site: dict[str, list[Visit]] = {}
    by_vessel: dict[str, list[Visit]] = {}
    for v in visits:
        by_site.setdefault(v.site, []).append(v)
        if v.vessel is not None:
            by_vessel.setdefault(v.vessel, []).append(v)
    site_looks: dict[str, list[Look]] = {}
    trips: list[Trip] = []
    activities: dict[str, Activity] = {}
    estimates: dict[str, list[Estimate]] = {}
    lengths = watchlist.vessel_lengths()
    for route in watchlist.routes.values():
        aggs = route_aggregates(route, aggregates, watchlist)
        mine = [v for k in (*route.origin, *route.destination) for v in by_site.get(k, ())]
        # A fleet vessel seen elsewhere (an anchorage, a shipyard) shows it left the origin: trips need those too.
        route_sites = {*route.origin, *route.destination}
        fleet = route.vessels or tuple(by_vessel)  # without a fleet list: any vessel, AIS-named ships too
        elsewhere = [v for f in fleet for v in by_vessel.get(f, ()) if v.site not in route_sites]
        route_trips = build_trips(
            route, mine + elsewhere, as_of, vessels=watchlist.vessels, aggregates=aggs, sites=watchlist.sites
        )
        trips.extend(route_trips)
        looks: list[Look] = []
        for k in route.origin:  # the judgement needs the coverage ledger at the origin only
            if k not in site_looks:
                site_looks[k] = looks_from_frame(looks_frame.filter(pl.col("site") == k))
            looks.extend(site_looks[k])
        activities[route.key] = judge_route(
            route,
            as_of=as_of,
            visits=mine,
            trips=route_trips,
            looks=looks,
            aggregates=aggs,
            vessel_lengths=lengths,
            coverage=coverage,
            config=config,
            sites=watchlist.sites,
        )
        estimates[route.key] = route_estimates(route, route_trips, aggs, aggregates, watchlist, as_of)
    if persist:
        # this watchlist's sites and routes only: a store shared by several workspaces keeps the others' analyses
        store.replace_derived(visits, trips, as_of, sites=watchlist.sites, routes=watchlist.routes)  # type: ignore[attr-defined]
        store.add_activities(list(activities.values()))  # type: ignore[attr-defined]
    label = next(iter(activities.values())).coverage if activities else "actual looks in the coverage ledger"
    return AnalysisResult(as_of, visits, trips, activities, aggregates, estimates, label)


def route_estimates(
    route: Route,
    trips: Sequence[Trip],
    route_aggs: Sequence[AggregateObservation],
    all_aggs: Sequence[AggregateObservation],
    watchlist: Watchlist,
    as_of: datetime,
) -> list[Estimate]:
    """Cargo estimates for a route: trips (counted, and the largest published count as a lower bound) x containers
    per trip (observed container stacks at the origin, else vessel capacity x load) x rounds per container."""
    from routewatch.analysis.estimates import ContainersPerTrip, PublishedCount, estimate_cargo

    stacks = [
        a
        for a in all_aggs
        if a.event == "container_stack" and a.scope in route.origin and a.count and a.end <= as_of
    ]
    if stacks:
        containers = ContainersPerTrip.from_stacks(
            [a.count or 0 for a in stacks], "container stacks seen at the origin"
        )
    else:
        capacities = [watchlist.vessels[v].capacity_teu for v in route.vessels if v in watchlist.vessels]
        known = [c for c in capacities if c]
        if not known:
            return []
        containers = ContainersPerTrip.from_capacity(
            min(known), basis=f"smallest fleet capacity {min(known):g} TEU"
        )
    counts = [a for a in route_aggs if a.event == "trip_count" and a.count and a.end <= as_of]
    published = None
    if counts:
        best = max(counts, key=lambda a: a.count or 0)
        published = PublishedCount(float(best.count or 0), best.lower_bound, best.detail, best.evidence_ids,
                                   start=best.start, end=best.end)
    seed = int.from_bytes(route.key.encode()[:4].ljust(4, b"\0"), "little")
    return estimate_cargo(trips, containers, published=published, seed=seed)
