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
    app()
