"""The silence model: how likely is the observed silence at a route's origin if the route were still running?

A running route makes calls at its origin as a renewal process: the gaps between arrivals follow a gamma
distribution with the route's mean cadence and a shape (1 = random, Poisson arrivals; larger = a more regular
shuttle), and each call lasts a dwell time. A look at time t detects a call in progress with the look's probability
(usable fraction x detection probability for the fleet's vessel length). Nothing else is assumed: in particular,
consecutive looks of the same call are *not* treated as independent chances, which is what a naive (1 - f q)^n
would do and why it overstates the evidence of daily imaging.

``silence_survival`` answers for every look at once, by Monte Carlo over simulated routes with common random
numbers: S[m] = P(no look up to and including look m would have shown a vessel | still running). The pause
probability at look m is 1 - S[m]. The same function serves the live judgement and the coverage planner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

PAUSE_LEVEL = 0.95
DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class RouteProcess:
    """The running route's calls at its origin.

    ``mean_gap_days``: mean time between call arrivals. ``shape``: gamma shape of the gaps. ``dwell_days_low`` /
    ``dwell_days_high``: a call lasts a uniform time in this range. ``rate_evidence_calls``: how many calls the
    cadence was estimated from; when set, each simulated route draws its own cadence from the Gamma posterior of the
    rate (so a cadence known from few calls gives wider, more cautious answers). None means the cadence is known.
    """

    mean_gap_days: float
    shape: float = 2.0
    dwell_days_low: float = 1.0
    dwell_days_high: float = 4.0
    rate_evidence_calls: float | None = None

    def __post_init__(self) -> None:
        if not self.mean_gap_days > 0:
            raise ValueError(f"mean_gap_days must be positive, got {self.mean_gap_days}")
        if not self.shape > 0:
            raise ValueError(f"shape must be positive, got {self.shape}")
        if not 0 <= self.dwell_days_low <= self.dwell_days_high:
            raise ValueError("dwell range must satisfy 0 <= low <= high")

    def with_mean_gap(self, mean_gap_days: float) -> RouteProcess:
        return replace(self, mean_gap_days=mean_gap_days)

    def p_no_arrival(self, days: float) -> float:
        """P(no call arrives within ``days`` of a call): the silence a perfectly watched, running route shows."""
        from scipy.special import gammaincc  # the gamma survival function, without importing scipy.stats

        return float(gammaincc(self.shape, max(days, 0.0) * self.shape / self.mean_gap_days))


def _mean_gaps(process: RouteProcess, n_paths: int, rng: np.random.Generator) -> np.ndarray:
    if process.rate_evidence_calls is None or process.rate_evidence_calls <= 0:
        return np.full(n_paths, process.mean_gap_days)
    # Rate ~ Gamma(n, n / rate_hat): centred on the estimate with relative sd 1/sqrt(n).
    n = process.rate_evidence_calls
    rate_hat = 1.0 / process.mean_gap_days
    rates = rng.gamma(shape=n, scale=rate_hat / n, size=n_paths)
    # A drawn rate above ten times the estimate has probability below e^-10 even for one call (n = 1); capping it
    # there changes nothing measurable and bounds the number of simulated calls (memory).
    return 1.0 / np.clip(rates, 1e-9, 10.0 * rate_hat)


def silence_survival(
    look_days: np.ndarray,
    look_probs: np.ndarray,
    process: RouteProcess,
    *,
    n_paths: int = 4000,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """S[m] = P(no detection at looks 0..m | route still running), looks given in days after the last activity.

    ``look_days`` must be sorted and >= 0 (time since the last activity, which is taken as the renewal point: the
    next call starts one full gap later, a slightly conservative choice). ``look_probs`` is each look's chance of
    detecting a vessel that is there. Returns an array of the same length (empty for no looks).
    """
    t = np.asarray(look_days, dtype=float)
    p = np.asarray(look_probs, dtype=float)
    if t.shape != p.shape:
        raise ValueError("look_days and look_probs differ in length")
    if t.size == 0:
        return np.empty(0)
    if np.any(np.diff(t) < 0) or t[0] < 0:
        raise ValueError("look_days must be sorted and non-negative")
    rng = rng if rng is not None else np.random.default_rng(0)
    horizon = float(t[-1])
    mean_gaps = _mean_gaps(process, n_paths, rng)
    scale = mean_gaps / process.shape
    # Enough arrivals that the last one is past the horizon on (almost) every path; extend if not.
    n_calls = max(4, math.ceil(horizon / float(np.min(mean_gaps)) * 1.5) + 6)
    gaps = rng.gamma(shape=process.shape, scale=scale[:, None], size=(n_paths, n_calls))
    arrivals = np.cumsum(gaps, axis=1)
    while np.any(arrivals[:, -1] <= horizon):
        more = rng.gamma(shape=process.shape, scale=scale[:, None], size=(n_paths, n_calls))
        arrivals = np.concatenate([arrivals, arrivals[:, -1:] + np.cumsum(more, axis=1)], axis=1)
    dwell = rng.uniform(process.dwell_days_low, process.dwell_days_high, size=arrivals.shape)
    present = _present(arrivals, arrivals + dwell, t)
    detected = present & (rng.random((n_paths, t.size)) < p[None, :])
    first = np.where(detected.any(axis=1), detected.argmax(axis=1), t.size)
    counts = np.bincount(first, minlength=t.size + 1)
    # P(first detection index > m) for each m.
    survival = 1.0 - np.cumsum(counts[:-1]) / n_paths
    return survival


def _present(arrivals: np.ndarray, departures: np.ndarray, t: np.ndarray) -> np.ndarray:
    """present[n, j]: on path n some call is in port at look time t[j].

    A call is in port at t when it arrived at or before t and has not left: with calls sorted by arrival, that is
    "the latest departure among the calls that arrived by t is at or after t" (calls may overlap). The number of
    arrivals by t is found for every path at once with one global searchsorted over row-offset arrivals.
    """
    n_paths, n_calls = arrivals.shape
    latest_departure = np.maximum.accumulate(departures, axis=1)
    span = float(max(arrivals.max(), t.max())) + 1.0
    offsets = (np.arange(n_paths, dtype=float) * span)[:, None]
    flat = (arrivals + offsets).ravel()
    queries = (t[None, :] + offsets).ravel()
    arrived = np.searchsorted(flat, queries, side="right").reshape(n_paths, t.size)
    arrived -= (np.arange(n_paths) * n_calls)[:, None]
    rows = np.broadcast_to(np.arange(n_paths)[:, None], arrived.shape)
    last = latest_departure[rows, np.maximum(arrived - 1, 0)]
    return (arrived > 0) & (last >= t[None, :])


def survival_standard_error(s: float, n_paths: int) -> float:
    """Binomial Monte Carlo standard error of a survival estimate."""
    return math.sqrt(max(s * (1.0 - s), 1.0 / n_paths) / n_paths)
