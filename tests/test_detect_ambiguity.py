"""SAR azimuth ambiguities: a ghost of a bright return 4.2-6.2 km along track is marked, kept out of fusion and of
the stored sightings; real ships beside it are not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from routewatch.cli import app
from routewatch.detect.ambiguity import SENTINEL1_IW, array_reader, find_ambiguities, mark_ambiguities
from routewatch.detect.sar import detect_sar
from routewatch.simulate.scenes import sea_clutter

runner = CliRunner()

SOURCE = (200, 150)  # a bright structure on land (a crane, a bridge): 2.5 km of land from row 150 to 250
GHOST = (760, 150)  # its first ambiguity: 5.6 km along track (10 m rows), 23 dB fainter, on the water
BESIDE = (760, 250)  # a real ship at the ghost's distance along track, 1 km across: not in the source's column
FAR = (1250, 150)  # a real ship in the source's column, 10.5 km along track: beyond the first ambiguities
BRIGHT = (1150, 60)  # a real ship 5.6 km along track of another bright ship only 9 dB brighter than itself
BRIGHT_SOURCE = (590, 60)


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """A 1,400 x 300 GRD-like amplitude image (rows along track, 10 m) and its water mask."""
    img = sea_clutter((1400, 300), seed=11).astype(np.float64)
    sea = float(np.median(img))
    water = np.ones(img.shape, bool)
    water[150:250, :] = False
    img[150:250, :] = 3 * sea  # land, brighter than the sea
    r, c = SOURCE
    img[r - 1:r + 2, c - 1:c + 2] = 300 * sea  # 50 dB over the sea
    for (r, c), amp in ((GHOST, 300 * sea / 14), (BESIDE, 20 * sea), (FAR, 20 * sea), (BRIGHT, 20 * sea),
                        (BRIGHT_SOURCE, 60 * sea)):
        img[r - 6:r + 6, c - 1:c + 1] = amp  # 120 x 20 m hulls
    return np.clip(img, 0, 65535).astype(np.uint16), water


def _at(dets: list, where: tuple[int, int]) -> list:
    return [d for d in dets if np.hypot(d.row - where[0], d.col - where[1]) < 8]


def test_a_ghost_of_a_bright_return_on_land_is_marked_and_real_ships_are_not() -> None:
    img, water = _scene()
    dets = detect_sar(img, pixel_size_m=10.0, water=water)
    for where in (GHOST, BESIDE, FAR, BRIGHT, BRIGHT_SOURCE):
        assert len(_at(dets, where)) == 1, where  # the CFAR finds the ghost as readily as the ships
    found = find_ambiguities(dets, array_reader(img), azimuth_pixel_m=10.0)
    marked = mark_ambiguities(dets, found)
    ghosts = [d for d in marked if d.ambiguity]
    assert len(ghosts) == 1 and _at(ghosts, GHOST)
    (g,) = (found[i] for i in found)
    assert abs(g.source_row - SOURCE[0]) <= 1 and abs(g.source_col - SOURCE[1]) <= 1  # its 3 x 3 pixels
    assert 5500 <= g.offset_m <= 5700 and 20 < g.ratio_db < 26
    assert "azimuth ambiguity" in ghosts[0].ambiguity and "5.6 km along track" in ghosts[0].ambiguity
    # read as intensity the same ratio is half the decibels: 11.5 dB, under the 15 dB a ghost needs
    assert not find_ambiguities(dets, array_reader(img), azimuth_pixel_m=10.0, values="intensity")
    # on 20 m rows the same rows are 11 km apart: no ambiguity
    assert not find_ambiguities(dets, array_reader(img), azimuth_pixel_m=20.0)
    # a detection's pixels given in a window of the file: the offset moves them to the reader's
    window = [d.__class__(**{**d.__dict__, "row": d.row - 100, "col": d.col - 20}) for d in dets]
    again = find_ambiguities(window, array_reader(img), azimuth_pixel_m=10.0, offset=(100, 20))
    assert set(again) == set(found) and again[next(iter(again))].source_row == g.source_row - 100
    with pytest.raises(ValueError, match="azimuth_pixel_m"):
        find_ambiguities(dets, array_reader(img), azimuth_pixel_m=0.0)
    assert SENTINEL1_IW.offset_m == (4200.0, 6200.0)


def _grd(tmp_path: Path, img: np.ndarray, name: str = "S1A_IW_GRDH_20231012T090000_vv.tif") -> Path:
    """The image as a GRD located by GCPs alone (about 10 m pixels, rows northward)."""
    from test_detect_cli import write_gcp_grd

    return write_gcp_grd(tmp_path / name, img)


def test_detect_sar_marks_ghosts_on_a_grd_and_fuse_leaves_them_out(tmp_path: Path) -> None:
    img, water = _scene()
    path = _grd(tmp_path, img)
    mask = tmp_path / "water.png"
    from PIL import Image

    Image.fromarray((water * 255).astype(np.uint8)).save(mask)
    out = tmp_path / "det.geojson"
    res = runner.invoke(app, ["detect", "sar", str(path), "-o", str(out), "--water", str(mask)])
    assert res.exit_code == 0, res.output
    assert "1 of them taken for azimuth ambiguities" in " ".join(res.output.split())
    fc = json.loads(out.read_text())
    # the three ships within 6.2 km of the image's ends (rows 590, 1150 and 1250 of 1400) cannot be checked there
    assert fc["routewatch"]["azimuth_ambiguities"] == ("checked along rows (Sentinel-1 IW geometry); 3 detections not "
                                                       "checked (the image ends, or holds no data, within the search "
                                                       "distance)")
    ghosts = [f for f in fc["features"] if f["properties"].get("ambiguity")]
    assert len(ghosts) == 1 and abs(ghosts[0]["properties"]["row"] - GHOST[0]) < 8
    assert len(fc["features"]) == 5  # the ghost and four ships, nothing on the land
    # not checked on request, nor on a file without GCPs (its rows need not run along track)
    res = runner.invoke(app, ["detect", "sar", str(path), "-o", str(out), "--water", str(mask), "--azimuth", "none"])
    assert res.exit_code == 0 and not any(f["properties"].get("ambiguity") for f in json.loads(out.read_text())["features"])
    # the track along the columns: the transposed image, --azimuth cols
    flipped = _grd(tmp_path, np.ascontiguousarray(img.T), "S1A_IW_GRDH_20231012T090000_flipped_vv.tif")
    Image.fromarray((water.T * 255).astype(np.uint8)).save(tmp_path / "water_t.png")
    out_t = tmp_path / "det_t.geojson"
    res = runner.invoke(app, ["detect", "sar", str(flipped), "-o", str(out_t), "--water", str(tmp_path / "water_t.png"),
                              "--azimuth", "cols"])
    assert res.exit_code == 0, res.output
    ghosts_t = [f for f in json.loads(out_t.read_text())["features"] if f["properties"].get("ambiguity")]
    assert len(ghosts_t) == 1 and abs(ghosts_t[0]["properties"]["col"] - GHOST[0]) < 8
    # the source named in the file's own pixels (row, col), not the transposed search's
    src = ghosts_t[0]["properties"]["ambiguity"].split("(pixel ")[1].rstrip(")").split(", ")
    assert abs(int(src[0]) - SOURCE[1]) <= 1 and abs(int(src[1]) - SOURCE[0]) <= 1
    res = runner.invoke(app, ["detect", "sar", str(path), "-o", str(out), "--azimuth", "diagonal"])
    assert res.exit_code == 2 and "--azimuth" in res.output
    # fusion reads the file without the ghost, and says so
    res = runner.invoke(app, ["detect", "sar", str(path), "-o", str(out), "--water", str(mask)])
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(ws)]).exit_code == 0
    res = runner.invoke(app, ["fuse", "--detections", str(out), "--time", "2023-10-12T09:00:00Z", "-w", str(ws),
                              "--out", str(tmp_path / "fused.geojson")])
    assert res.exit_code == 0, res.output
    assert "1 detections left out: `detect sar` took them for azimuth ambiguities" in " ".join(res.output.split())
    assert len(json.loads((tmp_path / "fused.geojson").read_text())["features"]) == 4


def test_a_site_scene_reads_beyond_its_window_for_the_source_and_stores_no_ghost(tmp_path: Path) -> None:
    """`detect --site` on a Sentinel-1 GRD reads only the window over the site; the ghost's source lies 5.6 km
    along track, outside it, on land. The file is read there: the ghost is no sighting, the look says so, and the
    ships of the site are stored."""
    from datetime import UTC, datetime

    from shapely.geometry import box

    from routewatch.model import Site, SiteKind
    from routewatch.sources.imagery.ingest import add_folder, open_store
    from routewatch.sources.imagery.pipeline import detect_site
    from routewatch.watchlist import Watchlist
    from routewatch.workspace import Workspace

    img, _ = _scene()
    folder = tmp_path / "incoming"
    folder.mkdir()
    _grd(folder, img)
    lon0, lat0, dlon, dlat = 130.20, 42.10, 1.2e-4, 0.9e-4
    site = Site("harbour", "Harbour", SiteKind.ANCHORAGE,
                box(lon0, lat0 + 600 * dlat, lon0 + 300 * dlon, lat0 + 1300 * dlat))  # rows 600-1300: all sea
    ws = Workspace.open(tmp_path / "ws").ensure()
    store = open_store(ws)
    store.upsert_watchlist(Watchlist(sites={"harbour": site}))
    added = add_folder(folder, store=store, sensor="sentinel-1", when=datetime(2023, 10, 12, 9, tzinfo=UTC))
    assert added.failures == [] and len(added.scenes) == 1
    sea = tmp_path / "sea.geojson"  # the harbour is all water (single-look clutter fools the derived mask)
    sea.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": box(*site.geometry.buffer(0.01).bounds).__geo_interface__}]}))
    result = detect_site(ws, "harbour", datetime(2023, 10, 1, tzinfo=UTC), progress=False, processes=False,
                         water=sea)
    assert result.looks == 1 and result.errors == []
    sightings = store.sightings(site="harbour")
    pixels = sorted(((s.lat - lat0) / dlat, (s.lon - lon0) / dlon) for s in sightings)
    assert len(pixels) == 3, pixels
    for (r, c), ship in zip(pixels, sorted([BESIDE, BRIGHT, FAR]), strict=True):  # the ghost is not among them
        assert abs(r - ship[0]) < 2 and abs(c - ship[1]) < 2, pixels
    (look,) = store.looks(site="harbour")
    assert "1 detection taken for azimuth ambiguities" in look.note and look.vessels_seen == 3


def test_a_long_hull_whose_centre_is_its_dim_deck_is_no_ghost() -> None:
    """A 300 m tanker along track, deck 8 times the sea and bridge 60 times, 5.7 km along track of a crane 250
    times the sea: measured at its centroid (the deck) it had been 30 dB under the crane and marked a ghost; its
    own footprint's brightest pixel (the bridge) is 12 dB under it, which no ghost is."""
    img = sea_clutter((1400, 300), seed=12).astype(np.float64)
    sea = float(np.median(img))
    img[100:103, 149:152] = 250 * sea  # the crane
    img[655:685, 149:151] = 8 * sea  # the tanker's deck, rows 655-684 (300 m), its centre 5.7 km along track
    img[680:684, 149:151] = 60 * sea  # its bridge, at the stern
    img = np.clip(img, 0, 65535).astype(np.uint16)
    (d,) = [d for d in detect_sar(img, pixel_size_m=10.0) if abs(d.row - 670) < 20 and abs(d.col - 150) < 5]
    assert d.length_m > 250
    assert not find_ambiguities([d], array_reader(img), azimuth_pixel_m=10.0)
    small = d.__class__(**{**d.__dict__, "length_m": 0.0, "width_m": 0.0})  # the 5 x 5 box at its centre alone
    assert find_ambiguities([small], array_reader(img), azimuth_pixel_m=10.0)


def test_no_data_along_track_and_an_image_cut_short_are_said_not_checked(tmp_path: Path) -> None:
    """A float GRD whose strips along track are all NaN (a swath's fill) had crashed `detect sar` and the whole
    site run; and a file holding only the site's window (as `fetch` caches it) had been "checked" without a row
    to check. Both are now said: not checked."""
    img, water = _scene()
    f = img.astype(np.float32)
    f[:500] = np.nan  # the source's rows and everything up to the ghost's search strip above it
    f[1000:] = np.nan
    dets = detect_sar(f, pixel_size_m=10.0, water=water)
    unchecked: list[int] = []
    assert not find_ambiguities(dets, array_reader(f), azimuth_pixel_m=10.0, unchecked=unchecked)
    assert any(abs(dets[i].row - GHOST[0]) < 8 for i in unchecked)
    # a window of 300 rows around the ghost: nothing of either strip in it
    window = img[610:910]
    dets = [d.__class__(**{**d.__dict__, "row": d.row - 610}) for d in detect_sar(img, pixel_size_m=10.0, water=water)
            if 610 <= d.row < 910]
    unchecked = []
    assert not find_ambiguities(dets, array_reader(window), azimuth_pixel_m=10.0, unchecked=unchecked)
    assert unchecked == list(range(len(dets))) and dets
    # cut at row 400: the source (row 200) is gone, the other side of the ghost is there; the ghost is not
    # marked, and not taken as checked either (it had been)
    rest = img[400:]
    dets = [d.__class__(**{**d.__dict__, "row": d.row - 400}) for d in detect_sar(img, pixel_size_m=10.0, water=water)
            if d.row >= 400]
    unchecked = []
    assert not find_ambiguities(dets, array_reader(rest), azimuth_pixel_m=10.0, unchecked=unchecked)
    assert any(abs(dets[i].row + 400 - GHOST[0]) < 8 for i in unchecked)
    path = _grd(tmp_path, f)
    res = runner.invoke(app, ["detect", "sar", str(path), "-o", str(tmp_path / "d.geojson"), "--water", "none"])
    assert res.exit_code == 0, res.output
    assert "not checked for azimuth ambiguities" in " ".join(res.output.split())


def test_auto_checks_only_a_file_named_as_a_sentinel1_iw_product(tmp_path: Path) -> None:
    """The Sentinel-1 IW distances are no other sensor's or mode's: a GCP-located ICEYE or Sentinel-1 EW file is
    not checked unless asked (--azimuth rows), and the command says so."""
    from routewatch.detect.ambiguity import sentinel1_mode

    assert [sentinel1_mode(n) for n in ("S1A_IW_GRDH_1SDV_x_vv.tif", "s1b-ew-grd-hh-001.tiff", "ICEYE_X7_SM.tif")] \
        == ["IW", "EW", None]
    img, _ = _scene()
    for name in ("ICEYE_X7_GRD_SM_20231012.tif", "S1B_EW_GRDM_20231012T090000_hh.tif"):
        path = _grd(tmp_path, img, name)
        out = tmp_path / f"{name}.geojson"
        res = runner.invoke(app, ["detect", "sar", str(path), "-o", str(out), "--water", "none"])
        assert res.exit_code == 0, res.output
        assert "azimuth ambiguities not checked" in " ".join(res.output.split())
        assert not any(f["properties"].get("ambiguity") for f in json.loads(out.read_text())["features"])
    res = runner.invoke(app, ["detect", "sar", str(path), "-o", str(out), "--water", "none", "--azimuth", "rows"])
    assert res.exit_code == 0 and any(f["properties"].get("ambiguity") for f in json.loads(out.read_text())["features"])


def test_a_grd_fill_of_zeros_is_no_data_for_the_check() -> None:
    """A Sentinel-1 GRD's fill beyond its swath is 0 (uint16, untagged): a strip of it had counted as data seen,
    and a detection whose source side was fill had been called checked."""
    img, water = _scene()
    dets = _at(detect_sar(img, pixel_size_m=10.0, water=water), BESIDE)
    filled = img.copy()
    filled[1100:] = 0
    unchecked: list[int] = []
    assert not find_ambiguities(dets, array_reader(filled), azimuth_pixel_m=10.0, unchecked=unchecked)
    assert unchecked == [0]
    unchecked = []
    assert not find_ambiguities(dets, array_reader(img), azimuth_pixel_m=10.0, unchecked=unchecked) and not unchecked
    # a tagged no-data (the file's mask) reads the same
    valid = np.ones(img.shape, bool)
    valid[1100:] = False
    unchecked = []
    find_ambiguities(dets, array_reader(img, valid), azimuth_pixel_m=10.0, unchecked=unchecked)
    assert unchecked == [0]


def test_a_seam_line_or_clipped_calm_water_leaves_a_detection_checked_but_fill_at_its_column_does_not() -> None:
    """A whole strip with data in every line had been needed: one zero seam line, or calm water clipped to 0 in a
    noise-subtracted product, made a mid-scene detection unchecked. Fill covering the detection's own column
    (where the source would be) still makes it unchecked, even with data beside it."""
    img, water = _scene()
    dets = _at(detect_sar(img, pixel_size_m=10.0, water=water), BESIDE)
    seam = img.copy()
    seam[1250] = 0
    unchecked: list[int] = []
    find_ambiguities(dets, array_reader(seam), azimuth_pixel_m=10.0, unchecked=unchecked)
    assert unchecked == []
    valid = np.ones(img.shape, bool)
    valid[1100:1300, BESIDE[1] - 2:] = False  # fill from just left of its column to the image's edge
    find_ambiguities(dets, array_reader(img, valid), azimuth_pixel_m=10.0, unchecked=unchecked)
    assert unchecked == [0]


def test_a_long_gap_in_a_strip_is_no_strip_seen() -> None:
    """Ten lines (100 m) of no-data at the far end of a strip are few of its 200 lines, but a source could lie in
    them: the side is not seen."""
    img, water = _scene()
    dets = _at(detect_sar(img, pixel_size_m=10.0, water=water), BESIDE)
    valid = np.ones(img.shape, bool)
    valid[BESIDE[0] + 600:BESIDE[0] + 610] = False
    unchecked: list[int] = []
    find_ambiguities(dets, array_reader(img, valid), azimuth_pixel_m=10.0, unchecked=unchecked)
    assert unchecked == [0]
    # a patch of calm sea clipped to 0 (60 m x 50 m) hides no source: still checked
    calm = img.copy()
    calm[BESIDE[0] + 500:BESIDE[0] + 506, BESIDE[1] - 2:BESIDE[1] + 3] = 0
    unchecked = []
    find_ambiguities(dets, array_reader(calm), azimuth_pixel_m=10.0, unchecked=unchecked)
    assert unchecked == []
