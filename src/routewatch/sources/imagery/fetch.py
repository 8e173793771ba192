"""Fetch only the site window of each scene's COGs, with a cache and resume after interruption.

Layout under the workspace's ``scenes/`` folder, one folder per (scene, site)::

    scenes/<scene id>/<band>.tif        the window, a COG (written whole, then renamed into place)
    scenes/<scene id>/<band>.partial/   strips already read (``strip-00000.npy``) while a band is in flight
    scenes/<scene id>/scene.json        written last: its presence means the scene is complete (cache hit)

Reads go through GDAL's ``/vsicurl/`` (HTTP range requests of the COG tiles covering the window, never the whole
file). A killed or failed download leaves finished strips behind; the next run reads only the missing strips.
A scene already complete is not touched again, so a second fetch makes no data request at all.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.windows import Window, from_bounds
from shapely.geometry.base import BaseGeometry

from routewatch.sources.imagery.cog import write_cog
from routewatch.sources.imagery.geo import GridGeoref, site_window
from routewatch.sources.imagery.raster import georef_of

GDAL_HTTP_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no directory listing requests
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "VSI_CACHE": "FALSE",
}


class FetchError(RuntimeError):
    """A band could not be read; the message names the URL (without its token)."""


def _public(href: str) -> str:
    return href.split("?", 1)[0]


def _gdal_path(href: str) -> str:
    return f"/vsicurl/{href}" if href.startswith(("http://", "https://")) else href


@dataclass
class TargetGrid:
    """The window every band of a scene is read onto: defined by the first (reference) band."""

    window: Window
    georef: GridGeoref
    source_shape: tuple[int, int]
    site_window: Window | None = None  # the site's own window when ``window`` reaches further (along track)


@dataclass
class BandFetch:
    """Outcome of one band: the COG path and how many strips were read now versus found done."""

    path: Path
    strips_read: int
    strips_reused: int


def _write_npy_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, array)
    os.replace(tmp, path)


def reference_grid(href: str, geometry: BaseGeometry, pad_px: int = 32, along_track_m: float = 0.0) -> TargetGrid:
    """Open the reference band and find the pixel window over the site (GCPs win over an affine); an image in
    radar geometry (located by GCPs, rows along track) is read ``along_track_m`` further up and down its rows."""
    try:
        with rasterio.Env(**GDAL_HTTP_ENV), rasterio.open(_gdal_path(href)) as ds:
            georef = georef_of(ds, _public(href))
            pad_rows = 0
            if along_track_m > 0 and georef.uses_gcps:
                pad_rows = math.ceil(along_track_m / max(georef.ground_pixel_sizes_m()[0], 1e-6))
            win = site_window(georef, geometry, pad_px, pad_rows)
            own = site_window(georef, geometry, pad_px) if pad_rows else win
            shape = (ds.height, ds.width)
    except (RasterioError, OSError) as exc:
        raise FetchError(f"{_public(href)}: cannot open: {exc}") from exc
    if win is None:
        raise FetchError(f"{_public(href)}: the site does not intersect this image")
    return TargetGrid(win, georef.window(win), shape, own)


def fetch_band(href: str, grid: TargetGrid, dest: Path, *, strip_rows: int = 256, resampling: str = "nearest",
               on_strip: Callable[[int], None] | None = None) -> BandFetch:
    """Read ``grid``'s window of one asset into ``dest`` (a COG), strip by strip, resuming finished strips."""
    partial = dest.with_suffix(".partial")
    if dest.exists():  # written atomically; strips left by a run killed just after writing it are clutter
        whole = grid is None
        if not whole:
            try:
                with rasterio.open(dest) as done:
                    whole = (done.height, done.width) == (int(grid.window.height), int(grid.window.width))
            except RasterioError:  # not a raster after all: fetched again
                whole = False
        if whole:
            shutil.rmtree(partial, ignore_errors=True)
            return BandFetch(dest, 0, 0)
        # a band finished on another window (a fetch killed before the window's rule changed, resumed after it):
        # fetched again, or the scene's bands would not line up
        dest.unlink(missing_ok=True)  # another run resuming the same folder may have got there first
    partial.mkdir(parents=True, exist_ok=True)
    marker = partial / "source.json"
    key = {"href": _public(href), "window": [grid.window.col_off, grid.window.row_off, grid.window.width,
                                             grid.window.height], "strip_rows": strip_rows}
    if marker.exists() and json.loads(marker.read_text()) != key:
        shutil.rmtree(partial)  # a different request was in flight: start over
        partial.mkdir(parents=True)
    marker.write_text(json.dumps(key))
    h, w = int(grid.window.height), int(grid.window.width)
    n = (h + strip_rows - 1) // strip_rows
    todo = [i for i in range(n) if not (partial / f"strip-{i:05d}.npy").exists()]
    reused = n - len(todo)
    if on_strip:
        for _ in range(reused):
            on_strip(1)
    nodata = None
    dtype = None
    try:
        with rasterio.Env(**GDAL_HTTP_ENV), rasterio.open(_gdal_path(href)) as ds:
            nodata, dtype = ds.nodata, ds.dtypes[0]
            same_grid = (ds.height, ds.width) == grid.source_shape
            for i in todo:
                r0 = i * strip_rows
                rows = min(strip_rows, h - r0)
                if same_grid:
                    win = Window(grid.window.col_off, grid.window.row_off + r0, w, rows)
                    arr = ds.read(1, window=win)
                else:  # a coarser layer (Sentinel-2 SCL at 20 m): read the same ground onto the 10 m grid
                    if grid.georef.transform is None:
                        raise FetchError(f"{_public(href)}: size differs from the reference band and the grid "
                                         "is GCP-located; cannot align it")
                    t = grid.georef.transform
                    x0, y0 = t @ (0, r0)
                    x1, y1 = t @ (w, r0 + rows)
                    win = from_bounds(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1), ds.transform)
                    arr = ds.read(1, window=win, out_shape=(rows, w), resampling=Resampling[resampling],
                                  boundless=True, fill_value=0)
                _write_npy_atomic(partial / f"strip-{i:05d}.npy", arr)
                if on_strip:
                    on_strip(1)
    except FetchError:
        raise
    except (RasterioError, OSError) as exc:
        raise FetchError(f"{_public(href)}: read failed (the finished strips are kept; run again to resume): "
                         f"{exc}") from exc
    strips = [np.load(partial / f"strip-{i:05d}.npy") for i in range(n)]
    data = np.concatenate(strips, axis=0)
    g = grid.georef
    if dtype is not None and data.dtype != np.dtype(dtype):
        data = data.astype(dtype)
    write_cog(dest, [data], transform=g.transform, crs=g.crs, gcps=g.gcps, gcps_crs=g.gcps_crs, nodata=nodata)
    shutil.rmtree(partial, ignore_errors=True)
    return BandFetch(dest, len(todo), reused)


@dataclass
class SceneFetch:
    """A scene's cached window: band files, the manifest, and whether the cache already held it."""

    folder: Path
    bands: dict[str, Path]
    manifest: dict[str, Any]
    cached: bool
    strips_read: int = 0
    strips_reused: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def manifest_path(folder: Path) -> Path:
    return folder / "scene.json"


def read_manifest(folder: Path) -> dict[str, Any] | None:
    p = manifest_path(folder)
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def fetch_scene_window(hrefs: dict[str, str], geometry: BaseGeometry, folder: Path, manifest: dict[str, Any], *,
                       strip_rows: int = 256, on_strip: Callable[[int], None] | None = None,
                       on_plan: Callable[[int], None] | None = None, along_track_m: float = 0.0) -> SceneFetch:
    """Fetch every band's site window into ``folder`` (reference band first), then write the manifest last.
    ``along_track_m``: how much further along track a radar-geometry window reaches (see :func:`reference_grid`)."""
    existing = read_manifest(folder)
    if existing is not None:
        bands = {b: folder / f"{b}.tif" for b in existing.get("bands", {})}
        if all(p.exists() for p in bands.values()):
            return SceneFetch(folder, bands, existing, cached=True)
    folder.mkdir(parents=True, exist_ok=True)
    order = sorted(hrefs, key=lambda b: (b == "scl", b))  # a 10 m band first; SCL is resampled onto it
    grid = reference_grid(hrefs[order[0]], geometry, along_track_m=along_track_m)
    n_strips = (int(grid.window.height) + strip_rows - 1) // strip_rows
    if on_plan:
        on_plan(n_strips * len(order))
    out: dict[str, Path] = {}
    read = reused = 0
    for band in order:
        r = fetch_band(hrefs[band], grid, folder / f"{band}.tif", strip_rows=strip_rows, on_strip=on_strip)
        out[band] = r.path
        read += r.strips_read
        reused += r.strips_reused
    full = {**manifest, "bands": {b: str(p.name) for b, p in out.items()},
            "window": [grid.window.col_off, grid.window.row_off, grid.window.width, grid.window.height],
            "geolocation": "gcps" if grid.georef.uses_gcps else "affine",
            "pixel_size_m": grid.georef.ground_pixel_size_m(),
            # the site's own window: a Sentinel-1 window's reach along track is for ambiguity checks, not a claim
            # to cover the sites around it (a neighbour had been processed from it, its own window dropped)
            "footprint_wkt": (grid.georef.window(Window(grid.site_window.col_off - grid.window.col_off,
                                                         grid.site_window.row_off - grid.window.row_off,
                                                         grid.site_window.width, grid.site_window.height))
                              if grid.site_window is not None else grid.georef).footprint().wkt}
    tmp = folder / ".scene.json.tmp"
    tmp.write_text(json.dumps(full, indent=1, default=str))
    os.replace(tmp, manifest_path(folder))
    return SceneFetch(folder, out, full, cached=False, strips_read=read, strips_reused=reused)
