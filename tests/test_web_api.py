"""The JSON API over real HTTP (uvicorn on 127.0.0.1), on SQLite and PostgreSQL: reads, paging, validation,
tokens, injection- and traversal-shaped input, oversized uploads."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from routewatch.report.sample import AS_OF, ROUTE, write_sample
from routewatch.web import create_app

TOKEN = "s3cret-token"


@contextlib.contextmanager
def running_server(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a free 127.0.0.1 port; yield its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def api(store, tmp_path: Path) -> Iterator[tuple[httpx.Client, Any]]:
    write_sample(store, tmp_path)
    app = create_app(store, token=TOKEN, workspace_root=tmp_path, max_body_bytes=20_000)
    with running_server(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client, store


def test_status_matches_the_stored_judgement(api) -> None:
    client, store = api
    body = client.get("/api/v1/status").json()
    act = next(a for a in store.activities(route=ROUTE) if a.as_of == AS_OF)
    (item,) = body["items"]
    assert item["route"] == ROUTE and item["status"] == "paused"
    assert item["probability"] == pytest.approx(act.probability)
    assert item["days_quiet"] == pytest.approx(act.days_quiet)
    assert item["coverage_assumption"] == act.coverage
    assert item["simulated"] is True
    # what the probability means travels with it (a client must not read a pause's P as certainty, or 0 as none)
    assert item["probability_meaning"].startswith("P = 1 - P(silence | running)")
    assert item["p_silence_if_running"] == pytest.approx(act.p_silence_if_active)


def test_pagination_walks_every_look_once(api) -> None:
    client, store = api
    expected = sorted(lk.id for lk in store.looks())
    seen: list[str] = []
    url: str | None = "/api/v1/looks?limit=7"
    pages = 0
    while url:
        page = client.get(url).json()
        assert page["total"] == len(expected) and len(page["items"]) <= 7
        seen += [x["id"] for x in page["items"]]
        url = page["next"]
        pages += 1
    assert sorted(seen) == expected and len(seen) == len(set(seen))
    assert pages == -(-len(expected) // 7)


def test_filters(api) -> None:
    client, store = api
    since, until = "2023-10-01T00:00:00Z", "2023-12-01T00:00:00Z"
    got = client.get("/api/v1/looks", params={"site": "rajin", "since": since, "until": until, "limit": 1000}).json()
    want = [lk for lk in store.looks(site="rajin") if "2023-10-01" <= lk.time.isoformat()[:10] < "2023-12-01"]
    assert got["total"] == len(want) > 0
    trips = client.get("/api/v1/trips", params={"route": ROUTE, "vessel": "angara"}).json()
    assert trips["total"] == sum(1 for t in store.trips() if t.vessel == "angara")
    assert client.get("/api/v1/sites/rajin").json()["geometry"]["type"] == "Polygon"
    assert client.get("/api/v1/routes/nowhere").status_code == 404


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": 100_000}, {"offset": -1}, {"site": "rajin' OR '1'='1"}, {"site": "x; DROP TABLE looks"},
    {"site": "../../etc/passwd"}, {"since": "2024-01-01T00:00:00"}, {"since": "yesterday"},
])
def test_bad_query_values_are_refused(api, params: dict) -> None:
    client, store = api
    r = client.get("/api/v1/looks", params=params)
    assert r.status_code == 422
    assert "Traceback" not in r.text and "sqlalchemy" not in r.text.lower()
    assert len(store.looks()) > 0  # nothing was dropped


@pytest.mark.parametrize("path", [
    "/api/v1/sites/..%2F..%2Fetc%2Fpasswd", "/api/v1/sites/rajin%27%20OR%201=1--", "/chips/..%2F..%2Fetc%2Fpasswd",
    "/chips/%2Fetc%2Fpasswd", "/static/..%2F..%2F..%2Fetc%2Fpasswd", "/scenes/..%2Fapp.py", "/routes/%00",
])
def test_traversal_shaped_paths_do_not_leak(api, path: str) -> None:
    client, _ = api
    r = client.get(path)
    assert r.status_code in (400, 404, 422)
    assert "root:" not in r.text and "Traceback" not in r.text and "import" not in r.text


def test_write_endpoints_need_the_right_token(api) -> None:
    client, _ = api
    site = {"key": "tumangang", "name": "Tumangang rail yard", "kind": "rail_yard",
            "geometry": {"type": "Polygon", "coordinates": [[[130.58, 42.40], [130.66, 42.40], [130.66, 42.44],
                                                             [130.58, 42.44], [130.58, 42.40]]]}}
    assert client.post("/api/v1/sites", json=site).status_code == 401
    assert client.post("/api/v1/sites", json=site, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/api/v1/sites/tumangang").status_code == 404
    ok = client.post("/api/v1/sites", json=site, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 201
    assert client.get("/api/v1/sites/tumangang").json()["name"] == "Tumangang rail yard"
    bad = dict(site, key="x' OR 1=1 --")
    assert client.post("/api/v1/sites", json=bad, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 422


def test_sites_of_a_watchlist_file_are_not_replaced_by_the_api(api) -> None:
    client, store = api
    auth = {"Authorization": f"Bearer {TOKEN}"}
    ring = [[130.58, 42.40], [130.66, 42.40], [130.66, 42.44], [130.58, 42.44], [130.58, 42.40]]
    before = store.sites()["rajin"]
    hijack = {"key": "rajin", "name": "Replaced", "kind": "port", "geometry": {"type": "Polygon", "coordinates": [ring]}}
    r = client.post("/api/v1/sites", json=hijack, headers=auth)
    assert r.status_code == 409 and "watchlist file" in r.json()["detail"]
    after = store.sites()["rajin"]
    assert after.name == before.name and after.geometry.equals(before.geometry)
    own = dict(hijack, key="tumangang", name="Tumangang")
    assert client.post("/api/v1/sites", json=own, headers=auth).status_code == 201
    again = client.post("/api/v1/sites", json=dict(own, name="Tumangang rail yard"), headers=auth)
    assert again.status_code == 201  # a site the API added itself may be replaced
    assert store.sites()["tumangang"].name == "Tumangang rail yard"


def test_observations_import_is_idempotent(api) -> None:
    client, _ = api
    obs = [{"time": "2024-02-20T06:00:00Z", "site": "rajin", "vessel": "angara", "event": "loading",
            "source": "analyst note", "url": "https://example.org/note/1", "detail": "seen loading at pier 2"}]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    first = client.post("/api/v1/observations", json=obs, headers=auth)
    assert first.status_code == 201 and first.json()["added"] == 1
    again = client.post("/api/v1/observations", json=obs, headers=auth)
    assert again.status_code == 201 and again.json()["added"] == 0
    found = client.get("/api/v1/sightings", params={"site": "rajin", "since": "2024-02-20T00:00:00Z",
                                                    "until": "2024-02-21T00:00:00Z"}).json()
    assert [x["source_kind"] for x in found["items"]] == ["report"]
    unknown = [dict(obs[0], site="atlantis")]
    assert client.post("/api/v1/observations", json=unknown, headers=auth).status_code == 422
    naive = [dict(obs[0], time="2024-02-20T06:00:00")]
    assert client.post("/api/v1/observations", json=naive, headers=auth).status_code == 422


def test_observations_with_an_inverted_window_or_an_unknown_vessel_are_refused(api) -> None:
    client, store = api
    auth = {"Authorization": f"Bearer {TOKEN}"}
    obs = {"time": "2024-02-20T06:00:00Z", "site": "rajin", "vessel": "angara", "source": "analyst note"}
    before = len(store.sightings())
    inverted = client.post("/api/v1/observations", json=[dict(obs, time_end="2024-02-19T06:00:00Z")], headers=auth)
    assert inverted.status_code == 422 and "time_end" in inverted.text
    ghost = client.post("/api/v1/observations", json=[dict(obs, vessel="ghost-ship")], headers=auth)
    assert ghost.status_code == 422 and "vessel" in ghost.text and "ghost-ship" in ghost.text
    assert len(store.sightings()) == before
    by_name = client.post("/api/v1/observations", json=[dict(obs, vessel="ANGARA", time_end="2024-02-20T08:00:00Z")],
                          headers=auth)
    assert by_name.status_code == 201
    (stored,) = [s for s in store.sightings() if s.id in by_name.json()["ids"]]
    assert stored.vessel == "angara" and stored.time_end is not None and stored.time_end > stored.time


def test_oversized_uploads_are_refused(api) -> None:
    client, store = api
    auth = {"Authorization": f"Bearer {TOKEN}"}
    obs = {"time": "2024-02-20T06:00:00Z", "site": "rajin", "source": "x", "detail": "y" * 4000}
    before = len(store.sightings())
    assert client.post("/api/v1/observations", json=[obs] * 10, headers=auth).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while streaming
        yield b"["
        for _ in range(40):
            yield b'{"time": "2024-02-20T06:00:00Z", "site": "rajin", "source": "x", "detail": "' + b"z" * 1000 + b'"},'
        yield b"{}]"

    r = client.post("/api/v1/observations", content=chunks(), headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert len(store.sightings()) == before


def test_read_only_without_a_configured_token(store, tmp_path: Path) -> None:
    write_sample(store, tmp_path)
    with running_server(create_app(store, workspace_root=tmp_path)) as base:
        r = httpx.post(f"{base}/api/v1/observations", json=[], headers={"Authorization": "Bearer anything"})
        assert r.status_code == 403
        assert httpx.get(f"{base}/api/v1/status").status_code == 200


def test_openapi_and_docs_without_cdn(api) -> None:
    client, _ = api
    spec = client.get("/api/openapi.json").json()
    for path in ("/api/v1/sites", "/api/v1/routes", "/api/v1/looks", "/api/v1/sightings", "/api/v1/visits",
                 "/api/v1/trips", "/api/v1/status", "/api/v1/observations"):
        assert path in spec["paths"]
    docs = client.get("/api/docs")
    assert docs.status_code == 200 and "/api/v1/looks" in docs.text
    assert "cdn" not in docs.text.lower() and "http://" not in docs.text.replace(str(client.base_url), "")


def test_pages_and_chips(api) -> None:
    client, store = api
    page = client.get(f"/routes/{ROUTE}")
    assert page.status_code == 200 and "paused, probability" in page.text
    chip_ids = [e for t in store.trips() for e in t.evidence_ids if e.startswith("ev-")]
    chips = [i for i, e in store.evidence(chip_ids).items() if str(e.kind) == "chip"]
    r = client.get(f"/chips/{chips[0]}")
    assert r.status_code == 200 and r.content[:4] == b"\x89PNG"
    scene = store.looks()[0].scene_id
    assert client.get(f"/scenes/{scene}").status_code == 200
    sighting = store.sightings()[0].id
    assert client.get(f"/sightings/{sighting}").status_code == 200


def test_cached_reads_follow_writes_made_outside_the_server(store, tmp_path: Path) -> None:
    """Repeated reads come from the response cache, yet a write by another process (an ingest) shows up."""
    from datetime import timedelta

    from routewatch.model import Sighting, SourceKind

    write_sample(store, tmp_path)
    app = create_app(store, as_of=AS_OF, workspace_root=tmp_path, refresh_s=0.5)
    with running_server(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        first = client.get("/api/v1/sightings?site=rajin&limit=1000")
        again = client.get("/api/v1/sightings?site=rajin&limit=1000")
        assert first.status_code == again.status_code == 200 and first.content == again.content
        assert "content-security-policy" in again.headers  # a cached answer keeps the security headers
        before = first.json()["total"]
        new = Sighting("sig-outside-write", AS_OF - timedelta(days=1), SourceKind.REPORT, "rajin", None, "vessel",
                       "present", detail="written by another process")
        assert store.add_sightings([new]) == 1
        deadline = time.monotonic() + 10
        total = before
        while total == before and time.monotonic() < deadline:
            time.sleep(0.2)
            total = client.get("/api/v1/sightings?site=rajin&limit=1000").json()["total"]
        assert total == before + 1
        for _ in range(2):  # refusals are never cached into answers
            assert client.get("/api/v1/looks?limit=0").status_code == 422
            assert client.get("/api/v1/sites/x;DROP").status_code == 422


def test_snapshot_is_rebuilt_only_when_the_store_changed(store, tmp_path: Path) -> None:
    """On SQLite and PostgreSQL alike, a server with --as-of reads (and re-derives) again only after a write:
    the store's write counter, not a timer, says when. Rebuilding a PostgreSQL snapshot every few seconds
    re-ran the whole analysis for nothing."""
    from datetime import timedelta

    from routewatch.model import Sighting, SourceKind
    from routewatch.web.state import SnapshotHolder

    write_sample(store, tmp_path)
    v0 = store.version()
    calls: list[object] = []

    def analyzer(when):
        calls.append(when)
        return None

    holder = SnapshotHolder(store, AS_OF, tmp_path, ttl_s=0.0, analyzer=analyzer, check_s=0.0)
    assert store.version() == v0 and len(calls) == 1  # building a snapshot writes nothing
    first = holder.get()
    time.sleep(0.3)
    assert holder.get() is first and len(calls) == 1  # nothing written: not rebuilt, however old
    new = Sighting("sig-version", AS_OF - timedelta(days=2), SourceKind.REPORT, "rajin", None, "vessel", "present",
                   detail="a write")
    assert store.add_sightings([]) == 0 and store.version() == v0  # a write of nothing is no change
    from routewatch.alerts import record_changes

    record_changes(store, [])  # a watch cycle with nothing to alert
    assert store.version() == v0
    assert store.add_sightings([new]) == 1
    assert store.version() == v0 + 1
    holder.get()
    deadline = time.monotonic() + 10
    while holder.get() is first and time.monotonic() < deadline:
        time.sleep(0.05)
    assert holder.get() is not first and len(calls) == 2
    assert any(s.id == "sig-version" for s in holder.get().data.sightings)
    with pytest.raises(ValueError), store.transaction() as conn:  # a failed write transaction does not count
        store.add_sightings([new], conn=conn)
        raise ValueError("rolled back")
    assert store.version() == v0 + 1
    # the database goes away: requests keep the last snapshot, at once (the check runs off the request path)
    current = holder.get()

    class Away:
        def __getattr__(self, name):
            return getattr(store, name)

        def version(self):
            raise ConnectionError("server closed the connection")

    holder.store = Away()
    started = time.monotonic()
    for _ in range(20):
        assert holder.get() is current
        time.sleep(0.01)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_declared_coverage_is_judged_and_stated(store, tmp_path: Path) -> None:
    """``serve --coverage``: the routes are judged under the declared schedule, and the pages say which."""
    from routewatch.model import CoverageAssumption

    sample = write_sample(store, tmp_path)
    daily = (CoverageAssumption("planetscope", 1.0, 0.56),)
    sparse = (CoverageAssumption("sentinel-1", 12.0, 1.0),)
    found = {}
    for name, cov in (("daily", daily), ("sparse", sparse)):
        app = create_app(store, as_of=AS_OF, workspace_root=tmp_path, watchlist=sample.watchlist, coverage=cov,
                         coverage_name=name)
        with running_server(app) as base, httpx.Client(base_url=base, timeout=30) as client:
            body = client.get("/api/v1/status").json()
            assert body["declared_coverage"].startswith(f"{name}: ") and cov[0].sensor in body["declared_coverage"]
            (item,) = body["items"]
            assert item["coverage_assumption"].startswith("declared") and cov[0].sensor in item["coverage_assumption"]
            for page in ("/", f"/routes/{ROUTE}"):
                text = client.get(page).text
                assert "Judged under a declared coverage schedule" in text and f"{name}: " in text
            found[name] = item
    stored = next(a for a in store.activities(route=ROUTE) if a.as_of == AS_OF)
    assert found["daily"]["probability"] != pytest.approx(found["sparse"]["probability"])
    assert stored.coverage not in (found["daily"]["coverage_assumption"], found["sparse"]["coverage_assumption"])
    with running_server(create_app(store, as_of=AS_OF, workspace_root=tmp_path)) as base:
        plain = httpx.get(f"{base}/api/v1/status").json()
        assert plain["declared_coverage"] is None and "declared coverage" not in httpx.get(base + "/").text


def test_serve_refuses_an_unknown_coverage_schedule(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from routewatch.cli import app
    from routewatch.store import Store

    s = Store.open(f"sqlite:///{tmp_path / 'routewatch.sqlite'}")
    write_sample(s, tmp_path)
    s.close()
    result = CliRunner().invoke(app, ["serve", "--coverage", "no-such-schedule", "-w", str(tmp_path)])
    assert result.exit_code == 2 and "no-such-schedule" in result.output


def test_only_http_source_urls_become_links(store, tmp_path: Path) -> None:
    from sqlalchemy import update

    from routewatch.store.schema import evidence

    write_sample(store, tmp_path)
    ids = [e for t in store.trips() if t.route == ROUTE for e in t.evidence_ids]
    reports = sorted(i for i, e in store.evidence(ids).items() if str(e.kind) == "report")
    with store.transaction() as conn:
        conn.execute(update(evidence).where(evidence.c.id.in_(reports)).values(uri="javascript:alert(1)"))
    with running_server(create_app(store, as_of=AS_OF, workspace_root=tmp_path)) as base:
        for page in (f"/routes/{ROUTE}", *(f"/sightings/{s.id}" for s in store.sightings()
                                           if set(s.evidence_ids) & set(reports))):
            links = re.findall(r'href="([^"]*)"', httpx.get(base + page).text)
            assert links and all(u == "data:," or u.startswith(("http://", "https://", "/", "#")) for u in links), links


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_serve_as_of_another_date_derives_for_that_date(store, tmp_path: Path) -> None:
    """``serve --as-of`` a date other than the stored analysis's shows what analyze derives for that date (no
    later record used), as report and export do; the store is not written."""
    from datetime import timedelta

    from routewatch.pipeline import analyze

    sample = write_sample(store, tmp_path)
    earlier = AS_OF - timedelta(days=60)
    expected = analyze(store, sample.watchlist, earlier, persist=False)
    stored_trips = len(store.trips())
    app = create_app(store, as_of=earlier, workspace_root=tmp_path, watchlist=sample.watchlist)
    with running_server(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        trips = client.get("/api/v1/trips", params={"route": ROUTE}).json()
        (item,) = client.get("/api/v1/status").json()["items"]
    assert trips["total"] == sum(1 for t in expected.trips if t.route == ROUTE) < stored_trips
    assert item["status"] == expected.activities[ROUTE].status.value
    assert len(store.trips()) == stored_trips and store.derived_as_of() == AS_OF


def test_a_bad_link_gives_a_browser_a_page_and_the_api_json(store, tmp_path: Path) -> None:
    write_sample(store, tmp_path)
    with running_server(create_app(store, as_of=AS_OF, workspace_root=tmp_path)) as base:
        html = {"Accept": "text/html,application/xhtml+xml"}
        page = httpx.get(base + "/routes/no-such-route", headers=html)
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
        assert "no such route" in page.text and 'href="/"' in page.text
        bad = httpx.get(base + "/routes/Not%20A%20Key", headers=html)
        assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/html")
        api = httpx.get(base + "/api/v1/routes/no-such-route", headers=html)
        assert api.status_code == 404 and api.headers["content-type"].startswith("application/json")
        plain = httpx.get(base + "/routes/no-such-route")  # a script asking for anything: JSON as before
        assert plain.status_code == 404 and plain.json()["detail"] == "no such route"
        assert page.headers["vary"] == "Accept"  # one address, two formats: caches must keep them apart
        wrong = httpx.post(base + f"/routes/{ROUTE}", headers=html)
        assert wrong.status_code == 405 and wrong.headers["allow"] == "GET"
