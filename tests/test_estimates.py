"""Cargo estimates: the published conversion, Monte Carlo intervals against hand arithmetic, trip-count bounds."""

from __future__ import annotations

import csv
import math
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from routewatch.analysis.estimates import (
    ContainersPerTrip,
    PublishedCount,
    conversion_range,
    estimate_cargo,
    rounds_from_containers,
    sensitivity_table,
    trip_count_samples,
)
from routewatch.model import Trip

SHARED = Path(os.environ.get("ROUTEWATCH_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
PUBLISHED = SHARED / "reference" / "published-estimates.csv"
T = datetime(2023, 9, 1, tzinfo=UTC)


def trip(i: int, conf: float, kind: str = "observed") -> Trip:
    return Trip(id=f"t{i}", route="r", vessel="v", origin_visit=None, destination_visit=None, depart=T,
                arrive=None, confidence=conf, evidence_ids=(f"e{i}",), kind=kind)


@pytest.mark.shared
def test_reproduces_the_published_conversion() -> None:
    if not PUBLISHED.exists():
        pytest.skip(f"needs the shared reference data: {PUBLISHED} is missing")
    rows = [r for r in csv.DictReader(PUBLISHED.open()) if r["containers"] and (r["shells_152mm"] or r["shells_122mm"])]
    assert any(r["containers"] == "6700" for r in rows)
    for row in rows:
        containers = float(row["containers"])
        for column, calibre in (("shells_152mm", "152mm"), ("shells_122mm", "122mm")):
            if not row[column]:
                continue
            published = float(row[column])
            low, high = conversion_range(containers, calibre)
            # published figures are rounded ("about 3 million", "500,000"): within 1 % of our range
            assert low * 0.99 <= published <= high * 1.01, (row["date"], calibre, low, high, published)
    # 6,700 x 400-460 = 2.68-3.082 M; 6,700 x 75-80 = 502,500-536,000
    est = rounds_from_containers(6700, "152mm", level=0.9)
    assert (est.assumptions["range"]) == pytest.approx([2_680_000, 3_082_000])
    # uniform draws: 90 % interval = 6,700 x (400 + 60 * [0.05, 0.5, 0.95]) = 2.700, 2.881, 3.062 M
    assert [est.low, est.value, est.high] == pytest.approx([2_700_100, 2_881_000, 3_061_900], rel=2e-3)
    rockets = rounds_from_containers(6700, "122mm")
    assert rockets.value == pytest.approx(6700 * 77.5, rel=2e-3)


def test_fixed_trip_count_containers_interval_matches_normal_arithmetic() -> None:
    # exactly 32 trips (not a lower bound), 250-350 containers each, independent:
    # mean 32 * 300 = 9,600; sd = sqrt(32) * 100 / sqrt(12) = 163.3; 90 % half-width 1.645 * 163.3 = 268.6
    containers = ContainersPerTrip.from_range(250, 350, "White House: about 300 per shipment")
    est = {e.name: e for e in estimate_cargo([], containers, published=PublishedCount(32, False, "x"),
                                             n=40_000, seed=3)}
    c = est["containers"]
    assert c.value == pytest.approx(9600, abs=10)
    assert (c.high - c.low) / 2 == pytest.approx(1.645 * math.sqrt(32) * 100 / math.sqrt(12), rel=0.05)
    assert est["trips"].low == est["trips"].high == 32
    shells = est["152 mm shells"]
    assert 9600 * 400 * 0.97 < shells.value < 9600 * 460 * 1.03
    assert shells.assumptions["rounds_per_container"] == [400.0, 460.0]


def test_at_least_n_is_never_below_n_and_adds_an_excess() -> None:
    containers = ContainersPerTrip.from_range(250, 350, "WH")
    est = {e.name: e for e in estimate_cargo([], containers, published=PublishedCount(32, True, "NK Pro"), seed=1)}
    assert est["trips"].low >= 32
    # excess mean 0.25 * 32 = 8 trips: the median is above the bound
    assert 36 <= est["trips"].value <= 42
    assert est["containers"].low >= 32 * 250
    assert "negative binomial" in est["trips"].assumptions["lower_bound_excess"]


def test_counted_trips_are_bernoulli_by_confidence_and_bounded_below_by_publication() -> None:
    rng = np.random.default_rng(0)
    trips = [trip(1, 1.0), trip(2, 0.5), trip(3, 0.5, "reported"), trip(4, 0.9, "other")]
    draws = trip_count_samples(trips, rng, 50_000)
    # 1 + Bernoulli(0.5) + Bernoulli(0.5); the "other" kind is not counted: mean 2, values 1..3
    assert draws.mean() == pytest.approx(2.0, abs=0.02) and set(np.unique(draws)) == {1, 2, 3}
    floor = trip_count_samples(trips, rng, 1000, published=PublishedCount(10, False, "x"))
    assert np.all(floor == 10)
    cargo = estimate_cargo(trips, ContainersPerTrip.from_stacks([300], "stack 21 Oct 2023"), seed=2)
    assert set(cargo[0].evidence_ids) == {"e1", "e2", "e3"}


def test_stacks_and_capacity_bases() -> None:
    stacks = ContainersPerTrip.from_stacks([300, 0, None], "stack")  # type: ignore[list-item]
    draws = stacks.sample(np.random.default_rng(0), (10_000,))
    assert draws.min() >= 240 and draws.max() <= 360
    cap = ContainersPerTrip.from_capacity(500, 0.5, 0.9)
    assert (cap.low, cap.high) == (250, 450)
    with pytest.raises(ValueError, match="no positive"):
        ContainersPerTrip.from_stacks([], "none")
    with pytest.raises(ValueError, match="unknown calibre"):
        conversion_range(1, "155mm")


def test_sensitivity_table_arithmetic() -> None:
    rows = sensitivity_table((10, 32), (300,))
    # 32 trips x 300 containers = 9,600; x 400-460 = 3.84-4.416 M shells
    assert [(r.trips, r.containers, r.rounds_low, r.rounds_high) for r in rows] == [
        (10, 3000, 1_200_000, 1_380_000), (32, 9600, 3_840_000, 4_416_000)]


@pytest.mark.parametrize(("value", "text"), [(4985909, "4,990,000"), (11588, "11,600"), (39.0, "39"),
                                             (1.234, "1.23"), (0, "0"), (float("nan"), "-")])
def test_estimates_are_written_to_three_significant_figures(value: float, text: str) -> None:
    from routewatch.analysis.estimates import significant

    assert significant(value) == text


def test_trips_outside_a_published_counts_period_are_added_to_it() -> None:
    """"At least 5 round trips, 15 Aug - 14 Oct" says nothing of December: three trips seen after it add to the
    count (the lower bound is 8), while trips inside its period are already in it."""
    from dataclasses import replace
    from datetime import timedelta

    count = PublishedCount(5, True, "a published count", start=T - timedelta(days=17), end=T + timedelta(days=43))
    inside = [trip(i, 1.0) for i in range(3)]
    later = [replace(trip(10 + i, 1.0), depart=T + timedelta(days=100 + 20 * i)) for i in range(3)]
    rng = np.random.default_rng(0)
    assert trip_count_samples(inside, rng, 2000, published=count).min() == 5
    assert trip_count_samples(inside + later, rng, 2000, published=count).min() == 8
    undated = replace(count, start=None, end=None)  # a count of unknown period covers every trip counted here
    assert trip_count_samples(inside + later, rng, 2000, published=undated).min() == 6
