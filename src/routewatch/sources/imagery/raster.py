"""Read a stored scene's pixels over a site: bands, validity, cloud classes and the georeference.

A stored ``model.Scene`` names its files in ``attributes``::

    kind          "sar" or "optical"
    bands         {"blue": {"path": ..., "index": 1}, ...}   (SAR: one band such as "vv", "hh" or "sar")
    scl           {"path": ..., "index": 1}                  Sentinel-2 scene classification, optional
    nodata        the no-data value, optional
    geolocation   "gcps" to locate by ground control points only (Sentinel-1 GRD)

Every error names the file that caused it (:class:`SceneReadError`), so a bad scene is reported and skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.errors import RasterioError
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry

from routewatch.model import Scene
from routewatch.sources.imagery.geo import GridGeoref, site_window
from routewatch.sources.imagery.looks import SCL_NODATA


class SceneReadError(ValueError):
    """A scene file is missing, corrupt, unlocated or inconsistent; the message names the file."""


@dataclass
class SceneRaster:
    """Pixels of one scene (possibly a window of it) ready for water masking and detection."""

    bands: dict[str, np.ndarray]
    valid: np.ndarray
    georef: GridGeoref
    pixel_size_m: float
    kind: str
    scl: np.ndarray | None
    path: str
    window: Window | None = None


def band_refs(scene: Scene) -> dict[str, dict[str, Any]]:
    """A scene's bands as {name: {path, index}} (a band written as a bare path is band 1 of that file)."""
    refs = scene.attributes.get("bands")
    if not refs:
        if not scene.uri:
            raise SceneReadError(f"scene {scene.id}: no band files recorded")
        return {"sar" if scene.attributes.get("kind") == "sar" else "band1": {"path": scene.uri, "index": 1}}
    return {k: (v if isinstance(v, dict) else {"path": v, "index": 1}) for k, v in refs.items()}


def error_text(exc: BaseException) -> str:
    """An exception's message with the reasons chained under it: rasterio's own message for a bad read ("Read
    failed. See previous exception for details.") says nothing; GDAL's reason is in ``__cause__``."""
    parts: list[str] = []
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = str(e).replace("See previous exception for details.", "").strip().rstrip(".")
        if text and not any(text in p for p in parts):
            parts.append(text)
        e = e.__cause__ or e.__context__
    return ": ".join(parts) or type(exc).__name__


Grid = tuple[Any, Any, tuple[Any, ...], Any]  # crs, transform, ground control points, bounds


def grid_of(ds: Any) -> Grid:
    """What places a band file's pixels on the ground, to compare band files of one scene."""
    return ds.crs, ds.transform, tuple(ds.gcps[0]), ds.bounds


def grid_mismatch(ds: Any, ref: Grid, ref_path: str, resampled: bool = False) -> str | None:
    """Why band file ``ds`` does not lie on the grid of ``ref`` (the scene's first band file), or None.

    Equal sizes are not enough: a band shifted or in another CRS would be stacked pixel for pixel with the
    others. Float noise (a thousandth of a pixel) is allowed. ``resampled``: a coarser layer read onto the band
    grid (SCL at 20 m): its CRS and extent must match, to within one of its pixels.
    """
    crs, transform, gcps, bounds = ref
    own = tuple(ds.gcps[0])
    if gcps or own:
        same = len(gcps) == len(own) and all(
            max(abs(a.row - b.row), abs(a.col - b.col), abs(a.x - b.x), abs(a.y - b.y)) < 1e-6
            for a, b in zip(gcps, own, strict=True))
        return None if same else f"its ground control points differ from those of {ref_path}"
    if resampled and ds.crs is not None and ds.crs == crs:
        px = max(abs(ds.transform.a), abs(ds.transform.e), abs(ds.transform.b), abs(ds.transform.d), 1e-12)
        if max(abs(x - y) for x, y in zip(ds.bounds, bounds, strict=True)) < px:
            return None
        return f"its extent {tuple(ds.bounds)} differs from that of {ref_path} {tuple(bounds)}"
    return affine_mismatch(ds.crs, ds.transform, crs, transform, ref_path)


def affine_mismatch(crs: Any, transform: Any, crs0: Any, transform0: Any, ref_path: str) -> str | None:
    """Why a raster with this CRS and geotransform is not on the grid of ``ref_path`` (``crs0``, ``transform0``),
    or None: a CRS on one side only, another CRS, or a geotransform differing by more than a thousandth of a
    pixel. Used for the band files of a scene and for `detect optical`'s --band files."""
    if crs is None or crs0 is None:
        return None if crs == crs0 else (f"it has no CRS but {ref_path} has one" if crs is None
                                         else f"it has a CRS but {ref_path} has none")
    if crs != crs0:
        return f"its CRS ({crs.to_string()}) differs from that of {ref_path} ({crs0.to_string()})"
    px = max(abs(transform.a), abs(transform.e), abs(transform.b), abs(transform.d), 1e-12)
    if transform0.almost_equals(transform, precision=1e-3 * px):
        return None
    return f"its geotransform {tuple(transform)[:6]} differs from that of {ref_path} {tuple(transform0)[:6]}"


def no_information(bands: dict[str, np.ndarray], valid: np.ndarray | None, where: np.ndarray | None = None
                   ) -> str | None:
    """Why the bands say nothing (over ``where``, default everywhere), or None: no valid pixel, or one value
    throughout a band. Such an image gives "no ships" that is no evidence of absence (a blank or fill product)."""
    ok = valid if where is None else (where if valid is None else valid & where)
    for name, band in bands.items():
        good = ok
        if np.issubdtype(band.dtype, np.floating):
            good = np.isfinite(band) if good is None else good & np.isfinite(band)
        values = band if good is None else band[good]
        if values.size == 0:
            return "no valid pixels (all no-data)" if len(bands) == 1 else f"band {name!r} has no valid pixels"
        lo, hi = values.min(), values.max()
        if lo == hi:
            return f"band {name!r} has one value ({lo:g}) throughout: no information"
    return None


def georef_of(ds: Any, path: str, gcps_only: bool = False) -> GridGeoref:
    """The georeference of an open dataset: GCPs when present (always for Sentinel-1 GRD), else the affine."""
    gcps, gcps_crs = ds.gcps
    if gcps:
        return GridGeoref((ds.height, ds.width), gcps=list(gcps), gcps_crs=gcps_crs)
    if gcps_only:
        raise SceneReadError(f"{path}: scene must be located by ground control points but the file has none")
    if ds.crs is None:
        raise SceneReadError(f"{path}: no CRS and no ground control points; cannot place it on the map")
    if ds.transform.is_identity:
        raise SceneReadError(f"{path}: identity geotransform; the file is not georeferenced")
    return GridGeoref((ds.height, ds.width), transform=ds.transform, crs=ds.crs)


MAX_READ_PX = 400_000_000  # pixels of a site window read per band (a 20,000 x 20,000 window, 0.8 GB as uint16)


def read_scene(scene: Scene, site_geometry: BaseGeometry | None = None, pad_px: int = 32) -> SceneRaster:
    """Read the scene's bands (only the site window when a site is given) with validity and SCL."""
    refs = band_refs(scene)
    kind = str(scene.attributes.get("kind") or ("sar" if "sar" in scene.sensor or "sentinel-1" in scene.sensor
                                                 else "optical"))
    gcps_only = scene.attributes.get("geolocation") == "gcps"
    nodata_attr = scene.attributes.get("nodata")
    bands: dict[str, np.ndarray] = {}
    georef: GridGeoref | None = None
    window: Window | None = None
    valid: np.ndarray | None = None
    first_path = ""
    shape0: tuple[int, int] | None = None
    grid0: Grid | None = None
    all_refs = dict(refs)
    if scene.attributes.get("scl"):
        ref = scene.attributes["scl"]
        all_refs["__scl__"] = ref if isinstance(ref, dict) else {"path": ref, "index": 1}
    scl = None
    for name, ref in all_refs.items():
        path = str(ref["path"])
        if not Path(path).exists() and "://" not in path:
            raise SceneReadError(f"{path}: band file not found (band {name!r} of scene {scene.id})")
        try:
            with rasterio.open(path) as ds:
                if shape0 is None:
                    shape0, grid0 = (ds.height, ds.width), grid_of(ds)
                    first_path = path
                    georef = georef_of(ds, path, gcps_only)
                    if site_geometry is not None:
                        window = site_window(georef, site_geometry, pad_px)
                        if window is None:
                            raise SceneReadError(f"{path}: the site does not intersect this scene")
                    size = int(window.height * window.width) if window is not None else ds.height * ds.width
                    if size > MAX_READ_PX:  # said by name, where reading it had ended the run in a MemoryError
                        raise SceneReadError(
                            f"{path}: the site covers {size / 1e6:,.0f} Mpx of this image at its resolution, more "
                            f"than the {MAX_READ_PX / 1e6:,.0f} Mpx read at once; resample the image (about 0.5 m "
                            "pixels are plenty for ships) and add it again")
                elif (ds.height, ds.width) != shape0 and name != "__scl__":
                    raise SceneReadError(
                        f"{path}: band {name!r} is {ds.width} x {ds.height} px but {first_path} is "
                        f"{shape0[1]} x {shape0[0]} px; band files of one scene must have the same size")
                elif grid0 is not None and (why := grid_mismatch(ds, grid0, first_path,
                                                                 resampled=(ds.height, ds.width) != shape0)):
                    raise SceneReadError(f"{path}: band {name!r} does not line up: {why}; band files of one "
                                         f"scene must share one grid")
                idx = int(ref.get("index", 1))
                if idx > ds.count:
                    raise SceneReadError(f"{path}: band index {idx} for {name!r} but the file has {ds.count}")
                if name == "__scl__" and (ds.height, ds.width) != shape0:
                    scl = _read_resampled(ds, idx, shape0, window)
                    continue
                arr = ds.read(idx, window=window)
                nod = ds.nodatavals[idx - 1] if nodata_attr is None else nodata_attr
                # the file's own mask (an internal mask band) says where there is no data as much as its no-data
                # value does (it had been read as data: masked halves made 100 % usable looks); an alpha band is
                # read below, as the scene records it (GDAL shows one as a mask only in files of 2 or 4 bands, and
                # also where the band it tags alpha is data)
                flags = ds.mask_flag_enums[idx - 1]
                masked = ds.read_masks(idx, window=window) == 0 \
                    if MaskFlags.per_dataset in flags and MaskFlags.alpha not in flags else None
        except SceneReadError:
            raise
        except (RasterioError, OSError, ValueError) as exc:
            raise SceneReadError(f"{path}: cannot read band {name!r}: {error_text(exc)}") from exc
        if name == "__scl__":
            scl = arr
            continue
        ok = np.ones(arr.shape, dtype=bool) if nod is None else arr != nod
        if np.issubdtype(arr.dtype, np.floating):
            ok &= np.isfinite(arr)
        if masked is not None:
            ok &= ~masked
        valid = ok if valid is None else valid & ok
        bands[name] = arr
    assert georef is not None and valid is not None
    alpha = scene.attributes.get("alpha")
    if alpha:  # the file's alpha band: transparent is no data
        try:
            with rasterio.open(str(alpha["path"])) as ds:
                valid &= ds.read(int(alpha["index"]), window=window) != 0
        except (RasterioError, OSError, ValueError) as exc:
            raise SceneReadError(f"{alpha['path']}: cannot read its alpha band: {error_text(exc)}") from exc
    grid = georef.window(window) if window is not None else georef
    if scl is not None:
        valid &= ~np.isin(scl, SCL_NODATA)
    if kind == "optical":  # zero in every band is fill, tagged or not (a reprojection's wedges): the detector's rule
        from routewatch.detect.optical import optical_nodata

        valid &= ~optical_nodata(bands)
    if kind == "sar":  # the zero fill around a GRD swath, tagged as no-data or not, was never imaged; an 8-bit
        # rendering's zeros may be calm water (the rule the water mask uses too)
        from routewatch.detect.water import edge_zero_fill, zeros_are_fill

        for arr in bands.values():
            if zeros_are_fill(arr):
                valid &= ~edge_zero_fill(arr)
    out = SceneRaster(bands=bands, valid=valid, georef=grid, pixel_size_m=grid.ground_pixel_size_m(), kind=kind,
                      scl=scl, path=str(scene.uri or first_path), window=window)
    return square_pixels(out)


SQUARE_TOLERANCE = 1.15  # pixels whose sides differ on the ground by more than this are made square


def square_pixels(raster: SceneRaster) -> SceneRaster:
    """The raster on pixels of one ground size: a lon/lat grid away from the equator (5 m by 10 m at 60 N) is
    stretched, and the detectors, which measure and group in pixels, had split one 206 m hull into two of 86 m
    and cut a 305 m one to 100 m. The finer axis is averaged down to the coarser one (the image holds no more
    detail than that across both axes, and the optical network was trained at Sentinel-2's scale: repeating the
    coarse axis instead gave it ships of twice the pixels, and it cut them up); a pixel is data only when all it
    averages is. The georeference follows, so positions and sizes come out of the new grid."""
    from affine import Affine

    grid = raster.georef
    if grid.uses_gcps or grid.transform is None:
        return raster
    sr, sc = grid.ground_pixel_sizes_m()
    if not (sr > 0 and sc > 0) or max(sr / sc, sc / sr) <= SQUARE_TOLERANCE:
        return raster
    h, w = grid.shape
    shape = (max(1, round(h * min(sr / sc, 1.0))), max(1, round(w * min(sc / sr, 1.0))))
    starts = [np.floor(np.arange(n) * (m / n)).astype(np.int64) for n, m in zip(shape, (h, w), strict=True)]
    ends = [np.append(st[1:], m) for st, m in zip(starts, (h, w), strict=True)]
    counts = np.outer(ends[0] - starts[0], ends[1] - starts[1]).astype(np.float32)  # source pixels in each
    centre = np.ix_((starts[0] + ends[0] - 1) // 2, (starts[1] + ends[1] - 1) // 2)

    def mean(a: np.ndarray) -> np.ndarray:
        out = np.add.reduceat(np.add.reduceat(a.astype(np.float32), starts[0], axis=0), starts[1], axis=1)
        return out / counts

    def middle(a: np.ndarray) -> np.ndarray:
        return a[centre]

    valid = mean(raster.valid) >= 1.0 - 1e-6
    bands = {}
    for k, v in raster.bands.items():
        m = mean(np.where(raster.valid, v, 0))  # no-data is not blended in: a pixel with any is no-data below
        m = np.where(valid, m, middle(v))
        bands[k] = (np.round(m) if np.issubdtype(v.dtype, np.integer) else m).astype(v.dtype)
    new_grid = GridGeoref(shape, transform=grid.transform * Affine.scale(w / shape[1], h / shape[0]), crs=grid.crs)
    return SceneRaster(bands=bands, valid=valid, georef=new_grid, pixel_size_m=new_grid.ground_pixel_size_m(),
                       kind=raster.kind, scl=None if raster.scl is None else middle(raster.scl), path=raster.path,
                       window=raster.window)


def _read_resampled(ds: Any, idx: int, shape0: tuple[int, int], window: Window | None) -> np.ndarray:
    """Read a coarser layer (SCL at 20 m) onto the 10 m band grid by nearest neighbour."""
    from rasterio.enums import Resampling

    fy, fx = ds.height / shape0[0], ds.width / shape0[1]
    if window is not None:
        w = Window(window.col_off * fx, window.row_off * fy, window.width * fx, window.height * fy)
        out_shape = (int(window.height), int(window.width))
    else:
        w, out_shape = None, shape0
    return ds.read(idx, window=w, out_shape=out_shape, resampling=Resampling.nearest)
