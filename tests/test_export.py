"""Exports: GeoJSON, KML/KMZ with chips and time spans, GeoPackage (read back with pyogrio), CSV."""

from __future__ import annotations

import csv
import json
import zipfile
from datetime import datetime
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from typer.testing import CliRunner

from routewatch.report import export, gather
from routewatch.report.sample import AS_OF, write_sample
from routewatch.store import Store

KML = "{http://www.opengis.net/kml/2.2}"


@pytest.fixture
def data(tmp_path: Path):
    store = Store.open(f"sqlite:///{tmp_path / 'routewatch.sqlite'}")
    write_sample(store, tmp_path)
    yield gather(store, AS_OF, workspace_root=tmp_path)
    store.close()


def test_geojson_layers_and_trip_lines(data, tmp_path: Path) -> None:
    doc = json.loads(export(data, "geojson", tmp_path / "x.geojson").read_text())
    by_layer: dict[str, list] = {}
    for f in doc["features"]:
        by_layer.setdefault(f["properties"]["layer"], []).append(f)
    assert len(by_layer["sites"]) == len(data.sites)
    assert len(by_layer["detections"]) == sum(1 for s in data.sightings if s.lon is not None)
    assert len(by_layer["trips"]) == len(data.trips)
    visits = {v.id: v for v in data.visits}
    for f in by_layer["trips"]:
        trip = next(t for t in data.trips if t.id == f["properties"]["id"])
        start, end = f["geometry"]["coordinates"]
        assert tuple(start) == pytest.approx(data.sites[visits[trip.origin_visit].site].centroid_lonlat)
        assert tuple(end) == pytest.approx(data.sites[visits[trip.destination_visit].site].centroid_lonlat)
        assert f["properties"]["evidence_ids"].split(",") == list(trip.evidence_ids)


def test_gpkg_opens_with_three_layers(data, tmp_path: Path) -> None:
    import pyogrio

    path = export(data, "gpkg", tmp_path / "x.gpkg")
    layers = {name: gtype for name, gtype in pyogrio.list_layers(path)}
    assert set(layers) == {"sites", "detections", "trips"}
    info = pyogrio.read_info(path, layer="trips")
    assert info["features"] == len(data.trips) and "EPSG:4326" in info["crs"]
    meta, _, _geoms, fields = pyogrio.raw.read(path, layer="detections")
    depart = dict(zip(meta["fields"], fields, strict=True))
    assert sorted(depart["id"]) == sorted(s.id for s in data.sightings if s.lon is not None)
    assert not list(tmp_path.glob("*.part*"))


def test_kml_time_spans_and_chips_in_kmz(data, tmp_path: Path) -> None:
    path = export(data, "kml", tmp_path / "x.kmz")
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        root = ET.fromstring(zf.read("doc.kml"))
    chips = []
    for m in root.iter(f"{KML}Placemark"):
        desc = m.findtext(f"{KML}description") or ""
        chips += [src for src in desc.split('src="')[1:]]
    begins = sorted(datetime.fromisoformat(b.replace("Z", "+00:00")) for b in
                    [s.findtext(f"{KML}begin") for s in root.iter(f"{KML}TimeSpan")])
    assert begins == sorted(t.depart for t in data.trips)
    referenced = {c.split('"')[0] for c in chips}
    assert referenced and referenced <= names  # every chip in a balloon is inside the KMZ


def test_kml_beside_chip_folder(data, tmp_path: Path) -> None:
    path = export(data, "kml", tmp_path / "out" / "case.kml")
    root = ET.parse(path).getroot()
    assert root.tag == f"{KML}kml"
    chips = list((tmp_path / "out" / "case_chips").glob("*.png"))
    n_chips = sum(1 for e in data.evidence.values() if str(e.kind) == "chip")
    assert len(chips) == n_chips


def test_csv_tables(data, tmp_path: Path) -> None:
    folder = export(data, "csv", tmp_path / "csv")
    with (folder / "trips.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["id"] for r in rows) == sorted(t.id for t in data.trips)
    with (folder / "looks.csv").open() as fh:
        looks = list(csv.DictReader(fh))
    assert len(looks) == len(data.looks)
    assert all(r["time"].endswith("Z") for r in looks)


def test_unknown_format_is_refused(data, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown export format"):
        export(data, "shp", tmp_path / "x.shp")


def test_cli_export(tmp_path: Path) -> None:
    from routewatch.cli import app

    store = Store.open(f"sqlite:///{tmp_path / 'routewatch.sqlite'}")
    write_sample(store, tmp_path)
    store.close()
    out = tmp_path / "e.geojson"
    res = CliRunner().invoke(app, ["export", "--format", "geojson", "-o", str(out), "-w", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["type"] == "FeatureCollection"
    bad = CliRunner().invoke(app, ["export", "--format", "dxf", "-o", str(out), "-w", str(tmp_path)])
    assert bad.exit_code != 0 and "unknown format" in bad.output
