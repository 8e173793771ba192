"""Fixtures shared by every test file.

* ``shared_dir`` -- Path to ``../shared`` beside the repository (or ``$ROUTEWATCH_SHARED``); skips the test with a
  message when it is absent.
* ``pg_server`` (session) -- a throwaway PostgreSQL + PostGIS cluster (``tests/pg.py``) on 127.0.0.1, stopped and
  deleted at the end of the session. Skips when PostgreSQL is not installed, except under CI (``$CI`` set), where a
  missing PostgreSQL fails the test instead.
* ``pg_url`` (session) -- SQLAlchemy URL of a database with PostGIS on that cluster, shared by the session.
* ``db_url`` -- a fresh empty database per test, parametrized over ``sqlite`` (a file in ``tmp_path``) and
  ``postgresql`` (a new database copied from a PostGIS template, dropped after the test; marked ``postgres``).
* ``store`` -- a ``routewatch.store.Store`` opened (schema migrated) on ``db_url``, closed after the test.

Run only SQLite with ``pytest -m "not postgres"``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    from pg import PostgresServer, PostgresUnavailable
except ImportError:  # tests/ imported as a package
    from tests.pg import PostgresServer, PostgresUnavailable


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder (``../shared`` beside the repository, or ``$ROUTEWATCH_SHARED``)."""
    env = os.environ.get("ROUTEWATCH_SHARED")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared"
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} is absent (set ROUTEWATCH_SHARED or put shared/ beside the repo)")
    return path


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer.start()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs PostgreSQL: {exc}")
        pytest.skip(f"PostgreSQL tests skipped: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_url(pg_server: PostgresServer) -> str:
    return pg_server.url(pg_server.create_database("routewatch"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'routewatch.sqlite'}"
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture
def store(db_url: str) -> Iterator[object]:
    from routewatch.store import Store

    s = Store.open(db_url)
    try:
        yield s
    finally:
        s.close()
