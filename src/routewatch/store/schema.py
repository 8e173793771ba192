"""The store's tables as SQLAlchemy Core metadata: what the code reads and writes.

The migrations in ``migrations/versions`` create the same tables with explicit ``op.create_table`` calls (a test
compares the two). Conventions:

* ids are the model's deterministic ids (``model.stable_id``), so every write is an idempotent upsert by id;
* times are UTC: ``timestamptz`` on PostgreSQL, fixed-width ISO-8601 text ending in ``Z`` on SQLite (which sorts
  and compares like the time it spells); both come back as aware ``datetime`` in UTC;
* geometries are WGS84 WKT text on both dialects, with their bounding box in four columns (degrees). PostgreSQL
  also keeps a PostGIS ``geom`` column (EPSG:4326, GiST index, filled by a trigger) and SQLite an R*Tree of the
  boxes (``site_rtree``, ``scene_rtree``, filled by triggers); neither is in this metadata because the code reads
  WKT and the boxes, and only the bounding-box queries touch the spatial index;
* which evidence each record rests on lives in ``evidence_links`` (owner kind, owner id, evidence id, position).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

SQLITE_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime: ``timestamptz`` on PostgreSQL, sortable ISO-8601 text on SQLite.

    Naive datetimes are refused on the way in (their meaning is ambiguous); values come back aware, in UTC.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(27))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}: {value!r}")
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} has no time zone; give it in UTC")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.strftime(SQLITE_TIME_FORMAT)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.strptime(value, SQLITE_TIME_FORMAT).replace(tzinfo=UTC)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = MetaData()


def _bbox() -> list[Column[Any]]:
    """Bounding box columns in WGS84 degrees (None when there is no geometry)."""
    return [Column(name, Float) for name in ("min_lon", "min_lat", "max_lon", "max_lat")]


# Who brought a site, route or vessel: "watchlist:workspace" for the watchlist file of the workspace that owns
# the store (its own SQLite file), "watchlist:<id of the file>" for each workspace's file on a store named by --db
# (shared: a file removes only its own entries), "api" for the web API, and plain "watchlist" for rows from before
# the column (a file or the API: not known, so never removed; a file that lists one takes it on).
ADDED_BY_WATCHLIST = "watchlist"
ADDED_BY_API = "api"

sites = Table(
    "sites",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("name", Text, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("geometry_wkt", Text, nullable=False),
    *_bbox(),
    Column("country", String(100)),
    Column("notes", Text, nullable=False, default=""),
    Column("sources", JSON, nullable=False),
    Column("added_by", String(40), nullable=False, server_default=ADDED_BY_WATCHLIST),
)

routes = Table(
    "routes",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("name", Text, nullable=False),
    Column("origin", JSON, nullable=False),
    Column("destination", JSON, nullable=False),
    Column("mode", String(20), nullable=False),
    Column("vessels", JSON, nullable=False),
    Column("max_speed_kn", Float, nullable=False),
    Column("max_transit_days", Float, nullable=False),
    Column("notes", Text, nullable=False, default=""),
    Column("sources", JSON, nullable=False),
    Column("added_by", String(40), nullable=False, server_default=ADDED_BY_WATCHLIST),
)

vessels = Table(
    "vessels",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("name", Text, nullable=False),
    Column("imo", String(20)),
    Column("mmsi", String(20)),
    Column("call_sign", String(20)),
    Column("vessel_type", Text, nullable=False, default=""),
    Column("length_m", Float),
    Column("beam_m", Float),
    Column("capacity_teu", Float),
    Column("flag", String(100)),
    Column("sanctions", Text, nullable=False, default=""),
    Column("notes", Text, nullable=False, default=""),
    Column("sources", JSON, nullable=False),
    Column("added_by", String(40), nullable=False, server_default=ADDED_BY_WATCHLIST),
)

evidence = Table(
    "evidence",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("description", Text, nullable=False),
    Column("source", Text, nullable=False, default=""),
    Column("uri", Text),
    Column("observed_at", UTCDateTime),
    Column("attributes", JSON, nullable=False),
)

scenes = Table(
    "scenes",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("sensor", String(60), nullable=False),
    Column("acquired", UTCDateTime, nullable=False),
    Column("footprint_wkt", Text),
    *_bbox(),
    Column("resolution_m", Float, nullable=False),
    Column("cloud_cover", Float),
    Column("uri", Text),
    Column("collection", String(200)),
    Column("simulated", Boolean, nullable=False, default=False),
    Column("attributes", JSON, nullable=False),
    Index("ix_scenes_sensor_acquired", "sensor", "acquired"),
    Index("ix_scenes_acquired", "acquired"),
)

looks = Table(
    "looks",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("site", String(200), nullable=False),
    Column("time", UTCDateTime, nullable=False),
    Column("sensor", String(60), nullable=False),
    Column("usable_fraction", Float, nullable=False),
    Column("l50_m", Float, nullable=False),
    Column("scale_m", Float, nullable=False),
    Column("p_max", Float, nullable=False),
    Column("source_kind", String(20), nullable=False),
    Column("scene_id", String(200)),
    Column("vessels_seen", Integer),
    Column("simulated", Boolean, nullable=False, default=False),
    Column("note", Text, nullable=False, default=""),
    Index("ix_looks_site_time", "site", "time"),
    Index("ix_looks_time", "time"),
)

sightings = Table(
    "sightings",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("time", UTCDateTime, nullable=False),
    Column("time_end", UTCDateTime),
    Column("source_kind", String(20), nullable=False),
    Column("site", String(200)),
    Column("vessel", String(200)),
    Column("object_kind", String(40), nullable=False),
    Column("event", String(40), nullable=False),
    Column("lon", Float),
    Column("lat", Float),
    Column("length_m", Float),
    Column("width_m", Float),
    Column("heading_deg", Float),
    Column("score", Float),
    Column("count", Integer, nullable=False, default=1),
    Column("confidence", Float, nullable=False),
    Column("identification_confidence", Float),
    Column("look_id", String(200)),
    Column("detail", Text, nullable=False, default=""),
    Column("simulated", Boolean, nullable=False, default=False),
    Index("ix_sightings_site_time", "site", "time"),
    Index("ix_sightings_vessel_time", "vessel", "time"),
    Index("ix_sightings_time", "time"),
)

aggregates = Table(
    "aggregates",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("start_time", UTCDateTime, nullable=False),
    Column("end_time", UTCDateTime, nullable=False),
    Column("scope", String(400), nullable=False),
    Column("event", String(40), nullable=False),
    Column("count", Float),
    Column("denominator", Float),
    Column("detail", Text, nullable=False, default=""),
    Column("subjects", JSON, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("lower_bound", Boolean, nullable=False, default=False),
    Index("ix_aggregates_scope_start", "scope", "start_time"),
)

evidence_links = Table(
    "evidence_links",
    metadata,
    Column("owner_kind", String(20), primary_key=True),
    Column("owner_id", String(200), primary_key=True),
    Column("evidence_id", String(200), primary_key=True),
    Column("position", Integer, nullable=False, default=0),
    Index("ix_evidence_links_evidence", "evidence_id"),
)

visits = Table(
    "visits",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("site", String(200), nullable=False),
    Column("vessel", String(200)),
    Column("start_time", UTCDateTime, nullable=False),
    Column("end_time", UTCDateTime, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("sighting_ids", JSON, nullable=False),
    Column("size_class", String(40)),
    Column("start_bound", UTCDateTime),
    Column("end_bound", UTCDateTime),
    Column("source_kinds", JSON, nullable=False),
    Index("ix_visits_site_start", "site", "start_time"),
    Index("ix_visits_vessel_start", "vessel", "start_time"),
)

trips = Table(
    "trips",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("route", String(200), nullable=False),
    Column("vessel", String(200)),
    Column("origin_visit", String(200), ForeignKey("visits.id", ondelete="CASCADE")),
    Column("destination_visit", String(200), ForeignKey("visits.id", ondelete="CASCADE")),
    Column("depart", UTCDateTime, nullable=False),
    Column("arrive", UTCDateTime),
    Column("confidence", Float, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("distance_nm", Float),
    Index("ix_trips_route_depart", "route", "depart"),
    Index("ix_trips_vessel_depart", "vessel", "depart"),
)

activities = Table(
    "activities",
    metadata,
    Column("route", String(200), primary_key=True),
    Column("as_of", UTCDateTime, primary_key=True),
    Column("id", String(200), nullable=False, unique=True),
    Column("status", String(20), nullable=False),
    Column("probability", Float, nullable=False),
    Column("last_activity", UTCDateTime),
    Column("last_activity_evidence", JSON, nullable=False),
    Column("days_quiet", Float),
    Column("p_silence_if_active", Float),
    Column("expected_gap_days", Float),
    Column("trips_total", Integer, nullable=False),
    Column("trips_recent", Integer, nullable=False),
    Column("coverage", Text, nullable=False),
    Column("usable_looks_quiet", Integer, nullable=False),
    Column("days_to_confident_call", Float),
    Column("explanation", Text, nullable=False),
    Column("details", JSON, nullable=False),
)

# Which analysis the derived tables (visits, trips) hold: they are replaced as a whole by each run, so a reader of
# the tables (a GIS, the API) must know the as_of they were derived for and when.
derived_runs = Table(
    "derived_runs",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("as_of", UTCDateTime, nullable=False),
    Column("written_at", UTCDateTime, nullable=False),
    Column("visits", Integer, nullable=False),
    Column("trips", Integer, nullable=False),
)

# One row whose counter every write transaction of the store raises as its last statement: a change that a reader
# (the dashboard's snapshot) can see with one cheap query, on PostgreSQL as on SQLite.
store_state = Table(
    "store_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
)

imports = Table(
    "imports",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("path", Text, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("imported_at", UTCDateTime, nullable=False),
)

failures = Table(
    "failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("stage", String(60), nullable=False),
    Column("path", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Index("ix_failures_stage_created", "stage", "created"),
)

ais_vessels = Table(
    "ais_vessels",
    metadata,
    Column("mmsi", String(20), primary_key=True),
    Column("imo", String(20)),
    Column("name", Text),
    Column("call_sign", String(20)),
    Column("length_m", Float),
    Column("beam_m", Float),
    Column("ship_type", Integer),
    Column("vessel", String(200)),
    Column("first_seen", UTCDateTime),
    Column("last_seen", UTCDateTime),
    Index("ix_ais_vessels_vessel", "vessel"),
)

ais_gaps = Table(
    "ais_gaps",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("mmsi", String(20), nullable=False),
    Column("vessel", String(200)),
    Column("start_time", UTCDateTime, nullable=False),
    Column("end_time", UTCDateTime, nullable=False),
    Column("lon_before", Float, nullable=False),
    Column("lat_before", Float, nullable=False),
    Column("lon_after", Float, nullable=False),
    Column("lat_after", Float, nullable=False),
    Column("distance_nm", Float, nullable=False),
    Column("implied_speed_kn", Float),
    Column("reachable_sites", JSON, nullable=False),
    Column("evidence_ids", JSON, nullable=False),
    Index("ix_ais_gaps_mmsi_start", "mmsi", "start_time"),
    Index("ix_ais_gaps_vessel_start", "vessel", "start_time"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("route", String(200), nullable=False),
    Column("as_of", UTCDateTime, nullable=False),
    Column("old_status", String(20)),
    Column("new_status", String(20), nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    # set while a watcher sends the alert (migration 0004): another watcher leaves it alone until it is released,
    # or until the claim is so old that its watcher must have died
    Column("claimed_at", UTCDateTime),
    Index("ix_alerts_route_as_of", "route", "as_of"),
)
