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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import shapely

from routewatch.analysis.seadistance import site_radius_m
from routewatch.model import Site

EARTH_M_PER_DEG = 111_320.0
EARTH_RADIUS_M = 6_371_008.8  # the mean radius the great-circle distances use
GRID_DEG = 0.1


MAX_CELLS = 1 << 20  # cells of one site's raster (4 MiB of float32): a bigger site gets coarser cells


@dataclass
class _SiteRaster:
    key: str
    lon0: float
    lat0: float
    kx: float  # metres per degree of longitude at lat0
    x0: float
    y0: float
    cell_m: float
    dist: np.ndarray  # (ny, nx) float32 metres from the cell centres to the polygon, 0 inside (negative when exact)
    local: Any = None  # the polygon in local metres, when the cells are coarser than asked (see ``exact``)
    exact: bool = False  # coarse cells: positions that are not surely inside get an exact distance instead
    geometry: Any = None  # the site in lon/lat (exact sites: measured again at each position's latitude)
    frame_error: float = 0.0  # the largest relative east-west scale error of the centroid's frame over the site
    bands: dict = field(default_factory=dict)  # latitude band -> the polygon in that band's local metres


class SiteIndex:
    """Nearest watched site and the distance to its polygon for arrays of WGS84 lon/lat.

    Each site has a raster of signed distances over its extent padded by ``max_distance_m``, in local metres
    (an equirectangular projection at the site's centroid). A site small enough for ``cell_m`` cells within
    ``max_cells`` answers from the raster (error at most half a cell's diagonal). A bigger site gets the coarsest
    cells that fit in ``max_cells``, so its memory and build time stay bounded; there the raster only says which
    positions are surely inside (distance 0) and every other position in its extent gets the exact distance from
    shapely, so the answers near the edge, where the entry and exit thresholds lie, are exact.
    """

    def __init__(self, sites: Mapping[str, Site], max_distance_m: float, cell_m: float = 50.0,
                 max_cells: int = MAX_CELLS):
        self.keys = list(sites)
        self.max_distance_m = float(max_distance_m)
        self.max_cells = int(max_cells)
        self.rasters = [self._raster(k, s, cell_m) for k, s in sites.items()]
        # columns wrap at the antimeridian: a site near 180 deg E also owns the cells just past 180 deg W. Rows
        # only over the band of latitudes the sites reach (row0 on): the sites of one port, scanned as a layer of
        # their own (site_layers), need a strip of the globe, not 13 MB of it each
        n_rows, n_cols = round(180 / GRID_DEG) + 1, round(360 / GRID_DEG)
        spans = []
        for r in self.rasters:
            ny, nx = r.dist.shape
            lon_a, lon_b = r.lon0 + r.x0 / r.kx, r.lon0 + (r.x0 + nx * r.cell_m) / r.kx
            lat_a, lat_b = r.lat0 + r.y0 / EARTH_M_PER_DEG, r.lat0 + (r.y0 + ny * r.cell_m) / EARTH_M_PER_DEG
            spans.append((max(int((lat_a + 90) / GRID_DEG), 0), min(int((lat_b + 90) / GRID_DEG) + 1, n_rows),
                          lon_a, lon_b))
        self.row0 = min((a for a, _, _, _ in spans), default=0)
        self.grid = np.full((max((b for _, b, _, _ in spans), default=1) - self.row0, n_cols), -1, np.int16)
        for i, (row_a, row_b, lon_a, lon_b) in enumerate(spans):
            rows = np.arange(row_a, row_b) - self.row0
            cols = np.arange(math.floor((lon_a + 180) / GRID_DEG), math.floor((lon_b + 180) / GRID_DEG) + 1)
            cells = np.ix_(rows, np.unique(cols % n_cols))
            block = self.grid[cells]
            self.grid[cells] = np.where(block == -1, i, -2)  # -2: several sites near this cell

    def _raster(self, key: str, site: Site, cell_m: float) -> _SiteRaster:
        lon0, lat0 = site.centroid_lonlat
        kx = EARTH_M_PER_DEG * math.cos(math.radians(lat0))
        local = to_local_metres(site.geometry, lon0, lat0, kx)
        minx, miny, maxx, maxy = local.bounds
        cell = cell_m
        while True:
            pad = self.max_distance_m + 2 * cell
            nx, ny = int((maxx - minx + 2 * pad) / cell) + 1, int((maxy - miny + 2 * pad) / cell) + 1
            if nx * ny <= self.max_cells:
                break
            cell = max(cell * 1.01, math.sqrt((maxx - minx + 2 * pad) * (maxy - miny + 2 * pad) / self.max_cells))
        x0, y0 = minx - pad, miny - pad
        xs = x0 + (np.arange(nx) + 0.5) * cell
        ys = y0 + (np.arange(ny) + 0.5) * cell
        dist = np.empty((ny, nx), np.float32)
        rows = max(1, 65_536 // nx)  # a block of rows at a time: no full-extent coordinate grids
        for j in range(0, ny, rows):
            gx, gy = np.meshgrid(xs, ys[j:j + rows])
            dist[j:j + rows] = _signed_distance(local, gx.ravel(), gy.ravel()).reshape(gx.shape)
        exact = cell > cell_m
        if exact:
            shapely.prepare(local)
        else:  # the raster answers: 0 inside
            np.maximum(dist, np.float32(0.0), out=dist)
        lats = (lat0 + y0 / EARTH_M_PER_DEG, lat0 + (y0 + ny * cell) / EARTH_M_PER_DEG)
        cos0 = math.cos(math.radians(lat0))
        error = max(abs(math.cos(math.radians(max(min(a, 89.9), -89.9))) / cos0 - 1.0) for a in lats) \
            if exact else 0.0
        return _SiteRaster(key, lon0, lat0, kx, x0, y0, cell, dist, local if exact else None, exact,
                           site.geometry if exact else None, error)

    def candidates(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Each position's candidate site from the grid: its index, -2 (several near its cell) or -1 (none)."""
        r_idx = ((lat + 90.0) * (1 / GRID_DEG)).astype(np.int32) - self.row0
        c_idx = ((lon + 180.0) * (1 / GRID_DEG)).astype(np.int32)
        c_idx %= self.grid.shape[1]  # 180 deg E is 180 deg W
        outside = (r_idx < 0) | (r_idx >= self.grid.shape[0])
        np.clip(r_idx, 0, self.grid.shape[0] - 1, out=r_idx)
        cand = self.grid[r_idx, c_idx]
        if outside.any():
            cand = np.where(outside, np.int16(-1), cand)
        return cand

    def lookup(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(site index or -1, distance in metres or inf) of each position to its nearest site."""
        n = lon.shape[0]
        site = np.full(n, -1, np.int16)
        dist = np.full(n, np.inf, np.float32)
        if not self.rasters or n == 0:
            return site, dist
        cand = self.candidates(lon, lat)
        near = np.flatnonzero(cand != -1)
        if near.size == 0:
            return site, dist
        cand_near = cand[near]
        # Group the positions by candidate site once (a counting sort) instead of scanning them once per site.
        order = np.argsort(cand_near, kind="stable")
        bounds = np.searchsorted(cand_near[order], np.arange(-2, len(self.rasters) + 1))
        shared = near[order[bounds[0]:bounds[1]]]  # cells near several sites: test each of them
        for i, r in enumerate(self.rasters):
            own = near[order[bounds[i + 2]:bounds[i + 3]]]
            sel = np.concatenate([own, shared]) if shared.size else own
            if sel.size == 0:
                continue
            x = wrap_lon(lon[sel] - r.lon0) * r.kx
            y = (lat[sel] - r.lat0) * EARTH_M_PER_DEG
            ix = ((x - r.x0) / r.cell_m).astype(np.int64)
            iy = ((y - r.y0) / r.cell_m).astype(np.int64)
            ny, nx = r.dist.shape
            inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
            d = np.full(sel.size, np.inf, np.float32)
            d_in = r.dist[iy[inside], ix[inside]]
            if r.exact:
                # a cell whose centre lies deeper inside than half its diagonal is wholly inside, and one farther out
                # than max_distance_m plus that is wholly beyond every threshold (its coarse value is kept); in
                # between the coarse value is off by up to half a diagonal, so ask the polygon itself
                # (the raster is in the centroid's frame, whose east-west scale is off by up to frame_error away
                # from its latitude: that much more slack; the exact distance is measured at each position's own
                # latitude)
                slack = r.cell_m * math.sqrt(0.5) + r.frame_error * np.abs(d_in)
                unsure = (d_in > -slack) & (d_in - slack <= self.max_distance_m)
                k = np.flatnonzero(inside)[unsure]
                np.maximum(d_in, np.float32(0.0), out=d_in)
                if k.size:
                    d_in[unsure] = _distance_at_latitude(r, lon[sel][k], lat[sel][k])
            d[inside] = d_in
            better = d < dist[sel]
            dist[sel[better]] = d[better]
            site[sel[better]] = i
        return site, dist


BAND_DEG = 0.05  # latitude band whose one east-west scale measures a large site's distances (0.03 % off at most)


def _distance_at_latitude(r: _SiteRaster, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Metres from positions to a large site's polygon (0 inside), each measured in an equirectangular frame at
    its own latitude band: a frame at the site's centroid is off east-west by several per cent a few degrees away."""
    out = np.empty(lon.shape[0], np.float64)
    band = np.floor(lat / BAND_DEG).astype(np.int64)
    for b in np.unique(band):
        idx = np.flatnonzero(band == b)
        poly = r.bands.get(int(b))
        kx = EARTH_M_PER_DEG * math.cos(math.radians((b + 0.5) * BAND_DEG))
        if poly is None:
            if len(r.bands) >= 64:  # a tall site: keep the cache bounded (a band is rebuilt in a millisecond or so)
                r.bands.clear()
            poly = to_local_metres(r.geometry, r.lon0, r.lat0, kx)
            shapely.prepare(poly)
            r.bands[int(b)] = poly
        x = wrap_lon(lon[idx] - r.lon0) * kx
        y = (lat[idx] - r.lat0) * EARTH_M_PER_DEG
        out[idx] = shapely.distance(poly, shapely.points(x, y))
    return out


def _signed_distance(geom, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance (local metres) from points to a polygonal geometry's edge, negative inside: an inside test
    plus the nearest boundary segment, in numpy, so no point objects are built (that was most of the cost of
    building an index). Worked in blocks of points and segments, so the temporaries stay a few MiB."""
    parts = [np.asarray(part.coords) for part in shapely.get_parts(shapely.boundary(geom))] \
        if geom.geom_type in ("Polygon", "MultiPolygon") else []
    if not parts:
        return shapely.distance(geom, shapely.points(x, y))
    a = np.concatenate([c[:-1, :2] for c in parts])
    b = np.concatenate([c[1:, :2] for c in parts])
    best = np.full(x.size, np.inf)
    chunk = 65_536
    for p in range(0, x.size, chunk):
        px, py = x[p:p + chunk, None], y[p:p + chunk, None]
        out = best[p:p + chunk]
        step = max(1, 1_000_000 // px.shape[0])
        for k in range(0, a.shape[0], step):
            ax, ay = a[k:k + step, 0][None, :], a[k:k + step, 1][None, :]
            dx, dy = b[k:k + step, 0][None, :] - ax, b[k:k + step, 1][None, :] - ay
            len2 = np.maximum(dx * dx + dy * dy, 1e-12)
            u = np.clip(((px - ax) * dx + (py - ay) * dy) / len2, 0.0, 1.0)
            ex, ey = ax + u * dx - px, ay + u * dy - py
            np.minimum(out, np.sqrt(ex * ex + ey * ey).min(axis=1), out=out)
    best[shapely.contains_xy(geom, x, y)] *= -1.0
    return best


def to_local_metres(geometry: Any, lon0: float, lat0: float, kx: float) -> Any:
    """A lon/lat geometry in equirectangular metres about (lon0, lat0), ``kx`` metres per degree east. Longitudes
    are taken the short way from lon0, so a site split at the antimeridian is one place, as positions are."""
    return shapely.transform(geometry, lambda c: np.column_stack(
        [wrap_lon(c[:, 0] - lon0) * kx, (c[:, 1] - lat0) * EARTH_M_PER_DEG]))


def wrap_lon(lon):
    """Longitudes (or longitude differences) into [-180, 180): across the antimeridian the short way."""
    return (lon + 180.0) % 360.0 - 180.0


def haversine_m(lon1, lat1, lon2, lat2):
    """Great-circle distance in metres (spherical Earth of radius ``EARTH_RADIUS_M``); numpy arrays or floats."""
    lon1, lat1, lon2, lat2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (lon1, lat1, lon2, lat2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


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
    jump_kn: float = 50.0  # a lone position this far off its neighbours' track (and over JUMP_M) is no place


JUMP_M = 4000.0  # ...nor is one closer than this (GNSS jitter over seconds between reports is no jump)


def lone_jumps(b: Batch, vstart: np.ndarray, jump_kn: float, ends: np.ndarray | None = None) -> np.ndarray:
    """Positions a ship could not have reached from the one before it nor left for the one after it (faster than
    ``jump_kn`` both ways, over ``JUMP_M``), where those two lie within reach of each other: a single spoofed or
    garbled fix. They say nothing of where the ship is, so the visit state passes over them (one fix 500 km off
    a moored ship had made two calls, each "departure seen"). A ship's first position of a batch has one
    neighbour only and is kept; so are runs of such positions (two transmitters on one MMSI).

    ``ends`` (each ship's last position of the batch, whose next fix lies in the next batch): passed over too
    when it could not have been reached from the one before it and that one was reached (not a run): the day
    batches of a scan had let a jump that ended a day close the call it broke off. When it was the first fix of
    a run the next batch shows, the state changes one fix later than a scan of both days at once would have it."""
    n = b.n
    out = np.zeros(n, bool)
    if n < 2:
        return out
    lon, lat = b.lon, b.lat
    # Steps of JUMP_M or more move at least 0.025 deg in latitude or longitude: only those are measured (a day's
    # millions of steps through the haversine had cost visits and gaps half their time again)
    dlon = np.abs(np.diff(lon))
    far = ((np.abs(np.diff(lat)) > 0.025) | (np.minimum(dlon, 360.0 - dlon) > 0.025)) & ~vstart[1:]

    def too_fast(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        d = haversine_m(lon[i], lat[i], lon[j], lat[j])
        return (d > JUMP_M) & (d / np.maximum(b.t[j] - b.t[i], 1) * US_PER_H / 1852.0 > jump_kn)

    if ends is not None:
        end = ends[(ends >= 1) & ~vstart[ends]]
        end = end[far[end - 1]]  # far from the one before
        if end.size:
            jumped = too_fast(end - 1, end)
            prev = end - 1
            has_prev = (prev >= 1) & ~vstart[np.maximum(prev, 0)]  # ... which had a fix before it too
            run = np.zeros(end.size, bool)
            k = np.flatnonzero(jumped & has_prev)
            if k.size:
                run[k] = far[prev[k] - 1] & too_fast(prev[k] - 1, prev[k])  # ... and was itself a jump: a run
            out[end[jumped & ~run]] = True
    mid = np.flatnonzero(far[:-1] & far[1:]) + 1  # far in and far out
    if mid.size == 0:
        return out

    both = np.zeros(n, bool)
    both[mid] = too_fast(mid - 1, mid) & too_fast(mid, mid + 1)
    lone = both.copy()  # ...with neighbours that are not so themselves (alternating transmitters make runs)
    lone[1:] &= ~both[:-1]
    lone[:-1] &= ~both[1:]
    cand = np.flatnonzero(lone)
    if cand.size:
        out[cand[~too_fast(cand - 1, cand + 1)]] = True  # the fixes either side agree with each other
    return out


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
    """What links one batch to the next: each vessel's last position and state (numpy arrays keyed like
    :class:`Batch`, sorted by MMSI), and its open visit."""

    rows: dict[str, np.ndarray] | None = None
    open: dict[int, dict] = field(default_factory=dict)


class Batch:
    """One batch as numpy arrays (mmsi, t in epoch microseconds, sog, nearest site and its distance, lon, lat),
    with the previous batch's last row of each vessel merged in front of that vessel's rows.

    Only seven narrow arrays are merged (the positions for the lone-jump test, :func:`lone_jumps`); sources and
    line numbers are looked up for the few rows that become evidence or gaps, so a day's strings are never copied.
    """

    def __init__(self, day: pl.DataFrame, carry: dict[str, np.ndarray] | None, index: SiteIndex):
        mmsi = day["mmsi"].to_numpy()
        if mmsi.size > 1 and not bool(np.all(mmsi[1:] >= mmsi[:-1])):
            day = day.sort("mmsi", "timestamp")
            mmsi = day["mmsi"].to_numpy()
        self.day = day
        lon, lat = day["lon"].to_numpy(), day["lat"].to_numpy()
        site, dist = index.lookup(lon, lat)
        arr = {"mmsi": mmsi, "t": day["timestamp"].dt.cast_time_unit("us").to_physical().to_numpy(),
               "sog": day["sog_kn"].to_numpy(), "site": site, "dist": dist, "lon": lon, "lat": lat}
        self.carry = carry if carry is not None and carry["mmsi"].size else None
        self.carry_pos = np.zeros(0, np.int64)
        if self.carry is not None:
            ins = np.searchsorted(mmsi, self.carry["mmsi"], side="left")  # a vessel's carried row goes first
            for k in arr:
                arr[k] = np.insert(arr[k], ins, self.carry[k])
            self.carry_pos = ins + np.arange(ins.size)
        self.mmsi, self.t, self.sog, self.site, self.dist, self.lon, self.lat = (
            arr[k] for k in ("mmsi", "t", "sog", "site", "dist", "lon", "lat"))
        self.n = self.mmsi.size

    def origin(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(is a carried row, row in the day or in the carry) of merged rows ``idx``."""
        idx = np.asarray(idx, dtype=np.int64)
        if self.carry is None:
            return np.zeros(idx.size, bool), idx
        j = np.searchsorted(self.carry_pos, idx, side="left")
        is_carry = (j < self.carry_pos.size) & (self.carry_pos[np.minimum(j, self.carry_pos.size - 1)] == idx)
        return is_carry, np.where(is_carry, j, idx - j)

    def lonlat(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.lon[idx], self.lat[idx]

    def refs(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(source file, line) of merged rows ``idx``."""
        c, o = self.origin(idx)
        src = np.empty(o.size, object)
        line = np.empty(o.size, np.int64)
        if (~c).any():
            part = self.day.select("source", "line")[o[~c]]
            src[~c] = part["source"].to_numpy()
            line[~c] = part["line"].to_numpy()
        if c.any():
            assert self.carry is not None  # rows from the carry exist only when there is one
            src[c] = self.carry["source"][o[c]]
            line[c] = self.carry["line"][o[c]]
        return src, line


def _empty_visits() -> pl.DataFrame:
    return pl.DataFrame(schema={
        "mmsi": pl.Int32, "site": pl.String, "start": pl.Datetime("us", "UTC"), "end": pl.Datetime("us", "UTC"),
        "positions": pl.Int64, "entry": pl.Boolean, "exit": pl.Boolean, "stop": pl.Boolean, "gap": pl.Boolean,
        "level": pl.Int8, "confidence": pl.Float64, "first_source": pl.String, "first_line": pl.Int64,
        "last_source": pl.String, "last_line": pl.Int64,
    })


def site_layers(sites: Mapping[str, Site], reach_m: float) -> list[dict[str, Site]]:
    """The sites in layers within which no two lie within ``2 * reach_m`` of each other (greedy colouring, sites
    in their given order). Each layer is scanned on its own: a position belongs to one site of a layer, so a
    berth inside its port, or a port beside an anchorage, each get their visits, whatever the watchlist's order
    (the nearest site had taken a position: the berth's visit went to the port listed first, and a ship that
    left a port for a site 1.1 km beyond its exit distance stayed "in" the port for two days)."""
    keys = list(sites)
    if len(keys) <= 1:
        return [dict(sites)]
    centres = [sites[k].centroid_lonlat for k in keys]
    # each site's cap of its radius plus 2 * reach_m, as a lon/lat box; a box past 180 deg has a copy 360 deg
    # over, so that sites either side of the antimeridian meet
    boxes, owner = [], []
    for i, (k, (lon0, lat0)) in enumerate(zip(keys, centres, strict=True)):
        r = site_radius_m(sites[k]) + 2 * reach_m
        dlat = r / EARTH_M_PER_DEG
        dlon = min(r / (EARTH_M_PER_DEG * max(math.cos(math.radians(min(abs(lat0) + dlat, 89.9))), 1e-6)), 180.0)
        for shift in (0.0, -360.0, 360.0):
            if shift == 0.0 or (lon0 + shift - dlon < 180.0 and lon0 + shift + dlon > -180.0):
                boxes.append(shapely.box(lon0 + shift - dlon, lat0 - dlat, lon0 + shift + dlon, lat0 + dlat))
                owner.append(i)
    tree = shapely.STRtree(boxes)
    first = {i: b for b, i in reversed(list(enumerate(owner)))}  # each site's own (unshifted) box
    layer_of = np.full(len(keys), -1)
    layers: list[dict[str, Site]] = []
    for i, k in enumerate(keys):
        rivals = sorted({owner[int(b)] for b in tree.query(boxes[first[i]])} - {i})
        rivals = [j for j in rivals if layer_of[j] >= 0]
        taken = set()
        for j in rivals:  # close enough by their boxes: ask the polygons themselves
            if _within(sites[k], sites[keys[j]], 2 * reach_m):
                taken.add(int(layer_of[j]))
        layer = next(n for n in range(len(layers) + 1) if n not in taken)
        if layer == len(layers):
            layers.append({})
        layers[layer][k] = sites[k]
        layer_of[i] = layer
    return layers


def site_places(sites: Mapping[str, Site], keys: Iterable[str], reach_m: float = 2000.0) -> dict[str, str]:
    """Each of ``keys`` -> the first key of its place: sites within ``2 * reach_m`` of each other (a berth and
    its port, an anchorage beside it; by chains) are one place, where one ship's visits that overlap in time are
    one call. A key without geometry is a place of its own."""
    keys = list(dict.fromkeys(keys))
    place = {k: k for k in keys}

    def root(k: str) -> str:
        while place[k] != k:
            k = place[k]
        return k

    known = [k for k in keys if k in sites]
    for i, a in enumerate(known):
        for b in known[i + 1:]:
            if root(a) != root(b) and _within(sites[a], sites[b], 2 * reach_m):
                place[root(b)] = root(a)
    return {k: root(k) for k in keys}


def _within(a: Site, b: Site, metres: float) -> bool:
    """Whether two sites' polygons lie within ``metres`` of each other (in local metres about ``a``'s centre)."""
    lon0, lat0 = a.centroid_lonlat
    kx = EARTH_M_PER_DEG * math.cos(math.radians(lat0))
    return bool(to_local_metres(a.geometry, lon0, lat0, kx).distance(to_local_metres(b.geometry, lon0, lat0, kx))
                <= metres)


def _union_grid(indexes: list[SiteIndex]) -> SiteIndex:
    """A candidate grid (``candidates`` only: 0 where any of ``indexes`` has a candidate, else -1) over several
    site indexes, in one latitude band."""
    out = SiteIndex.__new__(SiteIndex)
    out.row0 = min(ix.row0 for ix in indexes)
    top = max(ix.row0 + ix.grid.shape[0] for ix in indexes)
    out.grid = np.full((top - out.row0, indexes[0].grid.shape[1]), -1, np.int16)
    for ix in indexes:
        rows = slice(ix.row0 - out.row0, ix.row0 - out.row0 + ix.grid.shape[0])
        out.grid[rows][ix.grid != -1] = 0
    return out


class VisitScanner:
    """Feed it batches (days) of positions sorted by (mmsi, timestamp), then ``finish()``; collects visits.

    The sites are scanned in layers (:func:`site_layers`) of sites that cannot compete for a position; with the
    usual watchlist of separate ports that is one layer, one pass."""

    def __init__(self, sites: Mapping[str, Site], config: VisitConfig | None = None, gap_detector=None):
        self.config = config or VisitConfig()
        self.reach = max(self.config.exit_m, self.config.entry_m)  # the farthest a position may be from its site
        self.layers = [_LayerScanner(layer, self.config, gap_detector if i == 0 else None)
                       for i, layer in enumerate(site_layers(sites, self.reach) if sites else [{}])]
        if gap_detector is not None and len(self.layers) > 1:  # a gap's nearest site is of all the sites
            gap_detector.layer_indexes = [layer.index for layer in self.layers]
        if len(self.layers) > 1:  # one grid of the extra layers' sites: which positions any of them may want
            self._extra = _union_grid([layer.index for layer in self.layers[1:]])

    @property
    def positions(self) -> int:
        return self.layers[0].positions

    def feed(self, day: pl.DataFrame) -> None:
        self.layers[0].feed(day)
        if len(self.layers) == 1 or day.height == 0:
            return
        # The other layers (a port's berths) scan only the ships that come near their sites or are in one of them:
        # each layer scanning every position had made 40 berths of one port 60 times slower. The others' last
        # positions still go to the layer's carry (outside, moving or not), so a ship's first day near the sites
        # starts from where it really was.
        if not bool(np.all(day["mmsi"].to_numpy()[1:] >= day["mmsi"].to_numpy()[:-1])):
            day = day.sort("mmsi", "timestamp")
        mmsi = day["mmsi"].to_numpy()
        lon, lat = day["lon"].to_numpy(), day["lat"].to_numpy()
        last = np.flatnonzero(np.append(mmsi[1:] != mmsi[:-1], True))
        last_rows = day[last]  # each ship's last position, for the layers that do not scan it
        # and its stop state then: its last speed under the stop or over the restart speed (-1: none that day)
        sog = day["sog_kn"].to_numpy()
        with np.errstate(invalid="ignore"):
            decisive = np.flatnonzero((sog < self.config.stop_kn) | (sog > self.config.restart_kn))
        pos = np.full(mmsi.size, -1, np.int64)
        pos[decisive] = decisive
        np.maximum.accumulate(pos, out=pos)
        first = np.concatenate([[0], last[:-1] + 1])
        at = pos[last]
        # a silence over split_h resets it (the full scan starts such a ship "not stopped" when its speed says
        # neither): the last reset of each ship's day, and its first time, against the carried one
        t = day["timestamp"].dt.cast_time_unit("us").to_physical().to_numpy()
        gap = np.zeros(mmsi.size, bool)
        gap[1:] = (np.diff(t) > self.config.split_h * US_PER_H) & (mmsi[1:] == mmsi[:-1])
        rpos = np.where(gap, np.arange(mmsi.size), -1)
        np.maximum.accumulate(rpos, out=rpos)
        reset_at = rpos[last]
        last_stop = np.where((at >= first) & (at >= reset_at),
                             (sog[np.maximum(at, 0)] < self.config.stop_kn).astype(np.int8),
                             np.where(reset_at >= first, 0, -1)).astype(np.int8)
        first_t = t[first]
        # the positions in a grid cell of any extra layer's sites, found once; each layer then measures those
        # alone, and takes the ships that came within reach of one of its sites
        sub = np.flatnonzero(self._extra.candidates(lon, lat) != -1)
        for layer in self.layers[1:]:
            site, dist = layer.index.lookup(lon[sub], lat[sub])
            near = np.unique(mmsi[sub][(site >= 0) & (dist <= self.reach)])
            rows = layer.carry.rows
            if rows is not None and rows["mmsi"].size:
                near = np.union1d(near, rows["mmsi"][rows["state"] >= 0])  # in a site: its exit is to be seen
            if near.size * 2 > last.size:  # most ships: scan them all
                layer.feed(day)
                continue
            a, b = np.searchsorted(mmsi, near, "left"), np.searchsorted(mmsi, near, "right")  # rows by ship
            take = np.concatenate([np.arange(i, j) for i, j in zip(a, b, strict=True)]) if near.size else a
            layer.feed(day[take] if take.size else day.clear())
            far = ~np.isin(mmsi[last], near)
            if far.any():
                layer.carry_outside(last_rows.filter(pl.Series(far)), last_stop[far], first_t[far])

    def finish(self) -> pl.DataFrame:
        """Close the visits still open (exit not seen) and return every visit as a frame (see ``_empty_visits``)."""
        frames = [layer.finish() for layer in self.layers]
        return frames[0] if len(frames) == 1 else pl.concat(frames).sort("mmsi", "start", "site")


class _LayerScanner:
    """The visit state machine over one layer of sites (see :class:`VisitScanner`)."""

    def __init__(self, sites: Mapping[str, Site], config: VisitConfig, gap_detector=None):
        self.config = config
        self.index = SiteIndex(sites, max(self.config.exit_m, self.config.entry_m), self.config.cell_m)
        self.carry = Carry(None, {})
        self.gap_detector = gap_detector  # optional: called with (frame, vessel_start, dt_h) on every batch
        self._out: list[dict] = []
        self.positions = 0

    def carry_outside(self, rows: pl.DataFrame, stops: np.ndarray, first_t: np.ndarray) -> None:
        """Carry ``rows`` (ships' last positions, far from this layer's sites, so outside them) as those ships'
        last state, in place of what was carried for them; ``stops``: each one's stop state from its day's last
        decisive speed or reset, -1 for neither (then the state carried before stays, as the full scan keeps it,
        unless the day's first position, ``first_t``, comes over split_h after the carried one: a reset)."""
        n = rows.height
        mmsi = rows["mmsi"].to_numpy()
        old = self.carry.rows
        stop = np.where(stops >= 0, stops, 0).astype(np.int8)
        if old is not None and old["mmsi"].size and (stops < 0).any():
            j = np.clip(np.searchsorted(old["mmsi"], mmsi), 0, old["mmsi"].size - 1)
            had = (old["mmsi"][j] == mmsi) & (stops < 0) & (first_t - old["t"][j] <= self.config.split_h * US_PER_H)
            stop[had] = old["stop"][j[had]]
        new = {"mmsi": mmsi, "t": rows["timestamp"].dt.cast_time_unit("us").to_physical().to_numpy(),
               "sog": rows["sog_kn"].to_numpy(), "site": np.full(n, -1, np.int16),
               "dist": np.full(n, np.inf, np.float32), "lon": rows["lon"].to_numpy(), "lat": rows["lat"].to_numpy(),
               "state": np.full(n, -1, np.int16), "stop": stop,
               "source": rows["source"].to_numpy().astype(object), "line": rows["line"].to_numpy()}
        if old is None or old["mmsi"].size == 0:
            self.carry.rows = new
            return
        keep = ~np.isin(old["mmsi"], new["mmsi"])
        merged = {k: np.concatenate([np.asarray(old[k])[keep], np.asarray(new[k]).astype(np.asarray(old[k]).dtype)])
                  for k in old}
        order = np.argsort(merged["mmsi"], kind="stable")
        self.carry.rows = {k: v[order] for k, v in merged.items()}

    def feed(self, day: pl.DataFrame) -> None:
        cfg = self.config
        self.positions += day.height
        if day.height == 0:
            return
        b = Batch(day, self.carry.rows, self.index)
        mmsi, t, n, site, dist = b.mmsi, b.t, b.n, b.site, b.dist
        vstart = np.ones(n, bool)
        vstart[1:] = mmsi[1:] != mmsi[:-1]
        dt_h = np.empty(n)
        dt_h[0] = np.inf
        np.multiply(np.diff(t), 1.0 / US_PER_H, out=dt_h[1:])
        dt_h[vstart] = np.inf
        reset = dt_h > cfg.split_h
        ev = np.where(dist <= cfg.entry_m, site, np.where(dist > cfg.exit_m, -1, NONE)).astype(np.int16)
        last = np.flatnonzero(np.append(vstart[1:], True))  # each ship's last row: carried to the next batch
        jumps = lone_jumps(b, vstart, cfg.jump_kn, ends=last)
        ev[jumps] = NONE  # a lone impossible fix moves the ship nowhere (nor ends a stop, below)
        if b.carry is not None:
            ev[b.carry_pos] = b.carry["state"]
        ev[(vstart | reset) & (ev == NONE)] = -1
        # Between the entry and exit distances of its nearest site a position keeps the state only when that is
        # this site: the sites of a layer lie over twice the exit distance apart, so a ship in another's band is
        # beyond the exit of the one it was in (it had stayed "in" port A while waiting 1.5 km off anchorage B,
        # 4.5 km from A). A second pass: the band positions after another site's state become exits.
        band = (ev == NONE) & ~jumps
        if band.any():
            before = _ffill(ev)
            ev[band & (before != site) & (before >= 0)] = -1
        state = _ffill(ev)
        sog = b.sog
        sev = np.where(sog < cfg.stop_kn, 1, np.where(sog > cfg.restart_kn, 0, NONE)).astype(np.int8)
        sev[np.isnan(sog)] = NONE
        sev[jumps] = NONE
        if b.carry is not None:
            sev[b.carry_pos] = b.carry["stop"]
        sev[(vstart | reset) & (sev == NONE)] = 0
        stop = _ffill(sev)
        if self.gap_detector is not None:
            self.gap_detector.feed(b, vstart, dt_h, site, dist)
        self._runs(b, state, stop, vstart, dt_h, reset, final=False)
        src, line = b.refs(last)
        lon, lat = b.lonlat(last)
        self.carry.rows = {"mmsi": mmsi[last], "t": t[last], "sog": b.sog[last], "site": site[last],
                           "dist": dist[last], "lon": lon, "lat": lat, "state": state[last], "stop": stop[last],
                           "source": src, "line": line}

    def _runs(self, b: Batch, state, stop, vstart, dt_h, reset, final: bool) -> None:
        cfg = self.config
        mmsi, t = b.mmsi, b.t
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
        carry_start = b.origin(starts)[0]
        s_src, s_line = b.refs(starts)
        e_src, e_line = b.refs(ends)
        opened = self.carry.open
        for k in range(starts.size):
            s, e = int(starts[k]), int(ends[k])
            key = int(mmsi[s])
            rec: dict[str, Any] = {"mmsi": key, "site": int(state[s]), "start": int(t[s]), "end": int(t[e]),
                   "positions": e - s + 1, "entry": bool(entry[k]), "exit": bool(exit_[k]), "stop": bool(stp[k]),
                   "gap": bool(gap[k]), "first": (-1, (s_src[k], int(s_line[k]))),
                   "last": (-1, (e_src[k], int(e_line[k])))}
            if carry_start[k] and key in opened:
                old = opened.pop(key)
                rec.update(start=old["start"], entry=old["entry"], positions=old["positions"] + e - s,
                           stop=old["stop"] or rec["stop"], gap=old["gap"] or rec["gap"], first=old["first"])
            if is_open[k]:
                opened[key] = rec
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
        frame = frame.filter(pl.col("level") >= self.config.min_level).sort("mmsi", "start", "site")
        return frame.select(_empty_visits().columns)


def port_visits(
    batches: Iterable[pl.DataFrame], sites: Mapping[str, Site], config: VisitConfig | None = None
) -> pl.DataFrame:
    """Port visits from batches (e.g. days) of positions, each sorted by (mmsi, timestamp), in time order."""
    scanner = VisitScanner(sites, config)
    for batch in batches:
        scanner.feed(batch)
    return scanner.finish()
