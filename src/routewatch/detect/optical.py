"""Optical ship detection (Sentinel-2 10 m bands, or high-resolution RGB(N) GeoTIFFs).

A classical threshold detector confuses quays, cranes and moored ships (most labelled ships lie alongside quays),
so the detector is a small fully-convolutional segmentation network trained here on the labelled ports
(``python -m routewatch.detect.train``), shipped as ONNX in ``detect/models/`` and run with onnxruntime
(no torch at inference). The network outputs a ship probability per pixel; ships are the connected regions above
``threshold``, measured from their pixels (:mod:`routewatch.detect.measure`).

Input normalisation keeps band ratios: each band becomes ``log(1 + x)`` minus the image-wide median of all bands'
logs, so a gain that differs between products (L1C/L2A offsets, 8-bit renderings) does not matter (float bands
in reflectance, 0-1, are first brought to the digital-number scale: there the 1 in ``log(1 + x)`` is not small), plus the
NDWI ``(green - nir) / (green + nir)`` when a near-infrared band is given (RGB-only images get a zero channel).

No-data (:func:`optical_nodata`: the file's no-data, and pixels zero or not finite in every band) is left out of
the median and given the median's value; the network fires on the step between data and that fill, so a region
whose outline comes within ``OpticalParams.nodata_guard_px`` of no-data is dropped (a ship there is cut by the
image's edge anyway, and could not be measured).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from routewatch.detect.base import Detection
from routewatch.detect.measure import measure_pixels, pixel_sides

BAND_ORDER = ("blue", "green", "red", "nir")
MODEL_DIR = Path(__file__).with_name("models")
DEFAULT_MODEL = MODEL_DIR / "optical_s2.onnx"


@dataclass(frozen=True)
class OpticalParams:
    """Post-processing of the probability map, fixed in code (not tuned per image)."""

    threshold: float = 0.9  # a ship is a region whose core is above this
    min_pixels: int = 8  # ... and has at least this many core pixels
    measure_threshold: float | None = 0.3  # measure on the region above this around the core (None: the core)
    min_length_m: float = 15.0
    max_length_m: float = 500.0
    nodata_guard_px: int = 1  # a region whose outline comes this close to no-data is the data/no-data step
    # networks with a centre output (detections_from_centres): a ship is a local peak of it above this, on the
    # outline map above measure_threshold, with at least min_pixels of that outline its own
    centre_threshold: float = 0.3


RESAMPLE_BELOW_M = 3.0  # finer ground pixels are averaged to about NETWORK_PIXEL_M before the network sees them
NETWORK_PIXEL_M = 8.0  # the ground pixel of the ports it learned from: 10 m Web Mercator, 5.8-9.4 m on the ground


def missing_nir_warning(bands: Mapping[str, object], pixel_size_m: float) -> str | None:
    """The warning for optical bands without ``nir``, or None: the packaged model then finds far fewer ships
    (measured on the labelled Sentinel-2 ports, see docs/detection.md). Finer images are averaged to the
    network's scale first (:func:`network_factors`), where the same holds."""
    if "nir" in bands:
        return None
    scale = f" (averaged to about {NETWORK_PIXEL_M:.0f} m for the network)" if pixel_size_m < RESAMPLE_BELOW_M else ""
    return (f"no nir band at {pixel_size_m:.1f} m pixels{scale}: from blue, green and red alone the packaged model "
            "finds far fewer ships (F1 0.24 against 0.74 with nir on the labelled Sentinel-2 ports)")


def optical_nodata(bands: Mapping[str, np.ndarray], valid: np.ndarray | None = None) -> np.ndarray:
    """The optical no-data pixels, the one rule of the detector, ``detect optical`` and the site pipeline: outside
    ``valid`` (the file's no-data value or mask), or zero (or below) or not finite in every band. No product
    records a reflectance of exactly 0 in all bands: that is fill, tagged or not (the wedges a reprojection
    leaves around a rotated image are zeros without a no-data tag). Nor is a solid area at the largest value of a
    16- or 32-bit integer in every band that reaches the image's edge (65535: the fill of many exports, untagged;
    it had been read as land, making a look 100 % usable with its ships lost); a few such pixels inside the data
    are a saturated deck (stretched exports have them: the shared Busan crop 59), and 8-bit 255 is never fill."""
    arrs = [np.asarray(v) for v in bands.values()]
    if not arrs:
        raise ValueError("no bands given")
    data = np.zeros(arrs[0].shape, bool)
    top = np.zeros(arrs[0].shape, bool) if all(
        np.issubdtype(a.dtype, np.integer) and a.dtype.itemsize >= 2 for a in arrs) else None
    if top is not None:
        top[...] = True
    for a in arrs:
        data |= (a > 0) & np.isfinite(a) if np.issubdtype(a.dtype, np.floating) else a > 0
        if top is not None:
            top &= a == np.iinfo(a.dtype).max
    if top is not None and top.any():
        from routewatch.detect.water import edge_solid

        data &= ~edge_solid(top)
    if valid is not None:
        data &= np.asarray(valid, bool)
    return ~data


def without_nodata(bands: Mapping[str, np.ndarray], valid: np.ndarray | None) -> dict[str, np.ndarray]:
    """The bands with every pixel outside ``valid`` set to 0, the no-data value :func:`optical_nodata` and every
    optical step read (a fill such as 65535 would otherwise count as bright data)."""
    if valid is None or np.all(valid):
        return dict(bands)
    ok = np.asarray(valid, bool)
    return {k: np.where(ok, v, np.zeros((), np.asarray(v).dtype)) for k, v in bands.items()}


REFLECTANCE_SCALE = 10_000.0  # Sentinel-2 L2A digital numbers per unit of reflectance


def reflectance_scale(bands: Mapping[str, np.ndarray]) -> float:
    """The factor that brings float bands written as reflectance (0-1) to the digital-number scale the network
    learned (``log(1 + x)`` only cancels a common gain when x is much larger than 1: on 0-1 reflectance the
    held-out ports lost up to 0.15 of F1 and measured lengths 40 m longer); 1 for anything else."""
    if not all(np.issubdtype(np.asarray(v).dtype, np.floating) for v in bands.values()):
        return 1.0
    size = max(np.asarray(v).size for v in bands.values())
    step = max(4, int(np.sqrt(size / 250_000)))  # about 250,000 values a band, whatever the image's size
    sample = np.concatenate([np.asarray(v)[::step, ::step].ravel() for v in bands.values()])
    sample = sample[np.isfinite(sample) & (sample != 0)]
    if not sample.size:
        return 1.0
    # reflectance: most of a scene below 1, and even cloud and glint tops (L2A reaches about 6.5) far below 10;
    # digital numbers, radiances and renderings have medians in the tens to thousands
    median, top = np.percentile(sample, [50, 99])
    return REFLECTANCE_SCALE if median <= 1.0 and top <= 10.0 else 1.0


def band_shape(bands: Mapping[str, np.ndarray]) -> tuple[int, ...]:
    """The shape the bands share; a ValueError naming each band's when they differ."""
    shapes = {k: np.shape(v) for k, v in bands.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"band arrays differ in size: {shapes}")
    return next(iter(shapes.values()))


def optical_features(bands: Mapping[str, np.ndarray], valid: np.ndarray | None = None) -> np.ndarray:
    """Stack bands into the network input (5, H, W) float32: 4 log bands relative to the image median, NDWI.
    ``valid``: the pixels the file says are data (no-data by :func:`optical_nodata` is left out either way)."""
    missing = [b for b in ("blue", "green", "red") if b not in bands]
    if missing:
        raise ValueError(f"optical detection needs bands blue, green, red (and ideally nir); missing {missing}")
    band_shape(bands)
    arrs = [np.asarray(bands[b], dtype=np.float32) for b in BAND_ORDER if b in bands]
    scale = reflectance_scale(bands)
    if scale != 1.0:
        arrs = [a * scale for a in arrs]
    logs = [np.log1p(np.maximum(a, 0.0)) for a in arrs]
    stack = np.stack(logs)
    # no-data (0 or not finite in every band, as at a tile's edge) is left out of the median and made the median:
    # counted in, half an image of zeros would drag the median down and hide every ship in the other half
    data = ~optical_nodata(bands, valid)
    valid = np.isfinite(stack) & data
    med = float(np.median(stack[valid])) if valid.any() else 0.0
    feats = [np.where(data, lg - med, 0.0) for lg in logs]
    if "nir" in bands:
        g, n = arrs[1], arrs[3]
        ndwi = np.where(data, (g - n) / np.maximum(g + n, 1e-6), 0.0)
    else:
        feats.append(np.zeros_like(feats[0]))  # no NIR band: a zero channel keeps the network's input shape
        ndwi = np.zeros_like(arrs[0])
    feats.append(ndwi.astype(np.float32))
    out = np.stack(feats).astype(np.float32)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


_SESSIONS: dict[tuple[str, int, int, int | None], object] = {}


def onnx_session(model_path: Path | str, *, threads: int | None = 2, hint: str = "") -> object:
    """The onnxruntime session of a model file, made once per file version (path, size, modification time), so
    a model retrained in place is not served stale; CPU only. ``threads=None`` leaves onnxruntime's default."""
    import onnxruntime as ort

    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model {path} not found{hint}")
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, threads)
    if key not in _SESSIONS:
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        try:
            _SESSIONS[key] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"{path}: not a loadable ONNX model ({exc})") from exc
    return _SESSIONS[key]


def probability_map(features: np.ndarray, model_path: Path | str = DEFAULT_MODEL, tile: int = 1024) -> np.ndarray:
    """Per-pixel ship probability (H, W) from the ONNX network, tiled with overlap for large images."""
    return network_maps(features, model_path, tile)[0]


def network_maps(features: np.ndarray, model_path: Path | str = DEFAULT_MODEL, tile: int = 1024) -> np.ndarray:
    """The network's probability maps (outputs, H, W), tiled with overlap for large images: the ship outline, and
    the ship centres for a network trained with them (``train --centres``)."""
    sess = onnx_session(model_path, hint="; train it with python -m routewatch.detect.train")
    _, h, w = features.shape
    pad = 48  # margin for the network's receptive field (about 45 px), a multiple of its downsampling (4)
    prob: np.ndarray | None = None
    if h == 0 or w == 0:  # no tile to run: as many empty maps as the network says it gives
        outputs = sess.get_outputs()[0].shape  # type: ignore[attr-defined]
        return np.zeros((outputs[1] if len(outputs) == 4 and isinstance(outputs[1], int) else 1, h, w), np.float32)
    for r0 in range(0, h, tile):
        for c0 in range(0, w, tile):
            r1, c1 = min(h, r0 + tile), min(w, c0 + tile)
            a0, b0 = max(0, r0 - pad), max(0, c0 - pad)
            a1, b1 = min(h, r1 + pad), min(w, c1 + pad)
            x = features[:, a0:a1, b0:b1]
            ph, pw = (-x.shape[1]) % 4, (-x.shape[2]) % 4
            x = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="reflect" if min(x.shape[1:]) > 4 else "edge")
            logit = sess.run(None, {"input": x[None]})[0][0]  # type: ignore[attr-defined]
            if prob is None:
                prob = np.zeros((logit.shape[0], h, w), np.float32)
            p = 1.0 / (1.0 + np.exp(-logit[:, : a1 - a0, : b1 - b0]))
            prob[:, r0:r1, c0:c1] = p[:, r0 - a0 : r1 - a0, c0 - b0 : c1 - b0]
    assert prob is not None
    return prob


def detections_from_probability(
    prob: np.ndarray,
    *,
    pixel_size_m: float | tuple[float, float],
    water: np.ndarray | None = None,
    params: OpticalParams = OpticalParams(),
    nodata: np.ndarray | None = None,
) -> list[Detection]:
    """Connected regions above the threshold become ships, measured from their pixels and scored by peak probability.

    ``nodata`` (:func:`optical_nodata`): a region whose measured outline comes within ``params.nodata_guard_px``
    pixels of no-data is dropped. The network fires along the step between data and fill, 2 to 4 pixels inside
    the data, in regions up to the longest ship; a real ship that close is cut by the no-data and not measurable.

    With ``measure_threshold`` (hysteresis), the outline measured is the region above that lower threshold that
    holds the core, so confident cores do not shorten the ship; when that region holds several cores (ships
    moored together), each core is measured on its own pixels grown by one pixel.
    """
    eight = np.ones((3, 3), bool)
    mask = prob > params.threshold
    labels, n = ndimage.label(mask, structure=eight)
    if n == 0:
        return []
    low_labels = None
    cores_per_low: np.ndarray | None = None
    if params.measure_threshold is not None and params.measure_threshold < params.threshold:
        low_labels, n_low = ndimage.label(prob > params.measure_threshold, structure=eight)
        # Number of cores inside each low region.
        first = ndimage.labeled_comprehension(low_labels, labels, np.arange(1, n + 1), np.max, np.int64, 0)
        cores_per_low = np.bincount(first, minlength=n_low + 1)
    near_water, near_nodata = _ship_filter(prob.shape, water, nodata, params)
    out = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        rr, cc = np.nonzero(labels[sl] == i)
        if rr.size < params.min_pixels:
            continue
        rr, cc = rr + sl[0].start, cc + sl[1].start
        r, c = float(rr.mean()), float(cc.mean())
        if near_water is not None and not near_water[round(r), round(c)]:
            continue
        mr, mc = rr, cc
        if low_labels is not None and cores_per_low is not None:
            lab = int(low_labels[rr[0], cc[0]])
            if cores_per_low[lab] == 1:
                mr, mc = np.nonzero(low_labels == lab)
            else:
                core = np.zeros(prob.shape, bool)
                core[rr, cc] = True
                mr, mc = np.nonzero(ndimage.binary_dilation(core, eight) & (low_labels == lab))
        if near_nodata is not None and (near_nodata[mr, mc].any() or near_nodata[rr, cc].any()):
            continue
        shape = measure_pixels(mr, mc, pixel_size_m)
        if not params.min_length_m <= shape.length_m <= params.max_length_m:
            continue
        out.append(Detection(row=r, col=c, length_m=shape.length_m, width_m=shape.width_m,
                             heading_deg=shape.heading_deg, score=round(float(prob[rr, cc].max()), 4)))
    return out


def _ship_filter(shape: tuple[int, ...], water: np.ndarray | None, nodata: np.ndarray | None,
                 params: OpticalParams) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The zones that rule a region out: far from ``water`` (dilated 3 pixels: berthed ships overlap the quay
    edge), and within ``params.nodata_guard_px`` of no-data; each None when not given."""
    near_water = None
    if water is not None:
        w = np.asarray(water, bool)
        if w.shape != shape:
            raise ValueError(f"water mask shape {w.shape} differs from image shape {shape}")
        near_water = ndimage.binary_dilation(w, iterations=3)
    near_nodata = None
    if nodata is not None:
        nd = np.asarray(nodata, bool)
        if nd.shape != shape:
            raise ValueError(f"no-data mask shape {nd.shape} differs from image shape {shape}")
        if nd.any():
            g = params.nodata_guard_px
            near_nodata = ndimage.binary_dilation(nd, np.ones((3, 3), bool), iterations=g) if g > 0 else nd
    return near_water, near_nodata


def detections_from_centres(
    prob: np.ndarray,
    centre: np.ndarray,
    *,
    pixel_size_m: float | tuple[float, float],
    water: np.ndarray | None = None,
    params: OpticalParams = OpticalParams(),
    nodata: np.ndarray | None = None,
) -> list[Detection]:
    """Ships from a network with a centre output: each local peak of ``centre`` above ``params.centre_threshold``
    (3 x 3 neighbourhood; a flat top counts once) that lies on the outline map above ``measure_threshold`` is a
    ship, measured on the pixels of its outline region nearer to it than to the region's other peaks (ships moored
    side by side share a region and are cut apart half-way between their centres; a pixel as near to two goes to
    one of them), scored by its centre peak. ``min_pixels`` counts those pixels; ``threshold`` stands in only for
    a ``measure_threshold`` of None (the outline level)."""
    eight = np.ones((3, 3), bool)
    top = (centre >= ndimage.maximum_filter(centre, size=3)) & (centre > params.centre_threshold)
    flat, n_top = ndimage.label(top, structure=eight)
    if n_top == 0:
        return []
    # one peak a flat top: its pixel of highest outline probability
    pk = np.array(ndimage.maximum_position(prob, flat, np.arange(1, n_top + 1)), dtype=np.int64).reshape(-1, 2)
    low_t = params.measure_threshold if params.measure_threshold is not None else params.threshold
    low, _ = ndimage.label(prob > low_t, structure=eight)
    region = low[pk[:, 0], pk[:, 1]]
    keep = region > 0
    pk, region = pk[keep], region[keep]
    if not len(pk):
        return []
    near_water, near_nodata = _ship_filter(prob.shape, water, nodata, params)
    boxes = ndimage.find_objects(low)
    out = []
    by_region = np.argsort(region, kind="stable")
    for group in np.split(by_region, np.flatnonzero(np.diff(region[by_region])) + 1):
        reg = int(region[group[0]])
        sl = boxes[reg - 1]
        assert sl is not None  # a region under a peak has pixels
        rr, cc = np.nonzero(low[sl] == reg)
        peaks = pk[group] - (sl[0].start, sl[1].start)
        if len(group) == 1:
            owner = np.zeros(rr.size, np.int64)
        else:  # the region's own peaks only: a neighbouring region's peak takes none of its pixels
            seeds = np.ones(low[sl].shape, bool)
            seeds[peaks[:, 0], peaks[:, 1]] = False
            index = np.zeros(seeds.shape, np.int64)
            index[peaks[:, 0], peaks[:, 1]] = np.arange(len(group))
            _, (ir, ic) = ndimage.distance_transform_edt(seeds, return_indices=True)
            owner = index[ir[rr, cc], ic[rr, cc]]
        for k, j in enumerate(group):
            r, c = (int(v) for v in pk[j])
            mine = owner == k
            if int(mine.sum()) < params.min_pixels:
                continue
            if near_water is not None and not near_water[r, c]:
                continue
            mr, mc = rr[mine] + sl[0].start, cc[mine] + sl[1].start
            if near_nodata is not None and near_nodata[mr, mc].any():
                continue
            shape = measure_pixels(mr, mc, pixel_size_m)
            if not params.min_length_m <= shape.length_m <= params.max_length_m:
                continue
            out.append(Detection(row=float(mr.mean()), col=float(mc.mean()), length_m=shape.length_m,
                                 width_m=shape.width_m, heading_deg=shape.heading_deg,
                                 score=round(float(centre[r, c]), 4)))
    return out


def detections_from_maps(
    maps: np.ndarray,
    *,
    pixel_size_m: float | tuple[float, float],
    water: np.ndarray | None = None,
    params: OpticalParams = OpticalParams(),
    nodata: np.ndarray | None = None,
) -> list[Detection]:
    """Ships from a network's probability maps (1 or 2, H, W): by the centre map when there is one
    (:func:`detections_from_centres`), else by the outline map's regions (:func:`detections_from_probability`)."""
    if len(maps) == 2:
        return detections_from_centres(maps[0], maps[1], pixel_size_m=pixel_size_m, water=water, params=params,
                                       nodata=nodata)
    if len(maps) != 1:
        raise ValueError(f"{len(maps)} probability maps; expected 1 (ship outline) or 2 (outline and ship centres)")
    return detections_from_probability(maps[0], pixel_size_m=pixel_size_m, water=water, params=params,
                                       nodata=nodata)


def network_factors(pixel_size_m: float | tuple[float, float]) -> tuple[int, int]:
    """How many pixels (rows, columns) of an image are averaged into one pixel for the network: 1 at Sentinel-2
    scale, about ``NETWORK_PIXEL_M`` over the pixel size below ``RESAMPLE_BELOW_M`` (a 0.5 m image: 16 x 16)."""
    dy, dx = pixel_sides(pixel_size_m)
    if max(dy, dx) >= RESAMPLE_BELOW_M:
        return 1, 1
    return max(1, round(NETWORK_PIXEL_M / dy)), max(1, round(NETWORK_PIXEL_M / dx))


def block_means(bands: Mapping[str, np.ndarray], nodata: np.ndarray, water: np.ndarray | None, fy: int, fx: int
                ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The bands averaged over blocks of ``fy`` x ``fx`` pixels (float32; no-data pixels left out of each mean; a
    block that is mostly no-data is no-data, 0 in every band), and the water mask as the blocks mostly water.
    The last block of a row or column may be partial."""
    h, w = nodata.shape
    hh, ww = -(-h // fy), -(-w // fx)

    def sums(a: np.ndarray) -> np.ndarray:
        padded = np.zeros((hh * fy, ww * fx), np.float32)
        padded[:h, :w] = a
        return padded.reshape(hh, fy, ww, fx).sum(axis=(1, 3), dtype=np.float64)

    data = ~np.asarray(nodata, bool)
    count = sums(data)
    # pixels each block holds inside the image (the last row and column of blocks may be partial)
    full = np.outer(np.minimum(fy, h - np.arange(hh) * fy), np.minimum(fx, w - np.arange(ww) * fx)).astype(float)
    kept = count >= 0.5 * full
    out = {}
    for name, band in bands.items():
        a = np.asarray(band, np.float32)
        total = sums(np.where(data, np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0), 0.0))
        out[name] = np.where(kept, total / np.maximum(count, 1.0), 0.0).astype(np.float32)
    wet = None if water is None else sums(np.asarray(water, bool)) >= 0.5 * full
    return out, wet


def detect_optical(
    bands: Mapping[str, np.ndarray],
    *,
    pixel_size_m: float | tuple[float, float],
    water: np.ndarray | None = None,
    model_path: Path | str = DEFAULT_MODEL,
    params: OpticalParams = OpticalParams(),
    valid: np.ndarray | None = None,
) -> list[Detection]:
    """Find ships in co-registered optical bands (names blue/green/red/nir), in pixel coordinates of the input.

    ``pixel_size_m`` is the ground pixel size (for EPSG:3857 Sentinel-2 crops: 10 m x cos(latitude)).
    ``valid``: the pixels the file says are data; no-data (:func:`optical_nodata`) and a rim along it give no ship.

    The network learned ships of 10-40 pixels on 6-9 m pixels; on finer images (under ``RESAMPLE_BELOW_M``: Planet
    SkySat, Maxar, aerial) a ship spans hundreds of pixels and it fired on texture, so such images are averaged to
    about ``NETWORK_PIXEL_M`` first (:func:`network_factors`), and the ships found there are given back in the
    input's pixels. Lengths are then measured on the averaged pixels (to about 8 m).
    """
    bands = without_nodata(bands, valid)
    fy, fx = network_factors(pixel_size_m)
    if (fy, fx) != (1, 1):
        dy, dx = pixel_sides(pixel_size_m)
        shape = band_shape(bands)  # checked on the image given, not on its averages
        if water is not None and np.shape(water) != shape:
            raise ValueError(f"water mask shape {np.shape(water)} differs from image shape {shape}")
        coarse, wet = block_means(bands, optical_nodata(bands), water, fy, fx)
        found = detect_optical(coarse, pixel_size_m=(dy * fy, dx * fx), water=wet,
                               model_path=model_path, params=params)
        return [replace(d, row=(d.row + 0.5) * fy - 0.5, col=(d.col + 0.5) * fx - 0.5) for d in found]
    maps = network_maps(optical_features(bands), model_path)
    if len(maps) > 2:
        raise ValueError(f"{model_path}: the network gives {len(maps)} maps; expected 1 (ship outline) or 2 "
                         "(outline and ship centres)")
    return detections_from_maps(maps, pixel_size_m=pixel_size_m, water=water, params=params,
                                nodata=optical_nodata(bands))
