"""Length, width and heading of a target from its pixels, in true ground metres.

The long axis comes from the second moments of the pixel cloud (robust to ragged SAR edges); the size is the
extent of the pixels projected on that axis and on its normal (the sides of the oriented bounding rectangle),
so a solid ``n``-pixel line measures ``n`` pixels, matching how a labelled outline's long axis is measured.
Pixel sizes must be ground sizes: a Web-Mercator (EPSG:3857) pixel of 10 m covers 10 m x cos(latitude).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Shape:
    """Oriented size of one target: metres along/across its long axis, heading clockwise from image-up, [0, 180)."""

    length_m: float
    width_m: float
    heading_deg: float


def pixel_sides(pixel_size_m: float | tuple[float, float]) -> tuple[float, float]:
    """(row size, column size) in metres of a pixel given as one size or as the two."""
    dy, dx = (pixel_size_m, pixel_size_m) if np.isscalar(pixel_size_m) else pixel_size_m  # type: ignore[misc]
    return float(dy), float(dx)


def measure_pixels(
    rows: np.ndarray, cols: np.ndarray, pixel_size_m: float | tuple[float, float], weights: np.ndarray | None = None
) -> Shape:
    """Measure a target from the (row, col) indices of its pixels.

    ``pixel_size_m`` is the ground size of a pixel, or (row size, column size) when pixels are not square.
    Measuring in metres (not pixels) keeps the axis right when pixels are not square.
    """
    dy, dx = pixel_sides(pixel_size_m)
    y = np.asarray(rows, dtype=float) * dy
    x = np.asarray(cols, dtype=float) * dx
    if y.size == 0:
        raise ValueError("cannot measure a target with no pixels")
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
    w = w / w.sum()
    my, mx = float((w * y).sum()), float((w * x).sum())
    cyy = float((w * (y - my) ** 2).sum())
    cxx = float((w * (x - mx) ** 2).sum())
    cxy = float((w * (x - mx) * (y - my)).sum())
    # Principal axis angle measured from the +x (column) axis, y pointing down the image.
    theta = 0.5 * math.atan2(2.0 * cxy, cxx - cyy)
    ux, uy = math.cos(theta), math.sin(theta)
    along = (x - mx) * ux + (y - my) * uy
    across = -(x - mx) * uy + (y - my) * ux
    # Extent of pixel centres plus one pixel footprint along each axis.
    foot_along = abs(ux) * dx + abs(uy) * dy
    foot_across = abs(uy) * dx + abs(ux) * dy
    length = float(along.max() - along.min()) + foot_along
    width = float(across.max() - across.min()) + foot_across
    if width > length:
        length, width = width, length
        ux, uy = -uy, ux
    # Heading clockwise from image-up: up is -y, right is +x.
    heading = math.degrees(math.atan2(ux, -uy)) % 180.0
    return Shape(length_m=length, width_m=width, heading_deg=heading)


def measure_mask(mask: np.ndarray, pixel_size_m: float | tuple[float, float]) -> Shape:
    """Measure the single target drawn as ``True`` pixels in ``mask``."""
    rows, cols = np.nonzero(mask)
    return measure_pixels(rows, cols, pixel_size_m)


def ground_pixel_size(transform: Any, crs: Any, shape: tuple[int, int]) -> tuple[float, float]:
    """Ground size in metres of one pixel (along rows, along columns) at the centre of a georeferenced image.

    Uses geodesic distances (WGS84) between neighbouring pixel centres, so any CRS works: for EPSG:3857 this
    gives the nominal size times cos(latitude), for UTM nearly the nominal size.
    """
    from pyproj import CRS, Geod, Transformer

    r0, c0 = shape[0] / 2.0, shape[1] / 2.0
    pts = [(c0, r0), (c0 + 1.0, r0), (c0, r0 + 1.0)]
    xy = [(transform.c + transform.a * c + transform.b * r, transform.f + transform.d * c + transform.e * r) for c, r in pts]
    src = CRS.from_user_input(crs)
    if src.is_geographic and src.equals(CRS.from_epsg(4326)):
        ll = xy
    else:
        tr = Transformer.from_crs(src, CRS.from_epsg(4326), always_xy=True)
        ll = [tr.transform(x, y) for x, y in xy]
    geod = Geod(ellps="WGS84")
    _, _, d_col = geod.inv(ll[0][0], ll[0][1], ll[1][0], ll[1][1])
    _, _, d_row = geod.inv(ll[0][0], ll[0][1], ll[2][0], ll[2][1])
    return float(d_row), float(d_col)


def to_ground_sizes(found: list[Any], pixel_size_m: float, sizes: tuple[float, float]) -> list[Any]:
    """Lengths and widths measured with one pixel size, on a grid whose rows and columns differ on the ground (a
    lon/lat grid away from the equator), as true metres: each axis's pixel extent, scaled along its direction. The
    heading stays in the image's frame (it is turned to true north through the grid when located)."""
    sr, sc = sizes
    if not found or abs(sr / sc - 1.0) < 0.01:
        return found
    out = []
    for d in found:
        th = math.radians(d.heading_deg)
        along, across = d.length_m / pixel_size_m, d.width_m / pixel_size_m  # pixels
        out.append(dataclasses.replace(d, length_m=along * math.hypot(math.cos(th) * sr, math.sin(th) * sc),
                           width_m=across * math.hypot(math.sin(th) * sr, math.cos(th) * sc)))
    return out
