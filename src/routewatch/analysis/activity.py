"""The route judgement: is a route active, slowing, paused or resumed, and how sure can we be?

"No ship for three weeks" means something only against coverage. The judgement:

1. takes the route's activity (visits of its vessels at its origin and destination sites, and its trips) up to
   ``as_of`` and nothing later;
2. estimates the running route's cadence at the origin from the best lower bound available (calls counted by
   routewatch, or a published trip count such as "at least 32 trips"), and the dwell of a call;
3. lists the looks at the origin after the last activity: the actual coverage ledger, or a declared coverage
   schedule ("PlanetScope daily, 56 % usable"), which the output then states as its assumption;
4. computes P(silence | still running) over those looks with the silence model (``analysis.silence``), and calls
   the route paused when its complement reaches the call level (95 % by default); active when the silence is within
   the route's normal cadence; and "undetermined: not enough coverage to call" when the route is overdue but the
   coverage cannot tell a pause from missed calls;
5. calls it resumed when activity came back after a gap that was (by the same test) a pause, and slowing when a
   change-point test on coverage-normalised call counts finds a drop in rate.

Every number it uses is in ``Activity.details`` so a report can show the arithmetic.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from routewatch.analysis.port_visits import site_places
from routewatch.analysis.silence import (
    DAY_S,
    PAUSE_LEVEL,
    RouteProcess,
    silence_survival,
    survival_standard_error,
)
from routewatch.analysis.visits import SIZE_CLASSES, UNKNOWN_SIZE
from routewatch.model import (
    SENSOR_DETECTION,
    Activity,
    AggregateObservation,
    CoverageAssumption,
    Look,
    Route,
    Site,
    Status,
    Trip,
    Visit,
    ensure_utc,
)

__all__ = [
    "PAUSE_LEVEL",
    "JudgementConfig",
    "RouteProcess",
    "coverage_looks",
    "judge_route",
    "silence_survival",
]


@dataclass(frozen=True, slots=True)
class JudgementConfig:
    """Assumptions of the judgement, all stated in its output.

    ``shape``: regularity of the gaps between calls (gamma shape; 1 = random Poisson arrivals, the most cautious
    choice; 2 = a shuttle service with some regularity, the default). ``dwell_days``: how long a call lasts (the
    reference case: 1 to 4 days). ``level``: the probability needed to call a pause. ``resumed_days``: how long a
    route keeps the "resumed" status after activity returns.
    """

    level: float = PAUSE_LEVEL
    shape: float = 2.0
    dwell_days: tuple[float, float] = (1.0, 4.0)
    default_vessel_length_m: float = 100.0
    resumed_days: float = 30.0
    recent_days: float = 30.0
    n_paths: int = 10_000
    horizon_days: float = 120.0
    slowing_factor: float = 0.5
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Event:
    start: datetime
    end: datetime
    site: str
    vessel: str | None
    evidence: tuple[str, ...]
    at_origin: bool
    place: str = ""  # sites within reach of each other (a berth and its port) share one (site_places)


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little")


def _days(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() / DAY_S


def coverage_looks(
    assumptions: Sequence[CoverageAssumption],
    sites: Sequence[str],
    start: datetime,
    end: datetime,
    vessel_length_m: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected looks of a declared schedule in (start, end]: days after ``start`` and detection probabilities.

    Each sensor's first look falls half a revisit after ``start`` (its phase is unknown; half a revisit is the
    mean wait). A look's probability is usable fraction x detection probability for the vessel length: weather is
    taken as independent from one look to the next.
    """
    span = _days(start, end)
    times: list[float] = []
    probs: list[float] = []
    for a in assumptions:
        if a.site is not None and a.site not in sites:
            continue
        model = SENSOR_DETECTION.get(a.sensor)
        if model is None:
            raise ValueError(f"no detection model for sensor {a.sensor!r}; known: {sorted(SENSOR_DETECTION)}")
        q = a.usable * model.probability(vessel_length_m)
        t = a.every_days / 2.0
        while t <= span + 1e-9:
            times.append(t)
            probs.append(q)
            t += a.every_days
    order = np.argsort(times, kind="stable")
    return np.asarray(times, dtype=float)[order], np.asarray(probs, dtype=float)[order]


def _ledger_looks(
    looks: Sequence[Look], origin: Sequence[str], start: datetime, end: datetime, length_m: float
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Actual looks at the origin sites in (start, end]. A call goes to one origin site: with several, each look's
    probability is shared out by the number of origin sites (the calls' split between them is unknown)."""
    share = 1.0 / max(len(origin), 1)
    rows = sorted(
        (lk for lk in looks if lk.site in origin and start < lk.time <= end and lk.usable),
        key=lambda lk: lk.time,
    )
    t = np.asarray([_days(start, lk.time) for lk in rows], dtype=float)
    p = np.asarray([share * lk.probability(length_m) for lk in rows], dtype=float)
    return t, p, [lk.id for lk in rows]


def _fleet_length(route: Route, vessel_lengths: dict[str, float], config: JudgementConfig) -> float:
    lengths = [vessel_lengths[v] for v in route.vessels if v in vessel_lengths]
    if not route.vessels:
        lengths = list(vessel_lengths.values())
    # The smallest vessel is the hardest to see: using it keeps the judgement cautious.
    return min(lengths) if lengths else config.default_vessel_length_m


FLEET_LENGTH_FACTOR = 1.6  # an unidentified ship measured this many times longer or shorter is not the fleet's


def _regularity(shape: float) -> str:
    """The gap-regularity assumption in words: the judgement of a long silence can hang on it (docs/judgement.md)."""
    if shape == 1.0:
        return "random (gamma shape 1, Poisson arrivals: the most cautious)"
    return f"gamma-distributed with shape {shape:g} ({'more regular than' if shape > 1 else 'burstier than'} random)"


def fleet_size_classes(route: Route, vessel_lengths: dict[str, float]) -> set[str] | None:
    """The size classes an unidentified ship of the route's fleet can be measured in: those meeting [L / 1.6,
    1.6 L], widened to L +- 50 m, of a fleet vessel's length L (image lengths are rough: the optical detector's
    error is about 50 m).
    None (no limit) without a fleet list, or when a fleet vessel's length is unknown."""
    lengths = [vessel_lengths.get(v) for v in route.vessels]
    if not lengths or any(not length or not math.isfinite(length) or length <= 0 for length in lengths):
        return None
    out: set[str] = set()
    for length in lengths:
        assert length is not None
        # a factor of 1.6 either way, and at least 50 m (the optical length error) for small ships
        lo = max(0.0, min(length / FLEET_LENGTH_FACTOR, length - 50.0))
        hi = max(length * FLEET_LENGTH_FACTOR, length + 50.0)
        out.update(label for low, high, label in SIZE_CLASSES if low <= hi and high > lo)
    return out or None


def _events(route: Route, visits: Sequence[Visit], as_of: datetime,
            classes: set[str] | None = None, places: Mapping[str, str] | None = None) -> list[_Event]:
    """The route's visits as events; with ``classes`` (:func:`fleet_size_classes`) an unidentified ship of another
    size (a 340 m hull where the fleet is 150 m ships, or a recurring false alarm of that size) is other traffic."""
    fleet = set(route.vessels)
    out = []
    for v in visits:
        if v.start > as_of:
            continue
        if v.site not in route.origin and v.site not in route.destination:
            continue
        if fleet and v.vessel is not None and v.vessel not in fleet:
            continue
        if classes is not None and v.vessel is None and v.size_class not in (None, UNKNOWN_SIZE) \
                and v.size_class not in classes:
            continue
        out.append(
            _Event(
                start=v.start,
                end=v.end if v.end <= as_of else as_of,
                site=v.site,
                vessel=v.vessel,
                evidence=v.evidence_ids or v.sighting_ids,
                at_origin=v.site in route.origin,
                place=(places or {}).get(v.site, v.site),
            )
        )
    return sorted(out, key=lambda e: (e.end, e.start))


def _scope_matches(scope: str, route: Route) -> bool:
    """A count scoped ``origin>destination`` from one of the route's origin sites. The destination side (a site, a
    group name such as ``russia``, or the route key) is matched by the caller, which knows the watchlist's groups
    (``pipeline.route_aggregates``); here only a destination that is itself an origin site is refused."""
    if ">" not in scope:
        return False
    origin, dest = (part.strip() for part in scope.split(">", 1))
    return origin in route.origin and dest not in route.origin


def _origin_calls(events: Sequence[_Event]) -> list[_Event]:
    """Calls at the origin, one per port call: an unnamed visit overlapping a visit at the same site (one ship
    reported by name and also detected unidentified in an image) is one call with it, not two; so are one vessel's
    overlapping visits at sites of one place (a berth inside its port, both watched; not two ports far apart,
    where one name at once is two hulls). A call never holds two named ships: two at one port at once are two
    calls."""
    merged: list[_Event | None] = []
    sites: list[set[str]] = []
    ships: list[set[str]] = []
    open_: list[int] = []  # merged calls that may still overlap the next visit (their end is not before its start)
    # ordered by all they hold, so that the calls do not hang on the order visits came in (ties: one image)
    for e in sorted((e for e in events if e.at_origin),
                    key=lambda e: (e.start, e.site, e.vessel or "", e.end, e.evidence)):
        open_ = [k for k in open_ if (m := merged[k]) is not None and m.end >= e.start]
        # a call never holds two named ships (two fleet ships at neighbouring berths at once are two calls): a
        # named visit joins the calls of its own ship at its place and an unnamed call at its site; an unnamed
        # visit joins one call at its site, and links no two
        if e.vessel is not None:
            joins = [k for k in open_ if ships[k] == {e.vessel} and merged[k].place == e.place]  # type: ignore[union-attr]
            joins = joins + [k for k in open_ if not ships[k] and e.site in sites[k]][:1]
        else:
            joins = [k for k in open_ if e.site in sites[k]][:1]
        if not joins:
            merged.append(e)
            sites.append({e.site})
            ships.append({e.vessel} if e.vessel else set())
            open_.append(len(merged) - 1)
            continue
        parts = [m for j in joins if (m := merged[j]) is not None]
        base = parts[0]
        k = joins[0]
        merged[k] = _Event(start=min(m.start for m in parts), end=max(e.end, *(m.end for m in parts)),
                           site=base.site, vessel=next((m.vessel for m in parts if m.vessel), e.vessel),
                           evidence=tuple(x for m in parts for x in m.evidence) + e.evidence, at_origin=True,
                           place=base.place)
        for j in joins[1:]:  # the calls this visit links are one
            sites[k] |= sites[j]
            ships[k] |= ships[j]
            merged[j] = None
        sites[k].add(e.site)
        if e.vessel:
            ships[k].add(e.vessel)
    return sorted((m for m in merged if m is not None), key=lambda e: e.start)


@dataclass(frozen=True, slots=True)
class _Cadence:
    mean_gap_days: float
    calls: float
    basis: str
    evidence: tuple[str, ...]


def _cadence(
    route: Route,
    events: Sequence[_Event],
    aggregates: Sequence[AggregateObservation],
    as_of: datetime,
    last_activity: datetime,
) -> _Cadence | None:
    """The running route's mean gap between origin calls: the largest of the available lower bounds on the rate.

    Counts that routewatch makes itself miss the calls nobody saw; a published count ("at least 32 trips") is a
    lower bound too. The largest lower bound on the rate is still a lower bound, so taking it does not overstate
    how busy the route was.
    """
    candidates: list[_Cadence] = []
    calls = _origin_calls(events)
    if len(calls) >= 2:
        span = _days(calls[0].start, calls[-1].start)
        if span > 0:
            n = len(calls) - 1
            candidates.append(
                _Cadence(
                    span / n,
                    float(n),
                    f"{len(calls)} calls at the origin seen from {calls[0].start:%Y-%m-%d} to {calls[-1].start:%Y-%m-%d}",
                    tuple(ev for e in calls for ev in e.evidence),
                )
            )
    for agg in aggregates:
        if agg.end > as_of or agg.event != "trip_count" or not agg.count:
            continue
        if not _scope_matches(agg.scope, route):
            continue
        # The count covers [start, end]; if the route went quiet inside that span, its trips fell before the
        # silence: the span ends at the last activity known by the end of the count (whatever came later).
        known = [e.end for e in events if e.start <= agg.end and e.end >= agg.start]
        end = min(agg.end, max(known)) if known else agg.end
        span = _days(agg.start, end)
        if span <= 0:
            continue
        candidates.append(
            _Cadence(
                span / agg.count,
                float(agg.count),
                f"{'at least ' if agg.lower_bound else ''}{agg.count:g} trips reported from {agg.start:%Y-%m-%d} "
                f"to {end:%Y-%m-%d}",
                agg.evidence_ids,
            )
        )
    if not candidates:
        return None
    return min(candidates, key=lambda c: c.mean_gap_days)


DECLARED_COVERAGE = "declared: "  # how an Activity's coverage text starts when a schedule was declared


def rests_on_declared_coverage(activity: Activity) -> bool:
    """Whether a judgement was made under a declared coverage schedule (``analyze -c``), not the ledger."""
    return activity.coverage.startswith(DECLARED_COVERAGE)


PROBABILITY_MEANING = {
    Status.PAUSED: "P = 1 - P(silence | running): the evidence of a pause",
    Status.UNDETERMINED: "P = 1 - P(silence | running): the evidence of a pause, short of the call level",
    Status.ACTIVE: "P = P(silence | running): how unremarkable the silence is",
    Status.RESUMED: "P = the pause probability of the gap that ended",
    Status.SLOWING: "P = the change-point probability of a lower rate",
}


def probability_meaning(activity: Activity) -> str:
    """What an activity's ``probability`` is (it depends on the status; docs/judgement.md), with the Monte Carlo
    standard error of the silence probability where it has one."""
    if activity.p_silence_if_active is None and activity.status in (Status.UNDETERMINED, Status.PAUSED):
        return "no silence probability: no activity or cadence to judge from (P = 0 says nothing)"
    text = PROBABILITY_MEANING[activity.status]
    se = activity.details.get("p_silence_monte_carlo_se")
    if se and activity.status in (Status.PAUSED, Status.UNDETERMINED, Status.ACTIVE):
        text += f" (+- {se:.3f}, Monte Carlo)"
    return text


def describe_call(days: float | None) -> str:
    """``Activity.days_to_confident_call`` in words: now, in N more days, or not reachable."""
    if days is None:
        return "not reachable"
    return "now" if days == 0 else f"{days:.0f} more days"


def _silence(
    t: np.ndarray, p: np.ndarray, process: RouteProcess, n_paths: int, seed: int
) -> tuple[float, float]:
    if t.size == 0:
        return 1.0, 0.0
    s = silence_survival(t, p, process, n_paths=n_paths, rng=np.random.default_rng(seed))
    return float(s[-1]), survival_standard_error(float(s[-1]), n_paths)


def _looks_between(
    start: datetime,
    end: datetime,
    *,
    route: Route,
    looks: Sequence[Look],
    coverage: Sequence[CoverageAssumption] | None,
    length_m: float,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if coverage:
        t, p = coverage_looks(coverage, route.origin, start, end, length_m)
        return t, p, []
    return _ledger_looks(looks, route.origin, start, end, length_m)


def _days_to_call(
    process: RouteProcess,
    t: np.ndarray,
    p: np.ndarray,
    *,
    quiet_days: float,
    future: tuple[np.ndarray, np.ndarray],
    config: JudgementConfig,
    seed: int,
) -> float | None:
    """Days after ``as_of`` until the pause probability would reach the call level, if the silence went on under
    the same coverage. None when the coverage would not get there within the horizon."""
    ft, fp = future
    if ft.size == 0:
        return None
    all_t = np.concatenate([t, quiet_days + ft])
    all_p = np.concatenate([p, fp])
    s = silence_survival(
        all_t, all_p, process, n_paths=max(2000, config.n_paths // 10), rng=np.random.default_rng(seed)
    )
    hit = np.nonzero(1.0 - s >= config.level)[0]
    hit = hit[hit >= t.size]
    if hit.size == 0:
        return None
    return float(all_t[hit[0]] - quiet_days)


def _future_looks(
    route: Route,
    looks: Sequence[Look],
    coverage: Sequence[CoverageAssumption] | None,
    as_of: datetime,
    length_m: float,
    horizon_days: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The coverage going forward: the declared schedule, or the ledger's last 90 days replayed."""
    end = as_of + timedelta(days=horizon_days)
    if coverage:
        return coverage_looks(coverage, route.origin, as_of, end, length_m)
    window = timedelta(days=90)
    t, p, _ = _ledger_looks(looks, route.origin, as_of - window, as_of, length_m)
    if t.size == 0:
        return t, p
    reps = math.ceil(horizon_days / 90.0)
    ft = np.concatenate([t + 90.0 * k for k in range(reps)])
    fp = np.tile(p, reps)
    keep = ft <= horizon_days
    return ft[keep], fp[keep]


def judge_route(
    route: Route,
    *,
    as_of: datetime,
    visits: Sequence[Visit],
    trips: Sequence[Trip],
    looks: Sequence[Look] = (),
    aggregates: Sequence[AggregateObservation] = (),
    vessel_lengths: dict[str, float] | None = None,
    coverage: Sequence[CoverageAssumption] | None = None,
    config: JudgementConfig | None = None,
    check_resumption: bool = True,
    known_events: Sequence[_Event] | None = None,
    sites: Mapping[str, Site] | None = None,
) -> Activity:
    """Judge one route as of ``as_of`` (UTC), using only evidence up to then.

    ``sites``: the watchlist's sites, to tell which origin sites are one place (a berth in its port: one ship's
    overlapping visits there are one call); without them each site is a place of its own.

    ``coverage``: a declared schedule for the quiet period instead of the coverage ledger (stated in the output).
    ``vessel_lengths``: watchlist vessel lengths in metres (the smallest route vessel sets the detection chance).
    """
    config = config or JudgementConfig()
    as_of = ensure_utc(as_of)
    looks = [lk for lk in looks if lk.time <= as_of]
    aggregates = [a for a in aggregates if a.end <= as_of]  # a count is known once its period has ended
    trips_known = [t for t in trips if t.route == route.key and t.depart <= as_of]
    length_m = _fleet_length(route, vessel_lengths or {}, config)
    coverage_text = (
        DECLARED_COVERAGE + "; ".join(c.describe() for c in coverage)
        if coverage
        else "actual looks in the coverage ledger"
    )
    # ``known_events``: the route's events already built for a later date (the resumption check re-judges the
    # same route as of earlier dates); only what had started by ``as_of`` is kept, cut at ``as_of``.
    places = site_places(sites, route.origin) if sites else None
    events = (
        _events(route, visits, as_of, fleet_size_classes(route, vessel_lengths or {}), places)
        if known_events is None
        else sorted(
            (e if e.end <= as_of else replace(e, end=as_of) for e in known_events if e.start <= as_of),
            key=lambda e: (e.end, e.start),
        )
    )
    seed = _seed(route.key, as_of.isoformat(), coverage_text)
    recent_cut = as_of - timedelta(days=config.recent_days)
    trips_recent = sum(1 for t in trips_known if t.depart >= recent_cut)
    base: dict[str, Any] = dict(
        route=route.key,
        as_of=as_of,
        trips_total=len(trips_known),
        trips_recent=trips_recent,
        coverage=coverage_text,
    )
    if not events:
        return Activity(
            **base,
            status=Status.UNDETERMINED,
            probability=0.0,
            last_activity=None,
            last_activity_evidence=(),
            days_quiet=None,
            p_silence_if_active=None,
            expected_gap_days=None,
            usable_looks_quiet=0,
            days_to_confident_call=None,
            explanation="No activity of this route is on record up to this date: nothing to judge.",
        )
    last = max(events, key=lambda e: e.end)
    last_activity = last.end
    cadence = _cadence(route, events, aggregates, as_of, last_activity)
    quiet_days = max(0.0, _days(last_activity, as_of))
    details: dict[str, object] = {
        "vessel_length_m": length_m,
        "last_activity_site": last.site,
        "last_activity_vessel": last.vessel,
        "level": config.level,
        "shape": config.shape,
        "dwell_days": list(config.dwell_days),
    }
    if cadence is None:
        return Activity(
            **base,
            status=Status.UNDETERMINED,
            probability=0.0,
            last_activity=last_activity,
            last_activity_evidence=last.evidence,
            days_quiet=quiet_days,
            p_silence_if_active=None,
            expected_gap_days=None,
            usable_looks_quiet=0,
            days_to_confident_call=None,
            evidence_ids=last.evidence,  # linked like every judgement's, so the store keeps what the call rests on
            explanation="Only one call is on record and no trip count was reported: the route's cadence is unknown.",
            details=details,
        )
    process = RouteProcess(
        mean_gap_days=cadence.mean_gap_days,
        shape=config.shape,
        dwell_days_low=config.dwell_days[0],
        dwell_days_high=config.dwell_days[1],
        rate_evidence_calls=cadence.calls,
    )
    t, p, look_ids = _looks_between(
        last_activity, as_of, route=route, looks=looks, coverage=coverage, length_m=length_m
    )
    p_silence, se = _silence(t, p, process, config.n_paths, seed)
    p_floor = process.p_no_arrival(quiet_days)
    pause_prob = 1.0 - p_silence
    details.update(
        cadence_basis=cadence.basis,
        mean_gap_days=cadence.mean_gap_days,
        rate_evidence_calls=cadence.calls,
        quiet_looks=int(t.size),
        quiet_expected_detections_if_present=float(p.sum()),
        p_silence_monte_carlo_se=se,
        p_silence_perfect_coverage=p_floor,
        look_ids=look_ids[:200],
    )
    evidence = tuple(dict.fromkeys(last.evidence + cadence.evidence))
    common: dict[str, Any] = dict(
        **base,
        last_activity=last_activity,
        last_activity_evidence=last.evidence,
        days_quiet=quiet_days,
        p_silence_if_active=p_silence,
        expected_gap_days=cadence.mean_gap_days,
        usable_looks_quiet=int(t.size),
        evidence_ids=evidence,
    )
    vessel_txt = f"{last.vessel} at {last.site}" if last.vessel else f"an unidentified vessel at {last.site}"
    head = (
        f"Last activity {last_activity:%Y-%m-%d} ({vessel_txt}), {quiet_days:.0f} days quiet. "
        f"Cadence: one call every {cadence.mean_gap_days:.1f} days ({cadence.basis}); gaps between calls taken as "
        f"{_regularity(config.shape)}. "
        f"Coverage of the quiet period: {t.size} {'looks' if not coverage else 'looks assumed'} ({coverage_text}); "
        f"a running route would show this silence "
        f"with probability {p_silence:.3f} (±{se:.3f}), {p_floor:.3f} even with perfect coverage."
    )
    if pause_prob >= config.level:
        return Activity(
            **common,
            status=Status.PAUSED,
            probability=pause_prob,
            days_to_confident_call=0.0,
            explanation=head
            + f" Paused: P(pause) = 1 - {p_silence:.3f} = {pause_prob:.3f} >= {config.level:.2f}.",
            details=details,
        )
    # Only a route not yet called paused needs the coverage going forward.
    future = _future_looks(route, looks, coverage, as_of, length_m, config.horizon_days)
    days_to_call = _days_to_call(
        process, t, p, quiet_days=quiet_days, future=future, config=config, seed=seed + 1
    )
    details["days_to_confident_call"] = days_to_call
    overdue = p_floor < 1.0 - config.level
    if overdue:
        level_txt = f"{config.level:.0%}"
        when = (
            f"a {level_txt} call would come after about {days_to_call:.0f} more days of silence under this coverage"
            if days_to_call is not None
            else f"this coverage would not reach a {level_txt} call within {config.horizon_days:.0f} days"
        )
        return Activity(
            **common,
            status=Status.UNDETERMINED,
            probability=pause_prob,
            days_to_confident_call=days_to_call,
            explanation=head
            + f" Not enough coverage to call: the route is overdue, but P(pause) = {pause_prob:.3f} < "
            f"{config.level:.2f}; {when}.",
            details=details,
        )
    resumed = (
        _resumption(route, events, visits, trips, looks, aggregates, vessel_lengths, coverage, as_of, config)
        if check_resumption
        else None
    )
    if resumed is not None:
        gap_start, gap_end, gap_pause = resumed
        details.update(
            resumed_after_gap=[gap_start.isoformat(), gap_end.isoformat()], gap_pause_probability=gap_pause
        )
        return Activity(
            **common,
            status=Status.RESUMED,
            probability=gap_pause,
            days_to_confident_call=days_to_call,
            explanation=head
            + f" Resumed: activity returned on {gap_end:%Y-%m-%d} after a {_days(gap_start, gap_end):.0f}-day gap; "
            f"judged with what was known just before it returned, the route was then paused with probability "
            f"{gap_pause:.3f}.",
            details=details,
        )
    slowing = _slowing(events, looks, as_of, cadence, config)
    if slowing is not None:
        details.update(slowing)
        return Activity(
            **common,
            status=Status.SLOWING,
            probability=float(slowing["slowing_probability"]),
            days_to_confident_call=days_to_call,
            explanation=head + f" Slowing: {slowing['slowing_basis']}.",
            details=details,
        )
    return Activity(
        **common,
        status=Status.ACTIVE,
        probability=p_silence,
        days_to_confident_call=days_to_call,
        explanation=head + " Active: the silence is within the route's normal cadence.",
        details=details,
    )


def _resumption(
    route: Route,
    events: Sequence[_Event],
    visits: Sequence[Visit],
    trips: Sequence[Trip],
    looks: Sequence[Look],
    aggregates: Sequence[AggregateObservation],
    vessel_lengths: dict[str, float] | None,
    coverage: Sequence[CoverageAssumption] | None,
    as_of: datetime,
    config: JudgementConfig,
) -> tuple[datetime, datetime, float] | None:
    """The latest recent gap that ended a pause: activity returned within ``resumed_days`` after a silence that
    the same judgement, run just before the activity returned (with only what was known then), called paused."""
    cutoff = as_of - timedelta(days=config.resumed_days)
    ordered = sorted(events, key=lambda e: e.start)
    best: tuple[datetime, datetime, float] | None = None
    running_end = ordered[0].end
    for e in ordered[1:]:
        gap_start, gap_end = running_end, e.start
        running_end = max(running_end, e.end)
        if gap_end < cutoff or gap_end > as_of or _days(gap_start, gap_end) <= 0:
            continue
        before = gap_end - timedelta(microseconds=1)
        then = judge_route(
            route,
            as_of=before,
            visits=visits,
            trips=trips,
            looks=looks,
            aggregates=aggregates,
            vessel_lengths=vessel_lengths,
            coverage=coverage,
            config=config,
            check_resumption=False,
            known_events=events,
        )
        if then.status is Status.PAUSED:
            best = (gap_start, gap_end, then.probability)
    return best


WATCHED_FRACTION = 0.5  # a look that saw at least this much of the site makes its day a watched one (slowing)


def _slowing(
    events: Sequence[_Event],
    looks: Sequence[Look],
    as_of: datetime,
    cadence: _Cadence,
    config: JudgementConfig,
) -> dict[str, Any] | None:
    """A drop in the rate of calls seen at the origin, normalised by the looks that could have seen them.

    Uses a one-sided Poisson CUSUM on weekly counts against the route's cadence when the ledger has looks in every
    week; without a ledger, weekly counts of reports say more about reporting than about ships, so no call is made.
    """
    from routewatch.analysis.changepoint import bocpd, poisson_cusum

    calls = _origin_calls(events)
    if len(calls) < 6 or not looks:
        return None
    start = calls[0].start
    weeks = math.ceil(_days(start, as_of) / 7)  # the last, partial week counts with the look-days it had
    if weeks < 8:
        return None
    counts = np.zeros(weeks)
    looked = np.zeros(weeks)
    for e in calls:
        k = int(_days(start, e.start) // 7)
        if 0 <= k < weeks:
            counts[k] += 1
    call_sites = {e.site for e in calls}
    # A look-day is a day with a look that saw at least half the site (WATCHED_FRACTION): a day whose only look
    # saw 0.1 % of the berths (cloud, the swath's edge) had counted as a whole day watched with no call, and a
    # few such weeks as a slowing. Not weighted by the fraction: calls seen by AIS (whatever the weather) would
    # then be counted against the cloud, and a clearing sky read as a drop in calls.
    look_days = {lk.time.date() for lk in looks if lk.usable_fraction >= WATCHED_FRACTION and lk.site in call_sites
                 and start <= lk.time <= as_of}
    for day in look_days:
        k = int(_days(start, datetime.combine(day, datetime.min.time(), tzinfo=start.tzinfo)) // 7)
        if 0 <= k < weeks:
            looked[k] += 1
    if looked[-1] == 0:  # a partial last week with no look yet says nothing
        counts, looked, weeks = counts[:-1], looked[:-1], weeks - 1
    if np.any(looked == 0):
        return None
    # Exposure: usable look-days per week: a week with fewer could show fewer calls.
    exposure = looked
    rate0 = float(counts.sum() / exposure.sum())
    if rate0 <= 0:
        return None
    cusum = poisson_cusum(counts, exposure, rate0, rate0 * config.slowing_factor, 4.0)
    recent = 8
    if cusum.alarm_index is None or cusum.alarm_index < weeks - recent:
        return None
    # Was there a change in rate at all (any run length shorter than the whole history), to a lower rate?
    online = bocpd(counts, exposure)
    change = online.prob_change_within(weeks - 1)
    if change < 0.5 or online.rate_mean >= rate0:
        return None
    return {
        "slowing_probability": change,
        "slowing_basis": f"a Poisson CUSUM on weekly calls per usable look-day alarmed in week {cusum.alarm_index + 1} "
        f"of {weeks} (rate {rate0:.3f} calls per look-day against half that); Bayesian change-point probability "
        f"of a change to a lower rate {change:.2f} (current rate {online.rate_mean:.3f})",
    }
