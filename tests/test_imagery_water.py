"""Water masks: user polygons (GeoJSON/GeoPackage, any CRS), NDWI on the real shared ports, SAR statistics."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from shapely.geometry import box, mapping

from routewatch.detect.water import (
    WaterMaskError,
    edge_zero_fill,
    image_water,
    load_water_polygons,
    ndwi_water,
    sar_water,
    ship_zone,
)
from routewatch.model import Site, SiteKind
from routewatch.simulate import simulate_scene
from routewatch.sources.imagery.geo import GridGeoref

SITE = Site("rajin", "Rajin", SiteKind.PORT, box(130.265, 42.215, 130.310, 42.250))


def _port(port_dir: Path) -> tuple[dict[str, np.ndarray], GridGeoref, list[tuple[int, int]]]:
    bands = {}
    for name, stem in (("green", "B03"), ("nir", "B08")):
        with rasterio.open(port_dir / f"{stem}.tiff") as ds:
            bands[name] = ds.read(1)
            grid = GridGeoref((ds.height, ds.width), transform=ds.transform, crs=ds.crs)
    ann = json.loads((port_dir / "annotations_coco.json").read_text())["annotations"]
    centres = [(int(a["bbox"][1] + a["bbox"][3] / 2), int(a["bbox"][0] + a["bbox"][2] / 2)) for a in ann]
    return bands, grid, centres


def test_ndwi_zone_holds_the_labelled_ships_of_the_shared_ports(shared_dir: Path) -> None:
    ports = sorted(p for p in (shared_dir / "data" / "sen2ships").iterdir() if p.is_dir())
    total = in_water = in_zone = 0
    for port in ports:
        bands, grid, centres = _port(port)
        water = ndwi_water(bands["green"], bands["nir"], pixel_size_m=grid.ground_pixel_size_m())
        zone = ship_zone(water, grid.ground_pixel_size_m())
        assert 0.2 < water.mean() < 0.95, f"{port.name}: a port scene has both land and water"
        assert zone.mean() - water.mean() < 0.15  # the rim is narrow: not the whole image
        total += len(centres)
        in_water += sum(bool(water[r, c]) for r, c in centres)
        in_zone += sum(bool(zone[r, c]) for r, c in centres)
    assert total == 211
    assert in_zone / total >= 0.97  # hulls at a berth are searched in the rim (docs/imagery.md)
    assert in_water / total < in_zone / total


def test_polygons_geojson_and_geopackage(tmp_path: Path) -> None:
    import pyogrio.raw
    import shapely
    from pyproj import Transformer
    from shapely import to_wkb

    water = box(130.28, 42.22, 130.30, 42.24)
    gj = tmp_path / "water.geojson"
    gj.write_text(json.dumps({"type": "FeatureCollection",
                              "features": [{"type": "Feature", "properties": {}, "geometry": mapping(water)}]}))
    got = load_water_polygons(gj)
    assert got.symmetric_difference(water).area < 1e-9
    # the same polygon in UTM 52N inside a GeoPackage
    tr = Transformer.from_crs(4326, 32652, always_xy=True)
    utm = shapely.transform(water, lambda x, y: tr.transform(x, y), interleaved=False)
    gpkg = tmp_path / "water.gpkg"
    pyogrio.raw.write(str(gpkg), np.array([to_wkb(utm)], dtype=object), field_data=[], fields=[],
                      geometry_type="Polygon", crs="EPSG:32652", layer="water", driver="GPKG")
    back = load_water_polygons(gpkg)
    assert back.symmetric_difference(water).area / water.area < 1e-3
    points = tmp_path / "points.geojson"
    points.write_text(json.dumps({"type": "Feature", "properties": {},
                                  "geometry": {"type": "Point", "coordinates": [130.3, 42.23]}}))
    with pytest.raises(WaterMaskError, match=r"points\.geojson"):
        load_water_polygons(points)
    with pytest.raises(WaterMaskError, match=r"missing\.gpkg"):
        load_water_polygons(tmp_path / "missing.gpkg")
    # the UTM polygon written as a GeoJSON without its CRS: metres read as degrees had made an empty mask
    bare = tmp_path / "utm_nocrs.geojson"
    bare.write_text(json.dumps({"type": "FeatureCollection",
                                "features": [{"type": "Feature", "properties": {}, "geometry": mapping(utm)}]}))
    with pytest.raises(WaterMaskError, match=r"utm_nocrs\.geojson: coordinates out of longitude/latitude range"):
        load_water_polygons(bare)


def test_broken_polygon_files_are_named_and_a_self_intersecting_polygon_is_kept_whole(tmp_path: Path) -> None:
    """Empty, zero-byte, truncated and unclosed-ring files are a WaterMaskError naming the file (an unclosed ring
    was a bare GEOS error); a bowtie keeps both lobes (buffer(0) kept one)."""
    import re

    def feature(ring: list[list[float]]) -> str:
        return json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]})

    cases = {"empty.geojson": '{"type": "FeatureCollection", "features": []}', "zero.geojson": "",
             "truncated.geojson": '{"type": "FeatureCollection", "features": [{"type": "Fea',
             "unclosed.geojson": feature([[130.27, 42.22], [130.30, 42.22], [130.30, 42.24], [130.27, 42.24]])}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(WaterMaskError, match=re.escape(name)):
            load_water_polygons(tmp_path / name)
    (tmp_path / "bowtie.geojson").write_text(feature([[130.27, 42.22], [130.30, 42.24], [130.30, 42.22],
                                                      [130.27, 42.24], [130.27, 42.22]]))
    bowtie = load_water_polygons(tmp_path / "bowtie.geojson")
    assert bowtie.is_valid and bowtie.area == pytest.approx(0.03 * 0.02 / 2)
    assert bowtie.contains(shapely.Point(130.275, 42.23)) and bowtie.contains(shapely.Point(130.295, 42.23))


def test_sar_water_matches_the_simulated_coast(tmp_path: Path) -> None:
    sim = simulate_scene(SITE, datetime(2023, 10, 1, 9, tzinfo=UTC), "simulated-sar", [], tmp_path / "s.tif",
                         seed=5)
    with rasterio.open(sim.path) as ds:
        img = ds.read(1)
        grid = GridGeoref((ds.height, ds.width), transform=ds.transform, crs=ds.crs)
    truth = grid.rasterize(load_water_polygons(tmp_path / "s.water.geojson"))
    got = sar_water(img, pixel_size_m=10.0)
    iou = (got & truth).sum() / (got | truth).sum()
    assert 0.2 < truth.mean() < 0.95 and iou > 0.95
    # a whole scene is done on block means: the same coast within a few pixels, at a fraction of the cost
    coarse = sar_water(img, pixel_size_m=10.0, coarse_above_px=img.size - 1)  # 2 x 2 blocks
    assert (coarse & truth).sum() / (coarse | truth).sum() > 0.9 and (coarse == got).mean() > 0.97
    # all sea, no coast in view: the whole image is water (an open anchorage)
    rng = np.random.default_rng(0)
    sea = (np.sqrt(rng.gamma(4.4, 0.01 / 4.4, (200, 200))) * 1000).astype(np.uint16)
    assert sar_water(sea).mean() == 1.0


def test_image_water_trusts_a_reader_mask_that_already_left_the_swath_fill_out(tmp_path: Path) -> None:
    """The scene reader leaves a GRD's untagged edge zero fill out of ``valid``; the water mask then skips its own
    search for it and gives the same mask, the fill outside the water."""
    sim = simulate_scene(SITE, datetime(2023, 10, 1, 9, tzinfo=UTC), "simulated-sar", [], tmp_path / "s.tif",
                         seed=5)
    with rasterio.open(sim.path) as ds:
        img = ds.read(1)
    img[:, : img.shape[1] // 4] = 0  # untagged fill beside the swath
    valid = ~edge_zero_fill(img)
    searched, method = image_water({"sar": img}, "sar", valid, pixel_size_m=10.0)
    trusted, _ = image_water({"sar": img}, "sar", valid, pixel_size_m=10.0, fill_in_valid=True)
    assert method == "sar-otsu" and np.array_equal(searched, trusted)
    assert trusted.any() and not trusted[:, : img.shape[1] // 4].any()
    # without the reader's mask the flag changes nothing: the fill is still found in the image
    alone, _ = image_water({"sar": img}, "sar", None, pixel_size_m=10.0, fill_in_valid=True)
    assert not alone[:, : img.shape[1] // 4].any()


def test_scl_water_and_no_bands(tmp_path: Path) -> None:
    scl = np.full((50, 50), 5, dtype=np.uint8)
    scl[:, 20:] = 6
    mask, method = image_water({}, "optical", scl=scl)
    assert method == "scl" and mask[:, 25:].all() and not mask[:, :15].any()
    with pytest.raises(WaterMaskError, match="green and nir"):
        image_water({"red": np.zeros((5, 5))}, "optical")


def _coast_8bit(seed: int = 1) -> np.ndarray:
    """An 8-bit SAR rendering: bright speckled land on the left, calm sea that renders mostly as 0 on the right."""
    rng = np.random.default_rng(seed)
    img = np.zeros((256, 256), np.uint8)
    img[:, :90] = np.clip(rng.gamma(2.0, 60.0, (256, 90)), 0, 255).astype(np.uint8)
    sea = rng.random((256, 166)) < 0.15
    img[:, 90:][sea] = rng.integers(1, 40, int(sea.sum()))
    return img


def test_sar_water_takes_zero_pixels_for_calm_water_unless_told_they_are_no_data() -> None:
    img = _coast_8bit()
    water = sar_water(img, pixel_size_m=10.0)
    assert water[:, 100:].mean() > 0.95 and water[:, :80].mean() < 0.05
    valid = np.ones(img.shape, bool)
    valid[:, 200:] = False  # a GRD border: the reader's no-data mask
    water = sar_water(img, valid, pixel_size_m=10.0)
    assert not water[:, 200:].any() and water[:, 100:190].mean() > 0.95


def test_sar_water_gives_bright_ships_back_but_keeps_islands_land() -> None:
    """Ships are bright islands in the water: those that fit in a square of the longest ship are water again (so
    the CFAR searches them); a 1.2 km island stays land."""
    img = _coast_8bit()
    img[40:60, 150:190] = 255  # a 400 m x 200 m block of ships moored together, at 10 m
    img[120:240, 120:240] = np.clip(np.random.default_rng(2).gamma(2.0, 60.0, (120, 120)), 0, 255).astype(np.uint8)
    water = sar_water(img, pixel_size_m=10.0)
    assert water[40:60, 150:190].all()
    assert water[140:220, 140:220].mean() < 0.05
    # at 2 m pixels the island is 240 m across, under the longest ship: it is given back too, which is why islets
    # that small must be digitised as land
    at_2m = sar_water(img, pixel_size_m=2.0)
    assert at_2m[40:60, 150:190].all() and at_2m[140:220, 140:220].mean() > 0.95


def test_sar_water_keeps_a_long_breakwater_land() -> None:
    """The island rule looks at extent, not area: a 1.5 km x 80 m breakwater in open water has the area of a ship
    but not its size, and stays land (it would otherwise be searched, and found, as a 1.5 km target). Thinner
    structures than the 50 m opening are given to the water by the opening itself, like hulls."""
    img = _coast_8bit()
    img[18:26, 95:250] = 255  # 1.55 km x 80 m at 10 m, detached from the coast
    img[200:206, 150:190] = 255  # a 400 m x 60 m ship (the size of a detached mole, too)
    water = sar_water(img, pixel_size_m=10.0)
    assert water[200:206, 150:190].all()
    assert not water[21, 110:240].any()


def test_whole_scene_mask_from_block_means_keeps_piers_land() -> None:
    """The block-mean path (whole scenes) must not open piers 60-100 m wide into water, or the CFAR reports their
    tips as ships: with 2 x 2 blocks and a land opening no wider than at full size, only the two ships are found."""
    from routewatch.detect.sar import detect_sar

    rng = np.random.default_rng(3)
    img = np.clip(np.sqrt(rng.gamma(4.4, 1 / 4.4, (1200, 1200))) * 200, 1, 65535).astype(np.uint16)
    land = np.zeros(img.shape, bool)
    land[:, :300] = True
    for i, (width, length) in enumerate([(6, 25), (8, 30), (10, 40), (6, 40), (8, 25)]):
        land[100 + 200 * i : 100 + 200 * i + width, 300 : 300 + length] = True
    img[land] = np.clip(np.sqrt(rng.gamma(1.5, 10 / 1.5, int(land.sum()))) * 200, 1, 65535).astype(np.uint16)
    img[600:616, 700:704] = 4000  # a ship at sea
    img[905:921, 345:349] = 4000  # a ship just off a pier's tip
    water = sar_water(img, pixel_size_m=10.0, coarse_above_px=img.size // 36)  # once 6 x 6 blocks, now 2 x 2
    piers = land.copy()
    piers[:, :300] = False
    assert not water[piers].any()
    found = sorted((round(d.row), round(d.col)) for d in detect_sar(img, pixel_size_m=10.0, water=water))
    assert found == [(608, 702), (912, 346)]


def test_global_mask_margin_and_its_absence(monkeypatch) -> None:
    """The coastal zone reaches ``margin_m`` from the global mask's sea, also sea beyond the image's edge (a crop
    gets what the whole scene gets there), at any image size; an image with no sea of the global mask within
    reach is left whole (a lake port); without the optional extra the error says how to install it."""
    pytest.importorskip("global_land_mask", reason="the globalmask extra (installed with the dev extra)")
    import sys

    from affine import Affine
    from scipy import ndimage

    from routewatch.detect.water import WaterMaskError, global_ocean, near_global_sea

    crs = "EPSG:32652"
    tr = Affine(100.0, 0.0, 590000.0, 0.0, -100.0, 4_700_000.0)  # 40 km around Rajin, 100 m pixels
    # the sea 4 km around the image too, for the reference distances
    big, grid = global_ocean(Affine(100.0, 0.0, 586000.0, 0.0, -100.0, 4_704_000.0), crs, (480, 480))
    dist = (ndimage.distance_transform_edt(~grid.expand(big)) * 100.0)[40:440, 40:440]
    for margin in (1000.0, 3000.0):
        near = near_global_sea(tr, crs, (400, 400), margin_m=margin)
        assert not near[dist > margin + 400].any()  # 400 m: the 250 m sampling grid
        assert near[dist < margin - 400].all()
    full = near_global_sea(tr, crs, (400, 400))
    crop = near_global_sea(tr @ Affine.translation(60, 100), crs, (151, 203))  # odd sizes, inside the scene
    assert crop.shape == (151, 203) and (crop == full[100:251, 60:263]).all()
    assert near_global_sea(tr, crs, (2006, 2011)).shape == (2006, 2011)
    inland = Affine(100.0, 0.0, 300000.0, 0.0, -100.0, 4_800_000.0)  # north-east China: no sea within 40 km
    assert not global_ocean(inland, crs, (100, 100), pad_m=3000.0)[0].any()
    assert near_global_sea(inland, crs, (100, 100)).all()
    monkeypatch.setitem(sys.modules, "global_land_mask", None)
    with pytest.raises(WaterMaskError, match=r"routewatch\[globalmask\]"):
        near_global_sea(tr, crs, (400, 400))


def test_dilate_cross_is_scipys_binary_dilation() -> None:
    from scipy import ndimage

    from routewatch.detect.water import dilate_cross

    rng = np.random.default_rng(5)
    for _ in range(200):
        h, w = rng.integers(1, 30, 2)
        m = rng.random((h, w)) < rng.uniform(0.02, 0.9)
        n = int(rng.integers(0, 4))
        assert (dilate_cross(m, n) == ndimage.binary_dilation(m, iterations=n)).all() if n else \
            (dilate_cross(m, 0) == m).all()


def test_the_coast_test_is_in_decibels_for_amplitude_and_intensity_alike() -> None:
    """Land 4 dB brighter than the sea: the modes of smoothed log10 amplitude are 0.2 apart, those of intensity
    0.4; the coast test (2.5 dB) had been 0.25 in log10 of the values as stored, a 5 dB test on amplitude (the
    default), so the land was searched as water and its buildings reported as ships."""
    from routewatch.detect.water import sar_water

    rng = np.random.default_rng(4)
    inten = rng.gamma(4.4, 1 / 4.4, (400, 400)) * 0.05
    inten[:, 200:] *= 10 ** 0.4  # land: 4 dB brighter
    for values, img in (("amplitude", np.sqrt(inten)), ("intensity", inten)):
        water = sar_water(img.astype(np.float32), pixel_size_m=10.0, values=values)
        assert water[:, 210:].mean() < 0.05 and water[:, :190].mean() > 0.9, values
