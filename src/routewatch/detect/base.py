"""The detection record every detector returns, and the helper that puts it on the map.

Detectors work in the pixel grid of the image they are given (so they do not care about the CRS); the
georeference is applied afterwards, once, by :func:`attach_lonlat`, which the CLI and the scene pipeline share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np


@dataclass
class Detection:
    """One ship found in one image.

    ``row``/``col`` are the target centroid in pixel coordinates of the input image (fractional, pixel centres at
    ``.5`` offsets are *not* added: row 0.0 is the centre of the first row). Lengths are true ground metres,
    ``heading_deg`` is the long-axis direction clockwise from image-up (grid north for north-up rasters), in
    [0, 180) because a silhouette cannot tell bow from stern. ``score`` is in [0, 1]. ``ambiguity`` says why the
    detection is taken for a SAR azimuth ambiguity (a ghost of a brighter return along track), when it is one.
    """

    row: float
    col: float
    length_m: float
    width_m: float
    heading_deg: float
    score: float
    lon: float | None = None
    lat: float | None = None
    chip_png: bytes | None = None
    ambiguity: str | None = None


def pixel_to_lonlat(
    rows: Sequence[float] | np.ndarray, cols: Sequence[float] | np.ndarray, transform: Any, crs: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Map pixel centres (row, col) through a rasterio affine transform and CRS to WGS84 lon/lat degrees."""
    from pyproj import CRS, Transformer

    r = np.asarray(rows, dtype=float) + 0.5
    c = np.asarray(cols, dtype=float) + 0.5
    xs = transform.c + transform.a * c + transform.b * r
    ys = transform.f + transform.d * c + transform.e * r
    src = CRS.from_user_input(crs)
    if src.equals(CRS.from_epsg(4326)):
        return xs, ys
    tr = Transformer.from_crs(src, CRS.from_epsg(4326), always_xy=True)
    lon, lat = tr.transform(xs, ys)
    return np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)


def attach_lonlat(detections: Sequence[Detection], transform: Any, crs: Any) -> list[Detection]:
    """Return copies of ``detections`` with lon/lat filled from the image's affine ``transform`` and ``crs``.

    ``crs`` is anything pyproj accepts (a rasterio CRS, ``"EPSG:3857"``, WKT).
    """
    if not detections:
        return []
    lon, lat = pixel_to_lonlat([d.row for d in detections], [d.col for d in detections], transform, crs)
    return [replace(d, lon=float(x), lat=float(y)) for d, x, y in zip(detections, lon, lat, strict=True)]


CHIP_SHOWS = 1.5  # a chip spans this many times the ship's length, so that the whole hull and water around show
CHIP_CUT_MAX_PX = 2048  # ...at most this many pixels of the image (a 1 km ship at 0.75 m)
CHIP_WRITTEN_MAX_PX = 128  # a wider cut is shrunk to this (fine pixels: a 200 m ship at 0.5 m is cut 600 px wide)


def chip_side_px(length_m: float, pixel_size_m: float | tuple[float, float] | None, least: int) -> int:
    """The side, in image pixels, of the square cut for a ship's chip: ``least`` (the chip of a 10 m image), or
    wider on fine pixels, where ``least`` pixels had shown 24 m of a 200 m ship."""
    if pixel_size_m is None:
        return least
    px = float(np.min(pixel_size_m))
    if not np.isfinite(px) or px <= 0 or not np.isfinite(length_m):
        return least
    return int(max(least, min(CHIP_CUT_MAX_PX, np.ceil(CHIP_SHOWS * length_m / px))))


def shrunk_chip(chip: np.ndarray) -> np.ndarray:
    """An 8-bit chip cut wider than ``CHIP_WRITTEN_MAX_PX`` brought down to it (area averaging)."""
    if chip.shape[0] <= CHIP_WRITTEN_MAX_PX:
        return chip
    from PIL import Image

    side = CHIP_WRITTEN_MAX_PX
    return np.asarray(Image.fromarray(chip).resize((side, side), Image.Resampling.BOX))


def chip_png(image: np.ndarray, row: float, col: float, size: int = 48) -> bytes:
    """An 8-bit PNG of ``size`` x ``size`` pixels centred on (row, col), contrast-stretched on its own pixels
    (shrunk to ``CHIP_WRITTEN_MAX_PX`` when wider).

    ``image`` is (H, W) or (H, W, 3); edges are padded with black so every chip has the same size.
    """
    import io

    from PIL import Image

    img = np.asarray(image)
    half = size // 2
    r0, c0 = round(row) - half, round(col) - half
    out = np.zeros((size, size, *img.shape[2:]), np.float32)
    rs, cs = max(0, r0), max(0, c0)
    re, ce = min(img.shape[0], r0 + size), min(img.shape[1], c0 + size)
    if re > rs and ce > cs:
        out[rs - r0 : re - r0, cs - c0 : ce - c0] = img[rs:re, cs:ce]
    lo, hi = np.percentile(out, [1, 99.5]) if out.any() else (0.0, 1.0)
    u8 = np.clip((out - lo) / max(float(hi - lo), 1e-6) * 255, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(shrunk_chip(u8)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def add_chips(detections: Sequence[Detection], image: np.ndarray, size: int = 48,
              pixel_size_m: float | tuple[float, float] | None = None) -> list[Detection]:
    """Copies of ``detections`` with ``chip_png`` cut from ``image`` (a band, or an RGB rendering): ``size``
    pixels square, or wider to show the whole ship when ``pixel_size_m`` says the pixels are fine."""
    return [replace(d, chip_png=chip_png(image, d.row, d.col, chip_side_px(d.length_m, pixel_size_m, size)))
            for d in detections]


def to_geojson(detections: Sequence[Detection], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """GeoJSON FeatureCollection: Point lon/lat when known, else pixel (col, row) with a note saying so.

    ``meta`` (image, pixel size, detector) goes in the collection's ``routewatch`` member so that
    ``evaluate detections`` can recover the ground scale.
    """
    feats = []
    georef = all(d.lon is not None and d.lat is not None for d in detections) and bool(detections)
    for i, d in enumerate(detections):
        props: dict[str, Any] = {
            "id": i, "row": round(d.row, 2), "col": round(d.col, 2), "length_m": round(d.length_m, 1),
            "width_m": round(d.width_m, 1), "heading_deg": round(d.heading_deg, 1), "score": round(d.score, 4),
        }
        if d.ambiguity:
            props["ambiguity"] = d.ambiguity
        if georef:
            geom = {"type": "Point", "coordinates": [round(float(d.lon), 7), round(float(d.lat), 7)]}  # type: ignore[arg-type]
        else:
            geom = {"type": "Point", "coordinates": [round(d.col, 2), round(d.row, 2)]}
            props["note"] = "pixel coordinates (x = col, y = row): the image has no georeference"
        feats.append({"type": "Feature", "geometry": geom, "properties": props})
    return {"type": "FeatureCollection", "routewatch": dict(meta or {}), "features": feats}


def read_geojson(data: dict[str, Any], source: str = "<geojson>") -> tuple[list[Detection], dict[str, Any]]:
    """Detections (pixel row/col from the properties) and the ``routewatch`` metadata of a collection."""
    if data.get("type") != "FeatureCollection":
        raise ValueError(f"{source}: not a GeoJSON FeatureCollection")
    out = []
    for i, f in enumerate(data.get("features", [])):
        p = f.get("properties") or {}
        try:
            out.append(Detection(
                row=float(p["row"]), col=float(p["col"]), length_m=float(p.get("length_m", 0.0)),
                width_m=float(p.get("width_m", 0.0)), heading_deg=float(p.get("heading_deg", 0.0)),
                score=float(p.get("score", 1.0)), ambiguity=p.get("ambiguity") or None,
            ))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: feature {i} lacks numeric 'row'/'col' properties ({exc})") from exc
    return out, dict(data.get("routewatch") or {})
