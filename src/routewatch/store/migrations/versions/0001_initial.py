"""Initial schema: watchlist, evidence, scenes, looks, sightings, aggregates, derived tables, imports, AIS, alerts.

Revision ID: 0001
Revises:
Create Date: 2024-03-01

Spatial indexes depend on the dialect: on SQLite an R*Tree of site and scene bounding boxes kept by triggers; on
PostgreSQL PostGIS geometry columns (EPSG:4326) filled from the WKT by triggers, with GiST indexes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from routewatch.store.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIME = UTCDateTime()


def _bbox() -> list[sa.Column]:
    return [sa.Column(name, sa.Float) for name in ("min_lon", "min_lat", "max_lon", "max_lat")]


def upgrade() -> None:
    op.create_table(
        "sites",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("geometry_wkt", sa.Text, nullable=False),
        *_bbox(),
        sa.Column("country", sa.String(100)),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("sources", sa.JSON, nullable=False),
    )
    op.create_table(
        "routes",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("origin", sa.JSON, nullable=False),
        sa.Column("destination", sa.JSON, nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("vessels", sa.JSON, nullable=False),
        sa.Column("max_speed_kn", sa.Float, nullable=False),
        sa.Column("max_transit_days", sa.Float, nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("sources", sa.JSON, nullable=False),
    )
    op.create_table(
        "vessels",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("imo", sa.String(20)),
        sa.Column("mmsi", sa.String(20)),
        sa.Column("call_sign", sa.String(20)),
        sa.Column("vessel_type", sa.Text, nullable=False),
        sa.Column("length_m", sa.Float),
        sa.Column("beam_m", sa.Float),
        sa.Column("capacity_teu", sa.Float),
        sa.Column("flag", sa.String(100)),
        sa.Column("sanctions", sa.Text, nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("sources", sa.JSON, nullable=False),
    )
    op.create_table(
        "evidence",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("uri", sa.Text),
        sa.Column("observed_at", TIME),
        sa.Column("attributes", sa.JSON, nullable=False),
    )
    op.create_table(
        "scenes",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("sensor", sa.String(60), nullable=False),
        sa.Column("acquired", TIME, nullable=False),
        sa.Column("footprint_wkt", sa.Text),
        *_bbox(),
        sa.Column("resolution_m", sa.Float, nullable=False),
        sa.Column("cloud_cover", sa.Float),
        sa.Column("uri", sa.Text),
        sa.Column("collection", sa.String(200)),
        sa.Column("simulated", sa.Boolean, nullable=False),
        sa.Column("attributes", sa.JSON, nullable=False),
    )
    op.create_index("ix_scenes_sensor_acquired", "scenes", ["sensor", "acquired"])
    op.create_index("ix_scenes_acquired", "scenes", ["acquired"])
    op.create_table(
        "looks",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("site", sa.String(200), nullable=False),
        sa.Column("time", TIME, nullable=False),
        sa.Column("sensor", sa.String(60), nullable=False),
        sa.Column("usable_fraction", sa.Float, nullable=False),
        sa.Column("l50_m", sa.Float, nullable=False),
        sa.Column("scale_m", sa.Float, nullable=False),
        sa.Column("p_max", sa.Float, nullable=False),
        sa.Column("source_kind", sa.String(20), nullable=False),
        sa.Column("scene_id", sa.String(200)),
        sa.Column("vessels_seen", sa.Integer),
        sa.Column("simulated", sa.Boolean, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_index("ix_looks_site_time", "looks", ["site", "time"])
    op.create_index("ix_looks_time", "looks", ["time"])
    op.create_table(
        "sightings",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("time", TIME, nullable=False),
        sa.Column("time_end", TIME),
        sa.Column("source_kind", sa.String(20), nullable=False),
        sa.Column("site", sa.String(200)),
        sa.Column("vessel", sa.String(200)),
        sa.Column("object_kind", sa.String(40), nullable=False),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("lon", sa.Float),
        sa.Column("lat", sa.Float),
        sa.Column("length_m", sa.Float),
        sa.Column("width_m", sa.Float),
        sa.Column("heading_deg", sa.Float),
        sa.Column("score", sa.Float),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("identification_confidence", sa.Float),
        sa.Column("look_id", sa.String(200)),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("simulated", sa.Boolean, nullable=False),
    )
    op.create_index("ix_sightings_site_time", "sightings", ["site", "time"])
    op.create_index("ix_sightings_vessel_time", "sightings", ["vessel", "time"])
    op.create_index("ix_sightings_time", "sightings", ["time"])
    op.create_table(
        "aggregates",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("start_time", TIME, nullable=False),
        sa.Column("end_time", TIME, nullable=False),
        sa.Column("scope", sa.String(400), nullable=False),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("count", sa.Float),
        sa.Column("denominator", sa.Float),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("subjects", sa.JSON, nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("lower_bound", sa.Boolean, nullable=False),
    )
    op.create_index("ix_aggregates_scope_start", "aggregates", ["scope", "start_time"])
    op.create_table(
        "evidence_links",
        sa.Column("owner_kind", sa.String(20), primary_key=True),
        sa.Column("owner_id", sa.String(200), primary_key=True),
        sa.Column("evidence_id", sa.String(200), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
    )
    op.create_index("ix_evidence_links_evidence", "evidence_links", ["evidence_id"])
    op.create_table(
        "visits",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("site", sa.String(200), nullable=False),
        sa.Column("vessel", sa.String(200)),
        sa.Column("start_time", TIME, nullable=False),
        sa.Column("end_time", TIME, nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("sighting_ids", sa.JSON, nullable=False),
        sa.Column("size_class", sa.String(40)),
        sa.Column("start_bound", TIME),
        sa.Column("end_bound", TIME),
        sa.Column("source_kinds", sa.JSON, nullable=False),
    )
    op.create_index("ix_visits_site_start", "visits", ["site", "start_time"])
    op.create_index("ix_visits_vessel_start", "visits", ["vessel", "start_time"])
    op.create_table(
        "trips",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("vessel", sa.String(200)),
        sa.Column("origin_visit", sa.String(200), sa.ForeignKey("visits.id", ondelete="CASCADE")),
        sa.Column("destination_visit", sa.String(200), sa.ForeignKey("visits.id", ondelete="CASCADE")),
        sa.Column("depart", TIME, nullable=False),
        sa.Column("arrive", TIME),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("distance_nm", sa.Float),
    )
    op.create_index("ix_trips_route_depart", "trips", ["route", "depart"])
    op.create_index("ix_trips_vessel_depart", "trips", ["vessel", "depart"])
    op.create_table(
        "activities",
        sa.Column("route", sa.String(200), primary_key=True),
        sa.Column("as_of", TIME, primary_key=True),
        sa.Column("id", sa.String(200), nullable=False, unique=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("last_activity", TIME),
        sa.Column("last_activity_evidence", sa.JSON, nullable=False),
        sa.Column("days_quiet", sa.Float),
        sa.Column("p_silence_if_active", sa.Float),
        sa.Column("expected_gap_days", sa.Float),
        sa.Column("trips_total", sa.Integer, nullable=False),
        sa.Column("trips_recent", sa.Integer, nullable=False),
        sa.Column("coverage", sa.Text, nullable=False),
        sa.Column("usable_looks_quiet", sa.Integer, nullable=False),
        sa.Column("days_to_confident_call", sa.Float),
        sa.Column("explanation", sa.Text, nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
    )
    op.create_table(
        "imports",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("imported_at", TIME, nullable=False),
    )
    op.create_table(
        "failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("stage", sa.String(60), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("created", TIME, nullable=False),
    )
    op.create_index("ix_failures_stage_created", "failures", ["stage", "created"])
    op.create_table(
        "ais_vessels",
        sa.Column("mmsi", sa.String(20), primary_key=True),
        sa.Column("imo", sa.String(20)),
        sa.Column("name", sa.Text),
        sa.Column("call_sign", sa.String(20)),
        sa.Column("length_m", sa.Float),
        sa.Column("beam_m", sa.Float),
        sa.Column("ship_type", sa.Integer),
        sa.Column("vessel", sa.String(200)),
        sa.Column("first_seen", TIME),
        sa.Column("last_seen", TIME),
    )
    op.create_index("ix_ais_vessels_vessel", "ais_vessels", ["vessel"])
    op.create_table(
        "ais_gaps",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("mmsi", sa.String(20), nullable=False),
        sa.Column("vessel", sa.String(200)),
        sa.Column("start_time", TIME, nullable=False),
        sa.Column("end_time", TIME, nullable=False),
        sa.Column("lon_before", sa.Float, nullable=False),
        sa.Column("lat_before", sa.Float, nullable=False),
        sa.Column("lon_after", sa.Float, nullable=False),
        sa.Column("lat_after", sa.Float, nullable=False),
        sa.Column("distance_nm", sa.Float, nullable=False),
        sa.Column("implied_speed_kn", sa.Float),
        sa.Column("reachable_sites", sa.JSON, nullable=False),
        sa.Column("evidence_ids", sa.JSON, nullable=False),
    )
    op.create_index("ix_ais_gaps_mmsi_start", "ais_gaps", ["mmsi", "start_time"])
    op.create_index("ix_ais_gaps_vessel_start", "ais_gaps", ["vessel", "start_time"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("as_of", TIME, nullable=False),
        sa.Column("old_status", sa.String(20)),
        sa.Column("new_status", sa.String(20), nullable=False),
        sa.Column("created", TIME, nullable=False),
        sa.Column("delivered_at", TIME),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("ix_alerts_route_as_of", "alerts", ["route", "as_of"])

    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table, rtree in (("sites", "site_rtree"), ("scenes", "scene_rtree")):
            _sqlite_rtree(table, rtree)
    elif dialect == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        for table, wkt in (("sites", "geometry_wkt"), ("scenes", "footprint_wkt")):
            _postgis_geometry(table, wkt)


def _sqlite_rtree(table: str, rtree: str) -> None:
    """An R*Tree of the table's bounding boxes, keyed by its rowid and kept current by triggers."""
    box = "NEW.min_lon, NEW.max_lon, NEW.min_lat, NEW.max_lat"
    op.execute(f"CREATE VIRTUAL TABLE {rtree} USING rtree(id, min_lon, max_lon, min_lat, max_lat)")
    op.execute(
        f"CREATE TRIGGER {table}_rtree_insert AFTER INSERT ON {table} WHEN NEW.min_lon IS NOT NULL BEGIN "
        f"INSERT OR REPLACE INTO {rtree} VALUES (NEW.rowid, {box}); END"
    )
    op.execute(
        f"CREATE TRIGGER {table}_rtree_update AFTER UPDATE ON {table} BEGIN "
        f"DELETE FROM {rtree} WHERE id = OLD.rowid; "
        f"INSERT INTO {rtree} SELECT NEW.rowid, {box} WHERE NEW.min_lon IS NOT NULL; END"
    )
    op.execute(
        f"CREATE TRIGGER {table}_rtree_delete AFTER DELETE ON {table} BEGIN "
        f"DELETE FROM {rtree} WHERE id = OLD.rowid; END"
    )


def _postgis_geometry(table: str, wkt: str) -> None:
    """A PostGIS geometry column (EPSG:4326) mirrored from the WKT column by a trigger, with a GiST index."""
    op.execute(f"ALTER TABLE {table} ADD COLUMN geom geometry(Geometry, 4326)")
    op.execute(
        f"CREATE OR REPLACE FUNCTION routewatch_{table}_geom() RETURNS trigger AS $$ BEGIN "
        f"NEW.geom := CASE WHEN NEW.{wkt} IS NULL THEN NULL ELSE ST_GeomFromText(NEW.{wkt}, 4326) END; "
        f"RETURN NEW; END $$ LANGUAGE plpgsql"
    )
    op.execute(
        f"CREATE TRIGGER {table}_geom BEFORE INSERT OR UPDATE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION routewatch_{table}_geom()"
    )
    op.execute(f"CREATE INDEX ix_{table}_geom ON {table} USING gist (geom)")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table, rtree in (("sites", "site_rtree"), ("scenes", "scene_rtree")):
            for when in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_rtree_{when}")
            op.execute(f"DROP TABLE IF EXISTS {rtree}")
    elif dialect == "postgresql":
        for table in ("sites", "scenes"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_geom ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS routewatch_{table}_geom()")
    for table in (
        "alerts", "ais_gaps", "ais_vessels", "failures", "imports", "activities", "trips", "visits",
        "evidence_links", "aggregates", "sightings", "looks", "scenes", "evidence", "vessels", "routes", "sites",
    ):
        op.drop_table(table)
