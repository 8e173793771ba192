"""Alembic environment: runs the store's migrations on the connection that ``Store.open`` hands over.

There is no alembic.ini: ``routewatch.store.migrate.alembic_config`` builds the configuration in code and passes the
open connection in ``config.attributes["connection"]`` (or a URL as ``sqlalchemy.url``).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from routewatch.store.schema import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("routewatch migrations run online only (Store.open upgrades the schema)")
run_migrations_online()
