"""`detect --site` over stored scenes: looks (also empty and unusable ones), sightings with chips, bad input, Dask.

Scenes are simulated over a site (ground truth known) and added with `scenes add`; the detector is a plain
bright-blob threshold defined here, so these tests exercise the pipeline, not a detector's accuracy.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Geod
from scipy import ndimage
from shapely.geometry import Point, box, mapping

from routewatch.detect.base import Detection
from routewatch.model import Site, SiteKind
from routewatch.simulate import ShipSpec, simulate_scene, simulate_site_scenes
from routewatch.sources.imagery.ingest import add_folder, open_store
from routewatch.sources.imagery.pipeline import detect_site
from routewatch.watchlist import Watchlist
from routewatch.workspace import Workspace

SITE = Site("rajin", "Rajin", SiteKind.PORT, box(130.265, 42.215, 130.310, 42.250))
GEOD = Geod(ellps="WGS84")
SHIPS = {date(2023, 10, 1): [ShipSpec(120), ShipSpec(90), ShipSpec(150, heading_deg=30)],
         date(2023, 10, 13): [ShipSpec(130)]}


def bright_blobs(kind: str, bands: dict[str, np.ndarray], pixel_size_m: float, water: np.ndarray) -> list:
    """A deliberately simple detector: connected pixels far brighter than the water's median."""
    img = (bands.get("vv") if kind == "sar" else bands["red"]).astype(np.float64)
    if not water.any():
        return []
    level = np.median(img[water])
    hits = (img > level * (15.0 if kind == "sar" else 1.6)) & water
    labels, n = ndimage.label(hits)
    out = []
    for i in range(1, n + 1):
        rr, cc = np.nonzero(labels == i)
        if rr.size < 3:
            continue
        pts = np.stack([cc, -rr], axis=1).astype(float)
        pts -= pts.mean(axis=0)
        _evals, evecs = np.linalg.eigh(np.cov(pts.T))
        major = evecs[:, 1]
        proj = pts @ major
        length = (proj.max() - proj.min() + 1) * pixel_size_m
        heading = math.degrees(math.atan2(major[0], major[1])) % 180
        out.append(Detection(row=float(rr.mean()), col=float(cc.mean()), length_m=length,
                             width_m=max(length / 6, pixel_size_m), heading_deg=heading, score=0.9))
    return out


def _workspace(tmp_path: Path) -> tuple[Workspace, object]:
    ws = Workspace.open(tmp_path / "ws").ensure()
    store = open_store(ws)
    store.upsert_watchlist(Watchlist(sites={SITE.key: SITE}))
    return ws, store


@pytest.fixture
def sar_ws(tmp_path: Path):
    ws, store = _workspace(tmp_path)
    sims = simulate_site_scenes(SITE, date(2023, 10, 1), date(2023, 10, 25), "sentinel-1", SHIPS,
                                ws.root / "incoming", seed=3)
    added = add_folder(ws.root / "incoming", store=store)
    assert added.failures == [] and len(added.scenes) == 3
    return ws, store, sims


def _nearest_m(lon: float, lat: float, sightings: list) -> float:
    if not sightings:
        return math.inf
    _, _, d = GEOD.inv([lon] * len(sightings), [lat] * len(sightings), [s.lon for s in sightings],
                       [s.lat for s in sightings])
    return float(np.min(d))


def test_detect_site_makes_one_look_per_scene_and_locates_ships(sar_ws) -> None:
    ws, store, sims = sar_ws
    result = detect_site(ws, "rajin", datetime(2023, 9, 1, tzinfo=UTC), detector=bright_blobs, progress=False)
    assert result.scenes == 3 and result.looks == 3 and result.failures == [] and result.simulated
    looks = store.looks(site="rajin")
    assert len(looks) == 3 and all(lk.simulated and lk.usable_fraction > 0.9 for lk in looks)
    by_time = {lk.time: lk for lk in looks}
    empty = by_time[sims[2].time]
    assert empty.vessels_seen == 0  # a negative look is stored, as evidence
    sightings = store.sightings(site="rajin")
    assert sightings and all(s.simulated and s.event == "detection" and s.look_id for s in sightings)
    for sim in sims[:2]:
        seen = [s for s in sightings if s.time == sim.time]
        # ships at anchor; in SAR a hull at a berth merges with the quay unless the user gives water polygons
        # (next test)
        for ship in (s for s in sim.ships if not s.alongside):
            assert _nearest_m(ship.lon, ship.lat, seen) < 40.0, f"{ship} not found within 40 m"
            best = min(seen, key=lambda s: GEOD.inv(ship.lon, ship.lat, s.lon, s.lat)[2])
            assert abs(best.length_m - ship.length_m) < 0.3 * ship.length_m
    chip_ids = [e for s in sightings for e in s.evidence_ids if e.startswith("chip-")]
    chips = store.evidence(chip_ids)
    assert len(chips) == len(sightings)
    for ev in chips.values():
        path = Path(ev.uri.removeprefix("file://"))
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # re-running is idempotent: the same looks and sightings, not twice as many
    again = detect_site(ws, "rajin", datetime(2023, 9, 1, tzinfo=UTC), detector=bright_blobs, progress=False)
    assert again.look_ids and sorted(again.look_ids) == sorted(result.look_ids)
    assert len(store.looks(site="rajin")) == 3 and len(store.sightings(site="rajin")) == len(sightings)
    # the date window is honoured
    late = detect_site(ws, "rajin", datetime(2023, 10, 20, tzinfo=UTC), detector=bright_blobs, progress=False)
    assert late.scenes == 1


def test_water_polygons_find_ships_at_berth(sar_ws) -> None:
    ws, store, sims = sar_ws
    (ws.root / "water").mkdir()
    shutil.copy(sims[0].path.with_name(sims[0].path.stem + ".water.geojson"), ws.root / "water" / "rajin.geojson")
    detect_site(ws, "rajin", datetime(2023, 9, 1, tzinfo=UTC), detector=bright_blobs, progress=False)
    sightings = store.sightings(site="rajin")
    berthed = [(sim, ship) for sim in sims for ship in sim.ships if ship.alongside]
    assert berthed, "the simulation should put some ships at a berth"
    for sim, ship in berthed:
        seen = [s for s in sightings if s.time == sim.time]
        assert _nearest_m(ship.lon, ship.lat, seen) < 40.0
    assert all("user polygons" in lk.note for lk in store.looks(site="rajin"))


def test_dask_local_cluster_gives_the_same_records(sar_ws) -> None:
    ws, store, _ = sar_ws
    serial = detect_site(ws, "rajin", datetime(2023, 9, 1, tzinfo=UTC), detector=bright_blobs, progress=False)
    serial_sightings = sorted(s.id for s in store.sightings(site="rajin"))
    parallel = detect_site(ws, "rajin", datetime(2023, 9, 1, tzinfo=UTC), detector=bright_blobs, workers=2,
                           processes=False, progress=False)
    assert sorted(parallel.look_ids) == sorted(serial.look_ids)
    assert parallel.sightings == serial.sightings
    assert sorted(s.id for s in store.sightings(site="rajin")) == serial_sightings


def test_bad_scenes_are_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    ws, store = _workspace(tmp_path)
    folder = ws.root / "incoming"
    when = datetime(2023, 10, 2, 2, 0, tzinfo=UTC)
    at_sea = ShipSpec(100, heading_deg=45, lon=130.300, lat=42.235)
    simulate_scene(SITE, when, "simulated-optical", [at_sea], folder / "clear_20231002.tif", seed=3)
    simulate_scene(SITE, datetime(2023, 10, 7, 2, 0, tzinfo=UTC), "simulated-optical", [ShipSpec(100)],
                   folder / "cloudy_20231007.tif", seed=3, cloud_cover=1.0)
    simulate_scene(SITE, datetime(2023, 10, 12, 9, 0, tzinfo=UTC), "simulated-sar", [ShipSpec(100)],
                   folder / "sar_20231012.tif", seed=3)
    added = add_folder(folder, store=store)
    assert added.failures == [] and len(added.scenes) == 3
    # the SAR file is truncated after it was added (a disk or copy error)
    sar = folder / "sar_20231012.tif"
    data = sar.read_bytes()
    sar.write_bytes(data[: len(data) // 3])
    result = detect_site(ws, "rajin", datetime(2023, 10, 1, tzinfo=UTC), detector=bright_blobs, progress=False)
    assert result.looks == 3 and len(result.failures) == 2
    messages = {Path(p).name: m for p, m in result.failures}
    assert "cloudy_20231007.tif" in messages and "cloud" in messages["cloudy_20231007.tif"]
    assert "sar_20231012.tif" in messages and "sar_20231012.tif" in messages["sar_20231012.tif"]
    assert {Path(f.path).name for f in store.failures("detect")} == {"cloudy_20231007.tif", "sar_20231012.tif"}
    assert [Path(p).name for p, _ in result.errors] == ["sar_20231012.tif"]  # the cloudy look is no error
    looks = {lk.time: lk for lk in store.looks(site="rajin")}
    assert looks[datetime(2023, 10, 7, 2, 0, tzinfo=UTC)].usable_fraction == 0.0
    assert looks[datetime(2023, 10, 12, 9, 0, tzinfo=UTC)].usable_fraction == 0.0
    assert looks[when].usable_fraction > 0.9 and looks[when].vessels_seen >= 1
    # sightings only from the good scene, none half-written from the bad ones
    assert {s.time for s in store.sightings(site="rajin")} == {when}
    # the file is copied again whole: the next run reads it, and its failure is no longer listed; the cloudy
    # scene still is (it is still cloudy)
    sar.write_bytes(data)
    again = detect_site(ws, "rajin", datetime(2023, 10, 1, tzinfo=UTC), detector=bright_blobs, progress=False)
    assert again.errors == [] and {Path(f.path).name for f in store.failures("detect")} == {"cloudy_20231007.tif"}


def test_user_water_polygons_set_the_usable_fraction(tmp_path: Path) -> None:
    ws, store = _workspace(tmp_path)
    folder = ws.root / "incoming"
    scene = simulate_scene(SITE, datetime(2023, 10, 2, 2, 0, tzinfo=UTC), "simulated-optical", [], folder / "a.tif",
                           seed=3, cloud_cover=0.4)
    add_folder(folder, store=store)
    # water polygon: the whole site, so that the cloudy share of the site is the unusable share
    (ws.root / "water").mkdir()
    (ws.root / "water" / "rajin.geojson").write_text(json.dumps(
        {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
                                                    "geometry": mapping(SITE.geometry)}]}))
    detect_site(ws, "rajin", datetime(2023, 10, 1, tzinfo=UTC), detector=bright_blobs, progress=False)
    look = store.looks(site="rajin")[0]
    assert "user polygons" in look.note
    assert look.usable_fraction == pytest.approx(1.0 - scene.cloud_fraction, abs=0.12)
    assert look.usable_fraction < 0.9
    # a water polygon that misses the site: a clear failure naming the file, look unusable
    shutil.rmtree(ws.root / "water")
    far = box(0, 0, 0.01, 0.01)
    (ws.root / "water.geojson").write_text(json.dumps({"type": "Feature", "properties": {},
                                                       "geometry": mapping(far)}))
    result = detect_site(ws, "rajin", datetime(2023, 10, 1, tzinfo=UTC), detector=bright_blobs, progress=False)
    assert len(result.failures) == 1 and "empty water mask" in result.failures[0][1]
    assert "a.tif" in result.failures[0][1]
    assert store.looks(site="rajin")[0].usable_fraction == 0.0


def _detected_once(tmp_path: Path, db_url: str) -> tuple[Workspace, object, list, Callable[[], dict]]:
    """Two SAR scenes with five ships each, detected once into a store at ``db_url``; ``held()`` gives per look
    time (vessels seen, usable fraction, ids of the stored sightings linked to the look)."""
    ws = Workspace.open(tmp_path / "ws", db_url).ensure()
    store = open_store(ws)
    store.upsert_watchlist(Watchlist(sites={SITE.key: SITE}))
    ships = [ShipSpec(120), ShipSpec(90), ShipSpec(150, heading_deg=30), ShipSpec(110), ShipSpec(130)]
    sims = [simulate_scene(SITE, datetime(2023, 10, d, 9, 0, tzinfo=UTC), "simulated-sar", ships,
                           ws.root / "incoming" / f"sar_202310{d:02d}.tif", seed=3) for d in (1, 2)]
    assert add_folder(ws.root / "incoming", store=store).failures == []
    detect_site(ws, "rajin", SINCE, detector=bright_blobs, progress=False)

    def held() -> dict[datetime, tuple[int | None, float, list[str]]]:
        sightings = store.sightings(site="rajin")
        return {lk.time: (lk.vessels_seen, lk.usable_fraction, sorted(s.id for s in sightings if s.look_id == lk.id))
                for lk in store.looks(site="rajin")}

    assert all(seen and seen >= 3 and len(ids) == seen for seen, _, ids in held().values()), held()
    return ws, store, sims, held


SINCE = datetime(2023, 9, 1, tzinfo=UTC)


def test_a_look_that_became_unusable_keeps_no_old_sightings(tmp_path: Path, db_url: str) -> None:
    """Detecting a scene again replaces its look's sightings in the same transaction (SQLite and PostgreSQL):
    the band file truncated since, the look is unusable and the sightings of before do not stay linked to it."""
    ws, _store, sims, held = _detected_once(tmp_path, db_url)
    before = held()
    data = sims[0].path.read_bytes()
    sims[0].path.write_bytes(data[: len(data) // 3])
    detect_site(ws, "rajin", SINCE, detector=bright_blobs, progress=False)
    after = held()
    assert after[sims[0].time] == (None, 0.0, [])
    assert after[sims[1].time] == before[sims[1].time]


def test_a_look_that_sees_fewer_ships_keeps_only_those(tmp_path: Path, db_url: str) -> None:
    """Water polygons added around one ship: the looks see fewer ships and hold only those sightings."""
    ws, store, sims, held = _detected_once(tmp_path, db_url)
    seen = [s for s in store.sightings(site="rajin") if s.time == sims[1].time]
    (ws.root / "water").mkdir()
    around = Point(seen[0].lon, seen[0].lat).buffer(0.002)
    (ws.root / "water" / "rajin.geojson").write_text(json.dumps({"type": "Feature", "properties": {},
                                                                 "geometry": mapping(around)}))
    detect_site(ws, "rajin", SINCE, detector=bright_blobs, progress=False)
    count, usable, ids = held()[sims[1].time]
    assert usable > 0 and count is not None and 1 <= count < len(seen) and len(ids) == count
    assert len(store.sightings(site="rajin")) == sum(c or 0 for c, _, _ in held().values())


def test_a_ship_no_longer_found_loses_its_fusion_label_too(tmp_path: Path, db_url: str) -> None:
    """Fusion's sightings carry their detection's look: detected again, a look drops the labels of the ships it no
    longer finds and keeps those of the ships it still finds."""
    import polars as pl

    from routewatch.fuse import FusionInputs, fuse_detections, fused_sightings
    from routewatch.fuse.io import detections_from_sightings, fused_id, is_fused
    from routewatch.sources.ais.schema import POSITION_SCHEMA

    ws, store, sims, _ = _detected_once(tmp_path, db_url)
    det = detections_from_sightings(store.sightings(site="rajin"))
    result = fuse_detections(det, pl.DataFrame(schema=POSITION_SCHEMA), FusionInputs({}, {}, {}, {}))
    labels, evidence = fused_sightings(result)
    with store.transaction() as conn:
        store.add_evidence(evidence, conn=conn)
        store.add_sightings(labels, conn=conn)
    seen = [s for s in store.sightings(site="rajin") if s.time == sims[1].time and not is_fused(s)]
    (ws.root / "water").mkdir()
    (ws.root / "water" / "rajin.geojson").write_text(json.dumps({"type": "Feature", "properties": {},
                                                                 "geometry": mapping(Point(seen[0].lon, seen[0].lat)
                                                                                     .buffer(0.002))}))
    detect_site(ws, "rajin", SINCE, detector=bright_blobs, progress=False)
    stored = store.sightings(site="rajin")
    detections = {s.id for s in stored if not is_fused(s)}
    labels_left = {s.id for s in stored if is_fused(s)}
    assert len(detections) < det.height
    assert labels_left <= {fused_id(i) for i in detections}  # no label of a ship no longer found
    assert {fused_id(i) for i in detections & set(det["id"])} <= labels_left  # the others keep theirs


def test_a_scene_with_no_information_is_an_unusable_look(tmp_path: Path) -> None:
    """A constant SAR image (no variation) and an all-no-data optical image say nothing about the site: unusable
    looks with the reason, never a clean "0 ships" look counted as evidence of absence."""
    ws, store = _workspace(tmp_path)
    folder = ws.root / "incoming"
    sar = simulate_scene(SITE, datetime(2023, 10, 2, 9, 0, tzinfo=UTC), "simulated-sar", [], folder / "c.tif")
    opt = simulate_scene(SITE, datetime(2023, 10, 3, 2, 0, tzinfo=UTC), "simulated-optical", [], folder / "z.tif")
    for sim, value in ((sar, 500), (opt, 0)):
        with rasterio.open(sim.path) as ds:
            profile, tags, descriptions = ds.profile, ds.tags(), ds.descriptions
        profile.update(driver="GTiff")
        sim.path.unlink()
        with rasterio.open(sim.path, "w", **profile) as ds:
            ds.write(np.full((profile["count"], profile["height"], profile["width"]), value, profile["dtype"]))
            ds.update_tags(**tags)
            for i, d in enumerate(descriptions, start=1):
                ds.set_band_description(i, d)
    assert add_folder(folder, store=store).failures == []
    result = detect_site(ws, "rajin", datetime(2023, 10, 1, tzinfo=UTC), detector=bright_blobs, progress=False)
    looks = {lk.time: lk for lk in store.looks(site="rajin")}
    assert all(lk.usable_fraction == 0.0 and lk.vessels_seen is None for lk in looks.values())
    assert "one value" in looks[sar.time].note and "c.tif" in looks[sar.time].note
    assert "no valid pixels" in looks[opt.time].note and "water mask" not in looks[opt.time].note
    assert len(result.failures) == 2 and result.usable_looks == 0


def test_a_detection_centred_in_cloud_is_not_a_sighting(tmp_path: Path) -> None:
    """Detectors search a little beyond the zone they are given (hulls at the quay's edge), so a cloud's edge beside
    clear water could come back as a ship: a detection whose centre the look did not see clearly is dropped."""
    from routewatch.detect.base import Detection
    from routewatch.sources.imagery.raster import read_scene

    ws, store = _workspace(tmp_path)
    folder = ws.root / "incoming"
    simulate_scene(SITE, datetime(2023, 10, 2, 2, 0, tzinfo=UTC), "simulated-optical", [], folder / "a.tif",
                   seed=3, cloud_cover=0.5)
    (scene,) = add_folder(folder, store=store).scenes
    raster = read_scene(scene, SITE.geometry)
    cloudy = np.argwhere((raster.scl == 9) & raster.georef.rasterize(SITE.geometry))  # cloud over the site
    assert cloudy.size
    picks: dict[str, tuple[int, int]] = {}

    def one_in_cloud_one_in_water(kind, bands, pixel_size_m, zone):
        picks["cloud"] = tuple(int(v) for v in cloudy[len(cloudy) // 2])
        water = np.argwhere(zone & raster.georef.rasterize(SITE.geometry))
        picks["water"] = tuple(int(v) for v in water[len(water) // 2])
        return [Detection(row=r, col=c, length_m=100.0, width_m=15.0, heading_deg=0.0, score=0.9)
                for r, c in picks.values()]

    detect_site(ws, "rajin", datetime(2023, 10, 1, tzinfo=UTC), detector=one_in_cloud_one_in_water, progress=False)
    kept = [s for s in store.sightings(site="rajin") if s.event == "detection"]
    assert [s.detail.split("pixel ")[1] for s in kept] == ["({:.1f}, {:.1f})".format(*picks["water"])]


def test_the_untagged_zero_fill_beside_a_sar_swath_is_not_counted_as_imaged(tmp_path: Path) -> None:
    """Half the window is the swath's zero fill, not tagged as no-data: the site's water there was not seen, so
    the look is about half usable, with the analyst's water polygons (which cover the whole site) too."""
    from affine import Affine

    from routewatch.sources.imagery.pipeline import process_scene

    ws, store = _workspace(tmp_path)
    folder = ws.root / "incoming"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    img = (rng.gamma(4.0, 50.0, (400, 400)) + 1).astype(np.uint16)
    img[:, 200:] = 0
    with rasterio.open(folder / "s1_20231002T093000_vv.tif", "w", driver="GTiff", width=400, height=400, count=1,
                       dtype="uint16", crs="EPSG:32652", transform=Affine(10.0, 0, 600000.0, 0, -10.0, 4680000.0)) as ds:
        ds.write(img, 1)
    (scene,) = add_folder(folder, store=store, sensor="sentinel-1").scenes
    site = Site("whole", "Whole", SiteKind.PORT, scene.footprint.buffer(-0.0005))
    out = process_scene(scene, site, site.geometry, str(ws.root / "chips"))
    assert out.look.usable_fraction == pytest.approx(0.5, abs=0.05), out.look.note
    # an 8-bit rendering's zeros are calm water, as for the water mask: imaged
    with rasterio.open(folder / "s1_20231003T093000_vv.tif", "w", driver="GTiff", width=400, height=400, count=1,
                       dtype="uint8", crs="EPSG:32652", transform=Affine(10.0, 0, 600000.0, 0, -10.0, 4680000.0)) as ds:
        ds.write(np.clip(img // 4, 0, 255).astype(np.uint8), 1)
    rendering = next(s for s in add_folder(folder, store=store, sensor="sentinel-1").scenes if "1003" in s.uri)
    out8 = process_scene(rendering, site, site.geometry, str(ws.root / "chips"))
    assert out8.look.usable_fraction > 0.95, out8.look.note
    assert "8-bit image: 5" in out8.look.note and "counted as calm water" in out8.look.note  # said, as it may be fill


def test_with_water_polygons_the_water_outside_the_image_is_taken_from_them(tmp_path: Path) -> None:
    """Half the site lies beyond the image, and the polygons say nearly all the site's water is there: the look saw
    1 part in 11 of it, not the share of water inside the image applied to the part outside."""
    from affine import Affine
    from shapely.geometry import box as _box

    from routewatch.sources.imagery.pipeline import process_scene

    ws, store = _workspace(tmp_path)
    folder = ws.root / "incoming"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    img = (rng.gamma(4.0, 50.0, (400, 400)) + 1).astype(np.uint16)
    lon0, lat0, d = 130.0, 42.4, 0.0005  # 400 x 400 px of 0.0005 deg
    with rasterio.open(folder / "s1_20231002T093000_vv.tif", "w", driver="GTiff", width=400, height=400, count=1,
                       dtype="uint16", crs="EPSG:4326", transform=Affine(d, 0, lon0, 0, -d, lat0)) as ds:
        ds.write(img, 1)
    (scene,) = add_folder(folder, store=store, sensor="sentinel-1").scenes
    east, right, south, north = lon0 + 200 * d, lon0 + 400 * d, lat0 - 400 * d, lat0
    site = Site("half-out", "Half out", SiteKind.PORT, _box(east, south, right + 200 * d, north))
    # water: a tenth of the inside half, and all of the outside half
    water = _box(east, south, east + 20 * d, north).union(_box(right, south, right + 200 * d, north))
    out = process_scene(scene, site, water, str(ws.root / "chips"))
    assert out.look.usable_fraction == pytest.approx(1 / 11, abs=0.02), out.look.note


def test_two_windows_of_one_acquisition_make_one_look(tmp_path: Path) -> None:
    """`fetch` stores one window of a product per site, and neighbouring sites' windows overlap (so do crops of
    one tile added for two ports): over a site, one acquisition is one look, from the window covering most of it,
    and a ship in both windows is one sighting. A look an earlier run made of the other window goes."""
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    ws, store = _workspace(tmp_path)
    folder = ws.root / "incoming"
    when = datetime(2023, 10, 12, 9, 0, tzinfo=UTC)
    ship = ShipSpec(150, heading_deg=30, lon=130.29, lat=42.232)
    whole = folder / "a" / "s1_20231012T090000_vv.tif"
    simulate_scene(SITE, when, "simulated-sar", [ship], whole, seed=4)
    with rasterio.open(whole) as ds:
        win = Window(ds.width // 3, 0, ds.width - ds.width // 3, ds.height)
        profile = ds.profile | {"width": int(win.width), "height": int(win.height),
                                "transform": window_transform(win, ds.transform)}
        profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
        crop = folder / "b" / "s1_20231012T090000_vv.tif"
        crop.parent.mkdir(parents=True)
        with rasterio.open(crop, "w", **profile) as out:
            out.write(ds.read(window=win))
            out.update_tags(**ds.tags())
            out.descriptions = ds.descriptions
    added = add_folder(folder, store=store)
    assert len(added.scenes) == 2 and added.failures == []  # two windows: neither is nine tenths of the other
    result = detect_site(ws, "rajin", datetime(2023, 10, 1, tzinfo=UTC), detector=bright_blobs, progress=False)
    assert result.looks == 1 and len(store.looks(site="rajin")) == 1
    assert store.looks(site="rajin")[0].scene_id == next(s.id for s in added.scenes if "/a/" in s.uri)
    ships = [s for s in store.sightings(site="rajin") if s.event == "detection"]
    assert len(ships) == 1
    # a look of the other window, from an earlier run that took both, is removed with its sightings
    from routewatch.sources.imagery.pipeline import process_scene

    other = next(s for s in added.scenes if "/b/" in s.uri)
    old = process_scene(other, SITE, None, str(ws.chips_dir), bright_blobs)
    from routewatch.sources.imagery.ingest import write_together

    assert old.failure is None and len(old.sightings) == 1  # the crop sees the same ship
    write_together(store, evidence=old.evidence, looks=[old.look], sightings=old.sightings)
    assert len(store.looks(site="rajin")) == 2
    detect_site(ws, "rajin", datetime(2023, 10, 1, tzinfo=UTC), detector=bright_blobs, progress=False)
    assert len(store.looks(site="rajin")) == 1
    assert len([s for s in store.sightings(site="rajin") if s.event == "detection"]) == 1


def test_two_crops_of_one_image_that_overlap_in_part_count_the_overlap_once(tmp_path: Path) -> None:
    """Two crops of one image, each showing about two thirds of the port (neither nine tenths of the other): both
    are looks, but the part of the site they share is counted by one of them, so their usable fractions add up to
    the whole image's and a ship in the overlap is one sighting."""
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    ws, store = _workspace(tmp_path)
    folder = ws.root / "incoming"
    when = datetime(2023, 10, 12, 9, 0, tzinfo=UTC)
    ships = [ShipSpec(150, heading_deg=30, lon=130.2875, lat=42.232),  # in the middle: both crops show it
             ShipSpec(120, heading_deg=0, lon=130.305, lat=42.225)]  # east: the east crop only
    whole = ws.root / "whole" / "s1_20231012T090000_vv.tif"
    simulate_scene(SITE, when, "simulated-sar", ships, whole, seed=4)
    with rasterio.open(whole) as ds:
        third = ds.width // 3
        for name, win in (("west", Window(0, 0, 2 * third, ds.height)),
                          ("east", Window(third, 0, ds.width - third, ds.height))):
            profile = ds.profile | {"width": int(win.width), "height": int(win.height),
                                    "transform": window_transform(win, ds.transform)}
            for k in ("blockxsize", "blockysize", "tiled"):
                profile.pop(k, None)
            crop = folder / name / "s1_20231012T090000_vv.tif"
            crop.parent.mkdir(parents=True)
            with rasterio.open(crop, "w", **profile) as out:
                out.write(ds.read(window=win))
                out.update_tags(**ds.tags())
                out.descriptions = ds.descriptions
    alone = open_store(Workspace.open(tmp_path / "alone").ensure())
    from routewatch.sources.imagery.pipeline import process_scene

    (full,) = add_folder(whole.parent, store=alone).scenes
    reference = process_scene(full, SITE, None, str(ws.chips_dir), bright_blobs)
    assert len(reference.sightings) == 2
    added = add_folder(folder, store=store)
    assert len(added.scenes) == 2 and added.failures == []
    result = detect_site(ws, "rajin", datetime(2023, 10, 1, tzinfo=UTC), detector=bright_blobs, progress=False)
    looks = store.looks(site="rajin")
    assert result.looks == 2 and len(looks) == 2
    assert sum(lk.usable_fraction for lk in looks) == pytest.approx(reference.look.usable_fraction, abs=0.02)
    assert any("counted by the look of another window" in lk.note for lk in looks)
    seen = [s for s in store.sightings(site="rajin") if s.event == "detection"]
    assert len(seen) == 2  # the middle ship once (the crop showing more of the site keeps it), the east one
    for ship in ships:
        assert _nearest_m(ship.lon, ship.lat, seen) < 40.0
    # the crop that counted the shared part cannot be read any more (a copy cut short): the other one counts it
    # now, with the ship in it, instead of leaving it to a look that saw nothing
    first = max(looks, key=lambda lk: lk.usable_fraction)
    path = Path(next(s.uri for s in added.scenes if s.id == first.scene_id))
    path.write_bytes(path.read_bytes()[:2000])
    again = detect_site(ws, "rajin", datetime(2023, 10, 1, tzinfo=UTC), detector=bright_blobs, progress=False)
    assert len(again.errors) == 1
    other = next(lk for lk in store.looks(site="rajin") if lk.scene_id != first.scene_id)
    assert other.usable_fraction > 0.6 and "another window" not in other.note
    kept = [s for s in store.sightings(site="rajin") if s.event == "detection"]
    assert _nearest_m(ships[0].lon, ships[0].lat, kept) < 40.0  # the middle ship, seen by the readable crop


def test_a_ship_on_a_lon_lat_grid_at_60_north_is_measured_in_true_metres(tmp_path: Path) -> None:
    """Pixels of a lon/lat grid at 60 N are 5.6 m east-west by 11.1 m north-south: a 200 m hull lying east-west
    is 200 m (one mean pixel size made it 284 m), and one lying north-south is too."""
    from affine import Affine

    from routewatch.sources.imagery.pipeline import process_scene

    ws, store = _workspace(tmp_path)
    folder = ws.root / "incoming"
    folder.mkdir(parents=True)
    d = 1e-4  # degrees: 5.57 m of longitude, 11.1 m of latitude at 60 N
    rng = np.random.default_rng(5)
    img = (rng.gamma(1.0, 60.0, (400, 400)) + 1).astype(np.uint16)
    img[99:102, 150:186] = 5000  # east-west: 36 px x 5.57 m = 200 m
    img[250:268, 300:305] = 5000  # north-south: 18 px x 11.1 m = 200 m
    with rasterio.open(folder / "s1_20231002T093000_vv.tif", "w", driver="GTiff", width=400, height=400, count=1,
                       dtype="uint16", crs="EPSG:4326", transform=Affine(d, 0, 20.0, 0, -d, 60.02)) as ds:
        ds.write(img, 1)
    (scene,) = add_folder(folder, store=store, sensor="sentinel-1").scenes
    site = Site("box", "Box", SiteKind.PORT, scene.footprint.buffer(-d))
    out = process_scene(scene, site, site.geometry, str(ws.root / "chips"))
    assert len(out.sightings) == 2, (out.look.note, [s.detail for s in out.sightings])
    by_axis = {round(s.heading_deg / 90) % 2: s for s in out.sightings}  # 1: east-west, 0: north-south
    assert by_axis[1].length_m == pytest.approx(200, rel=0.12) and by_axis[0].length_m == pytest.approx(200, rel=0.12)
    assert by_axis[1].heading_deg == pytest.approx(90, abs=3)


def test_adjacent_tiles_of_one_datatake_are_two_looks() -> None:
    """Two Sentinel-2 tiles of one datatake have the same time: each shows its own part of a port on their edge,
    so both are looks; a window that shows the same part as another is not."""
    from routewatch.model import Scene
    from routewatch.sources.imagery.pipeline import one_per_acquisition

    t = datetime(2023, 5, 1, 11, 6, 21, tzinfo=UTC)
    port = Site("edge", "Edge", SiteKind.PORT, box(0, 0, 1, 1))
    west = Scene("t29spr", "sentinel-2", t, box(-1, -1, 0.55, 2), 10.0)
    east = Scene("t29sqr", "sentinel-2", t, box(0.45, -1, 2, 2), 10.0)
    inner = Scene("window", "sentinel-2", t, box(-1, -1, 0.5, 2), 10.0)  # inside the west tile's part
    later = Scene("later", "sentinel-2", datetime(2023, 5, 6, 11, 6, 21, tzinfo=UTC), box(-1, -1, 0.5, 2), 10.0)
    kept, left = one_per_acquisition([west, east, inner, later], port)
    assert [s.id for s in kept] == ["t29spr", "t29sqr", "later"] and [s.id for s in left] == ["window"]
    # two windows showing the same: one is kept, the same one on every run; one touching the site's edge is no look
    # of its own; with a scene of unknown extent in the group nothing can be compared, and all are kept
    twin = Scene("window-b", "sentinel-2", t, box(-1, -1, 0.5, 2), 10.0)
    edge = Scene("edge", "sentinel-2", t, box(1.0, -1, 3, 2), 10.0)
    kept, left = one_per_acquisition([twin, inner, edge], port)
    assert [s.id for s in kept] == ["window"] and {s.id for s in left} == {"window-b", "edge"}
    assert [s.id for s in one_per_acquisition([inner, twin, edge], port)[0]] == ["window"]
    unknown = Scene("nofootprint", "sentinel-2", t, None, 10.0)
    assert len(one_per_acquisition([inner, unknown], port)[0]) == 2


def _casablanca_scene(shared_dir: Path, tmp_path: Path, files: tuple[str, ...], no_data_cols: int = 0,
                      tags: dict[str, str] | None = None) -> tuple[Workspace, object, Site, np.ndarray]:
    """A workspace with the shared Casablanca crop as a scene (columns before ``no_data_cols`` tagged no-data)
    and a site over it; returns the workspace, store, site and the no-data mask."""
    from rasterio.warp import transform_bounds

    src = shared_dir / "data" / "sen2ships" / "casablanca"
    ws = Workspace.open(tmp_path / "ws").ensure()
    store = open_store(ws)
    folder = tmp_path / "casablanca"
    folder.mkdir()
    for f in files:
        with rasterio.open(src / f"{f}.tiff") as ds:
            arr, profile = ds.read(1), ds.profile
        arr[:, :no_data_cols] = 0
        profile.update(driver="GTiff", nodata=0)
        with rasterio.open(folder / f"{f}.tiff", "w", **profile) as ds:
            ds.write(arr, 1)
            ds.update_tags(**(tags or {}))
    nodata = np.zeros((profile["height"], profile["width"]), bool)
    nodata[:, :no_data_cols] = True
    bounds = rasterio.transform.array_bounds(profile["height"], profile["width"], profile["transform"])
    site = Site("casablanca", "Casablanca", SiteKind.PORT, box(*transform_bounds(profile["crs"], "EPSG:4326", *bounds)))
    store.upsert_watchlist(Watchlist(sites={site.key: site}))
    assert add_folder(folder, store=store, when=datetime(2023, 6, 1, 11, tzinfo=UTC)).failures == []
    return ws, store, site, nodata


def _pixel_cols(store: object, folder: Path) -> list[float]:
    with rasterio.open(folder / "B02.tiff") as ds:
        tr, crs = ds.transform, ds.crs
    from rasterio.warp import transform

    cols = []
    for s in store.sightings(site="casablanca"):  # type: ignore[attr-defined]
        xs, ys = transform("EPSG:4326", crs, [s.lon], [s.lat])
        cols.append((~tr @ (xs[0], ys[0]))[0])
    return cols


@pytest.mark.shared
def test_the_packaged_detector_finds_no_ship_along_a_no_data_edge(shared_dir: Path, tmp_path: Path) -> None:
    """Columns 0-199 of Casablanca as no-data: the optical model fired on the step (2 sightings 2-4 px from it)."""
    ws, store, _, _ = _casablanca_scene(shared_dir, tmp_path, ("B02", "B03", "B04", "B08"), no_data_cols=200)
    result = detect_site(ws, "casablanca", datetime(2023, 5, 1, tzinfo=UTC), progress=False)
    assert result.errors == [] and result.usable_looks == 1
    cols = _pixel_cols(store, tmp_path / "casablanca")
    assert len(cols) >= 6 and min(cols) > 208, cols


@pytest.mark.shared
def test_a_scene_without_a_cloud_mask_that_states_its_cloud_is_not_a_clear_look(shared_dir: Path,
                                                                               tmp_path: Path) -> None:
    """A product without a cloud mask whose metadata calls the scene 87 % cloudy (CLOUD_COVER=87, a percentage) had
    made a fully usable look (and stored 87 as the fraction): the site is taken as cloudy as the scene."""
    ws, store, _, _ = _casablanca_scene(shared_dir, tmp_path, ("B02", "B03", "B04", "B08"), tags={"CLOUD_COVER": "87"})
    assert [sc.cloud_cover for sc in store.scenes()] == [pytest.approx(0.87)]
    detect_site(ws, "casablanca", datetime(2023, 5, 1, tzinfo=UTC), progress=False)
    (look,) = store.looks(site="casablanca")
    assert look.usable_fraction == pytest.approx(0.13, abs=0.01) and "states 87% cloud" in look.note
    assert look.vessels_seen is not None and look.vessels_seen >= 1  # its clear part's ships are kept


@pytest.mark.shared
def test_a_scene_without_a_cloud_mask_that_states_it_is_all_cloud_is_unusable(shared_dir: Path,
                                                                              tmp_path: Path) -> None:
    """CLOUD_COVER=100 and no mask: the look had been 0 % usable yet kept the ships found (on cloud tops, as far
    as the product says), with no failure recorded."""
    ws, store, _, _ = _casablanca_scene(shared_dir, tmp_path, ("B02", "B03", "B04", "B08"),
                                        tags={"CLOUD_COVER": "100"})
    result = detect_site(ws, "casablanca", datetime(2023, 5, 1, tzinfo=UTC), progress=False)
    (look,) = store.looks(site="casablanca")
    assert look.usable_fraction == 0.0 and not look.vessels_seen and store.sightings(site="casablanca") == []
    assert result.failures and "states 100% cloud" in result.failures[0][1]


@pytest.mark.shared
def test_an_rgb_scene_is_detected_with_water_polygons_and_a_warning(shared_dir: Path, tmp_path: Path) -> None:
    """Blue, green and red alone: the packaged model runs without nir, as `detect optical` does, with its warning
    in the look's note (it failed with "missing ['nir']"); without water polygons the look is unusable."""
    ws, store, site, _ = _casablanca_scene(shared_dir, tmp_path, ("B02", "B03", "B04"))
    since = datetime(2023, 5, 1, tzinfo=UTC)
    result = detect_site(ws, "casablanca", since, progress=False)
    assert result.usable_looks == 0 and "green and nir" in result.failures[0][1]
    (ws.root / "water").mkdir()
    (ws.root / "water" / "casablanca.geojson").write_text(json.dumps(
        {"type": "Feature", "properties": {}, "geometry": mapping(site.geometry)}))
    result = detect_site(ws, "casablanca", since, progress=False)
    assert result.errors == [] and result.usable_looks == 1, result.failures
    look = store.looks(site="casablanca")[0]
    assert "warning: no nir band" in look.note and look.vessels_seen == len(store.sightings(site="casablanca"))
    assert look.vessels_seen is not None and look.vessels_seen >= 1


def test_a_pixel_mask_outlined_in_lon_lat_rasterizes_back_to_itself() -> None:
    """What a window imaged with data is handed on as a WGS84 outline; read back on the grid it is the same mask."""
    from affine import Affine

    from routewatch.sources.imagery.geo import GridGeoref

    grid = GridGeoref((120, 160), transform=Affine(10.0, 0, 500000, 0, -10.0, 4675000), crs="EPSG:32652")
    mask = np.zeros((120, 160), bool)
    mask[10:80, 20:150] = True
    mask[30:50, 60:90] = False  # a hole: no data inside
    mask[100:110, 5:15] = True  # a second part
    back = grid.rasterize(grid.polygonize(mask))
    assert (back == mask).mean() > 0.995 and grid.polygonize(np.zeros((120, 160), bool)).is_empty
    # speckled no-data (one pixel in ten) is filled rather than outlined pixel by pixel
    speckled = mask & (np.random.default_rng(0).random(mask.shape) > 0.1)
    assert len(shapely.get_coordinates(grid.polygonize(speckled))) < 200
    assert (grid.rasterize(grid.polygonize(speckled)) == mask).mean() > 0.99
    # a window across the antimeridian: its outline is cut at 180 deg, as its footprint is
    east = GridGeoref((200, 200), transform=Affine(10.0, 0, 818000, 0, -10.0, 8130000), crs="EPSG:32760")
    whole = east.polygonize(np.ones((200, 200), bool))
    assert whole.geom_type == "MultiPolygon" and whole.symmetric_difference(east.footprint()).area < 1e-7


def test_a_sar_scene_added_as_intensity_is_detected_as_its_amplitude(tmp_path: Path) -> None:
    """A sigma0 (power) product added with --sar-values intensity gives the ships of the same image in amplitude
    (the CFAR's settings are for amplitude); added without it, it is read as amplitude, as before."""
    from affine import Affine

    from routewatch.simulate.scenes import sea_clutter
    from routewatch.sources.imagery.pipeline import process_scene

    ws, store = _workspace(tmp_path)
    amp = sea_clutter((400, 400), 7).astype(np.float32)
    amp[99:102, 150:170] = 4000
    amp[250:262, 300:303] = 4000
    t = Affine(10.0, 0, 500000, 0, -10.0, 4675000)
    outs = {}
    for name, data, values in (("amp", amp, None), ("pow", (amp / 1000.0) ** 2, "intensity")):
        folder = ws.root / name
        folder.mkdir(parents=True)
        with rasterio.open(folder / f"s1_2023100{len(outs) + 1}T093000_vv.tif", "w", driver="GTiff", width=400,
                           height=400, count=1, dtype="float32", crs="EPSG:32652", transform=t) as ds:
            ds.write(data, 1)
        (scene,) = add_folder(folder, store=store, sensor="sentinel-1", sar_values=values).scenes
        site = Site("box", "Box", SiteKind.PORT, scene.footprint.buffer(-0.0005))
        outs[name] = process_scene(scene, site, site.geometry, str(ws.root / "chips"))
    found = {k: sorted((round(s.lon, 5), round(s.lat, 5), round(s.length_m), round(s.score, 3))
                       for s in o.sightings) for k, o in outs.items()}
    assert len(found["amp"]) == 2 and found["pow"] == found["amp"]


def test_an_anchorage_split_by_a_wind_front_is_not_a_whole_look(tmp_path: Path) -> None:
    """Open sea whose one half is a low-wind patch 10 dB darker: the mask derived from the image takes the windier
    half for land, so its ships are not searched, and the look had still been 100 % usable (the water expected was
    the same mask's). An anchorage is water throughout: the look is about half usable and says why. A port keeps
    the derived mask's judgement (its land is land)."""
    from affine import Affine

    from routewatch.sources.imagery.pipeline import process_scene

    ws, store = _workspace(tmp_path)
    folder = ws.root / "incoming"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    inten = rng.gamma(4.4, 1 / 4.4, (400, 400))
    inten[:, :200] *= 0.1  # calm half, 10 dB darker
    img = np.clip(np.sqrt(inten) * 400, 1, 65535).astype(np.uint16)
    with rasterio.open(folder / "s1_20231002T093000_vv.tif", "w", driver="GTiff", width=400, height=400, count=1,
                       dtype="uint16", crs="EPSG:32652", transform=Affine(10.0, 0, 600000.0, 0, -10.0, 4680000.0)) as ds:
        ds.write(img, 1)
    (scene,) = add_folder(folder, store=store, sensor="sentinel-1").scenes
    area = scene.footprint.buffer(-0.0005)
    anchorage = process_scene(scene, Site("anch", "Anchorage", SiteKind.ANCHORAGE, area), None, str(ws.root / "c"))
    assert anchorage.look.usable_fraction == pytest.approx(0.5, abs=0.08), anchorage.look.note
    assert "of the anchorage out (not searched" in anchorage.look.note
    port = process_scene(scene, Site("port", "Port", SiteKind.PORT, area), None, str(ws.root / "c"))
    assert port.look.usable_fraction > 0.95
    # uniform sea with a no-data strip: the strip is not imaged, and not blamed on the water mask
    sea = np.clip(np.sqrt(rng.gamma(4.4, 1 / 4.4, (400, 400))) * 400, 1, 65535).astype(np.uint16)
    sea[:, :160] = 0
    with rasterio.open(folder / "s1_20231003T093000_vv.tif", "w", driver="GTiff", width=400, height=400, count=1,
                       dtype="uint16", nodata=0, crs="EPSG:32652",
                       transform=Affine(10.0, 0, 600000.0, 0, -10.0, 4680000.0)) as ds:
        ds.write(sea, 1)
    holed = next(s for s in add_folder(folder, store=store, sensor="sentinel-1").scenes if "1003" in s.uri)
    out = process_scene(holed, Site("anch", "Anchorage", SiteKind.ANCHORAGE, area), None, str(ws.root / "c"))
    assert out.look.usable_fraction == pytest.approx(0.6, abs=0.08) and "anchorage out" not in out.look.note
