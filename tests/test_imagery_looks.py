"""Looks: usable fraction arithmetic, detection models by sensor and resolution, calibration, GCP geolocation,
and simulated scenes (georeferenced, labelled simulated, ships where the truth says)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pytest
import rasterio
from rasterio.control import GroundControlPoint
from shapely.geometry import box

from routewatch.model import SENSOR_DETECTION, DetectionModel, Site, SiteKind
from routewatch.simulate import ShipSpec, simulate_scene
from routewatch.sources.imagery.geo import GridGeoref
from routewatch.sources.imagery.looks import (
    detection_model_for,
    fit_detection_model,
    is_sar,
    scl_cloud,
    usable_fraction,
)
from routewatch.sources.imagery.sentinel1 import locate_detections

SITE = Site("rajin", "Rajin", SiteKind.PORT, box(130.265, 42.215, 130.310, 42.250))


def test_usable_fraction_counts_cloud_nodata_and_the_part_outside() -> None:
    site = np.zeros((100, 100), dtype=bool)
    site[:, :] = True
    water = np.zeros_like(site)
    water[:, 50:] = True  # half the site is water
    valid = np.ones_like(site)
    cloud = np.zeros_like(site)
    cloud[:50, 50:] = True  # a quarter of the site, half of its water
    uf = usable_fraction(site, 0.0, water, valid, cloud, water_known_everywhere=True)
    assert uf.fraction == pytest.approx(0.5)
    # the water under cloud is unknown when the mask comes from the image: estimated from the visible share
    hidden_water = water & ~cloud
    uf2 = usable_fraction(site, 0.0, hidden_water, valid, cloud, water_known_everywhere=False)
    # visible: 7500 px, 2500 of them water (1/3); hidden 2500 px -> 833 water expected; 2500 / 3333 clear
    assert uf2.fraction == pytest.approx(2500 / (2500 + 2500 / 3), rel=1e-3)
    # half the site outside the image: the imaged half is all there is to see
    uf3 = usable_fraction(site, 0.5, water, valid, None, water_known_everywhere=True)
    assert uf3.fraction == pytest.approx(0.5)
    assert usable_fraction(site, 0.0, water, valid, np.ones_like(site)).fraction == 0.0
    nodata = usable_fraction(site, 0.0, water, np.zeros_like(site), None)
    assert nodata.fraction == 0.0 and "no clear pixel" in nodata.reason
    assert usable_fraction(np.zeros_like(site), 1.0, water, valid).reason == "site is not in the image"


def test_scl_cloud_classes() -> None:
    scl = np.array([[3, 4, 5, 6], [8, 9, 10, 11]])
    assert scl_cloud(scl).tolist() == [[True, False, False, False], [True, True, True, False]]


def test_detection_model_by_sensor_and_resolution() -> None:
    assert detection_model_for("sentinel-2", 10.0) == SENSOR_DETECTION["sentinel-2"]
    # resampled finer than the sensor does not help; coarser hurts in proportion
    assert detection_model_for("sentinel-2", 5.8) == SENSOR_DETECTION["sentinel-2"]
    coarse = detection_model_for("sentinel-1", 20.0)
    assert coarse.l50_m == pytest.approx(2 * SENSOR_DETECTION["sentinel-1"].l50_m)
    assert detection_model_for("simulated-sar", 10.0) == SENSOR_DETECTION["sentinel-1"]
    assert detection_model_for("simulated-optical", 10.0) == SENSOR_DETECTION["sentinel-2"]
    own = detection_model_for("geotiff", 0.5)
    assert own.probability(10.0) > 0.9 and own.probability(1.0) < 0.2
    assert is_sar("sentinel-1") and is_sar("simulated-sar") and not is_sar("planetscope")


def test_fit_recovers_a_known_curve() -> None:
    truth = DetectionModel(l50_m=55.0, scale_m=9.0, p_max=0.9)
    rng = np.random.default_rng(7)
    lengths = rng.uniform(5, 250, 4000)
    detected = rng.random(4000) < np.array([truth.probability(x) for x in lengths])
    fit = fit_detection_model(lengths, detected)
    assert fit.l50_m == pytest.approx(55.0, abs=5.0)
    assert fit.scale_m == pytest.approx(9.0, abs=3.0)
    assert fit.p_max == pytest.approx(0.9, abs=0.03)
    with pytest.raises(ValueError):
        fit_detection_model([10.0, 20.0], [True, False])


@dataclass
class _Det:
    row: float
    col: float
    lon: float | None = None
    lat: float | None = None
    heading_deg: float | None = None


def test_a_heading_from_image_up_becomes_a_heading_from_true_north() -> None:
    """A south-up grid (an ascending Sentinel-1 pass is north-down): a hull 30 deg clockwise from image-up runs
    150 deg from true north; on a north-up UTM grid away from the central meridian the grid's convergence
    (about 2 deg here) is taken out too. Fusion compares these with AIS headings."""
    from affine import Affine
    from pyproj import Transformer

    utm = rasterio.crs.CRS.from_epsg(32652)
    south_up = GridGeoref((1000, 1000), transform=Affine(10.0, 0, 600000.0, 0, 10.0, 4670000.0), crs=utm)
    (d,) = locate_detections([_Det(row=500.0, col=500.0, heading_deg=30.0)], south_up)
    assert d.heading_deg == pytest.approx(150.0, abs=2.5)
    north_up = GridGeoref((1000, 1000), transform=Affine(10.0, 0, 700000.0, 0, -10.0, 4680000.0), crs=utm)
    (n,) = locate_detections([_Det(row=500.0, col=500.0, heading_deg=0.0)], north_up)
    # grid north at 700 km easting, 42 N: true azimuth of the grid's y axis there
    to_ll = Transformer.from_crs(utm, "EPSG:4326", always_xy=True)
    lon_a, lat_a = to_ll.transform(705005.0, 4674995.0 - 30)
    lon_b, lat_b = to_ll.transform(705005.0, 4674995.0 + 30)
    from pyproj import Geod

    expected = Geod(ellps="WGS84").inv(lon_a, lat_a, lon_b, lat_b)[0] % 180
    assert n.heading_deg == pytest.approx(expected, abs=0.05)
    assert min(expected, 180 - expected) > 1.0  # not grid north: the convergence was taken out


def test_gcp_geolocation_of_a_rotated_grid() -> None:
    # a grid rotated by 12 degrees and stretched (like a descending GRD): no affine could be trusted
    h, w = 1000, 1200
    lon0, lat0 = 130.28, 42.23
    ang = math.radians(12)

    def truth(r: float, c: float) -> tuple[float, float]:
        x, y = c * 1.1e-4, -r * 0.85e-4
        return lon0 + x * math.cos(ang) - y * math.sin(ang), lat0 + x * math.sin(ang) + y * math.cos(ang)

    gcps = [GroundControlPoint(row=r, col=c, x=truth(r, c)[0], y=truth(r, c)[1])
            for r in np.linspace(0, h, 6) for c in np.linspace(0, w, 6)]
    grid = GridGeoref((h, w), gcps=gcps, gcps_crs=rasterio.crs.CRS.from_epsg(4326))
    dets = locate_detections([_Det(row=400.0, col=700.0), _Det(row=10.0, col=1100.0)], grid)
    for d in dets:
        lon, lat = truth(d.row + 0.5, d.col + 0.5)
        assert d.lon == pytest.approx(lon, abs=2e-6) and d.lat == pytest.approx(lat, abs=2e-6)
    rows, cols = grid.lonlat_to_pixel(np.array([dets[0].lon]), np.array([dets[0].lat]))
    assert rows[0] == pytest.approx(400.5, abs=0.05) and cols[0] == pytest.approx(700.5, abs=0.05)
    # ground pixel size from the GCP fit: about 1.1e-4 deg of longitude x 0.85e-4 deg of latitude at 42 N
    expected = math.sqrt(1.1e-4 * 111320 * math.cos(math.radians(42.23)) * 0.85e-4 * 110950)
    assert grid.ground_pixel_size_m() == pytest.approx(expected, rel=0.03)
    # a window keeps the geolocation
    from rasterio.windows import Window

    sub = grid.window(Window(600, 300, 200, 200))
    lon, lat = sub.pixel_to_lonlat([100.5], [100.5])
    assert (lon[0], lat[0]) == pytest.approx(truth(400.5, 700.5), abs=2e-6)


def test_simulated_scenes_are_georeferenced_and_labelled(tmp_path) -> None:
    ship = ShipSpec(150, heading_deg=30, lon=130.300, lat=42.235)
    sar = simulate_scene(SITE, datetime(2023, 10, 1, 9, tzinfo=UTC), "simulated-sar", [ship, ShipSpec(80)],
                         tmp_path / "sar.tif", seed=3)
    opt = simulate_scene(SITE, datetime(2023, 10, 1, 2, tzinfo=UTC), "simulated-optical", [ship],
                         tmp_path / "opt.tif", seed=3, cloud_cover=0.3)
    assert len(sar.ships) == 2 and sar.ships[0].lon == pytest.approx(130.300, abs=2e-4)
    with rasterio.open(sar.path) as ds:
        assert ds.crs.to_epsg() == 32652 and ds.tags()["ROUTEWATCH_SIMULATED"] == "1"
        img = ds.read(1).astype(float)
        grid = GridGeoref((ds.height, ds.width), transform=ds.transform, crs=ds.crs)
    assert grid.footprint().contains(SITE.geometry)
    assert abs(grid.ground_pixel_size_m() - 10.0) < 0.5
    r, c = grid.lonlat_to_pixel(np.array([130.300]), np.array([42.235]))
    ship_px = img[int(r[0]), int(c[0])]
    assert ship_px > 10 * np.median(img)  # a ship is far brighter than the sea
    with rasterio.open(opt.path) as ds:
        assert ds.descriptions == ("blue", "green", "red", "nir", "scl")
        scl = ds.read(5)
    assert abs((scl == 9).mean() - 0.3) < 0.02 and opt.cloud_fraction == pytest.approx((scl == 9).mean())
    truth_file = tmp_path / "sar.truth.geojson"
    assert truth_file.exists() and '"simulated": true' in truth_file.read_text()
    # ships of the same seed and time are placed identically (reproducible demos)
    again = simulate_scene(SITE, datetime(2023, 10, 1, 9, tzinfo=UTC), "simulated-sar", [ship, ShipSpec(80)],
                           tmp_path / "sar2.tif", seed=3)
    assert [(s.lon, s.lat) for s in again.ships] == [(s.lon, s.lat) for s in sar.ships]
    with pytest.raises(ValueError, match="on land"):
        simulate_scene(SITE, datetime(2023, 10, 1, 9, tzinfo=UTC), "simulated-sar",
                       [ShipSpec(100, lon=130.266, lat=42.2325)], tmp_path / "bad.tif", seed=3)


def test_automatic_looks_never_claim_more_than_the_detector_achieves() -> None:
    from routewatch.model import SENSOR_DETECTION
    from routewatch.sources.imagery.looks import AUTOMATIC_P_MAX, automatic_detection_model

    prior = SENSOR_DETECTION["sentinel-1"]
    capped = automatic_detection_model(prior, "sar", user_water=False)
    assert capped.p_max == AUTOMATIC_P_MAX[("sar", False)] < prior.p_max
    assert (capped.l50_m, capped.scale_m) == (prior.l50_m, prior.scale_m)
    with_polygons = automatic_detection_model(prior, "sar", user_water=True)
    assert with_polygons.p_max == min(prior.p_max, AUTOMATIC_P_MAX[("sar", True)])


def test_automatic_optical_looks_follow_the_detectors_measured_curve() -> None:
    from routewatch.model import SENSOR_DETECTION, DetectionModel
    from routewatch.sources.imagery.looks import OPTICAL_DETECTOR_CURVE, automatic_detection_model

    s2 = SENSOR_DETECTION["sentinel-2"]
    auto = automatic_detection_model(s2, "optical", user_water=False, resolution_m=10.0)
    assert auto == OPTICAL_DETECTOR_CURVE
    # a 120 m ship (the reference case's ships) is seen less than half the time; the sensor prior said 0.95
    assert 0.40 < auto.probability(120.0) < 0.50 < s2.probability(120.0)
    assert auto.probability(300.0) > 0.7 and auto.probability(60.0) < 0.3
    # coarser pixels stretch the curve; finer pixels earn no credit (the network was trained on 10 m pixels)
    coarse = automatic_detection_model(s2, "optical", user_water=True, resolution_m=20.0)
    assert (coarse.l50_m, coarse.scale_m) == pytest.approx((2 * OPTICAL_DETECTOR_CURVE.l50_m,
                                                           2 * OPTICAL_DETECTOR_CURVE.scale_m), abs=0.01)
    planet = automatic_detection_model(SENSOR_DETECTION["planetscope"], "optical", user_water=False, resolution_m=3.0)
    assert planet == OPTICAL_DETECTOR_CURVE
    # never above the detector's curve; above the Sentinel-2 prior only in the fitted tail under 35 m
    for length in np.arange(0.0, 400.0, 2.5):
        assert auto.probability(length) <= OPTICAL_DETECTOR_CURVE.probability(length) + 1e-12
        if length >= 35.0:
            assert auto.probability(length) <= s2.probability(length) + 1e-12
    assert auto.probability(10.0) > s2.probability(10.0)  # the documented exception
    # a sensor curve weaker than the detector's stays as it is, with the lower ceiling
    weak = DetectionModel(l50_m=200.0, scale_m=20.0, p_max=0.3)
    assert automatic_detection_model(weak, "optical", user_water=False) == weak
    assert automatic_detection_model(DetectionModel(200.0, 20.0, 0.95), "optical", False) == \
        DetectionModel(200.0, 20.0, OPTICAL_DETECTOR_CURVE.p_max)


def test_the_footprint_of_an_image_across_the_antimeridian_is_cut_there() -> None:
    """A 10 km UTM 60S image centred on 180 deg: its outline is two small polygons either side of the
    antimeridian, not one spanning the globe, so a site just west of 180 deg W is found in it (the scene had
    been left out of that site's looks) and one far away is not."""
    from affine import Affine
    from pyproj import Transformer
    from shapely.geometry import box

    utm60s = rasterio.crs.CRS.from_epsg(32760)
    x, y = Transformer.from_crs("EPSG:4326", utm60s, always_xy=True).transform(180.0, -16.8)
    grid = GridGeoref((1000, 1000), transform=Affine(10.0, 0, x - 5000, 0, -10.0, y + 5000), crs=utm60s)
    fp = grid.footprint()
    assert fp.area < 0.02  # about 0.0085 square degrees, not 32
    west = box(-179.99, -16.81, -179.97, -16.79)
    east = box(179.97, -16.81, 179.99, -16.79)
    assert fp.intersects(west) and fp.intersects(east) and not fp.intersects(box(0, -17, 1, -16))
    assert fp.intersection(west).area == pytest.approx(west.area, rel=1e-6)
    assert grid.rasterize(west).sum() > 0.8 * west.area / fp.area * 1e6


def test_a_lon_lat_image_that_runs_past_180_deg_finds_sites_on_both_sides() -> None:
    """An EPSG:4326 image from 179.98 to 180.03 deg: a site at 179.99 W is at 180.01 on its grid (it had been
    "not in this scene", an unreadable look and its ships lost), and what the image gives back is in [-180, 180)."""
    from affine import Affine

    from routewatch.sources.imagery.geo import site_window

    grid = GridGeoref((500, 500), transform=Affine(0.0001, 0, 179.98, 0, -0.0001, 33.62),
                      crs=rasterio.crs.CRS.from_epsg(4326))
    east_of_180 = box(-179.995, 33.59, -179.985, 33.60)
    win = site_window(grid, east_of_180, pad_px=0)
    assert win is not None and (win.col_off, win.row_off, win.width, win.height) == (250, 200, 100, 100)
    assert grid.rasterize(east_of_180).sum() == pytest.approx(100 * 100, rel=0.05)
    lon, _ = grid.pixel_to_lonlat([250.0, 250.0], [100.0, 400.0])
    assert lon[0] == pytest.approx(179.99) and lon[1] == pytest.approx(-179.98)
    assert grid.footprint().intersects(east_of_180) and grid.footprint().intersects(box(179.985, 33.6, 179.99, 33.61))
    # a polygon is turned as one place: on a 0-360 grid one across 0 deg is not torn into the whole grid less
    # itself (its half east of 0 is read); the two halves of a site split at 180 deg reach both edges of a
    # global grid
    from shapely import wkt

    wgs84 = rasterio.crs.CRS.from_epsg(4326)
    m = GridGeoref((1800, 3600), transform=Affine(0.1, 0, 0, 0, -0.1, 90), crs=wgs84).rasterize(
        box(-0.3, 39.3, 0.3, 39.6))
    assert m.sum() == 9 and set(np.nonzero(m)[1]) == {0, 1, 2}
    split = wkt.loads("MULTIPOLYGON(((179.5 50, 180 50, 180 50.5, 179.5 50.5, 179.5 50)),"
                      "((-180 50, -179.5 50, -179.5 50.5, -180 50.5, -180 50)))")
    m = GridGeoref((1800, 3600), transform=Affine(0.1, 0, -180, 0, -0.1, 90), crs=wgs84).rasterize(split)
    assert set(np.nonzero(m)[1]) == {0, 1, 2, 3, 4, 3595, 3596, 3597, 3598, 3599}


def test_the_calibration_scores_only_ships_a_look_at_the_site_searches() -> None:
    """The simulated scenes reach beyond the site, and a look keeps only the detections inside it: ships in that
    margin are not misses of the detector (they had pulled the SAR ceilings down at every length)."""
    from routewatch.sources.imagery.calibrate import simulate_outcomes

    lengths, found = simulate_outcomes("simulated-sar", n_scenes=3, ships_per_scene=12, lengths=(150.0, 200.0),
                                       water_polygons=True)
    assert 0 < len(lengths) < 36  # some of the 36 simulated ships lie in the margin
    assert sum(found) / len(found) >= 0.95  # long ships with the true coast as polygons: found
