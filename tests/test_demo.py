"""`routewatch demo` end to end through the CLI: the printed judgement, the HTML summary, and idempotent re-runs."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from routewatch.cli import app
from routewatch.store import Store
from routewatch.workspace import Workspace

runner = CliRunner()


def _counts(ws: Path) -> dict[str, int]:
    store = Store.open(Workspace.open(ws).db_url)
    return store.table_counts()


def test_demo_prints_the_reference_judgement_and_is_idempotent(tmp_path: Path) -> None:
    ws = tmp_path / "demo"
    first = runner.invoke(app, ["demo", "--workspace", str(ws)], env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    out = first.output
    assert "Last shipment seen: 12 Feb 2024, MAIA-1 at Rajin" in out
    assert "Days quiet: 19" in out
    assert "Status under near-daily imagery (what the analysts had): paused" in out
    assert "Status under Sentinel-1 alone (12-day repeat): undetermined" in out
    assert "published: at least 32 trips" in out
    # the README quotes these seeded figures: a change of the estimate's draws must show here
    assert "trips: 39 trips (90% interval 33 - 52" in out and "containers: 11,600 containers" in out
    assert "6,700 containers" in out
    assert "SIMULATED imagery" in out
    html = ws / "reports" / "summary-2024-03-02.html"
    assert html.exists() and "paused" in html.read_text()
    # the declared schedules' looks are assumed, the ledger's made, and the summary keeps the figures behind P
    page = html.read_text()
    assert "29 assumed" in page and "0 made" in page and "P(silence | running)" in page and "95 % call in" in page
    counts = _counts(ws)
    sim_counts = _counts(ws / "simulated-imagery")
    assert sim_counts["sightings"] > 0 and counts["sightings"] > 0

    again = runner.invoke(app, ["demo", "--workspace", str(ws), "--as-of", "2024-03-20"], env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    assert "Status under near-daily imagery (what the analysts had): resumed" in again.output
    after = _counts(ws)
    for table in ("sightings", "looks", "aggregates", "evidence"):
        assert after[table] == counts[table], table
    assert _counts(ws / "simulated-imagery")["sightings"] == sim_counts["sightings"]
    # Nothing simulated reaches the reference case's own store.
    store = Store.open(Workspace.open(ws).db_url)
    assert not any(s.simulated for s in store.sightings())
