"""Cargo estimates: trips x containers per trip x rounds per container, with Monte Carlo intervals.

Each factor is uncertain in its own way, and the assumptions dict of every ``Estimate`` says how it was drawn:

* trips: each counted trip is real with its confidence (a sum of Bernoulli draws); a published "at least N" is a
  lower bound, so the true count is drawn as N + a negative-binomial excess (mean ``excess_fraction`` x N). Both
  are lower bounds on the same thing, so the larger of the two is used in each draw;
* containers per trip: an observed container stack ("about 300 containers", 21 Oct 2023), a range such as the
  White House's "about 300 per shipment", or vessel capacity (TEU) x a load factor; drawn per trip;
* rounds per container (South Korean defence ministry, Feb 2024): 152 mm shells 400-460, 122 mm rockets 75-80,
  drawn uniformly. Each calibre's total assumes every container held that calibre, as the published "X or Y" does.

Intervals are equal-tailed (90 % by default) over seeded draws, so the same inputs give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from routewatch.model import Estimate, Trip

# rounds per 20-ft container, from the published conversion (6,700 containers = about 3 million 152 mm or 500,000
# 122 mm); see the reference case notes.
ROUNDS_PER_CONTAINER: dict[str, tuple[float, float]] = {"152mm": (400.0, 460.0), "122mm": (75.0, 80.0)}
ROUND_NAMES = {"152mm": "152 mm shells", "122mm": "122 mm rockets"}
COUNTED_KINDS = ("observed", "origin_only", "fleet", "reported")


@dataclass(frozen=True, slots=True)
class ContainersPerTrip:
    """How many containers one shipment carries: ``low``-``high`` drawn uniformly, or resampled observed stacks
    with a measurement spread, or capacity (TEU) x a load factor range. ``basis`` says which, for the output."""

    low: float
    high: float
    basis: str
    stacks: tuple[float, ...] = ()
    spread: float = 0.2

    @classmethod
    def from_range(cls, low: float, high: float, basis: str) -> ContainersPerTrip:
        if not 0 < low <= high:
            raise ValueError(f"containers per trip: need 0 < low <= high, got {low}, {high}")
        return cls(low, high, basis)

    @classmethod
    def from_stacks(cls, counts: Iterable[float], basis: str, spread: float = 0.2) -> ContainersPerTrip:
        """Observed stacks (e.g. about 300 at Rajin on 21 Oct 2023), each read to +/- ``spread``."""
        stacks = tuple(float(c) for c in counts if c and c > 0)
        if not stacks:
            raise ValueError("containers per trip: no positive container stack count given")
        return cls(min(stacks) * (1 - spread), max(stacks) * (1 + spread), basis, stacks, spread)

    @classmethod
    def from_capacity(
        cls, capacity_teu: float, load_low: float = 0.5, load_high: float = 0.9, basis: str = ""
    ) -> ContainersPerTrip:
        """Capacity in TEU times a load factor: munitions are heavy, so ships sail below volume capacity."""
        if capacity_teu <= 0 or not 0 < load_low <= load_high <= 1:
            raise ValueError("containers per trip: need capacity > 0 and 0 < load_low <= load_high <= 1")
        text = basis or f"capacity {capacity_teu:g} TEU x load {load_low:.0%}-{load_high:.0%}"
        return cls(capacity_teu * load_low, capacity_teu * load_high, text)

    def sample(self, rng: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
        if self.stacks:
            base = rng.choice(np.asarray(self.stacks), size=size)
            return base * rng.uniform(1 - self.spread, 1 + self.spread, size=size)
        return rng.uniform(self.low, self.high, size=size)

    def describe(self) -> str:
        if self.stacks:
            return f"{self.basis}: stacks {', '.join(f'{s:g}' for s in self.stacks)} +/- {self.spread:.0%}"
        return f"{self.basis}: {self.low:g}-{self.high:g} containers per trip"


@dataclass(frozen=True, slots=True)
class PublishedCount:
    """A published trip count: ``lower_bound`` for "at least N"."""

    count: float
    lower_bound: bool
    source: str
    evidence_ids: tuple[str, ...] = ()
    start: datetime | None = None  # the period the count covers (None: taken to cover every trip counted here)
    end: datetime | None = None


def trip_count_samples(
    trips: Sequence[Trip],
    rng: np.random.Generator,
    n: int,
    *,
    published: PublishedCount | None = None,
    excess_fraction: float = 0.25,
    excess_dispersion: float = 2.0,
) -> np.ndarray:
    """Draws of the true number of trips (see the module docstring). A published count stands for the trips of its
    period only: the trips counted here outside it are added to it, not hidden under it."""
    mine = [t for t in trips if t.kind in COUNTED_KINDS]

    def draws(group: Sequence[Trip]) -> np.ndarray:
        conf = np.asarray([t.confidence for t in group], dtype=float)
        return (rng.random((n, conf.size)) < conf).sum(axis=1) if conf.size else np.zeros(n, dtype=int)

    if published is None:
        return draws(mine)
    inside: list[Trip] = []
    outside: list[Trip] = []
    for t in mine:
        within = (published.start is None or t.depart >= published.start) and (
            published.end is None or t.depart <= published.end)
        (inside if within else outside).append(t)
    counted = draws(inside)  # drawn first, as before periods were known: the same seed gives the same figures
    base = np.full(n, round(published.count))
    if published.lower_bound and excess_fraction > 0:
        mean = excess_fraction * published.count
        # negative binomial with mean m and dispersion k: p = k / (k + m)
        base = base + rng.negative_binomial(excess_dispersion, excess_dispersion / (excess_dispersion + mean), n)
    return np.maximum(counted, base) + (draws(outside) if outside else 0)


def significant(x: float, digits: int = 3) -> str:
    """A figure to ``digits`` significant figures, with thousands separators: an estimate whose interval spans tens
    of percent, on a guessed load factor, is not known to seven figures (4,985,909 is written 4,990,000)."""
    if x is None or not math.isfinite(x):
        return "-"
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    if magnitude >= digits - 1:
        return f"{round(x, -magnitude + digits - 1):,.0f}"
    return f"{x:,.{digits - 1 - magnitude}f}".rstrip("0").rstrip(".")


def _interval(x: np.ndarray, level: float) -> tuple[float, float, float]:
    tail = (1 - level) / 2 * 100
    lo, mid, hi = np.percentile(x, [tail, 50, 100 - tail])
    return float(mid), float(lo), float(hi)


def conversion_range(containers: float, calibre: str) -> tuple[float, float]:
    """The deterministic range of rounds for a container count: containers x (low, high) rounds per container."""
    low, high = _rounds(calibre)
    return containers * low, containers * high


def _rounds(calibre: str) -> tuple[float, float]:
    if calibre not in ROUNDS_PER_CONTAINER:
        raise ValueError(f"unknown calibre {calibre!r}; known: {sorted(ROUNDS_PER_CONTAINER)}")
    return ROUNDS_PER_CONTAINER[calibre]


def rounds_from_containers(
    containers: float, calibre: str, *, level: float = 0.9, n: int = 20_000, seed: int = 0,
    evidence_ids: tuple[str, ...] = (),
) -> Estimate:
    """A known container count converted to rounds of one calibre (the published conversion)."""
    low, high = _rounds(calibre)
    rng = np.random.default_rng(seed)
    draws = containers * rng.uniform(low, high, n)
    mid, lo, hi = _interval(draws, level)
    return Estimate(
        name=f"{ROUND_NAMES[calibre]} from {containers:,.0f} containers", unit="rounds", value=mid, low=lo,
        high=hi, level=level,
        assumptions={"containers": containers, "rounds_per_container": [low, high], "calibre": calibre,
                     "draws": n, "seed": seed, "range": list(conversion_range(containers, calibre))},
        evidence_ids=evidence_ids,
    )


def estimate_cargo(
    trips: Sequence[Trip],
    containers: ContainersPerTrip,
    *,
    published: PublishedCount | None = None,
    calibres: Sequence[str] = ("152mm", "122mm"),
    level: float = 0.9,
    n: int = 20_000,
    seed: int = 0,
    excess_fraction: float = 0.25,
) -> list[Estimate]:
    """Estimates of trips, containers and rounds per calibre, each with a ``level`` interval."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    n_trips = trip_count_samples(trips, rng, n, published=published, excess_fraction=excess_fraction)
    width = int(n_trips.max()) if n_trips.size else 0
    per_trip = containers.sample(rng, (n, max(width, 1)))
    mask = np.arange(per_trip.shape[1])[None, :] < n_trips[:, None]
    total = (per_trip * mask).sum(axis=1)
    evidence = tuple(dict.fromkeys(
        [e for t in trips if t.kind in COUNTED_KINDS for e in t.evidence_ids]
        + list(published.evidence_ids if published else ())
    ))
    kinds = {k: sum(1 for t in trips if t.kind == k) for k in COUNTED_KINDS}
    common = {
        "trips_counted": kinds,
        "published_count": None if published is None else
        {"count": published.count, "lower_bound": published.lower_bound, "source": published.source},
        "lower_bound_excess": f"negative binomial, mean {excess_fraction:.0%} of the published count, dispersion 2"
        if published and published.lower_bound else None,
        "containers_per_trip": containers.describe(),
        "draws": n, "seed": seed,
    }
    out = []
    for name, unit, draws in (("trips", "trips", n_trips.astype(float)), ("containers", "containers", total)):
        mid, lo, hi = _interval(draws, level)
        out.append(Estimate(name, unit, mid, lo, hi, level, dict(common), evidence))
    for calibre in calibres:
        low, high = _rounds(calibre)
        draws = total * rng.uniform(low, high, n)
        mid, lo, hi = _interval(draws, level)
        assumptions = {**common, "calibre": calibre, "rounds_per_container": [low, high],
                       "all_containers_this_calibre": True}
        out.append(Estimate(ROUND_NAMES[calibre], "rounds", mid, lo, hi, level, assumptions, evidence))
    return out


@dataclass(frozen=True, slots=True)
class SensitivityRow:
    trips: int
    containers_per_trip: float
    containers: float
    rounds_low: float
    rounds_high: float
    calibre: str


def sensitivity_table(
    trip_counts: Sequence[int] = (10, 20, 32, 40),
    containers_per_trip: Sequence[float] = (200.0, 300.0, 400.0),
    calibre: str = "152mm",
) -> list[SensitivityRow]:
    """How the total moves with the trip count and the load: rows of trips x containers per trip."""
    low, high = _rounds(calibre)
    return [
        SensitivityRow(t, c, t * c, t * c * low, t * c * high, calibre)
        for t in trip_counts
        for c in containers_per_trip
    ]
