"""Port visits from AIS positions, in the style of Global Fishing Watch, vectorised and streaming over days.

A vessel enters a site when it comes within ``entry_m`` of the site polygon and leaves when it is farther than
``exit_m`` (hysteresis, so a ship swinging at anchor on the edge is not counted twice). Within a visit, a stop starts
below ``stop_kn`` (0.2 kn) and ends above ``restart_kn`` (0.5 kn); a silence longer than ``gap_h`` inside the site
is an in-port gap (transponders are often switched off at berth); a silence longer than ``split_h`` ends the visit,
because after days of silence we cannot say the ship never left. Each visit gets a level from what was seen
(GFW's 1-4: entry or exit only; stop or gap only; one end plus stop or gap; both ends plus stop or gap) and a
confidence from the level.

Distances to sites come from :class:`SiteIndex`: per-site distance rasters (``cell_m``, default 50 m, so the error
is at most 35 m), looked up with array gathers. Positions must be sorted by (mmsi, timestamp) within a batch, which
is how the day partitions are written; a small carry (last position and open visit per vessel) links the days.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl
import shapely
from shapely.affinity import affine_transform

from routewatch.model import Site

EARTH_M_PER_DEG = 111_320.0
GRID_DEG = 0.1


@dataclass
class _SiteRaster:
    key: str
    lon0: float
    lat0: float
    kx: float  # metres per degree of longitude at lat0
    x0: float
    y0: float
    cell_m: float
    dist: np.ndarray  # (ny, nx) float32 metres to the polygon, 0 inside


class SiteIndex:
    """Nearest watched site and the distance to its polygon for arrays of WGS84 lon/lat."""

    def __init__(self, sites: Mapping[str, Site], max_distance_m: float, cell_m: float = 50.0):
        self.keys = list(sites)
        self.max_distance_m = float(max_distance_m)
        self.rasters = [self._raster(k, s, cell_m) for k, s in sites.items()]
        self.grid = np.full((int(180 / GRID_DEG) + 1, int(360 / GRID_DEG) + 1), -1, np.int16)
        for i, r in enumerate(self.rasters):
            ny, nx = r.dist.shape
            lon_a, lon_b = r.lon0 + r.x0 / r.kx, r.lon0 + (r.x0 + nx * r.cell_m) / r.kx
            lat_a, lat_b = r.lat0 + r.y0 / EARTH_M_PER_DEG, r.lat0 + (r.y0 + ny * r.cell_m) / EARTH_M_PER_DEG
            rows = slice(int((lat_a + 90) / GRID_DEG), int((lat_b + 90) / GRID_DEG) + 1)
            cols = slice(int((lon_a + 180) / GRID_DEG), int((lon_b + 180) / GRID_DEG) + 1)
            block = self.grid[rows, cols]
            self.grid[rows, cols] = np.where(block == -1, i, -2)  # -2: several sites near this cell

    def _raster(self, key: str, site: Site, cell_m: float) -> _SiteRaster:
        lon0, lat0 = site.centroid_lonlat
        kx = EARTH_M_PER_DEG * math.cos(math.radians(lat0))
        local = affine_transform(site.geometry, [kx, 0, 0, EARTH_M_PER_DEG, -lon0 * kx, -lat0 * EARTH_M_PER_DEG])
        minx, miny, maxx, maxy = local.bounds
        pad = self.max_distance_m + 2 * cell_m
        x0, y0 = minx - pad, miny - pad
        nx, ny = int((maxx - minx + 2 * pad) / cell_m) + 1, int((maxy - miny + 2 * pad) / cell_m) + 1
        xs = x0 + (np.arange(nx) + 0.5) * cell_m
        ys = y0 + (np.arange(ny) + 0.5) * cell_m
        gx, gy = np.meshgrid(xs, ys)
        dist = shapely.distance(local, shapely.points(gx.ravel(), gy.ravel())).reshape(ny, nx)
        return _SiteRaster(key, lon0, lat0, kx, x0, y0, cell_m, dist.astype(np.float32))

    def lookup(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(site index or -1, distance in metres or inf) of each position to its nearest site."""
        n = lon.shape[0]
        site = np.full(n, -1, np.int16)
        dist = np.full(n, np.inf, np.float32)
        if not self.rasters or n == 0:
            return site, dist
        r_idx = ((lat + 90.0) * (1 / GRID_DEG)).astype(np.int32)
        c_idx = ((lon + 180.0) * (1 / GRID_DEG)).astype(np.int32)
        np.clip(r_idx, 0, self.grid.shape[0] - 1, out=r_idx)
        np.clip(c_idx, 0, self.grid.shape[1] - 1, out=c_idx)
        cand = self.grid[r_idx, c_idx]
        near = np.flatnonzero(cand != -1)
        if near.size == 0:
            return site, dist
        cand_near = cand[near]
        for i, r in enumerate(self.rasters):
            sel = near[(cand_near == i) | (cand_near == -2)]
            if sel.size == 0:
                continue
            ix = (((lon[sel] - r.lon0) * r.kx - r.x0) / r.cell_m).astype(np.int64)
            iy = (((lat[sel] - r.lat0) * EARTH_M_PER_DEG - r.y0) / r.cell_m).astype(np.int64)
            ny, nx = r.dist.shape
            inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
            d = np.full(sel.size, np.inf, np.float32)
            d[inside] = r.dist[iy[inside], ix[inside]]
            better = d < dist[sel]
            dist[sel[better]] = d[better]
            site[sel[better]] = i
        return site, dist


def haversine_m(lon1, lat1, lon2, lat2):
    """Great-circle distance in metres (spherical Earth, radius 6,371,008.8 m); numpy arrays or floats."""
    lon1, lat1, lon2, lat2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (lon1, lat1, lon2, lat2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6_371_008.8 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


@dataclass(frozen=True)
class VisitConfig:
    """Thresholds of the visit detector (distances in metres from the site polygon, speeds in knots, hours)."""

    entry_m: float = 1000.0
    exit_m: float = 2000.0
    stop_kn: float = 0.2
    restart_kn: float = 0.5
    gap_h: float = 4.0
    split_h: float = 72.0
    min_level: int = 1
    cell_m: float = 50.0


LEVEL_CONFIDENCE = {1: 0.35, 2: 0.6, 3: 0.8, 4: 0.95}
US_PER_H = 3_600_000_000
NONE = -3  # "no event": keep the previous state
COLUMNS = ["mmsi", "timestamp", "lon", "lat", "sog_kn", "source", "line"]


def visit_level(entry: np.ndarray, exit_: np.ndarray, stop: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """GFW-style level: 4 both ends + stop/gap, 3 one end + stop/gap, 2 stop/gap only, 1 ends only."""
    sg = stop | gap
    ends = entry.astype(np.int8) + exit_.astype(np.int8)
    return np.where(sg, 2 + ends, 1).astype(np.int8)


def _ffill(ev: np.ndarray) -> np.ndarray:
    """Forward-fill NONE entries; the caller guarantees the first row of every vessel has an event."""
    idx = np.where(ev != NONE, np.arange(ev.size), 0)
    np.maximum.accumulate(idx, out=idx)
    return ev[idx]


@dataclass
class Carry:
    """What links one batch to the next: each vessel's last position and state, and its open visit."""

    rows: pl.DataFrame | None = None  # COLUMNS + state, stop
    open: dict[int, dict] | None = None


def _empty_visits() -> pl.DataFrame:
    return pl.DataFrame(schema={
        "mmsi": pl.Int32, "site": pl.String, "start": pl.Datetime("us", "UTC"), "end": pl.Datetime("us", "UTC"),
        "positions": pl.Int64, "entry": pl.Boolean, "exit": pl.Boolean, "stop": pl.Boolean, "gap": pl.Boolean,
        "level": pl.Int8, "confidence": pl.Float64, "first_source": pl.String, "first_line": pl.Int64,
        "last_source": pl.String, "last_line": pl.Int64,
    })


class VisitScanner:
    """Feed it batches (days) of positions sorted by (mmsi, timestamp), then ``finish()``; collects visits."""

    def __init__(self, sites: Mapping[str, Site], config: VisitConfig | None = None, gap_detector=None):
        self.config = config or VisitConfig()
        self.index = SiteIndex(sites, max(self.config.exit_m, self.config.entry_m), self.config.cell_m)
        self.carry = Carry(None, {})
        self.gap_detector = gap_detector  # optional: called with (frame, vessel_start, dt_h) on every batch
        self._out: list[dict] = []
        self.positions = 0

    def feed(self, day: pl.DataFrame) -> None:
        cfg = self.config
        day = day.select(COLUMNS).with_columns(pl.lit(NONE, pl.Int16).alias("state"), pl.lit(NONE, pl.Int8).alias("stop"))
        self.positions += day.height
        frame = day if self.carry.rows is None else pl.concat([self.carry.rows, day], how="vertical")
        if self.carry.rows is not None and self.carry.rows.height:
            order = np.argsort(frame["mmsi"].to_numpy(), kind="stable")  # two sorted runs: a linear merge
            frame = frame[order]
        if frame.height == 0:
            return
        mmsi = frame["mmsi"].to_numpy()
        t = frame["timestamp"].dt.epoch("us").to_numpy()
        lon, lat = frame["lon"].to_numpy(), frame["lat"].to_numpy()
        site, dist = self.index.lookup(lon, lat)
        n = frame.height
        vstart = np.ones(n, bool)
        vstart[1:] = mmsi[1:] != mmsi[:-1]
        dt_h = np.full(n, np.inf)
        dt_h[1:] = (t[1:] - t[:-1]) / US_PER_H
        dt_h[vstart] = np.inf
        reset = dt_h > cfg.split_h
        ev = np.where(dist <= cfg.entry_m, site, np.where(dist > cfg.exit_m, -1, NONE)).astype(np.int16)
        carried = frame["state"].to_numpy()
        ev = np.where(carried != NONE, carried, ev)
        ev[(vstart | reset) & (ev == NONE)] = -1
        state = _ffill(ev)
        sog = frame["sog_kn"].to_numpy().astype(np.float64)
        sev = np.where(sog < cfg.stop_kn, 1, np.where(sog > cfg.restart_kn, 0, NONE)).astype(np.int8)
        sev = np.where(np.isnan(sog), NONE, sev).astype(np.int8)
        cstop = frame["stop"].to_numpy()
        sev = np.where(cstop != NONE, cstop, sev)
        sev[(vstart | reset) & (sev == NONE)] = 0
        stop = _ffill(sev)
        if self.gap_detector is not None:
            self.gap_detector.feed(frame, vstart, dt_h, site, dist)
        self._runs(frame, mmsi, t, state, stop, vstart, dt_h, reset, final=False)
        last = np.flatnonzero(np.append(vstart[1:], True))
        self.carry.rows = frame[last].with_columns(
            pl.Series("state", state[last], pl.Int16), pl.Series("stop", stop[last], pl.Int8))

    def _runs(self, frame, mmsi, t, state, stop, vstart, dt_h, reset, final: bool) -> None:
        cfg = self.config
        n = state.size
        inn = state >= 0
        prev = np.empty(n, np.int16)
        prev[0] = -1
        prev[1:] = state[:-1]
        new = inn & (vstart | (state != prev) | reset)
        if not new.any():
            return
        starts = np.flatnonzero(new)
        nxt_new = np.append(new[1:], True)
        nxt_in = np.append(inn[1:], False)
        ends = np.flatnonzero(inn & (nxt_new | ~nxt_in))
        in_gap = inn & ~new & (dt_h > cfg.gap_h)
        gap = np.maximum.reduceat((in_gap).astype(np.int8), starts) > 0
        stp = np.maximum.reduceat(((stop == 1) & inn).astype(np.int8), starts) > 0
        entry = ~vstart[starts] & ~reset[starts]
        after = np.minimum(ends + 1, n - 1)
        has_next = (ends + 1 < n) & ~np.append(vstart[1:], True)[ends]
        exit_ = has_next & ~reset[after]
        is_open = ~has_next & (not final)
        carry_start = frame["state"].to_numpy()[starts] != NONE
        src, line = frame["source"], frame["line"].to_numpy()
        opened = self.carry.open
        for k in range(starts.size):
            s, e = int(starts[k]), int(ends[k])
            rec = {"mmsi": int(mmsi[s]), "site": int(state[s]), "start": int(t[s]), "end": int(t[e]),
                   "positions": e - s + 1, "entry": bool(entry[k]), "exit": bool(exit_[k]), "stop": bool(stp[k]),
                   "gap": bool(gap[k]), "first": (s, None), "last": (e, None)}
            if carry_start[k] and rec["mmsi"] in opened:
                old = opened.pop(rec["mmsi"])
                rec.update(start=old["start"], entry=old["entry"], positions=old["positions"] + e - s,
                           stop=old["stop"] or rec["stop"], gap=old["gap"] or rec["gap"], first=old["first"])
            if rec["first"][1] is None:
                rec["first"] = (-1, (src[s], int(line[s])))
            rec["last"] = (-1, (src[e], int(line[e])))
            if is_open[k]:
                opened[rec["mmsi"]] = rec
            else:
                self._out.append(rec)

    def finish(self) -> pl.DataFrame:
        """Close the visits still open (exit not seen) and return every visit as a frame (see ``_empty_visits``)."""
        for rec in self.carry.open.values():
            self._out.append(rec)
        self.carry.open = {}
        if not self._out:
            return _empty_visits()
        keys = self.index.keys
        recs = self._out
        entry = np.array([r["entry"] for r in recs])
        exit_ = np.array([r["exit"] for r in recs])
        stop = np.array([r["stop"] for r in recs])
        gap = np.array([r["gap"] for r in recs])
        level = visit_level(entry, exit_, stop, gap)
        frame = pl.DataFrame({
            "mmsi": [r["mmsi"] for r in recs], "site": [keys[r["site"]] for r in recs],
            "start": [r["start"] for r in recs], "end": [r["end"] for r in recs],
            "positions": [r["positions"] for r in recs], "entry": entry, "exit": exit_, "stop": stop, "gap": gap,
            "level": level, "confidence": [LEVEL_CONFIDENCE[int(v)] for v in level],
            "first_source": [r["first"][1][0] for r in recs], "first_line": [r["first"][1][1] for r in recs],
            "last_source": [r["last"][1][0] for r in recs], "last_line": [r["last"][1][1] for r in recs],
        }).with_columns(
            pl.col("start", "end").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
            pl.col("mmsi").cast(pl.Int32),
        )
        frame = frame.filter(pl.col("level") >= self.config.min_level).sort("mmsi", "start")
        return frame.select(_empty_visits().columns)


def port_visits(
    batches: Iterable[pl.DataFrame], sites: Mapping[str, Site], config: VisitConfig | None = None
) -> pl.DataFrame:
    """Port visits from batches (e.g. days) of positions, each sorted by (mmsi, timestamp), in time order."""
    scanner = VisitScanner(sites, config)
    for batch in batches:
        scanner.feed(batch)
    return scanner.finish()
