"""Which watchlist vessel a dark detection probably is, with an explicit "unknown vessel" alternative.

For each watchlist vessel v, the posterior is proportional to prior(v) x size likelihood:

* size: Normal(length_det; L_v, sigma_L) x Normal(width_det; B_v, sigma_B), with sigma from the detection's
  measurement error (a share of the length, at least about one resolution cell); a vessel without a known beam
  (or length) gets the flat density of "unknown vessel" for it instead (marginalised over the same range), so that
  a missing size neither favours nor penalises it: a vessel without a length is scored by its place alone;
* prior from place: the watchlist's share ``1 - unknown_prior`` is split evenly over the candidates that could be
  here, and each keeps the part of its share that its place allows: all of it at or near (``near_site_m``) a site
  of one of its routes; ``1 / route_weight`` of it between the sites of one of its routes (the corridor of
  ``corridor_detour`` times the direct distance), where it could have sailed (at ``max_speed_kn``) from or to an
  AIS position within ``recent_ais_h`` hours of the image, or where nothing places it (no route with a located
  site, no AIS). A vessel far from every site of its routes and off them keeps ``away_weight`` of an even share of
  all the candidates: vessels of other routes do not dilute the ones that sail here. Where AIS places vessels
  elsewhere at the image time, or out of reach of the detection before or after it, the prior is a mixture: with
  ``1 - ais_false_rate`` the AIS is right (those vessels are no candidates, the others share the watchlist's mass
  without them), with ``ais_false_rate`` it is false (every vessel shares it as if there were no AIS). AIS
  positions can be false (spoofed, a second transmitter on its MMSI, a wrong GNSS fix), and a sanctioned ship
  hiding at a port behind a false position is the case to catch; when its size fits and only its AIS speaks
  against it, the reasons say so. A vessel matched to a hull of the
  same image elsewhere gets zero (the image itself places it there);
* "unknown vessel" has the rest of the prior mass (at least ``unknown_prior``) and a flat size density over the
  lengths and widths of merchant ships (10-400 m, 2-65 m): any ship not on the watchlist.

So a detection far from where a vessel sails is not named that vessel from its size alone: the place moves the
balance between the vessel and "unknown vessel", not only between watchlist vessels. The alternatives'
probabilities sum to 1; the top one is named only when it exceeds ``min_probability``, so a weak resemblance is
reported as such, never as a silent guess.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import shapely
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from routewatch.analysis.port_visits import EARTH_M_PER_DEG, haversine_m, to_local_metres
from routewatch.analysis.seadistance import METRES_PER_NM
from routewatch.model import Route, Site, Vessel, lonlat_centre

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
    near_site_m: float = 25_000.0  # at a route's site: in it, or at its anchorages and approaches
    corridor_detour: float = 1.5  # between a route's sites: origin -> detection -> destination within this x direct
    away_weight: float = 0.01  # share of a vessel's prior kept far from every site of its routes and off them
    recent_ais_h: float = 12.0  # a last AIS position this recent makes a place it could reach possible
    ais_false_rate: float = 0.02  # share of a vessel's prior kept when AIS places it elsewhere (a false position)
    spoof_check_odds: float = 10.0  # size odds (vessel against an unknown ship) above which that is pointed out


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
    best: str | None = None  # a vessel key when its probability exceeds min_probability, else None
    best_probability: float | None = None


def _normal(x: float, mu: float, sigma: float) -> float:
    return math.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


@functools.lru_cache(maxsize=1024)
def _local_site(geometry: BaseGeometry) -> tuple[float, float, float, float, BaseGeometry]:
    """A site in local metres (equirectangular about its centroid), made once per site and run."""
    cx, cy = lonlat_centre(geometry)
    kx = EARTH_M_PER_DEG * math.cos(math.radians(cy))
    local = to_local_metres(geometry, cx, cy, kx)
    shapely.prepare(local)
    radius = float(np.hypot(*shapely.get_coordinates(local).T).max()) if not local.is_empty else 0.0
    return cx, cy, kx, radius, local


def site_distances_m(geometry: BaseGeometry, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Metres from many points to a site's polygon (0 inside), in its local metres (:func:`_local_site`): exact
    near the site, where it matters (a point a few hundred km off is far by any measure)."""
    cx, cy, kx, _radius, local = _local_site(geometry)
    x = ((np.asarray(lon, float) - cx + 180.0) % 360.0 - 180.0) * kx
    y = (np.asarray(lat, float) - cy) * EARTH_M_PER_DEG
    return np.asarray(shapely.distance(local, shapely.points(x, y)), float)


def _site_distance_m(geometry: BaseGeometry, lon: float, lat: float) -> float:
    """Metres from a point to a site's polygon (0 inside): in local metres up to a few hundred km beyond the
    site, and beyond that the great-circle distance to its centroid less its extent (only "far" matters there)."""
    cx, cy, kx, radius, local = _local_site(geometry)
    far = float(haversine_m(cx, cy, lon, lat))
    if far > radius + 300_000:
        return far - radius
    x, y = ((lon - cx + 180.0) % 360.0 - 180.0) * kx, (lat - cy) * EARTH_M_PER_DEG
    return float(local.distance(Point(x, y)))


def _place(key: str, lon: float, lat: float, site: str | None, routes: Mapping[str, Route],
           sites: Mapping[str, Site], cfg: IdentifyConfig) -> tuple[str, str]:
    """Where the detection lies for vessel ``key``: ("site" | "between" | "unplaced" | "away", why)."""
    mine = [r for r in routes.values() if not r.vessels or key in r.vessels]
    at = [r.key for r in mine if site and site in (*r.origin, *r.destination)]
    if at:
        return "site", f"route {', '.join(at)} uses {site}"
    dist = {s: _site_distance_m(sites[s].geometry, lon, lat)
            for r in mine for s in (*r.origin, *r.destination) if s in sites}
    if not dist:
        return "unplaced", "no route site with a location: place not compared"
    nearest = min(dist, key=lambda s: dist[s])
    if dist[nearest] <= cfg.near_site_m:
        routes_at = ", ".join(r.key for r in mine if nearest in (*r.origin, *r.destination))
        return "site", f"{dist[nearest] / 1000:.0f} km from {nearest} of route {routes_at}"
    for r in mine:
        for o in (s for s in r.origin if s in sites):
            for d in (s for s in r.destination if s in sites):
                co, cd = sites[o].centroid_lonlat, sites[d].centroid_lonlat  # on 180 deg for a split site
                direct = float(haversine_m(co[0], co[1], cd[0], cd[1]))
                if dist[o] + dist[d] <= cfg.corridor_detour * direct + 2 * cfg.near_site_m:
                    return "between", f"between {o} and {d} on route {r.key}"
    return "away", (f"{dist[nearest] / 1000:.0f} km from {nearest}, the nearest site of its routes, and off "
                    f"them: unlikely here (prior x {cfg.away_weight:g})")


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
    sites: Mapping[str, Site] | None = None,
    last_seen: Mapping[str, LastSeen] | None = None,
    next_seen: Mapping[str, LastSeen] | None = None,
    seen_elsewhere: set[str] | frozenset[str] = frozenset(),
    matched_elsewhere: set[str] | frozenset[str] = frozenset(),
    config: IdentifyConfig | None = None,
) -> Identification:
    """Probabilities over the watchlist vessels and "unknown vessel" for one dark detection. ``sites`` (the
    watchlist's) locates the sites of the vessels' routes; without it only the detection's own ``site`` is
    compared with them. ``last_seen`` and ``next_seen``: each vessel's AIS position nearest before and after the
    image (one it could not have sailed from, or to, makes it unlikely: ``ais_false_rate``). ``seen_elsewhere``:
    vessels whose AIS places them elsewhere at the image time (unlikely, as above); ``matched_elsewhere``: vessels
    whose AIS was matched to another hull of the same image (ruled out)."""
    cfg = config or IdentifyConfig()
    routes = routes or {}
    sites = sites or {}
    last_seen = last_seen or {}
    next_seen = next_seen or {}
    likes: dict[str, float] = {}
    place: dict[str, float] = {}
    reasons: dict[str, str] = {}
    against: dict[str, str] = {}  # vessels whose AIS speaks against them, and what it says
    flat = 1.0  # the size density of "unknown vessel": flat over the lengths and widths of merchant ships
    if length_m is not None:
        flat /= cfg.length_range_m[1] - cfg.length_range_m[0]
    if width_m is not None:
        flat /= cfg.width_range_m[1] - cfg.width_range_m[0]
    for key, v in vessels.items():
        if key in matched_elsewhere:
            likes[key], place[key] = 0.0, 0.0
            reasons[key] = "its AIS matches another hull of this image"
            continue
        where, why_place = _place(key, lon, lat, site, routes, sites, cfg)
        why = [why_place]
        if key in seen_elsewhere:
            against[key] = "AIS places it elsewhere at the image time"
        for seen, word in ((last_seen.get(key), "before"), (next_seen.get(key), "after")):
            if seen is None or key in against:
                continue
            hours = abs((time - seen.time).total_seconds()) / 3600.0
            dist_nm = float(haversine_m(seen.lon, seen.lat, lon, lat)) / METRES_PER_NM
            if dist_nm > cfg.max_speed_kn * hours:
                against[key] = (f"{'last' if word == 'before' else 'next'} AIS {dist_nm:.0f} nm away {hours:.1f} h "
                                f"{word}: unreachable at {cfg.max_speed_kn:g} kn")
                continue
            why.append(f"{'last' if word == 'before' else 'next'} AIS {dist_nm:.0f} nm away {hours:.1f} h {word}: "
                       "reachable")
            if where in ("away", "unplaced") and hours <= cfg.recent_ais_h:
                # sailing here from (or on to) a recent AIS position: possible, not expected (an old one reaches
                # anywhere, so says nothing of the place)
                where = "between"
                why.append(f"within {cfg.recent_ais_h:g} h of its AIS: possible here")
        place[key] = {"site": 1.0, "away": cfg.away_weight}.get(where, 1.0 / cfg.route_weight)
        if key in against:
            why.insert(0, f"{against[key]} (AIS positions can be false: it keeps {cfg.ais_false_rate:g} of its "
                          "share of the prior)" if cfg.ais_false_rate > 0 else
                          f"{against[key]} (ruled out: AIS positions taken as true, --ais-false-rate 0)")
        like = 1.0
        if length_m is not None and v.length_m is None:  # no length to compare: the place alone speaks for it
            like /= cfg.length_range_m[1] - cfg.length_range_m[0]
            why.append(f"length {length_m:.0f} m, no length on the watchlist: size not compared")
        elif length_m is not None and v.length_m is not None:
            like *= _normal(length_m, v.length_m, max(cfg.length_sigma_min_m, cfg.length_sigma_frac * length_m))
            why.append(f"length {length_m:.0f} m vs {v.length_m:.0f} m")
        if width_m is not None and v.beam_m is not None:
            like *= _normal(width_m, v.beam_m, max(cfg.width_sigma_min_m, cfg.width_sigma_frac * width_m))
            why.append(f"width {width_m:.0f} m vs beam {v.beam_m:.0f} m")
        elif width_m is not None:  # unknown beam: the same flat width density as "unknown vessel" (marginalised)
            like /= cfg.width_range_m[1] - cfg.width_range_m[0]
            why.append(f"width {width_m:.0f} m, beam unknown: width not compared")
        likes[key] = like
        # a hull of its size at its port, its AIS elsewhere
        if key in against and cfg.ais_false_rate > 0 and where == "site" and length_m is not None \
                and v.length_m is not None and like / flat >= cfg.spoof_check_odds:
            why.append(f"its size fits (odds {like / flat:.0f} against an unknown ship) at a site of its "
                       "routes and only its AIS speaks against it: check for a spoofed position")
        reasons[key] = "; ".join(why)
    # The watchlist's prior mass is split over the candidates that could be here (at or between their routes'
    # sites, or placed nowhere); each keeps what its place allows. A vessel whose routes lie far from here keeps
    # ``away_weight`` of an even share of all candidates, so that a long watchlist of other routes' ships does
    # not dilute the ships of this one (split over all, 100 unrelated vessels had taken a port's own ship from
    # 0.97 to 0.14), and the mass it leaves goes to "unknown vessel".
    # Where AIS places vessels elsewhere the prior is a mixture: with 1 - ais_false_rate the AIS is right, those
    # vessels are no candidates and the others share the watchlist's mass as if they were not on the list; with
    # ais_false_rate it is false and every vessel shares it as if there were no AIS. So such a vessel keeps
    # ais_false_rate of its share among all, the watchlist's mass stays 1 - unknown_prior, and at a rate of 1 the
    # AIS is ignored.
    def shares(keys: list[str]) -> dict[str, float]:
        near = [k for k in keys if place[k] > cfg.away_weight]
        n_near, n_all = len(near) or 1, len(keys) or 1
        return {k: (1 - cfg.unknown_prior) * (place[k] / n_near if place[k] > cfg.away_weight else place[k] / n_all)
                for k in keys}

    candidates = [k for k in likes if place[k] > 0]
    if against:
        r = cfg.ais_false_rate
        trusted, ignored = shares([k for k in candidates if k not in against]), shares(candidates)
        priors = {k: (1 - r) * trusted.get(k, 0.0) + r * ignored.get(k, 0.0) for k in likes}
    else:
        alone = shares(candidates)
        priors = {k: alone.get(k, 0.0) for k in likes}
    scores = {k: priors[k] * likes[k] for k in likes}
    unknown_prior = max(1.0 - sum(priors.values()), cfg.unknown_prior)
    scores[UNKNOWN] = unknown_prior * flat
    reasons[UNKNOWN] = f"any ship not on the watchlist (prior {unknown_prior:.2f}, flat size density)"
    z = sum(scores.values())
    probs = {k: s / z for k, s in scores.items()} if z > 0 else {UNKNOWN: 1.0}
    best = named(probs, cfg.min_probability)
    return Identification(probs, reasons, best, probs[best] if best else None)


def named(probabilities: Mapping[str, float], min_probability: float) -> str | None:
    """The watchlist vessel to name from a distribution: the likeliest, when it is a vessel and its probability is
    above ``min_probability`` (above, not at: a size-less detection at a one-vessel route's port is 0.5 that vessel
    on the prior alone, a coin toss between it and an unknown ship, not a name)."""
    best = max(probabilities, key=lambda k: probabilities[k])
    return best if best != UNKNOWN and probabilities[best] > min_probability else None


EXACT_VESSELS = 10  # vessels whose share among the hulls of a site is worked out exactly (2 ** 10 states per hull)
MAX_ODDS = 1e6  # a hull's odds of being a vessel are capped here (beyond, certainty all the same)


def _marginals(w: np.ndarray, w_other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact marginals of assigning the columns of ``w`` (vessels) to distinct rows (hulls), each row taking at
    most one, a row without a vessel weighing ``w_other``: (p[i, k], p_other[i]). Forward and backward over the
    rows, the state the set of vessels already placed; each step is scaled, and each row's marginals are
    normalised to sum to 1 (they do exactly), so no product of weights is ever formed."""
    n, m = w.shape
    states = np.arange(1 << m)
    has = [(states >> j) & 1 == 1 for j in range(m)]
    forward = [np.zeros(1 << m)]
    forward[0][0] = 1.0
    for i in range(n):  # forward[i][S]: rows before i, placing exactly the vessels in S
        f = forward[i]
        nxt = f * w_other[i]
        for j in range(m):
            nxt[has[j]] += f[states[has[j]] ^ (1 << j)] * w[i, j]
        forward.append(nxt / nxt.max())
    backward = [np.ones(1 << m)]
    for i in range(n - 1, -1, -1):  # backward[S]: rows from i on, the vessels in S already placed
        b = backward[0]
        prev = b * w_other[i]
        for j in range(m):
            free = ~has[j]
            prev[free] += w[i, j] * b[states[free] | (1 << j)]
        backward.insert(0, prev / prev.max())
    p = np.zeros((n, m))
    p_other = np.zeros(n)
    for i in range(n):
        f, b = forward[i], backward[i + 1]
        for j in range(m):
            free = ~has[j]
            p[i, j] = float((f[free] * b[states[free] | (1 << j)]).sum()) * w[i, j]
        p_other[i] = float((f * b).sum()) * w_other[i]
        total = p[i].sum() + p_other[i]
        p[i] /= total
        p_other[i] /= total
    return p, p_other


def share_among_hulls(odds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities that each of ``n`` dark hulls seen together at one site is each watchlist vessel, or an
    unknown ship, when every vessel is at most one of them.

    ``odds[i, k]`` is hull i's odds of being vessel k against an unknown ship when it is scored alone
    (:func:`identify_dark`'s probabilities over its "unknown vessel" one). Alone, each hull at a busy port of
    ships of a watchlist vessel's size had been that vessel at 0.9 or more, and one of them named by a tie-break.
    Jointly: a vessel is at the site among the hulls with the odds one hull alone gives it, and then equally
    likely any of them a priori, so each hull's odds for it are divided by ``n``; an assignment of vessels to
    distinct hulls (the others unknown ships) weighs the product of its hulls' odds, and the probabilities are
    its marginals, summed exactly over every assignment (:func:`_marginals`). One hull gives back its own
    probabilities (exactly, up to ``EXACT_VESSELS`` vessels). Past ``EXACT_VESSELS`` vessels (by their summed
    odds), the rest are placed one at a time on the hulls the exact ones leave: each is at most one of them (its
    odds shrunk by one plus its summed odds over those hulls), and they share each hull with an unknown ship in
    proportion. The shrink errs low: on 2 hulls and 12 like vessels the last two get 0.075 where 0.083 is exact,
    a vessel that fits one hull alone 0.15 where 0.18 is.

    Returns (``p[i, k]``, ``p_unknown[i]``); each hull's row and its unknown share sum to 1."""
    odds = np.asarray(odds, np.float64)
    n, k_all = odds.shape
    if n == 0:
        return np.zeros((0, k_all)), np.zeros(0)
    # odds past a million are certainty all the same; capped, no state of the sums below underflows
    w = np.minimum(np.nan_to_num(odds, nan=0.0, posinf=MAX_ODDS), MAX_ODDS) / n
    order = [int(k) for k in np.argsort(-w.sum(axis=0), kind="stable")]
    exact = [k for k in order[:EXACT_VESSELS] if w[:, k].max() > 0]
    rest = [k for k in range(k_all) if k not in exact and w[:, k].max() > 0]
    p = np.zeros((n, k_all))
    w_rest = np.zeros(n)
    if rest:
        # first the hulls the exact vessels leave free, then each other vessel shrunk to at most one of them
        _, free = _marginals(w[:, exact], np.ones(n))
        shrink = 1.0 / (1.0 + (free[:, None] * w[:, rest]).sum(axis=0))
        w_rest = (w[:, rest] * shrink).sum(axis=1)
    p_exact, p_other = _marginals(w[:, exact], 1.0 + w_rest)
    p[:, exact] = p_exact
    p_unknown = p_other / (1.0 + w_rest)
    if rest:
        p[:, rest] = (p_other / (1.0 + w_rest))[:, None] * w[:, rest] * shrink
    return p, p_unknown
