"""Scenes into the store: `fetch` (STAC search + windowed download) and `scenes add` (local folders).

Each scene lands with its scene Evidence in one transaction; a scene that fails is recorded with
``store.record_failure`` (naming the file or URL) and the run goes on with the others.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from shapely import wkt

from routewatch.detect.ambiguity import AMBIGUITY_REACH_M
from routewatch.model import Evidence, EvidenceKind, Scene, Site, stable_id
from routewatch.sources.imagery.fetch import FetchError, fetch_scene_window
from routewatch.sources.imagery.local import AddResult, scan_folder
from routewatch.sources.imagery.stac import SceneCandidate, Signer, default_signer, endpoint_for, search
from routewatch.workspace import Workspace


def open_store(ws: Workspace) -> Any:
    from routewatch.store import Store

    return Store.open(ws.db_url)


def write_together(store: Any, *, evidence: Sequence[Evidence] = (), scenes: Sequence[Scene] = (),
                   looks: Sequence[Any] = (), sightings: Sequence[Any] = (), replace_sightings: bool = False,
                   keep_also: Sequence[str] = (), remove_looks: Sequence[Any] = (),
                   remove_scenes: Sequence[str] = ()) -> int:
    """Write records of one scene so they land together or not at all. ``replace_sightings``: the looks' stored
    sightings that are not among ``sightings`` (or ``keep_also``: the fusion labels of those still found) are
    removed (a look detected again holds only its new result, and a ship no longer found loses its label too).
    ``remove_looks``: looks (with their sightings) to delete in the same transaction (a scene dated anew);
    ``remove_scenes``: scene ids to delete with their looks (scenes this one replaces).
    Returns how many of the scenes were new to the store."""
    new = 0
    with store.transaction() as conn:
        if remove_looks:
            store.remove_looks(list(remove_looks), conn=conn)
        if remove_scenes:
            store.remove_scenes(list(remove_scenes), conn=conn)
        if evidence:
            store.add_evidence(list(evidence), conn=conn)
        if scenes:
            new = store.add_scenes(list(scenes), conn=conn)
        if looks:
            store.add_looks(list(looks), conn=conn)
        if replace_sightings and looks:
            store.remove_look_sightings(looks, keep=[*(s.id for s in sightings), *keep_also], conn=conn)
        if sightings:
            store.add_sightings(list(sightings), conn=conn)
    return new


def resolve_site(ws: Workspace, key: str, store: Any | None = None) -> Site:
    """A site by key from the store (the watchlist once imported), else from the workspace watchlist file."""
    if store is not None:
        sites = store.sites()
        found = sites.get(key) if isinstance(sites, dict) else next((s for s in sites if s.key == key), None)
        if found is not None:
            return found
    if ws.watchlist_path.exists():
        from routewatch.watchlist import load_watchlist

        w = load_watchlist(ws.watchlist_path)
        if key in w.sites:
            return w.sites[key]
        raise KeyError(f"site {key!r} is not in {ws.watchlist_path} (sites: {', '.join(sorted(w.sites))})")
    raise KeyError(f"site {key!r} not found in the store or the watchlist of {ws.root}")


@dataclass
class FetchResult:
    """What a fetch did: scenes stored (new and from cache) and failures (URL or file, reason)."""

    scenes: list[Scene] = field(default_factory=list)
    cached: int = 0
    found: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


def scene_from_fetch(cand: SceneCandidate, site: Site, folder: Path, manifest: dict[str, Any]
                     ) -> tuple[Scene, Evidence]:
    """The stored Scene for a fetched window (footprint = the site's window, not the whole product, nor the reach
    along track a Sentinel-1 window also holds)."""
    bands = {b: {"path": str(folder / f), "index": 1} for b, f in manifest["bands"].items() if b != "scl"}
    attrs: dict[str, Any] = {
        "kind": "sar" if cand.sensor == "sentinel-1" else "optical", "bands": bands, "source": "stac",
        "item_id": cand.item_id, "site": site.key, "window": manifest.get("window"),
        "geolocation": manifest.get("geolocation"), "platform": cand.properties.get("platform"),
        "instrument_mode": cand.properties.get("sar:instrument_mode"),
        "time_precision": "second",  # a STAC item's datetime is the acquisition's
    }
    if "scl" in manifest["bands"]:
        attrs["scl"] = {"path": str(folder / manifest["bands"]["scl"]), "index": 1}
    scene_id = folder.name
    scene = Scene(id=scene_id, sensor=cand.sensor, acquired=cand.acquired,
                  footprint=wkt.loads(manifest["footprint_wkt"]), resolution_m=round(manifest["pixel_size_m"], 3),
                  cloud_cover=cand.cloud_cover, uri=str(folder), collection=cand.collection, attributes=attrs)
    ev = Evidence(id=stable_id("evidence", scene_id), kind=EvidenceKind.SCENE,
                  description=f"{cand.collection} {cand.item_id}, window over {site.key}",
                  source=cand.self_href or cand.collection, uri=cand.self_href, observed_at=cand.acquired,
                  attributes={"scene_id": scene_id, "item_id": cand.item_id})
    return scene, ev


def fetch_site(ws: Workspace, site: Site, start: datetime, end: datetime, sensor: str, *,
               endpoint: str = "planetary-computer", token_url: str | None = None, signer: Signer | None = None,
               max_cloud: float | None = None, max_items: int | None = None, store: Any | None = None,
               progress: bool = True, strip_rows: int = 256) -> FetchResult:
    """Search, fetch the site window of each scene (cache + resume), and store Scene + Evidence per scene."""
    ep = endpoint_for(endpoint, sensor, token_url)
    sign = signer if signer is not None else default_signer(ep)
    cands = search(ep, sensor, site.geometry, start, end, max_cloud=max_cloud, max_items=max_items, signer=sign)
    result = FetchResult(found=len(cands))
    ws.ensure()
    with _progress(progress) as bar:
        task = bar.add_task(f"fetch {sensor} over {site.key}", total=None) if bar else None

        def plan(n: int) -> None:
            if bar is not None and task is not None:
                current = bar.tasks[task].total or 0
                bar.update(task, total=current + n)

        def step(n: int) -> None:
            if bar is not None and task is not None:
                bar.advance(task, n)

        for cand in cands:
            folder = ws.scenes_dir / stable_id("scene", cand.collection, cand.item_id, site.key)
            base = {"item_id": cand.item_id, "collection": cand.collection, "site": site.key,
                    "acquired": cand.acquired.isoformat()}
            try:
                # a Sentinel-1 GRD window reaches the ghosts' distance along track beyond the site, so that its
                # azimuth ambiguities can be checked against their sources (docs/detection.md)
                reach = AMBIGUITY_REACH_M if cand.sensor == "sentinel-1" else 0.0
                got = fetch_scene_window(cand.hrefs, site.geometry, folder, base, strip_rows=strip_rows,
                                         on_strip=step, on_plan=plan, along_track_m=reach)
            except FetchError as exc:
                result.failures.append((cand.self_href or cand.item_id, str(exc)))
                if store is not None:
                    store.record_failure("fetch", cand.self_href or cand.item_id, str(exc))
                continue
            scene, ev = scene_from_fetch(cand, site, folder, got.manifest)
            result.cached += int(got.cached)
            if store is not None:
                write_together(store, evidence=[ev], scenes=[scene])
                store.clear_failures("fetch", [cand.self_href or cand.item_id])
            result.scenes.append(scene)
    return result


def _more_bands(scene: Scene, twin: Scene) -> bool:
    """Whether ``scene`` holds every band ``twin`` does and more (the full product against its quicklook)."""
    mine, theirs = set(scene.attributes.get("bands", {})), set(twin.attributes.get("bands", {}))
    return mine > theirs


def add_folder(folder: str | Path, *, store: Any | None = None, bands: list[str] | None = None,
               when: datetime | None = None, sensor: str | None = None, when_has_time: bool = True,
               sar_values: str | None = None) -> AddResult:
    """`scenes add`: describe each scene in a folder and store it with its evidence; failures are recorded.
    ``when_has_time`` False: ``when`` is a date alone (the scenes are marked so)."""
    result = scan_folder(folder, bands=bands, when=when, when_has_time=when_has_time, sensor=sensor,
                         sar_values=sar_values)
    if store is not None:
        kept_scenes, kept_evidence = [], []
        for scene, ev in zip(result.scenes, result.evidence, strict=True):
            moved: list[Scene] = []
            twin = same_acquisition(store, scene, moved)
            if twin is not None and ((_more_bands(scene, twin) or holds_no_data(twin))
                                     and not holds_no_data(scene)):
                # the copy stored first is blank (an export that failed, all no-data), or has fewer bands (an RGB
                # quicklook beside the band files, found first by its name): it would stand for this
                # acquisition's real image, which had been refused as its copy; this one takes its place
                moved.append(twin)
                result.replaced_by[twin.id] = f"{scene.id} ({scene.uri})"
                twin = None
            if twin is not None:  # a copy in another folder: a second look would double the coverage
                result.failures.append((scene.uri or scene.id, f"the same acquisition as scene {twin.id} "
                                        f"({twin.uri}): {scene.sensor} at {scene.acquired.isoformat()} over the "
                                        "same footprint; not added twice"))
                continue
            stored = store.scene(scene.id)
            if stored is not None and "sar_values" not in scene.attributes and "sar_values" in stored.attributes \
                    and scene.attributes.get("kind") == "sar":  # added again without --sar-values: it stays
                scene = dataclasses.replace(scene, attributes={**scene.attributes,
                                                               "sar_values": stored.attributes["sar_values"]})
            rewritten = stored is not None and stored.attributes.get("stamps") not in (
                None, scene.attributes.get("stamps"))  # the same path and size, other bytes: another image
            if stored is not None and not rewritten and not date_only(stored) and (
                    (date_only(scene) and stored.acquired.date() == scene.acquired.date())
                    or (scene.attributes.get("time_source") == "write time"
                        and stored.attributes.get("time_source") != "write time")):
                # the same files added again without the --time they had (a date alone, or only a write time):
                # the stored time of day stays
                scene, ev = _dated_as(scene, stored)
            stale: list[Any] = []
            if stored is not None and (rewritten or stored.acquired != scene.acquired):
                # dated anew (a date alone given its time of day, a time corrected) or another image written over
                # the file at the same size: the looks and detections made before would be matched to AIS at
                # the old time, or hang off a scene that is no longer theirs; they go, and `detect` makes them
                # again
                stale = store.scene_looks([scene.id])
            added = write_together(store, evidence=[ev], scenes=[scene], remove_looks=stale,
                                   remove_scenes=[m.id for m in moved])
            result.new += added
            if added:
                result.added.add(scene.id)
            if stale:
                result.redated.append(scene.id)
            store.clear_failures("scenes add", scene_paths(scene))  # a file refused before and fixed since
            if moved:  # the same acquisition from a folder since moved, or read from these files before they
                result.moved.extend(m.id for m in moved)  # were rewritten: removed with the write
            kept_scenes.append(scene)
            kept_evidence.append(ev)
        result.scenes, result.evidence = kept_scenes, kept_evidence
        result.drop_replaced()
        for path, message in result.failures:  # at the absolute path, as the scene that fixes it will be
            store.record_failure("scenes add", str(Path(path).resolve()) if Path(path).exists() else path, message)
    return result


def _dated_as(scene: Scene, stored: Scene) -> tuple[Scene, Evidence]:
    """A scene (and its evidence) at the stored scene's time, which was given or read from the files, instead of
    the date alone or write time the files give now."""
    from dataclasses import replace

    from routewatch.sources.imagery.local import scene_evidence

    dated = replace(scene, acquired=stored.acquired, attributes={
        **scene.attributes, "time_precision": stored.attributes.get("time_precision", "second"),
        "time_source": stored.attributes.get("time_source")})
    return dated, scene_evidence(dated)


def scene_paths(scene: Scene) -> list[str]:
    """The files a scene was read from (its URI and every band file): the paths its failures are recorded at."""
    from routewatch.sources.imagery.raster import SceneReadError, band_refs

    try:
        paths = [ref["path"] for ref in band_refs(scene).values()]
    except SceneReadError:  # no band files and no URI
        paths = []
    return list(dict.fromkeys(str(p) for p in [scene.uri, *paths] if p))


SAME_PASS = timedelta(minutes=5)  # two timed copies of one place this close are one pass of one sensor


def same_acquisition(store: Any, scene: Scene, moved: list[Scene] | None = None) -> Scene | None:
    """Another stored scene of the same acquisition under another id: the same images copied to another folder
    or renamed. The same time to the second, or within :data:`SAME_PASS` (both timed), or, when either scene has
    a date alone (no time of day: stored at 00:00 UTC) or the times differ more, the same day and files of the
    same bytes; nine tenths of the same footprint, both real or both
    simulated, and the same sensor, unless one is an unnamed GeoTIFF (a true-colour picture of a Sentinel-2
    product); a copy whose files are gone (a folder moved), or that was read from these very files before they
    were rewritten, does not count (it goes to ``moved``, to be replaced, when the time is known to the second or
    the files are these). One indexed store query per scene:
    the scenes of this run are stored as they are added."""

    t = scene.acquired
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    files_now = sorted(scene.attributes.get("files") or [])
    if moved is not None and scene.uri:  # read from these very files before, on any day: rewritten since
        moved.extend(o for o in store.scenes_at(scene.uri)
                     if o.id != scene.id and files_now and sorted(o.attributes.get("files") or []) == files_now)
    # any scene of that day over this place may be it: to the second, or, with a date alone on either side or
    # another time given to the same files (two --time values for one image), when its files hold the same bytes
    candidates = store.scenes(since=min(day, t - SAME_PASS),
                              until=max(day + timedelta(days=1) - timedelta(microseconds=1), t + SAME_PASS),
                              bbox=scene.footprint.bounds if scene.footprint is not None else None)
    for other in candidates:
        if other.id == scene.id or other.simulated != scene.simulated:
            continue
        near = abs(other.acquired - t) <= timedelta(seconds=1)
        loose = date_only(scene) or date_only(other) or not near
        if other.sensor != scene.sensor and "geotiff" not in (other.sensor, scene.sensor):
            continue
        a, b = scene.footprint, other.footprint
        if a is None or b is None:
            continue
        union = a.union(b).area
        if not (union > 0 and a.intersection(b).area / union >= 0.9):
            continue
        files = other.attributes.get("files") or []
        if files and sorted(files) == files_now:
            # its own files, rewritten since (recompressed, re-exported, or another image written over them, a
            # "latest.tif"): the stored scene's bytes are gone, and read again it would be read as this image;
            # this reading takes its place (found above, by path, whatever its day)
            if moved is not None and all(m.id != other.id for m in moved):
                moved.append(other)
            continue
        if files and not all(Path(f).exists() for f in files):
            if moved is not None and not loose:  # its files are gone: the folder was moved (told by the time
                moved.append(other)  # to the second; a date alone cannot tell a move from another image)
            continue
        # minutes apart, both timed: one pass over the place (a datatake's start and a tile's sensing time, two
        # exports of one product); as two looks it doubles the coverage the judgement counts, and every ship
        # (of one kind, one named sensor and the same bands: an unnamed optical GeoTIFF and a SAR one minutes
        # apart, or two sensors' crops, are two looks)
        close = (not date_only(scene) and not date_only(other) and abs(other.acquired - t) <= SAME_PASS
                 and other.sensor == scene.sensor
                 and other.attributes.get("kind") == scene.attributes.get("kind")
                 and set(other.attributes.get("bands", {})) == set(scene.attributes.get("bands", {})))
        if loose and not close and not _same_bytes(scene.attributes.get("files") or [], files):
            continue
        return other
    return None


def holds_no_data(scene: Scene, side: int = 512) -> bool:
    """Whether a scene's files hold nothing: every band, read at most ``side`` pixels a side (overviews when the
    file has them), all no-data, not finite, or one value throughout. Files that cannot be read count as holding
    something (their reading fails later, by name)."""
    import rasterio

    files = scene.attributes.get("files") or []
    if not files:
        return False
    try:
        for f in files:
            with rasterio.open(f) as ds:
                scale = max(1, int(np.ceil(max(ds.width, ds.height) / side)))
                shape = (ds.count, max(1, ds.height // scale), max(1, ds.width // scale))
                arr = ds.read(out_shape=shape, masked=True)
            data = np.ma.masked_invalid(arr.astype(np.float64)).compressed()
            if data.size and np.ptp(data) > 0:
                return False
    except (rasterio.errors.RasterioError, OSError):
        return False
    return True


def date_only(scene: Scene) -> bool:
    """A scene whose time is a date alone: marked so when added, or (stored before the mark, which every scene
    added since carries) exactly 00:00 UTC."""
    precision = scene.attributes.get("time_precision")
    if precision is not None:
        return precision == "day"
    t = scene.acquired
    return (t.hour, t.minute, t.second, t.microsecond) == (0,) * 4


def _same_bytes(files: list[str], others: list[str]) -> bool:
    """Whether two scenes' files hold the same bytes (sizes first; hashed, as the AIS manifest hashes files, only
    when those agree)."""
    if not files or len(files) != len(others):
        return False
    try:
        sizes = [sorted(Path(f).stat().st_size for f in group) for group in (files, others)]
        if sizes[0] != sizes[1]:
            return False
        return sorted(map(_digest, files)) == sorted(map(_digest, others))
    except OSError:
        return False


def _digest(path: str) -> str:
    """A file's content digest, computed once per version of the file (path, size and modification time)."""
    st = Path(path).stat()
    return _digest_of(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _digest_of(path: str, size: int, mtime_ns: int) -> str:
    from routewatch.sources.ais.ingest import file_digest

    return file_digest(Path(path))


class _NoBar:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress(enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())

