"""SAR azimuth ambiguities: ghosts of a bright target displaced along track, taken for ships by any CFAR.

A SAR samples the Doppler spectrum at its pulse repetition frequency (PRF), so energy from beyond the processed
band folds back as a faint copy of every bright target displaced along track (azimuth) by

    dx = lambda * R * PRF / (2 * V)

(wavelength, slant range, the satellite's orbital speed: the Doppler rate's effective speed squared is about
the orbital speed times the ground speed, and the ghost moves at ground speed). For Sentinel-1 IW (C band,
5.55 cm; slant range about 800-950 km; PRF 1,717, 1,452 and 1,686 Hz in sub-swaths 1-3; 7.5 km/s) that is about
5.0-5.3 km in IW1, 4.5-4.8 km in IW2 and 5.6-5.9 km in IW3, on either side, at the same range, about 20-25 dB
below the target (the mission's azimuth-ambiguity-to-signal ratio is specified at -22 dB or better). A loud ship,
a port's cranes or a bridge on land thus put ghosts on the water 4.5-6 km up and down track: at a port they are
the classic false ship, and a false ship makes a false call.

The check works in the image's own geometry, where rows are azimuth lines (a GRD located by its ground control
points; a terrain-corrected, north-up product turns the track by the orbit's heading and is not checked). A
detection is taken for an ambiguity when the image holds, 4.2-6.2 km along its column either way (within a few
pixels across; the sub-swath of a column is not known here, so the window spans all three), a return at least
``min_ratio_db`` brighter than the brightest pixel of the detection's own footprint (its length, width and
heading): a real ship 15 dB fainter than something exactly one ambiguity distance along track is rare, a ghost
is never brighter than 15 dB below its source. The source may be on land (it usually is at a port), so the image
itself is read, not the list of detections.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from routewatch.detect.sar import true_runs

# (r0, r1, c0, c1) -> the image's values in rows r0..r1-1, columns c0..c1-1, clipped to the image (None: nothing)
Reader = Callable[[int, int, int, int], np.ndarray | None]


@dataclass(frozen=True)
class AmbiguityGeometry:
    """Where a sensor's first azimuth ambiguities fall and how faint they are."""

    name: str
    offset_m: tuple[float, float]  # along-track distance range of the first ambiguities, metres, either side
    min_ratio_db: float = 15.0  # the source must be at least this much brighter than the detection (power dB)
    across_px: int = 3  # search half-width across track, pixels (range migration, the source's own extent)


#: Sentinel-1 IW: 4.5-5.9 km computed for its three sub-swaths, searched with a margin.
SENTINEL1_IW = AmbiguityGeometry("Sentinel-1 IW", (4200.0, 6200.0))
#: How far along track beyond a site an image must reach for its detections to be checked (a fetched window).
AMBIGUITY_REACH_M = SENTINEL1_IW.offset_m[1] + 100.0


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


_S1_MODES = {"iw", "ew", "sm", "wv", "s1", "s2", "s3", "s4", "s5", "s6"}


def sentinel1_mode(name: str) -> str | None:
    """The Sentinel-1 acquisition mode a product or file name states (``S1A_IW_GRDH_...``,
    ``s1a-iw-grd-vv-...``): ``IW``, ``EW``, ``SM`` (or ``S1``-``S6``) or ``WV``, the word right after a mission
    word (``s1``, ``s1a``-``s1d``); None when the name is not one of a Sentinel-1 product. The file's own
    name first, then its folders (a SAFE product's measurement file)."""
    for text in (Path(name).name, str(name)):
        words = [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w]
        for k, w in enumerate(words):
            if w in ("s1", "s1a", "s1b", "s1c", "s1d") and k + 1 < len(words) and words[k + 1] in _S1_MODES:
                return words[k + 1].upper()
    return None


def array_reader(image: np.ndarray, valid: np.ndarray | None = None) -> Reader:
    """A :data:`Reader` over an array held in memory; ``valid`` (same shape) marks its data (the rest reads as
    NaN: a file's tagged no-data)."""
    img = np.asarray(image)
    h, w = img.shape[:2]

    def read(r0: int, r1: int, c0: int, c1: int) -> np.ndarray | None:
        r0, r1, c0, c1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
        if r1 <= r0 or c1 <= c0:
            return None
        part = img[r0:r1, c0:c1]
        if valid is None:
            return part
        return np.where(valid[r0:r1, c0:c1], part.astype(np.float64), np.nan)

    return read


SEEN_LINES = 0.9  # share of a search strip's lines with data (about the detection's column) for the side to count
SEEN_GAP_LINES = 5  # ...with no more lines of no-data in a row than this (a source could hide in a longer gap)


def _footprint_peak(d: Any, read: Reader, r: int, c: int, pixel_m: float) -> float | None:
    """The brightest finite value of a detection's footprint: its oriented rectangle (length, width, heading from
    image-up) around its centre, at least the 5 x 5 pixels about it (the centroid of a long hull can be its dim
    deck, and a tanker had been taken for the ghost of a crane 12 dB brighter than its bridge)."""
    half_l = max(float(getattr(d, "length_m", 0.0) or 0.0) / 2.0 / pixel_m, 2.0)
    half_w = max(float(getattr(d, "width_m", 0.0) or 0.0) / 2.0 / pixel_m, 2.0)
    t = math.radians(float(getattr(d, "heading_deg", 0.0) or 0.0))
    reach = math.ceil(max(half_l, half_w)) + 1
    box = read(r - reach, r + reach + 1, c - reach, c + reach + 1)
    if box is None or box.size == 0:
        return None
    r0, c0 = max(r - reach, 0), max(c - reach, 0)
    gy, gx = np.mgrid[r0:r0 + box.shape[0], c0:c0 + box.shape[1]]
    dx, dy = gx - c, -(gy - r)  # east (right) and north (up) of the centre
    along = dx * math.sin(t) + dy * math.cos(t)
    across = dx * math.cos(t) - dy * math.sin(t)
    inside = ((np.abs(along) <= half_l + 0.5) & (np.abs(across) <= half_w + 0.5)) | (
        (np.abs(gy - r) <= 2) & (np.abs(gx - c) <= 2))
    vals = box.astype(np.float64)[inside]
    vals = vals[np.isfinite(vals) & (vals > 0)]
    return float(vals.max()) if vals.size else None


def find_ambiguities(detections: Sequence[Any], read: Reader, *, azimuth_pixel_m: float,
                     geometry: AmbiguityGeometry = SENTINEL1_IW, values: str = "amplitude",
                     offset: tuple[int, int] = (0, 0), pixel_m: float | None = None,
                     unchecked: list[int] | None = None) -> dict[int, Ambiguity]:
    """The detections (by index) that are azimuth ambiguities of a brighter return along their column.

    ``read`` gives the image's values (rows are azimuth lines, ``azimuth_pixel_m`` apart); detection pixels are
    ``offset`` (rows, cols) from the reader's (a window of a file read on its own). ``values``: ``amplitude`` or
    ``intensity`` (power), for the dB of the ratio. ``pixel_m``: the ground pixel the detections' lengths were
    measured on (their footprints), ``azimuth_pixel_m`` when not given. ``unchecked`` (when given) gets the
    detections without a ghost's source found that could not be checked on both sides: a search strip does not lie
    wholly in the image (a file cut to the site's window, a detection within 6.2 km of its end), or fewer than
    SEEN_LINES of its lines hold data about the detection's column (a swath's no-data: NaN, or 0 as a GRD's fill),
    or more than SEEN_GAP_LINES in a row are no-data (NaN: a patch of calm sea clipped to 0 hides no source); or
    the detection has no value of its own."""
    if azimuth_pixel_m <= 0:
        raise ValueError(f"azimuth_pixel_m must be positive, got {azimuth_pixel_m}")
    per_db = 20.0 if values == "amplitude" else 10.0
    near, far = (math.floor(m / azimuth_pixel_m) for m in geometry.offset_m)
    a = geometry.across_px
    out: dict[int, Ambiguity] = {}
    for i, d in enumerate(detections):
        r, c = round(d.row) + offset[0], round(d.col) + offset[1]
        peak = _footprint_peak(d, read, r, c, pixel_m or azimuth_pixel_m)
        if peak is None or not peak > 0:
            if unchecked is not None:
                unchecked.append(i)
            continue
        best: Ambiguity | None = None
        seen = 0
        for sign in (-1, 1):
            r0, r1 = (r - far, r - near + 1) if sign < 0 else (r + near, r + far + 1)
            strip = read(r0, r1, c - a, c + a + 1)
            if strip is None or strip.size == 0:
                continue
            s = strip.astype(np.float64)
            known = np.isfinite(s)  # NaN: the file's no-data (tagged, or a float fill)
            finite = known & (s > 0)  # and 0: a GRD's fill beyond its swath (uint16, untagged), or clipped calm sea
            # this side is seen when its whole strip lies in the image and nearly every line holds data about the
            # detection's own column (a seam line, or calm water clipped to 0 in a noise-subtracted product, is
            # no reason to call a mid-scene detection unchecked; fill beside the column is)
            cs = c - max(c - a, 0)  # the detection's column in the strip
            lines = finite[:, max(cs - 1, 0):cs + 2].any(axis=1)
            tagged_gap = ~known[:, max(cs - 1, 0):cs + 2].any(axis=1)  # a patch of calm sea at 0 hides no source
            if r0 >= 0 and strip.shape[0] == r1 - r0 and lines.size and lines.mean() >= SEEN_LINES \
                    and not (true_runs(tagged_gap) > SEEN_GAP_LINES).any():
                seen += 1
            if not finite.any():  # no data there (a swath's NaN fill)
                continue
            k = int(np.argmax(np.where(finite, s, -np.inf)))
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
        elif seen < 2 and unchecked is not None:  # the source may lie on the side the image does not hold
            unchecked.append(i)
    return out


def mark_ambiguities(detections: Sequence[Any], found: dict[int, Ambiguity]) -> list[Any]:
    """Copies of the detections with ``ambiguity`` set on the ghosts (their reason), the others unchanged."""
    return [replace(d, ambiguity=found[i].describe()) if i in found else d for i, d in enumerate(detections)]
