"""A workspace: one folder holding a watchlist, the store and the bulk files of an investigation.

Layout (created by ``routewatch init``)::

    watchlist.toml      sites, routes, vessels (see docs/watchlist.md)
    routewatch.sqlite   the store, unless --db / ROUTEWATCH_DB names a PostgreSQL URL
    ais/                AIS positions, Parquet partitioned by day
    scenes/             fetched or added image windows (cache), one folder per scene
    chips/              PNG chips around detections
    reports/            HTML reports and exports
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

WATCHLIST_NAME = "watchlist.toml"
DB_NAME = "routewatch.sqlite"


@dataclass(frozen=True)
class Workspace:
    root: Path
    db_url_override: str | None = None

    @classmethod
    def open(cls, root: str | Path | None = None, db: str | None = None) -> Workspace:
        """Resolve the workspace folder (argument, ROUTEWATCH_WORKSPACE, current folder) and the store URL."""
        chosen = root or os.environ.get("ROUTEWATCH_WORKSPACE") or "."
        return cls(Path(chosen).resolve(), db or os.environ.get("ROUTEWATCH_DB") or None)

    @property
    def watchlist_path(self) -> Path:
        return self.root / WATCHLIST_NAME

    @property
    def db_url(self) -> str:
        if self.db_url_override:
            return self.db_url_override
        return f"sqlite:///{self.root / DB_NAME}"

    @property
    def ais_dir(self) -> Path:
        return self.root / "ais"

    @property
    def scenes_dir(self) -> Path:
        return self.root / "scenes"

    @property
    def chips_dir(self) -> Path:
        return self.root / "chips"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    def ensure(self) -> Workspace:
        for p in (self.root, self.ais_dir, self.scenes_dir, self.chips_dir, self.reports_dir):
            p.mkdir(parents=True, exist_ok=True)
        return self
