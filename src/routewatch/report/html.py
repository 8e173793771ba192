"""The analyst report: one self-contained HTML file (inline CSS, inline SVG charts, chips as data URIs).

It opens offline and can be mailed to an editor: nothing in it loads from the network unless the user asked for
map tiles with a URL template.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from routewatch.analysis.activity import probability_meaning
from routewatch.analysis.estimates import significant
from routewatch.model import Activity, Status
from routewatch.report.charts import map_svg, timeline_svg
from routewatch.report.data import ReportData, gather

METHODS = (
    "Each route is judged from the looks at its origin (the coverage ledger), not from sightings alone. From the "
    "route's history routewatch estimates its cadence (the time between calls at the origin: the largest of the "
    "lower bounds its own counts and published counts give); how regular the calls are (gaps gamma-distributed, "
    "shape 2 by default) and how long a call lasts (1 to 4 days by default) are assumptions, not estimates, and the judgement "
    "can hang on them (docs/judgement.md). For every usable look after the last activity, the chance that it would have shown a route vessel, had "
    "the route kept running, is the look's usable fraction times its detection probability for the vessel's length "
    "(a logistic curve in length per sensor). Consecutive looks of the same call are not independent chances: the "
    "probability of the observed silence if the route were active is computed over simulated calls with the "
    "estimated cadence. Its complement is the evidence of a pause; a route is called paused when it reaches 95 %. "
    "Where actual looks are missing, a declared coverage schedule is used and the report says so."
)

STATUS_WORDS = {
    Status.ACTIVE: "active", Status.SLOWING: "slowing", Status.PAUSED: "paused", Status.RESUMED: "resumed",
    Status.UNDETERMINED: "undetermined (not enough coverage to call)",
}


def _env() -> Environment:
    env = Environment(loader=PackageLoader("routewatch.report", "templates"), autoescape=select_autoescape(["html", "j2"]))
    env.filters["utc"] = lambda d: "—" if d is None else d.strftime("%Y-%m-%d %H:%M UTC")
    env.filters["day"] = lambda d: "—" if d is None else d.strftime("%d %b %Y")
    env.filters["pct"] = lambda p: "—" if p is None else f"{p:.0%}"
    env.filters["num"] = lambda x, fmt="{:,.0f}": "—" if x is None else fmt.format(x)
    env.filters["sig"] = lambda x: "—" if x is None else significant(x)  # estimates: three significant figures
    env.globals["meaning"] = probability_meaning
    return env


def headline(act: Activity | None) -> str:
    """One sentence per route, the line an editor reads first."""
    if act is None:
        return "not analysed for this date"
    words = STATUS_WORDS.get(act.status, str(act.status))
    text = f"{words}, probability {act.probability:.0%}"
    if act.days_quiet is not None:
        text += f", {act.days_quiet:.0f} days quiet"
    # a page following the clock may show a judgement stored for an earlier date: it says which
    return text + f" (judged as of {act.as_of:%Y-%m-%d})"


def render_report(data: ReportData, tiles: str | None = None, title: str | None = None) -> str:
    """Render gathered records as the HTML report (a string)."""
    names = {k: v.name for k, v in data.vessels.items()}
    routes: list[dict[str, Any]] = []
    for view in data.views:
        trips = []
        for trip in view.trips:
            ev = data.trip_evidence(trip)
            chips = [(e, data.chip_data_uri(e)) for e in ev.get("chip", [])]
            trips.append({"trip": trip, "evidence": ev, "chips": chips, "scenes": data.trip_scenes(trip)})
        routes.append({
            "view": view, "headline": headline(view.activity), "trips": trips,
            "timeline": timeline_svg(view, names),
            "sites": {k: data.sites[k].name if k in data.sites else k for k in (*view.route.origin, *view.route.destination)},
        })
    simulated = [r for r in routes if r["view"].simulated]
    return _env().get_template("report.html.j2").render(
        title=title or "routewatch report", data=data, routes=routes, simulated=simulated, names=names,
        map_svg=map_svg(data, tiles=tiles), methods=METHODS, tiles=tiles,
        generated=datetime.now(UTC), estimates=data.estimates,
    )


def build_report(store: Any, as_of: datetime, output: Path, *, analysis: Any | None = None,
                 tiles: str | None = None, workspace_root: Path | None = None) -> Path:
    """Gather, render and write the report; written to a temporary file first so no half file is left behind."""
    html = render_report(gather(store, as_of, analysis=analysis, workspace_root=workspace_root), tiles=tiles)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".part")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(output)
    return output
