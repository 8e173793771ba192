"""Fusion on a simulated scene with known AIS: identified ships, dark ships, and who the dark ones probably are."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
from shapely.geometry import box

from routewatch.fuse import FusionInputs, fuse_detections, fused_sightings
from routewatch.fuse.identify import UNKNOWN, LastSeen, identify_dark
from routewatch.fuse.io import read_detections_geojson, write_result
from routewatch.model import Route, Site, SiteKind, Vessel
from routewatch.sources.ais.schema import conform

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


def test_dark_identification_rules():
    base = dict(length_m=120.0, width_m=18.0, lon=130.29, lat=42.23, time=T, site="rajin", vessels=VESSELS)
    far = {"angara": LastSeen(T - timedelta(hours=2), 133.07, 42.74)}  # Vostochny, 200+ km away 2 h ago
    r = identify_dark(**base, routes=ROUTES, last_seen=far)
    assert r.probabilities["angara"] == 0.0 and "unreachable" in r.reasons["angara"]
    r2 = identify_dark(**base, routes=ROUTES, seen_elsewhere={"angara", "lady_r"})
    assert r2.probabilities["angara"] == 0.0 and r2.probabilities["lady_r"] == 0.0
    r3 = identify_dark(**{**base, "length_m": None, "width_m": None}, routes={})
    assert r3.best is None  # nothing to compare: no silent guess
    assert abs(sum(r3.probabilities.values()) - 1) < 1e-9


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
    assert feat["properties"]["status"] == "dark" and UNKNOWN in feat["properties"]["probabilities"]
    write_result(res, tmp_path / "fused.csv")
    assert pl.read_csv(tmp_path / "fused.csv").height == 1
