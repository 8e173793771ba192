"""`routewatch detect --site SITE --since DATE`: every stored scene over a site into one look and its sightings.

Per scene (a pure function, so it runs the same in-process or on Dask workers): read the site window, build the
water mask (user polygons first, else from the image), measure the usable fraction, run the detector inside clear
water, put detections on the map (GCPs for Sentinel-1, else the affine), keep those inside the site, write a PNG
chip per detection, and return a Look (also when nothing was seen, or the scene was unusable) with the sightings.
The main process writes each scene's records in one transaction and records failures; nothing half-written lands.
"""

from __future__ import annotations

import functools
import io
import math
import os
import time as _time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from routewatch.detect.base import chip_side_px, shrunk_chip
from routewatch.detect.measure import to_ground_sizes
from routewatch.detect.water import WaterMaskError, image_water, load_water_polygons, ship_zone
from routewatch.fuse.io import fused_id
from routewatch.model import (
    Evidence,
    EvidenceKind,
    Look,
    Scene,
    Sighting,
    Site,
    SiteKind,
    SourceKind,
    ensure_utc,
    stable_id,
)
from routewatch.sources.imagery.ingest import _progress, open_store, resolve_site, scene_paths, write_together
from routewatch.sources.imagery.looks import (
    automatic_detection_model,
    detection_model_for,
    scl_cloud,
    usable_fraction,
)
from routewatch.sources.imagery.raster import (
    SceneRaster,
    SceneReadError,
    band_refs,
    error_text,
    no_information,
    read_scene,
)
from routewatch.sources.imagery.sentinel1 import locate_detections
from routewatch.workspace import Workspace

Detector = Callable[[str, dict[str, np.ndarray], float, np.ndarray], list[Any]]
CHIP_PX = 64
OPTICAL_SHORE_REACH_M = 30.0  # measured on the shared ports: see routewatch.detect.water.ship_zone


def sar_band(names: Iterable[str]) -> str:
    """The band a SAR scene is searched in: co-polarised first (ships are brighter there), else the first."""
    names = list(names)
    return next((p for p in ("vv", "hh", "sar", "vh", "hv") if p in names), names[0])


def default_detector(kind: str, bands: dict[str, np.ndarray], pixel_size_m: float, water: np.ndarray, *,
                     sar_params: Any = None, sar_values: str = "amplitude") -> list[Any]:
    """The packaged detectors: CFAR for SAR (first polarisation), the optical model for blue/green/red(/nir).
    Without nir the model runs on red, green and blue alone, as ``detect optical`` does (the look's note carries
    the same warning). ``sar_params`` (a :class:`~routewatch.detect.sar.CfarParams`) replaces the packaged CFAR
    settings, for studies; ``sar_values`` says whether a SAR image is amplitude or intensity (see
    :func:`~routewatch.detect.sar.detect_sar`; ``scenes add --sar-values``)."""
    if kind == "sar":
        from routewatch.detect.sar import CfarParams, detect_sar

        pol = sar_band(bands)
        return detect_sar(bands[pol], pixel_size_m=pixel_size_m, water=water, params=sar_params or CfarParams(),
                          values=sar_values)
    from routewatch.detect.optical import detect_optical

    missing = {"blue", "green", "red"} - set(bands)
    if missing:
        raise SceneReadError(f"optical detection needs blue, green and red bands (and ideally nir); missing "
                             f"{sorted(missing)}")
    return detect_optical({k: bands[k] for k in ("blue", "green", "red", "nir") if k in bands},
                          pixel_size_m=pixel_size_m, water=water)


@dataclass
class SceneOutcome:
    """What one scene gave for one site: its look, sightings, chip evidence, and a failure message if any."""

    scene_id: str
    look: Look
    sightings: list[Sighting] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    failure: tuple[str, str] | None = None
    error: bool = False  # the scene could not be read or the detector failed (not a cloudy or blank scene)
    seen: BaseGeometry | None = None  # the part of the site it imaged with data, when asked (a shared window)


@dataclass
class PipelineResult:
    """Summary of a `detect --site` run (the records themselves are in the store)."""

    site: str
    scenes: int = 0
    looks: int = 0
    usable_looks: int = 0
    sightings: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # every unusable look's reason, also clouds
    errors: list[tuple[str, str]] = field(default_factory=list)  # those that are errors: unreadable, detector failed
    simulated: bool = False
    elapsed_s: float = 0.0
    look_ids: list[str] = field(default_factory=list)


def scene_evidence_id(scene_id: str) -> str:
    return stable_id("evidence", scene_id)


def _display(raster: SceneRaster) -> np.ndarray:
    """An 8-bit image for chips: true colour for optical, log amplitude for SAR (2-98 % stretch)."""
    if raster.kind == "optical" and {"red", "green", "blue"} <= set(raster.bands):
        stack = np.stack([raster.bands[b].astype(np.float32) for b in ("red", "green", "blue")], axis=-1)
    else:
        band = next(iter(raster.bands.values())).astype(np.float32)
        stack = np.log10(np.maximum(band, 1e-6))[..., None].repeat(3, axis=-1)
    ok = raster.valid
    lo, hi = (np.percentile(stack[ok], [2, 98]) if ok.any() else (0.0, 1.0))
    return np.clip((stack - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)


def make_chip(display: np.ndarray, row: float, col: float, size: int = CHIP_PX) -> bytes:
    """A PNG of ``size`` x ``size`` pixels centred on (row, col), padded black at the image edge (shrunk to
    ``CHIP_WRITTEN_MAX_PX`` when wider)."""
    from PIL import Image

    h, w = display.shape[:2]
    r0, c0 = round(row) - size // 2, round(col) - size // 2
    chip = np.zeros((size, size, 3), dtype=np.uint8)
    rs, cs = max(r0, 0), max(c0, 0)
    re, ce = min(r0 + size, h), min(c0 + size, w)
    if re > rs and ce > cs:
        chip[rs - r0:re - r0, cs - c0:ce - c0] = display[rs:re, cs:ce]
    buf = io.BytesIO()
    Image.fromarray(shrunk_chip(chip)).save(buf, format="PNG")
    return buf.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _unusable(scene: Scene, site: Site, note: str) -> Look:
    return Look(id=stable_id("look", scene.id, site.key), site=site.key, time=scene.acquired, sensor=scene.sensor,
                usable_fraction=0.0, detection=detection_model_for(scene.sensor, scene.resolution_m),
                source_kind=SourceKind.IMAGE, scene_id=scene.id, evidence_ids=(scene_evidence_id(scene.id),),
                vessels_seen=None, simulated=scene.simulated, note=note)


def process_scene(scene: Scene, site: Site, water_geometry: BaseGeometry | None, chips_dir: str,
                  detector: Detector | None = None, taken: BaseGeometry | None = None,
                  seen: bool = False) -> SceneOutcome:
    """One scene over one site into a Look and Sightings (never raises for bad input: it reports a failure).

    ``taken``: the part of the site (lon/lat) that another window of the same acquisition imaged with data and
    whose look counts it (see :func:`shared_windows`): this look neither counts it as seen nor keeps the ships in
    it. ``seen``: return the part of the site this scene imaged with data (for the windows after it)."""
    detector = detector or default_detector
    if detector is default_detector and scene.attributes.get("sar_values") == "intensity":
        detector = functools.partial(default_detector, sar_values=scene.attributes["sar_values"])
    try:
        raster = read_scene(scene, site.geometry)
    except SceneReadError as exc:
        return SceneOutcome(scene.id, _unusable(scene, site, f"unreadable: {exc}"), failure=((scene_paths(scene) or [""])[0], str(exc)),
                            error=True)
    path = raster.path
    site_px = raster.georef.rasterize(site.geometry)
    # a blank, all no-data or constant image sees nothing: an unusable look, not a clean "no ships" one
    blank = no_information(raster.bands, raster.valid, site_px) if site_px.any() else None
    if blank:
        msg = f"{path}: {blank} over site {site.key}; look recorded as unusable"
        return SceneOutcome(scene.id, _unusable(scene, site, msg), failure=(path, msg))
    footprint = raster.georef.footprint()
    imaged = footprint.intersection(site.geometry).area
    outside = 1.0 - min(imaged / site.geometry.area, 1.0) if site.geometry.area > 0 else 0.0
    cloud = scl_cloud(raster.scl) if raster.scl is not None else None
    elsewhere = raster.georef.rasterize(taken) if taken is not None and not taken.is_empty else None
    try:
        if water_geometry is not None:
            water, method = raster.georef.rasterize(water_geometry), "user polygons"
        else:
            water, method = image_water(raster.bands, raster.kind, raster.valid, raster.scl,
                                        raster.pixel_size_m, fill_in_valid=True,
                                        sar_values=scene.attributes.get("sar_values") or "amplitude")
    except WaterMaskError as exc:
        msg = f"{path}: {exc}"
        return SceneOutcome(scene.id, _unusable(scene, site, msg), failure=(path, msg))
    water_outside_px = None
    if water_geometry is not None and outside > 0 and imaged > 0:  # the polygons say how much water lies outside
        beyond = site.geometry.intersection(water_geometry).difference(footprint).area
        water_outside_px = beyond * int(site_px.sum()) / imaged
    # an anchorage is water throughout: what a mask derived from the image leaves out of it (a low-wind patch
    # of sea darker than the rest is split off as "land") was not searched, and the look says so (it had been
    # 100 % usable with half the anchorage unsearched)
    open_water = water_geometry is None and site.kind == SiteKind.ANCHORAGE
    uf = usable_fraction(site_px, outside, water, raster.valid if elsewhere is None else raster.valid & ~elsewhere,
                         cloud, water_known_everywhere=water_geometry is not None, water_outside_px=water_outside_px,
                         expected_water=site_px if open_water else None)
    evid = scene_evidence_id(scene.id)
    # the pixels the detector saw: a grid read on square pixels (square_pixels) is coarser than the file's mean
    resolution = max(scene.resolution_m or 0.0, raster.pixel_size_m)
    model = automatic_detection_model(
        detection_model_for(scene.sensor, resolution), raster.kind,
        user_water=water_geometry is not None, resolution_m=resolution,
    )
    if uf.fraction <= 0.0:
        empty_water = not (site_px & water).any() and (cloud is None or not (site_px & cloud).any())
        what = f"empty water mask over site {site.key} ({method})" if empty_water else uf.reason
        msg = f"{path}: {what}; look recorded as unusable"
        return SceneOutcome(scene.id, _unusable(scene, site, msg), failure=(path, msg))
    stated = scene.cloud_cover
    if cloud is None and raster.kind == "optical" and stated is not None and stated >= 1.0:
        # no mask, and the product says it is all cloud: whatever the detector found is on cloud tops (it had
        # stored ships from a look it counted 0 % usable, and recorded no failure)
        msg = (f"{path}: the product states {stated:.0%} cloud over the scene and carries no cloud mask; look recorded "
               "as unusable")
        return SceneOutcome(scene.id, _unusable(scene, site, msg), failure=(path, msg))
    clear = raster.valid & (~cloud if cloud is not None else True)
    # hulls at a berth lie just outside an image-derived water mask: search a shore rim for them (optical only:
    # in SAR the rim is bright quay returns, see docs/imagery.md); user polygons already include berths
    reach = 0.0 if water_geometry is not None or raster.kind == "sar" else OPTICAL_SHORE_REACH_M
    zone = ship_zone(water, raster.pixel_size_m, reach) & clear
    bands = raster.bands
    if raster.kind == "optical":  # no-data as zeros, which the optical model leaves out (and no ship along it)
        from routewatch.detect.optical import without_nodata

        bands = without_nodata(bands, raster.valid)
    try:
        found = detector(raster.kind, bands, raster.pixel_size_m, zone)
    except Exception as exc:  # a detector error costs this scene's look, never the whole run
        msg = f"{path}: detector failed: {type(exc).__name__}: {exc}"
        return SceneOutcome(scene.id, _unusable(scene, site, msg), failure=(path, msg), error=True)
    # a detection centred in cloud or no-data (the detector searches a little beyond its zone, for hulls at the
    # quay's edge) is not a ship the look saw; nor is one in the part of the site another window's look counts
    mine = clear if elsewhere is None else clear & ~elsewhere
    h, w = clear.shape
    found = [d for d in found if mine[min(max(round(d.row), 0), h - 1), min(max(round(d.col), 0), w - 1)]]
    ghosts: list[Any] = []
    note_ambiguity = ""
    mode = str(scene.attributes.get("instrument_mode") or "IW").upper()  # coastal Sentinel-1 is IW unless said
    if raster.kind == "sar" and found and raster.georef.uses_gcps and "sentinel-1" in scene.sensor.lower():
        # a Sentinel-1 GRD in its own geometry (rows along track): ghosts of bright returns, at a port mostly on
        # land 4.5-6 km up or down track, are no ships; the file is read beyond the window for their sources
        if mode != "IW":
            note_ambiguity = f"; azimuth ambiguities not checked (mode {mode}: the IW geometry does not apply)"
        else:
            try:
                marked, unchecked = _azimuth_ambiguities(scene, raster, found)
            except (OSError, RasterioError, ValueError) as exc:
                note_ambiguity = f"; azimuth ambiguities not checked ({error_text(exc)})"
            else:
                ghosts = [d for d in marked if d.ambiguity]
                found = [d for d in marked if not d.ambiguity]
                if unchecked:
                    note_ambiguity = (f"; azimuth ambiguities not checked for {unchecked} of {len(marked)} "
                                      "detections: the file ends, or holds no data, within 6.2 km of them along "
                                      "track on one side at least)")
    found = to_ground_sizes(found, raster.pixel_size_m, raster.georef.ground_pixel_sizes_m())
    located = locate_detections(found, raster.georef)
    inside = [d for d in located if site.geometry.covers(Point(d.lon, d.lat))]
    look_id = stable_id("look", scene.id, site.key)
    display = _display(raster) if any(d.chip_png is None for d in inside) else None
    sightings: list[Sighting] = []
    evidence: list[Evidence] = []
    label = "simulated " if scene.simulated else ""
    for d in inside:
        sid = stable_id("sighting", look_id, f"{d.lon:.6f}", f"{d.lat:.6f}")
        png = d.chip_png if d.chip_png is not None else make_chip(  # type: ignore[arg-type]
            display, d.row, d.col, chip_side_px(d.length_m, raster.pixel_size_m, CHIP_PX))
        chip_path = Path(chips_dir) / f"{sid}.png"
        _write_atomic(chip_path, png)
        chip_ev = Evidence(id=stable_id("chip", sid), kind=EvidenceKind.CHIP,
                           description=f"{label}image chip of a {d.length_m:.0f} m detection at {site.key}",
                           source=f"scene {scene.id}", uri=chip_path.resolve().as_uri(), observed_at=scene.acquired,
                           attributes={"scene_id": scene.id, "row": d.row, "col": d.col, "simulated": scene.simulated})
        evidence.append(chip_ev)
        sightings.append(Sighting(
            id=sid, time=scene.acquired, source_kind=SourceKind.IMAGE, site=site.key, event="detection",
            lon=d.lon, lat=d.lat, length_m=round(float(d.length_m), 1), width_m=round(float(d.width_m), 1),
            heading_deg=round(float(d.heading_deg), 1), score=float(d.score), confidence=float(d.score),
            look_id=look_id, evidence_ids=(evid, chip_ev.id), simulated=scene.simulated,
            detail=f"{label}{scene.sensor} detection: {d.length_m:.0f} m x {d.width_m:.0f} m, heading "
                   f"{d.heading_deg:.0f} deg, score {d.score:.2f}, pixel ({d.row:.1f}, {d.col:.1f})"))
    note = f"water: {method}; usable {uf.fraction:.0%}" + note_ambiguity
    ghosts_here = [d for d in locate_detections(ghosts, raster.georef) if site.geometry.covers(Point(d.lon, d.lat))]
    if ghosts_here:
        note += (f"; {len(ghosts_here)} detection{'s' if len(ghosts_here) > 1 else ''} taken for azimuth ambiguities "
                 "(ghosts of returns at least 15 dB brighter 4.2-6.2 km along track), not stored: "
                 + ", ".join(f"{d.lon:.5f} {d.lat:.5f}" for d in ghosts_here[:5]))
    if open_water:  # what the mask left out of the anchorage: seen, not water, and not another window's part
        left_out = site_px & raster.valid & ~water & (~cloud if cloud is not None else True)
        if elsewhere is not None:
            left_out &= ~elsewhere
        if left_out.any():
            note += (f"; the mask leaves {int(left_out.sum()) / max(int(site_px.sum()), 1):.0%} of the "
                     "anchorage out (not searched: draw water polygons if it is sea)")
    band = next(iter(raster.bands.values()))  # the band the water mask was derived from
    if raster.kind == "sar" and site_px.any():
        from routewatch.detect.water import edge_zero_fill, zeros_are_fill

        zeros = 0.0 if zeros_are_fill(band) else float(edge_zero_fill(band)[site_px].mean())
        if zeros > 0.05:  # calm water or the fill of a reprojected rendering: the file cannot say which
            note += (f"; 8-bit image: {zeros:.0%} of the site is zero out to the image's edge, counted as calm water "
                     "(tag it as no-data if it is fill)")
    fraction = uf.fraction
    if cloud is None and raster.kind == "optical":
        if stated is not None and math.isfinite(stated) and 0 < stated <= 1:
            # no mask, but the product states the scene's cloud: where over the scene it lies is unknown, so the
            # site is taken to be as cloudy as the scene (a scene called 87 % cloudy had made a fully clear look)
            fraction *= 1.0 - stated
            note += (f"; no cloud mask in this product: it states {stated:.0%} cloud over the scene, so "
                     f"{1 - stated:.0%} of the site is taken as clear (usable {fraction:.0%})")
        else:
            note += "; no cloud mask in this product (assumed clear)"
    if elsewhere is not None and (site_px & elsewhere).any():
        note += (f"; {float((site_px & elsewhere).sum()) / max(int(site_px.sum()), 1):.0%} of the site in this image "
                 "is counted by the look of another window of the same acquisition")
    if raster.kind == "optical" and detector is default_detector:
        from routewatch.detect.optical import missing_nir_warning

        if warning := missing_nir_warning(raster.bands, raster.pixel_size_m):
            note += f"; warning: {warning}"
    look = Look(id=look_id, site=site.key, time=scene.acquired, sensor=scene.sensor, usable_fraction=round(fraction, 4),
                detection=model, source_kind=SourceKind.IMAGE, scene_id=scene.id, evidence_ids=(evid,),
                vessels_seen=len(sightings), simulated=scene.simulated, note=note)
    imaged = raster.georef.polygonize(site_px & raster.valid) if seen else None
    return SceneOutcome(scene.id, look, sightings, evidence, seen=imaged)


def _azimuth_ambiguities(scene: Scene, raster: SceneRaster, found: list[Any]) -> tuple[list[Any], int]:
    """The detections of a Sentinel-1 GRD window with its azimuth ambiguities marked (``detect.ambiguity``), and
    how many could not be checked: their sources are looked for in the band file itself, beyond the window that
    was read (a fetched scene's file reaches 6.3 km along track beyond its site)."""
    from routewatch.detect.ambiguity import find_ambiguities, mark_ambiguities

    refs = band_refs(scene)
    ref = refs[sar_band(refs)]  # the band the detector searched
    offset = (int(raster.window.row_off), int(raster.window.col_off)) if raster.window is not None else (0, 0)
    with rasterio.open(str(ref["path"])) as ds:
        idx = int(ref.get("index", 1))

        nodata = scene.attributes.get("nodata")  # one the user gave for the scene; the file's own: its mask

        def read(r0: int, r1: int, c0: int, c1: int) -> np.ndarray | None:
            r0, r1, c0, c1 = max(r0, 0), min(r1, ds.height), max(c0, 0), min(c1, ds.width)
            if r1 <= r0 or c1 <= c0:
                return None
            window = Window(c0, r0, c1 - c0, r1 - r0)
            part = ds.read(idx, window=window).astype(np.float64)
            part[ds.read_masks(idx, window=window) == 0] = np.nan  # its no-data value or mask band
            if nodata is not None:
                part[part == nodata] = np.nan
            return part  # an untagged 0 fill is no data to find_ambiguities itself

        row_m = raster.georef.ground_pixel_sizes_m()[0]
        unchecked: list[int] = []
        ghosts = find_ambiguities(found, read, azimuth_pixel_m=row_m, offset=offset, pixel_m=raster.pixel_size_m,
                                  values=scene.attributes.get("sar_values") or "amplitude", unchecked=unchecked)
    return mark_ambiguities(found, ghosts), len(unchecked)


def site_water_geometry(ws: Workspace, site_key: str, water: str | Path | None = None) -> BaseGeometry | None:
    """User water polygons: the given file, else ``water/<site>.geojson|gpkg`` or ``water.geojson|gpkg``."""
    if water is not None:
        return load_water_polygons(water)
    for p in (ws.root / "water" / f"{site_key}.geojson", ws.root / "water" / f"{site_key}.gpkg",
              ws.root / "water.geojson", ws.root / "water.gpkg"):
        if p.exists():
            return load_water_polygons(p)
    return None


def _run(scenes: list[Scene], site: Site, water: BaseGeometry | None, chips: str, detector: Detector | None,
         workers: int | None, scheduler: str | None, processes: bool,
         seen_of: set[str] | frozenset[str] = frozenset()) -> Iterator[SceneOutcome]:
    if (not workers or workers <= 1) and not scheduler:  # one worker: in-process, no cluster to start
        for s in scenes:
            yield process_scene(s, site, water, chips, detector, None, s.id in seen_of)
        return
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=int(workers or 1), threads_per_worker=1, processes=processes,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        site_f, water_f = client.scatter(site, broadcast=True), client.scatter(water, broadcast=True)
        futures = [client.submit(process_scene, s, site_f, water_f, chips, detector, None, s.id in seen_of,
                                 pure=False) for s in scenes]
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def one_per_acquisition(scenes: list[Scene], site: Site) -> tuple[list[Scene], list[Scene]]:
    """One scene per acquisition over a site: ``fetch`` stores a window of a product per site, and the windows of
    neighbouring sites overlap (as do crops of one tile added for two ports), so one image would otherwise be two
    looks, and one ship two sightings. Scenes of the same sensor, time (to the microsecond) and simulation are one
    acquisition; the one covering most of the site is kept, and another is left out when nine tenths of its part
    of the site lie in a kept one (adjacent tiles of one datatake show different parts and stay two looks).
    Scenes with a date alone are never merged (two images of one day are two looks). Returns (kept, left out)."""
    from routewatch.sources.imagery.ingest import date_only

    groups: dict[tuple, list[Scene]] = {}
    for s in scenes:
        key = ("id", s.id) if date_only(s) else (s.sensor, s.acquired, s.simulated)
        groups.setdefault(key, []).append(s)
    kept, extra = [], []
    for group in groups.values():
        if len(group) == 1 or any(s.footprint is None for s in group):  # of unknown extent: nothing to compare
            kept.extend(group)
            continue
        parts = {s.id: s.footprint.intersection(site.geometry) for s in group}
        mine: list[Scene] = []
        for s in sorted(group, key=lambda s: (-parts[s.id].area, s.id)):  # most of the site first
            part = parts[s.id]
            # a window showing (nine tenths of) the same part of the site as one kept, or none of it, is the same
            # look; the next tile of one datatake shows another part, and is a look of its own
            if mine and (part.area <= 0 or any(part.intersection(k.footprint).area >= 0.9 * part.area for k in mine)):
                extra.append(s)
            else:
                mine.append(s)
        kept.extend(mine)
    order = {s.id: i for i, s in enumerate(scenes)}
    return sorted(kept, key=lambda s: order[s.id]), extra


def shared_windows(kept: list[Scene], site: Site) -> dict[str, list[str]]:
    """Windows of one acquisition that :func:`one_per_acquisition` keeps and that overlap in part (two crops of
    one image, each showing some of a port): for each window after the first (most of the site first), the
    windows before it that share part of the site with it. The part of the site a window before it imaged with
    data is counted by that window's look, so one image's view is counted once and a ship in the overlap is one
    sighting; what a window before it could not read, or had no data over, stays with this one."""
    from routewatch.sources.imagery.ingest import date_only

    groups: dict[tuple, list[Scene]] = {}
    for s in kept:
        if not date_only(s) and s.footprint is not None:
            groups.setdefault((s.sensor, s.acquired, s.simulated), []).append(s)
    out: dict[str, list[str]] = {}
    for group in groups.values():
        parts = {s.id: s.footprint.intersection(site.geometry) for s in group}
        ranked = sorted(group, key=lambda s: (-parts[s.id].area, s.id))
        for i, s in enumerate(ranked):
            before = [o.id for o in ranked[:i] if parts[o.id].intersection(parts[s.id]).area > 0]
            if before:
                out[s.id] = before
    return out


def _outcomes(scenes: list[Scene], later: dict[str, list[str]], asked: set[str], site: Site,
              water: BaseGeometry | None, chips: str, detector: Detector | None, workers: int | None,
              scheduler: str | None, processes: bool) -> Iterator[SceneOutcome]:
    """Every scene's outcome: the scenes that share no part of the site first (in parallel when asked), then each
    later window of a shared acquisition, in order, given the part the windows before it imaged with data."""
    seen: dict[str, BaseGeometry] = {}
    for out in _run([s for s in scenes if s.id not in later], site, water, chips, detector, workers, scheduler,
                    processes, asked):
        if out.seen is not None:
            seen[out.scene_id] = out.seen
        yield out
    by_id = {s.id: s for s in scenes}
    for sid, before in later.items():  # few (crops of one image), in order: each after those it follows
        s = by_id[sid]
        parts = [seen[e] for e in before if e in seen and not seen[e].is_empty]
        taken = unary_union(parts).intersection(site.geometry) if parts else None
        out = process_scene(s, site, water, chips, detector, taken, s.id in asked)
        if out.seen is not None:
            seen[out.scene_id] = out.seen
        yield out


def detect_site(workspace: Workspace | str | Path | None, site_key: str, since: datetime,
                until: datetime | None = None, workers: int | None = None, scheduler: str | None = None, *,
                detector: Detector | None = None, water: str | Path | None = None, db: str | None = None,
                progress: bool = True, processes: bool = True) -> PipelineResult:
    """Detect over every stored scene of a site in [since, until]; store looks and sightings per scene."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace.open(workspace, db)
    ws.ensure()
    started = _time.perf_counter()
    store = open_store(ws)
    site = resolve_site(ws, site_key, store)
    water_geom = site_water_geometry(ws, site_key, water)
    if water_geom is not None:
        water_geom = water_geom.intersection(site.geometry.buffer(0.01))
    since = ensure_utc(since)
    until = ensure_utc(until) if until else None
    scenes = [s for s in store.scenes(since=since, until=until, bbox=site.geometry.bounds)
              if s.footprint is None or s.footprint.intersects(site.geometry)]
    scenes, extra = one_per_acquisition(scenes, site)
    later = shared_windows(scenes, site)  # read after the windows before them, which hand on what they saw
    asked = {e for ids in later.values() for e in ids}
    if extra:  # looks an earlier run made of a second window of the same acquisition go, with their sightings
        store.remove_looks([_unusable(s, site, "") for s in extra])
    result = PipelineResult(site=site.key, scenes=len(scenes), simulated=any(s.simulated for s in scenes))
    by_id = {s.id: s for s in scenes}
    with _progress(progress) as bar:
        task = bar.add_task(f"detect over {site.key}", total=len(scenes)) if bar else None
        for out in _outcomes(scenes, later, asked, site, water_geom, str(ws.chips_dir), detector, workers, scheduler,
                             processes):
            # the look's sightings of an earlier run that this one did not find go, in the same transaction
            write_together(store, evidence=out.evidence, looks=[out.look], sightings=out.sightings,
                           replace_sightings=True, keep_also=[fused_id(s.id) for s in out.sightings])
            if out.failure:
                store.record_failure("detect", out.failure[0], f"site {site.key}: {out.failure[1]}")
                result.failures.append(out.failure)
                if out.error:
                    result.errors.append(out.failure)
            else:  # read and searched now: a failure an earlier run recorded for this scene at this site is past
                store.clear_failures("detect", scene_paths(by_id[out.scene_id]), f"site {site.key}: ")
            result.looks += 1
            result.usable_looks += int(out.look.usable)
            result.sightings += len(out.sightings)
            result.look_ids.append(out.look.id)
            if bar is not None and task is not None:
                bar.advance(task)
    result.elapsed_s = round(_time.perf_counter() - started, 3)
    if progress:
        _summary(result)
    return result


def _summary(r: PipelineResult) -> None:
    from rich.console import Console

    con = Console(stderr=True)
    for path, message in r.failures:
        con.print(f"[yellow]recorded failure[/yellow] {message if path in message else f'{path}: {message}'}")
    label = " [bold]SIMULATED scenes[/bold]" if r.simulated else ""
    con.print(f"{r.site}: {r.scenes} scenes -> {r.looks} looks ({r.usable_looks} usable), {r.sightings} sightings, "
              f"{len(r.failures)} failures in {r.elapsed_s:.1f} s{label}")

