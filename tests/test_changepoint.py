"""Change points on coverage-normalised counts, checked against arithmetic done by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from routewatch.analysis.changepoint import bocpd, poisson_cusum


def test_cusum_hand_computed() -> None:
    # rate 2 -> 1 per period, exposure 1: step = x * ln(1/2) - 1 * (1 - 2) = 1 - 0.6931 x
    # x:     2       3       0    0    1        0
    # step: -0.386  -1.079   1    1    0.307    1
    # S:     0       0       1    2    2.307    3.307   -> first S >= 2.5 at index 5
    r = poisson_cusum([2, 3, 0, 0, 1, 0], None, 2.0, 1.0, 2.5)
    ln2 = math.log(2)
    assert r.statistic == pytest.approx([0, 0, 1, 2, 3 - ln2, 4 - ln2])
    assert r.alarm_index == 5


def test_cusum_exposure_scales_the_expectation() -> None:
    # a period with no looks is no evidence: step = 0 * ln(1/2) - 0 * (-1) = 0
    r = poisson_cusum([0, 0, 0], [1.0, 0.0, 2.0], 2.0, 1.0, 10.0)
    # steps: 1, 0, 2  -> S: 1, 1, 3
    assert r.statistic == pytest.approx([1, 1, 3]) and r.alarm_index is None


def test_cusum_refuses_an_increase_and_bad_input() -> None:
    with pytest.raises(ValueError, match="decrease"):
        poisson_cusum([1], None, 1.0, 2.0, 1.0)
    with pytest.raises(ValueError, match="same length"):
        poisson_cusum([1, 2], [1.0], 2.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="non-negative"):
        poisson_cusum([-1], None, 2.0, 1.0, 1.0)


def test_bocpd_two_periods_by_hand() -> None:
    # prior Gamma(shape 1, rate 1), hazard 1/2, exposure 1.
    # t=1, x=0: only one run, P(r_1 = 1) = 1; posterior Gamma(1, 2).
    # t=2, x=3: predictive NB under Gamma(a, b): G(a+x)/(G(a) x!) (b/(b+1))^a (1/(b+1))^x
    #   run goes on:   (1 - 1/2) * [3!/3! * (2/3) * (1/3)^3] = 1/2 * 2/81 = 1/81
    #   new regime:    1/2 * [(1/2) * (1/2)^3]                = 1/32
    #   P(r_2 = 1) = (1/32) / (1/32 + 1/81) = 81/113, P(r_2 = 2) = 32/113
    r = bocpd([0, 3], [1, 1], hazard=0.5, prior_shape=1.0, prior_rate=1.0)
    assert r.run_length[0] == pytest.approx([0, 1, 0])
    assert r.run_length[1] == pytest.approx([0, 81 / 113, 32 / 113])
    assert r.prob_change_within(1) == pytest.approx(81 / 113)
    assert r.prob_change_within(5) == pytest.approx(81 / 113)  # r_2 = 2 is the run from period 1: no change
    # current rate: 81/113 * (1+3)/(1+1) + 32/113 * (1+3)/(1+2)
    assert r.rate_mean == pytest.approx(81 / 113 * 2 + 32 / 113 * 4 / 3)


def test_bocpd_finds_a_recent_drop_and_not_a_steady_rate() -> None:
    rng = np.random.default_rng(1)
    steady = rng.poisson(3.0, size=40)
    dropped = np.concatenate([rng.poisson(3.0, size=32), np.zeros(8)])
    exposure = np.ones(40)
    p_steady = bocpd(steady, exposure, hazard=1 / 50).prob_change_within(10)
    result = bocpd(dropped, exposure, hazard=1 / 50)
    assert result.prob_change_within(10) > 0.9 > 0.2 > p_steady
    assert 6 <= result.map_run_length <= 9
    assert result.rate_mean < 0.5


def test_bocpd_zero_exposure_period_is_uninformative() -> None:
    a = bocpd([2, 0, 2], [1, 0, 1], hazard=0.1)
    b = bocpd([2, 2], [1, 1], hazard=0.1)
    # the empty period only ages the runs (probability of a change in it, with no data to say which)
    assert a.rate_mean == pytest.approx(b.rate_mean, rel=0.2)
    assert np.allclose(a.run_length.sum(axis=1), 1.0)
