"""CLI verbs of the core: init, import, analyze, status, demo, simulate coverage."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the core commands to the main app."""

    @app.command()
    def version() -> None:
        """Print the routewatch version."""
        from routewatch import __version__

        typer.echo(__version__)
