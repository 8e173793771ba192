"""CLI verbs of ship detection: `detect sar`, `detect optical`, `detect --site`, `evaluate detections`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(stderr=True)
_RENDERINGS = (".jpg", ".jpeg", ".png", ".bmp")  # plain images: no georeference, zeros are dark pixels


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=2)


def read_image(path: Path) -> tuple[np.ndarray, Any, Any]:
    """(array, transform, crs) of a GeoTIFF, or (array, None, None) for a plain image without georeference."""
    return _read_image(path, with_valid=False)[:3]


def _read_image(path: Path, with_valid: bool, index: int | None = 1) -> tuple[np.ndarray, Any, Any, np.ndarray | None]:
    """:func:`read_image` plus the band's valid pixels (see :func:`_read_valid`; None for a plain image), taken in
    the same opening of the file. ``index``: the band to read (1-based); None refuses a file of several bands,
    where taking the first silently would be a guess."""
    if not path.is_file():
        raise _fail(f"{path}: no such file")
    if path.suffix.lower() in _RENDERINGS:
        from PIL import Image

        if index not in (None, 1):
            raise _fail(f"{path}: a plain image is read as one grey band; FILE:N (detect optical) or --band N "
                        "(detect sar) picks bands of a GeoTIFF")
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("L") if im.mode not in ("L", "I;16", "I") else im)
        except OSError as exc:
            raise _fail(f"{path}: cannot read image ({exc})") from exc
        return arr, None, None, None
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    from routewatch.sources.imagery.raster import error_text

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                if index is None and ds.count > 1:
                    raise _fail(f"{path}: {ds.count} bands; say which with FILE:N (e.g. {path}:4, 1-based)")
                band = index or 1
                if band > ds.count:
                    raise _fail(f"{path}: no band {band} (the file has {ds.count})")
                arr = ds.read(band)
                crs = ds.crs
                transform = ds.transform if crs is not None else None
                valid = _read_valid(ds, arr, band) if with_valid else None
    except (RasterioIOError, OSError) as exc:
        raise _fail(f"{path}: cannot read raster ({error_text(exc)})") from exc
    return arr, transform, crs, valid


def _check_information(path: Path, bands: dict[str, np.ndarray], valid: np.ndarray | None) -> None:
    """Refuse an image with no valid pixel or one value throughout: "0 ships" there is not evidence of absence."""
    from routewatch.sources.imagery.raster import no_information

    why = no_information(bands, valid)
    if why:
        raise _fail(f"{path}: {why}; nothing can be detected in it (blank, fill or all no-data image?)")


def _check_same_grid(path: Path, tr: Any, crs: Any, first: Path, tr0: Any, crs0: Any) -> None:
    """Refuse a band file not on the first band's grid (shifted, another CRS, or no georeference where the first
    has one): a same-sized band is not enough, it would be stacked pixel for pixel. Float noise is allowed."""
    from routewatch.sources.imagery.raster import affine_mismatch

    why = affine_mismatch(crs, tr, crs0, tr0, str(first))
    if why:
        raise _fail(f"{path}: {why}; bands must be co-registered")


def _pixel_size(path: Path, shape: tuple[int, int], transform: Any, crs: Any, given: float | None,
                grid: Any = None) -> float:
    """The ground pixel size: the image's own (affine, or a GCP grid's), else ``--pixel-size``; one given for a
    georeferenced image must agree with it (within 10 %), and the image's own is used either way."""
    from routewatch.detect.measure import ground_pixel_size

    if given is not None and (not np.isfinite(given) or given <= 0):
        raise _fail(f"--pixel-size {given:g}: the ground pixel size must be a positive number of metres")
    if grid is None and (transform is None or crs is None):
        if given is None:
            raise _fail(f"{path}: no georeference; give the ground pixel size with --pixel-size METRES")
        return given
    own = grid.ground_pixel_size_m() if grid is not None else float(np.mean(ground_pixel_size(transform, crs, shape)))
    if given is not None and abs(given - own) > 0.1 * own:  # it had silently scaled every length
        raise _fail(f"--pixel-size {given:g}: {path} is georeferenced with {own:.3g} m ground pixels; "
                    "--pixel-size is for images without georeference (leave it out)")
    return own


def _sar_band(path: Path) -> int:
    """The band ``detect sar`` searches when none is given: the only one, or the co-polarised one (VV or HH,
    where ships stand out best) that the band descriptions name; a file of several bands that says neither is
    refused (a VH band taken silently had found no ship)."""
    if path.suffix.lower() in _RENDERINGS or not path.is_file():
        return 1
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                from rasterio.enums import ColorInterp

                # an alpha band (gdalwarp -dstalpha) is the mask, not a band to search
                bands = [(i + 1, str(d or "")) for i, (d, ci) in enumerate(zip(ds.descriptions, ds.colorinterp,
                                                                               strict=True))
                         if ci != ColorInterp.alpha]
    except (RasterioIOError, OSError):
        return 1  # the read that follows says what is wrong with the file
    if len(bands) <= 1:
        return bands[0][0] if bands else 1
    # VV or HH named alone (not a ratio such as VV/VH or HH_HV_ratio, nor a cross-polarised band)
    def polarisations(text: str) -> list[str]:
        return [p.upper() for p in re.findall(r"(?i)(?<![A-Z])(VV|HH|VH|HV)(?![A-Z])", text)]

    co = [i for i, d in bands if polarisations(d) in (["VV"], ["HH"])
          and not re.search(r"(?i)(?<![A-Z])ratio(?![A-Z])", d)]
    if len(co) == 1:
        return co[0]
    said = ", ".join(f"{i}: {d or 'unnamed'}" for i, d in bands)
    raise _fail(f"{path}: {len(bands)} bands ({said}); say which to search with --band N (1-based): ships stand out "
                "best in the co-polarised band (VV or HH)")


def _gcp_grid(path: Path) -> Any:
    """The grid of a file located by ground control points alone (a Sentinel-1 GRD), or None."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    from routewatch.sources.imagery.sentinel1 import gcp_georef

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                return gcp_georef(ds) if len(ds.gcps[0]) >= 3 else None
    except Exception:  # a plain image (PNG, JPEG) that rasterio reads without GCPs, or cannot read at all
        return None


def _mark_ambiguities(dets: list, band: np.ndarray, values: str, along: str, grid: Any, transform: Any, crs: Any,
                      px: float, unchecked: list[int] | None = None, valid: np.ndarray | None = None) -> list:
    """The detections with the azimuth ambiguities among them marked (``detect.ambiguity``), the image's
    ``along`` axis (rows or cols) taken as the track; ``unchecked`` gets those that could not be checked;
    ``valid``: the file's data (its no-data tag)."""
    from dataclasses import replace

    from routewatch.detect.ambiguity import array_reader, find_ambiguities, mark_ambiguities
    from routewatch.sources.imagery.geo import GridGeoref

    if grid is None and transform is not None and crs is not None:
        grid = GridGeoref(band.shape[:2], transform=transform, crs=crs)
    sizes = grid.ground_pixel_sizes_m() if grid is not None else (px, px)
    if along == "rows":
        found = find_ambiguities(dets, array_reader(band, valid), azimuth_pixel_m=float(sizes[0]), values=values,
                                 pixel_m=px, unchecked=unchecked)
    else:  # the track along the columns: the same search on the transposed image, its pixels turned back
        flipped = [replace(d, row=d.col, col=d.row, heading_deg=(90.0 - d.heading_deg) % 180.0) for d in dets]
        found = {i: replace(a, source_row=a.source_col, source_col=a.source_row) for i, a in find_ambiguities(
            flipped, array_reader(band.T, None if valid is None else valid.T), azimuth_pixel_m=float(sizes[1]),
            values=values, pixel_m=px,
            unchecked=unchecked).items()}
    return mark_ambiguities(dets, found)


def _write(dets: list, out: Path, meta: dict[str, Any], transform: Any, crs: Any, chips: Path | None,
           grid: Any = None) -> None:
    """Write the detections; on a georeferenced image (affine or GCPs) with lon/lat and headings turned from
    image-up to true north, as the site pipeline stores them."""
    from routewatch.detect.base import to_geojson
    from routewatch.sources.imagery.geo import GridGeoref
    from routewatch.sources.imagery.sentinel1 import locate_detections

    if grid is None and transform is not None and crs is not None:
        grid = GridGeoref((int(meta["height"]), int(meta["width"])), transform=transform, crs=crs)
    if grid is not None:
        from routewatch.detect.measure import to_ground_sizes

        # measured with the grid's mean pixel: scaled along each ship's axis to true metres
        dets = to_ground_sizes(dets, float(meta["pixel_size_m"]), grid.ground_pixel_sizes_m())
        dets = locate_detections(dets, grid)
    meta["heading"] = "degrees clockwise from true north" if grid is not None else "degrees clockwise from image-up"
    image = str(meta.get("image", ""))
    meta.update(_image_facts(Path(image) if Path(image).exists() else Path(image.rsplit(":", 1)[0])))  # FILE:N
    fc = to_geojson(dets, meta)
    for f in fc["features"]:  # what fusion reads from each detection: when it was seen, and whether it is real
        if meta.get("time_precision") == "second":
            f["properties"]["time"] = meta["acquired"]
        if meta.get("simulated"):
            f["properties"]["simulated"] = True
    if chips is not None:
        chips.mkdir(parents=True, exist_ok=True)
        for d, f in zip(dets, fc["features"], strict=True):
            if d.chip_png:
                name = f"{out.stem}_{f['properties']['id']:04d}.png"
                (chips / name).write_bytes(d.chip_png)
                f["properties"]["chip"] = str(chips / name)
    tmp = out.with_name(out.name + ".part")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(fc, indent=1))
        tmp.replace(out)  # never leave a half-written file under the final name
    except OSError as exc:
        raise _fail(f"-o {out}: cannot write the output ({exc})") from exc
    console.print(f"{len(dets)} ships -> {out}")


def _image_facts(path: Path) -> dict[str, Any]:
    """What the image file says of itself that a detections file must carry on: its acquisition time (from its
    tags or name, as `scenes add` reads it; ``time_precision`` day for a date alone) and whether it is simulated
    (a routewatch simulated scene's tag), so that `fuse --detections` matches AIS at that time and keeps the mark."""
    if not path.is_file() or path.suffix.lower() in _RENDERINGS:
        return {}
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    from routewatch.sources.imagery.local import time_from_files

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                tags = {str(k): str(v) for k, v in ds.tags().items()}
    except (RasterioIOError, OSError):
        return {}
    facts: dict[str, Any] = {}
    if tags.get("ROUTEWATCH_SIMULATED") == "1":
        facts["simulated"] = True
    found = time_from_files([path], tags, write_time=False)  # when the file was written is no acquisition time
    if found is not None:
        when, has_time = found
        facts.update(acquired=when.isoformat(), time_precision="second" if has_time else "day")
    return facts


def _read_valid(ds: Any, band: np.ndarray | None = None, index: int = 1) -> np.ndarray | None:
    """Band 1's valid pixels from the file's no-data value or internal mask (NaN included), or None when the
    file declares every pixel valid (no full-size mask is read then). With the band already read, a no-data
    value is applied to it instead of reading the band a second time."""
    from rasterio.enums import MaskFlags

    flags = ds.mask_flag_enums[index - 1]
    if flags == [MaskFlags.all_valid]:
        return None
    if band is not None and flags == [MaskFlags.nodata]:
        nodata = ds.nodatavals[index - 1]
        if np.issubdtype(band.dtype, np.floating):
            return np.isfinite(band) & (True if np.isnan(nodata) else band != band.dtype.type(nodata))
        info = np.iinfo(band.dtype)  # a no-data value the type cannot hold marks nothing (as GDAL's mask)
        return band != nodata if info.min <= nodata <= info.max else np.ones(band.shape, bool)
    return ds.read_masks(index) > 0


def _check_near_sea(image: Path, water: str, model: Path | None, transform: Any, crs: Any, grid: Any = None) -> None:
    """``--global-mask`` problems found before any mask is derived (that takes a minute on a whole scene)."""
    from routewatch.detect.water import WaterMaskError, check_global_mask

    if model:
        raise _fail("--global-mask narrows the CFAR's water mask; your own model (--model) takes none: drop one")
    if water not in ("auto", "none"):
        raise _fail(f"--global-mask narrows a derived mask; your water mask {water} is taken as it is: drop one")
    try:
        check_global_mask(transform, crs, grid)
    except WaterMaskError as exc:
        raise _fail(f"{image}: {exc}") from exc


def _near_sea(mask: np.ndarray | None, method: str, shape: tuple[int, int], transform: Any, crs: Any,
              grid: Any = None) -> tuple[np.ndarray, str]:
    """Narrow a derived mask (or none) to the packaged global mask's coastal zone (``--global-mask``); ``grid``
    places a file located by ground control points."""
    from routewatch.detect.water import GLOBAL_MARGIN_M, near_global_sea

    near = near_global_sea(transform, crs, shape, georef=grid)
    if mask is not None:
        near &= mask
    return near, f"{method}, within {GLOBAL_MARGIN_M / 1000:.0f} km of the global mask's sea (GLOBE, 1 km)"


def _sar_water(image: Path, band: np.ndarray, valid: np.ndarray | None, water: str, px: float, transform: Any,
               crs: Any, values: str = "amplitude") -> tuple[np.ndarray | None, str]:
    """The water mask the CFAR searches: derived from the image (``auto``), none, or the user's mask (one band,
    non-zero = water, its no-data not water, the image's size and georeference)."""
    from routewatch.detect.water import WaterMaskError, sar_water

    if water == "none":  # no water mask, but the file's no-data stays out of the search and of every ring
        return valid, "none"
    if water == "auto":
        rendering = image.suffix.lower() in _RENDERINGS
        try:  # sar_water leaves non-finite pixels out itself
            # a raster product's solid zero fill at the edge is no-data even untagged; a rendering's zeros are sea
            return (sar_water(band, valid, pixel_size_m=px, zero_is_fill=not rendering, values=values),
                    "derived from the image (sar-otsu)")
        except WaterMaskError as exc:
            raise _fail(f"{image}: {exc}") from exc
    path = Path(water)
    if not path.is_file():
        raise _fail(f"--water {path}: no such file")
    if path.suffix.lower() in (".jpg", ".jpeg"):
        raise _fail(f"--water {path}: JPEG is lossy (its noise would turn land into water); give a PNG or GeoTIFF")
    if path.suffix.lower() in _RENDERINGS:
        from PIL import Image

        try:
            with Image.open(path) as im:
                if im.mode not in ("1", "L", "P", "I", "I;16"):
                    raise _fail(f"--water {path}: {im.mode} image; give a one-band image (non-black = water)")
                if im.mode == "P":  # a palette image as it looks, if it is grey
                    rgb = np.asarray(im.convert("RGB"))
                    if not ((rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])).all():
                        raise _fail(f"--water {path}: a colour palette; give a grey image (non-black = water)")
                    mask = rgb[..., 0]
                else:
                    mask = np.asarray(im)
        except (OSError, Image.DecompressionBombError) as exc:
            raise _fail(f"--water {path}: cannot read image ({exc}); large masks are better as GeoTIFF") from exc
        ok = np.ones(mask.shape, bool)
    else:
        import rasterio
        from rasterio.errors import RasterioIOError

        try:
            with rasterio.open(path) as ds:
                if ds.count != 1:
                    raise _fail(f"--water {path}: {ds.count} bands; give a one-band raster (non-zero = water)")
                mask = ds.read(1)
                ok = _read_valid(ds)
                wcrs, wtr = ds.crs, ds.transform
        except RasterioIOError as exc:
            from routewatch.sources.imagery.raster import error_text

            raise _fail(f"--water {path}: cannot read raster ({error_text(exc)})") from exc
        ok = np.ones(mask.shape, bool) if ok is None else ok
        if np.issubdtype(mask.dtype, np.floating):
            ok &= np.isfinite(mask)
        if crs is not None and wcrs is not None and (wcrs != crs or not wtr.almost_equals(transform)):
            raise _fail(f"--water {path}: its georeference differs from {image}'s; give a mask on the image's grid")
    if mask.shape != band.shape:
        raise _fail(f"--water {path}: size {mask.shape} differs from the image's {band.shape}")
    # the image's own no-data is no water either (a -9999 swath fill in the rings had hidden every ship)
    return (mask != 0) & ok & (True if valid is None else valid), str(path)


def _user_model(model: Path, data: Any, px: float) -> list:
    from routewatch.detect.onnx import load_detector

    try:
        return load_detector(model)(data, pixel_size_m=px)
    except (FileNotFoundError, ValueError) as exc:
        raise _fail(str(exc)) from exc


def register(app: typer.Typer) -> None:
    """Add the `detect` group and the `evaluate` group to the main app."""
    detect = typer.Typer(invoke_without_command=True, no_args_is_help=False)
    evaluate = typer.Typer(no_args_is_help=True,
                           help="Score outputs against labelled truth. Example: routewatch evaluate detections det.geojson --truth truth.json")
    app.add_typer(detect, name="detect")
    app.add_typer(evaluate, name="evaluate")

    @detect.callback()
    def detect_site_cmd(
        ctx: typer.Context,
        site: str = typer.Option(None, "--site", help="site key from the watchlist"),
        since: str = typer.Option(None, "--since", help="first acquisition date (UTC; YYYY-MM-DD or ISO time)"),
        until: str = typer.Option(None, "--until", help="last acquisition date (UTC; a day counts whole), "
                                                         "default now"),
        workers: int = typer.Option(1, "--workers", help="local Dask workers"),
        scheduler: str = typer.Option(None, "--scheduler", help="address of a running Dask scheduler"),
        workspace: Path = typer.Option(None, "--workspace", "-w", help="workspace folder (default: current)"),
        db: str = typer.Option(None, "--db", envvar="ROUTEWATCH_DB", help="store URL (default: workspace SQLite)"),
    ) -> None:
        """Find ships: over a site's stored scenes (into sightings and looks), or in files with `sar` / `optical`.

        Example: routewatch detect --site rajin --since 2023-08-01 --until 2024-03-02 --workers 2
        """
        if ctx.invoked_subcommand is not None:
            return
        if not site or since is None:
            console.print(ctx.get_help())
            raise _fail("give --site and --since (or use `detect sar` / `detect optical` on files)")
        from routewatch.cli.core import open_workspace
        from routewatch.cli.imagery import _day
        from routewatch.detect.water import WaterMaskError
        from routewatch.model import latest_observation_time
        from routewatch.sources.imagery.ingest import resolve_site
        from routewatch.sources.imagery.pipeline import detect_site

        s = _day(since)
        # --until 2023-06-11 takes that day's scenes too; without it, the latest time `scenes add` allows (now and a
        # day, for a local time read as UTC: a scene dated later is refused there)
        u = _day(until, end=True) if until else latest_observation_time()
        if u < s:
            raise _fail(f"--until {until or 'now'} is before --since {since}: no scene could be in that window")
        ws, _, store = open_workspace(workspace, db)  # no workspace: says so and creates nothing
        try:
            resolve_site(ws, site, store)
        except KeyError as exc:
            raise _fail(str(exc.args[0])) from None
        try:
            res = detect_site(ws, site, s, u, workers, scheduler)
        except WaterMaskError as exc:  # the site's water polygon file is unusable: no look would be right
            raise _fail(str(exc)) from None
        console.print(f"{site}: {getattr(res, 'scenes', '?')} scenes, {getattr(res, 'looks', '?')} looks, "
                      f"{getattr(res, 'sightings', '?')} sightings stored")
        errors = getattr(res, "errors", []) or []
        for path, message in getattr(res, "failures", []) or []:
            text = message if message.startswith(path) else f"{path}: {message}"  # the file named once
            console.print(f"[{'red' if (path, message) in errors else 'yellow'}]"
                          f"{'failed' if (path, message) in errors else 'unusable'}:[/] {escape(text)}")
        if errors:  # a scene that could not be read (as `scenes add` and `ais ingest`); a cloudy one is no error
            raise typer.Exit(1)

    @detect.command("sar")
    def detect_sar_cmd(
        image: Path = typer.Argument(..., help="SAR GeoTIFF (amplitude/intensity) or a plain 8-bit image"),
        out: Path = typer.Option(..., "-o", "--out", help="output GeoJSON"),
        pixel_size: float = typer.Option(None, "--pixel-size", help="ground pixel size in metres (needed without georeference)"),
        chips: Path = typer.Option(None, "--chips", help="folder for PNG chips around each ship"),
        model: Path = typer.Option(None, "--model", help="your own ONNX detector instead of the CFAR"),
        band_index: int = typer.Option(None, "--band", min=1,
                                       help="band to search (1-based) in a file of several; by default the one band, "
                                            "or the co-polarised band (VV or HH) its band descriptions name"),
        water: str = typer.Option("auto", "--water",
                                  help="auto (derive from the image), none, or a one-band raster or grey image of the same size "
                                       "(non-zero, non-black = water)"),
        global_mask: bool = typer.Option(False, "--global-mask",
                                         help="keep the search within 3 km of the sea of the packaged 1 km global mask "
                                              "(optional extra routewatch\\[globalmask]): drops dark inland areas of a "
                                              "whole scene that the derived mask takes for water"),
        values: str = typer.Option("amplitude", "--values",
                                   help="amplitude (a GRD's digital numbers, a rendering) or intensity (power: "
                                        "sigma0, gamma0 products)"),
        azimuth: str = typer.Option("auto", "--azimuth",
                                    help="the image axis along track, to mark Sentinel-1 IW azimuth ambiguities "
                                         "(ghosts 4.2-6.2 km along track of a return 15 dB brighter): rows, cols, "
                                         "none, or auto (rows for a Sentinel-1 IW GRD located by ground control "
                                         "points, else none)"),
    ) -> None:
        """Find ships in a SAR image with the CFAR detector (or your own ONNX model), inside a water mask.

        Example: routewatch detect sar S1A_rajin_VV.tif -o det.geojson
                 routewatch detect sar chip.jpg --pixel-size 10 -o det.geojson
                 routewatch detect sar S1A_rajin_VV.tif --water harbour_water.tif -o det.geojson
        """
        from routewatch.detect.ambiguity import sentinel1_mode
        from routewatch.detect.base import add_chips
        from routewatch.detect.sar import SAR_VALUES, detect_sar, to_single_band

        if values not in SAR_VALUES:
            raise _fail(f"--values must be one of {', '.join(SAR_VALUES)}, got {values!r}")
        if azimuth not in ("auto", "rows", "cols", "none"):
            raise _fail(f"--azimuth must be auto, rows, cols or none, got {azimuth!r}")
        arr, transform, crs, valid = _read_image(image, with_valid=not model,
                                                 index=band_index or _sar_band(image))
        if valid is None and np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            valid = np.isfinite(arr)  # NaN fill without a no-data tag: no data all the same
        # a Sentinel-1 GRD: located by its ground control points, in its own geometry; an affine transform the
        # file also advertises (a VRT can carry both) is not trusted (it had placed ships 5-11 km off)
        grid = _gcp_grid(image) if image.suffix.lower() not in _RENDERINGS else None
        if grid is not None:
            transform, crs = None, None
        px = _pixel_size(image, arr.shape[:2], transform, crs, pixel_size, grid)  # a given size is checked too
        if global_mask:
            _check_near_sea(image, water, model, transform, crs, grid)
        band = to_single_band(arr)
        _check_information(image, {"sar": band}, valid)
        if model:
            dets, method = _user_model(model, band, px), "not used (own model)"
        else:
            mask, method = _sar_water(image, band, valid, water, px, transform, crs, values)
            if global_mask:
                mask, method = _near_sea(mask, method, band.shape, transform, crs, grid)
            try:
                # --water none: the mask is the file's no-data only, which says nothing of open sea (no censoring)
                dets = detect_sar(band, pixel_size_m=px, water=mask, values=values, censor=water != "none")
            except ValueError as exc:
                raise _fail(f"{image}: {exc}") from None
        # auto: a Sentinel-1 IW GRD in its own geometry (located by its GCPs, named as ESA names it); the IW
        # geometry is no other sensor's or mode's
        along = azimuth
        if azimuth == "auto":
            along = "rows" if grid is not None and sentinel1_mode(str(image)) == "IW" else "none"
        unchecked: list[int] = []
        if along != "none" and dets:
            dets = _mark_ambiguities(dets, band, values, along, grid, transform, crs, px, unchecked, valid)
        dets = add_chips(dets, band, pixel_size_m=px)
        _write(dets, out, {"image": str(image), "width": band.shape[1], "height": band.shape[0], "pixel_size_m": px,
                           "detector": str(model) if model else "sar-cfar", "water": method,
                           "georeferenced": transform is not None or grid is not None,
                           "azimuth_ambiguities": (f"checked along {along} (Sentinel-1 IW geometry)"
                                                   + (f"; {len(unchecked)} detections not checked (the image ends, "
                                                      "or holds no data, within the search distance)"
                                                      if unchecked else "")
                                                   if along != "none" else "not checked"),
                           **({"geolocation": "gcps"} if grid is not None else {})}, transform, crs, chips, grid)
        ghosts = sum(1 for d in dets if d.ambiguity)
        if ghosts:
            console.print(f"[yellow]{ghosts} of them taken for azimuth ambiguities (ghosts of a return at least 15 dB "
                          "brighter 4.2-6.2 km along track): kept in the file with an `ambiguity` property; `fuse` "
                          "leaves them out[/yellow]")
        if unchecked:
            console.print(f"[yellow]{len(unchecked)} detections not checked for azimuth ambiguities: the image ends, "
                          "or holds no data, within 6.2 km of them along track on one side at least[/yellow]")
        if azimuth == "auto" and along == "none" and grid is not None:
            console.print("azimuth ambiguities not checked: the file is not named as a Sentinel-1 IW product "
                          "(--azimuth rows checks it with the Sentinel-1 IW geometry)")

    @detect.command("optical")
    def detect_optical_cmd(
        band: list[str] = typer.Option(..., "--band", help="NAME=FILE for blue, green, red, nir; NAME=FILE:N for "
                                                            "band N (1-based) of a file of several bands"),
        out: Path = typer.Option(..., "-o", "--out", help="output GeoJSON"),
        pixel_size: float = typer.Option(None, "--pixel-size", help="ground pixel size in metres (needed without georeference)"),
        chips: Path = typer.Option(None, "--chips", help="folder for PNG chips around each ship"),
        model: Path = typer.Option(None, "--model", help="your own ONNX detector instead of the packaged one"),
    ) -> None:
        """Find ships in co-registered optical bands with the packaged network (or your own ONNX model).

        Example: routewatch detect optical --band blue=B02.tiff --band green=B03.tiff --band red=B04.tiff --band nir=B08.tiff -o det.geojson
        """
        from routewatch.detect.base import add_chips
        from routewatch.detect.optical import BAND_ORDER, detect_optical, missing_nir_warning, without_nodata

        bands: dict[str, np.ndarray] = {}
        valid_all: np.ndarray | None = None  # a pixel is data when every band says so
        transform = crs = None
        first: Path | None = None
        read_from: dict[tuple[str, int], str] = {}  # (file, band index) -> the name it was given
        for spec in band:
            name, sep, file = spec.partition("=")
            if not sep or name not in BAND_ORDER:
                raise _fail(f"--band {spec!r}: expected NAME=FILE[:N] with NAME one of {', '.join(BAND_ORDER)}")
            if name in bands:
                raise _fail(f"--band {spec!r}: band {name} given twice; give each band once")
            head, colon, tail = file.rpartition(":")
            number = int(tail) if colon and tail.isascii() and tail.isdigit() else None
            if number == 0 and not Path(file).is_file():
                raise _fail(f"--band {spec!r}: bands are numbered from 1 (FILE:1 is the first)")
            index = number if number is not None and number >= 1 else None
            file = head if index is not None else file
            source = (str(Path(file).resolve()), index or 1)
            if source in read_from:  # one band under two names (blue=f.tif:1 green=f.tif:1): a typo, not a scene
                raise _fail(f"--band {spec!r}: that band is already given as {read_from[source]}")
            read_from[source] = name
            arr, tr, cr, valid = _read_image(Path(file), with_valid=True, index=index)
            if bands and arr.shape != next(iter(bands.values())).shape:
                raise _fail(f"{file}: size {arr.shape} differs from {first} {next(iter(bands.values())).shape}")
            if first is not None:
                _check_same_grid(Path(file), tr, cr, first, transform, crs)
            _check_information(Path(file), {name: arr}, valid)
            bands[name] = arr
            if valid is not None:
                valid_all = valid if valid_all is None else valid_all & valid
            if first is None:
                first, transform, crs = Path(file), tr, cr
        assert first is not None
        px = _pixel_size(first, next(iter(bands.values())).shape, transform, crs, pixel_size)
        if not model and (warning := missing_nir_warning(bands, px)):
            console.print(f"[yellow]warning:[/yellow] {warning}; give --band nir=FILE")
        # no-data as the site pipeline reads it: zeros, left out of the normalisation and the NDWI
        data = without_nodata(bands, valid_all)
        try:
            dets = _user_model(model, data, px) if model else detect_optical(data, pixel_size_m=px)
        except ValueError as exc:
            raise _fail(str(exc)) from exc
        rgb = np.stack([data[b] for b in ("red", "green", "blue")], axis=-1).astype(np.float32)
        dets = add_chips(dets, rgb, pixel_size_m=px)
        _write(dets, out, {"image": str(first), "width": rgb.shape[1], "height": rgb.shape[0], "pixel_size_m": px,
                           "detector": str(model) if model else "optical-unet",
                           "bands": [b for b in BAND_ORDER if b in bands],
                           "georeferenced": transform is not None}, transform, crs, chips)

    @evaluate.command("detections")
    def evaluate_detections_cmd(
        detections: Path = typer.Argument(..., help="GeoJSON written by `routewatch detect`"),
        truth: Path = typer.Option(..., "--truth", help="COCO JSON or Pascal VOC XML in pixel coordinates"),
        pixel_size: float = typer.Option(None, "--pixel-size", help="ground pixel size in metres (default: from the GeoJSON)"),
        max_px: float = typer.Option(20.0, "--max-px", help="hit radius in pixels when no ground scale is known"),
        water: Path = typer.Option(None, "--water", help="water mask raster (non-zero = water) for the near-shore F1"),
    ) -> None:
        """Precision, recall, F1 (xView3 rule: Hungarian matching, hit within 200 m) and length error.

        Example: routewatch evaluate detections det.geojson --truth annotations_coco.json --water water.tif
        """
        from routewatch.detect.base import read_geojson
        from routewatch.detect.evaluate import (
            distance_to_shore_px,
            load_truth,
            same_image_name,
            score,
            truth_image_name,
            truth_image_size,
        )

        try:
            dets, meta = read_geojson(json.loads(detections.read_text()), str(detections))
        except (OSError, ValueError) as exc:
            raise _fail(f"{detections}: {exc}") from exc
        px = pixel_size or meta.get("pixel_size_m")
        try:
            tru = load_truth(truth, px)
            size = truth_image_size(truth)
        except ValueError as exc:
            raise _fail(str(exc)) from exc
        made_on = (meta.get("width"), meta.get("height"))
        if size is not None and None not in made_on and tuple(made_on) != size:
            raise _fail(f"{detections} was made on a {made_on[0]} x {made_on[1]} px image ({meta.get('image')}) but "
                        f"{truth} labels a {size[0]} x {size[1]} px image: not the same image")
        labelled = truth_image_name(truth)
        if labelled and meta.get("image") and not same_image_name(labelled, str(meta["image"]), truth):
            console.print(f"[yellow]warning:[/yellow] {truth} labels an image named {labelled!r}, but {detections} "
                          f"was made on {Path(str(meta['image'])).name!r}: if they are different images (of the same "
                          "size), these scores mean nothing")
        shore = None
        if water is not None:
            mask, _, _ = read_image(water)
            image_size = (meta.get("width"), meta.get("height")) if None not in made_on else size
            if image_size is not None and (mask.shape[1], mask.shape[0]) != tuple(image_size):
                raise _fail(f"{water} is a {mask.shape[1]} x {mask.shape[0]} px mask but the image is "
                            f"{image_size[0]} x {image_size[1]} px: a water mask must be of the image's pixels")
            shore = distance_to_shore_px(mask > 0)
        s = score(dets, tru, pixel_size_m=px, max_px=max_px, shore_distance_px=shore)
        t = Table(title=f"{detections.name} against {truth.name}")
        t.add_column("measure")
        t.add_column("value", justify="right")
        radius = "200 m" if px else f"{max_px:g} px (no ground scale)"
        rows = [("truth ships", str(s.tp + s.fn)), ("detections", str(s.tp + s.fp)), ("hit radius", radius),
                ("true positives", str(s.tp)),
                # undefined without detections (or without truth ships), not 0
                ("precision", f"{s.precision:.3f}" if s.tp + s.fp else "n/a (no detections)"),
                ("recall", f"{s.recall:.3f}" if s.tp + s.fn else "n/a (no truth ships)"),
                ("F1", f"{s.f1:.3f}"),
                ("F1 near shore (<= 2 km)", f"{s.f1_near_shore:.3f}" if s.f1_near_shore is not None else "n/a (no water mask or nothing near shore)"),
                ("length MAE", f"{s.length_mae_m:.1f} m" if s.length_mae_m is not None else
                 "n/a (no ship matched)" if s.tp == 0 else "n/a (truth has no lengths)")]
        for r in rows:
            t.add_row(*r)
        Console().print(t)
