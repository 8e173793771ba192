"""The report file and the dashboard opened in headless Chromium (Debian's, driven by Playwright): no console
errors, no request leaving 127.0.0.1, the headline present, a screenshot that is not blank."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from routewatch.report import build_report
from routewatch.report.sample import AS_OF, ROUTE, write_sample
from routewatch.store import Store
from routewatch.web import create_app

try:
    from test_web_api import running_server
except ImportError:  # tests/ imported as a package
    from tests.test_web_api import running_server

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("ROUTEWATCH_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LEAFLET = Path(__file__).resolve().parents[1] / "src/routewatch/web/static/vendor/leaflet/leaflet.js"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).is_file() and not shutil.which("chromium"):
        message = f"Chromium not found at {CHROMIUM}: run scripts/system-deps.sh (Debian package chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_page(browser, url: str) -> tuple[object, list[str], list[str]]:
    """Open ``url``; every request not to 127.0.0.1 (or a file/data URL) is recorded and aborted."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    outside: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def gate(route) -> None:
        u = urlparse(route.request.url)
        if u.scheme in ("file", "data") or u.hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", gate)
    page.goto(url)
    page.wait_for_load_state("networkidle")
    return page, errors, outside


def not_blank(png: bytes) -> float:
    from PIL import Image, ImageStat

    stat = ImageStat.Stat(Image.open(io.BytesIO(png)).convert("L"))
    return stat.var[0]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Iterator[tuple[Path, Store]]:
    root = tmp_path_factory.mktemp("ws")
    store = Store.open(f"sqlite:///{root / 'routewatch.sqlite'}")
    write_sample(store, root)
    yield root, store
    store.close()


def test_report_in_chromium(browser, workspace) -> None:
    root, store = workspace
    path = build_report(store, AS_OF, root / "report.html", workspace_root=root)
    page, errors, outside = open_page(browser, path.as_uri())
    assert errors == [] and outside == []
    assert "paused, probability 93%" in page.inner_text(f"#route-{ROUTE}")
    assert page.locator("img.chip").count() == len(store.trips())
    assert all(page.evaluate("[...document.images].map(i => i.complete && i.naturalWidth > 0)"))
    assert not_blank(page.screenshot(full_page=True)) > 100
    page.close()


@pytest.mark.skipif(not LEAFLET.is_file(), reason="Leaflet not installed: run bash scripts/web-assets.sh")
def test_dashboard_in_chromium(browser, workspace) -> None:
    root, store = workspace
    with running_server(create_app(store, workspace_root=root)) as base:
        page, errors, outside = open_page(browser, base + "/")
        assert errors == [] and outside == []
        assert "paused, probability 93%" in page.inner_text("main")
        assert page.evaluate("typeof L") == "object"
        # the map drew the sites and every positioned detection as vector layers
        n_paths = page.locator("#map path.leaflet-interactive").count()
        with_pos = sum(1 for s in store.sightings() if s.lon is not None)
        assert n_paths == len(store.sites()) + len(store.routes()) + with_pos
        assert not_blank(page.screenshot()) > 100
        page.close()
        page, errors, outside = open_page(browser, f"{base}/routes/{ROUTE}")
        assert errors == [] and outside == []
        assert page.locator("table img.chip").count() == len(store.trips())
        assert all(page.evaluate("[...document.images].map(i => i.complete && i.naturalWidth > 0)"))
        page.close()
