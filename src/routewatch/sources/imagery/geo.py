"""Georeferencing of image grids: affine or ground control points, ground pixel size, site windows.

A grid is located either by an affine transform in a CRS (GeoTIFFs, COGs, our cached windows) or by ground control
points (Sentinel-1 GRD in its own slant geometry, whose advertised affine must not be trusted). ``GridGeoref``
hides the difference so the water mask, the usable fraction and the lon/lat of detections use one code path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS, Geod, Transformer
from rasterio.control import GroundControlPoint
from rasterio.features import rasterize
from rasterio.transform import GCPTransformer
from rasterio.windows import Window
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

WGS84 = CRS.from_epsg(4326)
_GEOD = Geod(ellps="WGS84")


def _to_wgs84(crs: Any) -> Transformer | None:
    src = CRS.from_user_input(crs)
    if src.equals(WGS84):
        return None
    return Transformer.from_crs(src, WGS84, always_xy=True)


def wrap_to(lon: np.ndarray, centre: float) -> np.ndarray:
    """Longitudes within 180 deg of ``centre`` (a geometry's vertices kept together across the antimeridian)."""
    return centre + (np.asarray(lon, dtype=float) - centre + 180.0) % 360.0 - 180.0


def _from_wgs84(crs: Any) -> Transformer | None:
    dst = CRS.from_user_input(crs)
    if dst.equals(WGS84):
        return None
    return Transformer.from_crs(WGS84, dst, always_xy=True)


def _split_at_antimeridian(poly: BaseGeometry) -> BaseGeometry:
    """A lon/lat outline whose longitudes run on past 180 deg (unwrapped) as its parts either side of the
    antimeridian, in [-180, 180]: one polygon spanning the whole globe instead would meet nothing it covers."""
    from shapely import affinity
    from shapely.geometry import box

    minx, _, maxx, _ = poly.bounds
    if minx >= -180.0 and maxx <= 180.0:
        return poly
    parts = []
    for k in (-1, 0, 1):  # the outline shifted by -360, 0 and +360 degrees, each cut to the map
        part = affinity.translate(poly, xoff=360.0 * k).intersection(box(-180.0, -90.0, 180.0, 90.0))
        # the areas only: a cut along the map's edge also leaves lines and points
        parts += [g for g in getattr(part, "geoms", [part]) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts)


@dataclass
class GridGeoref:
    """Where the pixels of an array lie on Earth: ``transform`` + ``crs``, or ``gcps`` (+ their CRS).

    Pixel (row, col) = (0, 0) is the upper-left corner of the first pixel (rasterio convention); detections give
    centres as ``row + 0.5``. When GCPs are present they win over any affine (Sentinel-1 GRD).
    """

    shape: tuple[int, int]
    transform: Affine | None = None
    crs: CRS | None = None
    gcps: list[GroundControlPoint] | None = None
    gcps_crs: CRS | None = None
    _gcp_tr: GCPTransformer | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.gcps:
            self._gcp_tr = GCPTransformer(self.gcps)
        elif self.transform is None or self.crs is None:
            raise ValueError("grid has neither an affine transform with a CRS nor ground control points")

    @property
    def uses_gcps(self) -> bool:
        return self._gcp_tr is not None

    def pixel_to_lonlat(self, rows: Sequence[float] | np.ndarray, cols: Sequence[float] | np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Map pixel coordinates (corner convention: add 0.5 for centres) to WGS84 lon/lat degrees."""
        r = np.atleast_1d(np.asarray(rows, dtype=float))
        c = np.atleast_1d(np.asarray(cols, dtype=float))
        if self._gcp_tr is not None:
            xs, ys = self._gcp_tr.xy(r, c, offset="ul")
            crs = self.gcps_crs or WGS84
        else:
            assert self.transform is not None
            t = self.transform
            xs = t.c + t.a * c + t.b * r
            ys = t.f + t.d * c + t.e * r
            crs = self.crs
        xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
        tr = _to_wgs84(crs)
        lon, lat = (xs, ys) if tr is None else tr.transform(xs, ys)
        # a lon/lat grid may run past 180 deg (179.98 to 180.03, or 0 to 360): longitudes come back in [-180, 180)
        lon = np.asarray(lon, dtype=float)
        return np.where(np.abs(lon) > 180.0, (lon + 180.0) % 360.0 - 180.0, lon), np.asarray(lat, dtype=float)

    def lonlat_to_pixel(self, lons: np.ndarray, lats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of :meth:`pixel_to_lonlat`: fractional (row, col) in corner convention."""
        lons = np.atleast_1d(np.asarray(lons, dtype=float))
        lats = np.atleast_1d(np.asarray(lats, dtype=float))
        crs = (self.gcps_crs or WGS84) if self._gcp_tr is not None else self.crs
        tr = _from_wgs84(crs)
        xs, ys = (lons, lats) if tr is None else tr.transform(lons, lats)
        if self._gcp_tr is not None:
            rows, cols = self._gcp_tr.rowcol(np.asarray(xs), np.asarray(ys), op=lambda v: v)
            return np.asarray(rows, dtype=float), np.asarray(cols, dtype=float)
        assert self.transform is not None
        if tr is None or CRS.from_user_input(crs).is_geographic:
            # a lon/lat grid that runs past 180 deg: a site at 179.99 W is at 180.01 on it. One turn for all the
            # points asked (those of one geometry): shifted one by one, a polygon across the meridian opposite the
            # grid's centre was torn into one spanning the grid
            h, w = self.shape
            cx = self.transform.c + self.transform.a * w / 2 + self.transform.b * h / 2
            x = np.asarray(xs, dtype=float)
            if x.size:
                mean = math.degrees(math.atan2(np.sin(np.radians(x)).mean(), np.cos(np.radians(x)).mean()))
                together = wrap_to(x, mean)
                if np.ptp(together) < 180.0:  # one place (a site): one turn
                    xs = together + 360.0 * round((cx - mean) / 360.0)
                else:  # points all over a global grid: each its own
                    xs = x + 360.0 * np.round((cx - x) / 360.0)
        inv = ~self.transform
        cols = inv.a * np.asarray(xs) + inv.b * np.asarray(ys) + inv.c
        rows = inv.d * np.asarray(xs) + inv.e * np.asarray(ys) + inv.f
        return np.asarray(rows, dtype=float), np.asarray(cols, dtype=float)

    def ground_pixel_size_m(self) -> float:
        """Mean ground size of a pixel near the grid centre, in metres (geodesic; so Web Mercator is corrected)."""
        dy, dx = self.ground_pixel_sizes_m()
        return float(np.sqrt(dx * dy))

    def ground_pixel_sizes_m(self) -> tuple[float, float]:
        """Ground length of one row step and one column step near the grid centre, in metres: they differ in a
        CRS that is not conformal (a lon/lat grid at 60 N: 11 m by 5.6 m)."""
        h, w = self.shape
        r0, c0 = h / 2.0, w / 2.0
        lon, lat = self.pixel_to_lonlat([r0, r0, r0 + 1.0], [c0, c0 + 1.0, c0])
        _, _, dx = _GEOD.inv(lon[0], lat[0], lon[1], lat[1])
        _, _, dy = _GEOD.inv(lon[0], lat[0], lon[2], lat[2])
        return float(abs(dy)), float(abs(dx))

    def footprint(self) -> BaseGeometry:
        """The grid outline as a WGS84 polygon (edges sampled so that curved mappings stay close)."""
        from shapely.geometry import Polygon

        h, w = self.shape
        n = 8
        top = [(0.0, w * i / n) for i in range(n)]
        right = [(h * i / n, float(w)) for i in range(n)]
        bottom = [(float(h), w * (n - i) / n) for i in range(n)]
        left = [(h * (n - i) / n, 0.0) for i in range(n)]
        pts = top + right + bottom + left
        lon, lat = self.pixel_to_lonlat([p[0] for p in pts], [p[1] for p in pts])
        ring = np.unwrap(np.append(lon, lon[0]), period=360.0)
        if abs(ring[-1] - ring[0]) > 180.0:  # the outline winds around a pole (a polar stereographic scene over
            # it): closed through that pole, not across the globe (it had made a band of latitudes with the pole
            # and everything near it left out, and no look of a site there)
            pole = 90.0 if np.mean(lat) > 0 else -90.0
            closed = [*zip(ring, np.append(lat, lat[0]), strict=True), (ring[-1], pole), (ring[0], pole)]
            return _split_at_antimeridian(Polygon(closed).buffer(0))
        return _split_at_antimeridian(Polygon(zip(ring[:-1], lat, strict=True)).buffer(0))

    def polygonize(self, mask: np.ndarray) -> BaseGeometry:
        """The WGS84 outline of a boolean pixel mask (inverse of :meth:`rasterize`; staircase edges simplified by
        half a pixel)."""
        from rasterio.features import shapes
        from scipy import ndimage
        from shapely.geometry import shape as to_shape

        m = np.asarray(mask, dtype=bool).copy()
        # speckle (a few pixels of no-data in the data, or of data in the no-data) would make an outline of
        # hundreds of thousands of vertices: holes and islands under 100 pixels are filled and dropped
        for target in (False, True):
            lab, n = ndimage.label(m == target)
            if n:
                small = np.bincount(lab.ravel(), minlength=n + 1) < 100
                small[0] = False
                m[small[lab]] = not target
        parts = [to_shape(g) for g, v in shapes(m.astype(np.uint8), mask=m, transform=Affine.identity()) if v]
        if not parts:
            return shapely.geometry.Polygon()
        pix = shapely.union_all(parts).simplify(0.5)
        h, w = self.shape
        corner_lon, _ = self.pixel_to_lonlat([0.0, 0.0, float(h), float(h)], [0.0, float(w), 0.0, float(w)])
        across = float(np.ptp(corner_lon)) > 180.0  # the grid crosses the antimeridian

        def to_lonlat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            lon, lat = self.pixel_to_lonlat(y, x)  # pixel space: x = col, y = row
            return (np.where(lon < 0, lon + 360.0, lon) if across else lon), lat

        out = shapely.transform(pix, to_lonlat, interleaved=False)
        return _split_at_antimeridian(out) if across else out

    def rasterize(self, geometry_wgs84: BaseGeometry | None) -> np.ndarray:
        """Boolean mask of the pixels whose centre lies inside a WGS84 geometry."""
        h, w = self.shape
        if geometry_wgs84 is None or geometry_wgs84.is_empty:
            return np.zeros((h, w), dtype=bool)

        def to_pixel(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            rows, cols = self.lonlat_to_pixel(x, y)
            return cols, rows  # pixel space: x = col, y = row

        # part by part: each part is one place on a lon/lat grid (see lonlat_to_pixel), so the two halves of a
        # site split at 180 deg land at the two edges of a global grid
        parts = [shapely.transform(part, to_pixel, interleaved=False) for part in shapely.get_parts(geometry_wgs84)]
        parts = [pt for pt in parts if not pt.is_empty]
        if not parts:
            return np.zeros((h, w), dtype=bool)
        out = rasterize([(mapping(pt), 1) for pt in parts], out_shape=(h, w), transform=Affine.identity(), fill=0,
                        dtype="uint8")
        return out.astype(bool)

    def window(self, window: Window) -> GridGeoref:
        """The georeference of a sub-window (GCPs shifted into the window's pixel frame)."""
        shape = (int(window.height), int(window.width))
        if self.gcps:
            r0, c0 = float(window.row_off), float(window.col_off)
            shifted = [GroundControlPoint(row=g.row - r0, col=g.col - c0, x=g.x, y=g.y, z=g.z, id=g.id)
                       for g in self.gcps]
            return GridGeoref(shape, gcps=shifted, gcps_crs=self.gcps_crs)
        assert self.transform is not None
        from rasterio.windows import transform as window_transform

        return GridGeoref(shape, transform=window_transform(window, self.transform), crs=self.crs)


def site_window(grid: GridGeoref, geometry_wgs84: BaseGeometry, pad_px: int = 16, pad_rows: int = 0
                ) -> Window | None:
    """The pixel window (clipped to the grid, padded; rows by ``pad_rows`` more) that covers a WGS84 geometry, or
    None when disjoint."""
    minx, miny, maxx, maxy = geometry_wgs84.bounds
    n = 16
    xs = np.concatenate([np.linspace(minx, maxx, n)] * 2 + [np.full(n, minx), np.full(n, maxx)])
    ys = np.concatenate([np.full(n, miny), np.full(n, maxy)] + [np.linspace(miny, maxy, n)] * 2)
    rows, cols = grid.lonlat_to_pixel(xs, ys)
    if not (np.all(np.isfinite(rows)) and np.all(np.isfinite(cols))):
        return None
    h, w = grid.shape
    r0 = max(int(np.floor(rows.min())) - pad_px - pad_rows, 0)
    r1 = min(int(np.ceil(rows.max())) + pad_px + pad_rows, h)
    c0 = max(int(np.floor(cols.min())) - pad_px, 0)
    c1 = min(int(np.ceil(cols.max())) + pad_px, w)
    if r1 <= r0 or c1 <= c0:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)
