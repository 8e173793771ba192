"""AIS writes to the store (ais_vessels, ais_gaps, AIS visit sightings with evidence) on SQLite and PostgreSQL.

Uses the ``store`` fixture of conftest.py, parametrized over both databases (PostgreSQL is a throwaway cluster;
run SQLite only with ``-m "not postgres"``). Records come from hand-built tracks through the real analysis.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from shapely.geometry import box
from sqlalchemy import func, select

from routewatch.analysis.gaps import visits_and_gaps
from routewatch.model import Site, SiteKind
from routewatch.sources.ais.records import gap_rows, registry_rows, store_ais, visit_records
from routewatch.sources.ais.registry import link_watchlist
from routewatch.sources.ais.schema import conform
from routewatch.store import schema

SITES = {"rajin": Site("rajin", "Rajin", SiteKind.PORT, box(130.265, 42.215, 130.31, 42.25))}
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _track() -> pl.DataFrame:
    """MMSI 273210440: 2 h stopped in Rajin, out to sea, 12 h silent, back stopped in Rajin for 2 h."""
    rows, t = [], T0
    legs = [(20, 130.29, 0.0), (20, 130.40, 10.0), (None, None, None), (20, 130.29, 0.0)]
    for n, lon, sog in legs:
        if n is None:
            t += timedelta(hours=12)
            continue
        for _ in range(n):
            rows.append({"mmsi": 273210440, "timestamp": t, "lon": lon, "lat": 42.23, "sog_kn": sog,
                         "source": "hand.csv", "line": len(rows) + 2})
            t += timedelta(minutes=6)
    return conform(pl.DataFrame(rows))


def _records():
    visits, gaps = visits_and_gaps([_track()], SITES)
    mmsi_vessel = {273210440: "angara"}
    _, sightings, evidence = visit_records(visits, mmsi_vessel, {273210440: 140.0})
    rows, gap_evidence = gap_rows(gaps, mmsi_vessel)
    registry = pl.DataFrame({
        "mmsi": [273210440, 412000001], "name": ["ANGARA", "OTHER"], "imo": [9179842, None],
        "call_sign": ["UBCT5", None], "length_m": [140.0, 90.0], "beam_m": [20.0, None], "ship_type": [70, None],
        "first_seen": [T0, T0], "last_seen": [T0 + timedelta(days=1), T0],
        "vessel": ["angara", None], "link": ["mmsi", None],
    }, schema_overrides={"first_seen": pl.Datetime("us", "UTC"), "last_seen": pl.Datetime("us", "UTC")})
    return visits, gaps, sightings, evidence + gap_evidence, rows, registry_rows(registry)


def _count(store, table) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def _watchlist(store) -> None:
    from routewatch.model import Vessel
    from routewatch.watchlist import Watchlist

    store.upsert_watchlist(Watchlist(sites=SITES, routes={}, vessels={
        "angara": Vessel("angara", "ANGARA", mmsi="273210440", length_m=140.0)}))


def test_ais_records_round_trip_and_rewrite_idempotently(store):
    _watchlist(store)
    visits, gaps, sightings, evidence, gap_table_rows, vessel_rows = _records()
    assert visits.height == 2 and gaps.height == 1  # the hand-built track: two calls, one silence
    for _ in range(2):
        store_ais(store, sightings=sightings, evidence=evidence, gaps=gap_table_rows, vessels=vessel_rows)
    got = [s for s in store.sightings(site="rajin") if s.event == "ais_visit"]
    assert [s.time for s in got] == [T0, T0 + timedelta(hours=4 + 12)]
    assert all(s.vessel == "angara" and s.length_m == 140.0 for s in got)
    ev = store.evidence([i for s in got for i in s.evidence_ids])
    assert len(ev) == 2 and all(e.attributes["mmsi"] == 273210440 for e in ev.values())
    assert {e.attributes["first"] for e in ev.values()} == {"hand.csv:2", "hand.csv:42"}  # rows 1 and 41 of the track
    assert _count(store, schema.ais_gaps) == 1 and _count(store, schema.ais_vessels) == 2
    with store.engine.connect() as conn:
        gap = conn.execute(select(schema.ais_gaps)).one()
        vessels = {r.mmsi: r for r in conn.execute(select(schema.ais_vessels))}
    assert gap.mmsi == "273210440" and gap.vessel == "angara"
    assert gap.end_time - gap.start_time == timedelta(hours=12, minutes=6)
    assert gap.start_time.tzinfo is not None and gap.start_time == T0 + timedelta(hours=4) - timedelta(minutes=6)
    assert [c["site"] for c in gap.reachable_sites] == ["rajin"]
    assert store.evidence(gap.evidence_ids)[gap.evidence_ids[0]].attributes["before"] == "hand.csv:41"
    assert vessels["273210440"].vessel == "angara" and vessels["273210440"].imo == "9179842"
    assert vessels["412000001"].vessel is None and vessels["412000001"].beam_m is None


def test_a_failing_ais_write_leaves_the_store_as_it_was(store):
    _watchlist(store)
    _, _, sightings, evidence, gap_table_rows, vessel_rows = _records()
    broken = [{**gap_table_rows[0], "id": "broken", "lon_before": None}]  # NOT NULL column
    with pytest.raises(Exception):  # noqa: B017 - IntegrityError on both databases, wrapped differently
        store_ais(store, sightings=sightings, evidence=evidence, gaps=gap_table_rows + broken, vessels=vessel_rows)
    assert store.sightings(site="rajin") == []
    assert _count(store, schema.ais_gaps) == 0 and _count(store, schema.ais_vessels) == 0
    assert store.evidence([e.id for e in evidence]) == {}


def test_registry_rows_link_the_watchlist_before_the_store(store):
    _watchlist(store)
    from routewatch.model import Vessel

    reg = pl.DataFrame({"mmsi": [1, 2], "name": ["X", "ANGARA"], "imo": [None, 9179842], "call_sign": [None, None]})
    linked = link_watchlist(reg, {"angara": Vessel("angara", "ANGARA", imo="9179842")})
    assert linked["vessel"].to_list() == [None, "angara"] and linked["link"].to_list() == [None, "imo"]
    # the name alone: said, not a link (names are reused), in the frame as in everything built on it
    by_name = link_watchlist(reg, {"angara": Vessel("angara", "ANGARA")})
    assert by_name["vessel"].to_list() == [None, None] and by_name["link"].to_list() == [None, "name"]
