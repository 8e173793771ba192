"""What the dashboard serves: an in-memory snapshot of the store, replaced in the background when the store changes.

Reads never wait on the database: requests are answered from the current snapshot (records already turned into
JSON-ready dicts), and a new snapshot is built by a background thread while the old one keeps serving. The
store's write counter (raised by every committed write, on SQLite as on PostgreSQL) is read at most once a second,
so a snapshot is rebuilt only when something was written, by this server, another worker or an ingest; a server
that follows the clock (no ``as_of``) is also rebuilt every ``ttl_s``, as the quiet spells grow with the clock.
Writes through the API rebuild it at once, so a client reads its own write. A store that outgrows
memory would need SQL-side paging instead (docs/web.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from routewatch.analysis.activity import probability_meaning
from routewatch.report.charts import timeline_svg
from routewatch.report.data import ReportData, gather
from routewatch.web.serialize import to_json

log = logging.getLogger(__name__)
_PLOT_LOCK = threading.Lock()  # matplotlib is not thread-safe


@dataclass
class Snapshot:
    data: ReportData
    loaded: float
    json: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    timelines: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, store: Any, as_of: datetime | None, root: Path | None,
             analyzer: Callable[[datetime], Any] | None = None) -> Snapshot:
        """Read the store; ``analyzer`` (as_of -> AnalysisResult) judges afresh, e.g. under declared coverage."""
        when = as_of or datetime.now(UTC)
        data = gather(store, when, analysis=analyzer(when) if analyzer else None, workspace_root=root)
        snap = cls(data, time.monotonic())
        snap.json = {
            "sites": [to_json(s) for s in data.sites.values()],
            "routes": [to_json(r) for r in data.routes.values()],
            "vessels": [to_json(v) for v in data.vessels.values()],
            "looks": [to_json(x) for x in data.looks],
            "sightings": [to_json(x) for x in data.sightings],
            "visits": [to_json(x) for x in data.visits],
            "trips": [to_json(x) for x in data.trips],
            "status": [status_json(data, v.route.key) for v in data.views],
        }
        return snap

    def timeline(self, route_key: str) -> str:
        """The route's timeline SVG, drawn once per snapshot."""
        if route_key not in self.timelines:
            view = next(v for v in self.data.views if v.route.key == route_key)
            with _PLOT_LOCK:
                names = {k: v.name for k, v in self.data.vessels.items()}
                self.timelines[route_key] = timeline_svg(view, names)
        return self.timelines[route_key]


def status_json(data: ReportData, route_key: str) -> dict[str, Any]:
    """One route's judgement plus the coverage of its quiet period and whether it rests on simulated data."""
    view = next(v for v in data.views if v.route.key == route_key)
    act = view.activity
    return {
        "route": route_key, "name": view.route.name, "as_of": to_json(act.as_of) if act else None,
        "status": to_json(act.status) if act else None, "probability": act.probability if act else None,
        # what the probability is for this status (a pause's evidence, or P(silence | running) for active), and the
        # figure it rests on with its Monte Carlo error, as `routewatch status` and the pages say
        "probability_meaning": probability_meaning(act) if act else None,
        "p_silence_if_running": act.p_silence_if_active if act else None,
        "p_silence_monte_carlo_se": (act.details or {}).get("p_silence_monte_carlo_se") if act else None,
        "last_activity": to_json(act.last_activity) if act else None,
        "days_quiet": act.days_quiet if act else None, "coverage_assumption": act.coverage if act else None,
        "quiet_coverage": {"looks": view.quiet.looks, "usable_looks": view.quiet.usable_looks,
                           "mean_p_detect": view.quiet.mean_p_detect, "vessel_length_m": view.quiet.vessel_length_m,
                           "text": view.quiet_text},
        "simulated": view.simulated, "simulated_notes": view.simulated_notes,
        "evidence_ids": list(act.evidence_ids) if act else [],
    }


def store_version(store: Any) -> int | None:
    """The store's write counter (:meth:`Store.version`, one cheap query); None for an object that has none."""
    version = getattr(store, "version", None)
    return int(version()) if callable(version) else None


class SnapshotHolder:
    """Holds the current snapshot; ``get`` starts a background rebuild when the store changed (its write counter,
    checked at most every ``check_s``), and every ``ttl_s`` when the clock is followed (or the store has no
    counter)."""

    def __init__(self, store: Any, as_of: datetime | None, root: Path | None, ttl_s: float = 60.0,
                 analyzer: Callable[[datetime], Any] | None = None, check_s: float = 1.0) -> None:
        self.store, self.as_of, self.root, self.ttl_s = store, as_of, root, ttl_s
        self.analyzer, self.check_s = analyzer, check_s
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()  # one load at a time: a background load must not replace a newer one
        self._away = False  # the database was away at the last check (said once, not every second)
        self._refreshing = False
        self._checked = time.monotonic()
        self._version = store_version(store)
        self._snap = Snapshot.load(store, as_of, root, analyzer)

    def _stale(self) -> bool:
        """Whether the snapshot should be rebuilt; reads the store's counter, so only called off the request path."""
        now = time.monotonic()
        if (self._version is None or self.as_of is None) and now - self._snap.loaded > self.ttl_s:
            return True  # the clock moved on ("quiet for N days" has changed), or no counter says what changed
        return self._version is not None and store_version(self.store) != self._version

    def get(self) -> Snapshot:
        """The current snapshot, at once: a request never waits on the database. At most every ``check_s`` a
        background thread asks the store whether it changed and, if so, builds the next snapshot."""
        snap = self._snap
        now = time.monotonic()
        if now - self._checked >= self.check_s:
            self._checked = now
            with self._lock:
                start = not self._refreshing
                self._refreshing = True
            if start:
                threading.Thread(target=self._refresh_background, daemon=True).start()
        return snap

    def _load(self, only_if_stale: bool = False) -> Snapshot:
        with self._load_lock:  # an API write's refresh waits for a background load in flight, then loads after it
            if only_if_stale and not self._stale():  # a refresh while this one waited built it already
                return self._snap
            version = store_version(self.store)  # before reading: a write during the read is caught next time
            snap = Snapshot.load(self.store, self.as_of, self.root, self.analyzer)
            self._version, self._snap = version, snap
            return snap

    def _refresh_background(self) -> None:
        try:
            if self._stale():
                self._load(only_if_stale=True)
            if self._away:
                log.warning("the store answers again")
            self._away = False
        except Exception:  # the database is away (a restart, the network): keep serving the last snapshot
            if not self._away:
                log.warning("could not check or rebuild the dashboard snapshot; serving the last one", exc_info=True)
            self._away = True
        finally:
            with self._lock:
                self._refreshing = False

    def refresh(self) -> Snapshot:
        """Reload now (after a write), so the writer reads what it wrote."""
        return self._load()
