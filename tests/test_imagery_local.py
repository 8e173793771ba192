"""`scenes add`: the analyst's own GeoTIFFs in any CRS and band layout, and bad files reported by name."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from typer.testing import CliRunner

from routewatch.cli import app
from routewatch.model import stable_id
from routewatch.sources.imagery.cog import write_cog
from routewatch.sources.imagery.ingest import add_folder, open_store
from routewatch.sources.imagery.local import scan_folder
from routewatch.sources.imagery.raster import SceneReadError, read_scene
from routewatch.workspace import Workspace

UTM52 = "EPSG:32652"
T = Affine(3.0, 0, 500000, 0, -3.0, 4675000)


def _tif(path: Path, count: int = 4, shape=(60, 80), crs: str | None = UTM52, **kw) -> Path:
    arrays = [np.full(shape, 100 * (i + 1), dtype=np.uint16) for i in range(count)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=shape[1], height=shape[0], count=count, dtype="uint16",
                       crs=crs, transform=T if crs else Affine.identity(), **kw) as ds:
        ds.write(np.stack(arrays))
    return path


def test_sen2ships_folders_become_sentinel2_scenes(shared_dir: Path) -> None:
    result = scan_folder(shared_dir / "data" / "sen2ships")
    assert result.failures == [] and len(result.scenes) == 8
    busan = next(s for s in result.scenes if s.uri.endswith("busan"))
    assert busan.sensor == "sentinel-2" and busan.acquired == datetime(2022, 5, 14, tzinfo=UTC)
    assert set(busan.attributes["bands"]) == {"blue", "green", "red", "nir"}
    # EPSG:3857 pixels of 10 m are 10 m x cos(35.1 N) on the ground
    assert busan.resolution_m == pytest.approx(10.0 * np.cos(np.radians(35.1)), rel=0.02)
    lon, lat = busan.footprint.centroid.x, busan.footprint.centroid.y
    assert 129.0 < lon < 129.2 and 35.0 < lat < 35.2
    raster = read_scene(busan)
    with rasterio.open(shared_dir / "data" / "sen2ships" / "busan" / "B08.tiff") as ds:
        assert np.array_equal(raster.bands["nir"], ds.read(1))


def test_band_names_time_and_sensor_from_the_user(tmp_path: Path) -> None:
    _tif(tmp_path / "a" / "planet_scene.tif", count=4)
    _tif(tmp_path / "b" / "rgb_20231021T013000.tif", count=3)
    res = scan_folder(tmp_path / "a", bands=["red", "green", "blue", "nir"], sensor="planetscope",
                      when=datetime(2023, 10, 21, 1, 30, tzinfo=UTC))
    scene = res.scenes[0]
    assert scene.sensor == "planetscope" and scene.resolution_m == pytest.approx(3.0, rel=0.01)
    assert scene.attributes["bands"]["red"]["index"] == 1 and scene.attributes["bands"]["nir"]["index"] == 4
    rgb = scan_folder(tmp_path / "b").scenes[0]
    assert rgb.acquired == datetime(2023, 10, 21, 1, 30, tzinfo=UTC)  # from the file name
    assert [rgb.attributes["bands"][b]["index"] for b in ("red", "green", "blue")] == [1, 2, 3]
    assert rgb.sensor == "geotiff"
    # descriptions win over position
    p = _tif(tmp_path / "c" / "x_2023-10-01.tif", count=2)
    with rasterio.open(p, "r+") as ds:
        ds.set_band_description(1, "nir")
        ds.set_band_description(2, "red")
    desc = scan_folder(tmp_path / "c").scenes[0]
    assert desc.attributes["bands"]["nir"]["index"] == 1 and desc.attributes["bands"]["red"]["index"] == 2


def test_time_given_for_a_folder_dates_only_the_files_without_a_time_of_day(tmp_path: Path) -> None:
    """`scenes add --time` is for files that do not say when they were taken (the command's own advice after a
    date-only add): an image whose name or tags give its time keeps it, or two acquisitions would become one."""
    timed = _tif(tmp_path / "a" / "casa_20230501T103021.tif", count=4)
    dated = _tif(tmp_path / "a" / "casa_20230426.tif", count=4, shape=(60, 81))
    bare = _tif(tmp_path / "a" / "casa.tif", count=4, shape=(60, 82))
    with rasterio.open(bare, "r+") as ds:  # a write time is not an acquisition time: --time beats it
        ds.update_tags(TIFFTAG_DATETIME="2024:11:02 10:00:00")
    given = datetime(2023, 4, 26, 11, 6, 21, tzinfo=UTC)
    res = scan_folder(tmp_path / "a", when=given)
    when = {Path(s.uri).name: (s.acquired, s.attributes["time_precision"]) for s in res.scenes}
    assert when == {timed.name: (datetime(2023, 5, 1, 10, 30, 21, tzinfo=UTC), "second"),
                    dated.name: (given, "second"), bare.name: (given, "second")}
    assert res.failures == []
    # a date alone of another day than --time: refused by name, not re-dated
    other = scan_folder(tmp_path / "a", when=given.replace(day=27))
    assert {Path(s.uri).name for s in other.scenes} == {timed.name, bare.name}
    assert other.failures == [(str(dated), f"{dated}: the files date it 2023-04-26 (no time of day), not the day of "
                                           "--time 2023-04-27; add each day's images with its own --time")]


@pytest.mark.parametrize("name", ["casa_20230426T110621.tif", "casa_20230426.tif"])
def test_a_file_rewritten_in_place_replaces_its_scene(tmp_path: Path, name: str) -> None:
    """Recompressed where it lies, a file is the same image: it had been refused as a copy of itself (exit 1, a
    failure never cleared) or, dated to the day alone, stored a second time beside its stale scene."""
    import rasterio.shutil

    ws = Workspace.open(tmp_path / "ws").ensure()
    store = open_store(ws)
    path = _tif(tmp_path / "a" / name)
    (old,) = add_folder(tmp_path / "a", store=store).scenes
    rasterio.shutil.copy(path, tmp_path / "tmp.tif", driver="GTiff", compress="DEFLATE")
    (tmp_path / "tmp.tif").replace(path)
    again = add_folder(tmp_path / "a", store=store)
    assert again.failures == [] and again.new == 1 and again.moved == [old.id]
    assert [s.id for s in store.scenes()] == [again.scenes[0].id] != [old.id]
    # another image written over the same path (a "latest.tif" given its own --time): the stored scene's bytes are
    # gone, and read again it would be read as the new image, so the new reading takes its place
    from routewatch.model import DetectionModel, Look, SourceKind

    (kept,) = store.scenes()
    store.add_looks([Look("look-k", "casa", kept.acquired, kept.sensor, 1.0, DetectionModel(100.0, 20.0, 0.8),
                          SourceKind.IMAGE, scene_id=kept.id)])
    rasterio.shutil.copy(path, tmp_path / "tmp.tif", driver="GTiff", compress="LZW")
    (tmp_path / "tmp.tif").replace(path)
    later = add_folder(tmp_path / "a", store=store, when=datetime(2023, 4, 26, 15, tzinfo=UTC))
    assert later.moved == [kept.id] and len(store.scenes()) == 1 and store.scene_looks([kept.id]) == []
    timed = datetime(2023, 4, 26, 11, 6, 21, tzinfo=UTC)  # the name's time wins over --time
    assert store.scenes()[0].acquired == (timed if "T" in name else datetime(2023, 4, 26, 15, tzinfo=UTC))
    # rewritten again and added without --time: other bytes may be another image, so a time of day given to the
    # earlier one is not carried over (a date alone stays a date alone, and says so)
    rasterio.shutil.copy(path, tmp_path / "tmp.tif", driver="GTiff", compress="DEFLATE", predictor=2)
    (tmp_path / "tmp.tif").replace(path)
    plain = add_folder(tmp_path / "a", store=store)
    assert plain.failures == [] and len(store.scenes()) == 1
    assert store.scenes()[0].acquired == (timed if "T" in name else datetime(2023, 4, 26, tzinfo=UTC))
    # the same bytes again (the same id) without --time: the stored time stays; rewritten at the same size (the
    # same id, other bytes): its looks go
    (now,) = store.scenes()
    store.add_looks([Look("look-s", "casa", now.acquired, now.sensor, 1.0, DetectionModel(100.0, 20.0, 0.8),
                          SourceKind.IMAGE, scene_id=now.id)])
    assert add_folder(tmp_path / "a", store=store).redated == [] and len(store.scene_looks([now.id])) == 1


def test_an_image_written_over_a_file_at_the_same_size_loses_the_old_looks(tmp_path: Path) -> None:
    """Uncompressed GeoTIFFs of one grid have one size, so another image written over one keeps the scene's id:
    its file stamps tell it, and the old image's looks go. A write time does not replace a time that was given."""
    import os

    from rasterio import shutil as rio_shutil

    from routewatch.model import DetectionModel, Look, SourceKind

    ws = Workspace.open(tmp_path / "ws").ensure()
    store = open_store(ws)
    path = _tif(tmp_path / "a" / "latest.tif")
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(TIFFTAG_DATETIME="2024:11:02 10:00:00")  # a write time, no acquisition time
    given = datetime(2023, 4, 26, 11, 6, 21, tzinfo=UTC)
    (scene,) = add_folder(tmp_path / "a", store=store, when=given).scenes

    def look(i: int) -> None:
        store.add_looks([Look(f"look-{i}", "casa", given, scene.sensor, 1.0, DetectionModel(100.0, 20.0, 0.8),
                              SourceKind.IMAGE, scene_id=scene.id)])

    look(1)
    again = add_folder(tmp_path / "a", store=store)  # no --time: the write time does not replace the given one
    assert again.redated == [] and store.scenes()[0].acquired == given and len(store.scene_looks([scene.id])) == 1
    with rasterio.open(path, "r+") as ds:
        ds.write(ds.read() + 7)  # another image, the same size
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert path.stat().st_size == int(scene.attributes["stamps"][0][0])
    over = add_folder(tmp_path / "a", store=store, when=given)
    assert over.scenes[0].id == scene.id and over.redated == [scene.id] and store.scene_looks([scene.id]) == []
    # the next day's image written over it at another size: found by its path, whatever its day, and replaced
    look(2)
    rio_shutil.copy(path, tmp_path / "tmp.tif", driver="GTiff", compress="DEFLATE")
    (tmp_path / "tmp.tif").replace(path)
    nextday = add_folder(tmp_path / "a", store=store, when=datetime(2023, 4, 27, 10, tzinfo=UTC))
    assert nextday.moved == [scene.id] and [s.id for s in store.scenes()] == [nextday.scenes[0].id]
    assert store.scene_looks([scene.id]) == []


def test_a_scene_dated_anew_loses_the_looks_made_at_its_old_time(tmp_path: Path) -> None:
    """A date-only scene detected, then given its time of day with `scenes add --time` (the command's advice):
    its looks and detections still said 00:00, and fusion matched AIS at midnight without a word. They go, and
    `detect` makes them again at the new time."""
    from routewatch.model import DetectionModel, Look, Sighting, SourceKind

    ws = Workspace.open(tmp_path / "ws").ensure()
    store = open_store(ws)
    _tif(tmp_path / "a" / "casa_20230426.tif")
    (scene,) = add_folder(tmp_path / "a", store=store).scenes
    store.add_looks([Look("look-1", "casa", scene.acquired, scene.sensor, 1.0, DetectionModel(100.0, 20.0, 0.8),
                          SourceKind.IMAGE, scene_id=scene.id)])
    store.add_sightings([Sighting("det-1", scene.acquired, SourceKind.IMAGE, site="casa", event="detection",
                                  lon=1.0, lat=1.0, look_id="look-1")])
    same = add_folder(tmp_path / "a", store=store)  # again as it was: nothing to redo
    assert same.redated == [] and len(store.scene_looks([scene.id])) == 1
    timed = add_folder(tmp_path / "a", store=store, when=datetime(2023, 4, 26, 11, 6, 21, tzinfo=UTC))
    assert timed.redated == [scene.id] and timed.scenes[0].id == scene.id
    assert store.scene_looks([scene.id]) == [] and store.sightings() == []
    assert store.scenes()[0].acquired == datetime(2023, 4, 26, 11, 6, 21, tzinfo=UTC)
    # added again without --time (the name gives the date alone): the time of day it was given stays, and so do
    # the looks made at it
    store.add_looks([Look("look-2", "casa", store.scenes()[0].acquired, scene.sensor, 1.0,
                          DetectionModel(100.0, 20.0, 0.8), SourceKind.IMAGE, scene_id=scene.id)])
    plain = add_folder(tmp_path / "a", store=store)
    assert plain.redated == [] and plain.scenes[0].acquired == datetime(2023, 4, 26, 11, 6, 21, tzinfo=UTC)
    assert store.scenes()[0].attributes["time_precision"] == "second" and len(store.scene_looks([scene.id])) == 1
    # a time of day corrected with --time: the looks made at the old one go too
    fixed = add_folder(tmp_path / "a", store=store, when=datetime(2023, 4, 26, 11, 30, tzinfo=UTC))
    assert fixed.redated == [scene.id] and store.scene_looks([scene.id]) == []


def test_scenes_add_on_a_folder_without_geotiffs_says_so(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert CliRunner().invoke(app, ["init", str(ws)]).exit_code == 0
    (tmp_path / "jpegs").mkdir()
    (tmp_path / "jpegs" / "scene.jpg").write_bytes(b"\xff\xd8\xff")
    res = CliRunner().invoke(app, ["scenes", "add", str(tmp_path / "jpegs"), "-w", str(ws)])
    assert res.exit_code == 1 and "no GeoTIFF in it or below it" in " ".join(res.output.split())


def test_scenes_add_says_when_no_detector_reads_a_scenes_bands(tmp_path: Path) -> None:
    """A one-band SAR file added without --sensor is stored as a panchromatic band, and a two-band file as band1,
    band2: said at `scenes add` (it had come up at `detect` as an optical water-mask failure); as SAR (by its
    --sensor, or bands named by polarisation), or with colour bands, nothing is said."""
    ws = tmp_path / "ws"
    assert CliRunner().invoke(app, ["init", str(ws)]).exit_code == 0
    _tif(tmp_path / "one" / "s1_20240110T093000.tif", count=1)
    _tif(tmp_path / "two" / "x_20240111T093000.tif", count=2)
    for folder, extra, warned in (("one", [], True), ("two", [], True), ("one", ["--sensor", "sentinel-1"], False),
                                  ("two", ["--bands", "red,nir"], True), ("two", ["--bands", "vv,vh"], False)):
        res = CliRunner().invoke(app, ["scenes", "add", str(tmp_path / folder), "-w", str(ws), *extra])
        said = " ".join(res.output.split())
        assert ("no blue, green and red bands" in said) is warned, (folder, extra, said)
    _tif(tmp_path / "four" / "y_20240112T093000.tif", count=4)  # blue, green, red, nir by their count
    res = CliRunner().invoke(app, ["scenes", "add", str(tmp_path / "four"), "-w", str(ws)])
    assert "no blue, green and red bands" not in " ".join(res.output.split())


def test_band_names_given_are_read_as_the_detectors_read_them(tmp_path: Path) -> None:
    """`--bands B02,B03,B04,B08` is blue, green, red, nir (as file names and descriptions are read); a name given
    twice, or names no detector reads, would store a scene whose every look is unusable: refused by file."""
    _tif(tmp_path / "a" / "casa_20230426.tif", count=4)
    codes = scan_folder(tmp_path / "a", bands=["B02", "B03", "B04", "B08"]).scenes[0]
    assert {k: v["index"] for k, v in codes.attributes["bands"].items()} == {"blue": 1, "green": 2, "red": 3, "nir": 4}
    twice = scan_folder(tmp_path / "a", bands=["blue", "blue", "red", "nir"])
    assert twice.scenes == [] and "--bands names blue twice" in twice.failures[0][1]
    none = scan_folder(tmp_path / "a", bands=["c1", "c2", "c3", "c4"])
    assert none.scenes == [] and "names no band a detector reads" in none.failures[0][1]
    # descriptions that name no band ("Band 1", as some tools write them) leave the names to the band count
    with rasterio.open(tmp_path / "a" / "casa_20230426.tif", "r+") as ds:
        for i in range(1, 5):
            ds.set_band_description(i, f"Band {i}")
    counted = scan_folder(tmp_path / "a").scenes[0]
    assert {k: v["index"] for k, v in counted.attributes["bands"].items()} == {"blue": 1, "green": 2, "red": 3,
                                                                               "nir": 4}


def test_the_tiff_write_time_dates_a_scene_only_when_nothing_else_does(tmp_path: Path) -> None:
    """A GIS export writes its own day into the TIFF DateTime tag: the date in the file name (or an acquisition
    tag) wins, and the write time is used only for a file that has neither."""
    named = _tif(tmp_path / "a" / "casa_20230426.tif", count=4)
    bare = _tif(tmp_path / "b" / "casa.tif", count=4)
    tagged = _tif(tmp_path / "c" / "casa_20230426.tif", count=4)
    for p in (named, bare, tagged):
        with rasterio.open(p, "r+") as ds:
            ds.update_tags(TIFFTAG_DATETIME="2024:11:02 10:00:00", TIFFTAG_SOFTWARE="QGIS 3.34")
    with rasterio.open(tagged, "r+") as ds:
        ds.update_tags(ACQUISITION_DATETIME="2023-04-26T10:56:31Z")
    assert scan_folder(tmp_path / "a").scenes[0].acquired == datetime(2023, 4, 26, tzinfo=UTC)
    assert scan_folder(tmp_path / "b").scenes[0].acquired == datetime(2024, 11, 2, 10, tzinfo=UTC)
    assert scan_folder(tmp_path / "c").scenes[0].acquired == datetime(2023, 4, 26, 10, 56, 31, tzinfo=UTC)


def test_bad_files_are_named_and_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    good = _tif(folder / "good_20231001.tif")
    _tif(folder / "nocrs_20231001.tif", crs=None)
    import warnings

    with warnings.catch_warnings():  # no CRS and no geotransform at all (rasterio warns when writing it too)
        warnings.simplefilter("ignore")
        with rasterio.open(folder / "bare_20231001.tif", "w", driver="GTiff", width=50, height=40, count=1,
                           dtype="uint16") as ds:
            ds.write(np.ones((1, 40, 50), np.uint16))
    broken = folder / "broken_20231001.tif"
    data = good.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    (folder / "garbage_20231001.tif").write_bytes(b"II*\x00 this is not a tiff")
    _tif(folder / "notime.tif")
    _tif(folder / "s2" / "B02.tif", count=1, crs=UTM52, shape=(60, 80))
    _tif(folder / "s2" / "B03.tif", count=1, crs=UTM52, shape=(60, 81))
    ws = Workspace.open(tmp_path / "ws").ensure()
    store = open_store(ws)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rasterio's NotGeoreferencedWarning would be printed raw to the user
        res = add_folder(folder, store=store)
    assert [Path(s.uri).name for s in res.scenes] == ["good_20231001.tif"]
    why = {Path(p).name: m for p, m in res.failures}
    assert "no CRS" in why["nocrs_20231001.tif"] and "no CRS" in why["bare_20231001.tif"]
    assert "broken_20231001.tif" in why["broken_20231001.tif"]
    assert "IReadBlock" in why["broken_20231001.tif"]  # GDAL's reason, not only rasterio's "Read failed"
    assert "garbage_20231001.tif" in why["garbage_20231001.tif"]
    assert "--time" in why["notime.tif"]
    assert "same size" in why["B02.tif"] and "B03.tif" in why["B02.tif"]
    assert "none of the scene's 2 band files is added: B02.tif, B03.tif" in why["B02.tif"]
    assert "band files" not in why["broken_20231001.tif"]  # a file alone is its own scene
    assert len(store.failures("scenes add")) == 6
    assert [s.id for s in store.scenes()] == [res.scenes[0].id]
    assert store.evidence([stable_id("evidence", res.scenes[0].id)])
    # adding again is idempotent
    add_folder(folder, store=store)
    assert len(store.scenes()) == 1


def test_cli_scenes_add_marks_simulated(tmp_path: Path) -> None:
    from shapely.geometry import box

    from routewatch.model import Site, SiteKind
    from routewatch.simulate import simulate_scene

    site = Site("rajin", "Rajin", SiteKind.PORT, box(130.265, 42.215, 130.310, 42.250))
    simulate_scene(site, datetime(2023, 10, 1, 9, tzinfo=UTC), "simulated-sar", [], tmp_path / "sim" / "s.tif")
    ws = tmp_path / "ws"
    # no workspace there: said, and nothing is created (no store, no folders)
    out = CliRunner().invoke(app, ["scenes", "add", str(tmp_path / "sim"), "-w", str(ws)])
    assert out.exit_code == 2 and "routewatch init" in " ".join(out.output.split())
    assert not ws.exists()
    assert CliRunner().invoke(app, ["init", str(ws)]).exit_code == 0
    out = CliRunner().invoke(app, ["scenes", "add", str(tmp_path / "sim"), "--workspace", str(ws)])
    assert out.exit_code == 0, out.output
    assert "SIMULATED" in out.output and "1 scenes added" in out.output
    scenes = open_store(Workspace.open(ws)).scenes()
    assert len(scenes) == 1 and scenes[0].simulated and scenes[0].sensor == "simulated-sar"
    again = CliRunner().invoke(app, ["scenes", "add", str(tmp_path / "sim"), "--workspace", str(ws)])
    assert "0 scenes added, 1 already in the store" in " ".join(again.output.split())
    missing = CliRunner().invoke(app, ["scenes", "add", str(tmp_path / "nope"), "--workspace", str(ws)])
    assert missing.exit_code == 2 and "no such file or folder" in " ".join(missing.output.split())
    # a folder with one good scene and one broken file: the good one goes in, and the exit status says a file
    # was skipped (a script sees it)
    simulate_scene(site, datetime(2023, 10, 2, 9, tzinfo=UTC), "simulated-sar", [], tmp_path / "mixed" / "s.tif")
    (tmp_path / "mixed" / "broken.tif").write_bytes(b"II*\x00 not a tiff")
    mixed = CliRunner().invoke(app, ["scenes", "add", str(tmp_path / "mixed"), "--workspace", str(ws)])
    assert mixed.exit_code == 1 and "1 scenes added" in mixed.output and "broken.tif" in mixed.output
    assert len(open_store(Workspace.open(ws)).scenes()) == 2


def test_a_cloud_cover_tag_that_is_not_a_number_is_unknown(tmp_path: Path) -> None:
    """CLOUD_COVER='n/a' once crashed the whole folder (nothing stored, no failure recorded)."""
    folder = tmp_path / "in"
    for name, tag in (("na_20231001.tif", "n/a"), ("blank_20231002.tif", ""), ("num_20231003.tif", "12.5"),
                      ("frac_20231005.tif", "0.3"), ("over_20231006.tif", "150")):
        _tif(folder / name)
        with rasterio.open(folder / name, "r+") as ds:
            ds.update_tags(CLOUD_COVER=tag)
    _tif(folder / "plain_20231004.tif")
    ws = Workspace.open(tmp_path / "ws").ensure()
    res = add_folder(folder, store=open_store(ws))
    assert res.failures == []
    cloud = {Path(s.uri).name: s.cloud_cover for s in res.scenes}
    # a percentage, as Landsat and Sentinel-2 write it (0.3 is 0.3 %, not 30 %); out of range is unknown
    assert cloud == {"na_20231001.tif": None, "blank_20231002.tif": None, "num_20231003.tif": 0.125,
                     "plain_20231004.tif": None, "frac_20231005.tif": 0.003, "over_20231006.tif": None}


def test_band_files_that_do_not_line_up_are_refused(tmp_path: Path) -> None:
    """Same size is not enough: a band shifted 5 km, in another CRS or without one is refused, naming both files;
    float noise in the geotransform is not. A stored scene whose band file changed since is refused when read."""
    def scene(folder: Path, **b08: object) -> Path:
        for stem in ("B02", "B03", "B04"):
            _tif(folder / f"{stem}.tif", count=1)
        path = folder / "B08.tif"
        if "transform" in b08:
            with rasterio.open(path, "w", driver="GTiff", width=80, height=60, count=1, dtype="uint16",
                               crs=b08.get("crs", UTM52), transform=b08["transform"]) as ds:
                ds.write(np.full((1, 60, 80), 400, np.uint16))
        else:
            _tif(path, count=1, **b08)
        return folder

    when = datetime(2023, 10, 1, tzinfo=UTC)
    bad = {"shifted": dict(transform=T @ Affine.translation(5000 / 3.0, 0)), "utm51": dict(crs="EPSG:32651"),
           "nocrs": dict(crs=None)}
    for name, b08 in bad.items():
        res = scan_folder(scene(tmp_path / name, **b08), when=when)
        assert res.scenes == [], name
        (_path, message), = res.failures
        assert "B08.tif" in message and ("B02.tif" in message or "no CRS" in message), (name, message)
    noise = Affine(T.a + 1e-9, 0, T.c + 1e-7, 0, T.e, T.f - 1e-7)
    ok = scan_folder(scene(tmp_path / "noise", transform=noise), when=when)
    assert ok.failures == [] and len(ok.scenes) == 1
    # the band file is replaced by a shifted one, or one without CRS, after the scene was added
    _tif(tmp_path / "noise" / "B08.tif", count=1)
    with rasterio.open(tmp_path / "noise" / "B08.tif", "r+") as ds:
        ds.transform = T @ Affine.translation(0, 5000 / 3.0)
    with pytest.raises(SceneReadError, match=r"B08\.tif.*geotransform.*B02\.tif"):
        read_scene(ok.scenes[0])
    _tif(tmp_path / "noise" / "B08.tif", count=1, crs=None)
    with pytest.raises(SceneReadError, match=r"B08\.tif.*no CRS but .*B02\.tif"):
        read_scene(ok.scenes[0])


def test_write_cog_is_tiled_and_located(tmp_path: Path) -> None:
    p = write_cog(tmp_path / "x.tif", [np.zeros((300, 300), np.uint16)], transform=T, crs=UTM52)
    with rasterio.open(p) as ds:
        assert ds.profile["tiled"] and ds.crs.to_string() == UTM52 and ds.overviews(1)
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.shared
def test_band_files_named_as_downloads_are_one_scene_per_prefix(shared_dir: Path, tmp_path: Path) -> None:
    """ESA and Planet downloads name band files after the scene (``..._B02_10m.tif``): files sharing a prefix are
    one scene of several bands, not one single-band scene per file; another prefix is another scene."""
    import shutil

    port = shared_dir / "data" / "sen2ships" / "casablanca"
    folder = tmp_path / "downloads"
    folder.mkdir()
    for b in ("B02", "B03", "B04", "B08"):
        shutil.copy(port / f"{b}.tiff", folder / f"casablanca_20230426_{b}.tiff")
        shutil.copy(port / f"{b}.tiff", folder / f"T29SPR_20230501T110621_{b}_10m.tif")
    with rasterio.open(port / "B08.tiff") as ds:  # B8A at 20 m beside them: left out, not a reason to refuse
        profile, half = ds.profile, ds.read(1)[::2, ::2]
        profile.update(width=half.shape[1], height=half.shape[0], transform=ds.transform * Affine.scale(2))
    with rasterio.open(folder / "T29SPR_20230501T110621_B8A_20m.tif", "w", **profile) as dst:
        dst.write(half, 1)
    result = scan_folder(folder)
    assert result.failures == [] and len(result.scenes) == 2
    for scene in result.scenes:
        assert scene.sensor == "sentinel-2" and set(scene.attributes["bands"]) == {"blue", "green", "red", "nir"}
    assert sorted(s.acquired.date().isoformat() for s in result.scenes) == ["2023-04-26", "2023-05-01"]
    assert len({s.uri for s in result.scenes}) == 2  # each scene's link names its own files


@pytest.mark.shared
def test_a_blank_copy_added_first_gives_way_to_the_real_image_of_the_acquisition(tmp_path: Path) -> None:
    """An export that failed (all no-data) of the same acquisition, added first (a folder read in name order), had
    stood for it: the real image was refused as its copy and the day's look was unusable. The real image takes
    its place; a blank copy added after the real one is refused as before."""
    ws = Workspace.open(tmp_path / "ws").ensure()
    store = open_store(ws)
    when = datetime(2023, 10, 21, 1, 52, tzinfo=UTC)
    rng = np.random.default_rng(0)
    for name, data in (("a_blank", np.zeros((4, 60, 80), np.uint16)),
                       ("b_real", rng.integers(100, 3000, (4, 60, 80)).astype(np.uint16))):
        path = tmp_path / "in" / name / "scene.tif"
        path.parent.mkdir(parents=True)
        with rasterio.open(path, "w", driver="GTiff", width=80, height=60, count=4, dtype="uint16", crs=UTM52,
                           transform=T, nodata=0) as ds:
            ds.write(data)
    res = add_folder(tmp_path / "in", store=store, when=when)
    (kept,) = store.scenes()
    assert "b_real" in kept.uri and res.moved and [s.id for s in res.scenes] == [kept.id] and res.new == 1
    # the blank copy is said as the copy it is, as when added again (a run over the folder is the same each time)
    assert len(res.failures) == 1 and "a_blank" in res.failures[0][0] and "not added twice" in res.failures[0][1]
    again = add_folder(tmp_path / "in" / "a_blank", store=store, when=when)
    assert again.new == 0 and "the same acquisition as scene" in again.failures[0][1]
    assert [s.uri for s in store.scenes()] == [kept.uri]


def test_the_same_acquisition_in_two_folders_is_added_once(shared_dir: Path, tmp_path: Path) -> None:
    """A second copy would be a second look at the same moment: coverage counted twice. A folder moved after it
    was added (its old files gone) is taken under its new place."""
    import shutil

    ws = Workspace.open(tmp_path / "ws").ensure()
    store = open_store(ws)
    port = shared_dir / "data" / "sen2ships" / "gdynia"
    for copy in ("a", "b"):
        shutil.copytree(port, tmp_path / copy / "gdynia")
    when = datetime(2023, 6, 11, 9, 50, 31, tzinfo=UTC)  # the folder's annotations give its date alone
    other_day = add_folder(tmp_path / "a", store=store, when=when.replace(day=12))  # --time can't move the date
    assert other_day.scenes == [] and "the files date it 2023-06-11 (no time of day), not the day of --time " \
        "2023-06-12" in other_day.failures[0][1]
    first = add_folder(tmp_path / "a", store=store, when=when)
    second = add_folder(tmp_path / "b", store=store, when=when)
    assert (first.new, second.new, len(store.scenes())) == (1, 0, 1)
    assert "the same acquisition as scene" in second.failures[0][1]
    from routewatch.model import DetectionModel, Look, SourceKind

    (old,) = store.scenes()
    store.add_looks([Look(id="look-old", site="gdynia", time=when, sensor=old.sensor, usable_fraction=1.0,
                          detection=DetectionModel(100.0, 20.0, 0.8), source_kind=SourceKind.IMAGE,
                          scene_id=old.id)])
    shutil.rmtree(tmp_path / "a")
    moved = add_folder(tmp_path / "b", store=store, when=when)
    assert moved.new == 1 and moved.moved == [old.id]  # the first copy is gone: the second takes its place
    assert [s.uri for s in store.scenes()] == [moved.scenes[0].uri] and store.looks() == []
    # a date alone (sen2ships gives 2023-06-11): the same day and the same bytes is the same acquisition, marked
    # as having no time of day; another image of that day is kept
    for copy in ("c", "d", "e"):
        shutil.copytree(port, tmp_path / copy / "gdynia")
    with rasterio.open(tmp_path / "e" / "gdynia" / "B08.tiff", "r+") as ds:
        ds.write(ds.read(1) + 1, 1)
    third = add_folder(tmp_path / "e", store=store)  # another image of that day: kept, marked as a date alone
    assert third.new == 1 and third.scenes[0].acquired == datetime(2023, 6, 11, tzinfo=UTC)
    assert third.scenes[0].attributes["time_precision"] == "day"
    for copy in ("c", "d"):  # the bytes of the copy stored to the second, or of the date-only one: the same image
        assert add_folder(tmp_path / copy, store=store).new == 0
    # the same bytes given another time of that day (two --time values for one image): the same image too
    later = add_folder(tmp_path / "c", store=store, when=when.replace(hour=11))
    assert later.new == 0 and "the same acquisition as scene" in later.failures[0][1]
    with rasterio.open(tmp_path / "d" / "gdynia" / "B08.tiff", "r+") as ds:
        ds.write(ds.read(1) + 1, 1)  # now the bytes of the date-only copy e
    fourth = add_folder(tmp_path / "d", store=store)
    assert fourth.new == 0 and "the same acquisition as scene" in fourth.failures[0][1]
    # a time given with --time: to the second (00:00:00 too: a real midnight is no date alone); a date: marked
    assert store.scenes(since=when, until=when)[0].attributes["time_precision"] == "second"
    from routewatch.sources.imagery.ingest import date_only

    midnight = datetime(2023, 6, 11, tzinfo=UTC)
    for copy, add in (("g", 2), ("f", 3)):  # other images of that day
        shutil.copytree(port, tmp_path / copy / "gdynia")
        with rasterio.open(tmp_path / copy / "gdynia" / "B08.tiff", "r+") as ds:
            ds.write(ds.read(1) + add, 1)
    (exact,) = add_folder(tmp_path / "g", store=store, when=midnight).scenes
    assert exact.attributes["time_precision"] == "second" and not date_only(exact)
    dated = add_folder(tmp_path / "f", store=store, when=midnight, when_has_time=False)
    assert dated.scenes[0].attributes["time_precision"] == "day"


@pytest.mark.parametrize(("text", "has_time"), [
    ("2023-10-21", False), ("2023-10-21Z", False), ("2023-10-21+00:00", False), ("2023-W42-6", False),
    ("20231021", False), ("2023-10-21T01:30:00Z", True), ("2023-10-21 01:30", True), ("20231021T013000", True),
    ("2023:10:21 01:30:00", True), ("2023-10-21T00:00:00Z", True), ("2023-10-21T10Z", True)])
def test_a_written_time_says_whether_it_has_a_time_of_day(text: str, has_time: bool) -> None:
    from routewatch.sources.imagery.local import has_time_of_day

    assert has_time_of_day(text) is has_time


def test_scenes_add_with_a_date_alone_stores_its_midnight(tmp_path: Path, shared_dir: Path) -> None:
    """`--time 2023-10-21+09:00` is read by Python as 09:00; as a date with a zone it is a date alone: the scene is
    stored at that day's 00:00 UTC, marked so, as the command says."""
    import shutil

    from routewatch.sources.imagery.ingest import date_only

    ws = tmp_path / "ws"
    assert CliRunner().invoke(app, ["init", str(ws)]).exit_code == 0
    shutil.copytree(shared_dir / "data" / "sen2ships" / "gdynia", tmp_path / "in" / "gdynia",
                    ignore=shutil.ignore_patterns("annotations*"))  # whose date would have to be that of --time
    res = CliRunner().invoke(app, ["scenes", "add", str(tmp_path / "in"), "-w", str(ws), "--time", "2023-10-21+09:00"])
    assert res.exit_code == 0, res.output
    (scene,) = open_store(Workspace.open(ws)).scenes()
    assert scene.acquired == datetime(2023, 10, 21, tzinfo=UTC) and date_only(scene)


def test_a_file_refused_and_fixed_leaves_the_failure_list_when_the_folder_is_given_relative(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ws = Workspace.open(tmp_path / "ws").ensure()
    store = open_store(ws)
    _tif(tmp_path / "imgs" / "scene_20230105T020000.tif", crs=None)
    assert add_folder("imgs", store=store).failures
    assert [Path(f.path) for f in store.failures("scenes add")] == [tmp_path / "imgs" / "scene_20230105T020000.tif"]
    _tif(tmp_path / "imgs" / "scene_20230105T020000.tif")  # written again, with its CRS
    assert add_folder("imgs", store=store).new == 1
    assert store.failures("scenes add") == []


def test_saturated_pixels_of_the_scene_classification_are_data_and_its_no_data_is_not(tmp_path: Path) -> None:
    """SCL 1 (saturated or defective) marks bright steel decks: they were imaged, and a ship region touching
    no-data is dropped by the detector, so they must not be no-data. SCL 0 is no data."""
    folder = tmp_path / "s2"
    for b in ("B02", "B03", "B04", "B08"):
        _tif(folder / f"T52TGN_20231021T021529_{b}_10m.tif", count=1)
    scl = np.full((60, 80), 6, np.uint8)
    scl[10:14, 20:40] = 1  # a saturated deck
    scl[:, 70:] = 0  # no data
    with rasterio.open(folder / "T52TGN_20231021T021529_SCL_10m.tif", "w", driver="GTiff", width=80, height=60,
                       count=1, dtype="uint8", crs=UTM52, transform=T) as ds:
        ds.write(scl, 1)
    (scene,) = scan_folder(folder).scenes
    raster = read_scene(scene)
    assert raster.scl is not None and raster.valid[10:14, 20:40].all() and not raster.valid[:, 70:].any()


def test_cli_scenes_add_takes_files_and_a_band_file_brings_its_scene(tmp_path: Path) -> None:
    """One GeoTIFF given by name is its scene; a band file brings its scene's other bands (not another scene's);
    a file also reached through its folder is listed and stored once."""
    one = _tif(tmp_path / "dl" / "planet_20231021T013000.tif", count=4)
    for band in ("B02", "B03", "B04", "B08"):
        _tif(tmp_path / "s2" / f"T52TFN_20231022T020000_{band}_10m.tif", count=1)
        _tif(tmp_path / "s2" / f"T52TFN_20231101T020000_{band}_10m.tif", count=1)
    ws = tmp_path / "ws"
    assert CliRunner().invoke(app, ["init", str(ws)]).exit_code == 0
    res = CliRunner().invoke(app, ["scenes", "add", str(one), str(tmp_path / "s2" / "T52TFN_20231022T020000_B04_10m.tif"),
                                   str(tmp_path / "dl"), "-w", str(ws)])
    assert res.exit_code == 0, res.output
    assert "2 scenes added" in " ".join(res.output.split())
    store = open_store(Workspace(ws))
    scenes = store.scenes()
    assert len(scenes) == 2
    (s2,) = [s for s in scenes if "T52TFN" in str(s.attributes["bands"]["red"]["path"])]
    paths = {Path(b["path"]).name for b in s2.attributes["bands"].values()}
    assert paths == {f"T52TFN_20231022T020000_{b}_10m.tif" for b in ("B02", "B03", "B04", "B08")}
    missing = CliRunner().invoke(app, ["scenes", "add", str(tmp_path / "nope.tif"), "-w", str(ws)])
    assert missing.exit_code == 2 and "no such file or folder" in " ".join(missing.output.split())
    jp2 = tmp_path / "s2" / "T52TFN_20231022T020000_B04_10m.jp2"  # a band file of another format: named, no crash
    jp2.write_bytes(b"\x00\x00\x00\x0cjP  ")
    other = CliRunner().invoke(app, ["scenes", "add", str(jp2), "-w", str(ws)])
    assert other.exit_code == 2 and "not a GeoTIFF" in " ".join(other.output.split())


def test_a_scene_dated_in_the_future_is_refused_and_a_write_time_is_said(tmp_path: Path) -> None:
    """A name that dates the image in 2030 is no acquisition time (its look would stand in every later judgement);
    a file dated only by its write time is added, and the table and a warning say so (it had looked like any
    other scene's time)."""
    _tif(tmp_path / "a" / "casa_20300101T101010.tif", count=4)
    bare = _tif(tmp_path / "b" / "casa_port_export.tif", count=4)
    with rasterio.open(bare, "r+") as ds:
        ds.update_tags(TIFFTAG_DATETIME="2024:11:20 09:15:00")
    res = scan_folder(tmp_path / "a")
    assert res.scenes == [] and len(res.failures) == 1
    assert "2030-01-01 10:10 UTC, in the future" in res.failures[0][1] and "correct the name" in res.failures[0][1]
    given = scan_folder(tmp_path / "b", when=datetime(2031, 4, 26, 11, tzinfo=UTC))
    assert not given.scenes and "--time dates it 2031-04-26 11:00 UTC" in given.failures[0][1]
    ws = tmp_path / "ws"
    assert CliRunner().invoke(app, ["init", str(ws)]).exit_code == 0
    out = CliRunner().invoke(app, ["scenes", "add", str(tmp_path / "b"), "-w", str(ws)])
    text = " ".join(out.output.split())
    assert out.exit_code == 0 and "dated by the time their file was written" in text


def test_an_rgb_quicklook_beside_the_band_files_gives_way_to_them(tmp_path: Path) -> None:
    """A download folder with the four band files and an RGB quicklook of the same acquisition: the quicklook's
    name sorts first, and it had stood for the acquisition, the band set refused as its copy (no NIR, no ships)."""
    rng = np.random.default_rng(3)

    def noisy(path: Path, count: int) -> None:  # images, not blank fills (a one-valued file holds no data)
        _tif(path, count=count)
        with rasterio.open(path, "r+") as ds:
            ds.write(rng.integers(100, 3000, (count, ds.height, ds.width)).astype(np.uint16))

    for band in ("B02", "B03", "B04", "B08"):
        noisy(tmp_path / "dl" / f"casa_20230426T111000_{band}.tif", 1)
    noisy(tmp_path / "dl" / "casa_20230426T111000.tif", 3)
    store = open_store(Workspace.open(tmp_path / "ws").ensure())
    res = add_folder(tmp_path / "dl", store=store)
    (scene,) = store.scenes()
    assert set(scene.attributes["bands"]) == {"blue", "green", "red", "nir"}
    assert len(res.moved) == 1 and res.new == 1
    assert [s.id for s in res.scenes] == [scene.id]  # the quicklook, replaced in the same run, is not listed
    assert len(res.failures) == 1 and res.failures[0][0].endswith("casa_20230426T111000.tif")  # but said
    again = add_folder(tmp_path / "dl", store=store)  # and again: the quicklook is the copy now
    assert [s.id for s in store.scenes()] == [scene.id] and len(again.failures) == 1
    assert "the same acquisition" in again.failures[0][1]


def test_untagged_65535_in_every_band_is_fill_and_8_bit_white_is_not(tmp_path: Path) -> None:
    """An export that filled the unimaged part with 65535 without a no-data tag: that part is not imaged (its
    NDWI of 0 had made it land, the look 100 % usable with the ships of the rest lost). One band at 65535 is a
    bright pixel, a few pixels at 65535 inside the data a saturated deck, and 8-bit 255 in every band is a white
    deck: all data."""
    from routewatch.detect.optical import optical_nodata

    path = _tif(tmp_path / "a" / "casa_20230426T111000.tif", count=4, shape=(60, 80))
    with rasterio.open(path, "r+") as ds:
        arr = ds.read()
        arr[:, :, 40:] = 65535
        arr[2, 0, 0] = 65535
        arr[:, 10:14, 10:14] = 65535  # a saturated deck inside the data (stretched exports have them)
        ds.write(arr)
    raster = read_scene(scan_folder(tmp_path / "a").scenes[0])
    assert raster.valid[:, 40:].sum() == 0 and raster.valid[:, :40].all()
    white = {b: np.full((4, 4), 255, np.uint8) for b in ("blue", "green", "red", "nir")}
    assert not optical_nodata(white).any()


def test_two_timed_copies_minutes_apart_are_one_pass(tmp_path: Path) -> None:
    """An export of the same image dated 90 s later (a datatake's start against a tile's sensing time) had been a
    second look and a second set of sightings; ten minutes apart, two images are two passes."""
    _tif(tmp_path / "a" / "casa_20230426T111000.tif", count=4)
    _tif(tmp_path / "b" / "casa_copy_20230426T111130.tif", count=4, shape=(60, 81))
    _tif(tmp_path / "c" / "casa_next_20230426T112000.tif", count=4, shape=(60, 82))
    store = open_store(Workspace.open(tmp_path / "ws").ensure())
    assert len(add_folder(tmp_path / "a", store=store).scenes) == 1
    copy = add_folder(tmp_path / "b", store=store)
    assert copy.scenes == [] and "the same acquisition" in copy.failures[0][1]
    assert len(add_folder(tmp_path / "c", store=store).scenes) == 1 and len(store.scenes()) == 2
    # across midnight too; but not a SAR image, nor another band layout, minutes after an optical one
    _tif(tmp_path / "d" / "casa_20230427T235900.tif", count=4)
    _tif(tmp_path / "e" / "casa_copy_20230428T000100.tif", count=4, shape=(60, 81))
    _tif(tmp_path / "f" / "casa_20230427T235700_vv.tif", count=1, shape=(60, 82))
    _tif(tmp_path / "g" / "casa_rgb_20230427T235800.tif", count=3, shape=(60, 79))
    assert len(add_folder(tmp_path / "d", store=store).scenes) == 1
    assert add_folder(tmp_path / "e", store=store).scenes == []
    assert len(add_folder(tmp_path / "f", store=store).scenes) == 1
    rgb = add_folder(tmp_path / "g", store=store)
    assert len(rgb.scenes) == 1 and rgb.moved == [] and len(store.scenes()) == 5


def test_a_lon_lat_grid_at_60_n_is_read_on_square_ground_pixels(tmp_path: Path) -> None:
    """0.0000899 deg pixels at 60 N are 5 m east-west by 10 m north-south: the detectors, which group and
    measure in pixels, had split a 206 m hull in two. The scene is read on 10 m by 10 m pixels over the same
    ground, a pixel with any no-data in it is no-data, and a bright 200 m hull keeps its place and size."""
    deg = 0.0000899
    h, w = 200, 400
    arr = np.full((4, h, w), 300, np.uint16)
    arr[:, 100:102, 100:180] = 3000  # a hull 80 columns (400 m / 2 = 200 m) long, east-west
    arr[:, :, 399] = 0  # one column of no-data
    path = tmp_path / "a" / "n60_20230426T111000.tif"
    path.parent.mkdir(parents=True)
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=4, dtype="uint16", crs="EPSG:4326",
                       transform=Affine(deg, 0, -6.7, 0, -deg, 60.0)) as ds:
        ds.write(arr)
    raster = read_scene(scan_folder(tmp_path / "a").scenes[0])
    sr, sc = raster.georef.ground_pixel_sizes_m()
    assert raster.georef.shape == (200, 200) and sr == pytest.approx(sc, rel=0.05) and sr == pytest.approx(10, rel=0.05)
    assert raster.valid[:, :199].all() and not raster.valid[:, 199].any()
    hull = np.argwhere(raster.bands["red"] > 1000)
    assert {int(r) for r in hull[:, 0]} == {100, 101} and (hull[:, 1].min(), hull[:, 1].max()) == (50, 89)
    lon, lat = raster.georef.pixel_to_lonlat([0.0, 200.0], [0.0, 200.0])
    assert lon.tolist() == pytest.approx([-6.7, -6.7 + w * deg]) and lat.tolist() == pytest.approx([60.0, 60.0 - h * deg])


def test_scenes_add_records_that_sar_files_hold_intensity(tmp_path: Path) -> None:
    """`--sar-values intensity` (sigma0, gamma0 products) is kept with the scene, for detect --site to take the
    square root the CFAR's settings assume; optical scenes do not carry it, and another word is refused."""
    _tif(tmp_path / "s1" / "s1_20230426T111000.tif", count=1)
    res = scan_folder(tmp_path / "s1", sensor="sentinel-1", sar_values="intensity")
    assert res.scenes[0].attributes["kind"] == "sar" and res.scenes[0].attributes["sar_values"] == "intensity"
    _tif(tmp_path / "o" / "o_20230426T111000.tif", count=4)
    assert "sar_values" not in scan_folder(tmp_path / "o", sar_values="intensity").scenes[0].attributes
    ws = tmp_path / "ws"
    assert CliRunner().invoke(app, ["init", str(ws)]).exit_code == 0
    out = CliRunner().invoke(app, ["scenes", "add", str(tmp_path / "s1"), "--sar-values", "db", "-w", str(ws)])
    assert out.exit_code == 2 and "amplitude or intensity" in " ".join(out.output.split())


def test_blank_band_files_do_not_replace_a_quicklook_that_holds_data_and_re_adding_changes_nothing(
        tmp_path: Path) -> None:
    """More bands with no data in them are no better image: the blank band set had replaced the good quicklook,
    and every re-run swapped them back and forth, removing the looks each time."""
    for band in ("B02", "B03", "B04", "B08"):
        _tif(tmp_path / "dl" / f"casa_20230426T111000_{band}.tif", count=1)
        with rasterio.open(tmp_path / "dl" / f"casa_20230426T111000_{band}.tif", "r+") as ds:
            ds.write(np.zeros((1, ds.height, ds.width), np.uint16))
    quick = _tif(tmp_path / "dl" / "casa_20230426T111000.tif", count=3)
    with rasterio.open(quick, "r+") as ds:
        ds.write(np.random.default_rng(1).integers(100, 3000, (3, ds.height, ds.width)).astype(np.uint16))
    store = open_store(Workspace.open(tmp_path / "ws").ensure())
    first = add_folder(tmp_path / "dl", store=store)
    (kept,) = store.scenes()
    assert kept.uri.endswith("casa_20230426T111000.tif") and first.moved == []
    for _ in range(2):
        again = add_folder(tmp_path / "dl", store=store)
        assert again.moved == [] and again.new == 0 and [s.id for s in store.scenes()] == [kept.id]


def test_sar_files_added_again_without_sar_values_keep_it(tmp_path: Path) -> None:
    _tif(tmp_path / "s1" / "s1_20230426T111000.tif", count=1)
    store = open_store(Workspace.open(tmp_path / "ws").ensure())
    add_folder(tmp_path / "s1", store=store, sensor="sentinel-1", sar_values="intensity")
    add_folder(tmp_path / "s1", store=store, sensor="sentinel-1")
    assert [s.attributes.get("sar_values") for s in store.scenes()] == ["intensity"]


def test_a_file_that_cannot_be_placed_on_the_earth_is_a_failure_and_the_others_are_added(tmp_path: Path) -> None:
    """A local engineering CRS (no way to WGS84) had ended `scenes add` in a traceback, the good file beside it
    never added."""
    from rasterio.crs import CRS

    local = CRS.from_wkt('LOCAL_CS["arbitrary",LOCAL_DATUM["x",0],UNIT["metre",1],AXIS["Easting",EAST],'
                         'AXIS["Northing",NORTH]]')
    _tif(tmp_path / "in" / "a_local_20231205T013000.tif", crs=local)
    _tif(tmp_path / "in" / "b_good_20231206T013000.tif")
    result = scan_folder(tmp_path / "in")
    assert [Path(s.uri).name for s in result.scenes] == ["b_good_20231206T013000.tif"]
    assert len(result.failures) == 1 and result.failures[0][0].endswith("a_local_20231205T013000.tif")
    assert "cannot be placed on the Earth" in result.failures[0][1]


def test_a_polar_scene_over_the_pole_covers_it() -> None:
    """A polar stereographic image around the North Pole: its outline winds round the pole; the footprint had been
    a band of latitudes without the pole or anything near it, and a site at Svalbard got no look."""
    from shapely.geometry import Point

    from routewatch.sources.imagery.geo import GridGeoref

    grid = GridGeoref((3000, 3000), transform=Affine(1000.0, 0, -1_500_000.0, 0, -1000.0, 1_500_000.0),
                      crs=rasterio.crs.CRS.from_epsg(3413))
    fp = grid.footprint()
    assert fp.geom_type in ("Polygon", "MultiPolygon")
    for lon, lat in ((15.6, 78.2), (0.0, 89.9), (-150.0, 80.0), (179.9, 85.0), (-179.9, 85.0)):
        assert fp.covers(Point(lon, lat)), (lon, lat)
    assert not fp.covers(Point(15.6, 60.0))


def test_rgba_exports_and_alpha_bands_are_read_by_their_colours(tmp_path: Path) -> None:
    """An 8-bit RGBA export (GDAL's default for four byte bands) had been read by its count as blue, green, red
    and near-infrared: red and blue swapped, its alpha taken for the near-infrared. Its alpha is the mask."""
    from rasterio.enums import ColorInterp

    from routewatch.sources.imagery.local import _names_by_colour

    ci = ColorInterp
    assert _names_by_colour([ci.red, ci.green, ci.blue, ci.alpha], False) == ["red", "green", "blue", None]
    assert _names_by_colour([ci.red, ci.green, ci.blue, ci.undefined], False) == ["red", "green", "blue", "nir"]
    assert _names_by_colour([ci.gray, ci.undefined, ci.undefined, ci.undefined], False) == \
        ["blue", "green", "red", "nir"]
    assert _names_by_colour([ci.gray, ci.alpha], True) == ["sar", None]
    path = tmp_path / "in" / "rgba_20231014T013000.tif"
    path.parent.mkdir()
    data = np.full((4, 60, 80), 120, np.uint8)
    data[3] = 255
    data[3, :, 40:] = 0  # transparent right half
    with rasterio.open(path, "w", driver="GTiff", width=80, height=60, count=4, dtype="uint8", crs=UTM52,
                       transform=T) as ds:
        ds.write(data)
        assert [c.name for c in ds.colorinterp] == ["red", "green", "blue", "alpha"]
    (scene,) = scan_folder(path.parent).scenes
    assert {k: v["index"] for k, v in scene.attributes["bands"].items()} == {"red": 1, "green": 2, "blue": 3}
    raster = read_scene(scene)
    assert raster.valid[:, :38].all() and not raster.valid[:, 42:].any()  # the alpha band is the mask

    # GDAL tags four byte bands so by default, also a user's blue, green, red, near-infrared export: a fourth band
    # whose values are no mask's is data, the file named by its count, and its dark water no "transparent" half
    bgrn = tmp_path / "bgrn" / "bgrn_20231014T013000.tif"
    bgrn.parent.mkdir()
    data = np.random.default_rng(3).integers(1, 250, (4, 60, 80)).astype(np.uint8)
    data[3, :, 40:] = 0  # no near-infrared over the water
    with rasterio.open(bgrn, "w", driver="GTiff", width=80, height=60, count=4, dtype="uint8", crs=UTM52,
                       transform=T) as ds:
        ds.write(data)
        assert ds.colorinterp[3] == ColorInterp.alpha
    for given in (None, ["blue", "green", "red", "nir"]):
        (scene,) = scan_folder(bgrn.parent, bands=given).scenes
        assert {k: v["index"] for k, v in scene.attributes["bands"].items()} == \
            {"blue": 1, "green": 2, "red": 3, "nir": 4}, given
        assert read_scene(scene).valid.all(), given

    # five bands, red, green, blue, near-infrared and alpha: GDAL shows no mask for them; the alpha is read
    five = tmp_path / "five" / "rgbna_20231014T013000.tif"
    five.parent.mkdir()
    data = np.full((5, 60, 80), 120, np.uint8)
    data[4] = 255
    data[4, :, 40:] = 0
    with rasterio.open(five, "w", driver="GTiff", width=80, height=60, count=5, dtype="uint8", crs=UTM52,
                       transform=T, photometric="RGB") as ds:
        ds.colorinterp = [ci.red, ci.green, ci.blue, ci.undefined, ci.alpha]  # (before the data, or GDAL drops it)
        ds.write(data)
    (scene,) = scan_folder(five.parent).scenes
    assert set(scene.attributes["bands"]) == {"red", "green", "blue", "nir"}
    raster = read_scene(scene)
    assert raster.valid[:, :38].all() and not raster.valid[:, 42:].any()


def test_the_files_own_mask_is_no_data(tmp_path: Path) -> None:
    """An internal mask band says where there is no data as a no-data value does (it had been read as data)."""
    path = _tif(tmp_path / "m" / "masked_20231014T013000.tif")
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "r+") as ds:
        m = np.full((60, 80), 255, np.uint8)
        m[:, 40:] = 0
        ds.write_mask(m)
    (scene,) = scan_folder(path.parent).scenes
    raster = read_scene(scene)
    assert raster.valid[:, :38].all() and not raster.valid[:, 42:].any()


def test_a_site_window_too_large_to_read_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A centimetre orthomosaic of a port: reading the site's window had ended the run in a MemoryError."""
    from routewatch.sources.imagery import raster as raster_module

    path = _tif(tmp_path / "big" / "ortho_20231014T013000.tif")
    (scene,) = scan_folder(path.parent).scenes
    monkeypatch.setattr(raster_module, "MAX_READ_PX", 1000)
    with pytest.raises(SceneReadError, match=r"ortho_20231014T013000.tif: the site covers .* resample the image"):
        read_scene(scene)


def test_a_band_given_twice_and_a_link_to_nothing_are_said(tmp_path: Path) -> None:
    """B08.tif beside nir.tif: the last had silently won; a .tif link to a file gone had been skipped unsaid."""
    folder = tmp_path / "s2"
    for name in ("B02", "B03", "B04", "B08", "nir"):
        _tif(folder / f"{name}.tif", count=1)
    (folder / "old.tif").symlink_to(tmp_path / "gone.tif")
    result = scan_folder(folder)
    assert result.scenes == []
    said = dict(result.failures)
    assert any("band nir twice in one scene (B08.tif and nir.tif)" in v for v in said.values()), said
    assert "a link to nothing" in said[str(folder / "old.tif")]


def test_a_folder_that_cannot_be_read_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sub-folder the user may not list (another account's, a mount gone stale) had been passed over unsaid,
    its scenes missing from the ledger with no word; the readable scenes are still added."""
    import os

    _tif(tmp_path / "ok" / "port_20231014T013000.tif")
    _tif(tmp_path / "locked" / "port_20231015T013000.tif")
    real = os.scandir

    def scandir(path: object = ".") -> object:  # the tests run as any user, root included: refuse by name
        if Path(os.fsdecode(path)).name == "locked":  # type: ignore[arg-type]
            raise PermissionError(13, "Permission denied", os.fsdecode(path))  # type: ignore[arg-type]
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)
    result = scan_folder(tmp_path)
    assert [Path(s.uri or "").name for s in result.scenes] == ["port_20231014T013000.tif"]
    said = dict(result.failures)
    assert "a folder that cannot be read (Permission denied)" in said[str(tmp_path / "locked")], said
