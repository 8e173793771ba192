"""The detect / evaluate commands, driven in-process on files the tests write (and on the shared data)."""

from __future__ import annotations

import json
import sys
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from typer.testing import CliRunner

from routewatch.cli import app

runner = CliRunner()


def sar_scene() -> np.ndarray:
    rng = np.random.default_rng(4)
    img = np.clip(np.sqrt(rng.standard_exponential((300, 300))) * 200, 0, 65535).astype(np.uint16)
    img[100:120, 148:152] = 3000  # a 200 m x 40 m ship, bow up
    return img


def test_detect_sar_geotiff_gives_lonlat(tmp_path: Path) -> None:
    tif = tmp_path / "s1.tif"
    tr = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4_700_000.0)  # UTM 52N, near Rajin
    with rasterio.open(tif, "w", driver="GTiff", width=300, height=300, count=1, dtype="uint16",
                       crs="EPSG:32652", transform=tr) as ds:
        ds.write(sar_scene(), 1)
    out = tmp_path / "det.geojson"
    res = runner.invoke(app, ["detect", "sar", str(tif), "-o", str(out), "--chips", str(tmp_path / "chips")])
    assert res.exit_code == 0, res.output
    fc = json.loads(out.read_text())
    assert len(fc["features"]) == 1
    f = fc["features"][0]
    lon, lat = f["geometry"]["coordinates"]
    from pyproj import Transformer

    x, y = Transformer.from_crs(4326, 32652, always_xy=True).transform(lon, lat)
    assert x == pytest.approx(500000 + 150 * 10, abs=15) and y == pytest.approx(4_700_000 - 110 * 10, abs=15)
    assert f["properties"]["length_m"] == pytest.approx(200, abs=20)
    assert set(f["properties"]) >= {"row", "col", "length_m", "width_m", "heading_deg", "score"}
    assert Path(f["properties"]["chip"]).read_bytes()[:4] == b"\x89PNG"
    assert fc["routewatch"]["pixel_size_m"] == pytest.approx(10.0, rel=0.01)


def test_detect_sar_plain_image_needs_pixel_size(tmp_path: Path) -> None:
    png = tmp_path / "chip.png"
    Image.fromarray((sar_scene() // 16).clip(0, 255).astype(np.uint8)).save(png)
    out = tmp_path / "det.geojson"
    res = runner.invoke(app, ["detect", "sar", str(png), "-o", str(out)])
    assert res.exit_code == 2 and "--pixel-size" in res.output and "chip.png" in res.output
    assert not out.exists()
    res = runner.invoke(app, ["detect", "sar", str(png), "-o", str(out), "--pixel-size", "10"])
    assert res.exit_code == 0, res.output
    f = json.loads(out.read_text())["features"][0]
    assert "pixel coordinates" in f["properties"]["note"]
    assert f["geometry"]["coordinates"] == pytest.approx([149.5, 109.5], abs=1.0)


def test_detect_sar_corrupt_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00garbage")
    res = runner.invoke(app, ["detect", "sar", str(bad), "-o", str(tmp_path / "x.geojson")])
    assert res.exit_code == 2 and "broken.tif" in res.output


def test_evaluate_detections_prints_scores(tmp_path: Path) -> None:
    png = tmp_path / "chip.png"
    Image.fromarray((sar_scene() // 16).clip(0, 255).astype(np.uint8)).save(png)
    det = tmp_path / "det.geojson"
    assert runner.invoke(app, ["detect", "sar", str(png), "-o", str(det), "--pixel-size", "10"]).exit_code == 0
    truth = tmp_path / "truth.xml"
    truth.write_text("<annotation><object><bndbox><xmin>148</xmin><ymin>100</ymin><xmax>152</xmax><ymax>120</ymax>"
                     "</bndbox></object><object><bndbox><xmin>10</xmin><ymin>10</ymin><xmax>14</xmax><ymax>30</ymax>"
                     "</bndbox></object></annotation>")
    res = runner.invoke(app, ["evaluate", "detections", str(det), "--truth", str(truth)])
    assert res.exit_code == 0, res.output
    assert "200 m" in res.output
    lines = {ln.split("│")[1].strip(): ln.split("│")[2].strip() for ln in res.output.splitlines() if ln.count("│") >= 3}
    assert lines["precision"] == "1.000" and lines["recall"] == "0.500" and lines["F1"] == "0.667"


def test_detect_site_calls_the_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert runner.invoke(app, ["init", str(tmp_path), "--example", "rajin"]).exit_code == 0
    calls = []
    fake = types.ModuleType("routewatch.sources.imagery.pipeline")
    fake.detect_site = lambda *a: calls.append(a) or types.SimpleNamespace(scenes=2, looks=2, sightings=5, failures=[])  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "routewatch.sources.imagery.pipeline", fake)
    res = runner.invoke(app, ["detect", "--site", "rajin", "--since", "2023-08-01", "--workers", "2",
                              "--workspace", str(tmp_path)])
    assert res.exit_code == 0, res.output
    ws, site, since, until, workers, scheduler = calls[0]
    assert site == "rajin" and workers == 2 and scheduler is None
    # without --until, now and the day ahead `scenes add` allows (a local time read as UTC); later is no look
    assert until is not None and abs((datetime.now(UTC) + timedelta(days=1) - until).total_seconds()) < 60
    assert since.tzinfo is not None and since.year == 2023 and ws.root == tmp_path.resolve()
    assert "5 sightings" in res.output
    res = runner.invoke(app, ["detect", "--site", "rajin", "--since", "2023-08-01", "-w", str(tmp_path)])
    assert res.exit_code == 0, res.output  # -w as in the README
    res = runner.invoke(app, ["detect", "--site", "rajin", "--since", "2023-06-01", "--until", "2023-06-11",
                              "-w", str(tmp_path)])
    until = calls[-1][3]  # a day given as --until counts whole: a scene at 09:50 that day is in
    assert res.exit_code == 0 and (until.hour, until.minute, until.day, until.tzinfo is not None) == (23, 59, 11, True)
    res = runner.invoke(app, ["detect", "--site", "rajin"])
    assert res.exit_code == 2 and "--since" in res.output
    # a scene that could not be read: said, and the exit status says so (as scenes add, ais ingest); a cloudy
    # scene is an unusable look, said, and no error
    cloudy = ("/data/c.tif", "no usable pixel over the site (cloud)")
    unread = ("/data/B08.tiff", "cannot read band 'nir'")
    fake.detect_site = lambda *a: types.SimpleNamespace(  # type: ignore[attr-defined]
        scenes=2, looks=2, sightings=5, failures=[cloudy], errors=[])
    res = runner.invoke(app, ["detect", "--site", "rajin", "--since", "2023-08-01", "-w", str(tmp_path)])
    assert res.exit_code == 0 and "unusable: /data/c.tif: no usable pixel" in said(res)
    fake.detect_site = lambda *a: types.SimpleNamespace(  # type: ignore[attr-defined]
        scenes=2, looks=2, sightings=5, failures=[cloudy, unread], errors=[unread])
    res = runner.invoke(app, ["detect", "--site", "rajin", "--since", "2023-08-01", "-w", str(tmp_path)])
    assert res.exit_code == 1 and "failed: /data/B08.tiff: cannot read band 'nir'" in said(res)
    named = ("/data/d.tif", "/data/d.tif: no usable pixel over the site (cloud)")  # a message naming its file
    fake.detect_site = lambda *a: types.SimpleNamespace(  # type: ignore[attr-defined]
        scenes=1, looks=1, sightings=0, failures=[named], errors=[])
    res = runner.invoke(app, ["detect", "--site", "rajin", "--since", "2023-08-01", "-w", str(tmp_path)])
    assert said(res).count("/data/d.tif") == 1  # named once
    res = runner.invoke(app, ["detect", "--site", "rajin", "--since", "2023-08-01", "--until", "2023-07-01",
                              "-w", str(tmp_path)])
    assert res.exit_code == 2 and "before --since" in said(res)
    res = runner.invoke(app, ["detect", "--site", "rajin", "--since", "2031-01-01", "-w", str(tmp_path)])
    assert res.exit_code == 2 and "--until now is before --since 2031-01-01" in said(res)  # not "None"


def said(res: object) -> str:
    return " ".join(res.output.split())  # type: ignore[attr-defined]  (rich wraps long messages)


def test_detect_site_unknown_site_or_no_workspace_is_a_clear_error(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown site lists the known ones; a folder that is not a workspace is said and left as it was (no
    store, no ais/ chips/ scenes/ folders), with -w or from the current folder."""
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(ws), "--example", "rajin"]).exit_code == 0
    res = runner.invoke(app, ["detect", "--site", "gdynia", "--since", "2023-01-01", "-w", str(ws)])
    assert res.exit_code == 2 and "'gdynia'" in said(res) and "rajin" in said(res) and "vostochny" in said(res)
    assert res.exception is None or isinstance(res.exception, SystemExit)
    nows = tmp_path / "nows"
    res = runner.invoke(app, ["detect", "--site", "rajin", "--since", "2023-01-01", "--workspace", str(nows)])
    assert res.exit_code == 2 and "routewatch init" in said(res) and not nows.exists()
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    monkeypatch.delenv("ROUTEWATCH_WORKSPACE", raising=False)
    monkeypatch.delenv("ROUTEWATCH_DB", raising=False)
    res = runner.invoke(app, ["detect", "--site", "rajin", "--since", "2023-01-01"])
    assert res.exit_code == 2 and "routewatch init" in said(res) and list(here.iterdir()) == []


@pytest.mark.parametrize("content", ['{"type": "FeatureCollection", "features": []}', "",
                                     '{"type": "FeatureCollection", "features": [{"type": "Fea'])
def test_detect_site_with_a_broken_water_file_names_it(tmp_path: Path, content: str) -> None:
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(ws), "--example", "rajin"]).exit_code == 0
    (ws / "water").mkdir()
    (ws / "water" / "rajin.geojson").write_text(content)
    res = runner.invoke(app, ["detect", "--site", "rajin", "--since", "2023-01-01", "-w", str(ws)])
    assert res.exit_code == 2 and "rajin.geojson" in "".join(res.output.split()), res.output  # paths wrap
    assert res.exception is None or isinstance(res.exception, SystemExit)


@pytest.mark.shared
def test_detect_optical_on_a_shared_port(shared_dir: Path, tmp_path: Path) -> None:
    port = shared_dir / "data" / "sen2ships" / "honolulu"
    out = tmp_path / "det.geojson"
    args = ["detect", "optical", "-o", str(out)]
    for name, f in (("blue", "B02"), ("green", "B03"), ("red", "B04"), ("nir", "B08")):
        args += ["--band", f"{name}={port / (f + '.tiff')}"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    fc = json.loads(out.read_text())
    assert fc["features"], "no ships found in Honolulu harbour"
    for f in fc["features"]:
        lon, lat = f["geometry"]["coordinates"]
        assert -158.0 < lon < -157.8 and 21.2 < lat < 21.4
    res = runner.invoke(app, ["evaluate", "detections", str(out), "--truth", str(port / "annotations_coco.json")])
    assert res.exit_code == 0 and "length MAE" in res.output
    assert "warning" not in res.output  # the labels name B04.tiff, beside the B02.tiff the detections name
    port_size = _coco_size(port)
    assert (fc["routewatch"]["width"], fc["routewatch"]["height"]) == port_size
    # another port's labels: refused as another image instead of scored (it once gave F1 0.24, silently)
    other = shared_dir / "data" / "sen2ships" / "busan" / "annotations_coco.json"
    assert _coco_size(other.parent) != port_size
    res = runner.invoke(app, ["evaluate", "detections", str(out), "--truth", str(other)])
    assert res.exit_code == 2 and "not the same image" in " ".join(res.output.split())
    # a water mask of other pixels would score "near shore" at the wrong places: refused; one of the image's own
    # pixels is used
    truth = str(port / "annotations_coco.json")
    for size, code in (((100, 100), 2), ((port_size[1], port_size[0]), 0)):
        mask = tmp_path / f"water{size[0]}.png"
        Image.fromarray(np.full(size, 255, np.uint8)).save(mask)
        res = runner.invoke(app, ["evaluate", "detections", str(out), "--truth", truth, "--water", str(mask)])
        assert res.exit_code == code, res.output
    assert "100 x 100 px mask but the image is" in " ".join(runner.invoke(
        app, ["evaluate", "detections", str(out), "--truth", truth, "--water", str(tmp_path / "water100.png")]
    ).output.split())
    empty = tmp_path / "none.geojson"  # nothing matched: the length error is unknown, not "no lengths in truth"
    empty.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    res = runner.invoke(app, ["evaluate", "detections", str(empty), "--truth", truth])
    assert res.exit_code == 0 and "n/a (no ship matched)" in res.output
    assert "n/a (no detections)" in res.output  # precision is undefined without detections, not 0.000


def _coco_size(port: Path) -> tuple[int, int]:
    (image,) = json.loads((port / "annotations_coco.json").read_text())["images"]
    return image["width"], image["height"]


@pytest.mark.shared
def test_detect_optical_band_size_mismatch(shared_dir: Path, tmp_path: Path) -> None:
    a = shared_dir / "data" / "sen2ships" / "honolulu" / "B02.tiff"
    b = shared_dir / "data" / "sen2ships" / "casablanca" / "B03.tiff"
    res = runner.invoke(app, ["detect", "optical", "--band", f"blue={a}", "--band", f"green={b}", "--band",
                              f"red={a}", "-o", str(tmp_path / "x.geojson")])
    assert res.exit_code == 2 and "B03.tiff" in res.output and "differs" in res.output
    g, r = a.with_name("B03.tiff"), a.with_name("B04.tiff")
    res = runner.invoke(app, ["detect", "optical", "--band", f"blue={a}", "--band", f"green={g}", "--band",
                              f"red={r}", "--band", f"blue={a}", "-o", str(tmp_path / "y.geojson")])
    assert res.exit_code == 2 and "band blue given twice" in said(res) and not (tmp_path / "y.geojson").exists()
    # one band of a file under two names is a typo that still "detects" (23 ships against 11 in a user's test)
    res = runner.invoke(app, ["detect", "optical", "--band", f"blue={a}:1", "--band", f"green={a}", "--band",
                              f"red={r}", "-o", str(tmp_path / "y.geojson")])
    assert res.exit_code == 2 and "that band is already given as blue" in said(res)
    res = runner.invoke(app, ["detect", "optical", "--band", f"blue={a}:0", "-o", str(tmp_path / "y.geojson")])
    assert res.exit_code == 2 and "bands are numbered from 1" in said(res)


def test_detect_sar_with_a_user_onnx_model(tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="the onnx package (dev extra) builds the test model")
    from test_detect_onnx import score_map_model

    png = tmp_path / "chip.png"
    img = np.zeros((64, 64), np.uint8)
    img[10:30, 20:23] = 255
    Image.fromarray(img).save(png)
    out = tmp_path / "det.geojson"
    model = score_map_model(tmp_path / "m.onnx")  # outputs logits; 40 * (x - 0.5) > 0 only on the ship
    res = runner.invoke(app, ["detect", "sar", str(png), "--pixel-size", "5", "--model", str(model), "-o", str(out)])
    assert res.exit_code == 0, res.output
    fc = json.loads(out.read_text())
    assert len(fc["features"]) == 1 and fc["features"][0]["properties"]["length_m"] == pytest.approx(100.0)
    assert fc["routewatch"]["detector"].endswith("m.onnx")


def _coast_scene() -> np.ndarray:
    """Sea (GRD-like speckle) with a ship on the right; bright land on the left with a brighter structure on it."""
    rng = np.random.default_rng(4)
    img = np.clip(np.sqrt(rng.gamma(4.4, 1 / 4.4, (300, 300))) * 200, 0, 65535).astype(np.uint16)
    img[100:120, 198:202] = 3000  # a 200 m ship at sea
    img[:, :110] = np.clip(np.sqrt(rng.gamma(1.5, 8 / 1.5, (300, 110))) * 200, 0, 65535).astype(np.uint16)
    img[200:220, 40:44] = 9000  # a bright structure on land
    return img


def test_detect_sar_water_option(tmp_path: Path) -> None:
    """`--water auto` (the default) searches the water derived from the image and leaves the bright structure on
    land out, `none` searches everything, a raster searches the user's water; masks that do not fit are named."""
    tr = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4_700_000.0)
    profile = dict(driver="GTiff", width=300, height=300, count=1, dtype="uint16", crs="EPSG:32652", transform=tr)
    tif = tmp_path / "s1.tif"
    with rasterio.open(tif, "w", **profile) as ds:
        ds.write(_coast_scene(), 1)

    def run(*opts: str) -> tuple[int, dict]:
        out = tmp_path / "det.geojson"
        out.unlink(missing_ok=True)
        res = runner.invoke(app, ["detect", "sar", str(tif), "-o", str(out), *opts])
        return res.exit_code, (json.loads(out.read_text()) if out.exists() else {"output": res.output})

    def cols(fc: dict) -> list[int]:
        return sorted(round(f["properties"]["col"]) for f in fc["features"])

    code, fc = run()
    assert code == 0 and fc["routewatch"]["water"].startswith("derived") and cols(fc) == [200]
    code, fc = run("--water", "none")
    assert code == 0 and cols(fc) == [42, 200]
    water = np.zeros((300, 300), np.uint16)
    water[:, 30:] = 1  # the user calls the structure's strip water: it is searched again
    water[:150, 150:250] = 255  # the user's no-data: not water, so the ship there is not searched
    wtif = tmp_path / "water.tif"
    with rasterio.open(wtif, "w", **profile, nodata=255) as ds:
        ds.write(water, 1)
    code, fc = run("--water", str(wtif))
    assert code == 0 and fc["routewatch"]["water"] == str(wtif) and cols(fc) == [42]

    bad = {"two_bands.tif": dict(count=2), "shifted.tif": dict(transform=tr @ Affine.translation(5, 0)),
           "small.tif": dict(width=100)}
    for name, change in bad.items():
        path = tmp_path / name
        spec = {**profile, **change}
        with rasterio.open(path, "w", **spec) as ds:
            ds.write(np.ones((spec["count"], 300, spec["width"]), np.uint16))
        code, fc = run("--water", str(path))
        assert code == 2 and name in fc["output"], (name, fc)


def test_detect_sar_auto_water_ignores_an_untagged_zero_border(tmp_path: Path) -> None:
    """A GeoTIFF swath's zero fill, tagged as no-data or not, 16- or 8-bit, is neither sea nor land: the ship is
    still found (a zero border taken for calm sea once made the whole real sea 'land')."""
    img = sar_scene()
    img[:, :8] = 0  # swath fill along one edge, 3 % of the image
    for dtype, data in (("uint16", img), ("uint8", (img // 16).clip(0, 255).astype(np.uint8))):
        for nodata in (None, 0):
            tif = tmp_path / f"fill_{dtype}_{nodata}.tif"
            with rasterio.open(tif, "w", driver="GTiff", width=300, height=300, count=1, dtype=dtype,
                               crs="EPSG:32652", transform=Affine(10.0, 0, 500000.0, 0, -10.0, 4_700_000.0),
                               nodata=nodata) as ds:
                ds.write(data, 1)
            out = tmp_path / "det.geojson"
            assert runner.invoke(app, ["detect", "sar", str(tif), "-o", str(out)]).exit_code == 0
            assert len(json.loads(out.read_text())["features"]) == 1, (dtype, nodata)


def test_detect_sar_water_masks_from_plain_images_and_float_rasters(tmp_path: Path) -> None:
    """A palette PNG mask is read as it looks (non-black = water), colour, lossy and broken masks are refused, and
    a float mask's NaN no-data is not water."""
    from PIL import Image

    tif = tmp_path / "s1.tif"
    tr = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4_700_000.0)
    with rasterio.open(tif, "w", driver="GTiff", width=300, height=300, count=1, dtype="uint16",
                       crs="EPSG:32652", transform=tr) as ds:
        ds.write(_coast_scene(), 1)
    water = np.ones((300, 300), np.uint8)
    water[:, :110] = 0
    pal = Image.fromarray(1 - water, mode="P")
    pal.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)  # index 0 is white: the water, as the picture shows it
    pal.save(tmp_path / "water.png")
    out = tmp_path / "det.geojson"
    res = runner.invoke(app, ["detect", "sar", str(tif), "-o", str(out), "--water", str(tmp_path / "water.png")])
    assert res.exit_code == 0, res.output
    assert [round(f["properties"]["col"]) for f in json.loads(out.read_text())["features"]] == [200]
    Image.fromarray(np.stack([water * 255] * 3, -1)).save(tmp_path / "rgb.png")
    colour = Image.fromarray(water, mode="P")
    colour.putpalette([0, 128, 0, 0, 0, 255] + [0] * 762)  # green land, blue water: not a grey mask
    colour.save(tmp_path / "colour.png")
    Image.fromarray(water * 255).save(tmp_path / "water.jpg")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    for bad in ("rgb.png", "colour.png", "water.jpg", "broken.png"):
        res = runner.invoke(app, ["detect", "sar", str(tif), "-o", str(out), "--water", str(tmp_path / bad)])
        assert res.exit_code == 2 and bad in res.output
    fmask = np.ones((300, 300), np.float32)
    fmask[:, :110] = np.nan  # the land is no-data in this mask, not water
    ftif = tmp_path / "water_f.tif"
    with rasterio.open(ftif, "w", driver="GTiff", width=300, height=300, count=1, dtype="float32",
                       crs="EPSG:32652", transform=tr, nodata=float("nan")) as ds:
        ds.write(fmask, 1)
    res = runner.invoke(app, ["detect", "sar", str(tif), "-o", str(out), "--water", str(ftif)])
    assert res.exit_code == 0, res.output
    assert [round(f["properties"]["col"]) for f in json.loads(out.read_text())["features"]] == [200]


@pytest.mark.shared
def test_detect_sar_finds_the_ships_of_the_inshore_chip_inside_derived_water(shared_dir: Path, tmp_path: Path) -> None:
    """The inshore Gaofen-3 chip (13 ships in a channel between bright land): without a water mask the land fills
    the background ring and nothing is found; inside the derived water the CFAR finds most of them (9 of 13)."""
    chip = shared_dir / "data" / "sar-chips" / "Gao_ship_hh_02017110638010408.jpg"
    from routewatch.detect.base import Detection
    from routewatch.detect.evaluate import load_voc, score

    truth = load_voc(chip.with_suffix(".xml"))
    recall = {}
    for opt in ("none", "auto"):
        out = tmp_path / f"{opt}.geojson"
        res = runner.invoke(app, ["detect", "sar", str(chip), "--pixel-size", "10", "-o", str(out), "--water", opt])
        assert res.exit_code == 0, res.output
        dets = [Detection(row=f["properties"]["row"], col=f["properties"]["col"], length_m=0, width_m=0,
                          heading_deg=0, score=f["properties"]["score"])
                for f in json.loads(out.read_text())["features"]]
        recall[opt] = score(dets, truth, pixel_size_m=10.0).recall
    assert recall["auto"] >= 0.65 and recall["none"] <= 0.2, recall
    # scored against its own labels: no warning; against another chip's (all chips are 256 x 256, so the size
    # check cannot tell): a warning naming both images
    res = runner.invoke(app, ["evaluate", "detections", str(out), "--truth", str(chip.with_suffix(".xml"))])
    assert res.exit_code == 0 and "warning" not in res.output
    other = chip.with_name("Gao_ship_hh_0201611139301040015.xml")
    res = runner.invoke(app, ["evaluate", "detections", str(out), "--truth", str(other)])
    assert res.exit_code == 0 and "warning" in said(res) and "'ship_hh_0201611139301040015'" in said(res)
    assert "'Gao_ship_hh_02017110638010408.jpg'" in said(res)


def test_global_mask_keeps_the_search_near_the_sea(tmp_path: Path) -> None:
    """``detect sar --global-mask`` (optional extra): a dark inland lake far from the sea passes for water in the
    derived mask, and a bright target in it for a ship; the packaged 1 km global mask drops it and keeps the
    ship at sea. The scene's coast is the global mask's own (40 km around Rajin, UTM 52N, 20 m pixels)."""
    pytest.importorskip("global_land_mask", reason="the globalmask extra (installed with the dev extra)")
    from routewatch.detect.water import global_ocean

    tr = Affine(20.0, 0.0, 590000.0, 0.0, -20.0, 4_700_000.0)
    coarse, grid = global_ocean(tr, "EPSG:32652", (2000, 2000))
    sea = grid.expand(coarse)
    assert 0.2 < sea.mean() < 0.6 and not sea[:800, :800].any()  # land to the north-west, sea to the south-east
    rng = np.random.default_rng(7)
    amp = np.sqrt(rng.standard_exponential((2000, 2000))) * np.where(sea, 150.0, 1500.0)
    rr, cc = np.mgrid[:2000, :2000]
    lake = (rr - 375) ** 2 + (cc - 375) ** 2 < 100**2  # 2 km across, over 20 km from the sea
    amp[lake] = np.sqrt(rng.standard_exponential(int(lake.sum()))) * 150.0
    for r, c in ((375, 375), (1700, 1700)):  # one "ship" in the lake, one at sea
        amp[r - 7 : r + 8, c - 1 : c + 2] = 6000.0
    tif = tmp_path / "s1.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=2000, height=2000, count=1, dtype="uint16",
                       crs="EPSG:32652", transform=tr) as ds:
        ds.write(np.clip(amp, 1, 65535).astype(np.uint16), 1)

    def rows(*extra: str) -> list[float]:
        out = tmp_path / "det.geojson"
        res = runner.invoke(app, ["detect", "sar", str(tif), "-o", str(out), *extra])
        assert res.exit_code == 0, res.output
        fc = json.loads(out.read_text())
        return sorted(round(f["properties"]["row"]) for f in fc["features"])

    assert rows() == [375, 1700]
    assert rows("--global-mask") == [1700]
    assert "global mask" in json.loads((tmp_path / "det.geojson").read_text())["routewatch"]["water"]
    mask = tmp_path / "water.tif"
    with rasterio.open(mask, "w", driver="GTiff", width=2000, height=2000, count=1, dtype="uint8",
                       crs="EPSG:32652", transform=tr) as ds:
        ds.write(sea.astype(np.uint8), 1)
    res = runner.invoke(app, ["detect", "sar", str(tif), "-o", str(tmp_path / "x.geojson"), "--water", str(mask),
                              "--global-mask"])
    said = lambda r: " ".join(r.output.split())  # noqa: E731  (rich wraps long messages)
    assert res.exit_code != 0 and "narrows a derived mask" in said(res)
    res = runner.invoke(app, ["detect", "sar", str(tif), "-o", str(tmp_path / "x.geojson"), "--model",
                              str(tmp_path / "mine.onnx"), "--global-mask"])
    assert res.exit_code != 0 and "--model" in said(res)
    png = tmp_path / "chip.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(png)
    import routewatch.cli.detect as cli_detect

    def no_mask_yet(*a: object) -> None:
        raise AssertionError("the water mask was derived before --global-mask was checked")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli_detect, "_sar_water", no_mask_yet)
        res = runner.invoke(app, ["detect", "sar", str(png), "--pixel-size", "10", "-o", str(tmp_path / "x.geojson"),
                                  "--global-mask"])
    assert res.exit_code != 0 and "needs a georeferenced image" in said(res)


@pytest.mark.parametrize(("dtype", "nodata"), [("uint16", 0), ("int16", -32768), ("float32", float("nan")),
                                               ("float32", -9999.0)])
def test_valid_pixels_from_the_band_already_read_match_gdals_mask(tmp_path, dtype, nodata):
    """`detect sar` applies a no-data value to the band it has read instead of reading the file again: the same
    pixels as GDAL's mask, plus non-finite values (which the water mask leaves out anyway)."""
    import rasterio
    from rasterio.transform import from_origin

    from routewatch.cli.detect import _read_valid

    a = np.random.default_rng(0).integers(1, 200, (40, 50)).astype(dtype)
    a[:4] = nodata
    if a.dtype.kind == "f":
        a[10, 10], a[11, 11] = np.inf, np.nan
    tif = tmp_path / "v.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=50, height=40, count=1, dtype=dtype, nodata=nodata,
                       crs="EPSG:32652", transform=from_origin(0, 0, 10, 10)) as ds:
        ds.write(a, 1)
    with rasterio.open(tif) as ds:
        band = ds.read(1)
        gdal = ds.read_masks(1) > 0
        assert (_read_valid(ds, band) == (gdal & np.isfinite(band))).all()
        valid = _read_valid(ds, band)
        assert not valid[:4].any() and valid.sum() == 36 * 50 - (2 if a.dtype.kind == "f" else 0)


UTM_10M = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4_700_000.0)


def _band_tif(path: Path, data: np.ndarray, transform: Affine | None = UTM_10M, crs: str | None = "EPSG:32652",
              **kw: object) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype, crs=crs, transform=transform or Affine.identity(), **kw) as ds:
        ds.write(data, 1)
    return path


def _optical(tmp_path: Path, names: tuple[str, ...] = ("blue", "green", "red", "nir"), **per_band: Path) -> list[str]:
    rng = np.random.default_rng(1)
    args = []
    for name in names:
        path = per_band.get(name) or _band_tif(tmp_path / f"{name}.tif",
                                               rng.integers(200, 1500, (64, 64)).astype(np.uint16))
        args += ["--band", f"{name}={path}"]
    return args


def test_images_without_information_are_refused_by_name(tmp_path: Path) -> None:
    """All-zero (no-data or not) and all-NaN images gave a clean "0 ships"; now an error naming the file."""
    cases = {"zeros.tif": (np.zeros((300, 300), np.uint16), {}),
             "zeros_nodata.tif": (np.zeros((300, 300), np.uint16), {"nodata": 0}),
             "nan.tif": (np.full((300, 300), np.nan, np.float32), {})}
    for name, (data, kw) in cases.items():
        tif = _band_tif(tmp_path / name, data, **kw)
        out = tmp_path / "det.geojson"
        res = runner.invoke(app, ["detect", "sar", str(tif), "-o", str(out)])
        assert res.exit_code == 2 and name in res.output and not out.exists(), (name, res.output)
        assert "no valid pixels" in said(res) or "one value" in said(res)
    blank = _band_tif(tmp_path / "blank_red.tif", np.zeros((64, 64), np.uint16), nodata=0)
    res = runner.invoke(app, ["detect", "optical", *_optical(tmp_path, red=blank), "-o", str(tmp_path / "o.geojson")])
    assert res.exit_code == 2 and "blank_red.tif" in res.output and not (tmp_path / "o.geojson").exists()


def test_pixel_size_must_be_positive_and_the_output_folder_is_made(tmp_path: Path) -> None:
    png = tmp_path / "chip.png"
    Image.fromarray((sar_scene() // 16).clip(0, 255).astype(np.uint8)).save(png)
    for bad in ("0", "-10", "nan"):
        res = runner.invoke(app, ["detect", "sar", str(png), "--pixel-size", bad, "-o", str(tmp_path / "x.geojson")])
        assert res.exit_code == 2 and "--pixel-size" in res.output, (bad, res.output)
        res = runner.invoke(app, ["detect", "optical", *_optical(tmp_path), "--pixel-size", bad, "-o",
                                  str(tmp_path / "x.geojson")])
        assert res.exit_code == 2 and "--pixel-size" in res.output, (bad, res.output)
    out = tmp_path / "new" / "deeper" / "x.geojson"
    res = runner.invoke(app, ["detect", "sar", str(png), "--pixel-size", "10", "-o", str(out)])
    assert res.exit_code == 0 and len(json.loads(out.read_text())["features"]) == 1, res.output
    out = tmp_path / "new2" / "o.geojson"
    res = runner.invoke(app, ["detect", "optical", *_optical(tmp_path), "-o", str(out)])
    assert res.exit_code == 0 and out.is_file(), res.output


def test_optical_bands_must_line_up(tmp_path: Path) -> None:
    """Same-sized bands shifted 5 km, in another CRS, or without CRS were stacked with the others."""
    data = np.random.default_rng(2).integers(200, 1500, (64, 64)).astype(np.uint16)
    bad = {"shifted.tif": dict(transform=UTM_10M @ Affine.translation(500, 0)),
           "utm51.tif": dict(crs="EPSG:32651"), "nocrs.tif": dict(crs=None, transform=None)}
    for name, kw in bad.items():
        nir = _band_tif(tmp_path / name, data, **kw)  # type: ignore[arg-type]
        res = runner.invoke(app, ["detect", "optical", *_optical(tmp_path, nir=nir), "-o", str(tmp_path / "o.json")])
        assert res.exit_code == 2 and name in res.output and "blue.tif" in res.output, (name, res.output)
    noise = _band_tif(tmp_path / "noise.tif", data, transform=Affine(10.0, 0, 500000.0 + 1e-6, 0, -10.0, 4.7e6))
    res = runner.invoke(app, ["detect", "optical", *_optical(tmp_path, nir=noise), "-o", str(tmp_path / "o.json")])
    assert res.exit_code == 0, res.output


def test_optical_without_nir_warns_and_records_the_bands(tmp_path: Path) -> None:
    out = tmp_path / "o.geojson"
    res = runner.invoke(app, ["detect", "optical", *_optical(tmp_path, ("blue", "green", "red")), "-o", str(out)])
    assert res.exit_code == 0 and "warning" in res.output and "nir" in said(res), res.output
    assert json.loads(out.read_text())["routewatch"]["bands"] == ["blue", "green", "red"]
    res = runner.invoke(app, ["detect", "optical", *_optical(tmp_path), "-o", str(out)])
    assert res.exit_code == 0 and "warning" not in res.output, res.output
    assert json.loads(out.read_text())["routewatch"]["bands"] == ["blue", "green", "red", "nir"]
    rng = np.random.default_rng(2)
    fine = {n: _band_tif(tmp_path / f"fine_{n}.tif", rng.integers(200, 1500, (64, 64)).astype(np.uint16),
                         transform=Affine(0.5, 0, 500000, 0, -0.5, 4660000)) for n in ("blue", "green", "red")}
    res = runner.invoke(app, ["detect", "optical", *_optical(tmp_path, ("blue", "green", "red"), **fine), "-o", str(out)])
    # metre imagery is averaged to the network's scale (about 8 m), where RGB alone does as badly: warned too
    assert res.exit_code == 0 and "warning" in res.output and "averaged to about 8 m" in said(res), res.output
    # a pixel size that contradicts the georeference had scaled every length (30 m given for 10 m pixels)
    res = runner.invoke(app, ["detect", "optical", *_optical(tmp_path), "--pixel-size", "30", "-o", str(out)])
    assert res.exit_code == 2 and "georeferenced with 10 m ground pixels" in said(res), res.output
    res = runner.invoke(app, ["detect", "optical", *_optical(tmp_path), "--pixel-size", "10", "-o", str(out)])
    assert res.exit_code == 0, res.output  # the same size: no contradiction


def test_a_pixel_size_that_agrees_with_the_georeference_changes_no_length(tmp_path: Path) -> None:
    """On a lon/lat grid at 60 N (pixels twice as tall as wide on the ground) a hull is measured in true metres
    along its axis; giving the image's own mean pixel size as --pixel-size had skipped that (223 m became 334 m)."""
    rng = np.random.default_rng(5)
    img = (rng.gamma(4.0, 50.0, (300, 300)) + 1).astype(np.uint16)
    img[149:152, 130:170] = 6000  # an east-west hull of 40 pixels
    tif = _band_tif(tmp_path / "ll.tif", img, transform=Affine(1e-4, 0, 10.0, 0, -1e-4, 60.0), crs="EPSG:4326")
    out = tmp_path / "x.geojson"
    lengths = []
    for extra in ([], None):
        if extra is None:
            extra = ["--pixel-size", str(json.loads(out.read_text())["routewatch"]["pixel_size_m"])]
        res = runner.invoke(app, ["detect", "sar", str(tif), "-o", str(out), "--water", "none", *extra])
        assert res.exit_code == 0, res.output
        (f,) = json.loads(out.read_text())["features"]
        lengths.append(f["properties"]["length_m"])
    assert lengths[0] == pytest.approx(lengths[1]) and lengths[0] < 260


def test_sar_in_decibels_is_refused_by_name(tmp_path: Path) -> None:
    """A SAR image in dB (mostly negative) had given its ships a score of 0: refused, saying how to convert."""
    img = (10 * np.log10(sar_scene().astype(np.float32) / 1e4 + 1e-6)).astype(np.float32)
    res = runner.invoke(app, ["detect", "sar", str(_band_tif(tmp_path / "db.tif", img)), "-o",
                              str(tmp_path / "x.geojson"), "--water", "none"])
    assert res.exit_code == 2 and "db.tif" in res.output and "decibels" in said(res), res.output
    lin = 10 ** (img / 10)  # the same image in linear intensity is read
    res = runner.invoke(app, ["detect", "sar", str(_band_tif(tmp_path / "lin.tif", lin)), "-o",
                              str(tmp_path / "x.geojson"), "--water", "none"])
    assert res.exit_code == 0, res.output
    from routewatch.detect.sar import detect_sar

    channel = np.zeros(img.shape, bool)
    channel[150:153, :] = True  # water between the sampling grid's rows: the check still sees the decibels
    with pytest.raises(ValueError, match="decibels"):
        detect_sar(img, pixel_size_m=10.0, water=channel)
    for fill in (-9999, -999):  # and so is one whose no-data fill, a negative number, covers most of it
        filled = lin.copy()
        filled[:, : int(filled.shape[1] * 0.6)] = fill
        res = runner.invoke(app, ["detect", "sar", str(_band_tif(tmp_path / "fill.tif", filled, nodata=fill)), "-o",
                                  str(tmp_path / "x.geojson"), "--water", "none"])
        assert res.exit_code == 0, (fill, res.output)


def test_a_truncated_raster_names_gdals_reason(tmp_path: Path) -> None:
    tif = _band_tif(tmp_path / "cut.tif", sar_scene())
    data = tif.read_bytes()
    tif.write_bytes(data[: len(data) // 2])
    res = runner.invoke(app, ["detect", "sar", str(tif), "-o", str(tmp_path / "x.geojson")])
    assert res.exit_code == 2 and "cut.tif" in res.output and "IReadBlock" in said(res), res.output


@pytest.mark.shared
def test_detect_optical_reads_the_bands_of_one_stacked_file(shared_dir: Path, tmp_path: Path) -> None:
    """A Planet-like analytic file holds all four bands: NAME=FILE:N picks band N; without :N a file of several
    bands is refused (taking band 1 for every name silently gave 141 false ships)."""
    port = shared_dir / "data" / "sen2ships" / "honolulu"
    names = (("blue", "B02"), ("green", "B03"), ("red", "B04"), ("nir", "B08"))
    with rasterio.open(port / "B02.tiff") as ds:
        profile = ds.profile
    stacked = tmp_path / "analytic.tif"
    profile.update(count=4, driver="GTiff")
    with rasterio.open(stacked, "w", **profile) as dst:
        for i, (_, f) in enumerate(names, start=1):
            with rasterio.open(port / f"{f}.tiff") as ds:
                dst.write(ds.read(1), i)
    separate, together = tmp_path / "separate.geojson", tmp_path / "together.geojson"
    args = ["detect", "optical", "-o", str(separate)]
    for name, f in names:
        args += ["--band", f"{name}={port / (f + '.tiff')}"]
    assert runner.invoke(app, args).exit_code == 0
    args = ["detect", "optical", "-o", str(together)]
    for i, (name, _) in enumerate(names, start=1):
        args += ["--band", f"{name}={stacked}:{i}"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = [[f["properties"]["row"] for f in json.loads(p.read_text())["features"]] for p in (separate, together)]
    assert rows[0] == rows[1] and rows[0]
    res = runner.invoke(app, ["detect", "optical", "--band", f"blue={stacked}", "--band", f"green={stacked}",
                              "--band", f"red={stacked}", "-o", str(tmp_path / "x.geojson")])
    assert res.exit_code == 2 and "4 bands; say which with FILE:N" in said(res)


def test_detect_sar_locates_a_grd_by_its_ground_control_points(tmp_path: Path) -> None:
    """A Sentinel-1 GRD has no affine, only GCPs: `detect sar` places the ships through them (lon/lat, ground pixel
    size, heading from true north) instead of asking for --pixel-size and writing pixel coordinates. The grid is
    north-down, as an ascending pass is: a hull 30 deg clockwise from image-up runs 150 deg from north."""
    import math

    from rasterio.control import GroundControlPoint

    h, w = 300, 300
    lon0, lat0, dlon, dlat = 130.20, 42.10, 1.2e-4, 0.9e-4  # about 10 m pixels; row 0 is the southern edge
    rng = np.random.default_rng(3)
    img = (rng.gamma(1.0, 60.0, (h, w)) + 1).astype(np.uint16)
    for t in np.linspace(-10, 10, 60):  # a 20-pixel hull through (150, 150), 30 deg clockwise from image-up
        r, c = 150 - t * math.cos(math.radians(30)), 150 + t * math.sin(math.radians(30))
        ri, ci = round(r), round(c)
        img[ri - 1:ri + 1, ci - 1:ci + 1] = 4000
    gcps = [GroundControlPoint(row=r, col=c, x=lon0 + c * dlon, y=lat0 + r * dlat)
            for r in np.linspace(0, h, 5) for c in np.linspace(0, w, 5)]
    path = tmp_path / "S1A_IW_GRDH_20231012T090000_vv.tif"
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint16") as ds:
        ds.write(img, 1)
        ds.gcps = (gcps, rasterio.crs.CRS.from_epsg(4326))
    out = tmp_path / "det.geojson"
    res = runner.invoke(app, ["detect", "sar", str(path), "-o", str(out), "--water", "none"])
    assert res.exit_code == 0, res.output
    fc = json.loads(out.read_text())
    assert fc["routewatch"]["georeferenced"] and fc["routewatch"]["geolocation"] == "gcps"
    assert fc["routewatch"]["pixel_size_m"] == pytest.approx(9.9, rel=0.1)
    (f,) = fc["features"]
    lon, lat = f["geometry"]["coordinates"]
    assert lon == pytest.approx(lon0 + 150.5 * dlon, abs=3 * dlon) and lat == pytest.approx(lat0 + 150.5 * dlat, abs=3 * dlat)
    assert f["properties"]["heading_deg"] == pytest.approx(150, abs=8)
    for bad in ("-5", "nan", "0"):  # a given pixel size is checked on a GCP grid too
        res = runner.invoke(app, ["detect", "sar", str(path), "-o", str(out), "--pixel-size", bad])
        assert res.exit_code == 2 and "--pixel-size" in res.output, (bad, res.output)
        assert res.exception is None or isinstance(res.exception, SystemExit)


@pytest.mark.shared
def test_detect_optical_reads_a_no_data_value_other_than_zero(shared_dir: Path, tmp_path: Path) -> None:
    """Band files filled with 65535 (tagged no-data) over a part: the fill is no-data as 0 would be, out of the
    median and the NDWI (8 ships in the valid part then, 5 when the fill counted as bright data), and no ship
    along the edge of the fill."""
    port = shared_dir / "data" / "sen2ships" / "casablanca"
    found = {}
    for fill in (0, 65535):
        args = ["detect", "optical", "-o", str(tmp_path / f"{fill}.geojson")]
        for name, f in (("blue", "B02"), ("green", "B03"), ("red", "B04"), ("nir", "B08")):
            with rasterio.open(port / f"{f}.tiff") as ds:
                arr, profile = ds.read(1), ds.profile
            arr[:, :200] = fill
            profile.update(driver="GTiff", nodata=fill)
            path = tmp_path / f"{fill}_{f}.tif"
            with rasterio.open(path, "w", **profile) as ds:
                ds.write(arr, 1)
            args += ["--band", f"{name}={path}"]
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
        found[fill] = [f["properties"] for f in json.loads((tmp_path / f"{fill}.geojson").read_text())["features"]]
    assert len(found[0]) >= 6 and found[65535] == found[0]
    assert all(p["col"] > 208 for p in found[0])  # nothing on the data/no-data step at column 200


def test_detections_of_a_simulated_image_carry_its_time_and_mark_into_fusion(tmp_path: Path) -> None:
    """`detect sar` writes the image's acquisition time and its simulated mark on each detection, so that
    `fuse --detections` matches AIS at that time without --time and keeps the sightings marked simulated."""
    from datetime import UTC, datetime

    from shapely.geometry import box

    from routewatch.fuse.io import read_detections_geojson
    from routewatch.model import Site, SiteKind
    from routewatch.simulate import ShipSpec, simulate_scene

    site = Site("rajin", "Rajin", SiteKind.PORT, box(130.265, 42.215, 130.310, 42.250))
    when = datetime(2024, 5, 10, 9, 0, tzinfo=UTC)
    sim = simulate_scene(site, when, "simulated-sar", [ShipSpec(150, heading_deg=30, lon=130.29, lat=42.232)],
                         tmp_path / "sar.tif", seed=4)
    out = tmp_path / "det.geojson"
    res = runner.invoke(app, ["detect", "sar", str(sim.path), "-o", str(out)])
    assert res.exit_code == 0, res.output
    fc = json.loads(out.read_text())
    assert fc["routewatch"]["simulated"] is True and fc["routewatch"]["acquired"] == when.isoformat()
    assert fc["features"] and all(f["properties"]["simulated"] is True for f in fc["features"])
    det = read_detections_geojson(out)
    assert det["simulated"].all() and det["time"].to_list() == [when] * det.height
    # a real image with a date alone: the date is said, but no detection gets a time of day it does not have
    with rasterio.open(sim.path) as ds:
        profile, data, tags = ds.profile, ds.read(), ds.tags()
    tags.pop("ROUTEWATCH_SIMULATED")
    tags.pop("ACQUISITION_DATETIME", None)
    real = tmp_path / "s1_20240510_vv.tif"
    with rasterio.open(real, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(**{k: v for k, v in tags.items() if "TIME" not in k.upper()})
    out2 = tmp_path / "real.geojson"
    assert runner.invoke(app, ["detect", "sar", str(real), "-o", str(out2)]).exit_code == 0
    fc2 = json.loads(out2.read_text())
    assert "simulated" not in fc2["routewatch"] and fc2["routewatch"]["time_precision"] == "day"
    assert all("time" not in f["properties"] and "simulated" not in f["properties"] for f in fc2["features"])
    # a file whose only time is when it was written (a GIS export's DateTime tag): no acquisition time is claimed,
    # so `fuse --time` still says when the image was taken
    exported = tmp_path / "harbour_vv.tif"
    with rasterio.open(exported, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(TIFFTAG_DATETIME="2025:01:15 16:42:07")
    out3 = tmp_path / "exported.geojson"
    assert runner.invoke(app, ["detect", "sar", str(exported), "-o", str(out3)]).exit_code == 0
    fc3 = json.loads(out3.read_text())
    assert "acquired" not in fc3["routewatch"] and all("time" not in f["properties"] for f in fc3["features"])
    assert read_detections_geojson(out3, when)["time"].to_list() == [when] * len(fc3["features"])


def _grd_with_ship(tmp_path: Path, name: str = "S1A_IW_GRDH_20231012T090000_vv.tif") -> tuple[Path, tuple]:
    """A GRD-like uint16 image located by GCPs alone, one 20-pixel hull at its centre; (path, grid)."""

    rng = np.random.default_rng(3)
    img = (rng.gamma(1.0, 60.0, (300, 300)) + 1).astype(np.uint16)
    img[140:160, 149:151] = 4000
    return write_gcp_grd(tmp_path / name, img), GRD_GRID


GRD_GRID = (130.20, 42.10, 1.2e-4, 0.9e-4)  # lon, lat of pixel (0, 0) and degrees per column and row: ~10 m


def write_gcp_grd(path: Path, img: np.ndarray) -> Path:
    """``img`` as a GRD-like GeoTIFF located by ground control points alone (GRD_GRID, rows northward)."""
    from rasterio.control import GroundControlPoint

    h, w = img.shape
    lon0, lat0, dlon, dlat = GRD_GRID
    gcps = [GroundControlPoint(row=r, col=c, x=lon0 + c * dlon, y=lat0 + r * dlat)
            for r in np.linspace(0, h, 5) for c in np.linspace(0, w, 5)]
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype=img.dtype.name) as ds:
        ds.write(img, 1)
        ds.gcps = (gcps, rasterio.crs.CRS.from_epsg(4326))
    return path


def test_detect_sar_trusts_the_gcps_over_an_affine_beside_them(tmp_path: Path) -> None:
    """A VRT can carry a GeoTransform beside the GCPs; the affine had been used, placing ships kilometres off."""
    path, (lon0, lat0, dlon, dlat) = _grd_with_ship(tmp_path)
    text = ('<VRTDataset rasterXSize="300" rasterYSize="300"><SRS>EPSG:4326</SRS>'
            '<GeoTransform>130.3, 0.0002, 0.0, 42.3, 0.0, -0.0002</GeoTransform>'
            '<GCPList Projection="EPSG:4326">'
            + "".join(f'<GCP Id="{k}" Pixel="{c}" Line="{r}" X="{lon0 + c * dlon}" Y="{lat0 + r * dlat}"/>'
                      for k, (r, c) in enumerate((r, c) for r in (0, 150, 300) for c in (0, 150, 300)))
            + f'</GCPList><VRTRasterBand dataType="UInt16" band="1"><SimpleSource><SourceFilename relativeToVRT="1">'
            f'{path.name}</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>')
    vrt = tmp_path / "both.vrt"
    vrt.write_text(text)
    with rasterio.open(vrt) as ds:
        assert ds.crs is not None and len(ds.gcps[0]) == 9  # the affine is there, beside the GCPs
    out = tmp_path / "det.geojson"
    res = runner.invoke(app, ["detect", "sar", str(vrt), "-o", str(out), "--water", "none"])
    assert res.exit_code == 0, res.output
    fc = json.loads(out.read_text())
    (f,) = fc["features"]
    lon, lat = f["geometry"]["coordinates"]
    assert fc["routewatch"]["geolocation"] == "gcps"
    assert lon == pytest.approx(lon0 + 150 * dlon, abs=3 * dlon) and lat == pytest.approx(lat0 + 150 * dlat, abs=3 * dlat)


def test_detect_sar_keeps_no_data_out_without_a_derived_mask_and_picks_the_co_polarised_band(tmp_path: Path) -> None:
    """A float image whose swath fill is -9999, tagged: with --water none (or the user's mask) the fill had gone
    into the CFAR rings and every ship was lost. A VH+VV file had been searched in its first band (VH) silently."""
    rng = np.random.default_rng(5)
    h, w = 600, 600
    img = rng.gamma(1.0, 0.05, (h, w)).astype(np.float32)
    for r in (150, 300, 450):
        img[r - 10:r + 10, 400:402] = 3.0
    img[:, :200] = -9999.0
    path = tmp_path / "sigma0.tif"
    profile = dict(driver="GTiff", width=w, height=h, count=1, dtype="float32", nodata=-9999.0,
                   crs="EPSG:32652", transform=Affine(10, 0, 500000, 0, -10, 4700000))
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(img, 1)
    out = tmp_path / "det.geojson"
    res = runner.invoke(app, ["detect", "sar", str(path), "-o", str(out), "--water", "none", "--values", "intensity"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(out.read_text())["features"]) == 3
    two = tmp_path / "vh_vv.tif"
    with rasterio.open(two, "w", **{**profile, "count": 2, "nodata": None}) as ds:
        ds.write(np.where(img < 0, 0.0, img * 0.05).astype(np.float32), 1)  # VH: ships barely above clutter
        ds.write(np.where(img < 0, 0.0, img).astype(np.float32), 2)
        ds.set_band_description(1, "VH")
        ds.set_band_description(2, "VV")
    res = runner.invoke(app, ["detect", "sar", str(two), "-o", str(out), "--water", "none", "--values", "intensity"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(out.read_text())["features"]) == 3
    with rasterio.open(two, "r+") as ds:
        ds.set_band_description(2, "other")
    res = runner.invoke(app, ["detect", "sar", str(two), "-o", str(out), "--water", "none"])
    assert res.exit_code == 2 and "say which to search with --band N" in said(res)
    res = runner.invoke(app, ["detect", "sar", str(two), "-o", str(out), "--water", "none", "--band", "2",
                              "--values", "intensity"])
    assert res.exit_code == 0 and len(json.loads(out.read_text())["features"]) == 3
    # a band and its alpha (gdalwarp -dstalpha): the alpha is the mask, not a second band to choose from
    from rasterio.enums import ColorInterp

    alpha = tmp_path / "alpha.tif"
    with rasterio.open(alpha, "w", **{**profile, "count": 2, "nodata": None}) as ds:
        ds.write(np.where(img < 0, 0.0, img).astype(np.float32), 1)
        ds.write(np.where(img < 0, 0.0, 255.0).astype(np.float32), 2)
        ds.colorinterp = [ColorInterp.gray, ColorInterp.alpha]
    res = runner.invoke(app, ["detect", "sar", str(alpha), "-o", str(out), "--water", "none", "--values", "intensity"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(out.read_text())["features"]) == 3
    # a ratio band names VV too, but is no co-polarised band; words that hold "ratio" are no ratio
    for first, second in (("VV/VH", "VV"), ("VH_VV_ratio", "Sigma0_VV calibration"), ("VH", "Sigma0_VV/linear")):
        with rasterio.open(two, "r+") as ds:
            ds.set_band_description(1, first)
            ds.set_band_description(2, second)
        res = runner.invoke(app, ["detect", "sar", str(two), "-o", str(out), "--water", "none", "--values",
                                  "intensity"])
        assert res.exit_code == 0 and len(json.loads(out.read_text())["features"]) == 3, (first, second)


def test_global_mask_on_a_grd_located_by_its_ground_control_points(tmp_path: Path) -> None:
    """A Sentinel-1 GRD has GCPs and no affine: `--global-mask` had refused it ("needs a georeferenced image").
    The GCP grid places the coarse samples: the same lake and sea as the UTM scene above, from GCPs alone, the
    lake's "ship" dropped and the one at sea kept."""
    pytest.importorskip("global_land_mask", reason="the globalmask extra (installed with the dev extra)")
    from pyproj import Transformer
    from rasterio.control import GroundControlPoint

    from routewatch.detect.water import global_ocean

    tr = Affine(20.0, 0.0, 590000.0, 0.0, -20.0, 4_700_000.0)
    to_ll = Transformer.from_crs("EPSG:32652", "EPSG:4326", always_xy=True)
    gcps = []
    for r in np.linspace(0, 2000, 6):
        for c in np.linspace(0, 2000, 6):
            lon, lat = to_ll.transform(*(tr * (c, r)))
            gcps.append(GroundControlPoint(row=r, col=c, x=lon, y=lat))
    sea = global_ocean(tr, "EPSG:32652", (2000, 2000))
    sea = sea[1].expand(sea[0])
    rng = np.random.default_rng(7)
    amp = np.sqrt(rng.standard_exponential((2000, 2000))) * np.where(sea, 150.0, 1500.0)
    rr, cc = np.mgrid[:2000, :2000]
    lake = (rr - 375) ** 2 + (cc - 375) ** 2 < 100**2
    amp[lake] = np.sqrt(rng.standard_exponential(int(lake.sum()))) * 150.0
    for r, c in ((375, 375), (1700, 1700)):
        amp[r - 7 : r + 8, c - 1 : c + 2] = 6000.0
    tif = tmp_path / "S1A_IW_GRDH_20231012T090000_vv.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=2000, height=2000, count=1, dtype="uint16") as ds:
        ds.write(np.clip(amp, 1, 65535).astype(np.uint16), 1)
        ds.gcps = (gcps, rasterio.crs.CRS.from_epsg(4326))
    out = tmp_path / "det.geojson"
    for extra, want in (((), [375, 1700]), (("--global-mask",), [1700])):
        res = runner.invoke(app, ["detect", "sar", str(tif), "-o", str(out), *extra])
        assert res.exit_code == 0, res.output
        fc = json.loads(out.read_text())
        assert sorted(round(f["properties"]["row"]) for f in fc["features"]) == want
    assert "global mask" in fc["routewatch"]["water"] and fc["routewatch"]["geolocation"] == "gcps"
