"""SAR azimuth ambiguities: ghosts of a bright target displaced along track, taken for ships by any CFAR.

A SAR samples the Doppler spectrum at its pulse repetition frequency (PRF), so energy from beyond the processed
band folds back as a faint copy of every bright target displaced along track (azimuth) by

    dx = lambda * R * PRF / (2 * V)

(wavelength, slant range, platform speed). For Sentinel-1 IW (C band, 5.55 cm; slant range 800-1000 km; PRF
1,450-1,720 Hz by sub-swath; about 7.1 km/s effective speed) that is 5.0-6.5 km, on either side, at the same
range, about 20-25 dB below the target (the mission's azimuth-ambiguity-to-signal ratio is specified at -22 dB or
better). A loud ship, a port's cranes or a bridge on land thus put ghosts on the water 5-6.5 km up and down
track: at a port they are the classic false ship, and a false ship makes a false call.

The check works in the image's own geometry, where rows are azimuth lines (a GRD located by its ground control
points; a terrain-corrected, north-up product turns the track by the orbit's heading and is not checked). A
detection is taken for an ambiguity when the image holds, 4.5-7 km along its column either way (within a few
pixels across), a return at least ``min_ratio_db`` brighter than the detection's own peak: a real ship 15 dB
fainter than something exactly one ambiguity distance along track is rare, a ghost is never brighter than 15 dB
below its source. The source may be on land (it usually is at a port), so the image itself is read, not the list
of detections.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

# (r0, r1, c0, c1) -> the image's values in rows r0..r1-1, columns c0..c1-1, clipped to the image (None: nothing)
Reader = Callable[[int, int, int, int], np.ndarray | None]


@dataclass(frozen=True)
class AmbiguityGeometry:
    """Where a sensor's first azimuth ambiguities fall and how faint they are."""

    name: str
    offset_m: tuple[float, float]  # along-track distance range of the first ambiguities, metres, either side
    min_ratio_db: float = 15.0  # the source must be at least this much brighter than the detection (power dB)
    across_px: int = 3  # search half-width across track, pixels (range migration, the source's own extent)


#: Sentinel-1 IW: 5.0-6.5 km computed for its three sub-swaths, searched with a margin.
SENTINEL1_IW = AmbiguityGeometry("Sentinel-1 IW", (4500.0, 7000.0))


@dataclass(frozen=True)
class Ambiguity:
    """What makes a detection a ghost: its source's pixel, how much brighter it is, how far along track."""

    source_row: int
    source_col: int
    ratio_db: float
    offset_m: float

    def describe(self) -> str:
        return (f"azimuth ambiguity: a return {self.ratio_db:.0f} dB brighter {self.offset_m / 1000:.1f} km along "
                f"track (pixel {self.source_row}, {self.source_col})")


def array_reader(image: np.ndarray) -> Reader:
    """A :data:`Reader` over an array held in memory."""
    img = np.asarray(image)
    h, w = img.shape[:2]

    def read(r0: int, r1: int, c0: int, c1: int) -> np.ndarray | None:
        r0, r1, c0, c1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
        return img[r0:r1, c0:c1] if r1 > r0 and c1 > c0 else None

    return read


def find_ambiguities(detections: Sequence[Any], read: Reader, *, azimuth_pixel_m: float,
                     geometry: AmbiguityGeometry = SENTINEL1_IW, values: str = "amplitude",
                     offset: tuple[int, int] = (0, 0)) -> dict[int, Ambiguity]:
    """The detections (by index) that are azimuth ambiguities of a brighter return along their column.

    ``read`` gives the image's values (rows are azimuth lines, ``azimuth_pixel_m`` apart); detection pixels are
    ``offset`` (rows, cols) from the reader's (a window of a file read on its own). ``values``: ``amplitude`` or
    ``intensity`` (power), for the dB of the ratio."""
    if azimuth_pixel_m <= 0:
        raise ValueError(f"azimuth_pixel_m must be positive, got {azimuth_pixel_m}")
    per_db = 20.0 if values == "amplitude" else 10.0
    near, far = (math.floor(m / azimuth_pixel_m) for m in geometry.offset_m)
    a = geometry.across_px
    out: dict[int, Ambiguity] = {}
    for i, d in enumerate(detections):
        r, c = round(d.row) + offset[0], round(d.col) + offset[1]
        own = read(r - 2, r + 3, c - 2, c + 3)
        if own is None or own.size == 0:
            continue
        peak = float(np.nanmax(own.astype(np.float64)))
        if not peak > 0:
            continue
        best: Ambiguity | None = None
        for sign in (-1, 1):
            r0, r1 = (r - far, r - near + 1) if sign < 0 else (r + near, r + far + 1)
            strip = read(r0, r1, c - a, c + a + 1)
            if strip is None or strip.size == 0:
                continue
            s = strip.astype(np.float64)
            k = int(np.nanargmax(s))
            top = float(s.flat[k])
            if not top > peak:
                continue
            ratio_db = per_db * math.log10(top / peak)
            if ratio_db < geometry.min_ratio_db:
                continue
            sr, sc = divmod(k, s.shape[1])
            src_row, src_col = max(r0, 0) + sr, max(c - a, 0) + sc
            cand = Ambiguity(src_row - offset[0], src_col - offset[1], round(ratio_db, 1),
                             round(abs(src_row - r) * azimuth_pixel_m, 0))
            if best is None or cand.ratio_db > best.ratio_db:
                best = cand
        if best is not None:
            out[i] = best
    return out


def mark_ambiguities(detections: Sequence[Any], found: dict[int, Ambiguity]) -> list[Any]:
    """Copies of the detections with ``ambiguity`` set on the ghosts (their reason), the others unchanged."""
    return [replace(d, ambiguity=found[i].describe()) if i in found else d for i, d in enumerate(detections)]
