"""Sea distance between sites: the length a ship must sail, which bounds how fast a trip can be.

searoute's maritime network is coarse (nodes tens of kilometres apart), so its path between two nearby ports can be
shorter than the straight line between them once the ends are snapped to nodes. We therefore append the true end
points to the path and never report less than the great-circle distance, which is a hard lower bound at sea. When
searoute has no path (an exception, a non-finite or empty length) we fall back to great-circle x 1.2 and warn,
because a feasibility bound from a guessed distance should not pass silently.

All distances are nautical miles (1 nm = 1852 m); positions are WGS84 (longitude, latitude) in degrees.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pyproj import Geod

from routewatch.model import Site

METRES_PER_NM = 1852.0
FALLBACK_FACTOR = 1.2
_GEOD = Geod(ellps="WGS84")


class SeaRouteWarning(UserWarning):
    """searoute gave no usable path; the distance is great-circle x 1.2."""


@dataclass(frozen=True, slots=True)
class SeaDistance:
    """A sailing distance in nautical miles and how it was obtained ("searoute" or "great-circle x 1.2")."""

    nm: float
    method: str

    @property
    def metres(self) -> float:
        return self.nm * METRES_PER_NM


def great_circle_nm(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Geodesic distance on the WGS84 ellipsoid between two (lon, lat) points, in nautical miles."""
    _, _, metres = _GEOD.inv(a[0], a[1], b[0], b[1])
    return abs(float(metres)) / METRES_PER_NM


def _searoute_nm(a: tuple[float, float], b: tuple[float, float]) -> float | None:
    try:
        import searoute

        route = searoute.searoute(list(a), list(b), units="naut", append_orig_dest=True)
        length = float(route.properties["length"])
    except Exception:  # searoute raises assorted errors (networkx, KeyError) when it has no path
        return None
    if not math.isfinite(length) or length <= 0.0:
        return None
    return length


@lru_cache(maxsize=4096)
def _cached(a: tuple[float, float], b: tuple[float, float]) -> SeaDistance:
    gc = great_circle_nm(a, b)
    if gc == 0.0:
        return SeaDistance(0.0, "same point")
    length = _searoute_nm(a, b)
    if length is None:
        warnings.warn(
            f"searoute found no sea path from {a} to {b}; using great-circle x {FALLBACK_FACTOR}",
            SeaRouteWarning,
            stacklevel=3,
        )
        return SeaDistance(gc * FALLBACK_FACTOR, f"great-circle x {FALLBACK_FACTOR}")
    return SeaDistance(max(length, gc), "searoute")


def sea_distance(a: tuple[float, float], b: tuple[float, float]) -> SeaDistance:
    """Sailing distance between two (lon, lat) points, cached (points rounded to 1e-4 degrees, about 10 m)."""
    for name, point in (("from", a), ("to", b)):
        lon, lat = point
        if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
            raise ValueError(f"sea_distance: '{name}' point {point} is not a WGS84 (lon, lat) pair")
    key_a = (round(float(a[0]), 4), round(float(a[1]), 4))
    key_b = (round(float(b[0]), 4), round(float(b[1]), 4))
    return _cached(key_a, key_b)


def site_distance(a: Site, b: Site) -> SeaDistance:
    """Sailing distance between the centroids of two sites."""
    return sea_distance(a.centroid_lonlat, b.centroid_lonlat)


def site_radius_m(site: Site) -> float:
    """The farthest vertex of a site from its centre, in metres (geodesic)."""
    import shapely

    xy = shapely.get_coordinates(site.geometry)
    if xy.shape[0] == 0:
        return 0.0
    lon0, lat0 = site.centroid_lonlat
    _, _, metres = _GEOD.inv(np.full(len(xy), lon0), np.full(len(xy), lat0), xy[:, 0], xy[:, 1])
    return float(np.abs(metres).max())


VISIT_REACH_M = 3000.0  # an AIS visit ends up to its exit distance (2 km) out and starts up to its entry one (1 km)


def min_sailing_nm(a: Site, b: Site, reach_m: float = VISIT_REACH_M) -> float:
    """A hard lower bound on the sailing distance between two sites' visits, in nautical miles: the great-circle
    distance between their centres less both radii and ``reach_m`` (how far outside its polygon a visit's first
    and last positions may lie). It bounds how fast a trip can be; the sea distance cannot (searoute's coarse
    network makes it an overestimate: a real 12-knot voyage had been refused under a 14-knot limit)."""
    gc = great_circle_nm(a.centroid_lonlat, b.centroid_lonlat)
    return max(gc - (site_radius_m(a) + site_radius_m(b) + reach_m) / METRES_PER_NM, 0.0)


def min_transit_days(distance_nm: float, max_speed_kn: float) -> float:
    """The shortest feasible transit in days: distance over the route's maximum speed."""
    if max_speed_kn <= 0:
        raise ValueError(f"max_speed_kn must be positive, got {max_speed_kn}")
    return distance_nm / max_speed_kn / 24.0
