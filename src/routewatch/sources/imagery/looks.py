"""Looks: how much of a site's water one scene imaged, and how likely it was to show a vessel of a given length.

The usable fraction of a look is ``clear site water / expected site water``, where

* site water is the site polygon intersected with the water mask (user polygons, else derived from the image);
* clear means imaged (inside the grid, not no-data) and not cloud or cloud shadow (Sentinel-2 SCL classes
  3 shadow, 8 and 9 cloud, 10 thin cirrus) when the product says so;
* the expected site water also counts the part of the site that is outside the image or hidden (no-data, cloud):
  with a user polygon that part is known exactly; with an image-derived mask it is estimated by assuming the hidden
  part of the site holds water in the same share as the visible part.

The detection model of a look is the sensor's logistic curve in vessel length (``model.SENSOR_DETECTION``),
rescaled to the scene's actual resolution; see docs/coverage.md for the numbers and how they were calibrated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from routewatch.model import SENSOR_DETECTION, DetectionModel

SCL_CLOUDY = (3, 8, 9, 10)  # cloud shadow, cloud medium/high probability, thin cirrus
# No data. Class 1 (saturated or defective) is not: a bright steel deck saturates, and the detector leaves out any
# region touching no-data, so a saturated ship would be lost; it was imaged, and counts as seen.
SCL_NODATA = (0,)

# nominal pixel size (metres) that the SENSOR_DETECTION priors refer to
_NOMINAL_RES_M = {
    "sentinel-1": 10.0,
    "sentinel-2": 10.0,
    "planetscope": 3.0,
    "skysat": 0.8,
    "airbus": 0.5,
    "maxar": 0.5,
}


def sensor_family(sensor: str) -> str:
    """The SENSOR_DETECTION key for a sensor name ("simulated-sar" -> "sentinel-1", "s2" -> "sentinel-2")."""
    s = sensor.lower()
    if s in SENSOR_DETECTION:
        return s
    if "sentinel-1" in s or s in ("s1", "sar") or s.endswith("-sar") or "sar" in s.split("-"):
        return "sentinel-1"
    if "sentinel-2" in s or s in ("s2", "optical") or s.endswith("-optical"):
        return "sentinel-2"
    for key in SENSOR_DETECTION:
        if key in s:
            return key
    return s


def is_sar(sensor: str) -> bool:
    """True for radar sensors (chooses the detector and the water-mask method)."""
    s = sensor.lower()
    return sensor_family(s) == "sentinel-1" or "sar" in s or s in ("iceye", "capella", "umbra")


def detection_model_for(sensor: str, resolution_m: float | None) -> DetectionModel:
    """The detection-probability curve for a look by this sensor at this ground pixel size.

    A known sensor keeps its prior shape, scaled by resolution / nominal resolution when coarser than nominal (a
    vessel needs about the same number of resolution cells to be seen). An unknown sensor gets l50 = 4.5 pixels, scale = 1 pixel.
    """
    fam = sensor_family(sensor)
    prior = SENSOR_DETECTION.get(fam)
    if prior is None:
        res = resolution_m if resolution_m and resolution_m > 0 else 3.0
        return DetectionModel(l50_m=4.5 * res, scale_m=1.0 * res, p_max=0.95)
    nominal = _NOMINAL_RES_M.get(fam)
    if not resolution_m or not nominal or resolution_m <= 0:
        return prior
    # a product resampled finer than the sensor (sen2ships: 10 m Web Mercator = 5.8 m at 54 N) does not see more
    ratio = max(resolution_m / nominal, 1.0)
    if ratio < 1.15:
        return prior
    return _stretched(prior, ratio)


def _stretched(model: DetectionModel, ratio: float) -> DetectionModel:
    """The curve for pixels ``ratio`` times coarser: a vessel needs as many resolution cells to be seen."""
    return DetectionModel(l50_m=model.l50_m * ratio, scale_m=model.scale_m * ratio, p_max=model.p_max)


# What the *automatic* detectors achieve at a port, measured (docs/coverage.md). A look made by a detector never
# claims more than this, whatever the sensor's prior: the judgement then weighs an empty automatic look as the
# weak evidence it is.
# SAR: a ceiling on p_max from the simulation calibration (ships at berths merge with quays unless the user gives
# water polygons).
AUTOMATIC_P_MAX: dict[tuple[str, bool], float] = {
    ("sar", True): 0.99,  # SAR, user water polygons (every simulated ship of 100 m and more found: no real cap)
    ("sar", False): 0.47,  # SAR, water mask derived from the image
}
# Optical: the packaged network's whole curve in vessel length, fitted (``fit_detection_model``) to the held-out
# outcomes of the 211 labelled ships on the eight real sen2ships ports, each port scored by a network trained on
# the other seven with the shipped post-processing (``python -m routewatch.detect.train --detection-curve MAPS``).
# Port-bootstrap 90 % intervals: l50 0-145 m, scale 40-200 m, p_max 0.73-1.0 (the l50 and scale ends are the
# fitter's bounds: the data do not pin the curve's shape down). Recall by length there: 0.34 at
# 75-125 m, 0.59-0.61 at 125-225 m, 0.79 above 225 m. Measured on 10 m Sentinel-2 pixels; coarser images stretch the
# curve by the resolution ratio, finer ones get no credit (the network was trained at 10 m).
OPTICAL_DETECTOR_CURVE = DetectionModel(l50_m=102.2, scale_m=67.2, p_max=0.806)
OPTICAL_DETECTOR_RES_M = 10.0


def automatic_detection_model(model: DetectionModel, kind: str, user_water: bool,
                              resolution_m: float | None = None) -> DetectionModel:
    """The detection curve of a look made by the packaged detector: the sensor's curve, held to what the detector
    was measured to achieve (SAR: ``AUTOMATIC_P_MAX``; optical: ``OPTICAL_DETECTOR_CURVE``).

    For optical looks the result is the curve with the later midpoint (with the sensor priors, always the
    detector's) with the lower of the two ceilings. One logistic cannot follow the lower of two curves
    everywhere: the detector's fitted curve is flat (scale 67 m), so for small vessels its tail lies above a
    steep sensor prior (below 32 m for Sentinel-2, by at most 0.14). That tail is an extrapolation (11 labelled
    ships under 75 m) for vessels far shorter than a route's ships; at every length of 35 m and more the result is
    at or below both curves.
    """
    if kind == "optical":
        ratio = max((resolution_m or OPTICAL_DETECTOR_RES_M) / OPTICAL_DETECTOR_RES_M, 1.0)
        measured = _stretched(OPTICAL_DETECTOR_CURVE, ratio)
        later = measured if measured.l50_m >= model.l50_m else model
        return DetectionModel(l50_m=later.l50_m, scale_m=later.scale_m, p_max=min(model.p_max, measured.p_max))
    ceiling = AUTOMATIC_P_MAX.get((kind, user_water))
    if ceiling is None or model.p_max <= ceiling:
        return model
    return DetectionModel(l50_m=model.l50_m, scale_m=model.scale_m, p_max=ceiling)


@dataclass(frozen=True)
class UsableFraction:
    """The usable fraction of a look and what it was made of (pixel counts of the site's water)."""

    fraction: float
    water_px: float
    clear_water_px: int
    cloud_px: int
    nodata_px: int
    outside_fraction: float
    reason: str = ""


def usable_fraction(site_in_grid: np.ndarray, site_outside_fraction: float, water: np.ndarray, valid: np.ndarray,
                    cloud: np.ndarray | None = None, water_known_everywhere: bool = False,
                    water_outside_px: float | None = None, expected_water: np.ndarray | None = None
                    ) -> UsableFraction:
    """Share of the site's water imaged clear of cloud and no-data.

    ``site_in_grid``: site pixels inside the image grid; ``site_outside_fraction``: share of the site area outside
    the grid (0..1); ``water``: water mask; ``valid``: pixel has data; ``cloud``: cloud/shadow mask or None.
    ``water_known_everywhere``: the water mask comes from polygons, so water under cloud/no-data is known;
    ``water_outside_px``: with polygons, the site's water outside the grid in pixel units (known exactly from the
    polygons; otherwise the share inside is taken for the part outside too). ``expected_water``: the water the
    site holds when that is known apart from ``water`` (an anchorage is water throughout): ``water`` is then only
    what was searched, and water it leaves out is not imaged.
    """
    cloud = np.zeros_like(valid) if cloud is None else cloud
    site_in_grid = site_in_grid.astype(bool)
    hidden = site_in_grid & (~valid | cloud)
    seen = site_in_grid & valid & ~cloud
    clear_water = int((seen & water).sum())
    n_site = int(site_in_grid.sum())
    cloud_px = int((site_in_grid & valid & cloud).sum())
    nodata_px = int((site_in_grid & ~valid).sum())
    if n_site == 0:
        return UsableFraction(0.0, 0.0, 0, 0, 0, 1.0, "site is not in the image")
    if expected_water is not None:
        water_in_grid = float((site_in_grid & expected_water).sum())
        share_out = water_in_grid / n_site
    elif water_known_everywhere:
        water_in_grid = float((site_in_grid & water).sum())
        share_out = water_in_grid / n_site if n_site else 0.0
    else:
        n_seen = int(seen.sum())
        share_out = clear_water / n_seen if n_seen else 0.0
        water_in_grid = clear_water + share_out * int(hidden.sum())
    outside = min(max(site_outside_fraction, 0.0), 1.0)
    # site pixels outside the grid, in pixel units, with the same water share
    outside_px = n_site * outside / max(1.0 - outside, 1e-9) if outside < 1.0 else 0.0
    if expected_water is None and water_known_everywhere and water_outside_px is not None:
        expected = water_in_grid + max(water_outside_px, 0.0)
    else:
        expected = water_in_grid + share_out * outside_px
    if expected <= 0:
        reason = "no water imaged in the site (empty water mask)" if n_site else "site is not in the image"
        if int(seen.sum()) == 0:
            reason = "no clear pixel over the site (all cloud or no data)"
        return UsableFraction(0.0, 0.0, 0, cloud_px, nodata_px, outside, reason)
    frac = min(clear_water / expected, 1.0)
    reason = ""
    if frac == 0.0:
        reason = "all of the site's water is under cloud or no-data"
    return UsableFraction(float(frac), float(expected), clear_water, cloud_px, nodata_px, outside, reason)


def scl_cloud(scl: np.ndarray) -> np.ndarray:
    """Cloud and cloud-shadow pixels from a Sentinel-2 scene classification layer."""
    return np.isin(scl, SCL_CLOUDY)


def fit_detection_model(lengths_m: Sequence[float], detected: Sequence[bool], p_max: float | None = None
                        ) -> DetectionModel:
    """Maximum-likelihood logistic curve p(L) = p_max / (1 + exp(-(L - l50) / scale)) from labelled outcomes.

    This is how the curves in docs/coverage.md are calibrated: simulated ships of known length through the
    detector, and the real labelled ports (each truth ship detected or not under the xView3 matching rule).
    """
    from scipy.optimize import minimize

    x = np.asarray(lengths_m, dtype=float)
    y = np.asarray(detected, dtype=float)
    if x.size < 5 or (y.min() == y.max() and x.size < 20):
        raise ValueError("need at least 5 outcomes with both detections and misses to fit a detection model")

    def nll(theta: np.ndarray) -> float:
        l50, log_s = theta[0], theta[1]
        pm = p_max if p_max is not None else 1.0 / (1.0 + math.exp(-theta[2]))
        z = np.clip((x - l50) / math.exp(log_s), -50, 50)
        p = np.clip(pm / (1.0 + np.exp(-z)), 1e-6, 1 - 1e-6)
        return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum())

    start = [float(np.median(x)), math.log(max(np.std(x) / 4, 1.0))] + ([] if p_max is not None else [3.0])
    # bounded, so that a flat outcome (every length seen equally often) gives a steep curve at the shortest
    # length, not a runaway fit
    bounds = [(0.0, 500.0), (math.log(0.5), math.log(200.0))] + ([] if p_max is not None else [(-5.0, 8.0)])
    start[0] = min(max(start[0], 0.0), 500.0)
    res = minimize(nll, np.asarray(start), method="L-BFGS-B", bounds=bounds)
    l50, log_s = float(res.x[0]), float(res.x[1])
    pm = p_max if p_max is not None else float(1.0 / (1.0 + math.exp(-res.x[2])))
    return DetectionModel(l50_m=round(l50, 2), scale_m=round(math.exp(log_s), 2), p_max=round(pm, 3))
