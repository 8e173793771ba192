"""Engines and migrations: one code path for SQLite (default) and PostgreSQL/PostGIS.

SQLite connections get WAL (readers never wait for a writer), foreign keys, a busy timeout (writers queue instead
of failing) and explicit ``BEGIN`` so that a transaction, DDL included, really is one; write transactions start with
``BEGIN IMMEDIATE`` so two writers never deadlock upgrading a read lock. Migrations are Alembic revisions shipped in
the package and run programmatically (no alembic.ini).
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.pool import StaticPool

MIGRATIONS = Path(__file__).parent / "migrations"
WRITE_OPTION = "routewatch_write"  # execution option: this transaction will write (SQLite: BEGIN IMMEDIATE)
BUSY_TIMEOUT_MS = 30_000
PG_MIGRATION_LOCK = 0x726F7574  # advisory lock id: concurrent Store.open calls migrate one at a time


class StoreError(RuntimeError):
    """A store that cannot be opened or written, with a message saying which and why."""


def _clean_json(value: Any) -> Any:
    """Make a value JSON-safe: datetimes as ISO text, numpy scalars as numbers, non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_clean_json(v) for v in value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return _clean_json(value.item())
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy array
        return _clean_json(value.tolist())
    return value


def dumps(value: Any) -> str:
    return json.dumps(_clean_json(value), allow_nan=False, ensure_ascii=False)


def make_engine(url: str | URL) -> Engine:
    """An engine for ``url`` (``sqlite:///file``, ``sqlite://`` in memory, ``postgresql+psycopg://...``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, json_serializer=dumps, pool_pre_ping=True)
    raise StoreError(f"unsupported store URL {parsed.render_as_string(hide_password=True)!r}: use sqlite or postgresql")


def _set_wal(cur: Any) -> None:
    """Switch the file to WAL. SQLite answers this pragma with "database is locked" at once, without the busy
    handler, while another connection holds the file (several processes opening a new store together), so it is
    retried for up to the busy timeout."""
    import sqlite3
    import time

    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if not memory:
        parent = Path(database).expanduser().resolve().parent
        if not parent.is_dir():
            raise StoreError(f"cannot open SQLite store {database!r}: folder {parent} does not exist")
    kwargs: dict[str, Any] = {"json_serializer": dumps}
    if memory:
        kwargs |= {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (pysqlite's own handling skips DDL)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not memory:
            _set_wal(cur)
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def alembic_config(connection: Any = None) -> Config:
    """The Alembic configuration in code: the packaged migrations, and the connection to run them on."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise StoreError("the packaged migrations have no head revision")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the schema to the packaged head revision in one transaction (nothing if already there)."""
    head = head_revision()
    if current_revision(engine) == head:
        return
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")
        command.upgrade(alembic_config(conn), "head")
