"""The reference-case demo: build the Rajin workspace, import the published observations, judge the route.

It answers the 2 March 2024 question the way the analysts could not: the last shipment seen, the days quiet, the
route's status with a probability, and the coverage that probability rests on, under three coverage assumptions:
the looks actually published (almost none: published reporting lists sightings, not empty looks), the near-daily
imagery the analysts had, and Sentinel-1 alone. The difference between them is the point of the demo.
"""

from __future__ import annotations

import html
import shutil
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.table import Table

from routewatch.model import Activity, Estimate
from routewatch.workspace import Workspace

EXAMPLE = "rajin"
EXAMPLE_FILES = ("watchlist.toml", "observations.csv", "SOURCES.md", "published_estimates.csv")
ASSUMPTIONS: tuple[tuple[str, str | None], ...] = (
    ("published looks only (ledger)", None),
    ("near-daily imagery (what the analysts had)", "near-daily"),
    ("Sentinel-1 alone (12-day repeat)", "sentinel-1"),
)
PUBLISHED_TRIPS = "at least 32 trips (NK Pro, 29 Feb 2024)"
PUBLISHED_CARGO = "about 6,700 containers: up to about 3 million 152 mm shells or 500,000 122 mm rockets (South Korean defence minister, 26 Feb 2024)"


@dataclass
class DemoRow:
    label: str
    activity: Activity


def example_dir() -> Path:
    return Path(str(resources.files("routewatch.examples") / EXAMPLE))


def prepare_workspace(ws: Workspace) -> None:
    """Create the workspace from the shipped example; files already there are refreshed from the package."""
    ws.ensure()
    for name in EXAMPLE_FILES:
        shutil.copyfile(example_dir() / name, ws.root / name)


def run_demo(
    ws: Workspace, as_of: datetime, *, imagery: bool = True, console: Console | None = None
) -> dict[str, object]:
    """Build, import, analyse and print; returns the rows and the HTML summary path (for tests)."""
    from routewatch.analysis.activity import describe_call
    from routewatch.pipeline import analyze
    from routewatch.sources.reports.observations import import_observations
    from routewatch.store import Store
    from routewatch.watchlist import load_watchlist

    console = console or Console()
    prepare_workspace(ws)
    watchlist = load_watchlist(ws.watchlist_path)
    store = Store.open(ws.db_url)
    store.upsert_watchlist(watchlist)
    imported = import_observations(store, ws.root / "observations.csv", watchlist)
    console.print(f"[bold]routewatch demo[/bold]: reference case in {ws.root}")
    console.print(f"Observations: {imported}")
    simulated_note = None
    if imagery:
        simulated_note = _imagery_part(ws, store, watchlist, console)

    rows: list[DemoRow] = []
    result = None
    for label, schedule in ASSUMPTIONS:
        coverage = watchlist.coverage[schedule] if schedule else None
        r = analyze(store, watchlist, as_of, coverage=coverage, persist=schedule is None)
        if schedule is None:
            result = r
        for act in r.activities.values():
            rows.append(DemoRow(label, act))
    assert result is not None
    route = next(iter(watchlist.routes.values()))
    table = Table(title=f"{route.name}: status as of {as_of:%Y-%m-%d}", title_justify="left")
    for col in (
        "coverage assumption",
        "status",
        "P",
        "P(silence | running)",
        "looks in quiet period",
        "95 % call in",
    ):
        table.add_column(col, overflow="fold")
    for row in rows:
        a = row.activity
        call = describe_call(a.days_to_confident_call)
        table.add_row(
            row.label,
            a.status.value,
            f"{a.probability:.2f}",
            f"{a.p_silence_if_active:.3f}" if a.p_silence_if_active is not None else "-",
            _looks_text(a),
            call,
        )
    console.print(table)
    summary = summary_lines(
        result.activities[route.key],
        rows,
        result.trips,
        result.estimates.get(route.key, []),
        store,
        watchlist,
    )
    for line in summary:
        console.print(line)
    if simulated_note:
        console.print(simulated_note)
    out = ws.reports_dir / f"summary-{as_of:%Y-%m-%d}.html"
    out.write_text(summary_html(route.name, as_of, rows, summary, simulated_note), encoding="utf-8")
    console.print(f"HTML summary: {out}")
    return {"rows": rows, "summary": summary, "html": out, "result": result}


def summary_lines(
    ledger: Activity,
    rows: list[DemoRow],
    trips: list,
    estimates: list[Estimate],
    store: object,
    watchlist: object,
) -> list[str]:
    lines: list[str] = []
    if ledger.last_activity is not None:
        ev = store.evidence(list(ledger.last_activity_evidence))  # type: ignore[attr-defined]
        sources = sorted({e.source for e in ev.values() if e.source})
        who = ledger.details.get("last_activity_vessel") or "an unidentified vessel"
        vessels = getattr(watchlist, "vessels", {})
        who = vessels[who].name if who in vessels else who
        site = ledger.details.get("last_activity_site")
        sites = getattr(watchlist, "sites", {})
        site_name = sites[site].name if site in sites else site
        lines.append(
            f"Last shipment seen: {ledger.last_activity:%d %b %Y}, {who} at {site_name}"
            + (f" ({'; '.join(sources)})" if sources else "")
        )
        lines.append(f"Days quiet: {ledger.days_quiet:.0f}")
    for row in rows:
        a = row.activity
        lines.append(f"Status under {row.label}: {a.status.value}, P = {a.probability:.2f}. {a.explanation}")
    kinds: dict[str, int] = {}
    for t in trips:
        kinds[t.kind] = kinds.get(t.kind, 0) + 1
    detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    lines.append(
        f"Trips counted since August 2023: {len(trips)} ({detail or 'none'}); published: {PUBLISHED_TRIPS}."
    )
    from routewatch.analysis.estimates import significant

    for e in estimates:
        lines.append(
            f"{e.name}: {significant(e.value)} {e.unit} ({e.level:.0%} interval {significant(e.low)} - "
            f"{significant(e.high)}; three significant figures)"
        )
    lines.append(f"Published: {PUBLISHED_CARGO}.")
    from routewatch.analysis.estimates import conversion_range

    lo152, hi152 = conversion_range(6700, "152mm")
    lo122, hi122 = conversion_range(6700, "122mm")
    lines.append(
        f"The published conversion, recomputed: 6,700 containers x 400-460 = {lo152 / 1e6:.2f}-{hi152 / 1e6:.2f} million "
        f"152 mm shells, or x 75-80 = {lo122 / 1e6:.2f}-{hi122 / 1e6:.2f} million 122 mm rockets. The trip count "
        "drives the total: see `routewatch analyze` for the sensitivity table."
    )
    return lines


def _looks_text(a: Activity) -> str:
    """The quiet period's looks: made (the ledger), or assumed by a declared schedule, which the row must not hide."""
    from routewatch.analysis.activity import rests_on_declared_coverage

    return f"{a.usable_looks_quiet} {'assumed' if rests_on_declared_coverage(a) else 'made'}"


def summary_html(title: str, as_of: datetime, rows: list[DemoRow], lines: list[str], note: str | None) -> str:
    from routewatch.analysis.activity import describe_call

    esc = html.escape
    body = "\n".join(f"<li>{esc(line)}</li>" for line in lines)
    trs = "\n".join(
        f"<tr><td>{esc(r.label)}</td><td class='{esc(r.activity.status.value)}'>{esc(r.activity.status.value)}</td>"
        f"<td>{r.activity.probability:.2f}</td><td>"
        + (f"{r.activity.p_silence_if_active:.3f}" if r.activity.p_silence_if_active is not None else "-")
        + f"</td><td>{esc(_looks_text(r.activity))}</td><td>{esc(describe_call(r.activity.days_to_confident_call))}"
        "</td></tr>"
        for r in rows
    )
    extra = f"<p><em>{esc(note)}</em></p>" if note else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>routewatch summary: {esc(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;line-height:1.4}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3rem .6rem}}
.paused{{color:#b00}}.active{{color:#070}}.resumed{{color:#06a}}.undetermined{{color:#a0a}}</style></head>
<body><h1>{esc(title)}</h1><p>As of {as_of:%d %B %Y} (UTC). Every probability below rests on the coverage
assumption in its row.</p>
<table><tr><th>coverage assumption</th><th>status</th><th>P</th><th>P(silence | running)</th>
<th>looks in quiet period</th><th>95 % call in</th></tr>{trs}</table>
<ul>{body}</ul>{extra}
<p>The full report is built by <code>routewatch report</code>.</p></body></html>
"""


def _imagery_part(ws: Workspace, store: object, watchlist: object, console: Console) -> str | None:
    """Simulated scenes of the reference ports through detection into sightings (clearly labelled simulated)."""
    try:
        from routewatch.simulate.demo import run_imagery_demo
    except ImportError:
        return None
    return run_imagery_demo(ws, store, watchlist, console)
