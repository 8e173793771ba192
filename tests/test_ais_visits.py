"""Port visits and gaps on hand-built tracks with known answers, by day batches and on a Dask LocalCluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from pyproj import Geod
from shapely.geometry import box

from routewatch.analysis.gaps import GapConfig, cues_frame, visits_and_gaps
from routewatch.analysis.port_visits import VisitConfig, port_visits
from routewatch.model import Site, SiteKind
from routewatch.sources.ais.partitions import iter_days, write_positions
from routewatch.sources.ais.records import gap_rows, visit_records
from routewatch.sources.ais.schema import conform

SITES = {
    "rajin": Site("rajin", "Rajin", SiteKind.PORT, box(130.265, 42.215, 130.31, 42.25)),
    "vostochny": Site("vostochny", "Vostochny", SiteKind.PORT, box(133.02, 42.71, 133.10, 42.76)),
}
T0 = datetime(2024, 1, 1, tzinfo=UTC)
KM_LON = 1 / (111.32 * 0.7408)  # degrees of longitude per km at 42.23 N


class Track:
    def __init__(self, mmsi: int, t: datetime = T0):
        self.mmsi, self.t, self.rows = mmsi, t, []

    def run(self, n: int, lon: float, lat: float, dlon: float = 0.0, sog: float = 0.0, every_min: float = 6):
        for i in range(n):
            self.rows.append({"mmsi": self.mmsi, "timestamp": self.t, "lon": lon + i * dlon, "lat": lat,
                              "sog_kn": sog, "source": "hand", "line": len(self.rows) + 1})
            self.t += timedelta(minutes=every_min)
        return self

    def silent(self, hours: float):
        self.t += timedelta(hours=hours)
        return self


def frame(*tracks: Track) -> pl.DataFrame:
    return conform(pl.DataFrame([r for t in tracks for r in t.rows])).sort("mmsi", "timestamp")


def by_day(df: pl.DataFrame) -> list[pl.DataFrame]:
    parts = df.with_columns(d=pl.col("timestamp").dt.date()).partition_by("d", as_dict=True, include_key=False)
    return [parts[k] for k in sorted(parts)]


def call_at_rajin(mmsi=1, hours_in_port=10.0):
    # east of the box edge (130.31) at 10 kn, heading west, stop inside, then leave east
    tr = Track(mmsi).run(20, 130.31 + 5 * KM_LON, 42.23, dlon=-0.3 * KM_LON, sog=10.0)
    tr.run(int(hours_in_port * 10), 130.29, 42.23, sog=0.0)
    return tr.run(30, 130.30, 42.23, dlon=0.3 * KM_LON, sog=10.0)


def test_one_call_with_entry_stop_exit_is_level_four_with_known_times():
    tr = call_at_rajin()
    v = port_visits([frame(tr)], SITES)
    assert v.height == 1
    r = v.row(0, named=True)
    assert (r["site"], r["entry"], r["exit"], r["stop"], r["gap"], r["level"]) == ("rajin", True, True, True, False, 4)
    # entry: first position within 1 km of the edge: 130.31 + (5 - 0.3 i) km <= 1 km -> i = 14
    assert r["start"] == T0 + timedelta(minutes=6 * 14)
    # exit at 2 km: first position beyond, 130.30 + 0.3 k km > 130.31 + 2 km -> the visit ends on the one before
    last_in = next(x for x in reversed(tr.rows) if (x["lon"] - 130.31) / KM_LON <= 2.0)
    assert r["end"] == last_in["timestamp"]


def test_a_lone_impossible_fix_does_not_end_or_start_a_call():
    """A moored ship with one fix 500 km off (3,000 kn there and back: spoofed or garbled) had made two level-4
    calls, each "departure seen"; one fix inside a port while the ship is at sea had made a call. A ship that
    alternates between two places (two transmitters on one MMSI) is not taken for lone fixes."""
    moored = Track(11).run(40, 130.29, 42.23)
    moored.run(1, 128.0, 38.0).run(40, 130.29, 42.23)
    v = port_visits([frame(moored)], SITES)
    assert v.height == 1 and v["positions"][0] == 81
    at_sea = Track(12).run(20, 131.5, 42.0, sog=12.0).run(1, 130.29, 42.23, sog=0.0).run(20, 131.5, 42.0, sog=12.0)
    assert port_visits([frame(at_sea)], SITES).height == 0
    jitter = Track(13).run(20, 130.29, 42.23)  # a fix 3 km off for a minute: jitter, below JUMP_M, not removed
    jitter.run(1, 130.29 + 3 * KM_LON, 42.23, every_min=1).run(20, 130.29, 42.23)
    assert port_visits([frame(jitter)], SITES).height == 1
    alternating = Track(14)
    for _ in range(20):
        alternating.run(1, 130.29, 42.23, every_min=5).run(1, 133.5, 42.23, every_min=5)
    assert port_visits([frame(alternating)], SITES).height > 1  # not hidden: each transmitter's fixes stay
    # the gaps see every fix: one in a silence still shows the transponder was on
    visits, gaps = visits_and_gaps([frame(moored)], SITES, VisitConfig(), GapConfig(min_gap_h=0.15))  # 9 min
    assert gaps.height == 0 and visits.height == 1


def test_a_lone_impossible_fix_that_ends_a_day_does_not_end_the_call():
    """The day batches of a scan: a jump as a ship's last fix of a day has no next fix in its batch to agree with
    the one before, and it had closed the call ("departure seen") and opened another the next day. A ship that
    really moves on (a run of fixes there) still leaves."""
    day1_end = T0.replace(hour=23, minute=0)
    moored = Track(21, day1_end - timedelta(hours=4)).run(40, 130.29, 42.23)  # to 23:00
    moored.run(1, 128.0, 38.0, every_min=60)  # 23:00, 500 km off: the day's last fix
    moored.run(40, 130.29, 42.23)  # from midnight on, moored as before
    one_batch = port_visits([frame(moored)], SITES)
    days = by_day(frame(moored))
    assert len(days) == 2 and days[0]["lon"][-1] == 128.0  # the jump is the first day's last fix
    by_days = port_visits(days, SITES)
    assert by_days.height == 1 and by_days.equals(one_batch)
    assert by_days["positions"][0] == 81 and not by_days["exit"][0]
    gone = Track(22, day1_end - timedelta(hours=4)).run(40, 130.29, 42.23)
    gone.run(1, 128.0, 38.0, every_min=60).run(5, 128.0, 38.0)  # the first fix of a run: the ship is there now
    v = port_visits(by_day(frame(gone)), SITES)
    assert v.height == 1 and v["positions"][0] == 41  # left one fix later than a whole scan says (40)
    assert port_visits([frame(gone)], SITES)["positions"][0] == 40


def test_hysteresis_keeps_one_visit_when_swinging_between_entry_and_exit_distance():
    tr = Track(2).run(10, 130.31 + 0.5 * KM_LON, 42.23, sog=0.1)
    for _ in range(5):  # 1.5 km: outside entry, inside exit -> still in port
        tr.run(5, 130.31 + 1.5 * KM_LON, 42.23, sog=0.1).run(5, 130.31 + 0.5 * KM_LON, 42.23, sog=0.1)
    tr.run(5, 130.31 + 3 * KM_LON, 42.23, sog=8)
    v = port_visits([frame(tr)], SITES)
    assert v.height == 1 and v["exit"][0] and not v["entry"][0]


def test_day_batches_give_the_same_visits_as_one_batch_and_in_port_gap_is_seen():
    tr = call_at_rajin(3, hours_in_port=30)
    tr2 = Track(4, T0 + timedelta(hours=20)).run(5, 130.28, 42.23).silent(10).run(40, 130.28, 42.23)
    df = frame(tr, tr2)
    whole = port_visits([df], SITES)
    days = port_visits(by_day(df), SITES)
    assert len(by_day(df)) == 2  # the 30 h call crosses midnight
    assert whole.equals(days)
    g = days.filter(pl.col("mmsi") == 4).row(0, named=True)
    assert g["gap"] and not g["entry"] and g["positions"] == 45


def test_long_silence_splits_visit_and_min_level_filters():
    tr = Track(5).run(5, 130.28, 42.23).silent(100).run(5, 130.28, 42.23)
    assert port_visits([frame(tr)], SITES).height == 2
    passing = Track(6).run(100, 130.31 + 5 * KM_LON, 42.23, dlon=-0.3 * KM_LON, sog=10)  # sails through, no stop
    assert port_visits([frame(passing)], SITES, VisitConfig(min_level=2)).height == 0


def test_gap_context_and_reachable_sites():
    # dark for 30 h after leaving Rajin, reappears near Vostochny (about 240 km east): both sites reachable
    tr = call_at_rajin(7).silent(30).run(5, 133.2, 42.73, dlon=-0.01, sog=10)
    short = call_at_rajin(8).silent(3).run(3, 131.0, 42.23, sog=10)  # 3 h silence: under the threshold
    _, gaps = visits_and_gaps(by_day(frame(tr, short)), SITES, None, GapConfig(min_gap_h=6, max_speed_kn=18))
    assert gaps.height == 1
    g = gaps.row(0, named=True)
    assert g["mmsi"] == 7 and g["duration_h"] == pytest.approx(30 + 0.1, abs=1e-6)
    before = next(r for r in reversed(tr.rows) if r["lon"] < 131)
    metres = Geod(ellps="WGS84").inv(before["lon"], before["lat"], 133.2, 42.73)[2]
    assert g["distance_nm"] == pytest.approx(metres / 1852, rel=0.005)  # sphere vs ellipsoid
    assert g["implied_speed_kn"] == pytest.approx(g["distance_nm"] / g["duration_h"])
    cues = cues_frame(gaps)
    assert sorted(cues["site"]) == ["rajin", "vostochny"]
    vo = cues.filter(pl.col("site") == "vostochny").row(0, named=True)
    assert g["start"] < vo["window_start"] < vo["window_end"] <= g["end"]
    # at 4 kn the ~127 nm take 32 h, more than the 30 h gap: nothing is reachable
    _, slow = visits_and_gaps([frame(tr)], SITES, None, GapConfig(min_gap_h=6, max_speed_kn=4))
    assert cues_frame(slow).height == 0
    rows, ev = gap_rows(gaps, {7: "angara"})
    assert rows[0]["vessel"] == "angara" and rows[0]["reachable_sites"][0]["site"] in SITES
    assert ev[0].attributes["before"].startswith("hand:")


def test_visit_records_carry_vessel_and_evidence():
    v = port_visits([frame(call_at_rajin(273210440))], SITES)
    visits, sightings, evidence = visit_records(v, {273210440: "angara"}, {273210440: 120.0})
    assert visits[0].vessel == "angara" and visits[0].source_kinds == ("ais",)
    assert sightings[0].event == "ais_visit" and sightings[0].time_end == visits[0].end
    assert evidence[0].attributes["mmsi"] == 273210440 and evidence[0].attributes["first"].startswith("hand:")
    assert visit_records(v, {}, {})[0][0].vessel is None
    assert visit_records(v, {}, {})[0][0].id == visits[0].id


@pytest.mark.slow
def test_dask_local_cluster_matches_single_machine(tmp_path):
    distributed = pytest.importorskip("distributed")
    tracks = [call_at_rajin(m, hours_in_port=20 + m) for m in range(10, 16)]
    tracks.append(call_at_rajin(99).silent(30).run(5, 133.05, 42.73))
    df = frame(*tracks)
    write_positions(tmp_path, df, "test")
    local = visits_and_gaps((f for _, f in iter_days(tmp_path)), SITES)
    from routewatch.sources.ais.parallel import visits_and_gaps_dask

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        visits, gaps = visits_and_gaps_dask(client, tmp_path, SITES, buckets=3)
    assert visits.height == 8
    assert visits.equals(local[0].sort("mmsi", "start"))
    assert gaps.drop("cues").equals(local[1].drop("cues"))
    # a second receiver heard every position at the same instant, 20 m off: the evidence cited (file and line of
    # a visit's first and last position) is the same with Dask as without (ties had been broken at random)
    write_positions(tmp_path, df.with_columns(pl.col("lat") + 2e-4, pl.lit("rx2").alias("source")), "rx2")
    local = visits_and_gaps((f for _, f in iter_days(tmp_path)), SITES)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        visits, _ = visits_and_gaps_dask(client, tmp_path, SITES, buckets=3)
    assert visits.equals(local[0].sort("mmsi", "start"))


@pytest.mark.parametrize("hours", [1, 5, 7])
def test_any_batch_cut_gives_the_same_visits_and_gaps_as_one_batch(hours):
    """Vessels missing from whole batches, visits and gaps spanning cuts: the carried rows must join them up."""
    a = call_at_rajin(11, hours_in_port=40)
    b = Track(12, T0 + timedelta(hours=3)).run(10, 130.28, 42.23).silent(30).run(10, 130.28, 42.23)
    c = Track(13).run(30, 130.40, 42.23, dlon=0.001, sog=12.0).silent(20).run(30, 130.29, 42.24)
    df = frame(a, b, c)
    cut = df.with_columns(k=(pl.col("timestamp").dt.epoch("us") // (hours * 3_600_000_000)))
    parts = [p.drop("k") for _, p in sorted(cut.partition_by("k", as_dict=True).items())]
    assert len(parts) >= 2 and any(p["mmsi"].n_unique() < 3 for p in parts)
    whole_v, whole_g = visits_and_gaps([df], SITES)
    cut_v, cut_g = visits_and_gaps(parts, SITES)
    assert whole_v.equals(cut_v) and whole_g.equals(cut_g)
    assert whole_v.height >= 3 and whole_g.height == 2


def test_a_site_beside_the_antimeridian_sees_ships_on_both_sides_of_it():
    """Longitudes wrap: a ship at 179.999 deg W is 500 m from a berth at 179.97-179.995 deg E, not half a world."""
    from routewatch.analysis.port_visits import SiteIndex

    site = Site("suva-east", "berth", SiteKind.BERTH, box(179.97, -16.81, 179.995, -16.79))
    index = SiteIndex({"suva-east": site}, 2000)
    found, dist = index.lookup(np.array([-179.999, 179.999, 179.98, -179.9]), np.array([-16.8] * 4))
    geod = Geod(ellps="WGS84")
    assert found.tolist() == [0, 0, 0, -1]
    assert dist[0] == pytest.approx(geod.inv(179.995, -16.8, -179.999, -16.8)[2], abs=60)
    assert dist[1] == pytest.approx(geod.inv(179.995, -16.8, 179.999, -16.8)[2], abs=60) and dist[2] == 0


def test_a_site_of_several_degrees_is_indexed_in_little_memory_with_exact_distances():
    """A 4 x 4 degree transfer area (a concave polygon with an island) gets a raster of bounded size, yet the
    distances of positions inside it, near its edge and outside it are those of the polygon itself."""
    import tracemalloc

    import shapely
    from shapely.affinity import affine_transform
    from shapely.geometry import Polygon

    from routewatch.analysis.port_visits import EARTH_M_PER_DEG, SiteIndex

    area = Polygon([(128.0, 38.0), (132.0, 38.3), (131.5, 42.0), (130.0, 40.5), (128.2, 42.0)],
                   [[(129.0, 39.0), (129.5, 39.0), (129.5, 39.4), (129.0, 39.4)]])
    sites = {"sts": Site("sts", "transfer area", SiteKind.ANCHORAGE, area)}
    tracemalloc.start()
    index = SiteIndex(sites, 2000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert index.grid.nbytes + sum(r.dist.nbytes for r in index.rasters) < 24 * 2**20 and peak < 64 * 2**20

    lon0, lat0 = sites["sts"].centroid_lonlat
    kx = EARTH_M_PER_DEG * np.cos(np.radians(lat0))
    local = affine_transform(area, [kx, 0, 0, EARTH_M_PER_DEG, -lon0 * kx, -lat0 * EARTH_M_PER_DEG])
    rng = np.random.default_rng(7)
    edge = np.concatenate([shapely.get_coordinates(shapely.line_interpolate_point(ring, rng.uniform(0, 1, n),
                                                                                  normalized=True))
                           for ring, n in ((local.exterior, 2_000), (local.interiors[0], 500))])
    xy = np.concatenate([
        np.column_stack([(rng.uniform(127.8, 132.2, 3_000) - lon0) * kx,
                         (rng.uniform(37.8, 42.2, 3_000) - lat0) * EARTH_M_PER_DEG]),  # all over the area
        edge + rng.normal(0, 2000, edge.shape),  # within a few km either side of the edge
    ])
    lon, lat = xy[:, 0] / kx + lon0, xy[:, 1] / EARTH_M_PER_DEG + lat0
    # 990 m and 1010 m east of the west edge near its south end (two degrees from the centroid's latitude, where
    # the centroid's frame is 3 % off east-west), and far away
    west_lat = 38.6
    west_lon = 128.0 + (128.2 - 128.0) * (west_lat - 38.0) / (42.0 - 38.0)
    k_here = EARTH_M_PER_DEG * np.cos(np.radians(west_lat))
    slope = np.hypot(1.0, (128.2 - 128.0) * k_here / ((42.0 - 38.0) * EARTH_M_PER_DEG))  # the edge leans a little
    lon = np.concatenate([lon, [west_lon - 990 * slope / k_here, west_lon - 1010 * slope / k_here, 120.0]])
    lat = np.concatenate([lat, [west_lat, west_lat, lat0]])
    found, dist = index.lookup(lon, lat)

    def at_own_latitude(lo: float, la: float) -> float:  # the reference: a frame at the position's latitude
        k = EARTH_M_PER_DEG * np.cos(np.radians(la))
        poly = affine_transform(area, [k, 0, 0, EARTH_M_PER_DEG, -lon0 * k, -lat0 * EARTH_M_PER_DEG])
        return float(poly.distance(shapely.Point((lo - lon0) * k, (la - lat0) * EARTH_M_PER_DEG)))

    exact = np.array([at_own_latitude(lo, la) for lo, la in zip(lon, lat, strict=True)])
    covered = np.isfinite(dist)
    assert (found[covered] == 0).all() and (found[~covered] == -1).all()
    assert (exact[~covered] > 2000).all()  # left out only beyond the largest distance asked for
    assert ((exact > 0) & (exact <= 2000)).sum() > 500 and (exact == 0).sum() > 1_000
    # within the largest distance asked for (where the entry and exit thresholds lie) the distances are exact;
    # beyond it they are the raster's, never below it
    asked = covered & (exact <= 2000)
    np.testing.assert_allclose(dist[asked], exact[asked], rtol=1e-3, atol=1.0)
    assert (dist[covered & (exact > 2000)] > 2000).all()
    assert dist[-3] == pytest.approx(990, abs=2) and dist[-2] == pytest.approx(1010, abs=2)
    assert found[-1] == -1


def test_a_site_split_at_the_antimeridian_is_one_place_for_centre_cues_visits_and_fusion():
    """Drawn as two boxes either side of 180 deg, a site had its centre at 0 deg and a radius of half the globe:
    every gap on Earth could reach it. Its centre is on the antimeridian now; only gaps near it are cued, ships at
    either half are inside, and fusion's distance to it is metres, not thousands of km."""
    from shapely import wkt

    from routewatch.analysis.port_visits import SiteIndex
    from routewatch.fuse.identify import site_distances_m

    split = Site("span", "split", SiteKind.ANCHORAGE, wkt.loads(
        "MULTIPOLYGON(((179.9 50, 180 50, 180 50.05, 179.9 50.05, 179.9 50)),"
        "((-180 50, -179.9 50, -179.9 50.05, -180 50.05, -180 50)))"))
    lon0, lat0 = split.centroid_lonlat
    assert abs(abs(lon0) - 180.0) < 1e-9 and lat0 == pytest.approx(50.025)
    found, dist = SiteIndex({"span": split}, 2000).lookup(np.array([179.95, -179.95, -179.99, -179.88, 179.5]),
                                                           np.array([50.02] * 5))
    assert found.tolist()[:4] == [0, 0, 0, 0] and found[4] == -1
    assert dist[3] == pytest.approx(0.02 * 111_320 * np.cos(np.radians(50.02)), rel=0.01)
    assert site_distances_m(split.geometry, np.array([-179.95, 179.5]), np.array([50.02, 50.02])).tolist()[0] == 0.0
    # dark 72 h off Korea (far beyond 72 h at 18 kn from 180 deg) and 10 h beside the site: only the second is cued
    korea = Track(1).run(5, 129.5, 35.0, dlon=0.01, sog=10).silent(72).run(5, 129.9, 35.2, dlon=0.01, sog=10)
    near = Track(2).run(5, 179.7, 50.1, dlon=0.01, sog=10).silent(10).run(5, -179.7, 50.1, dlon=0.01, sog=10)
    _, gaps = visits_and_gaps([frame(korea, near)], {"span": split}, None, GapConfig(min_gap_h=6, max_speed_kn=18))
    cues = cues_frame(gaps)
    assert gaps.height == 2 and cues["mmsi"].to_list() == [2]


def test_a_berth_inside_its_port_and_a_site_beside_a_port_each_keep_their_own_visits():
    """The nearest site had taken each position: a berth inside its port got its visit or the port did, by the
    watchlist's order, and a ship that left a port for a spot 2.2 km from it (1.1 km from another site) stayed in
    the port for two days. Sites that can compete for a position are scanned apart."""
    berth = Site("berth", "berth 1", SiteKind.BERTH, box(130.28, 42.225, 130.29, 42.232))
    tr = Track(30).run(20, 130.31 + 5 * KM_LON, 42.23, dlon=-0.3 * KM_LON, sog=10.0)  # into the port from the east
    tr.run(10, 130.30, 42.23, sog=3.0).run(80, 130.285, 42.228, sog=0.0)  # across the port, 8 h at the berth
    tr.run(30, 130.30, 42.23, dlon=0.3 * KM_LON, sog=10.0)  # and out east
    cols = ["site", "start", "end", "entry", "exit", "stop"]
    one = port_visits([frame(tr)], {"rajin": SITES["rajin"], "berth": berth}).sort("site").select(cols)
    other = port_visits([frame(tr)], {"berth": berth, "rajin": SITES["rajin"]}).sort("site").select(cols)
    assert one.equals(other) and one["site"].to_list() == ["berth", "rajin"]
    at_berth, at_port = one.row(0, named=True), one.row(1, named=True)
    assert at_port["start"] < at_berth["start"] < at_berth["end"] < at_port["end"] and at_port["exit"]
    assert at_berth["stop"] and at_port["stop"]

    beyond = Site("beyond", "anchorage", SiteKind.ANCHORAGE,
                  box(130.31 + 3.3 * KM_LON, 42.22, 130.31 + 3.5 * KM_LON, 42.24))
    tr = Track(31).run(20, 130.31 + 0.5 * KM_LON, 42.23, sog=0.0)  # in the port, then 2.2 km east of it
    tr.run(480, 130.31 + 2.2 * KM_LON, 42.23, sog=0.0).run(20, 130.31 + 20 * KM_LON, 42.23, sog=10.0)
    alone = port_visits([frame(tr)], {"rajin": SITES["rajin"]})
    both = port_visits([frame(tr)], {"rajin": SITES["rajin"], "beyond": beyond})
    assert alone["end"].to_list() == both.filter(pl.col("site") == "rajin")["end"].to_list()
    assert alone["end"][0] == T0 + timedelta(minutes=6 * 19)


def test_a_gap_names_the_nearest_of_all_sites_when_they_are_scanned_in_layers():
    beyond = Site("beyond", "anchorage", SiteKind.ANCHORAGE,
                  box(130.31 + 3.3 * KM_LON, 42.22, 130.31 + 3.5 * KM_LON, 42.24))
    tr = Track(32).run(20, 130.31 + 0.5 * KM_LON, 42.23, sog=0.0).run(5, 130.31 + 2.2 * KM_LON, 42.23, sog=0.0)
    tr.silent(12).run(5, 130.31 + 0.5 * KM_LON, 42.23, sog=0.0)
    _, gaps = visits_and_gaps([frame(tr)], {"rajin": SITES["rajin"], "beyond": beyond}, None, GapConfig(min_gap_h=6))
    assert gaps.select("site_before", "site_after").rows() == [("beyond", "rajin")]


def test_a_visit_takes_the_identity_its_ship_broadcast_then_not_its_latest():
    """MMSI 51 called as INNOCENT and only later broadcast GAMMA's IMO; MMSI 50 called as GAMMA and later took
    another identity. The latest identity, applied to every visit, had made 51's call GAMMA's (and an origin-only
    trip) and left 50's unnamed. Now each call has the identity of its time, and the other is said."""
    from routewatch.model import Vessel
    from routewatch.sources.ais.registry import STATIC_SCHEMA, mmsi_to_vessel

    def rec(mmsi, name, imo, first, last):
        return {"mmsi": mmsi, "name": name, "imo": imo, "call_sign": None, "length_m": None, "beam_m": None,
                "ship_type": None, "first_seen": T0 + timedelta(days=first), "last_seen": T0 + timedelta(days=last),
                "source": "x.csv", "line": 1}

    statics = pl.DataFrame([rec(50, "GAMMA", 9179842, 9, 10), rec(50, "SEA STAR", 9999991, 12, 20),
                            rec(51, "INNOCENT", 1234567, 9, 10), rec(51, "GAMMA", 9179842, 12, 20),
                            {**rec(51, "GAMMA", None, 9.5, 9.6), "imo": None}], schema=STATIC_SCHEMA)
    vessels = {"gamma": Vessel("gamma", "GAMMA", imo="9179842")}
    reg = statics.sort("last_seen").group_by("mmsi").agg(
        *(pl.col(f).drop_nulls().last() for f in ("name", "imo", "call_sign", "length_m", "beam_m", "ship_type")))
    links = mmsi_to_vessel(vessels, reg, statics)
    assert dict(links) == {51: "gamma"}  # the latest identities, as before
    call = (T0 + timedelta(days=9.8), T0 + timedelta(days=10.2))
    assert links.at(50, *call) == "gamma" and links.at(51, *call) is None
    assert links.at(51, T0 + timedelta(days=15)) == "gamma" and links.at(50, T0 + timedelta(days=15)) is None
    assert links.as_of(T0 + timedelta(days=10)) == {50: "gamma"} and links.as_of(T0 + timedelta(days=13)) == {51: "gamma"}
    visits = pl.DataFrame({"mmsi": [50, 51], "site": ["rajin", "rajin"], "start": [call[0]] * 2, "end": [call[1]] * 2,
                           "positions": [9, 9], "entry": [True] * 2, "exit": [True] * 2, "stop": [True] * 2,
                           "gap": [False] * 2, "level": [4, 4], "confidence": [0.95] * 2,
                           "first_source": ["x"] * 2, "first_line": [1] * 2, "last_source": ["x"] * 2,
                           "last_line": [2] * 2})
    _, sightings, _ = visit_records(visits, links)
    assert [s.vessel for s in sightings] == ["gamma", None]
    # two identities heard with no time (or at one instant), one of them a watched ship's: no crash, that one
    untimed = pl.DataFrame([{**rec(60, "GAMMA", 9179842, 0, 0), "first_seen": None, "last_seen": None},
                            {**rec(60, "OTHER", 1234567, 0, 0), "first_seen": None, "last_seen": None},
                            rec(61, "GAMMA", 9179842, 5, 5), rec(61, "OTHER", 1234567, 5, 5)], schema=STATIC_SCHEMA)
    links = mmsi_to_vessel(vessels, None, untimed)
    assert links.at(60, T0) == "gamma" and links.at(61, T0 + timedelta(days=5)) == "gamma"
    assert links.at(61, T0) == "gamma" and links.as_of(T0) == {60: "gamma", 61: "gamma"}
    assert "also broadcast the identity of gamma" in sightings[1].detail


def test_layers_scan_only_the_ships_near_them_and_give_what_each_site_alone_gives():
    """The extra layers (a port's berths) scan only the ships near their sites, carrying the others' last
    positions: over days, with many ships far away, a ship stopped outside the port the day before it comes in,
    and calls across midnight, the visits are those each site gives scanned alone."""
    berths = {f"b{k}": Site(f"b{k}", f"berth {k}", SiteKind.BERTH,
                            box(130.27 + 0.008 * k, 42.222, 130.275 + 0.008 * k, 42.226)) for k in range(4)}
    sites = {"rajin": SITES["rajin"], **berths, "vostochny": SITES["vostochny"]}
    tracks = [Track(100 + k).run(300, 140.0 + 0.01 * k, 30.0, dlon=0.001, sog=12.0, every_min=20) for k in range(40)]
    waits = Track(7, T0 + timedelta(hours=20)).run(30, 130.31 + 5 * KM_LON, 42.23, sog=0.1)  # stopped outside
    waits.run(10, 130.31 + 2 * KM_LON, 42.225, dlon=-0.8 * KM_LON, sog=6.0)  # in, across midnight
    waits.run(60, 130.2725, 42.224, sog=0.0).run(20, 130.29, 42.23, dlon=0.8 * KM_LON, sog=8.0)
    hopper = Track(8, T0 + timedelta(hours=30)).run(20, 130.2775 + 0.008, 42.224, sog=0.0)
    hopper.run(20, 130.2775 + 0.016, 42.224, sog=0.0).silent(30).run(20, 133.05, 42.73, sog=0.0)
    # seen far off (another grid cell) late on day 1, next inside a berth after midnight: its entry is seen
    jumper = Track(9, T0 + timedelta(hours=22)).run(5, 131.0, 42.23, sog=10.0).silent(2)
    jumper.run(30, 130.2725, 42.224, sog=0.0).run(10, 131.0, 42.23, sog=10.0)
    batches = by_day(frame(*tracks, waits, hopper, jumper))
    assert len(batches) >= 3
    cols = ["mmsi", "site", "start", "end", "entry", "exit", "stop", "gap", "level"]
    together = port_visits(batches, sites, VisitConfig(min_level=1)).select(cols).sort("mmsi", "site", "start")
    alone = pl.concat([port_visits(batches, {k: s}, VisitConfig(min_level=1)) for k, s in sites.items()])
    assert together.height >= 6 and together.equals(alone.select(cols).sort("mmsi", "site", "start"))
    assert {"b0", "b1", "b2", "rajin", "vostochny"} <= set(together["site"])
    assert together.filter((pl.col("mmsi") == 9) & (pl.col("site") == "b0"))["entry"].to_list() == [True]


def test_fusion_places_a_detection_against_the_true_centre_of_a_site_split_at_180_deg():
    """A route from a site split at the antimeridian: its corridor ran from 0 deg (the raw centroid), so a hull
    inland in Siberia was "between" the route's ports instead of away from them."""
    from shapely import wkt

    from routewatch.fuse.identify import IdentifyConfig, _place
    from routewatch.model import Route

    split = Site("span", "split", SiteKind.PORT, wkt.loads(
        "MULTIPOLYGON(((179.9 50, 180 50, 180 50.05, 179.9 50.05, 179.9 50)),"
        "((-180 50, -179.9 50, -179.9 50.05, -180 50.05, -180 50)))"))
    other = Site("other", "other", SiteKind.PORT, box(179.0, 50.3, 179.05, 50.35))
    routes = {"r": Route("r", "span to other", origin=("span",), destination=("other",), vessels=("v",))}
    where, _ = _place("v", 100.0, 60.0, None, routes, {"span": split, "other": other}, IdentifyConfig())
    assert where == "away"
    where, _ = _place("v", 179.5, 50.2, None, routes, {"span": split, "other": other}, IdentifyConfig())
    assert where == "between"


def test_waiting_in_another_sites_band_is_outside_the_site_left_and_a_skipped_ships_stop_is_carried():
    """A and B 4.5 km apart (one layer): a ship that left A and waits 1.5 km off B, between B's entry and exit
    distances, had stayed "in" A (the band kept whatever state came before). And a ship a berth layer did not
    scan on its day of waiting stopped (0.1 kn, then 0.3 kn) keeps its stop when it lies at the berth next day
    with no speed reported, as the full scan keeps it."""
    a = Site("A", "port A", SiteKind.PORT, box(130.265, 42.215, 130.31, 42.25))
    b = Site("B", "anchorage B", SiteKind.ANCHORAGE, box(130.31 + 6 * KM_LON, 42.22, 130.31 + 6.5 * KM_LON, 42.24))
    tr = Track(1).run(10, 130.29, 42.23, sog=0.0).run(60, 130.31 + 4.5 * KM_LON, 42.23, sog=0.0)
    together = port_visits([frame(tr)], {"A": a, "B": b}, VisitConfig(min_level=1)).filter(pl.col("site") == "A")
    alone = port_visits([frame(tr)], {"A": a}, VisitConfig(min_level=1))
    assert together["end"].to_list() == alone["end"].to_list() == [T0 + timedelta(minutes=6 * 9)]

    berth = Site("b0", "berth", SiteKind.BERTH, box(130.27, 42.222, 130.275, 42.226))
    w = Track(7, T0 + timedelta(hours=20)).run(10, 130.45, 42.23, sog=0.1, every_min=10)
    w.run(1, 130.45, 42.23, sog=0.3).silent(2)
    w.rows += [{"mmsi": 7, "timestamp": w.t + timedelta(hours=k), "lon": 130.2725, "lat": 42.224,
                "sog_kn": float("nan"), "source": "hand", "line": 100 + k} for k in range(3)]
    far = [Track(100 + k).run(60, 140.0 + k, 30.0, sog=10.0, every_min=60) for k in range(4)]
    days = by_day(frame(w, *far))
    cols = ["site", "start", "end", "stop", "level"]
    layered = port_visits(days, {"A": a, "b0": berth}, VisitConfig(min_level=1)).filter(pl.col("site") == "b0")
    single = port_visits(days, {"b0": berth}, VisitConfig(min_level=1))
    assert layered.select(cols).equals(single.select(cols)) and single["stop"].to_list() == [True]
    # but not across a silence over split_h: the full scan starts the ship "not stopped" again
    r = Track(8, T0 + timedelta(hours=2)).run(5, 130.45, 42.23, sog=0.1).silent(96)
    r.rows.append({"mmsi": 8, "timestamp": r.t, "lon": 130.6, "lat": 42.3, "sog_kn": float("nan"), "source": "hand",
                   "line": 50})
    r.t += timedelta(hours=24)  # the next day: the day of the lone report is one the berth layer skips
    r.rows += [{"mmsi": 8, "timestamp": r.t + timedelta(hours=k), "lon": 130.2725, "lat": 42.224,
                "sog_kn": float("nan"), "source": "hand", "line": 60 + k} for k in range(3)]
    far = [Track(100 + k).run(150, 140.0 + k, 30.0, sog=10.0, every_min=60) for k in range(4)]
    days = by_day(frame(r, *far))
    layered = port_visits(days, {"A": a, "b0": berth}, VisitConfig(min_level=1)).filter(pl.col("site") == "b0")
    single = port_visits(days, {"b0": berth}, VisitConfig(min_level=1))
    assert layered.select(cols).equals(single.select(cols)) and single["stop"].to_list() == [False]
