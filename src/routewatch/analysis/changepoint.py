"""Rate changes in coverage-normalised counts: is a route slowing?

Counts per period (calls or trips seen) depend on how much was looked at, so both methods take an ``exposure`` per
period (for instance usable look-days) and model the count as Poisson with mean rate x exposure:

* ``poisson_cusum``: Page's one-sided CUSUM for a drop from ``rate_in_control`` to ``rate_out``; the classic
  choice when the rates are known, with a run-length guarantee set by ``threshold``;
* ``bocpd``: Adams & MacKay (2007) Bayesian online change points with a Gamma-Poisson model, when the rates are
  not known; it returns the posterior of the current run length, hence the probability that the rate changed in
  the last k periods.

Here the run length r_t counts the periods of the current regime *including* period t, so r_t = 1 means period t
is the first after a change (the predictive for a new regime uses the prior).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln


@dataclass(frozen=True, slots=True)
class CusumResult:
    """``alarm_index``: first period whose statistic reached the threshold (None: no alarm); ``statistic``: the
    CUSUM path S_t (log-likelihood-ratio units), one value per period."""

    alarm_index: int | None
    statistic: np.ndarray


def _as_arrays(
    counts: Sequence[float] | np.ndarray, exposure: Sequence[float] | np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(counts, dtype=float)
    e = np.ones_like(x) if exposure is None else np.asarray(exposure, dtype=float)
    if x.ndim != 1 or x.shape != e.shape:
        raise ValueError(f"counts ({x.shape}) and exposure ({e.shape}) must be 1-D and the same length")
    if np.any(x < 0) or np.any(e < 0) or not np.all(np.isfinite(x)) or not np.all(np.isfinite(e)):
        raise ValueError("counts and exposure must be finite and non-negative")
    return x, e


def poisson_cusum(
    counts: Sequence[float] | np.ndarray,
    exposure: Sequence[float] | np.ndarray | None,
    rate_in_control: float,
    rate_out: float,
    threshold: float,
) -> CusumResult:
    """One-sided Poisson CUSUM for a decrease in rate (per unit of exposure).

    S_0 = 0, S_t = max(0, S_{t-1} + x_t log(rate_out / rate_in) - e_t (rate_out - rate_in)); alarm at the first t
    with S_t >= threshold. A period with no exposure adds nothing: not looking is not evidence of a drop.
    """
    if not 0 < rate_out < rate_in_control:
        raise ValueError(f"a decrease needs 0 < rate_out ({rate_out}) < rate_in_control ({rate_in_control})")
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    x, e = _as_arrays(counts, exposure)
    llr = x * np.log(rate_out / rate_in_control) - e * (rate_out - rate_in_control)
    path = np.empty_like(llr)
    s = 0.0
    alarm: int | None = None
    for t, step in enumerate(llr):
        s = max(0.0, s + float(step))
        path[t] = s
        if alarm is None and s >= threshold:
            alarm = t
    return CusumResult(alarm, path)


@dataclass(frozen=True, slots=True)
class BocpdResult:
    """``run_length``: R[t, r] = P(r_t = r | x_1..t) for t = 1..T (row t-1), r = 0..T (r = 0 unused after t = 0).
    ``rate_mean``: posterior mean rate of the current regime after the last period (per unit exposure)."""

    run_length: np.ndarray
    rate_mean: float

    def prob_change_within(self, k: int) -> float:
        """P(the current regime started in one of the last k periods, after a change): sum of P(r_T = r) for
        r = 1..min(k, T - 1). The run that started at period 1 (r_T = T) is no change at all."""
        if k < 1:
            raise ValueError("k must be at least 1")
        total = self.run_length.shape[0]
        last = self.run_length[-1]
        return float(last[1 : min(k, total - 1) + 1].sum())

    @property
    def map_run_length(self) -> int:
        return int(np.argmax(self.run_length[-1]))


def _log_predictive(x: float, e: float, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Negative binomial log P(x | alpha, beta, exposure e): the Gamma(alpha, rate beta)-Poisson predictive."""
    if e == 0:
        return np.zeros_like(alpha) if x == 0 else np.full_like(alpha, -np.inf)
    return (
        gammaln(alpha + x)
        - gammaln(alpha)
        - gammaln(x + 1.0)
        + alpha * np.log(beta / (beta + e))
        + x * np.log(e / (beta + e))
    )


def bocpd(
    counts: Sequence[float] | np.ndarray,
    exposure: Sequence[float] | np.ndarray | None = None,
    *,
    hazard: float = 1.0 / 20.0,
    prior_shape: float = 1.0,
    prior_rate: float = 1.0,
) -> BocpdResult:
    """Bayesian online change-point detection for Poisson counts with exposure (Adams & MacKay 2007).

    ``hazard``: prior probability of a change before any period (1 / expected regime length in periods).
    ``prior_shape``/``prior_rate``: Gamma prior on a regime's rate (mean shape/rate per unit exposure).
    """
    if not 0 < hazard < 1:
        raise ValueError(f"hazard must be in (0, 1), got {hazard}")
    if prior_shape <= 0 or prior_rate <= 0:
        raise ValueError("prior_shape and prior_rate must be positive")
    x, e = _as_arrays(counts, exposure)
    n = x.size
    if n == 0:
        raise ValueError("bocpd needs at least one period")
    out = np.zeros((n, n + 1))
    # joint[r] = P(r_{t-1} = r, x_1..t-1), in logs; stats of the run of length r
    log_joint = np.array([0.0])
    alpha = np.array([prior_shape])
    beta = np.array([prior_rate])
    for t in range(n):
        log_pred_run = _log_predictive(x[t], e[t], alpha, beta)
        log_pred_new = float(_log_predictive(x[t], e[t], np.array([prior_shape]), np.array([prior_rate]))[0])
        grow = log_joint + log_pred_run + (np.log1p(-hazard) if t > 0 else 0.0)
        if t > 0:
            change = np.logaddexp.reduce(log_joint) + np.log(hazard) + log_pred_new
            # new run lengths: 1 (change at t), then r + 1 for each previous r >= 1
            log_joint = np.concatenate([[change], grow[1:]])
            alpha = np.concatenate([[prior_shape + x[t]], alpha[1:] + x[t]])
            beta = np.concatenate([[prior_rate + e[t]], beta[1:] + e[t]])
        else:
            log_joint = grow
            alpha = alpha + x[t]
            beta = beta + e[t]
        # index i of log_joint is run length i + 1
        log_joint = np.concatenate([[-np.inf], log_joint])
        alpha = np.concatenate([[prior_shape], alpha])
        beta = np.concatenate([[prior_rate], beta])
        norm = np.logaddexp.reduce(log_joint)
        log_joint = log_joint - norm
        out[t, : log_joint.size] = np.exp(log_joint)
    post = out[-1]
    rate_mean = float(np.sum(post * alpha / beta))
    return BocpdResult(out, rate_mean)
