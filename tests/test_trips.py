"""Trips from visits: feasible transit, origin-only evidence, fleet trips, reported trips without double counting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from shapely.geometry import box

from routewatch.analysis.seadistance import great_circle_nm, min_sailing_nm, min_transit_days, site_distance
from routewatch.analysis.trips import (
    FLEET_FACTOR,
    MIN_TIMING_FACTOR,
    ORIGIN_ONLY_FACTOR,
    build_trips,
    compare_with_published,
    count_trips,
)
from routewatch.model import (
    AggregateObservation,
    Evidence,
    EvidenceKind,
    Route,
    Site,
    SiteKind,
    Vessel,
    Visit,
)

T0 = datetime(2024, 2, 1, tzinfo=UTC)
# working boxes from the reference case (lon/lat degrees)
SITES = [
    Site("rajin", "Rajin", SiteKind.PORT, box(130.265, 42.215, 130.310, 42.250)),
    Site("vostochny", "Vostochny", SiteKind.PORT, box(133.02, 42.71, 133.10, 42.76)),
    Site("dunai", "Dunai", SiteKind.PORT, box(132.31, 42.86, 132.37, 42.90)),
    Site("vladivostok_anchorage", "off Vladivostok", SiteKind.ANCHORAGE, box(131.9, 43.05, 132.0, 43.12)),
]
SMAP = {s.key: s for s in SITES}
VESSELS = [Vessel("lady_r", "LADY R", length_m=120.0), Vessel("maia_1", "MAIA-1", length_m=131.0)]
ROUTE = Route("rajin-russia", "Rajin to Russia", origin=("rajin",), destination=("dunai", "vostochny"),
              vessels=("lady_r", "maia_1"))


def day(d: float) -> datetime:
    return T0 + timedelta(days=d)


def visit(vid: str, site: str, start: float, end: float, *, vessel: str | None = "lady_r", conf: float = 0.9,
          end_bound: float | None = None, size: str | None = "100-150m") -> Visit:
    return Visit(id=vid, site=site, vessel=vessel, start=day(start), end=day(end), confidence=conf,
                 sighting_ids=(f"s-{vid}",), evidence_ids=(f"e-{vid}",), size_class=size,
                 end_bound=None if end_bound is None else day(end_bound))


def trips_of(visits: list[Visit], as_of: float = 40, aggregates: tuple = ()) -> list:
    return build_trips(ROUTE, visits, day(as_of), vessels=VESSELS, aggregates=aggregates, sites=SMAP)


def test_observed_trip_with_distance_and_timing() -> None:
    (t,) = trips_of([visit("o", "rajin", 3, 4), visit("d", "vostochny", 7, 8)])
    leg = site_distance(SMAP["rajin"], SMAP["vostochny"])
    # never shorter than the straight line between the centroids
    assert t.distance_nm == pytest.approx(leg.nm) and leg.nm >= great_circle_nm(
        SMAP["rajin"].centroid_lonlat, SMAP["vostochny"].centroid_lonlat)
    lo = min_transit_days(min_sailing_nm(SMAP["rajin"], SMAP["vostochny"]), ROUTE.max_speed_kn)
    # transit = 7 - 4 = 3 days; timing = 1 - (1 - 0.5) * (3 - lo) / (10 - lo)
    timing = 1 - (1 - MIN_TIMING_FACTOR) * (3 - lo) / (ROUTE.max_transit_days - lo)
    assert t.kind == "observed" and t.vessel == "lady_r"
    assert t.confidence == pytest.approx(0.9 * 0.9 * timing)
    assert (t.depart, t.arrive) == (day(4), day(7))
    assert t.evidence_ids == ("e-o", "e-d")


def test_infeasibly_fast_or_too_slow_transit_is_not_a_trip() -> None:
    lo = min_transit_days(min_sailing_nm(SMAP["rajin"], SMAP["vostochny"]), ROUTE.max_speed_kn)
    assert lo > 0.3  # more than 120 nm at 16 kn
    fast = trips_of([visit("o", "rajin", 3, 4), visit("d", "vostochny", 4 + lo / 2, 6)])
    # too fast to be this voyage: no observed trip, but the ship did leave Rajin
    assert [t.kind for t in fast] == ["origin_only"]
    slow = trips_of([visit("o", "rajin", 3, 4), visit("d", "vostochny", 4 + ROUTE.max_transit_days + 1, 16)])
    assert [t.kind for t in slow] == ["origin_only"]  # the later visit elsewhere shows the ship left


def test_destination_after_the_next_origin_visit_belongs_to_that_one() -> None:
    trips = trips_of([visit("o1", "rajin", 0, 1, end_bound=2), visit("o2", "rajin", 5, 6),
                      visit("d", "dunai", 8, 9)])
    kinds = {(t.origin_visit, t.destination_visit, t.kind) for t in trips}
    assert kinds == {("o1", None, "origin_only"), ("o2", "d", "observed")}
    (o1,) = [t for t in trips if t.origin_visit == "o1"]
    assert o1.confidence == pytest.approx(0.9 * ORIGIN_ONLY_FACTOR) and o1.arrive is None


def test_origin_visit_without_evidence_of_leaving_is_still_in_port() -> None:
    assert trips_of([visit("o", "rajin", 3, 4)]) == []
    assert [t.kind for t in trips_of([visit("o", "rajin", 3, 4, end_bound=5)])] == ["origin_only"]
    # the empty look after as_of is future evidence
    assert trips_of([visit("o", "rajin", 3, 4, end_bound=5)], as_of=4.5) == []
    assert [t.kind for t in trips_of([visit("o", "rajin", 3, 4), visit("x", "vladivostok_anchorage", 30, 31)])] \
        == ["origin_only"]


def test_visits_after_as_of_are_not_used() -> None:
    visits = [visit("o", "rajin", 3, 4), visit("d", "vostochny", 7, 8)]
    assert trips_of(visits, as_of=6) == []
    assert trips_of(visits, as_of=6) == trips_of(visits[:1], as_of=6)


def test_fleet_trips_are_less_confident_and_skip_identified_ships() -> None:
    unid = [visit("uo", "rajin", 10, 11, vessel=None), visit("ud", "vostochny", 13, 14, vessel=None)]
    (t,) = trips_of(unid)
    assert t.kind == "fleet" and t.vessel is None
    assert t.confidence < 0.9 * 0.9 * FLEET_FACTOR + 1e-12
    # the unidentified ship at Rajin overlaps LADY R's visit there: it is LADY R, counted once
    both = trips_of([*unid, visit("o", "rajin", 10.5, 11.5), visit("d", "vostochny", 13, 14)])
    assert sorted(t.kind for t in both) == ["observed"]
    # a size class no route vessel has makes no fleet trip
    small = [visit("uo", "rajin", 10, 11, vessel=None, size="0-50m"), visit("ud", "vostochny", 13, 14,
                                                                              vessel=None, size="0-50m")]
    assert trips_of(small) == []


def _round_trip(start: float, end: float, subjects: tuple[str, ...] = ("LADY R",)) -> AggregateObservation:
    return AggregateObservation(id="agg-rt", start=day(start), end=day(end), scope="rajin>vostochny",
                                event="round_trip", count=None, denominator=None, detail="one run",
                                evidence_ids=("ev-nkpro",), subjects=subjects, confidence=0.6)


def test_reported_round_trip_is_not_double_counted() -> None:
    observed = [visit("o", "rajin", 3, 4), visit("d", "vostochny", 7, 8)]
    trips = trips_of(observed, aggregates=(_round_trip(-2, 7),))
    assert [t.kind for t in trips] == ["observed"]
    alone = trips_of([], aggregates=(_round_trip(-2, 7),))
    assert [(t.kind, t.vessel, t.confidence) for t in alone] == [("reported", "lady_r", 0.6)]
    other = trips_of(observed, aggregates=(_round_trip(-2, 7, ("MAIA-1",)),))
    assert sorted(t.kind for t in other) == ["observed", "reported"]
    # a report that ends after as_of was not yet published
    assert trips_of([], as_of=5, aggregates=(_round_trip(-2, 7),)) == []


def test_count_and_compare_with_published() -> None:
    visits = [visit("o", "rajin", 3, 4), visit("d", "vostochny", 7, 8), visit("o2", "rajin", 15, 16, end_bound=17)]
    published = AggregateObservation(
        id="agg-32", start=day(-180), end=day(28), scope="rajin>russia", event="trip_count", count=32,
        denominator=None, detail="at least 32 trips since August 2023", evidence_ids=("ev-32",), lower_bound=True)
    trips = trips_of(visits, aggregates=(_round_trip(20, 22, ("MAIA-1",)), published))
    counts = count_trips(trips, day(0), day(30))
    assert counts == {"observed": 1, "origin_only": 1, "fleet": 0, "reported": 1, "total": 3}
    assert count_trips(trips, day(5), day(30))["total"] == 2
    (cmp,) = compare_with_published(trips, [published], ROUTE, day(40),
                                    evidence=[Evidence("ev-32", EvidenceKind.REPORT, "count", source="NK Pro")])
    assert cmp.text == "counted 3 (1 observed, 1 origin-only, 1 reported); published: at least 32 (NK Pro)"
    assert compare_with_published(trips, [published], ROUTE, day(20)) == []


def test_a_transit_bounded_by_the_shortest_distance_not_the_sea_route_estimate() -> None:
    """The sea distance overestimates (searoute's network is coarse): a voyage at the route's top speed over the
    great-circle distance between the sites' edges is feasible, and one faster than that is not."""
    a, b = SMAP["rajin"], SMAP["vostochny"]
    bound = min_sailing_nm(a, b)
    gc = great_circle_nm(a.centroid_lonlat, b.centroid_lonlat)
    assert bound <= gc < site_distance(a, b).nm and bound > 0.95 * gc  # port polygons: a few km off the centres
    hours = bound / ROUTE.max_speed_kn
    legal = trips_of([visit("o", "rajin", 3, 4), visit("d", "vostochny", 4 + 1.05 * hours / 24, 6)])
    assert [t.kind for t in legal] == ["observed"]
    too_fast = trips_of([visit("o", "rajin", 3, 4), visit("d", "vostochny", 4 + 0.9 * hours / 24, 6)])
    assert [t.kind for t in too_fast] == ["origin_only"]


def test_overlapping_visits_at_one_end_of_a_route_are_one_call() -> None:
    """A berth inside its port, both in the route's origin, and the ship's visits at both (AIS at the port, an
    image at the berth, or the two sites' own AIS visits): one call, one trip, departing when the last of them
    ended. Each had made a trip, the port's an origin-only one beside the berth's observed one."""
    berth = Site("rajin_berth", "Rajin berth", SiteKind.BERTH, box(130.28, 42.225, 130.29, 42.232))
    route = Route("r", "Rajin to Russia", origin=("rajin", "rajin_berth"), destination=("dunai", "vostochny"),
                  vessels=("lady_r",))
    sites = {**SMAP, berth.key: berth}
    visits = [visit("port", "rajin", 3, 4.5), visit("berth", "rajin_berth", 3.2, 4.3),
              visit("d", "vostochny", 7, 8), visit("d2", "dunai", 7.05, 7.5)]
    trips = build_trips(route, visits, day(40), vessels=VESSELS, sites=sites)
    assert [(t.kind, t.origin_visit, t.destination_visit) for t in trips] == [("observed", "port", "d")]
    assert trips[0].depart == day(4.5) and {"e-port", "e-berth"} <= set(trips[0].evidence_ids)
    # the berth's visit ends last: it stands for the call, with the port's better confidence and evidence
    late = [visit("port", "rajin", 3, 4.3, conf=0.95), visit("berth", "rajin_berth", 3.2, 4.5, conf=0.5),
            visit("d", "vostochny", 7, 8)]
    (t,) = build_trips(route, late, day(40), vessels=VESSELS, sites=sites)
    assert (t.origin_visit, t.depart) == ("berth", day(4.5)) and "e-port" in t.evidence_ids
    assert t.confidence > 0.5 * 0.9 * 0.6
    # one name at two ports 300 km apart at once is two hulls: not one call
    two_ports = Route("r2", "Rajin or Vladivostok to Russia", origin=("rajin", "vladivostok_anchorage"),
                      destination=("dunai", "vostochny"), vessels=("lady_r",))
    both = [visit("p1", "rajin", 3, 4.5, end_bound=5), visit("p2", "vladivostok_anchorage", 3.2, 4.3, end_bound=5)]
    assert len(build_trips(two_ports, both, day(40), vessels=VESSELS, sites=SMAP)) == 2
    # calls that do not overlap stay two
    apart = [visit("port", "rajin", 3, 4.5), visit("berth", "rajin_berth", 10, 11), visit("d", "vostochny", 7, 8),
             visit("d2", "vostochny", 14, 15)]
    assert len(build_trips(route, apart, day(40), vessels=VESSELS, sites=sites)) == 2
