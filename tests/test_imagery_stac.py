"""STAC search, signing, windowed COG reads, cache and resume, against a real HTTP STAC API on 127.0.0.1.

The served assets are COGs built here from the shared sen2ships Busan bands (EPSG:3857, real Sentinel-2 pixels),
plus a 20 m scene-classification layer derived from them and a GCP-located SAR image for the Sentinel-1 path.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.windows import Window
from shapely.geometry import box, mapping

from routewatch.model import Site, SiteKind, stable_id
from routewatch.sources.imagery.cog import write_cog
from routewatch.sources.imagery.geo import GridGeoref
from routewatch.sources.imagery.ingest import fetch_site
from routewatch.sources.imagery.stac import SasTokenSigner, endpoint_for, search
from routewatch.store import Store
from routewatch.workspace import Workspace

try:
    from stac_server import StacServer, StacState
except ImportError:  # tests/ imported as a package
    from tests.stac_server import StacServer, StacState

BANDS = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08"}
DATES = ["2022-05-14T02:05:00Z", "2022-05-19T02:05:00Z", "2022-05-24T02:05:00Z"]


def _item(iid: str, collection: str, when: str, geom: dict, assets: dict[str, str], cloud: float | None) -> dict:
    props = {"datetime": when, "platform": "sentinel-2a" if "2" in collection else "sentinel-1a"}
    if cloud is not None:
        props["eo:cloud_cover"] = cloud
    return {"type": "Feature", "stac_version": "1.0.0", "id": iid, "collection": collection, "geometry": geom,
            "bbox": list(box(*_bounds(geom)).bounds), "properties": props,
            "assets": {k: {"href": f"/data/{v}", "type": "image/tiff; application=geotiff; profile=cloud-optimized"}
                       for k, v in assets.items()}, "links": []}


def _bounds(geom: dict) -> tuple[float, float, float, float]:
    from shapely.geometry import shape

    return shape(geom).bounds


@pytest.fixture(scope="module")
def stac_assets(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    src = shared_dir / "data" / "sen2ships" / "busan"
    out = tmp_path_factory.mktemp("stac-assets")
    files: dict[str, Path] = {}
    arrays = {}
    for band, stem in BANDS.items():
        with rasterio.open(src / f"{stem}.tiff") as ds:
            arr, transform, crs = ds.read(1), ds.transform, ds.crs
        arrays[band] = arr
        files[f"{stem}.tif"] = write_cog(out / f"{stem}.tif", [arr], transform=transform, crs=crs)
    # a 20 m scene classification: water (6) from NDWI, land (5), and a cloud bank (9) in the north-west
    g, n = arrays["green"].astype(float), arrays["nir"].astype(float)
    scl10 = np.where((g - n) / np.maximum(g + n, 1) > 0, 6, 5).astype(np.uint8)
    scl10[:200, :300] = 9
    scl20 = scl10[::2, ::2]
    t20 = transform @ Affine.scale(2)
    files["SCL.tif"] = write_cog(out / "SCL.tif", [scl20], transform=t20, crs=crs)
    grid = GridGeoref(arrays["blue"].shape, transform=transform, crs=crs)
    footprint = grid.footprint()
    lon, lat = grid.pixel_to_lonlat([200, 450], [350, 650])
    site = Site("busan_test", "Busan test berth", SiteKind.PORT,
                box(min(lon), min(lat), max(lon), max(lat)))
    # a SAR image located only by ground control points, over the same ground, rotated (no north-up affine)
    h, w = 600, 800
    rng = np.random.default_rng(1)
    sar = np.clip(rng.gamma(4.4, 25.0, (h, w)), 1, 65535).astype(np.uint16)
    lon0, lat0 = footprint.centroid.x, footprint.centroid.y
    gcps = []
    for r in (0, h / 2, h):
        for c in (0, w / 2, w):
            dx, dy = (c - w / 2) * 1.2e-4, -(r - h / 2) * 0.9e-4
            gcps.append(GroundControlPoint(row=r, col=c, x=lon0 + dx * 0.98 + dy * 0.2, y=lat0 + dy * 0.98 - dx * 0.15))
    files["s1_vv.tif"] = write_cog(out / "s1_vv.tif", [sar], gcps=gcps, gcps_crs="EPSG:4326")
    s1_grid = GridGeoref((h, w), gcps=gcps, gcps_crs=rasterio.crs.CRS.from_epsg(4326))
    s2_assets = {"B02": "B02.tif", "B03": "B03.tif", "B04": "B04.tif", "B08": "B08.tif", "SCL": "SCL.tif"}
    items = [_item(f"S2A_busan_{i}", "sentinel-2-l2a", d, mapping(footprint), s2_assets, 10.0 * i)
             for i, d in enumerate(DATES)]
    items.append(_item("S2A_elsewhere", "sentinel-2-l2a", DATES[0], mapping(box(0, 0, 1, 1)), s2_assets, 0.0))
    items.append(_item("S1A_busan", "sentinel-1-grd", DATES[1], mapping(s1_grid.footprint()), {"vv": "s1_vv.tif"},
                       None))
    return {"files": files, "items": items, "site": site, "arrays": arrays, "src_dir": out, "s1_grid": s1_grid}


@pytest.fixture
def server(stac_assets: dict):
    state = StacState(items=stac_assets["items"], files={k: Path(v) for k, v in stac_assets["files"].items()})
    with StacServer(state) as srv:
        yield srv


def _fetch(ws: Workspace, server: StacServer, site: Site, store=None, sensor="sentinel-2", **kw):
    return fetch_site(ws, site, datetime(2022, 5, 1, tzinfo=UTC), datetime(2022, 6, 1, tzinfo=UTC), sensor,
                      endpoint=server.url, token_url=f"{server.url}/api/sas/v1/token", store=store,
                      progress=False, **kw)


def test_search_pages_filters_and_signs(server: StacServer, stac_assets: dict) -> None:
    ep = endpoint_for(server.url, "sentinel-2")
    signer = SasTokenSigner(f"{server.url}/api/sas/v1/token")
    site = stac_assets["site"]
    found = search(ep, "sentinel-2", site.geometry, datetime(2022, 5, 1, tzinfo=UTC),
                   datetime(2022, 6, 1, tzinfo=UTC), signer=signer)
    assert [c.item_id for c in found] == ["S2A_busan_0", "S2A_busan_1", "S2A_busan_2"]  # not the far-away item
    assert server.state.searches >= 2  # page size 2: the third item came from a next link
    assert all("sig=test-signature" in h for c in found for h in c.hrefs.values())
    assert signer.requests == 1  # one token per collection, reused
    assert found[1].cloud_cover == pytest.approx(0.10)
    late = search(ep, "sentinel-2", site.geometry, datetime(2022, 5, 18, tzinfo=UTC),
                  datetime(2022, 6, 1, tzinfo=UTC), max_cloud=0.15)
    assert [c.item_id for c in late] == ["S2A_busan_1"]  # date window and cloud filter both applied


def test_fetch_reads_only_the_window_then_caches(server: StacServer, stac_assets: dict, tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    store = Store.open(ws.ensure().db_url)
    site = stac_assets["site"]
    result = _fetch(ws, server, site, store)
    assert result.failures == [] and len(result.scenes) == 3 and result.cached == 0
    reqs = server.state.data
    assert reqs and all(r.token_ok for r in reqs)
    assert all(r.range for r in reqs if r.sent)  # only range requests
    b02_sent = sum(r.sent for r in reqs if r.path == "B02.tif")
    b02_size = stac_assets["files"]["B02.tif"].stat().st_size
    assert b02_sent < 3 * b02_size * 0.9  # three scenes' windows, less than three whole files
    scene = result.scenes[0]
    col0, row0, w, h = scene.attributes["window"]
    with rasterio.open(scene.attributes["bands"]["blue"]["path"]) as ds:
        got = ds.read(1)
        assert ds.crs.to_epsg() == 3857
    expected = stac_assets["arrays"]["blue"][row0:row0 + h, col0:col0 + w]
    assert np.array_equal(got, expected)
    assert h < 699 and w < 1042  # a window, not the scene
    with rasterio.open(scene.attributes["scl"]["path"]) as ds:
        scl = ds.read(1)
    assert scl.shape == got.shape and set(np.unique(scl)) <= {5, 6, 9}
    stored = store.scenes(sensor="sentinel-2")
    assert {s.id for s in stored} == {s.id for s in result.scenes}
    assert all(s.footprint is not None and s.footprint.intersects(site.geometry) for s in stored)
    evidence = store.evidence([stable_id("evidence", s.id) for s in stored])
    assert len(evidence) == 3 and all(e.kind == "scene" and e.observed_at for e in evidence.values())
    # the second fetch is answered from the cache: no data request at all
    server.state.reset_log()
    again = _fetch(ws, server, site, store)
    assert again.cached == 3 and [s.id for s in again.scenes] == [s.id for s in result.scenes]
    assert server.state.data == []
    assert len(store.scenes(sensor="sentinel-2")) == 3  # idempotent


def test_unsigned_download_fails_with_url_and_is_recorded(server: StacServer, stac_assets: dict,
                                                          tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    store = Store.open(ws.ensure().db_url)
    result = _fetch(ws, server, stac_assets["site"], store, signer=lambda href, collection: href)
    assert result.scenes == [] and len(result.failures) == 3
    assert "/data/B02.tif" in result.failures[0][1] and "sig=" not in result.failures[0][1]
    assert len(store.failures("fetch")) == 3
    assert store.scenes() == []  # nothing half-written


def test_resume_after_killed_download(server: StacServer, stac_assets: dict, tmp_path: Path) -> None:
    site = stac_assets["site"]
    minx, miny, maxx, maxy = site.geometry.bounds
    server.state.delay_s = 0.15  # slow enough to kill midway
    killed = tmp_path / "killed"
    script = textwrap.dedent(f"""
        from datetime import UTC, datetime
        from shapely.geometry import box
        from routewatch.model import Site, SiteKind, stable_id
        from routewatch.sources.imagery.ingest import fetch_site
        from routewatch.workspace import Workspace
        site = Site("busan_test", "t", SiteKind.PORT, box({minx!r}, {miny!r}, {maxx!r}, {maxy!r}))
        fetch_site(Workspace.open({str(killed)!r}), site, datetime(2022, 5, 14, tzinfo=UTC),
                   datetime(2022, 5, 15, tzinfo=UTC), "sentinel-2", endpoint={server.url!r},
                   token_url={server.url + "/api/sas/v1/token"!r}, progress=False, strip_rows=32)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            strips = list(killed.glob("scenes/*/*.partial/strip-*.npy"))
            if len(strips) >= 3:
                break
            if proc.poll() is not None:
                pytest.fail("the fetch finished before it could be killed")
            time.sleep(0.05)
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    done_before = len(list(killed.glob("scenes/*/*.partial/strip-*.npy")))
    assert done_before >= 3
    assert not list(killed.glob("scenes/*/scene.json"))  # the killed scene is not marked complete
    server.state.delay_s = 0.0
    server.state.reset_log()
    start, end = datetime(2022, 5, 14, tzinfo=UTC), datetime(2022, 5, 15, tzinfo=UTC)
    resumed = fetch_site(Workspace.open(killed), site, start, end, "sentinel-2", endpoint=server.url,
                         token_url=f"{server.url}/api/sas/v1/token", progress=False, strip_rows=32)
    resumed_bytes = sum(r.sent for r in server.state.data)
    server.state.reset_log()
    clean = fetch_site(Workspace.open(tmp_path / "clean"), site, start, end, "sentinel-2", endpoint=server.url,
                       token_url=f"{server.url}/api/sas/v1/token", progress=False, strip_rows=32)
    clean_bytes = sum(r.sent for r in server.state.data)
    assert resumed.failures == [] and clean.failures == []
    assert resumed_bytes < clean_bytes  # the finished strips were not downloaded again
    a, b = resumed.scenes[0], clean.scenes[0]
    assert a.attributes["window"] == b.attributes["window"]
    for band in ("blue", "green", "red", "nir"):
        with rasterio.open(a.attributes["bands"][band]["path"]) as x, \
                rasterio.open(b.attributes["bands"][band]["path"]) as y:
            assert np.array_equal(x.read(), y.read()) and x.transform == y.transform
    assert not list(killed.glob("scenes/*/*.partial"))


def test_sentinel1_window_keeps_gcps(server: StacServer, stac_assets: dict, tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    result = _fetch(ws, server, stac_assets["site"], sensor="sentinel-1")
    assert result.failures == [] and len(result.scenes) == 1
    scene = result.scenes[0]
    assert scene.attributes["geolocation"] == "gcps" and scene.attributes["kind"] == "sar"
    col0, row0, w, h = scene.attributes["window"]
    with rasterio.open(scene.attributes["bands"]["vv"]["path"]) as ds:
        gcps, _ = ds.gcps
        assert gcps and ds.transform.is_identity  # located by GCPs only, no affine advertised
        win = GridGeoref((ds.height, ds.width), gcps=list(gcps), gcps_crs=ds.gcps[1])
    lon_a, lat_a = win.pixel_to_lonlat([10.0, h - 5.0], [20.0, w - 3.0])
    lon_b, lat_b = stac_assets["s1_grid"].pixel_to_lonlat([row0 + 10.0, row0 + h - 5.0],
                                                          [col0 + 20.0, col0 + w - 3.0])
    assert np.allclose(lon_a, lon_b, atol=1e-6) and np.allclose(lat_a, lat_b, atol=1e-6)
    assert scene.footprint.intersects(stac_assets["site"].geometry)
    assert 5.0 < scene.resolution_m < 20.0
    with rasterio.open(stac_assets["files"]["s1_vv.tif"]) as ds:
        full = ds.read(1, window=Window(col0, row0, w, h))
    with rasterio.open(scene.attributes["bands"]["vv"]["path"]) as ds:
        assert np.array_equal(ds.read(1), full)
    # along track (its rows) the window reaches 6.3 km beyond the site, for the azimuth ambiguity check: here the
    # whole 600-row image (6 km at 10 m), where the site spans about 250 rows; across track only the site and 32 px
    rows, cols = stac_assets["s1_grid"].lonlat_to_pixel(*np.array(stac_assets["site"].geometry.exterior.coords).T)
    assert (row0, h) == (0, 600) and rows.max() - rows.min() < 400
    assert col0 >= np.floor(cols.min()) - 33 and col0 + w <= np.ceil(cols.max()) + 33
    # ...but the scene's footprint is the site's own window: the reach along track claims no neighbouring site
    held = GridGeoref((h, w), gcps=list(gcps), gcps_crs=rasterio.crs.CRS.from_epsg(4326)).footprint()
    assert scene.footprint.area < 0.75 * held.area and scene.footprint.covers(stac_assets["site"].geometry.centroid)
    # a band file left from another window (a fetch killed before the reach, resumed after it) is fetched again
    from routewatch.sources.imagery.fetch import fetch_band, reference_grid

    path = Path(scene.attributes["bands"]["vv"]["path"])
    grid = reference_grid(str(stac_assets["files"]["s1_vv.tif"]), stac_assets["site"].geometry)  # no reach
    assert int(grid.window.height) < h
    again = fetch_band(str(stac_assets["files"]["s1_vv.tif"]), grid, path)
    with rasterio.open(again.path) as ds:
        assert (ds.height, ds.width) == (int(grid.window.height), int(grid.window.width)) and again.strips_read


def test_cli_fetch_against_the_local_api(server: StacServer, stac_assets: dict, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from routewatch.cli import app
    from routewatch.watchlist import Watchlist

    ws = Workspace.open(tmp_path / "ws").ensure()
    Store.open(ws.db_url).upsert_watchlist(Watchlist(sites={"busan_test": stac_assets["site"]}))
    args = ["fetch", "--site", "busan_test", "--from", "2022-05-14", "--to", "2022-05-19", "--stac", server.url,
            "--token-url", f"{server.url}/api/sas/v1/token", "--workspace", str(ws.root)]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "2 scenes found, 2 stored (0 from the cache)" in " ".join(out.output.split())
    again = CliRunner().invoke(app, args)
    assert "2 stored (2 from the cache)" in " ".join(again.output.split())
    unknown = CliRunner().invoke(app, [*args[:2], "nowhere", *args[3:]])
    assert unknown.exit_code == 2 and "nowhere" in unknown.output
    # a catalogue that cannot be reached (offline): one line naming it, no traceback
    i = args.index("--stac")
    down = CliRunner().invoke(app, [*args[:i + 1], "http://127.0.0.1:9/", *args[i + 2:]])
    assert down.exit_code == 2 and "http://127.0.0.1:9/ stopped" in " ".join(down.output.split())
    assert not isinstance(down.exception, Exception) or isinstance(down.exception, SystemExit)
    # a folder that is no workspace (neither watchlist nor store): said, and nothing is created there
    stray = tmp_path / "not-a-workspace"
    out = CliRunner().invoke(app, [*args[:-1], str(stray)])
    assert out.exit_code == 2 and "routewatch init" in " ".join(out.output.split()) and not stray.exists()


def test_a_finished_band_clears_strips_left_by_a_killed_run(tmp_path: Path) -> None:
    # Killed between writing the band (atomically) and removing its strips: the next run must not keep the strips.
    from routewatch.sources.imagery.fetch import fetch_band

    dest = tmp_path / "blue.tif"
    dest.write_bytes(b"finished band")
    partial = tmp_path / "blue.partial"
    partial.mkdir()
    (partial / "strip-00000.npy").write_bytes(b"left over")
    out = fetch_band("http://127.0.0.1:9/never-contacted.tif", None, dest)  # type: ignore[arg-type]
    assert out.path == dest and not partial.exists()
