"""Water masks: where in an image a ship can be, so detectors ignore land and the coverage ledger knows how much
of a site's water a look actually imaged.

Order of preference (see docs/imagery.md for accuracy at port scale):

1. the user's polygons (GeoJSON or GeoPackage, any CRS): exact where digitised, and the only source that keeps
   berths, docks and the water beside quays reliably;
2. the Sentinel-2 scene classification (SCL class 6 = water) when the product carries it;
3. NDWI (McFeeters: (green - nir) / (green + nir) > 0), joined with the dark mode of near-infrared, for other
   optical images;
4. backscatter statistics for SAR: water is the dark mode of the log-intensity histogram (Otsu threshold on a
   smoothed image), with bright ships re-admitted by filling holes inside the water.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from pyproj import CRS, Transformer
from scipy import ndimage
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from routewatch.detect.sar import SAR_VALUES

SCL_WATER = 6


class WaterMaskError(ValueError):
    """A water mask could not be made or is empty; the message names the file."""


def load_water_polygons(path: str | Path) -> BaseGeometry:
    """Read water polygons from a GeoJSON or GeoPackage file (any CRS) as one WGS84 (multi)polygon."""
    import pyogrio

    p = Path(path)
    if not p.exists():
        raise WaterMaskError(f"{p}: water polygon file not found")
    if p.is_file() and p.stat().st_size == 0:
        raise WaterMaskError(f"{p}: empty file (0 bytes); water masks need polygons")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an unclosed ring is refused below, by name
            _meta, _fids, geoms, _fields = pyogrio.raw.read(str(p), return_fids=False)
        info = pyogrio.read_info(str(p))
    except Exception as exc:  # pyogrio raises its own DataSourceError family
        raise WaterMaskError(f"{p}: cannot read water polygons: {exc}") from exc
    try:  # GEOS refuses an unclosed ring or too few points; say which file
        polys = [g for g in shapely.from_wkb(geoms) if g is not None and not g.is_empty]
        polys = [g for g in polys if g.geom_type in ("Polygon", "MultiPolygon")]
        if not polys:
            raise WaterMaskError(f"{p}: no polygon features (water masks need polygons)")
        # make_valid keeps all of a self-intersecting polygon (both lobes of a bowtie); buffer(0) dropped one
        merged = unary_union([_polygonal(shapely.make_valid(g)) for g in polys])
        crs = info.get("crs")
        if crs:
            src = CRS.from_user_input(crs)
            if not src.equals(CRS.from_epsg(4326)):
                tr = Transformer.from_crs(src, CRS.from_epsg(4326), always_xy=True)
                merged = shapely.transform(merged, lambda x, y: tr.transform(x, y), interleaved=False)
    except shapely.errors.GEOSException as exc:
        raise WaterMaskError(f"{p}: invalid polygon geometry: {exc}") from exc
    if merged.is_empty:
        raise WaterMaskError(f"{p}: the polygons enclose no area (water masks need polygons)")
    x0, y0, x1, y1 = merged.bounds
    if x0 < -180.001 or x1 > 360.001 or y0 < -90.001 or y1 > 90.001:  # metres taken for degrees: an empty mask
        raise WaterMaskError(f"{p}: coordinates out of longitude/latitude range ({x0:.6g}, {y0:.6g} to {x1:.6g}, "
                             f"{y1:.6g}) and no CRS in the file: projected coordinates need their CRS (a GeoJSON "
                             "is longitude/latitude; write it from a GIS with its CRS, or as a GeoPackage)")
    return merged


def _polygonal(geom: BaseGeometry) -> BaseGeometry:
    """The polygon parts of a repaired geometry (make_valid may add the lines where a ring touched itself)."""
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon")]
    return unary_union(parts) if parts else shapely.Polygon()


def polygons_from_geojson_dict(data: dict) -> BaseGeometry:
    """A WGS84 geometry from an in-memory GeoJSON FeatureCollection/Feature/geometry."""
    if data.get("type") == "FeatureCollection":
        return unary_union([shape(f["geometry"]) for f in data.get("features", []) if f.get("geometry")])
    if data.get("type") == "Feature":
        return shape(data["geometry"])
    return shape(data)


def ndwi(green: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """McFeeters NDWI in [-1, 1]; NaN where both bands are zero (no data)."""
    g = green.astype(np.float32)
    n = nir.astype(np.float32)
    total = g + n
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (g - n) / total
    out[total == 0] = np.nan
    return out


def _clean(mask: np.ndarray, min_area_px: int, open_px: int = 0, max_hole_px: int | None = None,
           max_hole_side_px: int | None = None) -> np.ndarray:
    """Give ships back to the water, drop specks and fill small holes.

    A ship at a berth is bright (SAR) or not water-coloured (optical) and touches the quay, so it is cut out of
    the raw mask together with the land. Opening the land with a square of ``open_px`` (wider than a hull, narrower
    than a pier) removes hulls from the land but keeps piers and quays; enclosed holes (ships at anchor) up to
    ``max_hole_px`` pixels (default: four times ``min_area_px``, at least 400) are filled, and with
    ``max_hole_side_px`` only those whose bounding box fits in that square (a long breakwater stays land).
    """
    if not mask.any():
        return mask
    if open_px > 1:
        land = ndimage.binary_opening(~mask, structure=np.ones((open_px, open_px), dtype=bool))
        mask = ~land
    labels, n = ndimage.label(mask)
    if n:
        sizes = np.bincount(labels.ravel(), minlength=n + 1)  # pixels per region (far quicker than ndimage.sum)
        keep = sizes >= min_area_px
        keep[0] = False
        mask = keep[labels]
    holes = ndimage.binary_fill_holes(mask) & ~mask
    hl, hn = ndimage.label(holes)
    if hn:
        small = np.bincount(hl.ravel(), minlength=hn + 1) <= (
            max_hole_px if max_hole_px is not None else max(min_area_px * 4, 400))
        small[0] = False
        if max_hole_side_px is not None:
            for i, sl in enumerate(ndimage.find_objects(hl), start=1):
                if sl is not None and max(s.stop - s.start for s in sl) > max_hole_side_px:
                    small[i] = False
        mask = mask | small[hl]
    return mask


def dilate_cross(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """``ndimage.binary_dilation(mask, iterations=n)`` (the 4-neighbour cross, outside = False) by shifted ORs:
    the same pixels, about 15 times quicker on whole-scene masks. ``iterations=0`` leaves the mask as it is (scipy
    would dilate until nothing changes)."""
    out = np.asarray(mask, bool)
    for _ in range(iterations):
        src, out = out, out.copy()
        out[1:] |= src[:-1]
        out[:-1] |= src[1:]
        out[:, 1:] |= src[:, :-1]
        out[:, :-1] |= src[:, 1:]
    return out


def open_px_for(pixel_size_m: float, max_ship_width_m: float = 40.0) -> int:
    """Side (pixels) of the opening square: just wider than the widest hull we want to give back to the water."""
    return int(np.ceil(max_ship_width_m / max(pixel_size_m, 1e-6))) + 1


def ndwi_water(green: np.ndarray, nir: np.ndarray, threshold: float = 0.0, min_area_px: int = 50,
               pixel_size_m: float = 10.0) -> np.ndarray:
    """Water from NDWI > threshold or a dark near-infrared (Otsu split of smoothed log NIR), cleaned.

    NDWI alone misses calm, dark harbour basins (green and NIR both near zero, NDWI about 0: the inner port of
    Algiers in the shared data); water absorbs NIR, so the dark mode of NIR catches them.
    """
    index = ndwi(green, nir)
    raw = np.nan_to_num(index, nan=-1.0) > threshold
    n = nir.astype(np.float32)
    ok = np.isfinite(n) & (n > 0)
    if ok.sum() > 100:
        logn = np.where(ok, np.log10(np.where(ok, n, 1.0)), 0.0)
        smooth = ndimage.uniform_filter(logn, 3)
        t = otsu_threshold(smooth[ok])
        lo, hi = smooth[ok & (smooth <= t)], smooth[ok & (smooth > t)]
        if lo.size and hi.size and hi.mean() - lo.mean() > 0.3:  # two real modes (a factor of 2 in NIR)
            raw |= ok & (smooth <= t)
    return _clean(raw, min_area_px, open_px_for(pixel_size_m))


def ship_zone(water: np.ndarray, pixel_size_m: float, reach_m: float = 30.0) -> np.ndarray:
    """Where a hull's centre can be: the water plus a rim of ``reach_m`` over the shore.

    A ship at a berth has its outboard side on the water, but its pixels look like the quay's, so the water mask
    ends at the hull's outboard side. Measured on the 211 labelled ships of the shared ports (Sentinel-2), 53 % of
    the ship centres lie inside the image-derived water mask and over 99 % inside this zone with a 30 m reach
    (tests/test_imagery_water.py). Detectors search the zone; the usable fraction is measured on the water.
    """
    steps = int(np.ceil(reach_m / max(pixel_size_m, 1e-6)))
    if steps <= 0 or not water.any():
        return water
    return ndimage.binary_dilation(water, structure=np.ones((3, 3), dtype=bool), iterations=steps)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1-D sample (the split maximising between-class variance)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        raise WaterMaskError("no finite values to threshold")
    hist, edges = np.histogram(v, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m = np.cumsum(hist * centres)
    mu0 = m / np.maximum(w0, 1)
    mu1 = (m[-1] - m) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.argmax(between))])


def zeros_are_fill(image: np.ndarray) -> bool:
    """Whether a SAR array's solid zeros at the edge are fill (a product: GRD amplitudes, intensities) or may be
    calm water (an 8-bit rendering, where calm water is 0): the one rule the water mask and the look both use."""
    return np.asarray(image).dtype != np.uint8


def edge_zero_fill(image: np.ndarray, side: int = 5) -> np.ndarray:
    """Solid areas of exact zeros (``side`` x ``side`` squares and more) connected to the image edge: the fill
    around a GRD swath, which some files do not tag as no-data. Sea clutter is never exactly 0 over such areas."""
    return edge_solid(np.asarray(image) == 0, side)


def edge_solid(mask: np.ndarray, side: int = 5) -> np.ndarray:
    """The solid parts of ``mask`` (``side`` x ``side`` squares and more) connected to the image edge: a fill,
    as opposed to a few pixels of the same value inside the data (a saturated deck, a calm patch)."""
    zero = np.asarray(mask, bool)
    if not zero.any():
        return zero
    solid = ndimage.binary_opening(zero, structure=np.ones((side, side), dtype=bool))
    labels, n = ndimage.label(solid)
    if n == 0:
        return solid
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    keep = np.zeros(n + 1, dtype=bool)
    keep[edge[edge > 0]] = True
    return keep[labels]


SAR_COARSE_ABOVE_PX = 16_000_000  # larger images (a whole GRD scene) get their water mask from block means


def _block_means(image: np.ndarray, ok: np.ndarray | None, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the valid pixels in each f x f block (float32) and whether the block had any, strip by strip so
    that the whole image is never converted to float."""
    h, w = image.shape
    nb_r, nb_c = -(-h // f), -(-w // f)
    means = np.zeros((nb_r, nb_c), np.float32)
    counts = np.zeros((nb_r, nb_c), np.float32)
    step = f * max(1, 4096 // f)
    for r0 in range(0, h, step):
        r1 = min(h, r0 + step)
        strip = np.asarray(image[r0:r1], dtype=np.float32)
        good = np.isfinite(strip) if ok is None else (ok[r0:r1] & np.isfinite(strip))
        strip = np.where(good, strip, 0.0)
        pr, pc = (-(r1 - r0)) % f, (-w) % f
        strip = np.pad(strip, ((0, pr), (0, pc)))
        good = np.pad(good, ((0, pr), (0, pc))).astype(np.float32)
        rows = strip.shape[0] // f
        b0 = r0 // f
        # strided adds, several times quicker than a reshape and sum over the two small axes; each block row is
        # summed first, as that sum did, so float images give the same bits
        acc, cnt = means[b0 : b0 + rows], counts[b0 : b0 + rows]
        for i in range(f):
            acc += sum((strip[i::f, j::f] for j in range(1, f)), start=strip[i::f, 0::f].copy())
            cnt += sum((good[i::f, j::f] for j in range(1, f)), start=good[i::f, 0::f].copy())
    has = counts > 0
    means[has] /= counts[has]
    return means, has


COAST_GAP_DB = 2.5  # modes of smoothed backscatter closer than this (dB): no coast in view


def sar_water(image: np.ndarray, valid: np.ndarray | None = None, smooth_px: int = 5,
              min_area_px: int = 200, pixel_size_m: float = 10.0, max_ship_m: float = 500.0,
              zero_is_fill: bool | None = None, coarse_above_px: int = SAR_COARSE_ABOVE_PX,
              open_px: int | None = None, values: str = "amplitude") -> np.ndarray:
    """Water in a SAR intensity/amplitude image: the dark mode of smoothed log backscatter (Otsu), cleaned.

    Smoothing first averages speckle down so the two modes (sea clutter, land) separate; ships are bright
    islands in the water and are given back: any island that water encloses and that fits in a square of the
    longest ship (``max_ship_m``) plus the smoothing and sidelobe spread is taken for ships, not land. Zero
    pixels of a rendering are data (calm water renders as 0, often in solid patches); in a product (GRD
    amplitudes, intensities, any GeoTIFF a reader hands over) solid zero areas reaching the image edge are fill
    (:func:`edge_zero_fill`), whether or not the file tags them as no-data. ``zero_is_fill`` says which it is;
    left out, uint8 arrays are taken for renderings. ``valid`` adds the reader's own no-data mask. Images over
    ``coarse_above_px`` pixels (whole scenes) are done on 2 x 2 block means, so the mask's edges are a pixel
    coarser there; site windows are done at full resolution. ``open_px`` overrides the land opening's side
    (default :func:`open_px_for` the pixel size). ``values`` (amplitude or intensity) says what the pixels hold:
    the test for a coast in view is in decibels, which are twice the log of an amplitude.
    """
    if values not in SAR_VALUES:
        raise ValueError(f"values must be one of {', '.join(SAR_VALUES)}, got {values!r}")
    arr = np.asarray(image)
    if zero_is_fill is None:
        zero_is_fill = zeros_are_fill(arr)
    if arr.size > coarse_above_px:
        # A whole scene: derive the mask from 2 x 2 block means (which also average speckle) and give it back at
        # full size, with the pixels' own validity. Coarser blocks would make the cleaning coarse too: at 6 x 6,
        # piers 60-100 m wide turned to water and their tips into ships.
        f = 2
        means, has = _block_means(arr, valid, f)
        # the land opening no wider in metres than at full size (else 60 m piers open away), odd smoothing so the
        # window stays centred
        coarse = sar_water(means, has, max(3, 2 * (smooth_px // (2 * f)) + 1), max(1, min_area_px // (f * f)),
                           pixel_size_m * f, max_ship_m, zero_is_fill, coarse_above_px=np.iinfo(np.int64).max,
                           open_px=max(1, (open_px or open_px_for(pixel_size_m)) // f), values=values)
        # one more block of guard off the land: the blocks blur pier tips, which would otherwise be searched
        coarse &= ~dilate_cross(~coarse, 1)
        full = np.repeat(np.repeat(coarse, f, 0), f, 1)[: arr.shape[0], : arr.shape[1]]
        if valid is not None:
            full &= valid
        if np.issubdtype(arr.dtype, np.floating):
            full &= np.isfinite(arr)
        return full
    img = arr.astype(np.float32)
    ok = np.isfinite(img)
    if valid is not None:
        ok &= valid
    if zero_is_fill:
        ok &= ~edge_zero_fill(arr)
    if ok.sum() < 100:
        return np.zeros(img.shape, dtype=bool)
    positive = ok & (img > 0)
    floor = float(img[positive].min()) if positive.any() else 1.0
    logi = np.zeros_like(img)
    logi[ok] = np.log10(np.maximum(img[ok], floor))  # zeros sit at the darkest value the image has
    fill = float(np.median(logi[ok]))
    logi[~ok] = fill
    smooth = ndimage.uniform_filter(logi, size=smooth_px)
    t = otsu_threshold(smooth[ok])
    # a unimodal image (all sea or all land) has no real split: check the modes are well separated
    lo, hi = smooth[ok & (smooth <= t)], smooth[ok & (smooth > t)]
    # the modes' gap in decibels of backscatter (10 log10 of intensity, 20 log10 of amplitude): taken as log10
    # of the values alone, the 2.5 dB test had been a 5 dB one on amplitude, the default, and land 4 dB brighter
    # than the sea was searched as water (38 of 40 detections buildings)
    gap_db = (hi.mean() - lo.mean()) * (20.0 if values == "amplitude" else 10.0) if lo.size and hi.size else 0.0
    if gap_db < COAST_GAP_DB:
        # modes under 2.5 dB apart: no coast in view. Watched sites are water-bound, so an unsplit image is
        # taken as all sea (open anchorage); the CFAR still rejects clutter there.
        return ok.copy()
    open_px = open_px or open_px_for(pixel_size_m)
    ship_px = int(np.ceil(max_ship_m / max(pixel_size_m, 1e-6))) + 2 * smooth_px
    mask = _clean((smooth <= t) & ok, min_area_px, open_px, max_hole_px=ship_px * ship_px,
                  max_hole_side_px=ship_px) & ok
    # smoothing lets the water reach a pixel or two into the land (darker patches of land texture fall below the
    # split); keep a guard band off the big land masses so their edge is not taken for targets
    land = ndimage.binary_opening(~mask, structure=np.ones((open_px,) * 2, dtype=bool))
    return mask & ~dilate_cross(land, smooth_px // 2)


def image_water(bands: dict[str, np.ndarray], kind: str, valid: np.ndarray | None = None,
                scl: np.ndarray | None = None, pixel_size_m: float = 10.0,
                fill_in_valid: bool = False, sar_values: str = "amplitude") -> tuple[np.ndarray, str]:
    """Derive water from the image itself; returns (mask, method) with method scl, ndwi or sar-otsu.

    ``fill_in_valid``: ``valid`` already leaves out a SAR swath's edge zero fill (the scene reader's mask does),
    so the water mask does not search the image for it a second time (a quarter of its cost)."""
    if scl is not None:
        # SCL labels hulls as land or cloud, not water: give them back the same way
        return _clean(scl == SCL_WATER, 50, open_px_for(pixel_size_m)), "scl"
    if kind == "optical":
        if "green" not in bands or "nir" not in bands:
            raise WaterMaskError("optical water mask needs green and nir bands (or water polygons)")
        mask = ndwi_water(bands["green"], bands["nir"], pixel_size_m=pixel_size_m)
        return (mask & valid if valid is not None else mask), "ndwi"
    image = next(iter(bands.values()))
    fill = zeros_are_fill(image) and not (fill_in_valid and valid is not None)
    return sar_water(image, valid, pixel_size_m=pixel_size_m, zero_is_fill=fill, values=sar_values), "sar-otsu"


# ---- the packaged coarse global mask (optional extra) -----------------------------------------------------------

GLOBAL_MARGIN_M = 3000.0  # how far from the global mask's sea a port's water may lie (cells, coastline shift)


_NO_GLOBAL_MASK = "the global mask is an optional extra: pip install 'routewatch[globalmask]'"


def _globe():  # type: ignore[no-untyped-def]
    try:
        from global_land_mask import globe  # loads a 0.9 GB array once per process
    except ImportError as exc:
        raise WaterMaskError(_NO_GLOBAL_MASK) from exc
    return globe


def check_global_mask(transform, crs, georef=None) -> None:  # type: ignore[no-untyped-def]
    """Fail early (before any mask is derived) when the global mask cannot be used for this image (``georef``: a
    :class:`~routewatch.sources.imagery.geo.GridGeoref`, for an image located by ground control points)."""
    import importlib.util

    if georef is None and (transform is None or crs is None):
        raise WaterMaskError("the global mask needs a georeferenced image (a CRS and a geotransform, or ground "
                             "control points)")
    try:
        found = importlib.util.find_spec("global_land_mask") is not None
    except ValueError:  # a module entry of None (how a test hides it)
        found = False
    if not found:  # found without importing it: the import holds 0.9 GB, not wanted while a mask is derived
        raise WaterMaskError(_NO_GLOBAL_MASK)


@dataclass(frozen=True)
class CoarseGrid:
    """A sampling grid over an image: every ``step`` pixels (rows, cols), ``pad`` samples beyond each edge."""

    step: tuple[int, int]
    pad: int
    shape: tuple[int, int]  # of the image
    spacing_m: tuple[float, float]  # ground distance between samples (rows, cols)

    def expand(self, coarse: np.ndarray) -> np.ndarray:
        """Back to the image's pixels (nearest sample), the padding cut off."""
        (sr, sc), p = self.step, self.pad
        inner = coarse[p : coarse.shape[0] - p, p : coarse.shape[1] - p]
        return np.repeat(np.repeat(inner, sr, 0), sc, 1)[: self.shape[0], : self.shape[1]]


def global_ocean(transform, crs, shape: tuple[int, int], sample_m: float = 250.0,  # type: ignore[no-untyped-def]
                 pad_m: float = 0.0, georef=None) -> tuple[np.ndarray, CoarseGrid]:
    """Sea per the GLOBE 1 km land mask (the optional ``globalmask`` extra, package ``global-land-mask``, which
    carries the mask in its wheel: nothing is downloaded), sampled every ``sample_m`` metres over the image and
    ``pad_m`` beyond its edges; ``grid.expand`` gives it at the image's pixels. ``georef`` (a
    :class:`~routewatch.sources.imagery.geo.GridGeoref`) places the pixels instead of ``transform`` and ``crs``:
    a Sentinel-1 GRD located by its ground control points.

    At 1 km the mask knows where the open sea is, not where a quay is: use it to keep an image-derived mask away
    from dark inland areas, never to find berths (docs/imagery.md measures it on the labelled ports).
    """
    from routewatch.detect.base import pixel_to_lonlat
    from routewatch.detect.measure import ground_pixel_size

    check_global_mask(transform, crs, georef)
    globe = _globe()
    h, w = shape
    d_row, d_col = georef.ground_pixel_sizes_m() if georef is not None else ground_pixel_size(transform, crs, shape)
    sr, sc = max(1, int(sample_m // max(d_row, 1e-6))), max(1, int(sample_m // max(d_col, 1e-6)))
    pad = int(np.ceil(pad_m / max(min(sr * d_row, sc * d_col), 1e-6)))
    # sample centres: one per step-sized cell, the last, partial cell included, plus the padding (as pixel
    # indices: a cell's centre lies half a pixel before the sample's coordinate)
    rows = (np.arange(-pad, -(-h // sr) + pad) + 0.5) * sr - 0.5
    cols = (np.arange(-pad, -(-w // sc) + pad) + 0.5) * sc - 0.5
    cc, rr = np.meshgrid(cols, rows)
    if georef is not None:  # its convention is the pixel's corner: + 0.5 for the centre, as pixel_to_lonlat adds
        lon, lat = georef.pixel_to_lonlat(rr.ravel() + 0.5, cc.ravel() + 0.5)
    else:
        lon, lat = pixel_to_lonlat(rr, cc, transform, crs)
    lon = (np.asarray(lon) + 180.0) % 360.0 - 180.0
    ocean = np.asarray(globe.is_ocean(np.clip(np.asarray(lat), -90.0, 90.0), lon), bool).reshape(rr.shape)
    return ocean, CoarseGrid((sr, sc), pad, (h, w), (sr * d_row, sc * d_col))


def near_global_sea(transform, crs, shape: tuple[int, int],  # type: ignore[no-untyped-def]
                    margin_m: float = GLOBAL_MARGIN_M, sample_m: float = 250.0, georef=None) -> np.ndarray:
    """Pixels within ``margin_m`` of the global mask's sea, inside the image or beyond its edge: where a port's
    water can be. With no global-mask sea within that reach at all, the image is left whole (a lake port).
    ``georef``: see :func:`global_ocean`."""
    ocean, grid = global_ocean(transform, crs, shape, sample_m, pad_m=margin_m, georef=georef)
    if not ocean.any():
        return np.ones(shape, bool)
    dist = ndimage.distance_transform_edt(~ocean, sampling=grid.spacing_m)  # metres on the coarse grid
    return grid.expand(dist <= margin_m)
