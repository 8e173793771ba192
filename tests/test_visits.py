"""Visits from sightings and looks: gap and empty-look splits, size classes, bounds, as_of, frame parity."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from routewatch.analysis.visits import (
    DEPARTURE_SEEN,
    build_visits,
    build_visits_frame,
    frame_to_visits,
    looks_to_frame,
    sightings_to_frame,
    size_class,
)
from routewatch.model import SENSOR_DETECTION, Look, Sighting, SourceKind, Vessel

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SHIP = Vessel(key="lady_r", name="LADY R", length_m=120.0)


def day(d: float) -> datetime:
    return T0 + timedelta(days=d)


def sighting(i: int, d: float, *, site: str = "rajin", vessel: str | None = "lady_r", length: float | None = None,
             conf: float = 0.7, end: float | None = None, kind: str = "vessel") -> Sighting:
    return Sighting(
        id=f"s{i}", time=day(d), time_end=None if end is None else day(end), source_kind=SourceKind.REPORT,
        site=site, vessel=vessel, length_m=length, confidence=conf, evidence_ids=(f"e{i}",), object_kind=kind,
    )


def look(i: int, d: float, *, site: str = "rajin", sensor: str = "planetscope", usable: float = 1.0,
         seen: int | None = 0) -> Look:
    return Look(id=f"l{i}", site=site, time=day(d), sensor=sensor, usable_fraction=usable,
                detection=SENSOR_DETECTION[sensor], source_kind=SourceKind.IMAGE, vessels_seen=seen,
                evidence_ids=(f"le{i}",))


def test_gap_longer_than_max_gap_starts_a_new_visit() -> None:
    s = [sighting(1, 0), sighting(2, 3), sighting(3, 3 + 4.5)]
    visits = build_visits(s, [], day(30), vessels=[SHIP])
    assert [v.sighting_ids for v in visits] == [("s1", "s2"), ("s3",)]
    # 1 - (1 - 0.7)^2 = 0.91
    assert visits[0].confidence == pytest.approx(0.91)
    assert visits[0].size_class == "100-150m"


def test_report_span_counts_as_presence_for_the_gap() -> None:
    # a report covering days 0-6 makes a sighting on day 9 only 3 days after the last presence
    s = [sighting(1, 0, end=6), sighting(2, 9)]
    visits = build_visits(s, [], day(30), vessels=[SHIP])
    assert len(visits) == 1 and visits[0].end == day(9)


def test_empty_look_with_high_detection_probability_splits_the_visit() -> None:
    s = [sighting(1, 0), sighting(2, 2)]
    # PlanetScope for a 120 m ship: 0.97 / (1 + exp(-(120 - 15) / 4)) ~ 0.97 >= 0.8: splits
    split = build_visits(s, [look(1, 1)], day(30), vessels=[SHIP])
    assert len(split) == 2
    # half the site usable: 0.5 * 0.97 = 0.485 < 0.8: does not split
    kept = build_visits(s, [look(1, 1, usable=0.5)], day(30), vessels=[SHIP])
    assert len(kept) == 1
    # a look that saw vessels, or did not say, is not an empty look
    assert len(build_visits(s, [look(1, 1, seen=2)], day(30), vessels=[SHIP])) == 1
    assert len(build_visits(s, [look(1, 1, seen=None)], day(30), vessels=[SHIP])) == 1


def test_sentinel1_empty_look_does_not_split_a_small_unidentified_vessel() -> None:
    # a 40 m object is in class 0-50m, weighed at 10 m: S1 p = 0.95 / (1 + exp(-(10 - 60) / 12)) ~ 0.015
    s = [sighting(1, 0, vessel=None, length=40), sighting(2, 2, vessel=None, length=42)]
    visits = build_visits(s, [look(1, 1, sensor="sentinel-1")], day(30))
    assert len(visits) == 1 and visits[0].vessel is None and visits[0].size_class == "0-50m"


def test_bounds_are_the_nearest_empty_looks_and_carry_their_evidence() -> None:
    s = [sighting(1, 5), sighting(2, 6)]
    looks = [look(1, 1), look(2, 3), look(3, 8), look(4, 9), look(5, 4, usable=0.0)]
    (v,) = build_visits(s, looks, day(30), vessels=[SHIP])
    assert v.start_bound == day(3) and v.end_bound == day(8)
    assert set(v.evidence_ids) == {"e1", "e2", "le2", "le3"}
    (unbounded,) = build_visits(s, [], day(30), vessels=[SHIP])
    assert unbounded.start_bound is None and unbounded.end_bound is None


def test_unidentified_sightings_group_by_size_class() -> None:
    s = [sighting(1, 0, vessel=None, length=115), sighting(2, 1, vessel=None, length=118),
         sighting(3, 1, vessel=None, length=30), sighting(4, 1, vessel=None), sighting(5, 1, kind="containers")]
    visits = build_visits(s, [], day(30))
    assert sorted((v.size_class, v.sighting_ids) for v in visits) == [
        ("0-50m", ("s3",)), ("100-150m", ("s1", "s2")), ("unknown", ("s4",))]
    assert size_class(50.0) == "50-100m" and size_class(None) == "unknown" and size_class(300) == "250m+"


def test_identified_vessel_length_falls_back_to_median_measured_length() -> None:
    s = [sighting(1, 0, vessel="x", length=60), sighting(2, 1, vessel="x", length=200),
         sighting(3, 2, vessel="x", length=70)]
    (v,) = build_visits(s, [], day(30))
    assert v.size_class == "50-100m"  # median of 60, 70, 200 = 70 m


def test_later_evidence_changes_nothing() -> None:
    base_s = [sighting(1, 0), sighting(2, 2, end=20)]
    base_l = [look(1, 5, usable=0.4)]
    as_of = day(10)
    before = build_visits(base_s, base_l, as_of, vessels=[SHIP])
    after = build_visits(base_s + [sighting(3, 11), sighting(4, 1, vessel=None, length=100)][:1],
                         [*base_l, look(2, 10.5), look(3, 12)], as_of, vessels=[SHIP])
    assert before == after
    assert before[0].end == as_of  # the report's span is cut at as_of


def test_naive_as_of_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        build_visits([], [], datetime(2024, 1, 1))


def _random_case(seed: int) -> tuple[list[Sighting], list[Look], list[Vessel]]:
    rnd = random.Random(seed)
    sites = ["a", "b", "c"]
    vessels = [Vessel(key="v1", name="V1", length_m=120.0), Vessel(key="v2", name="V2"),
               Vessel(key="v3", name="V3", length_m=40.0)]
    sightings = []
    for i in range(rnd.randint(0, 120)):
        ident = rnd.choice(["v1", "v2", "v3", None, None])
        d = rnd.uniform(0, 60)
        sightings.append(Sighting(
            id=f"s{i:03d}", time=day(round(d, 3)), source_kind=rnd.choice(list(SourceKind)),
            site=rnd.choice(sites), vessel=ident,
            time_end=day(round(d + rnd.uniform(0, 5), 3)) if rnd.random() < 0.2 else None,
            length_m=rnd.choice([None, rnd.uniform(20, 300)]), confidence=rnd.uniform(0.2, 0.95),
            identification_confidence=rnd.choice([None, 0.8]),
            evidence_ids=tuple(f"e{rnd.randint(0, 40)}" for _ in range(rnd.randint(0, 2))),
            object_kind="vessel" if rnd.random() < 0.95 else "containers",
            detail=rnd.choice(["", f"MMSI 1; GFW-style level 3; {DEPARTURE_SEEN}"]),  # AIS: the ship seen leaving
        ))
    looks = [
        Look(id=f"l{j:03d}", site=rnd.choice(sites), time=day(round(rnd.uniform(0, 65), 3)),
             sensor=(sensor := rnd.choice(["sentinel-1", "sentinel-2", "planetscope"])),
             usable_fraction=rnd.choice([0.0, 0.5, 1.0, 1.0]), detection=SENSOR_DETECTION[sensor],
             source_kind=SourceKind.IMAGE, vessels_seen=rnd.choice([0, 0, 1, None]),
             evidence_ids=(f"le{j}",))
        for j in range(rnd.randint(0, 80))
    ]
    return sightings, looks, vessels


@pytest.mark.parametrize("seed", range(25))
def test_frame_version_agrees_with_record_version(seed: int) -> None:
    sightings, looks, vessels = _random_case(seed)
    as_of = day(45)
    expected = build_visits(sightings, looks, as_of, vessels=vessels, max_gap_days=3.0)
    frame = build_visits_frame(sightings_to_frame(sightings), looks_to_frame(looks), as_of,
                               vessels=vessels, max_gap_days=3.0)
    got = frame_to_visits(frame)
    assert [v.id for v in got] == [v.id for v in expected]
    for g, e in zip(got, expected, strict=True):
        assert g.confidence == pytest.approx(e.confidence)
        assert g == type(e)(**{**{f: getattr(e, f) for f in e.__slots__}, "confidence": g.confidence})


def test_an_ais_visit_whose_ship_was_seen_leaving_bounds_its_end_and_makes_a_departure() -> None:
    """AIS that follows the ship out of the port is as good as an empty look after it: the visit's end is bounded
    (by the departure, when it comes by as_of), and the route counts a shipment that left even if the ship then
    went dark (an origin-only trip); without the exit, or before it, nothing says it left."""
    from routewatch.analysis.trips import build_trips
    from routewatch.model import Route

    def ais(detail: str) -> Sighting:
        return Sighting(id="a1", time=day(1), time_end=day(3), source_kind=SourceKind.AIS, site="rajin",
                        vessel="lady_r", event="ais_visit", confidence=0.9, identification_confidence=0.95,
                        evidence_ids=("ais-1",), detail=detail)

    route = Route("r", "Rajin to Dunai", origin=("rajin",), destination=("dunai",), vessels=("lady_r",))
    left = f"MMSI 1; GFW-style level 4; {DEPARTURE_SEEN}"
    # the exit is told by a position up to 72 h after the last inside: known from day 6 on, not before
    for detail, as_of, bound in ((left, day(10), day(3)), ("MMSI 1; GFW-style level 3", day(10), None),
                                 (left, day(2), None), (left, day(5), None), (left, day(6), day(3))):
        (visit,) = build_visits([ais(detail)], [], as_of, vessels=[SHIP])
        (same,) = frame_to_visits(build_visits_frame(sightings_to_frame([ais(detail)]), looks_to_frame([]), as_of,
                                                     vessels=[SHIP]))
        assert visit.end_bound == same.end_bound == bound, detail
        trips = build_trips(route, [visit], as_of, vessels=[SHIP])
        assert [t.kind for t in trips] == (["origin_only"] if bound else []), detail
    # another ship's AIS (an MMSI not on the watchlist) is that ship's own visit, keyed by its MMSI: its departure
    # bounds it, and it is no route vessel's and no unidentified ship's, so no trip of any kind
    other = replace(ais(left), vessel=None, identification_confidence=None)
    (theirs,) = build_visits([other], [], day(10), vessels=[SHIP])
    (same,) = frame_to_visits(build_visits_frame(sightings_to_frame([other]), looks_to_frame([]), day(10),
                                                 vessels=[SHIP]))
    assert theirs == same and (theirs.vessel, theirs.end_bound) == ("mmsi:1", day(3))
    assert build_trips(route, [theirs], day(10), vessels=[SHIP]) == []
    # seen leaving on day 3 and back on day 5 (within the 4 days that join sightings): one bad position or hours at
    # an outer anchorage as often as a voyage, so one call, and no departure bound (the departure did not end it)
    back = Sighting(id="a2", time=day(5), time_end=day(6), source_kind=SourceKind.AIS, site="rajin",
                    vessel="lady_r", event="ais_visit", confidence=0.9, identification_confidence=0.95)
    one = build_visits([ais(left), back], [], day(12), vessels=[SHIP])
    same = frame_to_visits(build_visits_frame(sightings_to_frame([ais(left), back]), looks_to_frame([]), day(12),
                                              vessels=[SHIP]))
    assert [(v.start, v.end, v.end_bound) for v in one] == [(v.start, v.end, v.end_bound) for v in same] == [
        (day(1), day(6), None)]
    assert build_trips(route, one, day(12), vessels=[SHIP]) == []


def test_frame_ids_spell_times_as_isoformat_does() -> None:
    """The columnar ids hash a polars-formatted time: whole seconds (no fraction in ``isoformat``), microseconds,
    identified and unidentified vessels must all give the record version's ids."""
    sightings = [
        sighting(1, 1.0),
        sighting(2, 10.0 + 1.5e-6 / 86400, vessel=None, length=80.0),
        sighting(3, 20.0 + 0.123456 / 86400, vessel=None, length=None),
        sighting(4, 30.25, site="dunai"),
    ]
    expected = build_visits(sightings, [], day(40), vessels=[SHIP])
    got = frame_to_visits(build_visits_frame(sightings_to_frame(sightings), looks_to_frame([]), day(40),
                                             vessels=[SHIP]))
    micros = [v.start.microsecond for v in expected]
    assert 0 in micros and any(m != 0 for m in micros)
    assert [v.id for v in got] == [v.id for v in expected]
    assert len(got) == 4


def test_one_observation_fused_twice_counts_once_in_a_visits_confidence() -> None:
    """One image's detection fused from the store and from a detections file is two sightings at one instant:
    one observation, at its best confidence (two chances to be right had made 0.6 into 0.84). Another source at
    that instant (the ship's AIS) and another moment are independent, and combine."""
    from dataclasses import replace

    a = replace(sighting(1, 1.0, conf=0.6), source_kind=SourceKind.IMAGE)
    b = replace(sighting(2, 1.0, conf=0.5), source_kind=SourceKind.IMAGE)
    ais = replace(sighting(3, 1.0, conf=0.5), source_kind=SourceKind.AIS)
    later = replace(sighting(4, 1.5, conf=0.5), source_kind=SourceKind.IMAGE)
    for members, want in (([a, b], 0.6), ([a, b, ais], 1 - 0.4 * 0.5), ([a, b, later], 1 - 0.4 * 0.5)):
        (rec,) = build_visits(members, [], day(40), vessels=[SHIP])
        (col,) = frame_to_visits(build_visits_frame(sightings_to_frame(members), looks_to_frame([]), day(40),
                                                    vessels=[SHIP]))
        assert rec.confidence == pytest.approx(want) and col.confidence == pytest.approx(want)


def test_an_ais_visits_level_counts_its_exit_only_once_the_exit_is_known() -> None:
    """The level (and confidence) of an AIS visit counts an exit that, as of a date within 72 h of the visit's
    end, had not been seen yet: an as-of judgement then depended on AIS that came later. Before the exit is known
    the visit counts as a level without it (4 -> 0.8); after, as stored (0.95); in both visit paths."""
    def ais(detail: str, conf: float) -> Sighting:
        return Sighting(id="a1", time=day(1), time_end=day(3), source_kind=SourceKind.AIS, site="rajin",
                        vessel="lady_r", event="ais_visit", confidence=conf, identification_confidence=1.0,
                        evidence_ids=("ais-1",), detail=detail)

    left = f"MMSI 1; GFW-style level 4; {DEPARTURE_SEEN}"
    for detail, conf, as_of, want in ((left, 0.95, day(4), 0.8), (left, 0.95, day(7), 0.95),
                                      ("MMSI 1; GFW-style level 3", 0.8, day(4), 0.8),
                                      (f"MMSI 1; GFW-style level 3; {DEPARTURE_SEEN}", 0.8, day(4), 0.6)):
        (visit,) = build_visits([ais(detail, conf)], [], as_of, vessels=[SHIP])
        (same,) = frame_to_visits(build_visits_frame(sightings_to_frame([ais(detail, conf)]), looks_to_frame([]),
                                                     as_of, vessels=[SHIP]))
        assert visit.confidence == pytest.approx(want) and same.confidence == pytest.approx(want), (detail, as_of)
