"""Coverage planning: with this sensor mix, how soon is a stopped route called paused, and how often falsely?

A route is simulated as a renewal process (gamma gaps between call arrivals with a mean cadence in days and a
shape; each call dwells 1-4 days). It runs for ``stop_after_days``; the stop is the departure of the last call that
arrived before then, and nothing arrives afterwards. Each sensor of the mix looks at the origin every
``every_days`` from a random phase (with up to +/-10 % of a revisit of jitter, capped at 6 hours), a look is usable
with probability ``usable`` (cloud, fog), and a usable look detects a call in progress with the sensor's detection
probability for the vessel length (``model.SENSOR_DETECTION``).

The judge is the production one: after each detection, the looks that follow are the quiet run, and
``analysis.silence.silence_survival`` gives the pause probability 1 - S[m] at each look. A look with
1 - S[m] >= 0.95 while the route was running is a false alarm (counted once per quiet run: the call "paused" is
made once); the first such look after the stop is the call. A quiet run so short that even perfect coverage would
leave P(no arrival) > 0.1 cannot reach a 95 % call, so the judge is not run for it (a bound, not an approximation).

Reported per mix: median and IQR of the days from the stop to the call, with a bootstrap Monte Carlo standard
error; false alarms per year of running route, with a Poisson standard error; and false alarms per quiet run,
which the judgement holds at most at the nominal 5 %.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import gamma as gamma_dist

from routewatch.analysis.silence import PAUSE_LEVEL, RouteProcess, silence_survival
from routewatch.model import SENSOR_DETECTION, CoverageAssumption

DEFAULT_MIXES: tuple[str, ...] = (
    "sentinel-1:12:1.0",
    "sentinel-2:5:0.5",
    "planetscope:1:0.55",
    "sentinel-1:12:1.0+sentinel-2:5:0.5",
)
GATE_P_NO_ARRIVAL = 0.1
DAYS_PER_YEAR = 365.25


def parse_sensor_mix(text: str) -> tuple[CoverageAssumption, ...]:
    """``sensor:every_days:usable`` parts joined with ``+``, e.g. ``sentinel-1:12:1.0+planetscope:1:0.55``."""
    parts = [p.strip() for p in text.split("+") if p.strip()]
    if not parts:
        raise ValueError(f"sensor mix {text!r} is empty; write e.g. 'sentinel-1:12:1.0+planetscope:1:0.55'")
    out = []
    for part in parts:
        fields = part.split(":")
        if len(fields) != 3:
            raise ValueError(f"sensor mix {text!r}: part {part!r} is not 'sensor:every_days:usable'")
        sensor, every_s, usable_s = (f.strip() for f in fields)
        if sensor not in SENSOR_DETECTION:
            raise ValueError(f"sensor mix {text!r}: unknown sensor {sensor!r}; known: {sorted(SENSOR_DETECTION)}")
        try:
            every, usable = float(every_s), float(usable_s)
        except ValueError:
            raise ValueError(f"sensor mix {text!r}: every_days and usable in {part!r} must be numbers") from None
        if not every > 0 or not 0 < usable <= 1:
            raise ValueError(f"sensor mix {text!r}: need every_days > 0 and 0 < usable <= 1 in {part!r}")
        out.append(CoverageAssumption(sensor, every, usable))
    return tuple(out)


def describe_mix(mix: Sequence[CoverageAssumption]) -> str:
    return " + ".join(a.describe() for a in mix)


@dataclass(frozen=True, slots=True)
class MixResult:
    """Figures for one sensor mix (days, per year); ``*_se`` are Monte Carlo standard errors."""

    label: str
    sensors: tuple[CoverageAssumption, ...]
    stops: int
    censored: int  # stops never called within the horizon
    median_days_to_call: float  # inf when more than half the stops were never called
    median_se: float
    q25_days: float
    q75_days: float
    false_alarms: int
    running_years: float
    false_alarms_per_year: float
    false_alarms_per_year_se: float
    quiet_runs: int
    false_alarms_per_quiet_run: float
    usable_looks_per_year: float


def _look_schedule(
    mix: Sequence[CoverageAssumption], end: float, length_m: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Usable looks in [0, end]: times (days) and detection probabilities, sorted."""
    times, probs = [], []
    for a in mix:
        n = math.floor(end / a.every_days) + 2
        jitter = min(0.1 * a.every_days, 0.25)
        t = rng.uniform(0, a.every_days) + a.every_days * np.arange(n) + rng.uniform(-jitter, jitter, n)
        usable = rng.random(n) < a.usable
        keep = usable & (t >= 0) & (t <= end)
        times.append(t[keep])
        probs.append(np.full(int(keep.sum()), SENSOR_DETECTION[a.sensor].probability(length_m)))
    t_all = np.concatenate(times) if times else np.empty(0)
    p_all = np.concatenate(probs) if probs else np.empty(0)
    order = np.argsort(t_all, kind="stable")
    return t_all[order], p_all[order]


def _route(process: RouteProcess, stop_after: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Arrivals and departures (days) of the calls that arrive before ``stop_after``."""
    scale = process.mean_gap_days / process.shape
    n = int(stop_after / process.mean_gap_days * 2) + 20
    arrivals = np.cumsum(rng.gamma(process.shape, scale, n))
    while arrivals[-1] < stop_after:
        arrivals = np.concatenate([arrivals, arrivals[-1] + np.cumsum(rng.gamma(process.shape, scale, n))])
    arrivals = arrivals[arrivals < stop_after]
    departures = arrivals + rng.uniform(process.dwell_days_low, process.dwell_days_high, arrivals.size)
    return arrivals, departures


@dataclass(frozen=True, slots=True)
class _Replicate:
    running_days: float
    false_alarms: int
    quiet_runs: int
    days_to_call: float  # inf: not called within the horizon
    usable_looks: int
    looked_days: float


def _first_alarm(
    rel: np.ndarray, p: np.ndarray, process: RouteProcess, level: float, n_paths: int, rng: np.random.Generator
) -> int | None:
    s = silence_survival(rel, p, process, n_paths=n_paths, rng=rng)
    hits = np.nonzero(1.0 - s >= level)[0]
    return int(hits[0]) if hits.size else None


def _replicate(
    mix: Sequence[CoverageAssumption],
    process: RouteProcess,
    *,
    stop_after: float,
    horizon: float,
    length_m: float,
    level: float,
    n_paths: int,
    gate_days: float,
    route_rng: np.random.Generator,
    look_rng: np.random.Generator,
) -> _Replicate:
    arrivals, departures = _route(process, stop_after, route_rng)
    stop = float(departures.max()) if departures.size else 0.0
    t, p = _look_schedule(mix, stop + horizon, length_m, look_rng)
    # a call in progress at each look (calls can overlap when a gap is shorter than a dwell)
    present = ((arrivals[None, :] <= t[:, None]) & (t[:, None] <= departures[None, :])).any(axis=1)
    detected = present & (look_rng.random(t.size) < p)
    det_idx = np.nonzero(detected)[0]
    false_alarms = 0
    days_to_call = math.inf
    for k, i in enumerate(det_idx):
        final = k + 1 == det_idx.size
        j_end = t.size if final else det_idx[k + 1]
        rel, pr = t[i + 1 : j_end] - t[i], p[i + 1 : j_end]
        if rel.size == 0 or rel[-1] < gate_days:
            continue
        if not final:
            m = _first_alarm(rel, pr, process, level, n_paths, look_rng)
            false_alarms += m is not None
            continue
        # the final quiet run spans the stop: evaluate a short window first, the whole horizon only if needed
        for window in (stop - t[i] + 60.0, math.inf):
            keep = rel <= window
            s = silence_survival(rel[keep], pr[keep], process, n_paths=n_paths, rng=look_rng)
            hits = np.nonzero(1.0 - s >= level)[0]
            running_hits = hits[t[i] + rel[keep][hits] <= stop]
            after = hits[t[i] + rel[keep][hits] > stop]
            if after.size or window == math.inf or keep.all():
                false_alarms += running_hits.size > 0
                if after.size:
                    days_to_call = float(t[i] + rel[keep][after[0]] - stop)
                break
    return _Replicate(stop, false_alarms, int(det_idx.size), days_to_call, int(t.size), stop + horizon)


def _median_se(days: np.ndarray, rng: np.random.Generator, reps: int = 200) -> float:
    if days.size < 2 or not np.isfinite(np.median(days)):
        return math.nan
    boots = np.median(rng.choice(days, size=(reps, days.size), replace=True), axis=1)
    boots = boots[np.isfinite(boots)]
    return float(np.std(boots, ddof=1)) if boots.size > 1 else math.nan


def simulate_coverage(
    sensor_mixes: Sequence[Sequence[CoverageAssumption] | str] = DEFAULT_MIXES,
    cadence_days: float = 7.0,
    shape: float = 2.0,
    years: float = 100.0,
    stop_after_days: float = 180.0,
    seed: int = 0,
    *,
    vessel_length_m: float = 120.0,
    dwell_days: tuple[float, float] = (1.0, 4.0),
    horizon_days: float = 365.0,
    n_paths: int = 2000,
    level: float = PAUSE_LEVEL,
) -> list[MixResult]:
    """Simulate ``years`` of running route (as replicates of ``stop_after_days`` each, each ending in a stop) under
    each sensor mix and judge it. Replicates share route realisations across mixes (common random numbers)."""
    if cadence_days <= 0 or shape <= 0 or years <= 0 or stop_after_days <= 0:
        raise ValueError("cadence_days, shape, years and stop_after_days must be positive")
    process = RouteProcess(cadence_days, shape, dwell_days[0], dwell_days[1])
    gate_days = float(gamma_dist.isf(GATE_P_NO_ARRIVAL, a=shape, scale=cadence_days / shape))
    n_rep = max(2, math.ceil(years * DAYS_PER_YEAR / stop_after_days))
    mixes = [parse_sensor_mix(m) if isinstance(m, str) else tuple(m) for m in sensor_mixes]
    results = []
    for mix_no, mix in enumerate(mixes):
        children = np.random.SeedSequence(seed).spawn(n_rep)
        reps = [
            _replicate(
                mix, process, stop_after=stop_after_days, horizon=horizon_days, length_m=vessel_length_m,
                level=level, n_paths=n_paths, gate_days=gate_days,
                route_rng=np.random.default_rng(child.spawn(1)[0]),
                look_rng=np.random.default_rng([*child.generate_state(2), mix_no]),
            )
            for child in children
        ]
        results.append(_summarise(mix, reps, seed))
    return results


def _summarise(mix: tuple[CoverageAssumption, ...], reps: Sequence[_Replicate], seed: int) -> MixResult:
    days = np.asarray([r.days_to_call for r in reps])
    running_years = sum(r.running_days for r in reps) / DAYS_PER_YEAR
    false_alarms = sum(r.false_alarms for r in reps)
    runs = sum(r.quiet_runs for r in reps)
    q25, med, q75 = (float(np.percentile(days, q, method="lower")) for q in (25, 50, 75))
    return MixResult(
        label=describe_mix(mix),
        sensors=mix,
        stops=len(reps),
        censored=int(np.sum(~np.isfinite(days))),
        median_days_to_call=med,
        median_se=_median_se(days, np.random.default_rng(seed)),
        q25_days=q25,
        q75_days=q75,
        false_alarms=false_alarms,
        running_years=running_years,
        false_alarms_per_year=false_alarms / running_years if running_years else math.nan,
        false_alarms_per_year_se=math.sqrt(false_alarms) / running_years if running_years else math.nan,
        quiet_runs=runs,
        false_alarms_per_quiet_run=false_alarms / runs if runs else 0.0,
        usable_looks_per_year=sum(r.usable_looks for r in reps) / sum(r.looked_days for r in reps) * DAYS_PER_YEAR,
    )


@dataclass(frozen=True, slots=True)
class Calibration:
    """How often the judgement calls a pause during one quiet run of a route that is in fact still running.

    ``alarm_index``: the first look at which the judge's 1 - S reaches the level (None: never); ``judged_silence``:
    the judge's S at that look (<= 1 - level); ``false_alarm_rate``: the share of independently simulated running
    routes that stayed silent up to that look, i.e. were called paused, with its binomial ``se``.
    """

    alarm_index: int | None
    judged_silence: float
    judged_silence_se: float
    false_alarm_rate: float
    se: float
    runs: int


def quiet_run_calibration(
    look_days: np.ndarray,
    look_probs: np.ndarray,
    process: RouteProcess,
    *,
    runs: int = 20_000,
    n_paths: int = 20_000,
    level: float = PAUSE_LEVEL,
    seed: int = 0,
) -> Calibration:
    """Check the judgement against routes simulated here, independently of the silence model's own code.

    Each simulated route restarts at the quiet start (the renewal point the model assumes), so a call of "paused"
    is a false alarm exactly when the route stays unseen up to the alarm look; its frequency should match the
    judge's S there, which is at most 1 - level.
    """
    t = np.asarray(look_days, dtype=float)
    p = np.asarray(look_probs, dtype=float)
    rng = np.random.default_rng(seed)
    s = silence_survival(t, p, process, n_paths=n_paths, rng=np.random.default_rng(seed + 1))
    hits = np.nonzero(1.0 - s >= level)[0]
    if hits.size == 0:
        return Calibration(None, float(s[-1]) if s.size else 1.0, 0.0, 0.0, 0.0, runs)
    m = int(hits[0])
    horizon = t[m]
    scale = process.mean_gap_days / process.shape
    looks = t[: m + 1][None, :]
    present = np.zeros((runs, m + 1), dtype=bool)
    clock = np.zeros(runs)
    while True:
        clock = clock + rng.gamma(process.shape, scale, runs)
        if not (clock <= horizon).any():
            break
        leave = clock + rng.uniform(process.dwell_days_low, process.dwell_days_high, runs)
        present |= (clock[:, None] <= looks) & (looks <= leave[:, None])
    # one chance per look, however many calls are in port (the model's assumption)
    seen = present & (rng.random((runs, m + 1)) < p[None, : m + 1])
    rate = float(1.0 - seen.any(axis=1).mean())
    s_m = float(s[m])
    return Calibration(
        m, s_m, math.sqrt(s_m * (1 - s_m) / n_paths), rate, math.sqrt(max(rate * (1 - rate), 1 / runs) / runs), runs
    )
