"""Fusion on a simulated scene with known AIS: identified ships, dark ships, and who the dark ones probably are."""

from __future__ import annotations

import json
import math
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from shapely.geometry import box
from typer.testing import CliRunner

from routewatch.analysis.port_visits import haversine_m
from routewatch.cli import app
from routewatch.fuse import NO_AIS, FuseConfig, FusionInputs, fuse_detections, fused_sightings
from routewatch.fuse.identify import UNKNOWN, LastSeen, identify_dark
from routewatch.fuse.io import assign_sites, detections_from_sightings, read_detections_geojson, write_result
from routewatch.fuse.match import ais_coverage
from routewatch.model import Route, Sighting, Site, SiteKind, SourceKind, Vessel, stable_id
from routewatch.sources.ais.schema import conform
from routewatch.store import Store
from routewatch.workspace import Workspace

T = datetime(2023, 10, 21, 1, 52, tzinfo=UTC)
VESSELS = {
    "angara": Vessel("angara", "ANGARA", imo="9179842", mmsi="273210440", length_m=120.0, beam_m=18.0),
    "maia1": Vessel("maia1", "MAIA-1", length_m=134.0, beam_m=19.0),
    "lady_r": Vessel("lady_r", "LADY R", length_m=120.0, beam_m=21.0),
}
ROUTES = {"rajin_dunai": Route("rajin_dunai", "Rajin to Dunai", ("rajin",), ("dunai",))}
SITES = {"rajin": Site("rajin", "Rajin", SiteKind.PORT, box(130.265, 42.215, 130.31, 42.25))}


def simulated_scene(seed: int = 3):
    """Five AIS ships sailing around the image time; the image sees four of them plus two ships without AIS."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(5):
        mmsi = 440000000 + k
        lon0, lat0 = 130.20 + 0.03 * k, 42.10 + 0.02 * k
        sog, cog = 8.0 + k, 30.0 * k
        for m in range(-30, 31, 3):  # a message every 3 min, and one line per message
            d = sog * 1852 / 60 * m
            lat = lat0 + d * math.cos(math.radians(cog)) / 111320
            lon = lon0 + d * math.sin(math.radians(cog)) / (111320 * math.cos(math.radians(lat0)))
            rows.append({"mmsi": mmsi, "timestamp": T + timedelta(minutes=m, seconds=40), "lon": lon, "lat": lat,
                         "sog_kn": sog, "cog_deg": cog, "heading_deg": cog, "source": "sim", "line": len(rows) + 1})
    positions = conform(pl.DataFrame(rows))
    at_t = positions.filter(pl.col("timestamp") < T).sort("timestamp").group_by("mmsi").agg(pl.all().last())
    det = []
    for r in at_t.sort("mmsi").head(4).iter_rows(named=True):
        # true position at T is 140 s after the last message before it; add 60 m of image georeference error
        d = r["sog_kn"] * 1852 / 3600 * 140
        lat = r["lat"] + d * math.cos(math.radians(r["cog_deg"])) / 111320 + rng.normal(0, 60) / 111320
        lon = r["lon"] + d * math.sin(math.radians(r["cog_deg"])) / (111320 * 0.74) + rng.normal(0, 60) / 82000
        det.append({"id": f"det-{r['mmsi']}", "lon": lon, "lat": lat, "length_m": 90.0 + 5 * (r["mmsi"] % 10),
                    "width_m": 15.0, "heading_deg": (r["cog_deg"] + 180) % 360, "site": None, "truth": r["mmsi"]})
    det.append({"id": "det-dark-big", "lon": 130.29, "lat": 42.23, "length_m": 122.0, "width_m": 18.0,
                "heading_deg": 90.0, "site": "rajin", "truth": None})
    det.append({"id": "det-dark-small", "lon": 130.28, "lat": 42.22, "length_m": 35.0, "width_m": 8.0,
                "heading_deg": 10.0, "site": "rajin", "truth": None})
    detections = pl.DataFrame(det).with_columns(pl.lit(T).alias("time"))
    return positions, detections


def test_simulated_scene_identified_and_dark():
    positions, det = simulated_scene()
    lengths = {440000000 + k: 90.0 + 5 * k for k in range(5)}
    inputs = FusionInputs(VESSELS, ROUTES, {273210440: "angara"}, lengths)
    res = fuse_detections(det.drop("truth"), positions, inputs)
    got = dict(zip(res["id"], res["mmsi"], strict=True))
    for r in det.iter_rows(named=True):
        assert got[r["id"]] == r["truth"], r["id"]
    ident = res.filter(pl.col("status") == "identified")
    assert ident.height == 4 and (ident["match_distance_m"] < 400).all()
    small = json.loads(res.filter(pl.col("id") == "det-dark-small")["probabilities"][0])
    assert max(small, key=small.get) == UNKNOWN
    big = res.filter(pl.col("id") == "det-dark-big").row(0, named=True)
    probs = json.loads(big["probabilities"])
    assert abs(sum(probs.values()) - 1) < 1e-3
    assert probs["angara"] > probs["lady_r"] > probs["maia1"]  # beam 18 fits ANGARA better than LADY R's 21
    sightings, evidence = fused_sightings(res)
    assert len(evidence) == 6 and evidence[0].attributes["status"] in ("identified", "dark")
    assert len({s.id for s in sightings}) == 6 and all(s.id.startswith("fused-") for s in sightings)
    assert {s.vessel for s in sightings} <= {None, "angara"}
    assert fused_sightings(res)[0][0].id == sightings[0].id  # deterministic
    # each identified detection knows its AIS ship; one not on the watchlist says so first in its detail, which
    # the analysis keys its visits by (an AIS ship is never the unidentified fleet ship)
    assert dict(zip(ident["id"], ident["ais_ship"], strict=True)) == dict(zip(ident["id"], ident["mmsi"], strict=True))
    assert res.filter(pl.col("status") != "identified")["ais_ship"].is_null().all()
    from routewatch.fuse.io import fused_id

    mmsi_of = {fused_id(k): m for k, m in got.items()}
    others = [s for s in sightings if s.detail.startswith("identified") and s.vessel is None]
    assert len(others) == 4 and all(s.detail.startswith(f"identified; MMSI {mmsi_of[s.id]};") for s in others)


def test_an_ais_match_that_the_size_contradicts_is_no_match():
    """The nearest AIS ship is at the hull's position, but a 400 m hull at a 95 m watchlist ship's position is
    likelier a ship without AIS: "no match" is an alternative inside the assignment, so the hull is dark and scored
    against the watchlist (it had been identified as the AIS ship at match confidence 0.0003, and so never scored:
    a dark tanker beside a tug was hidden), and the reasons name the AIS ship it is not."""
    positions, det = simulated_scene()
    lengths = {440000000 + k: 90.0 + 5 * k for k in range(5)}
    inputs = FusionInputs(VESSELS, ROUTES, {440000001: "angara"}, lengths)
    big = det.drop("truth").with_columns(pl.when(pl.col("id") == "det-440000001").then(400.0)
                                         .otherwise(pl.col("length_m")).alias("length_m"))
    res = {r["id"]: r for r in fuse_detections(big, positions, inputs).iter_rows(named=True)}
    odd = res["det-440000001"]
    assert odd["status"] == "dark" and odd["mmsi"] is None and odd["vessel"] is None and odd["ais_ship"] is None
    why = json.loads(odd["reasons"])
    assert why["nearest AIS ship"].startswith("AIS MMSI 440000001 ") and "weaker explanation" in why["nearest AIS ship"]
    assert max(json.loads(odd["probabilities"]).items(), key=lambda kv: kv[1])[0] == UNKNOWN
    fine = fuse_detections(det.drop("truth"), positions, inputs).filter(pl.col("id") == "det-440000001").row(
        0, named=True)
    assert fine["vessel"] == "angara" and "disagree" not in fine["reasons"]
    assert "length 95 m measured, 95 m by AIS" in fine["reasons"]
    # three ships moored 40 m apart, each detection beside its own: the crowd lowers the match confidence (the
    # neighbours are plausible too), not the match itself; the watchlist ship is still named
    berth = pl.DataFrame([{"mmsi": 440000010 + k, "timestamp": T, "lon": 130.29 + k * 40 / 82000, "lat": 42.23,
                           "sog_kn": 0.0, "cog_deg": 0.0, "heading_deg": 90.0, "source": "sim", "line": k + 1}
                          for k in range(3)])
    moored = det.clear().drop("truth").vstack(pl.DataFrame(
        [{"id": f"m{k}", "lon": 130.29 + (k * 40 + 5) / 82000, "lat": 42.23, "length_m": 120.0, "width_m": 18.0,
          "heading_deg": 90.0, "site": "rajin", "time": T} for k in range(3)], schema=det.drop("truth").schema))
    crowd = FusionInputs(VESSELS, ROUTES, {440000011: "angara"}, {440000010 + k: 120.0 for k in range(3)})
    middle = fuse_detections(moored, conform(berth), crowd).filter(pl.col("id") == "m1").row(0, named=True)
    assert middle["mmsi"] == 440000011 and middle["vessel"] == "angara"
    assert middle["identification_confidence"] <= 0.5  # shared with the neighbours, said in the confidence


def test_dark_identification_rules():
    base = dict(length_m=120.0, width_m=18.0, lon=130.29, lat=42.23, time=T, site="rajin", vessels=VESSELS)
    far = {"angara": LastSeen(T - timedelta(hours=2), 133.07, 42.74)}  # Vostochny, 200+ km away 2 h ago
    alone = identify_dark(**base, routes=ROUTES)
    r = identify_dark(**base, routes=ROUTES, last_seen=far)
    # unreachable from its last AIS position: unlikely (AIS positions can be false), not impossible, and not named
    assert 0 < r.probabilities["angara"] < 0.05 * alone.probabilities["angara"] and r.best != "angara"
    assert "unreachable" in r.reasons["angara"] and "AIS positions can be false" in r.reasons["angara"]
    r2 = identify_dark(**base, routes=ROUTES, seen_elsewhere={"angara", "lady_r"})
    assert 0 < r2.probabilities["angara"] < 0.05 and 0 < r2.probabilities["lady_r"] < 0.05
    r2b = identify_dark(**base, routes=ROUTES, matched_elsewhere={"angara"})  # matched to a hull of this image
    assert r2b.probabilities["angara"] == 0.0 and "another hull" in r2b.reasons["angara"]
    r3 = identify_dark(**{**base, "length_m": None, "width_m": None}, routes={})
    assert r3.best is None  # nothing to compare: no silent guess
    assert abs(sum(r3.probabilities.values()) - 1) < 1e-9
    # a one-vessel route, a detection without a size at its port: 0.5 on the place alone is a tie, not a name
    one = {"angara": VESSELS["angara"]}
    r4 = identify_dark(**{**base, "length_m": None, "width_m": None, "vessels": one}, routes=ROUTES)
    assert r4.probabilities["angara"] == pytest.approx(0.5) and r4.best is None


def test_geojson_in_and_out(tmp_path):
    src = tmp_path / "det.geojson"
    src.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [130.29, 42.23]},
         "properties": {"row": 10, "col": 20, "length_m": 122, "width_m": 18, "heading_deg": 90, "score": 0.9}}]}))
    det = read_detections_geojson(src, T, site="rajin")
    assert det.height == 1 and det["time"][0] == T
    res = fuse_detections(det, conform(pl.DataFrame({"mmsi": [], "timestamp": [], "lon": [], "lat": []})),
                          FusionInputs(VESSELS, ROUTES, {}, {}))
    out = write_result(res, tmp_path / "fused.geojson")
    feat = json.loads(out.read_text())["features"][0]
    assert feat["properties"]["status"] == "no-ais" and UNKNOWN in feat["properties"]["probabilities"]  # no AIS at all
    write_result(res, tmp_path / "fused.csv")
    assert pl.read_csv(tmp_path / "fused.csv").height == 1


# ---- re-runs, bad input, coverage, output targets, sites -----------------------------------------------------------

runner = CliRunner()
WATCHLIST = """
[sites.rajin]
name = "Rajin"
kind = "port"
bbox = [130.265, 42.215, 130.31, 42.25]
sources = ["test fixture"]

[sites.dunai]
name = "Dunai"
kind = "port"
bbox = [132.30, 42.85, 132.40, 42.90]
sources = ["test fixture"]

[routes.rajin_dunai]
name = "Rajin to Dunai"
origin = ["rajin"]
destination = ["dunai"]
mode = "sea"

[vessels.angara]
name = "ANGARA"
mmsi = "273210440"
length_m = 120
beam_m = 18
sources = ["test fixture"]

[vessels.lady_r]
name = "LADY R"
length_m = 120
beam_m = 21
sources = ["test fixture"]
"""


def _workspace(root: Path) -> Workspace:
    res = runner.invoke(app, ["init", str(root)])
    assert res.exit_code == 0, res.output
    ws = Workspace.open(root)
    ws.watchlist_path.write_text(WATCHLIST)
    return ws


def _fuse(*args: str, code: int = 0) -> str:
    res = runner.invoke(app, ["fuse", *args])
    assert res.exit_code == code, res.output
    return " ".join(res.output.split())


def _feature(lon, lat, **props):
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]}, "properties": props}


def test_rerun_from_the_store_fuses_the_detections_not_its_own_output(tmp_path):
    ws = _workspace(tmp_path / "ws")
    store = Store.open(ws.db_url)
    store.add_sightings([
        Sighting(id=f"img-{i}", time=T, source_kind=SourceKind.IMAGE, site="rajin", event="detection",
                 lon=130.28 + 0.01 * i, lat=42.23, length_m=120.0, width_m=18.0, heading_deg=90.0, score=0.9)
        for i in range(3)])
    counts = []
    for _ in range(3):
        _fuse("-w", str(ws.root), "--out", str(tmp_path / "fused.geojson"))
        counts.append(len(Store.open(ws.db_url).sightings()))
    assert counts == [6, 6, 6]  # three detections, three fused sightings, and nothing more on each re-run
    fused = [s for s in Store.open(ws.db_url).sightings() if s.id.startswith("fused-")]
    assert sorted(s.id for s in fused) == sorted(stable_id("fused", f"img-{i}") for i in range(3))
    det = detections_from_sightings(Store.open(ws.db_url).sightings())
    assert sorted(det["id"]) == ["img-0", "img-1", "img-2"]
    # a window around the image time finds them (the times had gone into the site and vessel filters)
    day = T.date().isoformat()
    out = _fuse("-w", str(ws.root), "--since", day, "--until", (T + timedelta(days=1)).date().isoformat(),
                "--out", str(tmp_path / "window.geojson"))
    assert "No detections to fuse" not in out
    assert len(json.loads((tmp_path / "window.geojson").read_text())["features"]) == 3
    out = _fuse("-w", str(ws.root), "--since", (T + timedelta(days=1)).date().isoformat(),
                "--out", str(tmp_path / "later.geojson"))
    assert "No detections to fuse" in out


def test_detections_from_a_scene_with_a_date_alone_are_not_matched_to_ais_at_midnight(tmp_path):
    """A scene whose files give only a date is stored at 00:00 UTC: AIS at midnight says nothing of its ships (the
    image may be from 10:30), so fusion leaves its detections out and says why, instead of calling them no-ais."""
    from shapely.geometry import box as _box

    from routewatch.model import SENSOR_DETECTION, Look, Scene

    ws = _workspace(tmp_path / "ws")
    store = Store.open(ws.db_url)
    day = T.replace(hour=0, minute=0, second=0)
    # a scene stored before the mark existed has none: at exactly 00:00 UTC it is taken as a date alone too
    for sid, when, attrs in (("scene-dated", day, {"time_precision": "day"}), ("scene-timed", T, {}),
                             ("scene-legacy", day + timedelta(days=1), {})):
        store.add_scenes([Scene(sid, "sentinel-2", when, _box(130.2, 42.1, 130.4, 42.3), 10.0, attributes=attrs)])
        store.add_looks([Look(f"look-{sid}", "rajin", when, "sentinel-2", 1.0, SENSOR_DETECTION["sentinel-2"],
                              SourceKind.IMAGE, scene_id=sid)])
        store.add_sightings([Sighting(id=f"img-{sid}-{i}", time=when, source_kind=SourceKind.IMAGE, site="rajin",
                                      event="detection", lon=130.28 + 0.01 * i, lat=42.23, length_m=120.0,
                                      width_m=18.0, heading_deg=90.0, score=0.9, look_id=f"look-{sid}")
                             for i in range(2)])
    out = _fuse("-w", str(ws.root), "--out", str(tmp_path / "fused.geojson"))
    assert "4 detections left out: their scenes give a date but no time of day" in out
    fused = {s.id for s in Store.open(ws.db_url).sightings() if s.id.startswith("fused-")}
    assert fused == {stable_id("fused", f"img-scene-timed-{i}") for i in range(2)}
    # an export writes their time as 00:00 and marks them date_only; fused from the export, they are left out too
    # (not matched to AIS at midnight), and fused at the time of day that --time gives
    export = tmp_path / "export.geojson"
    res = runner.invoke(app, ["export", "--format", "geojson", "-o", str(export), "-w", str(ws.root)])
    assert res.exit_code == 0, res.output
    dets = {f["properties"]["id"]: f["properties"] for f in json.loads(export.read_text())["features"]
            if f["properties"]["layer"] == "detections"}
    assert {k for k, p in dets.items() if p["date_only"]} == {f"img-scene-{s}-{i}" for s in ("dated", "legacy")
                                                               for i in range(2)}
    # the CSV sightings table says so after the older columns (readers by position keep theirs), KML writes the date
    for fmt, target in (("csv", tmp_path / "tables"), ("kml", tmp_path / "e.kml")):
        res = runner.invoke(app, ["export", "--format", fmt, "-o", str(target), "-w", str(ws.root)])
        assert res.exit_code == 0, res.output
    table = pl.read_csv(tmp_path / "tables" / "sightings.csv")
    assert table.columns[-2:] == ["date_only", "mmsi"]  # new columns go last
    assert set(table.filter(pl.col("date_only"))["id"]) == {k for k, p in dets.items() if p["date_only"]}
    assert table.height > 4  # the timed ones (as their fused copies) are there, not date-only
    kml = (tmp_path / "e.kml").read_text()
    assert "<TimeStamp><when>2023-10-21</when></TimeStamp>" in kml and "<when>2023-10-21T01:52:00Z</when>" in kml
    out = _fuse("--detections", str(export), "-w", str(ws.root), "--out", str(tmp_path / "again.geojson"))
    assert "4 detections left out: their time is a date alone" in out
    again = json.loads((tmp_path / "again.geojson").read_text())["features"]
    assert len(again) == 2  # the two timed detections (as the copies the export lists)
    # one --time cannot date scenes of two days: said by feature (the time-of-day case is in the test below)
    out = _fuse("--detections", str(export), "--time", day.replace(hour=10).isoformat(), "-w", str(ws.root),
                "--out", str(tmp_path / "timed.geojson"), code=2)
    assert "its date 2023-10-22 is not that of --time" in out


def test_detections_without_georeference_or_outside_wgs84_are_refused(tmp_path):
    pixels = tmp_path / "chip.geojson"  # as `detect sar chip.jpg --pixel-size 10` writes it
    pixels.write_text(json.dumps({"type": "FeatureCollection",
                                  "routewatch": {"image": "chip.jpg", "pixel_size_m": 10, "georeferenced": False},
                                  "features": [_feature(200.25, 92.53, id=0, length_m=120, width_m=18)]}))
    with pytest.raises(ValueError, match="georeference") as err:
        read_detections_geojson(pixels, T)
    assert "chip.geojson" in str(err.value) and "lon/lat" in str(err.value)
    out = _fuse("--detections", str(pixels), "--time", T.isoformat(), "-w", str(_workspace(tmp_path / "ws").root),
                "--out", str(tmp_path / "never.geojson"), code=2)
    assert "chip.geojson" in out and "georeferenced image" in out and not (tmp_path / "never.geojson").exists()
    for lon, lat in ((200.25, 42.0), (130.0, 92.53), (float("nan"), 42.0)):
        bad = tmp_path / "bad.geojson"
        bad.write_text(json.dumps({"type": "FeatureCollection", "features": [
            _feature(130.29, 42.23, length_m=120), _feature(lon, lat, length_m=120)]}))
        with pytest.raises(ValueError, match=r"bad\.geojson: feature 1: coordinates"):
            read_detections_geojson(bad, T)


def test_unknown_beam_gets_the_flat_width_density_of_unknown_vessel():
    v150 = {"v150": Vessel("v150", "NO BEAM", length_m=150.0)}
    base = dict(length_m=240.0, lon=130.29, lat=42.23, time=T, site=None, vessels=v150)
    wide = identify_dark(**base, width_m=60.0)
    no_width = identify_dark(**base, width_m=None)
    assert wide.best is None and wide.probabilities["v150"] < 0.5  # a 240 x 60 m ship is not a 150 m vessel
    for k, p in no_width.probabilities.items():
        assert wide.probabilities[k] == pytest.approx(p, rel=1e-9)
    assert "beam unknown" in wide.reasons["v150"]
    # a vessel with a beam still has its width compared: ANGARA (beam 18) beats LADY R (beam 21) on an 18 m ship
    r = identify_dark(length_m=120.0, width_m=18.0, lon=130.29, lat=42.23, time=T, site="rajin", vessels=VESSELS,
                      routes=ROUTES)
    assert r.probabilities["angara"] > r.probabilities["lady_r"] > r.probabilities["maia1"]
    assert "beam 18 m" in r.reasons["angara"]


def test_no_ais_coverage_is_not_dark():
    positions, det = simulated_scene()
    far = pl.DataFrame({"id": ["det-far"], "lon": [133.5], "lat": [41.0], "length_m": [122.0], "width_m": [18.0],
                        "heading_deg": [0.0], "site": [None], "truth": [None], "time": [T]},
                       schema_overrides={"site": pl.String, "truth": pl.Int64})
    det = pl.concat([det, far], how="vertical_relaxed").drop("truth")
    lengths = {440000000 + k: 90.0 + 5 * k for k in range(5)}
    inputs = FusionInputs(VESSELS, ROUTES, {273210440: "angara"}, lengths)
    res = fuse_detections(det, positions, inputs)
    status = dict(zip(res["id"], res["status"], strict=True))
    # AIS ships sail around the two unmatched ships in the port: they are dark; nothing within 75 km of det-far
    assert status["det-dark-big"] == status["det-dark-small"] == "dark"
    assert status["det-far"] == NO_AIS
    assert sum(s == "identified" for s in status.values()) == 4
    # no AIS at all: nothing is dark, and the watchlist scores are still given
    empty = fuse_detections(det, positions.clear(), inputs)
    assert set(empty["status"]) == {NO_AIS}
    big = empty.filter(pl.col("id") == "det-dark-big").row(0, named=True)
    probs = json.loads(big["probabilities"])
    assert probs["angara"] > probs["lady_r"] > probs["maia1"] and abs(sum(probs.values()) - 1) < 1e-3
    assert "route rajin_dunai uses rajin" in json.loads(big["reasons"])["angara"]
    # AIS only outside the +-30 min window around the image: no coverage either
    late = positions.with_columns(pl.col("timestamp") + timedelta(hours=2))
    assert set(fuse_detections(det, late, inputs)["status"]) == {NO_AIS}
    sightings, evidence = fused_sightings(empty)
    assert {e.attributes["status"] for e in evidence} == {NO_AIS} and all(s.detail.startswith(NO_AIS) for s in sightings)


def test_ais_coverage_agrees_with_great_circle_distances():
    rng = np.random.default_rng(7)
    n = 20_000
    wrap = lambda lon: (lon + 180.0) % 360.0 - 180.0  # noqa: E731 -- across the antimeridian
    pos = pl.DataFrame({"lon": wrap(rng.uniform(170.0, 190.0, n)), "lat": rng.uniform(-5.0, 5.0, n)})
    det = pl.DataFrame({"lon": wrap(rng.uniform(165.0, 195.0, 300)), "lat": rng.uniform(-7.0, 7.0, 300)})
    radius = 20_000.0
    got = ais_coverage(det, pos, radius)
    d = haversine_m(det["lon"].to_numpy()[:, None], det["lat"].to_numpy()[:, None],
                    pos["lon"].to_numpy()[None, :], pos["lat"].to_numpy()[None, :]).min(axis=1)
    near_edge = np.abs(d - radius) < 1.0
    assert (got[~near_edge] == (d <= radius)[~near_edge]).all()
    assert got.any() and not got.all()


def test_write_result_to_a_pipe_writes_into_it_and_keeps_it(tmp_path):
    det = read_detections_geojson(_write_det(tmp_path / "det.geojson"), T, site="rajin")
    res = fuse_detections(det, conform(pl.DataFrame({"mmsi": [], "timestamp": [], "lon": [], "lat": []})),
                          FusionInputs(VESSELS, ROUTES, {}, {}))
    for name in ("out.geojson", "out.csv"):
        fifo = tmp_path / name
        os.mkfifo(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so that opening for writing does not block
        try:
            write_result(res, fifo)
            data = os.read(reader, 1 << 16).decode()
        finally:
            os.close(reader)
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # never renamed over
        assert not (tmp_path / (name + ".tmp")).exists()
        assert "det-1" in data and NO_AIS in data
    link = tmp_path / "link.csv"  # a link to a regular file stays a link; the file behind it gets the result
    (tmp_path / "real.csv").write_text("old")
    link.symlink_to(tmp_path / "real.csv")
    write_result(res, link)
    assert link.is_symlink() and pl.read_csv(tmp_path / "real.csv")["id"].to_list() == ["det-1"]


def _write_det(path: Path, **props) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _feature(130.29, 42.23, id="det-1", length_m=120, width_m=18, heading_deg=90, score=0.9, **props)]}))
    return path


def test_file_detections_get_the_site_they_lie_in(tmp_path):
    ws = _workspace(tmp_path / "ws")
    src = tmp_path / "det.geojson"
    src.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _feature(130.29, 42.23, id="in-port", length_m=120, width_m=18, heading_deg=90, score=0.9),
        _feature(130.313, 42.23, id="at-quay", length_m=120, width_m=18, heading_deg=90, score=0.9),  # 250 m out
        _feature(130.60, 42.00, id="at-sea", length_m=120, width_m=18, heading_deg=90, score=0.9),
        # a site named by the file is a label to check: Dunai is 150 km from this point, "nowhere" not watched
        _feature(130.29, 42.23, id="given", site="dunai", length_m=120, width_m=18, heading_deg=90, score=0.9),
        _feature(130.60, 42.00, id="unknown-site", site="nowhere", length_m=120, width_m=18, heading_deg=90),
        _feature(130.3105, 42.23, id="near", site="rajin", length_m=120, width_m=18, heading_deg=90),  # 40 m out
    ]}))
    out_file = tmp_path / "fused.geojson"
    out = _fuse("--detections", str(src), "--time", T.isoformat(), "-w", str(ws.root), "--out", str(out_file))
    assert "6 of 6 detections had no AIS coverage" in out
    assert "2 detections named a site that is not a watched site within 1 km of their point" in out
    feats = {f["properties"]["id"]: f["properties"] for f in json.loads(out_file.read_text())["features"]}
    assert {k: p["site"] for k, p in feats.items()} == {"in-port": "rajin", "at-quay": "rajin", "at-sea": None,
                                                         "given": "rajin", "unknown-site": None, "near": "rajin"}
    assert "route rajin_dunai uses rajin" in feats["in-port"]["reasons"]  # the x3 route prior applies
    at_sea = json.loads(feats["at-sea"]["reasons"])["angara"]  # 30 km out, on the way to Dunai: not at the site
    assert "uses" not in at_sea and "between rajin and dunai" in at_sea
    sites = {s.id: s.site for s in Store.open(ws.db_url).sightings()}
    assert sites[stable_id("fused", "in-port")] == "rajin"
    moved: list[str] = []
    direct = assign_sites(read_detections_geojson(src, T), SITES, corrected=moved)
    assert direct["site"].to_list() == ["rajin", "rajin", None, "rajin", None, "rajin"]
    assert moved == ["given", "unknown-site"]


def test_numbered_detections_of_two_images_keep_apart(tmp_path):
    """`detect` numbers the features of each file 0, 1, ...: fused from two images, they must not share ids
    (one image's fused sightings would overwrite the other's); named ids are kept as given."""
    from routewatch.fuse.io import read_detections_geojson

    def write(name: str, when: str, lon: float, ids: list) -> Path:
        p = tmp_path / name
        p.write_text(json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon + k * 0.01, 42.2]},
             "properties": {"id": i, "time": when, "length_m": 100}} for k, i in enumerate(ids)]}))
        return p

    a = read_detections_geojson(write("a.geojson", "2024-01-01T01:00:00Z", 130.3, [0, 1]))
    b = read_detections_geojson(write("b.geojson", "2024-01-02T01:00:00Z", 130.3, [0, "1"]))
    again = read_detections_geojson(write("a-copy.geojson", "2024-01-01T01:00:00Z", 130.3, [0, 1]))
    named = read_detections_geojson(write("c.geojson", "2024-01-03T01:00:00Z", 130.3, ["s1-ship-7"]))
    assert len(set(a["id"]) | set(b["id"])) == 4 and a["id"].to_list() == again["id"].to_list()
    assert named["id"].to_list() == ["s1-ship-7"]


def test_ais_is_interpolated_the_short_way_across_the_antimeridian():
    from routewatch.fuse.match import interpolate_ais

    rows = [{"mmsi": 1, "timestamp": T, "lon": 179.99, "lat": 0.0, "sog_kn": 10.0, "cog_deg": 90.0,
             "heading_deg": 90.0, "source": "x", "line": 1},
            {"mmsi": 1, "timestamp": T + timedelta(minutes=10), "lon": -179.99, "lat": 0.0, "sog_kn": 10.0,
             "cog_deg": 90.0, "heading_deg": 90.0, "source": "x", "line": 2},
            {"mmsi": 2, "timestamp": T, "lon": 179.999, "lat": 0.0, "sog_kn": 10.0, "cog_deg": 90.0,
             "heading_deg": 90.0, "source": "x", "line": 3}]
    got = {r["mmsi"]: r for r in interpolate_ais(conform(pl.DataFrame(rows)), T + timedelta(minutes=5))
           .iter_rows(named=True)}
    assert abs(got[1]["lon"]) == pytest.approx(180.0, abs=1e-6) and got[1]["method"] == "interpolated"
    # dead-reckoned 5 min east at 10 kn (1.5 km) from 179.999 E: past 180, written as west longitude
    assert -180 < got[2]["lon"] < -179.98 and got[2]["method"] == "extrapolated"
    # a message at the image time is taken as it is, also when no later one follows
    at = {r["mmsi"]: r for r in interpolate_ais(conform(pl.DataFrame(rows)), T).iter_rows(named=True)}
    assert at[1]["method"] == at[2]["method"] == "exact" and at[2]["lon"] == pytest.approx(179.999)
    assert at[1]["dt_s"] == 0


def test_a_vessel_with_two_mmsis_is_last_seen_at_the_later_of_them():
    from routewatch.fuse import _last_seen

    rows = [{"mmsi": 111, "timestamp": T - timedelta(days=3), "lon": 130.0, "lat": 42.0, "source": "x", "line": 1},
            {"mmsi": 222, "timestamp": T - timedelta(hours=1), "lon": 140.0, "lat": 42.0, "source": "x", "line": 2}]
    pos = conform(pl.DataFrame(rows))
    for mapping in ({111: "v", 222: "v"}, {222: "v", 111: "v"}):
        for _ in range(10):  # the group-by's order is not fixed: the answer must not depend on it
            seen = _last_seen(pos, T, mapping)["v"]
            assert (seen.time, seen.lon) == (T - timedelta(hours=1), 140.0)


def test_an_out_file_in_a_missing_folder_is_refused_before_anything_is_stored(tmp_path):
    """The result file had failed to write after the fused sightings were stored (an error, yet the store changed)."""
    ws = _workspace(tmp_path / "ws")
    det = tmp_path / "det.geojson"
    det.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _feature(130.28, 42.23, id="d1", time=T.isoformat(), length_m=120.0)]}))
    out = _fuse("--detections", str(det), "-w", str(ws.root), "--out", str(tmp_path / "nowhere" / "f.geojson"), code=2)
    assert "is not a folder" in out
    assert "is a folder; name a file" in _fuse("--detections", str(det), "-w", str(ws.root), "--out", str(tmp_path),
                                               code=2)
    assert not [s for s in Store.open(ws.db_url).sightings() if s.id.startswith("fused-")]


def test_a_ship_detected_twice_in_one_image_takes_one_match_for_both():
    """The same image fused from two files without ids, then exported and fused again: each ship is there twice.
    In one assignment the second copy had lost the AIS match and been called dark (then named a watchlist vessel).
    Both copies take the match; hulls moored alongside (centres 20 m apart) stay two ships."""
    positions, det = simulated_scene()
    lengths = {440000000 + k: 90.0 + 5 * k for k in range(5)}
    inputs = FusionInputs(VESSELS, ROUTES, {}, lengths)
    base = det.drop("truth").filter(pl.col("id").str.starts_with("det-44"))
    twice = pl.concat([base, base.with_columns(pl.col("id") + "-again", pl.col("lon") + 3e-5)])  # 2-3 m apart
    res = {r["id"]: r for r in fuse_detections(twice, positions, inputs).iter_rows(named=True)}
    for r in base.iter_rows(named=True):
        one, other = res[r["id"]], res[r["id"] + "-again"]
        assert one["status"] == other["status"] == "identified" and one["mmsi"] == other["mmsi"], r["id"]
    alongside = pl.concat([base.head(1), base.head(1).with_columns(pl.col("id") + "-b", pl.col("lat") + 20 / 110540)])
    got = fuse_detections(alongside, positions, inputs)
    assert sorted(got["status"].to_list()) == ["dark", "identified"] or got["mmsi"].n_unique() == 2


def _ais_at(points: list[tuple[int, float, float]]) -> pl.DataFrame:
    return pl.DataFrame([{"mmsi": m, "timestamp": T, "lon": lon, "lat": lat, "sog_kn": 0.0, "cog_deg": 0.0,
                          "heading_deg": 90.0, "source": "sim", "line": k + 1}
                         for k, (m, lon, lat) in enumerate(points)])


def _hulls(points: list[tuple[str, float, float, float | None]]) -> pl.DataFrame:
    return pl.DataFrame([{"id": i, "lon": lon, "lat": lat, "length_m": length, "width_m": None, "heading_deg": 90.0,
                          "site": "rajin", "time": T} for i, lon, lat, length in points],
                        schema_overrides={"length_m": pl.Float64, "width_m": pl.Float64})


def test_twins_are_direct_pairs_and_each_ship_keeps_its_own_ais():
    """Twins are copies within 3 m of the first copy of a ship: small craft rafted 6 m apart, each with its own
    AIS, keep their own MMSIs; in a chain a-b-c (2 m apart each) b is a's copy but c, 4 m from a, is not, and
    takes its own AIS ship lying on it."""
    m = 1 / 82000  # about a metre of longitude at 42 N
    rafted = fuse_detections(_hulls([("r1", 130.29, 42.23, 20.0), ("r2", 130.29 + 6 * m, 42.23, 20.0)]),
                             _ais_at([(1, 130.29, 42.23), (2, 130.29 + 6 * m, 42.23)]),
                             FusionInputs(VESSELS, ROUTES, {}, {1: 20.0, 2: 20.0}))
    assert dict(zip(rafted["id"], rafted["mmsi"], strict=True)) == {"r1": 1, "r2": 2}
    chain = fuse_detections(_hulls([("a", 130.29, 42.23, 100.0), ("b", 130.29 + 2 * m, 42.23, 100.0),
                                    ("c", 130.29 + 4 * m, 42.23, 100.0)]),
                            _ais_at([(1, 130.29, 42.23), (3, 130.29 + 4 * m, 42.23)]),
                            FusionInputs(VESSELS, ROUTES, {}, {1: 100.0, 3: 100.0}))
    assert dict(zip(chain["id"], chain["mmsi"], strict=True)) == {"a": 1, "b": 1, "c": 3}
    # a copy 2 m north of the first, on a 130 E image: twins whatever the longitude (a point's own latitude had
    # skewed the scale), and both take the one AIS ship, not a spare one 300 m off
    ns = fuse_detections(_hulls([("n1", 130.29, 42.23, 100.0), ("n2", 130.29, 42.23 + 2 / 110540, 100.0)]),
                         _ais_at([(1, 130.29, 42.23), (2, 130.29 + 300 * m, 42.23)]),
                         FusionInputs(VESSELS, ROUTES, {}, {1: 100.0, 2: 100.0}))
    assert ns["mmsi"].to_list() == [1, 1]
    # a detection between two rafted craft (2.5 m from each, listed first) is a copy of one of them at most: the
    # craft keep their own ships (a group had taken in both, and r1 had been given r2's MMSI)
    raft = fuse_detections(_hulls([("mid", 130.29 + 2.5 * m, 42.23, 10.0), ("r1", 130.29, 42.23, 10.0),
                                   ("r2", 130.29 + 5 * m, 42.23, 10.0)]),
                           _ais_at([(1, 130.29, 42.23), (2, 130.29 + 5 * m, 42.23)]),
                           FusionInputs(VESSELS, ROUTES, {}, {1: 10.0, 2: 10.0}))
    got = dict(zip(raft["id"], raft["mmsi"], strict=True))
    assert (got["r1"], got["r2"]) == (1, 2)
    # the first copy gated out of the one AIS ship its twin can reach: the twin still takes it, whatever other,
    # unreachable ships sort before it
    gated = fuse_detections(_hulls([("g1", 130.29, 42.23, 100.0), ("g2", 130.29 + 2 * m, 42.23, 100.0)]),
                            _ais_at([(2, 130.29 + 12000 * m, 42.23), (9, 130.29 + 599.5 * m, 42.23)]),
                            FusionInputs(VESSELS, ROUTES, {}, {2: 100.0, 9: 100.0}), FuseConfig(gate_m=600.0))
    assert dict(zip(gated["id"], gated["mmsi"], strict=True))["g2"] == 9


def test_a_ship_detected_twice_without_ais_is_named_on_both_copies():
    """Both copies of one dark ship scored alike: the one-place rule keeps the name on both (it had unnamed one
    copy, 'likelier angara (0.98 against 0.98)', and the analysis then made a phantom unidentified visit)."""
    positions, _ = simulated_scene()
    one = {"angara": VESSELS["angara"]}
    twice = _hulls([("c1", 130.285, 42.225, 120.0), ("c2", 130.285 + 1 / 82000, 42.225, 120.0)])
    res = fuse_detections(twice, positions, FusionInputs(one, ROUTES, {}, {}))
    assert res["vessel"].to_list() == ["angara", "angara"]


def test_one_watchlist_vessel_is_named_for_one_detection_of_an_image():
    """Three 120 m hulls at a 120 m vessel's port in one image: each scored on its own had been named that vessel
    at the same probability (0.9 each), so it stood in three places at once, and then the first by a tie-break
    kept the name. Scored together, the vessel is very likely one of them but any of the three: none is named,
    and the reasons say so."""
    positions, _ = simulated_scene()
    hulls = pl.DataFrame([{"id": f"h{k}", "lon": 130.28 + 0.01 * k, "lat": 42.23, "length_m": 120.0 + k,
                           "width_m": 18.0, "heading_deg": 90.0, "site": "rajin", "time": T} for k in range(3)])
    one = {"angara": VESSELS["angara"]}  # the only 120 m vessel of the watchlist
    alone = fuse_detections(hulls.head(1), positions, FusionInputs(one, ROUTES, {}, {}))
    p_alone = json.loads(alone["probabilities"][0])["angara"]
    assert alone["vessel"].to_list() == ["angara"] and p_alone > 0.9
    res = fuse_detections(hulls, positions, FusionInputs(one, ROUTES, {}, {}))
    assert res["vessel"].null_count() == 3
    p = [json.loads(r)["angara"] for r in res["probabilities"]]
    assert all(0.25 < x < 0.4 for x in p) and 0.9 < sum(p) <= 1.0  # one of them, almost surely; which, unknown
    for r in res.iter_rows(named=True):
        why = json.loads(r["reasons"])["hulls at the site"]
        assert why.startswith("3 hulls without an AIS match at rajin") and "angara 0.9" in why
        probs = json.loads(r["probabilities"])
        assert abs(sum(probs.values()) - 1) < 1e-3 and max(probs, key=probs.get) == UNKNOWN
    # hulls at different sites, or the same ship detected twice, are not shared out: a hull of another site
    # beside the three keeps its own score
    apart = hulls.with_columns(pl.Series("site", ["rajin", "other-port", None]))
    res = fuse_detections(apart, positions, FusionInputs(one, ROUTES, {}, {}))
    assert json.loads(res["probabilities"][0])["angara"] == pytest.approx(p_alone, abs=1e-3)
    assert "hulls at the site" not in json.loads(res["reasons"][0])
    # a 132 m hull loses ANGARA to a 120 m one; its share, given to a 150 m BIGGER, had made BIGGER 0.90 unnamed
    bigger = {**one, "bigger": Vessel("bigger", "BIGGER", length_m=150.0, beam_m=22.0)}
    two = pl.DataFrame([{"id": i, "lon": lon, "lat": 42.23, "length_m": length, "width_m": 18.0, "heading_deg": None,
                         "site": "rajin", "time": T} for i, lon, length in (("h1", 130.29, 120.0), ("h2", 130.30, 132.0))])
    res = fuse_detections(two, positions.clear(), FusionInputs(bigger, ROUTES, {}, {}))
    assert res.filter(pl.col("vessel") == "angara")["id"].to_list() == ["h1"]
    for r in res.iter_rows(named=True):
        top = max(json.loads(r["probabilities"]).items(), key=lambda kv: kv[1])
        assert r["vessel"] == (top[0] if top[1] > 0.5 and top[0] != UNKNOWN else None), r


def test_a_labelled_detection_is_one_visit_and_stays_simulated(tmp_path):
    """`fuse` writes a labelled copy of each stored detection: the analysis reads the copy instead of the original
    (both at once were two visits of one ship), and a copy of a simulated detection is simulated too, so visits and
    trips resting on it say so."""
    from routewatch.model import Evidence, EvidenceKind
    from routewatch.pipeline import analyze
    from routewatch.watchlist import load_watchlist

    ws = _workspace(tmp_path / "ws")
    store = Store.open(ws.db_url)
    chips = [Evidence(f"ev-img-{i}", EvidenceKind.CHIP, f"chip {i}") for i in range(2)]  # any evidence ids
    store.add_evidence([Evidence("ev-scene", EvidenceKind.SCENE, "a simulated scene"), *chips])
    store.add_sightings([
        Sighting(id=f"img-{i}", time=T, source_kind=SourceKind.IMAGE, site="rajin", event="detection",
                 lon=130.28 + 0.01 * i, lat=42.23, length_m=120.0, width_m=18.0, heading_deg=90.0, score=0.9,
                 evidence_ids=("ev-scene", f"ev-img-{i}"), simulated=True)
        for i in range(2)])
    wl = load_watchlist(ws.watchlist_path)
    before = analyze(store, wl, T + timedelta(days=1), persist=False)
    _fuse("-w", str(ws.root), "--out", str(tmp_path / "fused.geojson"))
    fused = [s for s in Store.open(ws.db_url).sightings() if s.id.startswith("fused-")]
    assert len(fused) == 2 and all(s.simulated for s in fused)
    after = analyze(store, wl, T + timedelta(days=1), persist=False)
    at_rajin = [v for v in after.visits if v.site == "rajin"]
    assert len([v for v in before.visits if v.site == "rajin"]) == 1  # two unidentified 120 m hulls: one class
    # fused, neither is named: the 120 m watchlist vessel is likely one of the two, which one is a coin toss (one
    # had been named by a tie-break, which made two visits); still one visit of the class, resting on the copies,
    # none on an original
    assert len(at_rajin) == 1 and at_rajin[0].vessel is None
    used = {i for v in at_rajin for i in v.sighting_ids}
    assert used and used <= {s.id for s in fused}  # the simulated copies: the report marks such visits simulated
    # fused again from a GeoJSON of the stored detections (rounded positions, evidence and mark as properties)
    det = tmp_path / "det.geojson"
    det.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _feature(round(130.28 + 0.01 * i, 7), 42.23, id=f"img-{i}", time=T.isoformat(), length_m=120.0,
                 site="rajin", simulated=True, evidence_ids=f"ev-scene,ev-img-{i}") for i in range(2)]}))
    _fuse("--detections", str(det), "-w", str(ws.root), "--out", str(tmp_path / "again.geojson"))
    again = [s for s in Store.open(ws.db_url).sightings() if s.id.startswith("fused-")]
    assert len(again) == 2 and all(s.simulated for s in again)


def test_a_copy_fused_at_another_time_or_site_still_replaces_its_original() -> None:
    """`fuse --detections file --time ...` can give a copy another time (to the minute), and fusion may assign it a
    site the original lacked: the copy is still told to its original by its derived id."""
    from routewatch.fuse.io import fused_id
    from routewatch.pipeline import without_fused_originals

    frame = pl.DataFrame({
        "id": ["img-1", "img-2", fused_id("img-1"), fused_id("img-2")],
        "site": ["rajin", None, "rajin", "rajin"],
        "time": [T, T, T + timedelta(seconds=40), T],
        "source_kind": ["image"] * 4,
    })
    kept = without_fused_originals(frame)
    assert sorted(kept["id"]) == sorted([fused_id("img-1"), fused_id("img-2")])
    alone = frame.filter(pl.col("id") == "img-1")
    assert without_fused_originals(alone).equals(alone)  # no copy: nothing goes


def test_an_export_geojson_gives_its_detections_only(tmp_path):
    """`export --format geojson` writes sites (polygons) and trips beside the detections: fusion reads the
    detections layer, with a `simulated` written as text read as text ("false" is not true)."""
    path = tmp_path / "export.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[130, 42], [130.1, 42], [130.1, 42.1],
                                                                               [130, 42]]]},
         "properties": {"layer": "sites", "id": "rajin"}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [130.28, 42.23]},
         "properties": {"layer": "trips", "id": "trip-1"}},
        _feature(130.29, 42.23, layer="detections", id="img-7", time=T.isoformat(), length_m=120, simulated="false"),
    ]}))
    det = read_detections_geojson(path)
    assert det["id"].to_list() == ["img-7"] and det["simulated"].to_list() == [False]
    # an export lists fusion's labelled copies beside the detections: they are not fused a second time
    from routewatch.fuse.io import fused_id

    data = json.loads(path.read_text())
    data["features"].append(_feature(130.29, 42.23, layer="detections", id=fused_id("img-7"), time=T.isoformat(),
                                     length_m=120))
    path.write_text(json.dumps(data))
    left: list[str] = []
    assert read_detections_geojson(path, left_out=left)["id"].to_list() == ["img-7"]
    assert left == [fused_id("img-7")]


def test_a_features_own_time_wins_over_the_time_given(tmp_path):
    """`fuse --time` is for detections without a time (or with a date alone): it must not move a detection that
    says when it was seen, which would match it to the wrong AIS and give it another id."""
    path = tmp_path / "det.geojson"
    other = T + timedelta(days=4)
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _feature(130.29, 42.23, time=T.isoformat(), length_m=120),
        _feature(130.30, 42.23, length_m=120),
        _feature(130.31, 42.23, time=T.date().isoformat(), length_m=120),
    ]}))
    same_day = T.replace(hour=5)
    det = read_detections_geojson(path, same_day)
    assert det["time"].to_list() == [T, same_day, same_day]
    alone = tmp_path / "timed.geojson"  # the timed detection keeps its id whatever time is given
    alone.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _feature(130.29, 42.23, time=T.isoformat(), length_m=120)]}))
    assert read_detections_geojson(alone)["id"].to_list() == det.filter(pl.col("lon") == 130.29)["id"].to_list()
    assert read_detections_geojson(alone, other)["time"].to_list() == [T]
    # a date alone with --time of another day: said, by feature, rather than matched at the other day
    with pytest.raises(ValueError, match=r"feature 2: its date 2023-10-21 is not that of --time"):
        read_detections_geojson(path, other)
    from routewatch.fuse.io import _feature_time

    assert _feature_time(path, 0, "2023-10-21Z", same_day) == (same_day, False)  # a date with a zone: a date alone
    # without --time a date alone is not fused at its midnight (AIS moves kilometres in hours): left out, and said
    mixed = tmp_path / "mixed.geojson"
    mixed.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _feature(130.29, 42.23, time=T.isoformat(), length_m=120),
        _feature(130.31, 42.23, time=T.date().isoformat(), length_m=120)]}))
    dateless: list[str] = []
    assert read_detections_geojson(mixed, dateless=dateless)["time"].to_list() == [T] and dateless == ["1"]
    # an export writes a date-only scene's detection at 00:00 and marks it date_only: read as the date alone
    marked = tmp_path / "marked.geojson"
    midnight = datetime(2023, 10, 21, tzinfo=UTC)
    marked.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _feature(130.29, 42.23, time=midnight.isoformat(), date_only=True, id="d1", length_m=120),
        _feature(130.30, 42.23, time=midnight.isoformat(), date_only=False, id="d2", length_m=120)]}))
    dateless = []
    assert read_detections_geojson(marked, dateless=dateless)["id"].to_list() == ["d2"] and dateless == ["d1"]
    assert read_detections_geojson(marked, same_day)["time"].to_list() == [same_day, midnight]
    # --time 2023-10-21 is a date too: it gives no time of day to the date-only features, nor to untimed ones
    dateless = []
    got = read_detections_geojson(path, midnight, dateless=dateless, time_has_clock=False)
    assert got["time"].to_list() == [T] and dateless == ["1", "2"]
    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps({"type": "FeatureCollection", "features": [_feature(130.29, 42.23, time="yesterday")]}))
    with pytest.raises(ValueError, match="feature 0: 'time' 'yesterday'"):
        read_detections_geojson(bad, other)


GHOST_WATCHLIST = """
[sites.origin-port]
name = "Origin port"
kind = "port"
bbox = [130.265, 42.215, 130.31, 42.25]

[sites.destination-port]
name = "Destination port"
kind = "port"
bbox = [132.30, 42.85, 132.40, 42.90]

[routes.ghost_run]
name = "Origin to destination"
origin = ["origin-port"]
destination = ["destination-port"]
mode = "sea"

[vessels.ghost]
name = "GHOST"
length_m = 150
beam_m = 22
"""


def test_a_ship_of_the_right_size_far_from_its_routes_is_not_named_from_size_alone():
    ghost = {"ghost": Vessel("ghost", "GHOST", length_m=150.0, beam_m=22.0)}
    sites = {"origin-port": Site("origin-port", "Origin port", SiteKind.PORT, box(130.265, 42.215, 130.31, 42.25)),
             "destination-port": Site("destination-port", "Destination port", SiteKind.PORT,
                                      box(132.30, 42.85, 132.40, 42.90))}
    routes = {"ghost_run": Route("ghost_run", "Origin to destination", ("origin-port",), ("destination-port",))}
    base = dict(length_m=150.0, width_m=22.0, time=T, vessels=ghost, routes=routes, sites=sites)
    at_port = identify_dark(**base, lon=130.29, lat=42.23, site="origin-port")
    far = identify_dark(**base, lon=10.0, lat=10.0, site=None)
    assert at_port.best == "ghost" and at_port.probabilities["ghost"] > 0.9
    assert far.best is None and far.probabilities["ghost"] < 0.25
    assert far.probabilities["ghost"] < at_port.probabilities["ghost"] / 4
    assert far.probabilities[UNKNOWN] > 0.75 and abs(sum(far.probabilities.values()) - 1) < 1e-9
    assert "from origin-port" in far.reasons["ghost"] and "unlikely here" in far.reasons["ghost"]
    assert "route ghost_run uses origin-port" in at_port.reasons["ghost"]
    # on the way between its ports it is possible, less so than at them; where its last AIS reached, too
    between = identify_dark(**base, lon=131.3, lat=42.55, site=None)
    assert far.probabilities["ghost"] < between.probabilities["ghost"] < at_port.probabilities["ghost"]
    assert "between origin-port and destination-port" in between.reasons["ghost"]
    seen = {"ghost": LastSeen(T - timedelta(hours=8), 11.0, 10.5)}  # 65 nm away 8 h before
    reached = identify_dark(**base, lon=10.0, lat=10.0, site=None, last_seen=seen)
    assert reached.probabilities["ghost"] == pytest.approx(between.probabilities["ghost"], rel=1e-9)


def test_fuse_names_the_ghost_at_its_port_only_and_counts_every_named_detection(tmp_path):
    runner.invoke(app, ["init", str(tmp_path / "ws")])
    ws = Workspace.open(tmp_path / "ws")
    ws.watchlist_path.write_text(GHOST_WATCHLIST)
    src = tmp_path / "det.geojson"
    src.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _feature(130.29, 42.23, id="at-port", length_m=150, width_m=22, heading_deg=90, score=0.9),
        _feature(10.0, 10.0, id="far-away", length_m=150, width_m=22, heading_deg=90, score=0.9),
    ]}))
    out_file = tmp_path / "fused.geojson"
    out = _fuse("--detections", str(src), "--time", T.isoformat(), "-w", str(ws.root), "--out", str(out_file))
    feats = {f["properties"]["id"]: f["properties"] for f in json.loads(out_file.read_text())["features"]}
    assert feats["at-port"]["status"] == feats["far-away"]["status"] == NO_AIS
    assert feats["at-port"]["vessel"] == "ghost" and feats["far-away"]["vessel"] is None
    p_port = feats["at-port"]["probabilities"]["ghost"]
    p_far = feats["far-away"]["probabilities"]["ghost"]
    assert p_port > 0.9 and p_far < p_port / 4
    assert "unlikely here" in json.loads(feats["far-away"]["reasons"])["ghost"]
    assert "1 of 2 detections named a watchlist vessel (no-ais: 1)" in out
    named = [s for s in Store.open(ws.db_url).sightings() if s.vessel == "ghost"]
    assert [s.id for s in named] == [stable_id("fused", "at-port")]


def test_an_old_reachable_ais_position_does_not_make_a_far_place_likely():
    """Three days after its last AIS a ship at 18 kn could be almost anywhere: that says nothing of a place far
    off its routes, which keeps its small prior; a position of two hours ago nearby does make the place possible."""
    from routewatch.fuse.identify import LastSeen

    sites = {k: Site(k, k, SiteKind.PORT, box(*b)) for k, b in (
        ("rajin", (130.265, 42.215, 130.31, 42.25)), ("dunai", (132.30, 42.85, 132.40, 42.90)))}
    routes = {"r": Route("r", "r", ("rajin",), ("dunai",))}
    vessels = {"big": Vessel("big", "BIG", length_m=200.0, beam_m=30.0)}
    kw = dict(length_m=200.0, width_m=30.0, lon=135.0, lat=40.0, time=T, site=None, vessels=vessels,
              routes=routes, sites=sites)
    none = identify_dark(**kw)
    old = identify_dark(**kw, last_seen={"big": LastSeen(T - timedelta(hours=69.5), 132.35, 42.87)})
    recent = identify_dark(**kw, last_seen={"big": LastSeen(T - timedelta(hours=2), 134.9, 40.1)})
    assert none.probabilities["big"] < 0.2 and old.probabilities["big"] == pytest.approx(none.probabilities["big"])
    assert old.best is None and "unlikely here" in old.reasons["big"]
    assert recent.probabilities["big"] > 0.5 and "possible here" in recent.reasons["big"]


def test_a_report_and_an_export_list_a_labelled_detection_once(tmp_path):
    """The original detection (vessel unknown) and fusion's labelled copy are one ship: a report's map and every
    export show the copy, which carries the original's evidence and look, as the analysis reads it."""
    from routewatch.fuse.io import fused_id, labelled_once
    from routewatch.report.data import gather

    store = Store.open(f"sqlite:///{tmp_path / 's.sqlite'}")
    orig = Sighting(id="img-1", time=T, source_kind=SourceKind.IMAGE, site="rajin", event="detection", lon=130.29,
                    lat=42.23, length_m=120.0, evidence_ids=("scene-ev", "chip-ev"), look_id="look-1")
    copy = Sighting(id=fused_id("img-1"), time=T, source_kind=SourceKind.IMAGE, site="rajin", event="detection",
                    lon=130.29, lat=42.23, length_m=120.0, heading_deg=30.0, vessel="angara",
                    evidence_ids=("scene-ev", "chip-ev", "fusion-ev"), look_id="look-1")
    alone = Sighting(id="img-2", time=T, source_kind=SourceKind.IMAGE, site="rajin", event="detection", lon=130.3,
                     lat=42.23, length_m=90.0, evidence_ids=("scene-ev",), look_id="look-1")
    kept, originals = labelled_once([orig, copy, alone])
    assert [s.id for s in kept] == [copy.id, "img-2"] and originals == {copy.id: "img-1"}
    store.add_sightings([orig, copy, alone])
    # a visit stored by an analysis made before `fuse` rests on the original: it is read as resting on the copy
    from routewatch.model import Visit

    store.replace_derived([Visit(id="v1", site="rajin", vessel=None, start=T, end=T, confidence=0.7,
                                 sighting_ids=("img-1",))], [], T + timedelta(days=1))
    data = gather(store, T + timedelta(days=1))
    assert sorted(s.id for s in data.sightings) == sorted([copy.id, "img-2"])
    assert [v.sighting_ids for v in data.visits] == [(copy.id,)]
    # the export names each copy's detection, so that fusing the export again fuses that detection (once)
    from routewatch.report.export import write_geojson

    path = write_geojson(data, tmp_path / "export.geojson")
    props = {f["properties"]["id"]: f["properties"] for f in json.loads(path.read_text())["features"]}
    assert props[copy.id]["original_id"] == "img-1" and props[copy.id]["fusion"] == ""
    left: list[str] = []
    again = read_detections_geojson(path, left_out=left)
    assert sorted(again["id"]) == ["img-1", "img-2"] and left == []
    first = again.filter(pl.col("id") == "img-1")
    assert first["evidence_ids"].to_list() == [["scene-ev", "chip-ev"]]
    # with its heading (a term of the AIS match) and its look (a later `detect` replaces the label with it)
    assert first["heading_deg"].to_list() == [30.0] and first["look_id"].to_list() == ["look-1"]


def _track(mmsi: int, points: list[tuple[float, float, float, float]]) -> pl.DataFrame:
    """AIS rows of one MMSI: (minutes from T, lon, lat, sog)."""
    return conform(pl.DataFrame([{"mmsi": mmsi, "timestamp": T + timedelta(minutes=m), "lon": lon, "lat": lat,
                                  "sog_kn": sog, "cog_deg": 90.0, "heading_deg": None, "source": "t", "line": k + 1}
                                 for k, (m, lon, lat, sog) in enumerate(points)]))


def _image(*rows: tuple[str, float, float, float], times: list[datetime] | None = None) -> pl.DataFrame:
    """Detections (id, lon, lat, length) of one image at T (or at the times given), each 18 m wide, at Rajin."""
    return pl.DataFrame([{"id": i, "time": (times[k] if times else T), "lon": lon, "lat": lat, "length_m": length,
                          "width_m": 18.0, "heading_deg": None, "site": "rajin"}
                         for k, (i, lon, lat, length) in enumerate(rows)])


BERTH = (130.29, 42.23)
M_PER_DEG_LON = 111_320 * math.cos(math.radians(42.23))


def test_a_still_ship_heard_twelve_minutes_before_the_image_is_that_ship():
    """A moored ship reporting 0 kn 12 min before the image (and next 48 min after it) holds its place: the hull
    there is that ship, not a dark one named ANGARA at 0.98 (dead reckoning had stopped at 10 min whatever the
    speed)."""
    ais = _track(412000001, [(-12, *BERTH, 0.0), (48, *BERTH, 0.0)])
    inputs = FusionInputs({"angara": VESSELS["angara"]}, ROUTES, {273210440: "angara"}, {412000001: 120.0})
    r = fuse_detections(_image(("d", *BERTH, 120.0)), ais, inputs).row(0, named=True)
    assert r["status"] == "identified" and r["mmsi"] == 412000001 and r["vessel"] is None
    # a moving ship 12 min before is not dead-reckoned that far: a hull near its course is not dark either,
    # since AIS cannot place the ship at the image time, and no watchlist vessel is named for it
    moving = _track(412000001, [(-12, BERTH[0] - 4000 / M_PER_DEG_LON, BERTH[1], 10.0)])
    r = fuse_detections(_image(("d", *BERTH, 120.0)), moving, inputs).row(0, named=True)
    assert r["status"] == "unresolved" and r["vessel"] is None and r["mmsi"] is None
    why = json.loads(r["reasons"])
    assert "AIS MMSI 412000001 was heard 12 min before the image" in why["AIS ships that could be here"]
    assert "not named" in why["angara"]
    # the same ship heard 12 min before 60 km away could not be this hull: dark, and named as before
    away = _track(412000001, [(-12, BERTH[0] - 60000 / M_PER_DEG_LON, BERTH[1], 10.0)])
    r = fuse_detections(_image(("d", *BERTH, 120.0)), away, inputs).row(0, named=True)
    assert r["status"] == "dark" and r["vessel"] == "angara"


def test_a_ship_that_slowed_down_at_its_berth_is_placed_with_the_leg_s_uncertainty():
    """12 kn 4 km out 21 min before the image, moored 19 min after it: the straight line puts it 1.9 km out, and
    its uncertainty is that of the leg's speed, not the moored report's 150 m (the hull at the berth had been
    called dark and named ANGARA)."""
    ais = _track(412000001, [(-21, BERTH[0] - 4000 / M_PER_DEG_LON, BERTH[1], 12.0), (19, *BERTH, 0.0)])
    inputs = FusionInputs(VESSELS, ROUTES, {273210440: "angara"}, {412000001: 120.0})
    r = fuse_detections(_image(("d", *BERTH, 120.0)), ais, inputs).row(0, named=True)
    assert r["status"] == "identified" and r["mmsi"] == 412000001 and r["vessel"] is None


def test_no_match_is_an_alternative_inside_the_assignment():
    """ANGARA's AIS at P, another AIS ship 500 m east (not seen); a 120 m hull at P and a dark 200 m hull 500 m
    west. Pairing first and judging after had given the hull at P to the other ship (the swap cost less in
    total) and ANGARA to the dark hull: now the hull at P is ANGARA and the other is dark."""
    e = 500 / M_PER_DEG_LON
    ais = pl.concat([_track(273210440, [(0, *BERTH, 0.0)]), _track(412000002, [(0, BERTH[0] + e, BERTH[1], 0.0)])])
    vessels = {**VESSELS, "big": Vessel("big", "BIG", length_m=200.0, beam_m=18.0)}
    routes = {**ROUTES, "big_route": Route("big_route", "Rajin to Dunai", ("rajin",), ("dunai",), vessels=("big",))}
    inputs = FusionInputs(vessels, routes, {273210440: "angara"}, {273210440: 120.0, 412000002: 120.0})
    res = {r["id"]: r for r in fuse_detections(_image(("d1", *BERTH, 120.0), ("d2", BERTH[0] - e, BERTH[1], 200.0)),
                                               ais, inputs).iter_rows(named=True)}
    assert res["d1"]["status"] == "identified" and res["d1"]["vessel"] == "angara"
    assert res["d2"]["status"] == "dark" and json.loads(res["d2"]["probabilities"]).get("big", 0) > 0.5


def test_two_transmitters_on_one_mmsi_are_not_blended():
    """ANGARA's MMSI reports every 6 min from the berth and, between those, from 100 km away: no ship sails
    that leg, so each message stands for itself; the hull at the berth is that MMSI's (it had been placed 40 km
    from both, the hull called dark and ANGARA given 0 as "placed elsewhere")."""
    far = (BERTH[0] + 100_000 / M_PER_DEG_LON, BERTH[1])
    pts = [(m, *(BERTH if k % 2 == 0 else far), 0.0) for k, m in enumerate(range(-27, 30, 3))]
    inputs = FusionInputs(VESSELS, ROUTES, {273210440: "angara"}, {273210440: 120.0})
    r = fuse_detections(_image(("d", *BERTH, 120.0)), _track(273210440, pts), inputs).row(0, named=True)
    assert r["status"] == "identified" and r["mmsi"] == 273210440 and r["ais_method"] == "conflicting"
    # a hull at each place: both are that MMSI's, neither is named ANGARA (it had been named at both, 0.9997 each)
    both = fuse_detections(_image(("d", *BERTH, 120.0), ("e", *far, 120.0)), _track(273210440, pts), inputs)
    assert both["mmsi"].to_list() == [273210440] * 2 and both["vessel"].is_null().all()
    assert all("heard from two places" in w for w in both["reasons"])
    # neither message placed (both moving, 15 min from the image): the spoof 100 km on does not rule ANGARA out,
    # and its own message 2.5 km off makes the hull unresolved, not dark and named another vessel
    e = 2500 / M_PER_DEG_LON
    moving = _track(273210440, [(-15, BERTH[0] - e, BERTH[1], 10.0), (15, *far, 10.0)])
    r = fuse_detections(_image(("d", *BERTH, 120.0)), moving, inputs).row(0, named=True)
    assert r["status"] == "unresolved" and r["vessel"] in (None, "angara")
    assert json.loads(r["probabilities"])["angara"] > 0


def test_ais_after_the_image_rules_a_vessel_out_too():
    base = dict(length_m=120.0, width_m=18.0, lon=BERTH[0], lat=BERTH[1], time=T, site="rajin", vessels=VESSELS,
                routes=ROUTES)
    later = {"angara": LastSeen(T + timedelta(minutes=25), BERTH[0] + 2.5, BERTH[1])}  # ~100 nm on, 25 min later
    r = identify_dark(**base, next_seen=later)
    assert r.probabilities["angara"] < 0.05 and r.best != "angara"
    assert "next AIS" in r.reasons["angara"] and "unreachable" in r.reasons["angara"]
    near = {"angara": LastSeen(T + timedelta(hours=5), BERTH[0] + 0.5, BERTH[1])}  # 22 nm in 5 h: possible
    assert identify_dark(**base, next_seen=near).probabilities["angara"] > 0.3


def test_vessels_of_other_routes_do_not_dilute_the_ship_of_this_port():
    """A 150 m hull at GHOST's port: 100 vessels of a route on the other side of the world (sizes unlike it) had
    taken GHOST from 0.97 to 0.14 by splitting the watchlist's prior evenly over all."""
    sites = {**SITES, "ras": Site("ras", "Ras Tanura", SiteKind.PORT, box(50.15, 26.6, 50.2, 26.65)),
             "fuj": Site("fuj", "Fujairah", SiteKind.PORT, box(56.35, 25.15, 56.4, 25.2))}
    vessels = {"ghost": Vessel("ghost", "GHOST", length_m=150.0, beam_m=22.0)}
    routes = {"g": Route("g", "Rajin to Dunai", ("rajin",), ("dunai",), vessels=("ghost",))}
    alone = identify_dark(length_m=150.0, width_m=22.0, lon=BERTH[0], lat=BERTH[1], time=T, site="rajin",
                          vessels=vessels, routes=routes, sites=sites).probabilities["ghost"]
    others = {f"o{k}": Vessel(f"o{k}", f"O{k}", length_m=300.0 + k % 50, beam_m=50.0) for k in range(100)}
    gulf = {"gulf": Route("gulf", "Ras Tanura to Fujairah", ("ras",), ("fuj",), vessels=tuple(others))}
    many = identify_dark(length_m=150.0, width_m=22.0, lon=BERTH[0], lat=BERTH[1], time=T, site="rajin",
                         vessels={**vessels, **others}, routes={**routes, **gulf}, sites=sites)
    assert alone > 0.95 and many.probabilities["ghost"] > 0.95 and many.best == "ghost"
    assert abs(sum(many.probabilities.values()) - 1) < 1e-9


def test_a_vessel_without_a_length_is_scored_by_its_place():
    """A watchlist vessel without a length had been left out of the scoring: "unknown vessel" 1.0 read as an
    exoneration. Scored by its place alone, it keeps a share at its route's port, and no size favours it."""
    vessels = {"nolen": Vessel("nolen", "NO LENGTH")}
    routes = {"r": Route("r", "Rajin to Dunai", ("rajin",), ("dunai",), vessels=("nolen",))}
    r = identify_dark(length_m=120.0, width_m=18.0, lon=BERTH[0], lat=BERTH[1], time=T, site="rajin",
                      vessels=vessels, routes=routes)
    assert 0.3 < r.probabilities["nolen"] < 0.7 and "size not compared" in r.reasons["nolen"] and r.best is None


def test_detections_of_one_image_seconds_apart_are_fused_as_one_image():
    """Per-line acquisition times a second apart: one AIS ship is matched to one hull, and ANGARA is named for
    one dark hull (fused as two images, the AIS ship had taken both hulls and ANGARA two more)."""
    ais = _track(412000001, [(0, *BERTH, 0.0)])
    e = 150 / M_PER_DEG_LON
    times = [T, T + timedelta(seconds=1), T + timedelta(seconds=2), T + timedelta(seconds=3)]
    det = _image(("a", *BERTH, 120.0), ("b", BERTH[0] + e, BERTH[1], 120.0), ("c", BERTH[0] - 8 * e, BERTH[1], 120.0),
                 ("d", BERTH[0] - 16 * e, BERTH[1], 120.0), times=times)
    inputs = FusionInputs(VESSELS, ROUTES, {273210440: "angara"}, {412000001: 120.0})
    res = fuse_detections(det, ais, inputs)
    assert res.filter(pl.col("mmsi") == 412000001).height == 1
    assert res.filter(pl.col("vessel") == "angara").height <= 1
    assert res["time"].to_list() == times  # each keeps its own time
    # an image is at most a minute long: a moving ship seen at the last of times 50 s apart over 200 s is matched
    # at its own time (chained into one image fused at the middle, its AIS had been placed 100 s off its hull)
    moving = _track(412000002, [(m, BERTH[0] + 15 * 1852 / 60 * m / M_PER_DEG_LON, BERTH[1], 15.0)
                                for m in range(-10, 11)])
    late = T + timedelta(seconds=200)
    hull = BERTH[0] + 15 * 1852 / 3600 * 200 / M_PER_DEG_LON
    spread = [T, T + timedelta(seconds=50), T + timedelta(seconds=100), T + timedelta(seconds=150), late]
    det = _image(*[(f"x{k}", BERTH[0] - (20 + 8 * k) * e, BERTH[1] + 0.01, 60.0) for k in range(4)],
                 ("ship", hull, BERTH[1], 120.0), times=spread)
    got = fuse_detections(det, moving, FusionInputs(VESSELS, ROUTES, {}, {412000002: 120.0}))
    assert got.filter(pl.col("id") == "ship")["mmsi"].to_list() == [412000002]


def test_fusing_a_file_again_with_a_corrected_time_replaces_its_labels(tmp_path):
    """Detections without ids or times fused with --time 10:52 (a local time taken as UTC), then again with the
    right 01:52Z: their ids had held the time, so the store kept four labels for two detections (a 9 h visit
    and confidences doubled from one image). The time given is the user's claim: the second run replaces."""
    runner.invoke(app, ["init", str(tmp_path / "ws")])
    ws = Workspace.open(tmp_path / "ws")
    ws.watchlist_path.write_text(GHOST_WATCHLIST)
    src = tmp_path / "det.geojson"
    src.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _feature(130.29, 42.23, length_m=150, width_m=22), _feature(130.28, 42.22, length_m=60, width_m=10)]}))
    for when in (T.replace(hour=10), T):
        _fuse("--detections", str(src), "--time", when.isoformat(), "-w", str(ws.root),
              "--out", str(tmp_path / "fused.geojson"))
    fused = [s for s in Store.open(ws.db_url).sightings() if s.id.startswith("fused-")]
    assert len(fused) == 2 and {s.time for s in fused} == {T}
    # another image's file of the same name elsewhere, a detection at the same point: another detection
    other = tmp_path / "next" / "det.geojson"
    other.parent.mkdir()
    other.write_text(src.read_text())
    ids = {read_detections_geojson(f, T + timedelta(days=1))["id"][0] for f in (src, other)}
    assert len(ids) == 2
    # a feature with its own time keeps one id whatever --time says (equal to its own or not)
    timed = tmp_path / "timed.geojson"
    timed.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _feature(130.29, 42.23, time=T.isoformat(), length_m=150)]}))
    assert len({read_detections_geojson(timed, t)["id"][0] for t in (None, T, T.replace(hour=5))}) == 1


def test_a_detection_of_negative_or_zero_size_is_refused_by_feature(tmp_path):
    bad = tmp_path / "bad.geojson"
    for value in (-120, 0, "long"):
        bad.write_text(json.dumps({"type": "FeatureCollection", "features": [
            _feature(130.29, 42.23, time=T.isoformat(), length_m=120),
            _feature(130.29, 42.23, time=T.isoformat(), length_m=value)]}))
        with pytest.raises(ValueError, match=r"feature 1: length_m .* is not a positive number of metres"):
            read_detections_geojson(bad)


def test_images_are_cut_at_their_widest_gaps():
    """Times 0, 59 and 61 s: cut at a fixed 60 s from the first, the detections 2 s apart had been two images;
    a run too long is cut at its widest gap."""
    from routewatch.fuse import _images

    def ids(seconds: list[float]) -> list[list[str]]:
        det = pl.DataFrame({"id": [f"d{k}" for k in range(len(seconds))],
                            "time": [T + timedelta(seconds=x) for x in seconds]})
        return [g["id"].to_list() for _, g in _images(det)]

    assert ids([0, 59, 61]) == [["d0"], ["d1", "d2"]]
    assert ids([61, 0, 59]) == [["d1"], ["d0", "d2"]]  # rows keep their input order within an image
    assert ids([0, 10, 20, 200, 205]) == [["d0", "d1", "d2"], ["d3", "d4"]]
    assert ids([0, 30, 60, 90, 120]) == [["d0", "d1"], ["d2", "d3", "d4"]]  # even spacing: cut in the middle
    assert ids([5]) == [["d0"]] and ids([]) == []


def test_a_false_ais_position_does_not_clear_a_hull_of_the_vessels_size_at_its_port():
    """ANGARA's AIS puts it 200 km away while a hull of exactly its size lies at Rajin: AIS had given ANGARA 0
    there, so a spoofed position cleared a sanctioned ship. It keeps ``ais_false_rate`` of its prior: not named
    (AIS is usually right), but not zero, and the reasons point out that only its AIS speaks against it. The other
    vessels' probabilities are what they would be without ANGARA on the list; a vessel matched to another hull of
    the same image is ruled out."""
    from routewatch.fuse.identify import IdentifyConfig

    base = dict(length_m=120.0, width_m=18.0, lon=BERTH[0], lat=BERTH[1], time=T, site="rajin", vessels=VESSELS,
                routes=ROUTES)
    free = identify_dark(**base)
    spoofed = identify_dark(**base, seen_elsewhere={"angara"})
    assert spoofed.best != "angara" and 0 < spoofed.probabilities["angara"] < free.probabilities["angara"]
    assert "check for a spoofed position" in spoofed.reasons["angara"]
    without = identify_dark(**{**base, "vessels": {k: v for k, v in VESSELS.items() if k != "angara"}})
    for key, p in without.probabilities.items():
        assert spoofed.probabilities[key] == pytest.approx(p, rel=0.05, abs=1e-3)
    # an analyst who expects spoofing from this fleet raises the rate: then the hull is named
    trusting = identify_dark(**base, seen_elsewhere={"angara"}, config=IdentifyConfig(ais_false_rate=0.5))
    assert trusting.probabilities["angara"] > spoofed.probabilities["angara"]
    # a hull of another size: no such note
    small = identify_dark(**{**base, "length_m": 40.0, "width_m": 8.0}, seen_elsewhere={"angara"})
    assert "spoofed" not in small.reasons["angara"]
    # fused: ANGARA's AIS far away at the image time and a 120 m dark hull at its berth
    inputs = FusionInputs(VESSELS, ROUTES, {273210440: "angara"}, {273210440: 120.0})
    far = (BERTH[0] + 0.5, BERTH[1])  # 41 km off: inside the AIS coverage radius, so the hull is dark
    r = fuse_detections(_image(("d", *BERTH, 120.0)), _track(273210440, [(-5, *far, 0.0), (5, *far, 0.0)]),
                        inputs).row(0, named=True)
    assert r["status"] == "dark" and r["vessel"] != "angara"
    assert 0 < json.loads(r["probabilities"])["angara"] < 0.5
    assert "check for a spoofed position" in json.loads(r["reasons"])["angara"]


def test_fuse_ais_false_rate_option(tmp_path):
    """`fuse --ais-false-rate`: how much a watchlist vessel keeps where its AIS places it elsewhere (a fleet known
    to spoof is given more)."""
    from routewatch.sources.ais.partitions import write_positions
    from routewatch.sources.ais.schema import conform

    ws = _workspace(tmp_path / "ws")
    away = conform(pl.DataFrame([{"mmsi": 273210440, "timestamp": T + timedelta(minutes=m), "lon": 130.79,
                                  "lat": 42.23, "sog_kn": 0.0, "source": "feed", "line": k + 1}
                                 for k, m in enumerate((-5, 5))]))
    write_positions(ws.ais_dir, away, "feed")
    det = _write_det(tmp_path / "det.geojson", time=T.isoformat())
    p = {}
    for rate in ("0.02", "1"):
        out_file = tmp_path / f"fused-{rate}.geojson"
        _fuse("--detections", str(det), "-w", str(ws.root), "--out", str(out_file), "--ais-false-rate", rate)
        props = json.loads(out_file.read_text())["features"][0]["properties"]
        assert props["status"] == "dark"
        probs = props["probabilities"] if isinstance(props["probabilities"], dict) else json.loads(props["probabilities"])
        p[rate] = probs["angara"]
        if rate == "0.02":
            assert props.get("vessel") != "angara" and "check for a spoofed position" in json.dumps(props["reasons"])
    assert p["0.02"] < 0.1 < 0.5 < p["1"]
    _fuse("--detections", str(det), "-w", str(ws.root), "--ais-false-rate", "2", code=2)


def test_the_false_position_prior_is_a_mixture_and_its_rate_of_one_ignores_ais():
    """Placed elsewhere by AIS, a vessel keeps ais_false_rate of its share among all: the watchlist's mass stays
    1 - unknown_prior however many are placed elsewhere (100 of them had taken a free vessel from 0.98 to 0.33),
    and at a rate of 1 the result is the one without AIS."""
    from routewatch.fuse.identify import IdentifyConfig

    base = dict(length_m=120.0, width_m=18.0, lon=BERTH[0], lat=BERTH[1], time=T, site="rajin", routes=ROUTES)
    many = {f"v{k}": Vessel(f"v{k}", f"V{k}", length_m=120.0, beam_m=18.0) for k in range(100)}
    alone = identify_dark(**base, vessels={"v0": many["v0"]})
    r = identify_dark(**base, vessels=many, seen_elsewhere=set(many) - {"v0"})
    assert r.probabilities["v0"] == pytest.approx(alone.probabilities["v0"], abs=0.03)
    assert sum(p for k, p in r.probabilities.items() if k not in ("v0", UNKNOWN)) < 0.05
    every = identify_dark(**base, vessels=many, seen_elsewhere=set(many))
    free = identify_dark(**base, vessels=many)
    assert every.probabilities[UNKNOWN] > free.probabilities[UNKNOWN] + 0.5  # 0.69 against 0.02
    ignored = identify_dark(**base, vessels=VESSELS, seen_elsewhere={"angara"}, config=IdentifyConfig(ais_false_rate=1.0))
    plain = identify_dark(**base, vessels=VESSELS)
    assert ignored.probabilities == pytest.approx(plain.probabilities, abs=1e-9)


def test_a_vessel_matched_through_an_mmsi_heard_from_two_places_is_not_ruled_out_elsewhere():
    """ANGARA's MMSI heard from two places around the image, one of them on a hull at A (matched, not named): the
    image does not place ANGARA there, so a hull of its size at its berth keeps its chance of being it (it had
    been given 0, "its AIS matches another hull of this image", and LADY R named instead)."""
    a = (130.10, 42.10)
    ais = _track(273210440, [(-5, *a, 0.0), (-1, *a, 0.0), (1, a[0] + 1.5, a[1], 0.0), (5, a[0] + 1.5, a[1], 0.0)])
    det = pl.DataFrame([{"id": i, "time": T, "lon": lon, "lat": lat, "length_m": 120.0, "width_m": 18.0,
                         "heading_deg": None, "site": s} for i, lon, lat, s in (("at_a", *a, None),
                                                                               ("berth", *BERTH, "rajin"))])
    inputs = FusionInputs(VESSELS, ROUTES, {273210440: "angara"}, {273210440: 120.0})
    res = {r["id"]: r for r in fuse_detections(det, ais, inputs).iter_rows(named=True)}
    alone = fuse_detections(det.filter(pl.col("id") == "berth"), ais, inputs).row(0, named=True)
    assert res["at_a"]["mmsi"] == 273210440 and res["at_a"]["vessel"] is None
    p = json.loads(res["berth"]["probabilities"])["angara"]
    assert p == pytest.approx(json.loads(alone["probabilities"])["angara"], abs=1e-3) and p > 0.3


def test_past_ten_vessels_each_is_still_at_most_one_hull_and_unlabelled_hulls_near_a_site_share():
    """Twelve vessels of about 120 m and twenty 120 m hulls at their port: the two vessels past the exact ten had
    been each hull's likeliest, 1.74 hulls each in all. And hulls without a site label within 25 km of a watched
    site share its vessels with the labelled ones (a third hull beside two at Rajin had kept ANGARA at 0.98)."""
    positions, _ = simulated_scene()
    twelve = {f"v{k}": Vessel(f"v{k}", f"V{k}", length_m=120.0 + k * 0.5, beam_m=18.0) for k in range(12)}
    hulls = pl.DataFrame([{"id": f"h{k}", "lon": 130.27 + 0.002 * k, "lat": 42.23, "length_m": 120.0, "width_m": 18.0,
                           "heading_deg": 90.0, "site": "rajin", "time": T} for k in range(20)])
    res = fuse_detections(hulls, positions, FusionInputs(twelve, ROUTES, {}, {}))
    probs = [json.loads(r) for r in res["probabilities"]]
    for k in range(12):
        assert sum(p[f"v{k}"] for p in probs) <= 1.0 + 1e-6
    assert sum(p["v0"] for p in probs) >= sum(p["v11"] for p in probs)  # the better fit is no less likely
    three = pl.DataFrame([{"id": f"h{k}", "lon": 130.28 + 0.01 * k, "lat": 42.23, "length_m": 120.0, "width_m": 18.0,
                           "heading_deg": 90.0, "site": s, "time": T} for k, s in enumerate(("rajin", "rajin", None))])
    one = {"angara": VESSELS["angara"]}
    res = fuse_detections(three, positions, FusionInputs(one, ROUTES, {}, {}, SITES))
    p = [json.loads(r)["angara"] for r in res["probabilities"]]
    assert all(x < 0.4 for x in p) and sum(p) <= 1.0 + 1e-6 and res["vessel"].null_count() == 3


def test_hulls_share_only_at_places_of_ships_and_certain_hulls_share_too():
    """An unlabelled hull 7 km from a port but nearer an airfield is at the port for its prior: it had been
    grouped at the airfield, alone, and the vessel counted at the port's two hulls and at it (1.96 in all). And
    hulls whose unknown-ship share is 0 (a prior of 0 for unknown ships) still share the vessel (both had been it
    at 1.0)."""
    from routewatch.fuse import _sites_of
    from routewatch.fuse.identify import IdentifyConfig

    sites = {**SITES, "airfield": Site("airfield", "Airfield", SiteKind.AIRFIELD, box(130.33, 42.2, 130.35, 42.22))}
    group = pl.DataFrame({"site": ["rajin", None, None], "lon": [130.29, 130.328, 131.5], "lat": [42.23, 42.23, 42.0]})
    assert _sites_of(group, sites, 25_000.0) == ["rajin", "rajin", None]
    positions, _ = simulated_scene()
    two = pl.DataFrame([{"id": f"h{k}", "lon": 130.28 + 0.01 * k, "lat": 42.23, "length_m": 120.0, "width_m": 18.0,
                         "heading_deg": 90.0, "site": "rajin", "time": T} for k in range(2)])
    res = fuse_detections(two, positions, FusionInputs({"angara": VESSELS["angara"]}, ROUTES, {}, {}),
                          identify=IdentifyConfig(unknown_prior=0.0))
    p = [json.loads(r)["angara"] for r in res["probabilities"]]
    assert sum(p) <= 1.0 + 1e-6 and res["vessel"].null_count() == 2
