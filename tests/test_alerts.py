"""Alerts: one per route status change, delivered to a webhook on 127.0.0.1 with retries, never twice."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from routewatch.alerts import AlertConfig, check, parse_every, watch
from routewatch.model import Status
from routewatch.report.sample import AS_OF, ROUTE, write_sample
from routewatch.store import Store


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers with the queued status codes (then 200)."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.codes: list[int] = []
        self.delay_s = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                time.sleep(outer.delay_s)
                code = outer.codes.pop(0) if outer.codes else 200
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def history(store, tmp_path: Path):
    """The sample store with an earlier judgement (active) before the stored one (paused)."""
    write_sample(store, tmp_path)
    paused = next(a for a in store.activities(route=ROUTE) if a.as_of == AS_OF)
    active = replace(paused, as_of=AS_OF - timedelta(days=10), status=Status.ACTIVE)
    store.add_activities([active])
    return active, paused


def no_sleep(_: float) -> None:
    pass


def test_retry_after_500_and_no_duplicate_after_restart(store, db_url: str, history, receiver: Receiver) -> None:
    _, paused = history
    receiver.codes = [500]
    cfg = AlertConfig(webhook=receiver.url, backoff_s=0.0)
    sent = check(store, [paused], cfg, no_sleep)
    assert [b["new_status"] for b in sent] == ["paused"]
    assert len(receiver.bodies) == 2 and receiver.bodies[0]["id"] == receiver.bodies[1]["id"]
    assert receiver.bodies[1]["old_status"] == "active" and receiver.bodies[1]["route"] == ROUTE
    assert receiver.bodies[1]["probability"] == pytest.approx(paused.probability)
    # a restarted watcher: a fresh Store on the same database, the same judgement again
    again = Store.open(db_url)
    try:
        assert watch(again, lambda _now: [paused], cfg, timedelta(seconds=1), cycles=2, sleep=no_sleep) == 0
    finally:
        again.close()
    assert len(receiver.bodies) == 2


def test_two_watchers_on_one_store_send_a_change_once(store, db_url: str, history, receiver: Receiver,
                                                       tmp_path: Path) -> None:
    """Two watchers (processes with their own connections) find the same pending alert: the one that claims it in
    the store sends it and writes the log line; the other leaves it. A claim left by a watcher that died is taken
    over once it is older than the longest a send can take."""
    from sqlalchemy import update

    from routewatch.alerts import alerts_table, deliver_pending, record_changes

    _, paused = history
    receiver.delay_s = 0.5  # a slow webhook: both watchers read the alert as pending before either marks it
    log = tmp_path / "alerts.jsonl"
    cfg = AlertConfig(webhook=receiver.url, log_path=log, backoff_s=0.0)
    record_changes(store, [paused], False)
    other = Store.open(db_url)
    try:
        results: list[list[dict]] = []
        threads = [threading.Thread(target=lambda s=s: results.append(deliver_pending(s, cfg, no_sleep)))
                   for s in (store, other)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        other.close()
    assert sorted(len(r) for r in results) == [0, 1]
    assert len(receiver.bodies) == 1 and len(log.read_text().splitlines()) == 1
    # a watcher that claimed an alert and died: the claim blocks others only for the lease
    with store.transaction() as conn:
        conn.execute(update(alerts_table).values(delivered_at=None, claimed_at=datetime.now(UTC)))
    assert deliver_pending(store, cfg, no_sleep) == [] and len(receiver.bodies) == 1
    with store.transaction() as conn:
        conn.execute(update(alerts_table).values(claimed_at=datetime.now(UTC) - cfg.claim_lease() - timedelta(1)))
    assert len(deliver_pending(store, cfg, no_sleep)) == 1 and len(receiver.bodies) == 2


def test_undelivered_alert_is_retried_next_cycle_once(store, history, receiver: Receiver) -> None:
    _, paused = history
    receiver.codes = [500, 500, 500]
    cfg = AlertConfig(webhook=receiver.url, attempts=3, backoff_s=0.0)
    waits: list[float] = []
    assert check(store, [paused], cfg, waits.append) == []
    assert len(receiver.bodies) == 3 and waits == [0.0, 0.0]
    assert len(check(store, [paused], cfg, no_sleep)) == 1  # the receiver is back
    assert len(check(store, [paused], cfg, no_sleep)) == 0
    assert len(receiver.bodies) == 4


def test_backoff_doubles(store, history, receiver: Receiver) -> None:
    _, paused = history
    receiver.codes = [503, 503, 503]
    waits: list[float] = []
    check(store, [paused], AlertConfig(webhook=receiver.url, attempts=4, backoff_s=0.5), waits.append)
    assert waits == [0.5, 1.0, 2.0]


def test_client_error_is_not_retried(store, history, receiver: Receiver) -> None:
    _, paused = history
    receiver.codes = [404]
    assert check(store, [paused], AlertConfig(webhook=receiver.url, backoff_s=0.0), no_sleep) == []
    assert len(receiver.bodies) == 1


def test_each_change_once_and_log_lines(store, history, receiver: Receiver, tmp_path: Path) -> None:
    _, paused = history
    log = tmp_path / "alerts.jsonl"
    cfg = AlertConfig(webhook=receiver.url, log_path=log, backoff_s=0.0)
    resumed = replace(paused, as_of=AS_OF + timedelta(days=5), status=Status.RESUMED)
    statuses = []
    for act in (paused, paused, resumed, resumed, paused):
        store.add_activities([act])
        statuses += [b["new_status"] for b in check(store, [act], cfg, no_sleep)]
    assert statuses == ["paused", "resumed"]  # going back to an older judgement is not a change of the latest
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["new_status"] for x in lines] == statuses


def test_first_status_is_a_baseline_unless_asked(store, tmp_path: Path, receiver: Receiver) -> None:
    write_sample(store, tmp_path)
    (paused,) = store.activities(route=ROUTE)
    assert check(store, [paused], AlertConfig(webhook=receiver.url), no_sleep) == []
    assert receiver.bodies == []


def test_first_status_with_notify_initial(store, tmp_path: Path, receiver: Receiver) -> None:
    write_sample(store, tmp_path)
    (paused,) = store.activities(route=ROUTE)
    sent = check(store, [paused], AlertConfig(webhook=receiver.url, notify_initial=True), no_sleep)
    assert [(b["old_status"], b["new_status"]) for b in sent] == [(None, "paused")]


def test_failing_chain_is_recorded_and_the_watch_goes_on(store, tmp_path: Path) -> None:
    calls = []

    def chain(now):
        calls.append(now)
        raise RuntimeError("imagery endpoint down")

    assert watch(store, chain, AlertConfig(log_path=tmp_path / "a.log"), timedelta(hours=6), cycles=2,
                 sleep=no_sleep) == 0
    assert len(calls) == 2
    assert any("imagery endpoint down" in f.message for f in store.failures(stage="watch"))


def test_parse_every_and_config() -> None:
    assert parse_every("6h") == timedelta(hours=6)
    assert parse_every("30m") == timedelta(minutes=30)
    assert parse_every("1.5d") == timedelta(days=1.5)
    for bad in ("", "6", "h6", "-1h", "0s"):
        with pytest.raises(ValueError):
            parse_every(bad)
    with pytest.raises(ValueError, match="webhook"):
        AlertConfig()


def test_watch_judges_under_a_declared_coverage_schedule(tmp_path: Path) -> None:
    """``watch --coverage NAME``: the alert states the declared schedule it was judged under; unknown names refused."""
    from typer.testing import CliRunner

    from routewatch.cli import app

    ws, log = tmp_path / "case", tmp_path / "alerts.jsonl"
    runner = CliRunner()
    assert runner.invoke(app, ["demo", "--no-imagery", "--workspace", str(ws)]).exit_code == 0
    args = ["watch", "--cycles", "1", "--every", "1h", "--notify-initial", "--log", str(log), "-w", str(ws)]
    result = runner.invoke(app, [*args, "--coverage", "sentinel-1"])
    assert result.exit_code == 0, result.output
    alerts = [json.loads(line) for line in log.read_text().splitlines()]
    assert alerts and all(a["coverage"].startswith("declared") and "sentinel-1" in a["coverage"] for a in alerts)
    refused = runner.invoke(app, [*args, "--coverage", "no-such-schedule"])
    assert refused.exit_code == 2 and "no-such-schedule" in refused.output


def test_a_switch_of_coverage_assumption_is_a_baseline_not_a_change(store, tmp_path: Path,
                                                                    receiver: Receiver) -> None:
    """A status judged under the ledger is no reference for one judged under a declared schedule."""
    write_sample(store, tmp_path)
    stored = next(a for a in store.activities(route=ROUTE) if a.as_of == AS_OF)
    ledger = replace(stored, as_of=AS_OF - timedelta(days=1), status=Status.UNDETERMINED)
    declared = replace(stored, as_of=AS_OF + timedelta(days=1), status=Status.PAUSED,
                       coverage="declared: sentinel-1 every 12 days")
    cfg = AlertConfig(webhook=receiver.url, backoff_s=0.0)
    store.add_activities([ledger])
    assert check(store, [ledger], cfg, no_sleep) == []  # the first status under the ledger: a baseline
    store.add_activities([declared])
    assert check(store, [declared], cfg, no_sleep) == []  # the first under the schedule: a baseline too
    assert receiver.bodies == []
    active = replace(declared, as_of=AS_OF + timedelta(days=2), status=Status.ACTIVE)
    store.add_activities([active])
    sent = check(store, [active], cfg, no_sleep)
    assert [(b["old_status"], b["new_status"]) for b in sent] == [("paused", "active")]


def test_the_log_records_an_alert_once_even_when_the_webhook_fails(store, history, receiver: Receiver,
                                                                    tmp_path: Path) -> None:
    from routewatch.alerts import pending

    _, paused = history
    log = tmp_path / "alerts.jsonl"
    receiver.codes = [500, 500]
    cfg = AlertConfig(webhook=receiver.url, log_path=log, attempts=2, backoff_s=0.0)
    assert check(store, [paused], cfg, no_sleep) == []
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(x["old_status"], x["new_status"]) for x in lines] == [("active", "paused")]
    assert [(p["new_status"], p["last_error"]) for p in pending(store)] == [("paused", "HTTP 500")]
    assert len(check(store, [paused], cfg, no_sleep)) == 1  # the receiver is back: sent, not logged again
    assert len(log.read_text().splitlines()) == 1 and pending(store) == []


def test_watch_says_when_alerts_are_pending_delivery(tmp_path: Path, receiver: Receiver) -> None:
    from typer.testing import CliRunner

    from routewatch.cli import app

    ws, log = tmp_path / "case", tmp_path / "alerts.jsonl"
    runner = CliRunner()
    assert runner.invoke(app, ["demo", "--no-imagery", "--workspace", str(ws)]).exit_code == 0
    receiver.codes = [500] * 100
    result = runner.invoke(app, ["watch", "--cycles", "1", "--every", "1h", "--notify-initial", "--attempts", "1",
                                 "--coverage", "sentinel-1", "--webhook", receiver.url, "--log", str(log), "-w", str(ws)])
    assert result.exit_code == 0, result.output
    assert "pending delivery" in result.output and "no change" not in result.output
    assert log.read_text().splitlines()


def test_a_watch_cycle_that_records_a_baseline_says_so(tmp_path: Path) -> None:
    """The first status of a route is recorded as the reference for later changes and not sent: the cycle's line
    says so instead of "no change", and the next cycle, with nothing new, says "no change"."""
    from typer.testing import CliRunner

    from routewatch.cli import app

    ws, log = tmp_path / "case", tmp_path / "alerts.jsonl"
    runner = CliRunner()
    assert runner.invoke(app, ["demo", "--no-imagery", "--workspace", str(ws)]).exit_code == 0
    args = ["watch", "--cycles", "1", "--every", "1h", "--coverage", "sentinel-1", "--log", str(log), "-w", str(ws)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "baseline recorded, not sent: rajin-russia:" in " ".join(first.output.split())
    again = runner.invoke(app, args)
    assert "cycle 1: no change" in again.output and "baseline" not in again.output
