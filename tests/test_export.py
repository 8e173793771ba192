"""Exports: GeoJSON, KML/KMZ with chips and time spans, GeoPackage (read back with pyogrio), CSV."""

from __future__ import annotations

import csv
import json
import re
import zipfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from typer.testing import CliRunner

from routewatch.model import Trip
from routewatch.report import export, gather
from routewatch.report.export import EVIDENCE_FIELDS
from routewatch.report.sample import AS_OF, ROUTE, write_sample
from routewatch.report.sample import watchlist as sample_watchlist
from routewatch.store import Store
from routewatch.store.convert import activity_id

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


def test_gpkg_opens_with_its_layers(data, tmp_path: Path) -> None:
    import pyogrio

    path = export(data, "gpkg", tmp_path / "x.gpkg")
    layers = {name: gtype for name, gtype in pyogrio.list_layers(path)}
    assert set(layers) == {"sites", "detections", "trips", "trips_arrival_unknown", "evidence"}
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
    fc = json.loads(out.read_text())
    assert fc["type"] == "FeatureCollection"
    # the count said is of what the file holds: sightings with a position (the sample's have one each)
    said = int(re.search(r"(\d+) sightings", " ".join(res.output.split())).group(1))
    assert said == sum(1 for f in fc["features"] if f["properties"]["layer"] == "detections") > 0
    bad = CliRunner().invoke(app, ["export", "--format", "dxf", "-o", str(out), "-w", str(tmp_path)])
    assert bad.exit_code != 0 and "unknown format" in bad.output


def _origin_only(data) -> Trip:
    """Add a trip whose departure from Rajin was seen and whose arrival was not."""
    visit = next(v for v in data.visits if v.site == "rajin")
    trip = Trip("trip-origin-only", ROUTE, visit.vessel, visit.id, None, visit.end, None, 0.6, ("ev-x",),
                "origin_only")
    data.trips.append(trip)
    return trip


def test_origin_only_trip_is_a_point_at_its_origin(data, tmp_path: Path) -> None:
    import pyogrio

    trip = _origin_only(data)
    route = data.routes[ROUTE]
    until = trip.depart + timedelta(days=route.max_transit_days)
    doc = json.loads(export(data, "geojson", tmp_path / "x.geojson").read_text())
    feat = next(f for f in doc["features"] if f["properties"]["id"] == trip.id)
    assert feat["geometry"]["type"] == "Point"
    assert tuple(feat["geometry"]["coordinates"]) == pytest.approx(data.sites["rajin"].centroid_lonlat)
    props = feat["properties"]
    assert props["arrival_known"] is False and props["destination"] == "" and props["arrive"] is None
    assert datetime.fromisoformat(props["until"].replace("Z", "+00:00")) == until
    observed = [f for f in doc["features"] if f["properties"]["layer"] == "trips" and f["properties"]["id"] != trip.id]
    assert observed and all(f["geometry"]["type"] == "LineString" and f["properties"]["arrival_known"]
                            for f in observed)

    root = ET.parse(export(data, "kml", tmp_path / "x.kml")).getroot()
    marks = [m for m in root.iter(f"{KML}Placemark") if m.find(f"{KML}TimeSpan") is not None]
    assert all(m.find(f"{KML}TimeSpan").findtext(f"{KML}end") for m in marks)  # nothing open-ended
    point = [m for m in marks if m.find(f"{KML}Point") is not None]
    assert len(point) == 1 and "arrival unknown" in point[0].findtext(f"{KML}description")
    end = point[0].find(f"{KML}TimeSpan").findtext(f"{KML}end")
    assert datetime.fromisoformat(end.replace("Z", "+00:00")) == until

    path = export(data, "gpkg", tmp_path / "x.gpkg")
    assert pyogrio.read_info(path, layer="trips")["features"] == len(data.trips) - 1
    meta, _, _geoms, fields = pyogrio.raw.read(path, layer="trips_arrival_unknown")
    row = dict(zip(meta["fields"], fields, strict=True))
    assert list(row["id"]) == [trip.id] and row["arrival_known"].tolist() == [False]
    assert pyogrio.read_info(path, layer="trips_arrival_unknown")["dtypes"][meta["fields"].tolist().index(
        "arrival_known")] == "bool"


def test_gpkg_writes_empty_layers_with_their_columns(data, tmp_path: Path) -> None:
    import pyogrio

    data.sightings, data.trips, data.evidence = [], [], {}
    path = export(data, "gpkg", tmp_path / "x.gpkg")
    layers = {name for name, _ in pyogrio.list_layers(path)}
    assert layers == {"sites", "detections", "trips", "trips_arrival_unknown", "evidence"}
    for layer in ("detections", "trips", "trips_arrival_unknown"):
        info = pyogrio.read_info(path, layer=layer)
        assert info["features"] == 0 and "id" in list(info["fields"]) and "evidence_ids" in list(info["fields"])
    info = pyogrio.read_info(path, layer="evidence")
    assert info["features"] == 0 and list(info["fields"]) == list(EVIDENCE_FIELDS)


def test_csv_tables_carry_evidence_ids_and_judgement_numbers(data, tmp_path: Path) -> None:
    act = data.activities[ROUTE]
    data.activities[ROUTE] = replace(act, details={**act.details, "p_silence_monte_carlo_se": 0.01})
    folder = export(data, "csv", tmp_path / "csv")

    def rows(name: str) -> list[dict[str, str]]:
        with (folder / f"{name}.csv").open() as fh:
            return list(csv.DictReader(fh))

    looks = {lk.id: lk for lk in data.looks}
    assert all(r["evidence_ids"].split() == list(looks[r["id"]].evidence_ids) for r in rows("looks"))
    visits = {v.id: v for v in data.visits}
    assert all(r["evidence_ids"].split() == list(visits[r["id"]].evidence_ids) for r in rows("visits"))
    (row,) = rows("activities")
    assert row["id"] == activity_id(ROUTE, act.as_of)
    assert float(row["p_silence_if_active"]) == pytest.approx(act.p_silence_if_active)
    assert float(row["p_silence_low"]) < act.p_silence_if_active < float(row["p_silence_high"])
    assert row["evidence_ids"].split() == list(act.evidence_ids)
    # the sample is simulated: every table says so where its record rests on simulated sightings or looks
    assert all(s.simulated for s in data.sightings) and row["simulated"] == "True"
    assert {r["simulated"] for r in rows("visits") if visits[r["id"]].sighting_ids} == {"True"}
    assert rows("trips") and {r["simulated"] for r in rows("trips")} == {"True"}
    look = rows("looks")[0]
    assert float(look["l50_m"]) == looks[look["id"]].detection.l50_m and "note" in look


def test_kml_labels_simulated_detections(data, tmp_path: Path) -> None:
    assert all(s.simulated for s in data.sightings)
    root = ET.parse(export(data, "kml", tmp_path / "x.kml")).getroot()
    folder = next(f for f in root.iter(f"{KML}Folder") if f.findtext(f"{KML}name") == "detections")
    marks = list(folder.iter(f"{KML}Placemark"))
    assert marks and all("simulated" in m.findtext(f"{KML}name") for m in marks)
    assert all("SIMULATED" in m.findtext(f"{KML}description") for m in marks)
    # the trips resting on them say so too, in KML, GeoJSON and GeoPackage as in the CSV tables
    trips = next(f for f in root.iter(f"{KML}Folder") if f.findtext(f"{KML}name") == "trips")
    tmarks = list(trips.iter(f"{KML}Placemark"))
    assert tmarks and all(m.findtext(f"{KML}name").endswith("(simulated)") for m in tmarks)
    doc = json.loads(export(data, "geojson", tmp_path / "x.geojson").read_text())
    assert all(f["properties"]["simulated"] is True for f in doc["features"] if f["properties"]["layer"] == "trips")
    import pyogrio

    rows = 0
    for layer in ("trips", "trips_arrival_unknown"):
        _, _, _, fields = pyogrio.raw.read(export(data, "gpkg", tmp_path / "x.gpkg"), layer=layer)
        names = list(pyogrio.read_info(tmp_path / "x.gpkg", layer=layer)["fields"])
        assert "simulated" in names and fields[names.index("simulated")].dtype == bool
        assert all(fields[names.index("simulated")])
        rows += len(fields[names.index("simulated")])
    assert rows == len(data.trips) > 0


def test_cli_export_hints_analyze_on_a_store_never_analysed(tmp_path: Path) -> None:
    from routewatch.cli import app

    store = Store.open(f"sqlite:///{tmp_path / 'routewatch.sqlite'}")
    store.upsert_watchlist(sample_watchlist())
    store.close()
    res = CliRunner().invoke(app, ["export", "-f", "geojson", "-o", str(tmp_path / "e.geojson"), "-w", str(tmp_path)],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "routewatch analyze" in res.output


def test_cli_export_csv_onto_an_existing_file_is_a_clear_error(tmp_path: Path) -> None:
    from routewatch.cli import app

    store = Store.open(f"sqlite:///{tmp_path / 'routewatch.sqlite'}")
    write_sample(store, tmp_path)
    store.close()
    existing = tmp_path / "existing.csv"
    existing.write_text("keep me")
    res = CliRunner().invoke(app, ["export", "-f", "csv", "-o", str(existing), "-w", str(tmp_path)],
                             env={"COLUMNS": "300"})
    assert res.exit_code == 2 and not isinstance(res.exception, FileExistsError)
    assert "existing.csv" in res.output and "Traceback" not in res.output
    assert existing.read_text() == "keep me"


def test_cli_export_as_of_gives_the_trips_analyze_derives(tmp_path: Path) -> None:
    from routewatch.cli import app
    from routewatch.pipeline import analyze
    from routewatch.watchlist import load_watchlist
    from routewatch.workspace import Workspace

    ws = tmp_path / "demo"
    runner = CliRunner()
    res = runner.invoke(app, ["demo", "-w", str(ws), "--no-imagery"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    store = Store.open(f"sqlite:///{ws / 'routewatch.sqlite'}")
    stored = store.derived_as_of()
    wl = load_watchlist(Workspace.open(ws).watchlist_path)
    early, late = datetime(2024, 1, 10, 23, 59, 59, 999999, tzinfo=UTC), datetime(2024, 3, 20, 23, 59, 59, 999999,
                                                                                   tzinfo=UTC)
    expected = {day: analyze(store, wl, day, persist=False) for day in (early, late)}
    store.close()
    for day, result in expected.items():
        out = tmp_path / f"csv-{day:%Y%m%d}"
        res = runner.invoke(app, ["export", "-f", "csv", "-o", str(out), "--as-of", f"{day:%Y-%m-%d}", "-w", str(ws)])
        assert res.exit_code == 0, res.output
        with (out / "trips.csv").open() as fh:
            assert sorted(r["id"] for r in csv.DictReader(fh)) == sorted(t.id for t in result.trips)
        with (out / "activities.csv").open() as fh:
            (act,) = [r for r in csv.DictReader(fh)]
        analysed = next(iter(result.activities.values()))
        assert act["status"] == str(analysed.status) and act["as_of"].startswith(f"{day:%Y-%m-%d}")
    store = Store.open(f"sqlite:///{ws / 'routewatch.sqlite'}")
    assert store.derived_as_of() == stored  # nothing written
    store.close()


def test_cli_export_derives_for_a_store_never_analysed_or_judged_under_a_declared_schedule(tmp_path: Path) -> None:
    """With a watchlist there is always something to derive from: a store never analysed, or one whose stored
    judgement for the date was made under a declared schedule (not what the ledger says), is derived afresh."""
    from routewatch.cli import app

    ws = tmp_path / "case"
    runner = CliRunner()
    for args in (["init", str(ws), "--example", "rajin"], ["import", "observations", str(ws / "observations.csv"),
                                                             "-w", str(ws)]):
        assert runner.invoke(app, args).exit_code == 0

    def exported(name: str) -> tuple[list[dict], list[dict]]:
        out = tmp_path / name
        res = runner.invoke(app, ["export", "-f", "csv", "-o", str(out), "--as-of", "2024-03-02", "-w", str(ws)])
        assert res.exit_code == 0, res.output
        with (out / "trips.csv").open() as fh, (out / "activities.csv").open() as fa:
            return list(csv.DictReader(fh)), list(csv.DictReader(fa))

    trips, (act,) = exported("never")
    assert len(trips) == 5 and act["status"] == "undetermined"  # the ledger alone, as status says
    res = runner.invoke(app, ["analyze", "--as-of", "2024-03-02", "-c", "near-daily", "-w", str(ws)])
    assert res.exit_code == 0 and "paused" in res.output.lower()
    _, (act,) = exported("declared")
    assert act["status"] == "undetermined" and not act["coverage"].startswith("declared")


def test_a_trip_that_arrived_at_a_port_it_does_not_name_has_a_known_arrival(data, tmp_path: Path) -> None:
    """A reported trip "arrived 12 Sep" on a route with two destination ports: the arrival is known though the port
    is not, as the HTML report says ("Arrived ..."); the exports said arrival_known False."""
    from dataclasses import replace

    route = data.routes[ROUTE]
    data.routes[ROUTE] = replace(route, destination=(*route.destination, "dunai"))
    base = next(t for t in data.trips if t.arrive is not None)
    trip = replace(base, id="trip-reported", destination_visit=None, kind="reported")
    data.trips.append(trip)
    doc = json.loads(export(data, "geojson", tmp_path / "x.geojson").read_text())
    props = next(f["properties"] for f in doc["features"] if f["properties"]["id"] == trip.id)
    assert props["arrival_known"] is True and props["destination"] == "" and props["arrive"]
    out = export(data, "csv", tmp_path / "csv")
    rows = list(csv.DictReader((out / "trips.csv").open()))
    assert next(r for r in rows if r["id"] == trip.id)["arrival_known"] == "True"


def _fused_rows(data) -> list:
    """Three detections as fusion labels them: an AIS ship off the watchlist, a watchlist vessel, a dark one."""
    import polars as pl

    from routewatch.fuse import fused_sightings

    base = next(s for s in data.sightings if s.lon is not None)
    rows = []
    for k, (status, mmsi, vessel) in enumerate((("identified", 273000111, None), ("identified", 273000222, "v1"),
                                               ("dark", None, None))):
        rows.append({"id": f"det-{k}", "time": base.time, "status": status, "mmsi": mmsi,
                     "match_distance_m": 40.0 if mmsi else None, "ais_evidence": None, "probabilities": "",
                     "reasons": None, "evidence_ids": list(base.evidence_ids), "vessel": vessel, "site": base.site,
                     "lon": base.lon, "lat": base.lat, "length_m": 100.0, "width_m": 15.0, "heading_deg": 10.0,
                     "score": 0.9, "identification_confidence": 0.9 if vessel else None,
                     "ais_ship": mmsi if vessel is None else None, "look_id": None, "simulated": False})
    return fused_sightings(pl.DataFrame(rows))


def test_exports_carry_the_ais_mmsi_and_an_evidence_table(data, tmp_path: Path) -> None:
    """An identified detection gives the MMSI AIS matched (a ship off the watchlist was named by nothing else),
    an AIS visit its own, a dark one none; and every evidence id the tables name is in the export's evidence."""
    import pyogrio

    from routewatch.model import Evidence, EvidenceKind, Sighting, SourceKind

    sightings, evidence = _fused_rows(data)
    ais_ev = Evidence(id="ais-1", kind=EvidenceKind.AIS, description="AIS MMSI 273000333 at x",
                      attributes={"mmsi": 273000333, "first": ["feed.nmea:12"]})
    visit = Sighting(id="aissight-1", time=AS_OF - timedelta(days=3), source_kind=SourceKind.AIS,
                     site=sightings[0].site, event="ais_visit", detail="MMSI 273000333; GFW-style level 3",
                     evidence_ids=(ais_ev.id,))
    data.sightings = [*data.sightings, *sightings, visit]
    data.evidence = {**data.evidence, **{e.id: e for e in [*evidence, ais_ev]}}
    want = {sightings[0].id: "273000111", sightings[1].id: "273000222", sightings[2].id: "", visit.id: "273000333"}

    folder = export(data, "csv", tmp_path / "csv")
    with (folder / "sightings.csv").open() as fh:
        got = {r["id"]: r["mmsi"] for r in csv.DictReader(fh)}
    assert {k: got[k] for k in want} == want
    with (folder / "evidence.csv").open() as fh:
        ev_rows = {r["id"]: r for r in csv.DictReader(fh)}
    named = set()
    for table in ("looks", "sightings", "visits", "trips", "activities"):
        with (folder / f"{table}.csv").open() as fh:
            for r in csv.DictReader(fh):
                named.update(r["evidence_ids"].split())
    assert named and named <= set(ev_rows)
    assert json.loads(ev_rows["ais-1"]["attributes"])["first"] == ["feed.nmea:12"]
    assert ev_rows["ais-1"]["kind"] == "ais"

    doc = json.loads(export(data, "geojson", tmp_path / "x.geojson").read_text())
    det = {f["properties"]["id"]: f["properties"]["mmsi"] for f in doc["features"]
           if f["properties"]["layer"] == "detections"}
    assert det[sightings[0].id] == 273000111 and det[sightings[2].id] is None
    ids = {e["id"] for e in doc["evidence"]}
    assert {e for f in doc["features"] for e in str(f["properties"].get("evidence_ids") or "").split(",") if e} <= ids

    path = export(data, "gpkg", tmp_path / "x.gpkg")
    meta, _, _, fields = pyogrio.raw.read(path, layer="detections")
    row = dict(zip(meta["fields"], fields, strict=True))
    by_id = dict(zip(row["id"], row["mmsi"], strict=True))
    assert by_id[sightings[0].id] == "273000111" and by_id[sightings[2].id] == ""
    meta, _, _, fields = pyogrio.raw.read(path, layer="evidence")
    assert set(dict(zip(meta["fields"], fields, strict=True))["id"]) == set(ev_rows)
    root = ET.parse(export(data, "kml", tmp_path / "x.kml")).getroot()
    marks = {m.find(f"{KML}ExtendedData/{KML}Data[@name='mmsi']").findtext(f"{KML}value")
             for m in root.iter(f"{KML}Placemark") if m.find(f"{KML}ExtendedData/{KML}Data[@name='mmsi']") is not None}
    assert {"273000111", "273000222", ""} <= marks
