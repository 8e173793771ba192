"""Sentinel-1 GRD geolocation: detect in the image's own geometry, then place detections by its ground control
points.

A GRD product is in radar (slant-to-ground range, azimuth) geometry. Its GeoTIFFs carry a grid of GCPs; some
copies also advertise an affine transform fitted to that grid, which can be wrong by hundreds of metres across a
scene (the mapping is not affine: range spacing and heading vary). So the affine is never used: the grid's
locations come from rasterio's GCP transformer (a polynomial fit of the GCPs), and detections are moved to lon/lat
after detection, never by warping the image first (warping would smear ship shapes and lengths).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from routewatch.sources.imagery.geo import GridGeoref

# asset keys of polarisations, in order of preference (co-polarised first: ships are brighter there)
POLARISATIONS = ("vv", "hh", "vh", "hv")


def gcp_georef(dataset: Any) -> GridGeoref:
    """The GCP georeference of an open rasterio dataset; an error if it has no GCPs (its affine is not used)."""
    gcps, crs = dataset.gcps
    if not gcps:
        raise ValueError(f"{dataset.name}: Sentinel-1 GRD without ground control points; cannot locate it")
    return GridGeoref((dataset.height, dataset.width), gcps=list(gcps), gcps_crs=crs)


def affine_error_m(dataset: Any, samples: int = 9) -> float | None:
    """Largest distance (m) between the advertised affine and the GCP fit over a grid of sample pixels.

    Reported in the scene's attributes so an analyst can see why the affine was not trusted. None when the file
    advertises no affine or has no GCPs.
    """
    from pyproj import Geod

    gcps, _crs = dataset.gcps
    if not gcps or dataset.crs is None or dataset.transform.is_identity:
        return None
    g = gcp_georef(dataset)
    a = GridGeoref((dataset.height, dataset.width), transform=dataset.transform, crs=dataset.crs)
    rows = np.repeat(np.linspace(0, dataset.height, samples), samples)
    cols = np.tile(np.linspace(0, dataset.width, samples), samples)
    lon1, lat1 = g.pixel_to_lonlat(rows, cols)
    lon2, lat2 = a.pixel_to_lonlat(rows, cols)
    _, _, d = Geod(ellps="WGS84").inv(lon1, lat1, lon2, lat2)
    return float(np.max(np.abs(d)))


def locate_detections(detections: Sequence[Any], georef: GridGeoref) -> list[Any]:
    """Copies of detections (pixel centres ``row``/``col`` of the array given to the detector) with lon/lat, and
    their heading turned from image-up to true north (degrees clockwise, modulo 180).

    Works for GCP and affine grids alike; the pipeline uses it for every scene.
    """
    if not detections:
        return []
    from routewatch.sources.imagery.geo import _GEOD

    rows = np.asarray([d.row for d in detections], dtype=float) + 0.5
    cols = np.asarray([d.col for d in detections], dtype=float) + 0.5
    lon, lat = georef.pixel_to_lonlat(rows, cols)
    # The detector's heading is the long axis clockwise from image-up; on the ground it is the azimuth between two
    # points along that axis, mapped through the grid: a Sentinel-1 ascending pass is north-down and tilted, and a
    # UTM grid's north is not true north away from its central meridian. Fusion compares it with AIS headings.
    h = np.radians(np.asarray([np.nan if getattr(d, "heading_deg", None) is None else d.heading_deg
                               for d in detections], float))
    dr, dc = -np.cos(h) * 3.0, np.sin(h) * 3.0
    lon_a, lat_a = georef.pixel_to_lonlat(rows - dr, cols - dc)
    lon_b, lat_b = georef.pixel_to_lonlat(rows + dr, cols + dc)
    az = np.asarray(_GEOD.inv(lon_a, lat_a, lon_b, lat_b)[0], float) % 180.0
    return [replace(d, lon=float(x), lat=float(y), **({"heading_deg": float(a)} if np.isfinite(a) else {}))
            for d, x, y, a in zip(detections, lon, lat, az, strict=True)]
