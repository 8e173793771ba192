"""Which watchlist vessel a dark detection probably is, with an explicit "unknown vessel" alternative.

For each watchlist vessel v with a known length, the posterior is proportional to prior(v) x size likelihood:

* size: Normal(length_det; L_v, sigma_L) x Normal(width_det; B_v, sigma_B), with sigma from the detection's
  measurement error (a share of the length, at least about one resolution cell); a vessel without a known beam
  gets the flat width density of "unknown vessel" instead (its beam marginalised over the same range), so that a
  missing beam neither favours nor penalises it;
* prior from context: vessels on a route that uses the detection's site weigh ``route_weight`` times more; a vessel
  whose last AIS position could not have reached the detection at ``max_speed_kn`` gets zero, and so does one
  whose AIS places it elsewhere at the image time (it was identified there);
* "unknown vessel" has prior mass ``unknown_prior`` and a flat size density over the lengths and widths of
  merchant ships (10-400 m, 2-65 m): any ship not on the watchlist.

The alternatives' probabilities sum to 1; the top one is named only when it reaches ``min_probability``, so a
weak resemblance is reported as such, never as a silent guess.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from routewatch.analysis.port_visits import haversine_m
from routewatch.analysis.seadistance import METRES_PER_NM
from routewatch.model import Route, Vessel

UNKNOWN = "unknown vessel"


@dataclass(frozen=True)
class IdentifyConfig:
    unknown_prior: float = 0.5
    route_weight: float = 3.0
    length_sigma_frac: float = 0.15
    length_sigma_min_m: float = 10.0
    width_sigma_frac: float = 0.25
    width_sigma_min_m: float = 5.0
    length_range_m: tuple[float, float] = (10.0, 400.0)
    width_range_m: tuple[float, float] = (2.0, 65.0)
    max_speed_kn: float = 18.0
    min_probability: float = 0.5


@dataclass(frozen=True)
class LastSeen:
    """A vessel's AIS position nearest before (or at) the image time, when the feed has one."""

    time: datetime
    lon: float
    lat: float


@dataclass
class Identification:
    probabilities: dict[str, float]  # vessel key or UNKNOWN -> probability
    reasons: dict[str, str] = field(default_factory=dict)
    best: str | None = None  # a vessel key when its probability reaches min_probability, else None
    best_probability: float | None = None


def _normal(x: float, mu: float, sigma: float) -> float:
    return math.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


def identify_dark(
    *,
    length_m: float | None,
    width_m: float | None,
    lon: float,
    lat: float,
    time: datetime,
    site: str | None,
    vessels: Mapping[str, Vessel],
    routes: Mapping[str, Route] | None = None,
    last_seen: Mapping[str, LastSeen] | None = None,
    seen_elsewhere: set[str] | frozenset[str] = frozenset(),
    config: IdentifyConfig | None = None,
) -> Identification:
    """Probabilities over the watchlist vessels and "unknown vessel" for one dark detection."""
    cfg = config or IdentifyConfig()
    routes = routes or {}
    last_seen = last_seen or {}
    weights: dict[str, float] = {}
    reasons: dict[str, str] = {}
    for key, v in vessels.items():
        if v.length_m is None:
            reasons[key] = "no length on the watchlist: cannot be compared by size"
            continue
        w = 1.0
        why = []
        if key in seen_elsewhere:
            weights[key] = 0.0
            reasons[key] = "AIS places it elsewhere at the image time"
            continue
        on_route = [r.key for r in routes.values() if site and site in (*r.origin, *r.destination)
                    and (not r.vessels or key in r.vessels)]
        if on_route:
            w *= cfg.route_weight
            why.append(f"route {', '.join(on_route)} uses {site}")
        ls = last_seen.get(key)
        if ls is not None:
            hours = (time - ls.time).total_seconds() / 3600.0
            dist_nm = float(haversine_m(ls.lon, ls.lat, lon, lat)) / METRES_PER_NM
            if hours >= 0 and dist_nm > cfg.max_speed_kn * hours:
                weights[key] = 0.0
                reasons[key] = (f"last AIS {dist_nm:.0f} nm away {hours:.1f} h before: "
                                f"unreachable at {cfg.max_speed_kn:g} kn")
                continue
            why.append(f"last AIS {dist_nm:.0f} nm away {hours:.1f} h before: reachable")
        like = 1.0
        if length_m is not None:
            like *= _normal(length_m, v.length_m, max(cfg.length_sigma_min_m, cfg.length_sigma_frac * length_m))
            why.append(f"length {length_m:.0f} m vs {v.length_m:.0f} m")
        if width_m is not None and v.beam_m is not None:
            like *= _normal(width_m, v.beam_m, max(cfg.width_sigma_min_m, cfg.width_sigma_frac * width_m))
            why.append(f"width {width_m:.0f} m vs beam {v.beam_m:.0f} m")
        elif width_m is not None:  # unknown beam: the same flat width density as "unknown vessel" (marginalised)
            like /= cfg.width_range_m[1] - cfg.width_range_m[0]
            why.append(f"width {width_m:.0f} m, beam unknown: width not compared")
        weights[key] = w * like
        reasons[key] = "; ".join(why)
    total_context = sum(
        (cfg.route_weight if "route " in reasons.get(k, "") else 1.0) for k in weights if weights[k] > 0
    ) or 1.0
    flat = 1.0
    if length_m is not None:
        flat /= cfg.length_range_m[1] - cfg.length_range_m[0]
    if width_m is not None:
        flat /= cfg.width_range_m[1] - cfg.width_range_m[0]
    scores = {k: (1 - cfg.unknown_prior) * w / total_context for k, w in weights.items()}
    scores[UNKNOWN] = cfg.unknown_prior * flat
    reasons[UNKNOWN] = "any ship not on the watchlist (flat size density)"
    z = sum(scores.values())
    probs = {k: s / z for k, s in scores.items()} if z > 0 else {UNKNOWN: 1.0}
    best = max(probs, key=lambda k: probs[k])
    named = best if best != UNKNOWN and probs[best] >= cfg.min_probability else None
    return Identification(probs, reasons, named, probs[best] if named else None)
