"""The ``routewatch`` command: one Typer app; each pipeline stage registers its verbs from its own module."""

from __future__ import annotations

import typer

from routewatch.cli import ais, core, detect, imagery, surfaces

app = typer.Typer(
    name="routewatch",
    help="Watch transfer routes from space: imagery, AIS and analyst reports, judged against coverage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

for module in (core, imagery, detect, ais, surfaces):
    module.register(app)


def main() -> None:
    """The command line; a store that cannot be opened (no server, no such database, no PostGIS rights, a URL
    that is not one) is said in one line, not a traceback."""
    import sys

    from sqlalchemy.exc import ArgumentError, DBAPIError

    from routewatch.store.engine import StoreError

    try:
        app()
    except (StoreError, ArgumentError, DBAPIError) as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        first = detail[0] if detail else type(exc).__name__
        hint = ""
        if "postgis" in str(exc).lower() and ("permission" in str(exc).lower() or "privilege" in str(exc).lower()):
            hint = " (PostGIS is missing and this role cannot create it: ask an administrator to run " \
                   "CREATE EXTENSION postgis in the database)"
        print(f"routewatch: cannot use the store: {first}{hint}", file=sys.stderr)
        sys.exit(2)
