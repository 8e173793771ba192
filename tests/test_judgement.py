"""Unit tests of the silence model and the route judgement against hand-computed cases."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy.stats import gamma

from routewatch.analysis.activity import JudgementConfig, coverage_looks, judge_route
from routewatch.analysis.silence import RouteProcess, silence_survival, survival_standard_error
from routewatch.model import (
    SENSOR_DETECTION,
    AggregateObservation,
    CoverageAssumption,
    DetectionModel,
    Look,
    Route,
    SourceKind,
    Status,
    Visit,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_single_look_poisson_matches_closed_form() -> None:
    # Poisson arrivals (shape 1) at rate 1/5 per day, every call lasts exactly 2 days, one look at day 10 that
    # detects a vessel present with probability 0.8. A call is in progress at day 10 iff one arrived in [8, 10]:
    # P = 1 - exp(-2/5). So S = 1 - 0.8 * (1 - exp(-0.4)) = 0.73624...
    process = RouteProcess(mean_gap_days=5.0, shape=1.0, dwell_days_low=2.0, dwell_days_high=2.0)
    n = 200_000
    s = silence_survival(np.array([10.0]), np.array([0.8]), process, n_paths=n, rng=np.random.default_rng(3))
    expected = 1 - 0.8 * (1 - math.exp(-0.4))
    assert abs(s[0] - expected) < 4 * survival_standard_error(expected, n)


def test_dense_perfect_looks_reduce_to_first_gap() -> None:
    # Looks every 0.25 day that always detect, calls lasting at least a day: every call that starts before the
    # last look is seen, so silence up to look m = P(first gap > t_m) = gamma survival function.
    process = RouteProcess(mean_gap_days=6.0, shape=2.0, dwell_days_low=1.0, dwell_days_high=1.0)
    t = np.arange(0.25, 20.0, 0.25)
    n = 100_000
    s = silence_survival(t, np.ones_like(t), process, n_paths=n, rng=np.random.default_rng(5))
    for m in (3, 20, 40, len(t) - 1):
        exact = gamma.sf(t[m], a=2.0, scale=3.0)
        assert abs(s[m] - exact) < 4 * survival_standard_error(exact, n) + 1e-4
    assert np.all(np.diff(s) <= 1e-12), "silence can only become less likely as looks accumulate"


def test_repeated_looks_of_one_call_are_not_independent() -> None:
    # Two looks an hour apart see the same calls: they are worth barely more than one look. A naive independent
    # product (1 - f q)^2 would square the miss probability; the renewal model must not.
    process = RouteProcess(mean_gap_days=5.0, shape=1.0, dwell_days_low=2.0, dwell_days_high=2.0)
    one = silence_survival(np.array([10.0]), np.array([1.0]), process, n_paths=100_000)[0]
    two = silence_survival(np.array([10.0, 10.04]), np.array([1.0, 1.0]), process, n_paths=100_000)[-1]
    assert two == pytest.approx(one, abs=0.01)
    assert two > one**2 + 0.2


def test_coverage_looks_schedule() -> None:
    # Sentinel-1 every 12 days over 30 days: looks at 6 and 18 and 30 days, each with the S-1 detection probability.
    cov = [CoverageAssumption("sentinel-1", 12.0, 1.0)]
    t, p = coverage_looks(cov, ("a",), T0, T0 + timedelta(days=30), 120.0)
    assert list(t) == [6.0, 18.0, 30.0]
    assert p == pytest.approx([SENSOR_DETECTION["sentinel-1"].probability(120.0)] * 3)


def _route() -> Route:
    return Route("r", "A to B", origin=("a",), destination=("b",), vessels=("v1",))


def _visit(site: str, day: float, vessel: str = "v1") -> Visit:
    start = T0 + timedelta(days=day)
    return Visit(f"{site}-{day}", site, vessel, start, start + timedelta(days=1), 0.9, (f"s-{site}-{day}",))


def _regular_visits(n: int, every: float) -> list[Visit]:
    return [_visit("a", i * every) for i in range(n)] + [_visit("b", i * every + 2) for i in range(n)]


def test_recent_activity_is_active() -> None:
    visits = _regular_visits(10, 5.0)  # last activity: b at day 47-48
    as_of = T0 + timedelta(days=49)
    act = judge_route(
        _route(),
        as_of=as_of,
        visits=visits,
        trips=[],
        vessel_lengths={"v1": 120.0},
        coverage=[CoverageAssumption("planetscope", 1.0, 0.6)],
    )
    assert act.status is Status.ACTIVE
    assert act.days_quiet == pytest.approx(1.0)
    assert act.p_silence_if_active is not None and act.p_silence_if_active > 0.5


def test_long_silence_with_daily_looks_is_paused_and_sentinel1_is_not() -> None:
    visits = _regular_visits(10, 5.0)
    as_of = T0 + timedelta(days=48 + 30)
    cfg = JudgementConfig(n_paths=20_000)
    daily = judge_route(
        _route(),
        as_of=as_of,
        visits=visits,
        trips=[],
        vessel_lengths={"v1": 120.0},
        coverage=[CoverageAssumption("planetscope", 1.0, 0.8)],
        config=cfg,
    )
    # The arithmetic: calls every 5 days (9 gaps from day 0 to 45), gamma shape 2; 30 quiet days with a look a day
    # that sees a present vessel with p = 0.8 x 0.97. Even the perfect-coverage floor is gamma.sf(30, 2, 2.5):
    floor = gamma.sf(30, a=2, scale=2.5)
    assert floor < 1e-4
    assert daily.status is Status.PAUSED
    assert daily.probability >= 0.95
    # Recompute from the parts with another random stream: 30 daily looks from 0.5 days after the last activity.
    t, p = coverage_looks(
        [CoverageAssumption("planetscope", 1.0, 0.8)], ("a",), T0 + timedelta(days=48), as_of, 120.0
    )
    assert len(t) == 30 and p[0] == pytest.approx(0.8 * SENSOR_DETECTION["planetscope"].probability(120.0))
    process = RouteProcess(daily.expected_gap_days, 2.0, 1.0, 4.0, rate_evidence_calls=9)
    again = silence_survival(t, p, process, n_paths=20_000, rng=np.random.default_rng(99))[-1]
    assert daily.p_silence_if_active == pytest.approx(
        again, abs=4 * survival_standard_error(max(again, 1e-3), 20_000)
    )
    s1 = judge_route(
        _route(),
        as_of=as_of,
        visits=visits,
        trips=[],
        vessel_lengths={"v1": 120.0},
        coverage=[CoverageAssumption("sentinel-1", 12.0, 1.0)],
        config=cfg,
    )
    # Two or three S-1 looks in 30 days can each miss a 1-4 day call: not enough to call.
    assert s1.status is Status.UNDETERMINED
    assert s1.probability < 0.95
    assert "Not enough coverage" in s1.explanation


def test_no_looks_in_ledger_cannot_call_a_pause() -> None:
    visits = _regular_visits(10, 5.0)
    as_of = T0 + timedelta(days=80)
    act = judge_route(_route(), as_of=as_of, visits=visits, trips=[], vessel_lengths={"v1": 120.0})
    assert act.status is Status.UNDETERMINED
    assert act.usable_looks_quiet == 0
    assert act.p_silence_if_active == 1.0


def test_ledger_looks_are_used_and_unusable_ones_ignored() -> None:
    visits = _regular_visits(10, 5.0)
    as_of = T0 + timedelta(days=80)
    model = DetectionModel(l50_m=15.0, scale_m=4.0, p_max=0.97)
    looks = [
        Look(
            f"l{d}",
            "a",
            T0 + timedelta(days=d, hours=12),
            "planetscope",
            1.0,
            model,
            SourceKind.IMAGE,
            vessels_seen=0,
        )
        for d in range(50, 80)
    ] + [
        Look(f"u{d}", "a", T0 + timedelta(days=d, hours=6), "planetscope", 0.0, model, SourceKind.IMAGE)
        for d in range(50, 80)
    ]
    act = judge_route(
        _route(), as_of=as_of, visits=visits, trips=[], looks=looks, vessel_lengths={"v1": 120.0}
    )
    assert act.usable_looks_quiet == 30
    assert act.status is Status.PAUSED


def test_resumed_after_a_pause() -> None:
    visits = [*_regular_visits(10, 5.0), _visit("a", 100.0)]
    as_of = T0 + timedelta(days=105)
    act = judge_route(
        _route(),
        as_of=as_of,
        visits=visits,
        trips=[],
        vessel_lengths={"v1": 120.0},
        coverage=[CoverageAssumption("planetscope", 1.0, 0.8)],
    )
    assert act.status is Status.RESUMED
    assert act.details["resumed_after_gap"][1].startswith("2024-04-10")
    # Without the coverage to have called the gap a pause, the return of activity is just activity.
    s1 = judge_route(
        _route(),
        as_of=as_of,
        visits=visits,
        trips=[],
        vessel_lengths={"v1": 120.0},
        coverage=[CoverageAssumption("sentinel-1", 12.0, 1.0)],
    )
    assert s1.status is Status.ACTIVE


def test_reported_trip_count_sets_the_cadence() -> None:
    # Only two calls seen 40 days apart, but a report says at least 20 trips in those 40 days: cadence 2 days.
    visits = [_visit("a", 0.0), _visit("a", 40.0)]
    agg = AggregateObservation(
        "g",
        T0,
        T0 + timedelta(days=40),
        "a>b",
        "trip_count",
        20,
        None,
        "at least 20",
        ("e",),
        lower_bound=True,
    )
    act = judge_route(
        _route(),
        as_of=T0 + timedelta(days=45),
        visits=visits,
        trips=[],
        aggregates=[agg],
        vessel_lengths={"v1": 120.0},
        coverage=[CoverageAssumption("planetscope", 1.0, 0.8)],
    )
    assert act.expected_gap_days == pytest.approx(40.0 / 20)  # the count's own span: 40 days, 20 trips
    assert "at least 20 trips" in act.details["cadence_basis"]


def test_later_evidence_does_not_change_the_answer() -> None:
    visits = _regular_visits(10, 5.0)
    as_of = T0 + timedelta(days=70)
    cov = [CoverageAssumption("planetscope", 1.0, 0.8)]
    before = judge_route(
        _route(), as_of=as_of, visits=visits, trips=[], vessel_lengths={"v1": 120.0}, coverage=cov
    )
    later = [*visits, _visit("a", 75.0), _visit("b", 90.0)]
    after = judge_route(
        _route(), as_of=as_of, visits=later, trips=[], vessel_lengths={"v1": 120.0}, coverage=cov
    )
    assert before == after


def test_no_activity_is_undetermined() -> None:
    act = judge_route(_route(), as_of=T0, visits=[], trips=[])
    assert act.status is Status.UNDETERMINED
    assert act.last_activity is None


def test_one_call_is_undetermined_and_cites_that_call() -> None:
    """The judgement rests on the one call on record: its evidence is linked (not only named), so replacing the
    visits cannot orphan it and exports list it."""
    act = judge_route(_route(), as_of=T0 + timedelta(days=5), visits=[_visit("a", 0.0)], trips=[])
    assert act.status is Status.UNDETERMINED and act.last_activity is not None
    assert act.last_activity_evidence == ("s-a-0.0",)
    assert set(act.last_activity_evidence) <= set(act.evidence_ids)


def test_slowing_from_coverage_normalised_counts() -> None:
    # Daily usable looks for 30 weeks; a call every 3 days for 20 weeks, then every 10 days. The latest call is
    # recent, so the route is not quiet: the drop in rate is what the change-point test must find.
    model = DetectionModel(l50_m=15.0, scale_m=4.0, p_max=0.97)
    looks = [
        Look(f"l{d}", "a", T0 + timedelta(days=d, hours=12), "planetscope", 1.0, model, SourceKind.IMAGE)
        for d in range(0, 210)
    ]
    fast = [_visit("a", float(d)) for d in range(0, 140, 3)]
    slow = [_visit("a", float(d)) for d in range(143, 210, 10)]
    as_of = T0 + timedelta(days=205)
    act = judge_route(
        _route(), as_of=as_of, visits=fast + slow, trips=[], looks=looks, vessel_lengths={"v1": 120.0}
    )
    assert act.status is Status.SLOWING, act.explanation
    assert act.probability >= 0.5
    # The same calls at the old pace throughout: active.
    steady = [_visit("a", float(d)) for d in range(0, 205, 3)]
    act2 = judge_route(
        _route(), as_of=as_of, visits=steady, trips=[], looks=looks, vessel_lengths={"v1": 120.0}
    )
    assert act2.status is Status.ACTIVE


def test_slowing_counts_a_look_day_by_how_much_of_the_site_it_saw() -> None:
    """From week 21 six of seven daily looks saw 0.1 % of the site (cloud); calls were seen only on the clear days,
    at the old rate per clear day. Counted as whole look-days the cloudy days had made a slowing out of the cloud."""
    model = DetectionModel(l50_m=15.0, scale_m=4.0, p_max=0.97)
    looks = [
        Look(f"l{d}", "a", T0 + timedelta(days=d, hours=12), "planetscope", 1.0 if d < 140 or d % 7 == 0 else 0.001,
             model, SourceKind.IMAGE)
        for d in range(0, 210)
    ]
    calls = [_visit("a", float(d)) for d in range(0, 140, 3)] + [_visit("a", float(d)) for d in (147, 168, 189)]
    act = judge_route(_route(), as_of=T0 + timedelta(days=190), visits=calls, trips=[], looks=looks,
                      vessel_lengths={"v1": 120.0})
    assert act.status is Status.ACTIVE, act.explanation
    # calls seen whatever the weather (AIS) every 3 days, under looks that saw 5 % of the site until day 140 and
    # all of it after: the sky cleared, the calls did not drop (weighting the days by the fraction seen had made
    # the cloudy weeks' rate huge, and the clear weeks a slowing)
    cloudy_then_clear = [Look(f"c{d}", "a", T0 + timedelta(days=d, hours=12), "planetscope",
                              0.05 if d < 140 else 1.0, model, SourceKind.IMAGE) for d in range(0, 200)]
    steady = [_visit("a", float(d)) for d in range(0, 190, 3)]
    act = judge_route(_route(), as_of=T0 + timedelta(days=189), visits=steady, trips=[], looks=cloudy_then_clear,
                      vessel_lengths={"v1": 120.0})
    assert act.status is not Status.SLOWING, act.explanation


def test_a_count_published_after_as_of_is_not_used() -> None:
    # The count's period ends 12 hours after as_of: as of then, nobody had published it.
    visits = _regular_visits(10, 5.0)
    as_of = T0 + timedelta(days=49)
    agg = AggregateObservation(
        "g", T0, as_of + timedelta(hours=12), "a>b", "trip_count", 40, None, "40 trips", ("e",)
    )
    act = judge_route(
        _route(), as_of=as_of, visits=visits, trips=[], aggregates=[agg], vessel_lengths={"v1": 120.0}
    )
    assert "calls at the origin" in act.details["cadence_basis"]
    later = judge_route(
        _route(),
        as_of=as_of + timedelta(hours=12),
        visits=visits,
        trips=[],
        aggregates=[agg],
        vessel_lengths={"v1": 120.0},
    )
    assert "40 trips reported" in later.details["cadence_basis"]


def test_one_call_seen_twice_counts_once() -> None:
    # The same call reported by name and detected unidentified in an image: overlapping visits, one call.
    named = [_visit("a", float(d)) for d in range(0, 50, 10)]
    unnamed = [
        Visit(
            f"u{d}",
            "a",
            None,
            T0 + timedelta(days=d, hours=6),
            T0 + timedelta(days=d, hours=20),
            0.5,
            (f"s-u{d}",),
            size_class="100-150m",
        )
        for d in range(0, 50, 10)
    ]
    act = judge_route(
        _route(),
        as_of=T0 + timedelta(days=52),
        visits=named + unnamed,
        trips=[],
        vessel_lengths={"v1": 120.0},
    )
    assert act.expected_gap_days == pytest.approx(10.0)  # 5 calls over 40 days, not 10 calls
    assert act.details["cadence_basis"].startswith("5 calls")


def test_one_vessels_overlapping_visits_at_two_origin_sites_are_one_call() -> None:
    """A berth inside its port, both in the origin: the ship's visits at both (each site scanned for itself) are
    one call, or the cadence doubles; two ships at the two sites at once are two calls, and so is one name at two
    ports 150 km apart at once (two hulls). An unidentified detection at the berth joins the call too."""
    from shapely.geometry import box

    from routewatch.model import Site, SiteKind

    sites = {"a": Site("a", "port", SiteKind.PORT, box(130.265, 42.215, 130.31, 42.25)),
             "a_berth": Site("a_berth", "berth", SiteKind.BERTH, box(130.28, 42.225, 130.29, 42.232)),
             "far": Site("far", "far port", SiteKind.PORT, box(132.3, 42.86, 132.37, 42.9)),
             "b": Site("b", "destination", SiteKind.PORT, box(133.02, 42.71, 133.1, 42.76))}
    route = Route("r", "A to B", origin=("a", "a_berth", "far"), destination=("b",), vessels=("v1", "v2"))
    lengths = {"v1": 120.0, "v2": 120.0}

    def calls(visits: list[Visit]) -> str:
        act = judge_route(route, as_of=T0 + timedelta(days=52), visits=visits, trips=[], vessel_lengths=lengths,
                          sites=sites)
        return act.details["cadence_basis"].split(" calls")[0]

    port = [_visit("a", float(d)) for d in range(0, 50, 10)]
    berth = [replace(_visit("a_berth", d + 0.2), end=T0 + timedelta(days=d + 0.8)) for d in range(0, 50, 10)]
    assert calls(port + berth) == "5"
    unnamed = [replace(_visit("a_berth", d + 0.3, vessel=None), end=T0 + timedelta(days=d + 0.7))
               for d in range(0, 50, 10)]
    assert calls(port + berth + unnamed) == "5"
    assert calls(port + [_visit("a_berth", d + 0.2, vessel="v2") for d in range(0, 50, 10)]) == "10"
    assert calls(port + [_visit("far", float(d)) for d in range(0, 50, 10)]) == "10"
    # two named ships at once are two calls: at one port, or each at its berth (AIS gives each a visit at the
    # port and at both berths within its entry distance), whatever unnamed detection lies between them
    other = [_visit("a", d + 0.1, vessel="v2") for d in range(0, 50, 10)]
    assert calls(port + other) == "10"
    both = [v for d in range(0, 50, 10) for v in (
        replace(_visit("a_berth", d + 0.2), end=T0 + timedelta(days=d + 0.6)),
        replace(_visit("a_berth", d + 0.3, vessel="v2"), end=T0 + timedelta(days=d + 0.7)),
        replace(_visit("a_berth", d + 0.25, vessel=None), end=T0 + timedelta(days=d + 0.65)))]
    assert calls(port + other + both) == "10"
    # an image visit at the berth that began before the ship's AIS visits (grouped over days, or the ship dark on
    # arrival) joins its call: its port visit had come first and the unnamed call stayed apart (10 calls)
    early = [replace(_visit("a_berth", d - 0.5, vessel=None), end=T0 + timedelta(days=d + 0.5))
             for d in range(0, 50, 10)]
    late_berth = [replace(_visit("a_berth", d + 0.05), end=T0 + timedelta(days=d + 0.4)) for d in range(0, 50, 10)]
    assert calls(early + port + late_berth) == "5"
    # the calls do not hang on the order the visits come in (two ships named from one image tie on everything)
    from routewatch.analysis.activity import _Event, _origin_calls

    def ev(vessel: str | None, h0: float, h1: float) -> _Event:
        return _Event(T0 + timedelta(hours=h0), T0 + timedelta(hours=h1), "a", vessel, (), True, "a")

    tied = [ev("v1", 0, 10), ev("v2", 0, 10), ev(None, 5, 30), ev("v1", 25, 35)]
    swapped = [tied[1], tied[0], *tied[2:]]
    assert len(_origin_calls(tied)) == len(_origin_calls(swapped)) == 2
    # nor their evidence: two unnamed ships of one image tie on everything but what they rest on
    twins = [replace(ev(None, 0, 10), evidence=("img-100m",)), replace(ev(None, 0, 10), evidence=("img-60m",))]
    assert _origin_calls(twins) == _origin_calls(twins[::-1])


def test_an_overdue_silence_is_not_hidden_by_an_earlier_resumption() -> None:
    # A busy route (at least 30 trips in 45 days: a call every 1.5 days) pauses from day 48 to day 100, returns for
    # one call, then is silent again. Five days later it is overdue (gamma(2) gaps of mean 1.5 days: P(no call in
    # 5 days) = exp(-6.67) x 7.67 ~ 0.01), and no Sentinel-1 look has come yet: the current silence decides
    # (undetermined), even though activity returned on day 100 after a gap that Sentinel-1 looks showed was a pause.
    visits = [*_regular_visits(10, 5.0), _visit("a", 100.0)]
    agg = AggregateObservation(
        "g",
        T0,
        T0 + timedelta(days=45),
        "a>b",
        "trip_count",
        30,
        None,
        "at least 30",
        ("e",),
        lower_bound=True,
    )
    cov = [CoverageAssumption("sentinel-1", 12.0, 1.0)]
    as_of = T0 + timedelta(days=101 + 5)
    act = judge_route(
        _route(),
        as_of=as_of,
        visits=visits,
        trips=[],
        aggregates=[agg],
        vessel_lengths={"v1": 120.0},
        coverage=cov,
    )
    assert act.details["p_silence_perfect_coverage"] == pytest.approx(
        gamma.sf(5.0, a=2, scale=0.75), rel=1e-6
    )
    assert act.details["p_silence_perfect_coverage"] < 0.05
    assert act.usable_looks_quiet == 0
    assert act.status is Status.UNDETERMINED
    # Right after the return the same data is a resumption: the gap was called paused before the ship came back.
    back = judge_route(
        _route(),
        as_of=T0 + timedelta(days=101, hours=12),
        visits=visits,
        trips=[],
        aggregates=[agg],
        vessel_lengths={"v1": 120.0},
        coverage=cov,
    )
    assert back.status is Status.RESUMED


def test_an_unidentified_ship_of_another_size_is_not_the_fleets_activity() -> None:
    """The fleet is one 120 m ship: a 340 m unidentified hull at the origin (other traffic, or a recurring false
    alarm at a quay) does not restart the route's clock; one of a size the fleet's ship could be measured at does,
    and without a known fleet length every unidentified ship counts, as before."""
    from dataclasses import replace

    visits = _regular_visits(10, 5.0)  # last fleet activity: b at day 47-48
    as_of = T0 + timedelta(days=80)
    cov = [CoverageAssumption("planetscope", 1.0, 0.6)]
    big = replace(_visit("a", 75, vessel=None), size_class="250m+")  # type: ignore[arg-type]
    fits = replace(_visit("a", 75, vessel=None), size_class="100-150m")  # type: ignore[arg-type]

    def judged(extra, lengths):
        return judge_route(_route(), as_of=as_of, visits=[*visits, extra], trips=[], vessel_lengths=lengths,
                           coverage=cov)

    assert judged(big, {"v1": 120.0}).last_activity == T0 + timedelta(days=48)
    assert judged(fits, {"v1": 120.0}).last_activity == T0 + timedelta(days=76)
    assert judged(big, {}).last_activity == T0 + timedelta(days=76)


def test_a_ship_that_ais_names_and_the_watchlist_does_not_is_not_the_fleets_activity() -> None:
    """A 120 m bulk carrier with AIS at the destination port is another ship: pooled with the unidentified image
    detections of its size it had restarted the route's clock at every call of any ship at a busy port (and made
    fleet trips at the origin). An image detection of that size without AIS still may be the fleet's ship, and a
    route without a fleet list counts the other ship as traffic."""
    from dataclasses import replace

    from routewatch.analysis.trips import build_trips
    from routewatch.analysis.visits import build_visits
    from routewatch.model import Sighting, Vessel

    visits = _regular_visits(10, 5.0)  # last fleet activity: b at day 47-48
    as_of = T0 + timedelta(days=80)
    cov = [CoverageAssumption("planetscope", 1.0, 0.6)]
    at = T0 + timedelta(days=75)

    def sighting(site: str, kind: SourceKind, detail: str = "") -> Sighting:
        return Sighting(id=f"{site}-{kind}", time=at, time_end=at + timedelta(days=1), source_kind=kind, site=site,
                        vessel=None, event="ais_visit" if kind is SourceKind.AIS else "detection", length_m=120.0,
                        confidence=0.9, detail=detail)

    other = [sighting("b", SourceKind.AIS, "MMSI 273111111; GFW-style level 4"),
             sighting("a", SourceKind.AIS, "MMSI 273111111; GFW-style level 4; departure seen")]
    unseen = [sighting("b", SourceKind.IMAGE)]
    fleet = [Vessel("v1", "V1", length_m=120.0)]

    def judged(route: Route, extra: list[Sighting]):
        extra_visits = build_visits(extra, [], as_of, vessels=fleet)
        trips = build_trips(route, extra_visits, as_of, vessels=fleet)
        act = judge_route(route, as_of=as_of, visits=[*visits, *extra_visits], trips=trips,
                          vessel_lengths={"v1": 120.0}, coverage=cov)
        return act.last_activity, [t.kind for t in trips]

    assert judged(_route(), other) == (T0 + timedelta(days=48), [])
    assert judged(_route(), unseen) == (T0 + timedelta(days=76), [])
    # an image detection that fusion identified as that AIS ship is the same other ship; a weak match (likelier a
    # ship without AIS) is still an unidentified one
    fused = [sighting("b", SourceKind.IMAGE, 'identified; MMSI 273111111; {"MMSI 273111111": 0.93}')]
    weak = [sighting("b", SourceKind.IMAGE, 'identified; {"MMSI 273111111": 0.2}')]
    assert judged(_route(), fused)[0] == T0 + timedelta(days=48)
    assert judged(_route(), weak)[0] == T0 + timedelta(days=76)
    fleetless = Route("r", "A to B", origin=("a",), destination=("b",))
    assert judged(fleetless, other)[0] == T0 + timedelta(days=76)
    # a route without a fleet list is any vessel's: the other ship's call at a and then at b is its trip
    leg = [sighting("a", SourceKind.AIS, "MMSI 273111111; GFW-style level 4"),
           replace(sighting("b", SourceKind.AIS, "MMSI 273111111; GFW-style level 4"), id="b2",
                   time=at + timedelta(days=2), time_end=at + timedelta(days=3))]
    assert judged(fleetless, leg)[1] == ["observed"] and judged(_route(), leg)[1] == []
    # a tug with AIS moored at a while an unidentified hull calls at a and then b: the hull's fleet trip stands
    # (the tug's visit had hidden every unidentified call at its site)
    tug = replace(sighting("a", SourceKind.AIS, "MMSI 273999999; GFW-style level 4"), id="tug", length_m=30.0,
                  time=at - timedelta(days=5), time_end=at + timedelta(days=5))
    hull = [replace(sighting("a", SourceKind.IMAGE), id="h1"),
            replace(sighting("b", SourceKind.IMAGE), id="h2", time=at + timedelta(days=2), time_end=None)]
    fleet_trips = judged(Route("r", "A to B", origin=("a",), destination=("b",), vessels=("v1",)), [tug, *hull])[1]
    assert judged(fleetless, [tug, *hull])[1].count("fleet") == fleet_trips.count("fleet") == 1


def test_fleet_size_classes_need_every_fleet_length_and_allow_the_length_error() -> None:
    from routewatch.analysis.activity import fleet_size_classes

    route = _route()
    assert fleet_size_classes(route, {}) is None and fleet_size_classes(route, {"v1": float("nan")}) is None
    assert fleet_size_classes(Route("r", "r", ("a",), ("b",)), {"v1": 120.0}) is None  # no fleet list
    assert fleet_size_classes(route, {"v1": 150.0}) == {"50-100m", "100-150m", "150-250m"}
    assert "100-150m" in fleet_size_classes(route, {"v1": 50.0})  # a 50 m ship measured at 100 m still counts


def test_the_explanation_states_the_regularity_and_that_declared_looks_are_assumed() -> None:
    """A pause call can hang on how regular the calls are taken to be, and a declared schedule's looks were never
    made: the explanation says both."""
    visits = _regular_visits(10, 5.0)
    as_of = T0 + timedelta(days=80)
    declared = judge_route(_route(), as_of=as_of, visits=visits, trips=[], vessel_lengths={"v1": 120.0},
                           coverage=[CoverageAssumption("planetscope", 1.0, 0.6)])
    assert "gamma-distributed with shape 2" in declared.explanation and "looks assumed (declared" in declared.explanation
    poisson = judge_route(_route(), as_of=as_of, visits=visits, trips=[], vessel_lengths={"v1": 120.0},
                          coverage=[CoverageAssumption("planetscope", 1.0, 0.6)], config=JudgementConfig(shape=1.0))
    assert "random (gamma shape 1" in poisson.explanation
