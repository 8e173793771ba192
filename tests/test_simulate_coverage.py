"""Coverage planning: sensor-mix parsing, the judgement's false-alarm calibration, and the planning table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from routewatch.analysis.silence import PAUSE_LEVEL, RouteProcess
from routewatch.model import SENSOR_DETECTION, CoverageAssumption
from routewatch.simulate.coverage import (
    DEFAULT_MIXES,
    parse_sensor_mix,
    quiet_run_calibration,
    simulate_coverage,
)


def test_parse_sensor_mix() -> None:
    assert parse_sensor_mix("sentinel-1:12:1.0+planetscope:1:0.55") == (
        CoverageAssumption("sentinel-1", 12.0, 1.0), CoverageAssumption("planetscope", 1.0, 0.55))
    for bad, message in (("", "empty"), ("sentinel-1:12", "sensor:every_days:usable"),
                         ("landsat:16:1", "unknown sensor"), ("sentinel-2:x:0.5", "must be numbers"),
                         ("sentinel-2:5:1.5", "0 < usable <= 1"), ("sentinel-2:0:0.5", "every_days > 0")):
        with pytest.raises(ValueError, match=message):
            parse_sensor_mix(bad)


@pytest.mark.parametrize(
    ("every", "usable", "shape"),
    [(1.0, 0.55, 2.0), (5.0, 0.5, 1.0)],  # PlanetScope daily; Sentinel-2 with cloud and Poisson arrivals
)
def test_false_alarms_on_a_running_route_are_at_the_nominal_level(every: float, usable: float, shape: float) -> None:
    # Independent looks with known parameters: each look detects a call in progress with q = usable x p(120 m).
    # A still-running route is called paused when it stays unseen up to the first look where the judge's
    # 1 - S >= 0.95, so the false-alarm frequency must equal the judge's S there (<= 0.05) within Monte Carlo error.
    process = RouteProcess(7.0, shape, 1.0, 4.0)
    days = np.arange(every, 150.0, every)
    q = usable * SENSOR_DETECTION["sentinel-2" if every > 1 else "planetscope"].probability(120.0)
    cal = quiet_run_calibration(days, np.full(days.size, q), process, runs=20_000, n_paths=20_000, seed=5)
    assert cal.alarm_index is not None
    assert cal.judged_silence <= 1 - PAUSE_LEVEL
    error = math.hypot(cal.se, cal.judged_silence_se)
    assert abs(cal.false_alarm_rate - cal.judged_silence) <= 3.5 * error
    assert cal.false_alarm_rate <= (1 - PAUSE_LEVEL) + 3.5 * error
    # and it is not trivially zero: the level is used, not wasted (the call is not overly late)
    assert cal.false_alarm_rate > 0.02


def test_never_called_when_coverage_cannot_see_the_vessel() -> None:
    process = RouteProcess(7.0, 2.0, 1.0, 4.0)
    days = np.arange(12.0, 120.0, 12.0)
    cal = quiet_run_calibration(days, np.full(days.size, 0.02), process, runs=100, n_paths=2000)
    assert cal.alarm_index is None and cal.false_alarm_rate == 0.0


def test_default_table_orders_the_sensor_mixes_and_stays_calibrated() -> None:
    results = simulate_coverage(DEFAULT_MIXES, cadence_days=7.0, shape=2.0, years=15.0, stop_after_days=180.0,
                                seed=11, n_paths=1000)
    by_label = {r.sensors[0].sensor if len(r.sensors) == 1 else "mix": r for r in results}
    assert set(by_label) == {"sentinel-1", "sentinel-2", "planetscope", "mix"}
    s1, ps, mix = by_label["sentinel-1"], by_label["planetscope"], by_label["mix"]
    # daily looks call a stop sooner than a 12-day radar repeat, and adding Sentinel-2 to Sentinel-1 helps
    assert ps.median_days_to_call + 3 * ps.median_se < s1.median_days_to_call
    assert mix.median_days_to_call < s1.median_days_to_call
    # a pause cannot be called before the route has been quiet longer than most of its gaps
    assert ps.q25_days > 7.0
    for r in results:
        assert r.stops == math.ceil(15 * 365.25 / 180)
        assert r.running_years == pytest.approx(15.0, rel=0.1)
        # per quiet run, false calls stay at most at the nominal 5 % (within Monte Carlo error)
        se = math.sqrt(0.05 * 0.95 / max(r.quiet_runs, 1))
        assert r.false_alarms_per_quiet_run <= 0.05 + 3 * se
        assert r.false_alarms_per_year == pytest.approx(r.false_alarms / r.running_years)
    # usable looks per year follow the schedule: 365.25 / 12 for Sentinel-1, 0.55 x 365.25 for PlanetScope
    assert s1.usable_looks_per_year == pytest.approx(365.25 / 12, rel=0.05)
    assert ps.usable_looks_per_year == pytest.approx(0.55 * 365.25, rel=0.05)


def test_simulation_is_seeded() -> None:
    a = simulate_coverage(["sentinel-2:5:0.5"], years=3.0, seed=2, n_paths=500)
    b = simulate_coverage(["sentinel-2:5:0.5"], years=3.0, seed=2, n_paths=500)
    assert a == b
