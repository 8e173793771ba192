"""The store on SQLite and PostgreSQL: migrations, round trips, idempotent upserts, windows, frames, spatial indexes."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import polars as pl
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from shapely.geometry import box
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from routewatch.model import (
    SENSOR_DETECTION,
    Activity,
    AggregateObservation,
    DetectionModel,
    Evidence,
    EvidenceKind,
    Look,
    Mode,
    Route,
    Scene,
    Sighting,
    Site,
    SiteKind,
    SourceKind,
    Status,
    Trip,
    Vessel,
    Visit,
)
from routewatch.store import Store, StoreError
from routewatch.store.engine import head_revision
from routewatch.store.schema import metadata
from routewatch.watchlist import Watchlist

T0 = datetime(2024, 2, 1, tzinfo=UTC)
SPATIAL_EXTRAS = ("site_rtree", "scene_rtree", "spatial_ref_sys")  # R*Tree (and its shadow tables), PostGIS


def watchlist() -> Watchlist:
    sites = {
        "rajin": Site("rajin", "Rajin", SiteKind.PORT, box(130.265, 42.215, 130.31, 42.25), "KP", sources=("a",)),
        "vostochny": Site("vostochny", "Vostochny", SiteKind.PORT, box(133.02, 42.71, 133.10, 42.76), "RU"),
    }
    routes = {"rajin-russia": Route("rajin-russia", "Rajin to Russia", ("rajin",), ("vostochny",), Mode.SEA,
                                    ("angara",), 14.0, 8.0, "note", ("src",))}
    vessels = {"angara": Vessel("angara", "ANGARA", imo="9179842", length_m=120.0, sources=("x", "y"))}
    return Watchlist(sites=sites, routes=routes, vessels=vessels)


def sighting(i: int, **kw: object) -> Sighting:
    base = dict(id=f"sig-{i}", time=T0 + timedelta(hours=i), source_kind=SourceKind.AIS, site="rajin",
                vessel="angara", lon=130.3, lat=42.23, length_m=118.5, confidence=0.8, evidence_ids=(f"ev-{i}",))
    base.update(kw)
    return Sighting(**base)  # type: ignore[arg-type]


def look(i: int, **kw: object) -> Look:
    base = dict(id=f"look-{i}", site="rajin", time=T0 + timedelta(days=i), sensor="sentinel-1",
                usable_fraction=0.75, detection=SENSOR_DETECTION["sentinel-1"], source_kind=SourceKind.IMAGE,
                scene_id=None, evidence_ids=(f"ev-scene-{i}", f"ev-chip-{i}"), vessels_seen=0)
    base.update(kw)
    return Look(**base)  # type: ignore[arg-type]


@pytest.mark.filterwarnings("ignore:Did not recognize type .geometry.")
def test_migration_matches_metadata_and_reopen_is_a_no_op(store: Store, db_url: str) -> None:
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert ctx.get_current_revision() == head_revision()
        diffs = [d for d in compare_metadata(ctx, metadata)
                 if not (d[0] == "remove_table" and d[1].name.startswith(SPATIAL_EXTRAS))
                 and not (d[0] == "remove_column" and d[3].name == "geom")
                 and not (d[0] == "remove_index" and d[1].name in {"ix_sites_geom", "ix_scenes_geom",
                                                                    "idx_spatial_ref_sys"})]
        assert diffs == []
    store.add_evidence([Evidence("ev-1", EvidenceKind.REPORT, "kept")])
    again = Store.open(db_url)  # already at head: nothing changes, nothing lost
    assert again.evidence(["ev-1"])["ev-1"].description == "kept"
    again.close()


def test_dialect_setup(store: Store) -> None:
    with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
            assert {"site_rtree", "scene_rtree"} <= set(inspect(conn).get_table_names())
        else:
            assert conn.exec_driver_sql("SELECT extname FROM pg_extension WHERE extname = 'postgis'").scalar()
            indexes = {ix["name"] for ix in inspect(conn).get_indexes("sites")}
            assert "ix_sites_geom" in indexes


def test_watchlist_round_trip_and_geometry_columns(store: Store) -> None:
    wl = watchlist()
    assert store.upsert_watchlist(wl) == {"sites": 2, "routes": 1, "vessels": 1}
    assert store.upsert_watchlist(wl) == {"sites": 0, "routes": 0, "vessels": 0}
    sites = store.sites()
    assert set(sites) == {"rajin", "vostochny"}
    for key, site in wl.sites.items():
        got = sites[key]
        assert got.geometry.equals_exact(site.geometry, 1e-12)
        assert (got.name, got.kind, got.country, got.sources) == (site.name, site.kind, site.country, site.sources)
    assert store.routes() == wl.routes
    assert store.vessels() == wl.vessels
    # Moving a site updates its box in the spatial index too.
    moved = replace(wl.sites["rajin"], geometry=box(10.0, 10.0, 10.1, 10.1))
    store.upsert_watchlist(Watchlist(sites={"rajin": moved}))
    assert store.sites_in_bbox((130.0, 42.0, 131.0, 43.0)) == []
    assert store.sites_in_bbox((9.0, 9.0, 11.0, 11.0)) == ["rajin"]
    assert store.sites_in_bbox((0.0, 0.0, 180.0, 60.0)) == ["rajin", "vostochny"]
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            srid, x = conn.execute(text("SELECT ST_SRID(geom), ST_XMin(geom) FROM sites WHERE key = 'rajin'")).one()
        assert (srid, x) == (4326, 10.0)


def test_sync_follows_the_watchlist_file_and_keeps_what_the_api_added(store: Store) -> None:
    """An entry removed from the watchlist file leaves the store (and its spatial index) at the next sync; a
    site added through the web API, or by another workspace's file sharing the store, is not this file's to
    remove; observations at a removed site stay."""
    wl = watchlist()
    mine, theirs = "watchlist:mine", "watchlist:theirs"
    assert store.sync_watchlist(wl, mine) == {}
    api_site = Site("dunai", "Dunai", SiteKind.PORT, box(132.34, 42.87, 132.37, 42.89), "RU")
    store.upsert_watchlist(Watchlist(sites={"dunai": api_site}), added_by="api")
    other = Site("nakhodka", "Nakhodka", SiteKind.PORT, box(132.88, 42.79, 132.92, 42.82), "RU")
    assert store.sync_watchlist(Watchlist(sites={"nakhodka": other}), theirs) == {}
    store.add_sightings([sighting(1, site="vostochny")])
    smaller = Watchlist(sites={"rajin": wl.sites["rajin"]}, routes={}, vessels=wl.vessels)
    assert store.sync_watchlist(smaller, mine) == {"sites": ["vostochny"], "routes": ["rajin-russia"]}
    assert set(store.sites()) == {"rajin", "dunai", "nakhodka"} and store.routes() == {}
    assert store.sites_in_bbox((133.0, 42.7, 133.2, 42.8)) == []
    assert [x.id for x in store.sightings(site="vostochny")] == ["sig-1"]
    assert store.sync_watchlist(smaller, mine) == {}
    assert store.sync_watchlist(wl, mine) == {} and set(store.sites()) == {"rajin", "vostochny", "dunai", "nakhodka"}
    # another file defining the same key: not taken over, said, and its later removal there does not delete it
    clashes: dict[str, list[str]] = {}
    elsewhere = Site("rajin", "Rajin (their box)", SiteKind.PORT, box(1, 1, 2, 2))
    assert store.sync_watchlist(Watchlist(sites={"rajin": elsewhere, "nakhodka": other}), theirs, clashes) == {}
    assert clashes == {"sites": ["rajin"]} and store.sites()["rajin"].name == wl.sites["rajin"].name
    assert store.sync_watchlist(Watchlist(sites={"nakhodka": other}), theirs) == {}
    assert "rajin" in store.sites()


def test_a_store_from_before_the_added_by_column_keeps_its_watchlist(tmp_path) -> None:
    """Upgrading a 0002 store: whether a site came from a file or the API is not known, so a sync keeps it until
    a file lists it (and so takes it on)."""
    from alembic import command

    from routewatch.store.engine import WRITE_OPTION, alembic_config, make_engine

    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = make_engine(url)
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
        command.upgrade(alembic_config(conn), "0002")
        conn.exec_driver_sql("INSERT INTO sites (key, name, kind, geometry_wkt, notes, sources) "
                             "VALUES ('old', 'Old', 'port', 'POINT (1 1)', '', '[]')")
    engine.dispose()
    store = Store.open(url)
    assert set(store.sites()) == {"old"}
    assert store.sync_watchlist(watchlist(), "watchlist:a") == {}  # whose it was is not known: kept
    assert set(store.sites()) == {"old", "rajin", "vostochny"}
    listed = Site("old", "Old", SiteKind.PORT, box(1, 1, 1.1, 1.1))
    store.sync_watchlist(Watchlist(sites={"old": listed}), "watchlist:a")  # claimed when a file lists it ...
    assert store.sync_watchlist(watchlist(), "watchlist:a") == {"sites": ["old"]}  # ... and then the file's
    store.close()


def test_scenes_with_and_without_footprint_and_bbox_filter(store: Store) -> None:
    a = Scene("s1", "sentinel-1", T0, box(130.0, 42.0, 131.0, 43.0), 10.0, None, "file:///a.tif",
              attributes={"orbit": 12, "when": T0})
    b = Scene("s2", "sentinel-2", T0 + timedelta(days=1), None, 10.0, 0.3, simulated=True)
    c = Scene("s3", "sentinel-1", T0 + timedelta(days=2), box(0.0, 0.0, 1.0, 1.0), 10.0)
    assert store.add_scenes([a, b, c]) == 3
    got = {s.id: s for s in store.scenes()}
    assert got["s1"].attributes == {"orbit": 12, "when": T0.isoformat()}  # JSON keeps datetimes as ISO text
    assert got["s2"].footprint is None and got["s2"].simulated and got["s2"].cloud_cover == 0.3
    assert [s.id for s in store.scenes(sensor="sentinel-1")] == ["s1", "s3"]
    assert [s.id for s in store.scenes(since=T0 + timedelta(days=1))] == ["s2", "s3"]
    assert [s.id for s in store.scenes(bbox=(130.5, 42.5, 130.6, 42.6))] == ["s1"]
    assert [s.id for s in store.scenes(bbox=(50.0, 50.0, 51.0, 51.0))] == []
    # a scene removed (its folder moved and added again) goes with its looks and their sightings, and out of the
    # spatial index
    lk = Look("look-a", "rajin", T0, "sentinel-1", 1.0, DetectionModel(60.0, 10.0, 0.9), SourceKind.IMAGE,
                scene_id="s1")
    store.add_looks([lk])
    store.add_sightings([sighting(1, look_id="look-a", time=T0, site="rajin")])
    assert store.remove_scenes(["s1", "nope"]) == 1
    assert [s.id for s in store.scenes()] == ["s2", "s3"] and store.looks() == []
    assert [s.id for s in store.scenes(bbox=(130.5, 42.5, 130.6, 42.6))] == []
    assert all(s.look_id != "look-a" for s in store.sightings())


def test_upserts_count_new_rows_update_content_and_replace_links(store: Store) -> None:
    items = [sighting(i) for i in range(5)]
    assert store.add_sightings(items) == 5
    assert store.add_sightings(items) == 0
    assert store.add_sightings([*items[:2], sighting(9)]) == 1
    changed = sighting(1, detail="re-measured", length_m=121.0, evidence_ids=("ev-b", "ev-a", "ev-b"))
    assert store.add_sightings([changed]) == 0
    got = {s.id: s for s in store.sightings()}
    assert len(got) == 6
    assert got["sig-1"].detail == "re-measured" and got["sig-1"].length_m == 121.0
    assert got["sig-1"].evidence_ids == ("ev-b", "ev-a")  # order kept, repeats dropped, old link gone
    assert got["sig-0"] == items[0]


@pytest.mark.parametrize("kind", ["looks", "aggregates", "evidence"])
def test_round_trip_of_records(store: Store, kind: str) -> None:
    tokyo = timezone(timedelta(hours=9))
    if kind == "looks":
        records = [look(0), look(1, scene_id="s1", usable_fraction=0.0, vessels_seen=None, simulated=True, note="n",
                                  time=datetime(2024, 2, 3, 9, 30, tzinfo=tokyo))]
        assert store.add_looks(records) == 2
        got = store.looks()
    elif kind == "aggregates":
        records = [AggregateObservation("agg-1", T0, T0 + timedelta(days=30), "rajin>russia", "trip_count", 32.0,
                                        None, "at least 32", ("ev-9",), ("angara", "MARIA"), 0.7, True)]
        assert store.add_aggregates(records) == 1
        got = store.aggregates()
    else:
        records = [Evidence("ev-1", EvidenceKind.REPORT, "a report", "NK Pro", "https://example.org/x",
                            T0, {"line": 3, "nested": {"a": [1, 2]}}),
                   Evidence("ev-2", EvidenceKind.DERIVED, "no time")]
        assert store.add_evidence(records) == 2
        got = sorted(store.evidence(["ev-2", "ev-1", "missing"]).values(), key=lambda e: e.id)
    assert got == records
    for r in got:
        for value in (getattr(r, "time", None), getattr(r, "start", None), getattr(r, "observed_at", None)):
            assert value is None or value.utcoffset() == timedelta(0)


def test_windows_are_inclusive_and_sightings_overlap(store: Store) -> None:
    store.add_looks([look(i) for i in range(10)])
    assert [x.id for x in store.looks(since=T0 + timedelta(days=2), until=T0 + timedelta(days=4))] == \
        ["look-2", "look-3", "look-4"]
    assert store.looks(site="vostochny") == []
    long = sighting(0, time=T0 - timedelta(days=5), time_end=T0 + timedelta(days=5), vessel="lady-r")
    store.add_sightings([long, sighting(1), sighting(30, site="vostochny")])
    assert [s.id for s in store.sightings(since=T0, until=T0 + timedelta(hours=1))] == ["sig-0", "sig-1"]
    assert [s.id for s in store.sightings(vessel="angara")] == ["sig-1", "sig-30"]
    assert [s.id for s in store.sightings(site="vostochny", vessel="angara")] == ["sig-30"]
    assert [s.id for s in store.sightings(until=T0 - timedelta(days=5))] == ["sig-0"]


def test_naive_times_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.add_sightings([sighting(0, time=datetime(2024, 1, 1))])
    assert store.sightings() == []


def test_transaction_is_all_or_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as conn:
        store.add_evidence([Evidence("ev-1", EvidenceKind.REPORT, "x")], conn=conn)
        store.add_sightings([sighting(0)], conn=conn)
        raise RuntimeError("boom")
    assert store.table_counts()["evidence"] == 0 and store.sightings() == []
    with store.transaction() as conn:
        store.add_evidence([Evidence("ev-1", EvidenceKind.REPORT, "x")], conn=conn)
        store.add_sightings([sighting(0)], conn=conn)
    assert store.table_counts()["evidence"] == 1 and len(store.sightings()) == 1


def test_remove_look_sightings_keeps_the_new_result_and_other_looks(store: Store) -> None:
    """A look written again drops its stored sightings that the new result lacks (and their evidence links), in
    the caller's transaction; other looks' sightings and sightings without a look stay."""
    lk, other = look(0), look(1)
    mine = [sighting(i, time=lk.time, look_id=lk.id, source_kind=SourceKind.IMAGE) for i in range(4)]
    theirs = sighting(7, time=other.time, look_id=other.id, source_kind=SourceKind.IMAGE)
    loose = sighting(8, time=lk.time)
    store.add_looks([lk, other])
    store.add_sightings([*mine, theirs, loose])
    links = store.table_counts()["evidence_links"]
    with pytest.raises(RuntimeError), store.transaction() as conn:
        assert store.remove_look_sightings([lk], keep=["sig-1"], conn=conn) == 3
        raise RuntimeError("boom")
    assert len(store.sightings()) == 6  # rolled back with the rest of the transaction
    with store.transaction() as conn:
        assert store.remove_look_sightings([lk], keep=["sig-1"], conn=conn) == 3
    assert sorted(s.id for s in store.sightings()) == ["sig-1", "sig-7", "sig-8"]
    assert store.table_counts()["evidence_links"] == links - 3
    assert store.remove_look_sightings([lk]) == 1 and store.remove_look_sightings([lk]) == 0
    assert sorted(s.id for s in store.sightings()) == ["sig-7", "sig-8"]


def test_replace_derived_wipes_and_rewrites(store: Store) -> None:
    v1 = Visit("v1", "rajin", "angara", T0, T0 + timedelta(days=1), 0.8, ("sig-1",), ("ev-1",), "large",
               T0 - timedelta(hours=5), None, ("report",))
    v2 = Visit("v2", "vostochny", "angara", T0 + timedelta(days=3), T0 + timedelta(days=4), 0.7, ("sig-2",))
    trip = Trip("t1", "rajin-russia", "angara", "v1", "v2", T0 + timedelta(days=1), T0 + timedelta(days=3), 0.6,
                ("ev-1", "ev-2"), "observed", 190.5)
    assert store.derived_as_of() is None
    assert store.replace_derived([v1, v2], [trip], T0 + timedelta(days=5)) == (2, 1)
    assert store.visits() == [v1, v2] and store.trips() == [trip]
    assert store.derived_as_of() == T0 + timedelta(days=5)
    assert store.visits(site="vostochny") == [v2] and store.trips(route="other") == []
    v3 = replace(v1, id="v3")
    store.replace_derived([v3], [], T0 + timedelta(days=2))
    assert store.visits() == [v3] and store.trips() == []
    assert store.derived_as_of() == T0 + timedelta(days=2)  # the tables say which analysis they hold
    links = store.table_counts()["evidence_links"]
    assert links == 1  # only v3's link is left
    orphan = replace(trip, id="t2", origin_visit="nowhere")
    with pytest.raises(IntegrityError):
        store.replace_derived([v1], [orphan], T0 + timedelta(days=9))
    assert store.visits() == [v3]  # the failed rewrite left the previous derived state
    assert store.derived_as_of() == T0 + timedelta(days=2)


def test_activities_keep_history_by_route_and_date(store: Store) -> None:
    a = Activity("rajin-russia", T0, Status.ACTIVE, 0.9, T0 - timedelta(days=2), ("ev-1",), 2.0, None, 6.1, 10, 2,
                 "near-daily", 3, None, "fine", ("ev-1", "ev-2"),
                 {"gap": [T0.isoformat(), None], "p": float("nan"), "n": 3})
    b = replace(a, as_of=T0 + timedelta(days=20), status=Status.PAUSED, probability=0.97, evidence_ids=("ev-3",),
                details={})
    assert store.add_activities([a, b]) == 2
    assert store.add_activities([replace(b, probability=0.98)]) == 0
    got = store.activities("rajin-russia")
    assert [x.status for x in got] == [Status.ACTIVE, Status.PAUSED]
    assert got[1].probability == 0.98 and got[1].evidence_ids == ("ev-3",)
    assert got[0].details == {"gap": [T0.isoformat(), None], "p": None, "n": 3}  # NaN is stored as null
    assert store.activities("other") == []


def test_failures_and_imports(store: Store) -> None:
    store.record_failure("detect", "/data/x.tif", "no overlap")
    (f,) = store.failures()
    assert (f.stage, f.path, f.message) == ("detect", "/data/x.tif", "no overlap")
    assert f.created.tzinfo is not None and abs(datetime.now(UTC) - f.created) < timedelta(minutes=5)
    assert store.failures("ais") == []
    store.record_failure("detect", "/data/x.tif", "no overlap")  # a re-run meets the same bad file: one row
    (again,) = store.failures()
    assert again.id == f.id and again.created >= f.created
    store.record_failure("detect", "/data/x.tif", "truncated")  # another reason is another failure
    assert [x.message for x in store.failures("detect")] == ["no overlap", "truncated"]
    store.record_failure("ais", "/data/x.tif", "truncated")
    store.record_failure("detect", "/data/y.tif", "site a: cloudy")
    store.record_failure("detect", "/data/y.tif", "site b: cloudy")
    assert store.clear_failures("detect", ["/data/x.tif"]) == 2  # read since: its failures of that stage go
    assert store.clear_failures("detect", ["/data/y.tif"], "site b: ") == 1  # only at the site now searched
    assert [(x.stage, x.path, x.message) for x in store.failures()] == [
        ("ais", "/data/x.tif", "truncated"), ("detect", "/data/y.tif", "site a: cloudy")]
    assert store.clear_failures("detect", []) == 0
    assert not store.has_import("abc")
    store.record_import("abc", "obs.csv", "observations", 3)
    store.record_import("abc", "obs.csv", "observations", 3)
    assert store.has_import("abc") and store.table_counts()["imports"] == 1


@pytest.mark.parametrize("reader", ["connectorx", "dbapi"])
def test_frames_match_the_records(store: Store, reader: str) -> None:
    items = [sighting(i, vessel=None if i % 3 else "angara", time_end=None if i % 2 else T0 + timedelta(days=9),
                      lon=None if i % 4 == 0 else 130.0 + i / 100, simulated=i == 5) for i in range(12)]
    store.add_sightings(items[::-1])
    store.add_looks([look(i) for i in range(4)])
    frame = store.sightings_frame(with_evidence=True, reader=reader)
    assert frame.schema["time"] == pl.Datetime("us", "UTC") and frame.schema["simulated"] == pl.Boolean
    expected = sorted(items, key=lambda s: (s.time, s.id))
    assert frame["id"].to_list() == [s.id for s in expected]
    for row, s in zip(frame.iter_rows(named=True), expected, strict=True):
        assert row["time"] == s.time and row["time_end"] == s.time_end
        assert (row["vessel"], row["lon"], row["simulated"], row["count"]) == (s.vessel, s.lon, s.simulated, s.count)
        assert tuple(row["evidence_ids"]) == s.evidence_ids
    since, until = T0 + timedelta(hours=3), T0 + timedelta(hours=6)
    window = store.sightings_frame(since=since, until=until, site="rajin", reader=reader)
    assert window["id"].to_list() == [s.id for s in store.sightings(site="rajin", since=since, until=until)]
    small = store.sightings_frame(columns=["vessel"], vessel="angara", reader=reader)
    assert small.columns == ["id", "time", "vessel"] and set(small["vessel"]) == {"angara"}
    looks = store.looks_frame(since=T0 + timedelta(days=1), with_evidence=True, reader=reader)
    assert looks["id"].to_list() == ["look-1", "look-2", "look-3"]
    assert looks["evidence_ids"].to_list()[0] == ["ev-scene-1", "ev-chip-1"]
    assert looks["l50_m"].to_list() == [SENSOR_DETECTION["sentinel-1"].l50_m] * 3
    empty = store.looks_frame(site="nowhere", reader=reader)
    assert empty.height == 0 and empty.schema["time"] == pl.Datetime("us", "UTC")
    with pytest.raises(ValueError, match="unknown sightings columns"):
        store.sightings_frame(columns=["nope"], reader=reader)


def test_bulk_load_and_read(store: Store) -> None:
    n = 20_000
    items = [sighting(i, time=T0 + timedelta(seconds=37 * i), site=f"site{i % 7}") for i in range(n)]
    assert store.add_sightings(items) == n
    assert store.add_sightings(items[: n // 2]) == 0
    frame = store.sightings_frame(columns=["site"])
    assert frame.height == n and frame["time"].is_sorted()
    assert frame.filter(pl.col("site") == "site3").height == len([s for s in items if s.site == "site3"])


def test_sqlite_writers_queue_instead_of_failing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    stores = [Store.open(url) for _ in range(3)]
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            for j in range(5):
                with stores[k].transaction() as conn:
                    stores[k].add_sightings([sighting(k * 100 + j)], conn=conn)
                    stores[k].sightings()  # a read in between, as the pipeline does
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert len(stores[0].sightings()) == 15
    for s in stores:
        s.close()


def test_in_memory_sqlite_and_bad_urls(tmp_path) -> None:  # type: ignore[no-untyped-def]
    mem = Store.open("sqlite://")
    mem.add_sightings([sighting(1)])
    assert mem.sightings_frame()["id"].to_list() == ["sig-1"]
    mem.close()
    with pytest.raises(StoreError, match="does not exist"):
        Store.open(f"sqlite:///{tmp_path / 'missing' / 'x.sqlite'}")
    with pytest.raises(StoreError, match="unsupported"):
        Store.open("mysql://localhost/x")


def test_concurrent_opens_migrate_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'new.sqlite'}"
    errors: list[BaseException] = []
    opened: list[Store] = []

    def open_it() -> None:
        try:
            opened.append(Store.open(url))
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == [] and len(opened) == 4
    for s in opened:
        s.close()


def test_frames_keep_awkward_text_and_do_not_break_sqlite_locks(store: Store) -> None:
    """Text with quotes, separators and newlines survives the columnar readers on both dialects; on SQLite, reading
    frames and writing in the same process must not disturb the store (two SQLite copies in one process would)."""
    store.upsert_watchlist(watchlist())
    awkward = ["it's a 'quoted' ship", 'a\nmulti-line "note"', "sep\x1fin\x1fthe\x1ftext", "", "NULL"]
    store.add_evidence([Evidence(f"ev-{i}", EvidenceKind.REPORT, "x") for i in range(len(awkward))])
    store.add_sightings([sighting(i, detail=text, width_m=None) for i, text in enumerate(awkward)])
    frame = store.sightings_frame(with_evidence=True)
    assert frame.sort("id")["detail"].to_list() == awkward
    if store.dialect == "sqlite":  # the large-store reader (connectorx in a child process) gives the same frame
        other = store.sightings_frame(with_evidence=True, reader="connectorx-process")
        assert other.equals(frame), (other, frame)
        assert store.looks_frame(reader="connectorx-process").equals(store.looks_frame(reader="dbapi"))
    assert frame["width_m"].null_count() == len(awkward)
    assert frame["evidence_ids"].to_list() == [[f"ev-{i}"] for i in range(len(awkward))]
    # Write, read, write again on the same store object, then count every table.
    store.add_sightings([sighting(10)])
    store.sightings_frame()
    store.looks_frame()
    store.add_sightings([sighting(11)])
    assert store.table_counts()["sightings"] == len(awkward) + 2


def test_frames_keep_evidence_in_link_order_with_every_reader(store: Store) -> None:
    """Several evidence ids per sighting come back in the order they were given (the links' ``position``), not in
    alphabetical or insertion order of the table, with every reader (sighting links are read by a table scan)."""
    store.upsert_watchlist(watchlist())
    store.add_evidence([Evidence(e, EvidenceKind.REPORT, "x") for e in ("z", "a", "m", "b")])
    store.add_sightings([sighting(0, evidence_ids=("z", "a", "m")), sighting(1, evidence_ids=("b", "z")),
                         sighting(2, evidence_ids=())])
    readers = ["dbapi", "connectorx-process"] if store.dialect == "sqlite" else ["dbapi", "connectorx"]
    for reader in readers:
        frame = store.sightings_frame(with_evidence=True, reader=reader).sort("id")
        assert frame["evidence_ids"].to_list() == [["z", "a", "m"], ["b", "z"], []], reader
