"""CLI verbs of ship detection: `detect sar`, `detect optical`, `detect --site`, `evaluate detections`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the detection commands to the main app."""
    return None
