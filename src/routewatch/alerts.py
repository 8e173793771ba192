"""``routewatch watch``: run the chain on a schedule and send one alert per route status change.

Each cycle runs the chain (fetch, detect, ingest, analyze) to get every route's judgement, compares each status
with the last one alerted for that route, and records a change as a row in the store's ``alerts`` table *before*
sending it. Rows not yet delivered are sent (webhook POST of JSON, retried with exponential backoff, and/or one
JSON line appended to a log, the local record, written once whether or not the webhook took it) and marked
delivered. Because the rows live in the store, a restarted watcher neither
repeats an alert already delivered nor forgets one that was not; a receiver can also de-duplicate on ``id``.
The first status seen for a route under a coverage assumption is recorded as a baseline and not sent (unless
``notify_initial``): a status judged under another assumption is not compared with.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import and_, insert, or_, select, update

from routewatch.model import Activity, stable_id
from routewatch.store.schema import activities as activities_table
from routewatch.store.schema import alerts as alerts_table

log = logging.getLogger("routewatch.alerts")
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_every(text: str) -> timedelta:
    """'90s', '30m', '6h', '1d' as a timedelta; anything else is refused with a clear message."""
    m = DURATION.match(text)
    if not m:
        raise ValueError(f"cannot read interval {text!r}: give a number and a unit, e.g. 30m, 6h or 1d")
    seconds = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    if seconds <= 0:
        raise ValueError(f"interval {text!r} must be positive")
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class AlertConfig:
    """Where alerts go and how hard to try: ``attempts`` posts per cycle, waits ``backoff_s`` x 2^k between."""

    webhook: str | None = None
    log_path: Path | None = None
    attempts: int = 5
    backoff_s: float = 1.0
    timeout_s: float = 10.0
    notify_initial: bool = False

    def __post_init__(self) -> None:
        if not self.webhook and not self.log_path:
            raise ValueError("give a webhook URL and/or a log file to send alerts to")

    def claim_lease(self) -> timedelta:
        """The longest one alert's sending can take (every attempt timing out, every wait), with a margin: a claim
        older than this was left by a watcher that stopped."""
        waits = sum(self.backoff_s * 2 ** k for k in range(max(self.attempts - 1, 0)))
        return timedelta(seconds=2 * (self.attempts * self.timeout_s + waits) + 60)


def _previous_status(conn: Any, store: Any, act: Activity) -> tuple[bool, str | None, datetime | None]:
    """(known, status, as_of): the last status alerted for the route under the same coverage assumption as ``act``,
    else the last stored judgement before this one under that assumption, else unknown (a baseline). A status
    judged under another assumption (``--coverage`` switched, or the ledger) is no reference: comparing across
    assumptions would report a change of assumption as a change of the route. The coverage of an alert is that
    of the stored judgement it was made from (an alert whose judgement is not stored is taken as comparable)."""
    a, j = alerts_table, activities_table
    rows = conn.execute(select(a.c.new_status, a.c.as_of, j.c.coverage)
                        .select_from(a.outerjoin(j, and_(j.c.route == a.c.route, j.c.as_of == a.c.as_of)))
                        .where(a.c.route == act.route).order_by(a.c.as_of.desc(), a.c.created.desc()))
    for row in rows:
        if row.coverage is None or row.coverage == act.coverage:
            return True, row.new_status, row.as_of
    earlier = [x for x in store.activities(route=act.route) if x.as_of < act.as_of and x.coverage == act.coverage]
    if earlier:
        return True, str(max(earlier, key=lambda x: x.as_of).status), None
    return False, None, None


def record_changes(store: Any, activities: Iterable[Activity], notify_initial: bool = False) -> list[str]:
    """Insert one pending alert row per status change (idempotent by id); return the ids of the new rows."""
    new_ids: list[str] = []
    now = datetime.now(UTC)
    with store.transaction() as conn:
        for act in sorted(activities, key=lambda a: (a.route, a.as_of)):
            known, old, alerted_as_of = _previous_status(conn, store, act)
            new = str(act.status)
            if (known and old == new) or (alerted_as_of is not None and act.as_of < alerted_as_of):
                continue  # no change, or a judgement older than the one last alerted (a re-run of the past)
            aid = stable_id("alert", act.route, act.as_of, old, new)
            if conn.execute(select(alerts_table.c.id).where(alerts_table.c.id == aid)).first():
                continue
            baseline = not known and not notify_initial
            conn.execute(insert(alerts_table).values(
                id=aid, route=act.route, as_of=act.as_of, old_status=old, new_status=new, created=now,
                delivered_at=now if baseline else None, attempts=0,
                last_error="baseline: first status seen for this route, not sent" if baseline else None))
            if not baseline:
                new_ids.append(aid)
    return new_ids


def payload(row: Any, act: Activity | None) -> dict[str, Any]:
    """The JSON an alert carries: the change and the numbers behind the new judgement."""
    body: dict[str, Any] = {"id": row.id, "route": row.route, "as_of": row.as_of.isoformat().replace("+00:00", "Z"),
                            "old_status": row.old_status, "new_status": row.new_status}
    if act is not None:
        body.update(probability=act.probability, days_quiet=act.days_quiet, coverage=act.coverage,
                    last_activity=act.last_activity.isoformat().replace("+00:00", "Z") if act.last_activity else None,
                    explanation=act.explanation, evidence_ids=list(act.evidence_ids))
    return body


def _post(client: httpx.Client, url: str, body: dict[str, Any], cfg: AlertConfig,
          sleep: Callable[[float], None]) -> tuple[bool, int, str | None]:
    """POST with retries; (delivered, attempts made, last error). 4xx other than 408/429 is not retried."""
    error: str | None = None
    for attempt in range(cfg.attempts):
        if attempt:
            sleep(cfg.backoff_s * 2 ** (attempt - 1))
        try:
            resp = client.post(url, json=body, headers={"Idempotency-Key": body["id"]})
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
            continue
        if resp.status_code < 300:
            return True, attempt + 1, None
        error = f"HTTP {resp.status_code}"
        if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
            return False, attempt + 1, error
    return False, cfg.attempts, error


def _logged_ids(path: Path) -> set[str]:
    """Ids of the alerts already in the JSON-lines log (unreadable lines are skipped)."""
    ids: set[str] = set()
    if not path.exists():
        return ids
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                ids.add(json.loads(line)["id"])
            except (ValueError, KeyError, TypeError):
                continue
    return ids


def deliver_pending(store: Any, cfg: AlertConfig, sleep: Callable[[float], None] = time.sleep) -> list[dict]:
    """Send every undelivered alert; mark each delivered, or keep it pending with its error for the next cycle.
    The log is the local record: each alert is appended to it once, whether or not the webhook took it."""
    with store.engine.connect() as conn:
        rows = list(conn.execute(select(alerts_table).where(alerts_table.c.delivered_at.is_(None))
                                 .order_by(alerts_table.c.as_of, alerts_table.c.route)))
    sent: list[dict] = []
    logged = _logged_ids(cfg.log_path) if rows and cfg.log_path else set()
    with httpx.Client(timeout=cfg.timeout_s) as client:
        for row in rows:
            # claim the alert before sending it: another watcher on the same store that read it as pending too
            # finds it claimed and leaves it, so the change is not delivered twice; a claim older than the longest
            # a send can take is that of a watcher that died, and is taken over
            now = datetime.now(UTC)
            a = alerts_table
            with store.transaction() as conn:
                claimed = conn.execute(update(a).where(and_(
                    a.c.id == row.id, a.c.delivered_at.is_(None),
                    or_(a.c.claimed_at.is_(None), a.c.claimed_at < now - cfg.claim_lease()))).values(
                    claimed_at=now)).rowcount
            if not claimed:
                continue
            acts = {a.as_of: a for a in store.activities(route=row.route)}
            body = payload(row, acts.get(row.as_of))
            ok, attempts, error = True, 0, None
            if cfg.webhook:
                ok, attempts, error = _post(client, cfg.webhook, body, cfg, sleep)
            if cfg.log_path and row.id not in logged:
                cfg.log_path.parent.mkdir(parents=True, exist_ok=True)
                with cfg.log_path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(body) + "\n")
                logged.add(row.id)
            with store.transaction() as conn:
                conn.execute(update(alerts_table).where(and_(alerts_table.c.id == row.id)).values(
                    attempts=row.attempts + attempts, last_error=error, claimed_at=None,
                    delivered_at=datetime.now(UTC) if ok else None))
            if ok:
                sent.append(body)
            else:
                log.warning("alert %s for %s not delivered after %d attempts: %s", row.id, row.route, attempts, error)
    return sent


def pending(store: Any) -> list[dict[str, Any]]:
    """Alerts recorded but not yet delivered (the webhook failed): route, change and the last error."""
    a = alerts_table
    with store.engine.connect() as conn:
        rows = conn.execute(select(a.c.id, a.c.route, a.c.old_status, a.c.new_status, a.c.attempts, a.c.last_error)
                            .where(a.c.delivered_at.is_(None)).order_by(a.c.as_of, a.c.route))
        return [dict(r._mapping) for r in rows]


def baselines_since(store: Any, since: datetime) -> list[dict[str, Any]]:
    """Baselines recorded since ``since``: first statuses of routes, kept as the reference for later changes and
    not sent (unless --notify-initial)."""
    a = alerts_table
    with store.engine.connect() as conn:
        rows = conn.execute(select(a.c.route, a.c.new_status).where(
            a.c.created >= since, a.c.last_error.like("baseline:%")).order_by(a.c.route))
        return [dict(r._mapping) for r in rows]


def check(store: Any, activities: Iterable[Activity], cfg: AlertConfig,
          sleep: Callable[[float], None] = time.sleep) -> list[dict]:
    """One cycle after the chain ran: record changes, then deliver what is pending (this cycle's and older)."""
    record_changes(store, activities, cfg.notify_initial)
    return deliver_pending(store, cfg, sleep)


Chain = Callable[[datetime], list[Activity]]


def default_chain(workspace: Any, store: Any, watchlist: Any, sensors: tuple[str, ...] = (),
                  coverage: Any = None, lookback: timedelta = timedelta(days=2)) -> Chain:
    """The chain over a workspace: for each sensor, fetch new scenes of every site and detect ships in them
    (``sources.imagery``), then analyze. AIS and analyst reports are ingested by their own commands into the store,
    so the analysis sees them. With no sensors, the cycle only re-analyzes what the store holds."""
    from routewatch.pipeline import analyze

    state = {"since": None}

    def run(as_of: datetime) -> list[Activity]:
        since = state["since"] or as_of - lookback
        for sensor in sensors:
            from routewatch.sources.imagery.ingest import fetch_site
            from routewatch.sources.imagery.pipeline import detect_site

            for site in watchlist.sites.values():
                fetch_site(workspace, site, since, as_of, sensor, store=store, progress=False)
                detect_site(workspace, site.key, since, as_of, db=workspace.db_url, progress=False)
        state["since"] = as_of
        result = analyze(store, watchlist, as_of, coverage=coverage)
        return list(result.activities.values())

    return run


def watch(store: Any, chain: Chain, cfg: AlertConfig, every: timedelta, cycles: int | None = None,
          sleep: Callable[[float], None] = time.sleep, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
          on_cycle: Callable[[int, list[dict]], None] | None = None) -> int:
    """Run ``cycles`` cycles (forever when None), ``every`` apart; a failing chain is logged and retried next time."""
    done = 0
    total = 0
    while cycles is None or done < cycles:
        started = time.monotonic()
        try:
            sent = check(store, chain(clock()), cfg, sleep)
        except Exception as exc:  # the watcher must outlive one bad cycle
            log.exception("watch cycle failed")
            store.record_failure("watch", "", f"{type(exc).__name__}: {exc}")
            sent = []
        total += len(sent)
        done += 1
        if on_cycle:
            on_cycle(done, sent)
        if cycles is None or done < cycles:
            sleep(max(0.0, every.total_seconds() - (time.monotonic() - started)))
    return total
