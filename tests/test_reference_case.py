"""The reference case end to end: the shipped Rajin workspace, imported and judged as an analyst would on three dates.

The expected values are recomputed here from the model's parts applied to the example data (the arithmetic is in
the comments), not copied from the program's output.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import gamma

from routewatch.analysis.activity import JudgementConfig, coverage_looks
from routewatch.analysis.silence import RouteProcess, silence_survival, survival_standard_error
from routewatch.cli.core import parse_as_of
from routewatch.demo import example_dir
from routewatch.model import Status
from routewatch.pipeline import analyze
from routewatch.sources.reports.observations import import_observations
from routewatch.watchlist import load_watchlist

ROUTE = "rajin-russia"


@pytest.fixture
def case(store):  # type: ignore[no-untyped-def]
    watchlist = load_watchlist(example_dir() / "watchlist.toml")
    store.upsert_watchlist(watchlist)
    import_observations(store, example_dir() / "observations.csv", watchlist)
    return store, watchlist


def _rows() -> list[dict[str, str]]:
    with open(example_dir() / "observations.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_active_as_of_10_february(case) -> None:  # type: ignore[no-untyped-def]
    store, watchlist = case
    result = analyze(store, watchlist, parse_as_of("2024-02-10"), coverage=watchlist.coverage["near-daily"])
    act = result.activities[ROUTE]
    # Last activity before 10 Feb: LADY R at Vostochny on 8 Feb (the anchorage sightings from 10 Feb are not route
    # activity): two days quiet, well within a cadence of a call every few days.
    assert act.last_activity is not None and act.last_activity.date().isoformat() == "2024-02-08"
    assert act.status is Status.ACTIVE
    assert act.days_quiet == pytest.approx(2.0, abs=0.01)


def test_paused_on_2_march_with_near_daily_looks_and_undetermined_with_sentinel1(case) -> None:  # type: ignore[no-untyped-def]
    store, watchlist = case
    as_of = parse_as_of("2024-03-02")
    near = analyze(store, watchlist, as_of, coverage=watchlist.coverage["near-daily"]).activities[ROUTE]
    s1 = analyze(store, watchlist, as_of, coverage=watchlist.coverage["sentinel-1"]).activities[ROUTE]
    ledger = analyze(store, watchlist, as_of).activities[ROUTE]

    # The last shipment seen: MAIA-1 unloading at Rajin on 12 Feb (the row says so; the end of that UTC day).
    last_row = next(r for r in _rows() if r["subject"] == "MAIA-1" and r["site"] == "rajin")
    assert last_row["date_end"] == "2024-02-12"
    last = datetime(2024, 2, 13, tzinfo=UTC) - timedelta(microseconds=1)
    for act in (near, s1, ledger):
        assert act.last_activity == last
        assert act.details["last_activity_vessel"] == "maia-1"
    days_quiet = (as_of - last).total_seconds() / 86400  # 19 days
    assert near.days_quiet == pytest.approx(days_quiet) and round(days_quiet) == 19

    # Cadence: "at least 32 trips" from 1 Aug 2023, its span cut at the last activity: 196 days / 32.
    trip_row = next(r for r in _rows() if r["event"] == "trip_count" and r["site"] == "rajin>russia")
    span = (last - datetime(2023, 8, 1, tzinfo=UTC)).total_seconds() / 86400
    mean_gap = span / int(trip_row["count"])
    assert near.expected_gap_days == pytest.approx(mean_gap)
    assert 6.0 < mean_gap < 6.2

    # Even perfectly watched, a route with gamma(2) gaps of mean 6.1 days is quiet for 19 days this often:
    config = JudgementConfig()
    floor = gamma.sf(days_quiet, a=config.shape, scale=mean_gap / config.shape)
    assert near.details["p_silence_perfect_coverage"] == pytest.approx(floor)
    assert floor < 0.05  # so a call is possible at all

    # Near-daily: recompute P(silence | running) from the declared looks with an independent random stream.
    length = min(
        watchlist.vessel_lengths()[v]
        for v in watchlist.routes[ROUTE].vessels
        if v in watchlist.vessel_lengths()
    )
    assert length == 120.0
    t, p = coverage_looks(watchlist.coverage["near-daily"], ("rajin",), last, as_of, length)
    # PlanetScope at 0.5, 1.5, ... 18.5 (19); Sentinel-2 at 1.25 + 2.5k (8); Sentinel-1 at 6 and 18 (2).
    assert near.usable_looks_quiet == len(t) == 19 + 8 + 2
    process = RouteProcess(mean_gap, config.shape, *config.dwell_days, rate_evidence_calls=32)
    n = 40_000
    s = silence_survival(t, p, process, n_paths=n, rng=np.random.default_rng(12345))[-1]
    tolerance = 4 * (survival_standard_error(s, n) + survival_standard_error(s, config.n_paths))
    assert near.p_silence_if_active == pytest.approx(s, abs=tolerance)
    assert near.p_silence_if_active >= floor
    assert near.status is Status.PAUSED
    assert near.probability == pytest.approx(1 - near.p_silence_if_active)
    assert near.probability >= 0.95

    # Sentinel-1 alone: two looks in 19 days (days 6 and 18), each missing a call with probability >= 1 - 0.94;
    # the silence stays likely, so no call.
    assert s1.usable_looks_quiet == 2
    assert s1.status is Status.UNDETERMINED
    assert s1.probability < 0.95
    assert "Not enough coverage" in s1.explanation
    assert "sentinel-1 every 12 days" in s1.coverage

    # Published evidence alone has no empty looks: nothing can be called from it.
    assert ledger.usable_looks_quiet == 0
    assert ledger.status is Status.UNDETERMINED


def test_resumed_on_20_march(case) -> None:  # type: ignore[no-untyped-def]
    store, watchlist = case
    act = analyze(
        store, watchlist, parse_as_of("2024-03-20"), coverage=watchlist.coverage["near-daily"]
    ).activities[ROUTE]
    # LADY R at Rajin on 10 and 12 March, at Vostochny 14-15 March, after the 12 Feb - 10 Mar gap.
    assert act.status is Status.RESUMED
    assert act.last_activity is not None and act.last_activity.date().isoformat() == "2024-03-15"
    gap = act.details["resumed_after_gap"]
    assert gap[0].startswith("2024-02-12") and gap[1].startswith("2024-03-10")
    assert act.probability >= 0.95


def test_later_evidence_changes_nothing(case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, watchlist = case
    as_of = parse_as_of("2024-03-02")
    before = analyze(store, watchlist, as_of, coverage=watchlist.coverage["near-daily"], persist=False)
    later = tmp_path / "later.csv"
    later.write_text(
        "date_start,date_end,subject,subject_kind,site,event,detail,source,confidence\n"
        "2024-03-05,2024-03-05,MARIA,vessel,rajin,present,a later call,test,primary\n"
        "2024-03-25,2024-03-25,imagery,vessel,rajin,none_seen,an empty berth after the date,test,primary\n"
    )
    import_observations(store, later, watchlist)
    after = analyze(store, watchlist, as_of, coverage=watchlist.coverage["near-daily"], persist=False)
    assert after.activities == before.activities
    assert [v.id for v in after.visits] == [v.id for v in before.visits]


def test_trips_and_cargo_against_the_published_figures(case) -> None:  # type: ignore[no-untyped-def]
    store, watchlist = case
    result = analyze(store, watchlist, parse_as_of("2024-03-02"))
    act = result.activities[ROUTE]
    # Counted trips are what the evidence shows one by one; the published "at least 32" is kept beside them.
    # From the rows: LADY R at Rajin 4 Feb then Vostochny 8 Feb (observed); ANGARA at Rajin 9 Dec and 8 Jan, later
    # seen at the Zhoushan shipyard, and MAIA-1 at Rajin 12 Feb, later off Vladivostok (each left the origin, its
    # destination unseen: origin_only); the White House's Sep 2023 Najin-Dunay shipment (reported).
    kinds = sorted((t.kind, t.vessel or "-", t.depart.date().isoformat()) for t in result.trips)
    assert kinds == [
        ("observed", "lady-r", "2024-02-04"),
        ("origin_only", "angara", "2023-12-09"),
        ("origin_only", "angara", "2024-01-08"),
        ("origin_only", "maia-1", "2024-02-12"),
        ("reported", "-", "2023-09-07"),
    ]
    assert act.trips_total == 5
    published = [a for a in result.aggregates if a.event == "trip_count" and a.count == 32]
    assert published and published[0].lower_bound
    estimates = result.estimates[ROUTE]
    assert estimates, "a cargo estimate with an interval"
    for e in estimates:
        assert e.low <= e.value <= e.high
        assert e.assumptions


def test_28_february_is_overdue_but_not_yet_called(case) -> None:  # type: ignore[no-untyped-def]
    store, watchlist = case
    # Sixteen days after MAIA-1's call, before NK Pro's count (published for the period to 29 Feb) existed: the
    # cadence rests on what was known then, and the silence is not yet a pause, nor is any earlier gap a
    # "resumption" that could hide it.
    act = analyze(
        store, watchlist, parse_as_of("2024-02-28"), coverage=watchlist.coverage["near-daily"]
    ).activities[ROUTE]
    assert "32 trips" not in act.details["cadence_basis"]
    assert act.status is not Status.RESUMED
    assert act.status in (Status.ACTIVE, Status.UNDETERMINED)
