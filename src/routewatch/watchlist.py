"""Load and validate a watchlist: sites (polygons), routes between site groups, and vessels (TOML)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from routewatch.model import Route, Site, Vessel


@dataclass(frozen=True)
class Watchlist:
    """Sites, routes and vessels by key. ``path`` is the file it was read from (None when built in code)."""

    sites: dict[str, Site] = field(default_factory=dict)
    routes: dict[str, Route] = field(default_factory=dict)
    vessels: dict[str, Vessel] = field(default_factory=dict)
    path: Path | None = None
