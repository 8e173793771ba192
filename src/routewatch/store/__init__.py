"""Persistence: canonical records in SQL (SQLite by default, PostgreSQL/PostGIS by URL), migrated by Alembic.

Only this package touches the database. ``Store.open(url)`` creates or upgrades the schema; every write is an
idempotent upsert by the records' deterministic ids; reads return model records, or polars frames for the bulk
tables (``sightings_frame``, ``looks_frame``). See docs/store.md.
"""

from routewatch.store.core import BBox, Failure, Store
from routewatch.store.engine import StoreError

__all__ = ["BBox", "Failure", "Store", "StoreError"]
