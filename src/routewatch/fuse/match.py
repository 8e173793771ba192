"""Image detections against AIS: positions interpolated to the image time, then a Hungarian assignment.

The cost of pairing detection i with vessel j is a chi-square-like sum of normalised disagreements:

    (distance / sigma_pos)^2 + ((length_det - length_ais) / sigma_len)^2 + (heading difference / sigma_hdg)^2

where sigma_pos grows with the time between the image and the nearest AIS message (a ship at 12 kn moves 370 m a
minute), the length and heading terms are used only when both sides know them, and headings are compared as
axes (an image often cannot tell bow from stern). Pairs farther than the gate are never matched, and "a vessel
without AIS" is an alternative in the assignment itself at ``dark_cost``: a pair costlier than that is no match, and
a detection left unmatched is dark. Each match gets an identification confidence: its likelihood against every other candidate
and against the detection being a vessel without AIS.

"Dark" needs AIS coverage: :func:`ais_coverage` tells which detections have an AIS position (any ship) within
``coverage_radius_m`` inside the time window; where none has, nothing says the ship's transponder was off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from routewatch.analysis.port_visits import EARTH_M_PER_DEG, EARTH_RADIUS_M, haversine_m, wrap_lon
from routewatch.analysis.seadistance import METRES_PER_NM

KN_TO_MS = METRES_PER_NM / 3600.0
BIG = 1e9


@dataclass(frozen=True)
class FuseConfig:
    window_min: float = 30.0  # AIS messages within this many minutes of the image are used
    max_extrapolate_min: float = 10.0  # dead reckoning only this far past the last (or before the first) message
    position_sigma_m: float = 150.0  # image georeference and AIS position error together, 1 sigma
    motion_sigma_frac: float = 0.2  # share of the distance sailed since the nearest message that is uncertain
    gate_m: float = 2000.0  # never match farther than this
    gate_sigma: float = 4.0  # nor farther than this many sigma
    length_sigma_frac: float = 0.15  # detection length error, as a share of the length ...
    length_sigma_min_m: float = 10.0  # ... but at least this (about one resolution cell of a 10 m sensor)
    heading_sigma_deg: float = 25.0
    dark_cost: float = 16.0  # cost (chi-square) at which "a vessel without AIS" is as likely as the match
    stationary_kn: float = 0.5  # a ship reporting this speed or less holds its place for the whole window
    max_plausible_kn: float = 50.0  # two messages of one MMSI farther apart than this speed are two transmitters
    same_ship_m: float = 3.0  # detections of one image this close (lengths agreeing) are one ship detected twice
    coverage_radius_m: float = 75_000.0  # an unmatched detection is dark only with an AIS position this close


def interpolate_ais(positions: pl.DataFrame, when: datetime, config: FuseConfig | None = None,
                    around: pl.DataFrame | None = None) -> pl.DataFrame:
    """Each MMSI's position at ``when``: linear between the messages around it, or dead-reckoned from SOG/COG for
    at most ``max_extrapolate_min`` (a ship reporting ``stationary_kn`` or less holds its place for the whole
    window: satellite AIS often hears a moored ship once or twice an hour). Columns: mmsi, lon, lat, sog_kn,
    cog_deg, heading_deg, dt_s (seconds to the nearest message), motion_kn (the speed the position's uncertainty
    grows with: between two messages the fastest of their speeds and the speed the leg implies, so that a ship
    that slowed down at a berth is not placed to within the still ship's metres), method ("exact" for a message
    at the image time, "interpolated" or "extrapolated"; "conflicting" when the messages around the image are
    farther apart than ``max_plausible_kn`` allows: two transmitters on one MMSI, each message then a position
    of its own), source, line. ``around``: :func:`around_image` of ``positions``, when the caller has it."""
    cfg = config or FuseConfig()
    j = around_image(positions, when) if around is None else around
    t = pl.lit(when).cast(pl.Datetime("us", "UTC"))
    dtb = (t - pl.col("timestamp")).dt.total_microseconds() / 1e6
    dta = (pl.col("timestamp_a") - t).dt.total_microseconds() / 1e6
    frac = dtb / (dtb + dta)
    both = pl.col("timestamp").is_not_null() & pl.col("timestamp_a").is_not_null()
    j = j.with_columns(dtb.alias("dtb"), dta.alias("dta"), frac.alias("frac"), both.alias("both"))
    rows = []
    lim = cfg.max_extrapolate_min * 60

    def one_side(r: dict, side: str, dt_s: float | None, sign: float, method: str = "") -> None:
        """Dead reckoning from one message, when it is recent enough (or the ship was still)."""
        sog, cog = r["sog_kn" + side], r["cog_deg" + side]
        still = sog is not None and sog <= cfg.stationary_kn
        if dt_s is None or (dt_s > lim and not still):
            return
        lon, lat = r["lon" + side], r["lat" + side]
        if sog is not None and cog is not None and not still:
            d = sign * sog * KN_TO_MS * dt_s
            lat = lat + d * math.cos(math.radians(cog)) / EARTH_M_PER_DEG
            lon = lon + d * math.sin(math.radians(cog)) / (EARTH_M_PER_DEG * max(math.cos(math.radians(lat)), 1e-6))
            lon = wrap_lon(lon)
        # a still ship may drift or warp along its berth: its place is uncertain as a slow ship's is
        motion = max(sog, cfg.stationary_kn) if sog is not None else None
        rows.append((r["mmsi"], lon, lat, sog, cog, r["heading_deg" + side], dt_s, motion,
                     method or ("exact" if dt_s == 0 else "extrapolated"), r["source" + side], r["line" + side]))

    for r in j.iter_rows(named=True):
        if r["both"]:
            if _impossible(r, cfg):
                # no ship sails this leg: two transmitters share the MMSI (or one spoofs it). A point between them
                # is where neither is; each message stands for itself, as far as it reaches
                one_side(r, "", r["dtb"], 1.0, "conflicting")
                one_side(r, "_a", r["dta"], -1.0, "conflicting")
                continue
            f = r["frac"]
            # across the antimeridian the short way: 179.99 to -179.99 passes 180, not 0
            lon = wrap_lon(r["lon"] + f * wrap_lon(r["lon_a"] - r["lon"]))
            lat = r["lat"] + f * (r["lat_a"] - r["lat"])
            near = "" if r["dtb"] <= r["dta"] else "_a"
            motion = max([v for v in (r["sog_kn"], r["sog_kn_a"], _leg_kn(r)) if v is not None])
            rows.append((r["mmsi"], lon, lat, r["sog_kn" + near], r["cog_deg" + near], r["heading_deg" + near],
                         min(r["dtb"], r["dta"]), motion,
                         "exact" if min(r["dtb"], r["dta"]) == 0 else "interpolated",
                         r["source" + near], r["line" + near]))
            continue
        if r["timestamp"] is not None:
            one_side(r, "", r["dtb"], 1.0)
        else:
            one_side(r, "_a", r["dta"], -1.0)
    return pl.DataFrame(rows, schema={
        "mmsi": pl.Int32, "lon": pl.Float64, "lat": pl.Float64, "sog_kn": pl.Float32, "cog_deg": pl.Float32,
        "heading_deg": pl.Float32, "dt_s": pl.Float64, "motion_kn": pl.Float64, "method": pl.String,
        "source": pl.String, "line": pl.Int64,
    }, orient="row")


def _unit_xyz(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lo, la = np.radians(lon), np.radians(lat)
    return np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


def ais_coverage(det: pl.DataFrame, positions: pl.DataFrame, radius_m: float) -> np.ndarray:
    """For each detection, whether any of ``positions`` (already cut to the time window) lies within
    ``radius_m`` of it (great circle): the positions in the detections' latitude band go into a k-d tree on the
    unit sphere (no trouble at the antimeridian), and each detection asks for its nearest one."""
    covered = np.zeros(det.height, bool)
    if det.height == 0 or positions.height == 0:
        return covered
    dlat = det["lat"].to_numpy().astype(np.float64)
    pad = math.degrees(radius_m / EARTH_RADIUS_M)
    pos = positions.select("lon", "lat").drop_nulls().filter(
        pl.col("lat").is_between(float(dlat.min()) - pad, float(dlat.max()) + pad))
    if pos.height == 0:
        return covered
    tree = cKDTree(_unit_xyz(pos["lon"].to_numpy().astype(np.float64), pos["lat"].to_numpy().astype(np.float64)))
    chord = 2.0 * math.sin(min(radius_m / EARTH_RADIUS_M, math.pi) / 2.0)
    dist, _ = tree.query(_unit_xyz(det["lon"].to_numpy().astype(np.float64), dlat), k=1,
                         distance_upper_bound=chord * (1 + 1e-12))
    return np.isfinite(dist)


def axis_difference_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest angle between two headings read as axes (0-90 degrees)."""
    d = np.abs((np.asarray(a) - np.asarray(b)) % 180.0)
    return np.minimum(d, 180.0 - d)


def cost_matrix(det: pl.DataFrame, ais: pl.DataFrame, ais_length: dict[int, float], cfg: FuseConfig):
    """(cost, distance_m) matrices of detections x AIS vessels; gated pairs cost BIG."""
    dl, da = det["lon"].to_numpy()[:, None], det["lat"].to_numpy()[:, None]
    al, aa = ais["lon"].to_numpy()[None, :], ais["lat"].to_numpy()[None, :]
    dist = haversine_m(dl, da, al, aa)
    sog = np.nan_to_num(ais["sog_kn"].to_numpy().astype(float), nan=10.0)
    motion = ais["motion_kn"].to_numpy().astype(float) if "motion_kn" in ais.columns else sog
    moved = np.nan_to_num(motion, nan=10.0) * KN_TO_MS * ais["dt_s"].to_numpy()
    sigma = np.sqrt(cfg.position_sigma_m**2 + (cfg.motion_sigma_frac * moved) ** 2)[None, :]
    cost = (dist / sigma) ** 2
    length = det["length_m"].to_numpy().astype(float)[:, None] if "length_m" in det.columns else None
    if length is not None:
        alen = np.array([ais_length.get(int(m), np.nan) for m in ais["mmsi"]], float)[None, :]
        sl = np.maximum(cfg.length_sigma_min_m, cfg.length_sigma_frac * np.nan_to_num(length, nan=0.0))
        cost = cost + np.nan_to_num(((length - alen) / sl) ** 2, nan=0.0)
    if "heading_deg" in det.columns:
        dh = det["heading_deg"].to_numpy().astype(float)[:, None]
        ah = ais["heading_deg"].to_numpy().astype(float)
        ah = np.where(np.isnan(ah), ais["cog_deg"].to_numpy().astype(float), ah)[None, :]
        slow = (sog < 1.0)[None, :] & np.isnan(ais["heading_deg"].to_numpy().astype(float))[None, :]
        term = np.nan_to_num((axis_difference_deg(dh, ah) / cfg.heading_sigma_deg) ** 2, nan=0.0)
        cost = cost + np.where(slow, 0.0, term)  # a drifting ship's course says nothing about its axis
    gated = (dist > cfg.gate_m) | (dist > cfg.gate_sigma * sigma)
    return np.where(gated, BIG, cost), dist


def same_ship(det: pl.DataFrame, within_m: float) -> list[list[int]]:
    """For each detection of one image, the others that are the same ship detected twice: centres within
    ``within_m`` and lengths agreeing (within a third, or unknown). Groups are formed around the first detection
    of each ship and every member is a direct twin of it (no chains through a neighbour); each member's list
    holds the rest of its group."""
    n = det.height
    out: list[list[int]] = [[] for _ in range(n)]
    if n < 2 or within_m <= 0:
        return out
    from scipy.spatial import cKDTree

    lon, lat = det["lon"].to_numpy().astype(np.float64), det["lat"].to_numpy().astype(np.float64)
    ok = np.isfinite(lon) & np.isfinite(lat)
    if ok.sum() < 2:
        return out
    idx = np.flatnonzero(ok)
    lat0 = float(np.mean(lat[idx]))  # one scale for the image: a point's own latitude skews north-south pairs
    xy = np.column_stack([lon[idx] * 111_320.0 * math.cos(math.radians(lat0)), lat[idx] * 110_540.0])
    length = det["length_m"].to_numpy().astype(np.float64) if "length_m" in det.columns else np.full(n, np.nan)
    near: dict[int, set[int]] = {}
    for a, b in cKDTree(xy).query_pairs(within_m):
        a, b = int(idx[a]), int(idx[b])
        la, lb = length[a], length[b]
        if not (np.isfinite(la) and np.isfinite(lb) and abs(la - lb) > max(la, lb) / 3):
            near.setdefault(a, set()).add(b)
            near.setdefault(b, set()).add(a)
    members: dict[int, list[int]] = {}
    for a in range(n):  # in order: a detection joins the first group all of whose members it is a twin of (one
        mine = near.get(a, set())  # between two rafted craft is the copy of neither, and joins no group)
        leader = next((g for g in sorted(members) if g < a and all(m in mine for m in members[g])), None)
        members.setdefault(a if leader is None else leader, []).append(a)
    for items in members.values():
        for a in items:
            out[a] = [b for b in items if b != a]
    return out


def around_image(positions: pl.DataFrame, when: datetime) -> pl.DataFrame:
    """Each MMSI's last message at or before ``when`` and its first after it (columns suffixed ``_a``), in one
    row: what interpolation, the two-transmitter test and the reach of ships not placed all read."""
    cols = ["mmsi", "timestamp", "lon", "lat", "sog_kn", "cog_deg", "heading_deg", "source", "line"]
    p = positions.select(cols).sort("mmsi", "timestamp")
    before = p.filter(pl.col("timestamp") <= when).group_by("mmsi").agg(pl.all().last())
    after = p.filter(pl.col("timestamp") > when).group_by("mmsi").agg(pl.all().first())
    return before.join(after, on="mmsi", how="full", coalesce=True, suffix="_a")


def _leg_kn(r: dict) -> float:
    """The speed the leg between the messages either side of the image (a row of :func:`around_image`) implies."""
    span = (r["timestamp_a"] - r["timestamp"]).total_seconds()
    return float(haversine_m(r["lon"], r["lat"], r["lon_a"], r["lat_a"])) / span / KN_TO_MS if span > 0 else 0.0


def _impossible(r: dict, cfg: FuseConfig) -> bool:
    """Whether the messages either side of the image (a row of :func:`around_image`) are too far apart for one
    ship."""
    if r["timestamp"] is None or r["timestamp_a"] is None:
        return False
    leg = float(haversine_m(r["lon"], r["lat"], r["lon_a"], r["lat_a"]))
    return leg > 2 * cfg.gate_m and _leg_kn(r) > cfg.max_plausible_kn


def two_transmitters(around: pl.DataFrame, cfg: FuseConfig) -> set[int]:
    """MMSIs (of :func:`around_image`) whose messages either side of the image no ship could have sailed between
    (two transmitters on one MMSI, or a spoofed one): placed or not, their positions say nothing sure of where the
    ship is."""
    return {int(r["mmsi"]) for r in around.iter_rows(named=True) if _impossible(r, cfg)}


def could_be_here(det: pl.DataFrame, around: pl.DataFrame, positioned: set[int], when: datetime,
                  cfg: FuseConfig) -> list[list[tuple[int, str]]]:
    """For each detection, the AIS ships heard in the window (:func:`around_image`) but not placed at the image
    time (a moving ship's messages too far from it to dead-reckon) that could have reached it: (mmsi, why). Such a
    detection is not dark: AIS cannot say the ship there was silent. The reach from each message around the image
    is the fastest speed the ship showed (its reports, the leg between them) plus a quarter and 2 kn, over the
    time to the image, plus the match gate."""
    out: list[list[tuple[int, str]]] = [[] for _ in range(det.height)]
    rest = around.filter(~pl.col("mmsi").is_in(list(positioned))) if positioned else around
    if det.height == 0 or rest.height == 0:
        return out
    dlon, dlat = det["lon"].to_numpy().astype(float), det["lat"].to_numpy().astype(float)
    for r in rest.iter_rows(named=True):
        sides = [(r["timestamp" + k], r["lon" + k], r["lat" + k], r["sog_kn" + k]) for k in ("", "_a")
                 if r["timestamp" + k] is not None]
        speeds = [v for *_, v in sides if v is not None]
        apart = _impossible(r, cfg)  # two transmitters: either could be the ship, each from its own message
        if len(sides) == 2 and not apart:
            speeds.append(_leg_kn(r))
        ok = np.zeros(det.height, bool) if apart else np.ones(det.height, bool)
        whys = []
        for t_m, lon, lat, sog in sides:
            v_kn = (sog if apart and sog is not None else max(speeds, default=12.0)) * 1.25 + 2.0
            dt_s = abs((t_m - when).total_seconds())
            near = haversine_m(dlon, dlat, lon, lat) <= v_kn * KN_TO_MS * dt_s + cfg.gate_m
            ok = (ok | near) if apart else (ok & near)
            whys.append((dt_s, t_m <= when))
        dt_s, earlier = min(whys)
        for i in np.flatnonzero(ok):
            out[int(i)].append((int(r["mmsi"]), f"AIS MMSI {int(r['mmsi'])} was heard {dt_s / 60:.0f} min "
                                                f"{'before' if earlier else 'after'} the image and could be this ship"))
    return out


def match_detections(
    det: pl.DataFrame, ais: pl.DataFrame, ais_length: dict[int, float], config: FuseConfig | None = None,
    twins: list[list[int]] | None = None,
) -> pl.DataFrame:
    """One row per detection: status (identified/dark), mmsi, match_distance_m, cost, confidence. ``twins``:
    :func:`same_ship` of ``det``, when the caller has it already."""
    cfg = config or FuseConfig()
    n = det.height
    status = ["dark"] * n
    mmsi: list[int | None] = [None] * n
    dist_out: list[float | None] = [None] * n
    cost_out: list[float | None] = [None] * n
    conf: list[float | None] = [None] * n
    method: list[str | None] = [None] * n
    src: list[str | None] = [None] * n
    note: list[str | None] = [None] * n  # an unmatched detection's likeliest AIS ship, and why it is no match
    if n and ais.height:
        cost, dist = cost_matrix(det, ais, ais_length, cfg)
        # a ship detected twice in one image (two fusions of it, from files without ids, exported together) takes
        # part in the assignment once, as its first copy, and every copy takes that match: assigned one by one,
        # the second copy had lost, been called dark and then named a watchlist vessel
        twins = twins if twins is not None else same_ship(det, cfg.same_ship_m)
        reps = [i for i in range(n) if all(t > i for t in twins[i])]
        # a ship's cost to each AIS ship is its likeliest copy's (a first copy gated out leaves the others theirs)
        ship_cost = np.vstack([cost[[r, *twins[r]]].min(axis=0) for r in reps])
        # "a ship without AIS" is an alternative inside the assignment (a column of its own for each ship, at
        # the dark cost): chosen after the pairs, a ship's AIS match had been given to another hull beside it
        # (the better match then lost to the swap) and a weak match had hidden a dark ship from the watchlist
        none = np.full((len(reps), len(reps)), BIG)
        np.fill_diagonal(none, cfg.dark_cost)
        rows, cols = linear_sum_assignment(np.hstack([ship_cost, none]))
        pairs = []
        for k, j in zip(rows.tolist(), cols.tolist(), strict=True):
            if j < ship_cost.shape[1] and ship_cost[k, j] < BIG:
                pairs += [(i, j) for i in (reps[k], *twins[reps[k]]) if cost[i, j] < BIG]
        like = np.where(cost < BIG, np.exp(-0.5 * cost), 0.0)
        for i, j in pairs:
            status[i] = "identified"
            mmsi[i] = int(ais["mmsi"][int(j)])
            dist_out[i] = float(dist[i, j])
            cost_out[i] = float(cost[i, j])
            conf[i] = float(like[i, j] / (like[i].sum() + math.exp(-0.5 * cfg.dark_cost)))
            method[i] = ais["method"][int(j)]
            src[i] = f"{ais['source'][int(j)]}:{ais['line'][int(j)]}"
        for i in range(n):
            j = int(np.argmin(cost[i]))
            if status[i] == "dark" and cost[i, j] < BIG:
                note[i] = (f"AIS MMSI {int(ais['mmsi'][j])} {dist[i, j]:.0f} m away (cost {cost[i, j]:.1f}) is a "
                           f"weaker explanation than a ship without AIS ({cfg.dark_cost:g})"
                           + (" or is another hull's match" if cost[i, j] < cfg.dark_cost else ""))
    return det.select("id").with_columns(
        pl.Series("status", status, pl.String), pl.Series("mmsi", mmsi, pl.Int32),
        pl.Series("match_distance_m", dist_out, pl.Float64), pl.Series("match_cost", cost_out, pl.Float64),
        pl.Series("match_confidence", conf, pl.Float64), pl.Series("ais_method", method, pl.String),
        pl.Series("ais_evidence", src, pl.String), pl.Series("ais_note", note, pl.String),
    )
