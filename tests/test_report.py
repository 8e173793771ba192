"""The HTML report: headline numbers, coverage of the quiet period, simulated-data warning, self-containment."""

from __future__ import annotations

import re
import time
from datetime import UTC, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from routewatch.model import Status
from routewatch.report import build_report, gather, render_report
from routewatch.report.sample import AS_OF, ROUTE, write_sample
from routewatch.store import Store


class Tags(HTMLParser):
    """Collect tags with their attributes, and the visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Tags:
    p = Tags()
    p.feed(html)
    return p


@pytest.fixture
def sample_store(tmp_path: Path):
    store = Store.open(f"sqlite:///{tmp_path / 'routewatch.sqlite'}")
    write_sample(store, tmp_path, simulated=True)
    yield store
    store.close()


def test_headline_shows_judgement_and_quiet_coverage(sample_store, tmp_path: Path) -> None:
    out = build_report(sample_store, AS_OF, tmp_path / "r.html", workspace_root=tmp_path)
    html = out.read_text()
    text = " ".join(" ".join(parse(html).text).split())
    act = next(a for a in sample_store.activities(route=ROUTE) if a.as_of == AS_OF)
    assert f"paused, probability {act.probability:.0%}, {act.days_quiet:.0f} days quiet" in text
    assert f"{act.last_activity:%Y-%m-%d %H:%M} UTC" in text
    assert act.coverage in text
    # the quiet-period coverage, counted here from the store's looks
    quiet = [lk for lk in sample_store.looks(site="rajin") if act.last_activity < lk.time <= AS_OF]
    usable = sum(lk.usable for lk in quiet)
    assert 0 < usable < len(quiet)
    assert f"{usable} usable of {len(quiet)} looks" in text


def test_simulated_data_is_said_plainly_and_only_when_true(tmp_path: Path) -> None:
    sim = Store.open(f"sqlite:///{tmp_path / 'sim.sqlite'}")
    real = Store.open(f"sqlite:///{tmp_path / 'real.sqlite'}")
    write_sample(sim, tmp_path, simulated=True)
    write_sample(real, tmp_path, simulated=False)
    sim_html = render_report(gather(sim, AS_OF, workspace_root=tmp_path))
    real_html = render_report(gather(real, AS_OF, workspace_root=tmp_path))
    assert 'id="simulated-warning"' in sim_html and "rests on simulated data" in sim_html
    assert "simulated-warning" not in real_html and "rests on simulated data" not in real_html


def test_report_is_self_contained(sample_store, tmp_path: Path) -> None:
    html = build_report(sample_store, AS_OF, tmp_path / "r.html", workspace_root=tmp_path).read_text()
    tags = parse(html).tags
    assert not [t for t, a in tags if t in ("script", "link", "iframe")], "no external scripts or stylesheets"
    imgs = [a.get("src") or "" for t, a in tags if t == "img"]
    assert imgs and all(src.startswith("data:image/png;base64,") for src in imgs)
    assert not re.search(r"""(src|href)=["']//""", html)
    assert not [a for t, a in tags if t == "image"], "no map tiles unless asked for"
    assert html.count("<svg") >= 2  # the map and one timeline per route


def test_every_trip_row_links_its_evidence(sample_store, tmp_path: Path) -> None:
    html = render_report(gather(sample_store, AS_OF, workspace_root=tmp_path))
    trips = sample_store.trips(route=ROUTE)
    rows = re.findall(r'<tr id="trip-([^"]+)">(.*?)</tr>', html, re.S)
    assert sorted(r[0] for r in rows) == sorted(t.id for t in trips)
    evidence = sample_store.evidence([e for t in trips for e in t.evidence_ids])
    for trip_id, row in rows:
        trip = next(t for t in trips if t.id == trip_id)
        reports = [evidence[e] for e in trip.evidence_ids if str(evidence[e].kind) == "report"]
        assert all(f'href="{r.uri}"' in row for r in reports)
        assert "data:image/png;base64," in row  # the chip
        assert "AIS positions" in row
        assert "sentinel-2" in row or "planetscope" in row  # the scene behind the image sighting


def test_map_draws_sites_and_detections(sample_store, tmp_path: Path) -> None:
    data = gather(sample_store, AS_OF, workspace_root=tmp_path)
    html = render_report(data)
    map_svg = html[html.index('<svg xmlns="http://www.w3.org/2000/svg" class="map"'):]
    map_svg = map_svg[: map_svg.index("</svg>")]
    assert map_svg.count("<polygon") == len(sample_store.sites())
    with_pos = [s for s in sample_store.sightings(until=AS_OF) if s.lon is not None]
    assert map_svg.count("<circle") == len(with_pos)


def test_tiles_only_when_configured(sample_store, tmp_path: Path) -> None:
    html = render_report(gather(sample_store, AS_OF), tiles="https://tiles.invalid/{z}/{x}/{y}.png")
    assert "https://tiles.invalid/" in html
    assert "Content-Security-Policy" not in html  # the CSP that blocks remote images is dropped only then


def test_earlier_date_leaves_out_later_records(sample_store) -> None:
    as_of = AS_OF - timedelta(days=60)
    data = gather(sample_store, as_of)
    assert data.trips and all(t.depart <= as_of for t in data.trips)
    assert len(data.trips) < len(sample_store.trips())
    assert ROUTE not in data.activities  # the only judgement is dated later
    assert "not analysed for this date" in render_report(data)


def test_estimate_interval_and_methods(sample_store) -> None:
    html = render_report(gather(sample_store, AS_OF))
    act = next(a for a in sample_store.activities(route=ROUTE) if a.as_of == AS_OF)
    est = act.details["estimates"][0]
    assert f"{est['low']:,.0f} – {est['high']:,.0f} {est['unit']}" in html
    assert "containers_per_trip" in html
    assert 'id="methods"' in html and "detection probability" in html


def test_status_other_than_paused(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'a.sqlite'}")
    write_sample(store, tmp_path, status=Status.ACTIVE)
    assert "active, probability 80%" in render_report(gather(store, AS_OF))


def test_cli_report_from_stored_judgements_is_fast(tmp_path: Path) -> None:
    from routewatch.cli import app

    store = Store.open(f"sqlite:///{tmp_path / 'routewatch.sqlite'}")
    write_sample(store, tmp_path)
    store.close()
    out = tmp_path / "out" / "report.html"
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["report", "--stored", "--as-of", "2024-03-01", "-o", str(out), "-w",
                                      str(tmp_path)])
    elapsed = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    assert out.is_file() and "Rajin → Vostochny" in out.read_text()
    assert not list(out.parent.glob("*.part"))
    assert elapsed < 5.0


def test_cli_report_refuses_empty_folder(tmp_path: Path) -> None:
    from routewatch.cli import app

    result = CliRunner().invoke(app, ["report", "-w", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert "routewatch init" in result.output


def test_cli_report_stored_is_for_the_judgement_date(tmp_path: Path) -> None:
    from routewatch.cli import app
    from routewatch.model import Sighting, SourceKind

    store = Store.open(f"sqlite:///{tmp_path / 'routewatch.sqlite'}")
    write_sample(store, tmp_path)
    later = AS_OF + timedelta(days=10)  # seen after the stored judgement was made
    store.add_sightings([Sighting("sig-late", later, SourceKind.AIS, "rajin", "angara", event="ais_position",
                                  lon=130.29, lat=42.23, confidence=0.9)])
    store.close()
    out = tmp_path / "stored.html"
    result = CliRunner().invoke(app, ["report", "--stored", "--as-of", "2024-03-20", "-o", str(out), "-w",
                                      str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(" ".join(parse(out.read_text()).text).split())
    assert f"As of {AS_OF:%Y-%m-%d %H:%M} UTC" in text and "As of 2024-03-20" not in text
    assert f"{later:%Y-%m-%d}" not in out.read_text()  # the later sighting is not drawn
    assert f"{AS_OF:%Y-%m-%d}" in result.output
    # a date before the stored analysis: its trips could rest on later data, so the report is refused (nothing
    # of two dates mixed on one page)
    early = tmp_path / "early.html"
    before = AS_OF - timedelta(days=3)
    result = CliRunner().invoke(app, ["report", "--stored", "--as-of", f"{before:%Y-%m-%d}", "-o", str(early), "-w",
                                      str(tmp_path)], env={"COLUMNS": "200"})
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and not early.exists()
    assert f"on or after {AS_OF:%Y-%m-%d}" in said  # no watchlist here to analyse the store again for that date


def test_only_http_source_urls_become_links_in_the_report(tmp_path: Path) -> None:
    """An observation's source_url is whatever an analyst typed: only http(s) becomes a link."""
    from sqlalchemy import update

    from routewatch.store.schema import evidence

    store = Store.open(f"sqlite:///{tmp_path / 's.sqlite'}")
    write_sample(store, tmp_path)
    ids = [e for t in store.trips() if t.route == ROUTE for e in t.evidence_ids]
    reports = sorted(i for i, e in store.evidence(ids).items() if str(e.kind) == "report")
    assert reports
    with store.transaction() as conn:
        conn.execute(update(evidence).where(evidence.c.id.in_(reports)).values(uri="javascript:alert(1)"))
    html = render_report(gather(store, AS_OF, workspace_root=tmp_path))
    assert "javascript:" not in html


def test_timeline_legend_shows_each_site_in_its_bars_colour(sample_store, tmp_path: Path) -> None:
    """The legend's swatch for a site is the colour its visit bars are drawn in (an empty bar gave the default
    colour to every site's swatch, so two sites could not be told apart)."""
    from routewatch.report.charts import timeline_svg

    data = gather(sample_store, AS_OF, workspace_root=tmp_path)
    svg = timeline_svg(data.views[0], {})
    legend = svg[svg.index('<g id="legend_1">'):]
    pairs = re.findall(r'fill: (#[0-9a-f]{6})[^>]*/>\s*</g>\s*<g id="text_\d+">\s*<text[^>]*>(visit at [\w-]+)</text>',
                       legend)
    swatches = {label: fill for fill, label in pairs}
    bars = set(re.findall(r'fill: (#[0-9a-f]{6})', svg[:svg.index('<g id="legend_1">')]))
    assert len(swatches) == 2 and len(set(swatches.values())) == 2, swatches
    assert set(swatches.values()) <= bars, (swatches, bars)


def test_ships_that_ais_names_and_the_watchlist_does_not_share_one_timeline_row(sample_store, tmp_path: Path) -> None:
    """A busy port's AIS visits of other ships (``mmsi:<n>``) had each made a row: 300 ships, a chart 126 inches
    tall. They share one row."""
    from dataclasses import replace as dc_replace
    from datetime import timedelta

    from routewatch.model import Visit
    from routewatch.report.charts import OTHER_AIS_SHIPS, timeline_svg

    view = gather(sample_store, AS_OF, workspace_root=tmp_path).views[0]
    site = view.visits[0].site
    others = [Visit(f"v{k}", site, f"mmsi:{273000000 + k}", AS_OF - timedelta(days=k % 40 + 2),
                    AS_OF - timedelta(days=k % 40 + 1), 0.8, (f"s{k}",)) for k in range(300)]
    base = timeline_svg(view, {})
    svg = timeline_svg(dc_replace(view, visits=[*view.visits, *others]), {})
    assert svg.count(OTHER_AIS_SHIPS) == 1 and "mmsi:" not in svg
    height = float(re.search(r'height="([\d.]+)pt"', svg).group(1))
    assert height < float(re.search(r'height="([\d.]+)pt"', base).group(1)) + 40


def test_each_judgement_says_its_date_and_what_its_probability_is(sample_store, tmp_path: Path) -> None:
    """A page that follows the clock can show a judgement stored for an earlier day; and P means different
    things by status: both are said beside it."""
    from routewatch.analysis.activity import probability_meaning

    data = gather(sample_store, AS_OF, workspace_root=tmp_path)
    act = data.views[0].activity
    html = render_report(data)
    assert f"(judged as of {act.as_of:%Y-%m-%d})" in html
    assert probability_meaning(act).split(" (")[0].replace("|", "&#124;") in html.replace("|", "&#124;")


def test_the_stored_judgement_shown_is_that_of_the_latest_analysis(sample_store) -> None:
    """An analysis made earlier for a later date (say `analyze` as of today, before most of the evidence was in)
    must not stand for the store's judgement after a later analysis for another date: that one's visits and trips
    are what the store holds, and its judgement goes with them (the dashboard mixed the two)."""
    from dataclasses import replace

    store = sample_store
    (stored,) = [a for a in store.activities(route=ROUTE) if a.as_of == AS_OF]
    stale = replace(stored, as_of=AS_OF + timedelta(days=400), status=Status.ACTIVE, probability=0.1)
    store.add_activities([stale])
    data = gather(store, AS_OF + timedelta(days=500))
    assert data.activities[ROUTE].as_of == AS_OF and data.activities[ROUTE].status == stored.status
    # once an analysis for that later date is the latest run, it is the one shown
    store.replace_derived(store.visits(), store.trips(), stale.as_of)
    assert gather(store, AS_OF + timedelta(days=500)).activities[ROUTE].as_of == stale.as_of


def test_a_count_whose_period_ends_after_the_report_date_is_not_shown(tmp_path: Path) -> None:
    """The example's "at least 32 trips, 1 Aug 2023 - 29 Feb 2024" was published after its period: a report as of
    10 February must not list it (nor the CSIS count ending 12 February, before it was published), as the
    judgement does not read it."""
    from routewatch.cli import app

    runner = CliRunner()
    ws = tmp_path / "case"
    assert runner.invoke(app, ["init", str(ws), "--example", "rajin"]).exit_code == 0
    assert runner.invoke(app, ["import", "observations", str(ws / "observations.csv"), "-w", str(ws)]).exit_code == 0
    store = Store.open(f"sqlite:///{ws / 'routewatch.sqlite'}")
    from datetime import datetime

    when = datetime(2024, 2, 10, tzinfo=UTC)
    data = gather(store, when)
    assert data.aggregates and all(a.end <= when for a in data.aggregates)
    later = [a for a in store.aggregates() if a.end > when]
    assert later and not {a.id for a in later} & {a.id for a in data.aggregates}
