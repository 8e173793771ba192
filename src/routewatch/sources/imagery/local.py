"""`routewatch scenes add FOLDER`: the analyst's own GeoTIFFs/COGs (Planet, Maxar, simulated, ...) as scenes.

Any CRS, any band layout. How a folder becomes scenes:

* files in one folder whose names are band names (``B02.tiff``, ``B03.tif``, ``nir.tif``, ``VV.tif``), or end in
  a band code after a common prefix as downloads are named (``T52TGN_20231021T021529_B02_10m.tif``,
  ``casablanca_20230426_B08.tiff``), form one scene per prefix with one file per band (they must have the same
  size and grid); every other GeoTIFF is a scene by itself;
* band names come from ``--bands red,green,blue,nir`` (in file order; Sentinel-2 codes ``B02`` are read as their
  colours; a name given twice, or no name a detector reads, is refused), else from the band descriptions when
  they name a band a detector reads, else by count: 1 band = pan (SAR sensors: the polarisation ``sar``), 3 = red,
  green, blue, 4 = blue, green, red, nir (PlanetScope and Sentinel order);
* the acquisition time comes from acquisition tags (``ACQUISITION_DATETIME``, ``SENSING_TIME``, ...), else a date
  in the file name (``20231021``, ``2023-10-21``, ``20231021T021530``), else a sen2ships-style
  ``annotations_coco.json`` beside the files; ``--time`` is for files that give no time of day this way (a date
  alone, which must be the day of ``--time``, or nothing), so that one ``--time`` given for a folder does not
  re-date the images that say when they were taken; the TIFF ``DateTime`` tag (when the file was written) comes
  last;
* the sensor comes from ``--sensor``, else the ``ROUTEWATCH_SENSOR`` tag, else ``sentinel-2`` for B0x names,
  else ``geotiff`` (whose detection model is derived from the pixel size alone).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from routewatch.model import (
    TIME_OF_DAY_MARK,
    Evidence,
    EvidenceKind,
    Scene,
    ensure_utc,
    latest_observation_time,
    stable_id,
)
from routewatch.sources.imagery.looks import is_sar
from routewatch.sources.imagery.raster import (
    Grid,
    SceneReadError,
    error_text,
    georef_of,
    grid_mismatch,
    grid_of,
)

SUFFIXES = (".tif", ".tiff", ".gtiff")
BAND_ALIASES = {
    "b02": "blue", "b2": "blue", "blue": "blue", "b03": "green", "b3": "green", "green": "green",
    "b04": "red", "b4": "red", "red": "red", "b08": "nir", "b8": "nir", "nir": "nir", "b8a": "nir08",
    "scl": "scl", "vv": "vv", "vh": "vh", "hh": "hh", "hv": "hv", "pan": "pan", "sar": "sar",
    "nir1": "nir", "near-infrared": "nir", "near infrared": "nir", "panchromatic": "pan",
}
# The bands a detector reads (optical: any of the first five; SAR: any polarisation): a scene without one of them
# would only ever make unusable looks
DETECTOR_BANDS = frozenset({"blue", "green", "red", "nir", "pan", "vv", "vh", "hh", "hv", "sar"})
TIME_TAGS = ("ACQUISITION_DATETIME", "ACQUISITION_DATE", "acquired", "datetime", "SENSING_TIME",
             "PRODUCT_START_TIME")
# The TIFF DateTime tag is when the file was written (GIS tools and exports set it): a time of last resort, after
# the file name, or a re-exported image would be dated the day of its export
WRITE_TIME_TAGS = ("TIFFTAG_DATETIME", "DATETIME")
# A band code at the end of a longer name, as downloads name them: T52TGN_20231021T021529_B02_10m.tif,
# casablanca_20230426_B08.tiff, S1A_..._VV.tif (the prefix names the scene)
_BAND_SUFFIX = re.compile(r"^(?P<prefix>.+?)[_.-](?P<band>b0?[2348]a?|b8a|scl|vv|vh|hh|hv)(?:[_.-](?:10|20|60)m)?$",
                          re.IGNORECASE)


def band_of(stem: str) -> tuple[str, str] | None:
    """(scene prefix, band alias) of a band file's name (``B02``, ``nir``, ``..._B02_10m``), or None."""
    if stem.lower() in BAND_ALIASES:
        return "", stem.lower()
    m = _BAND_SUFFIX.match(stem)
    if m and m["band"].lower() in BAND_ALIASES:
        return m["prefix"].lower(), m["band"].lower()
    return None


_NAME_TIME = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})(?:[T_]?(\d{2}):?(\d{2}):?(\d{2}))?(?!\d)")


@dataclass
class AddResult:
    """What ``scenes add`` did: the scenes (with their evidence) and the files it refused, with why."""

    scenes: list[Scene] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    new: int = 0  # scenes not in the store before (the others were added earlier and are only updated)
    moved: list[str] = field(default_factory=list)  # scenes replaced: the same acquisition, their files gone
    redated: list[str] = field(default_factory=list)  # scenes stored before under another time: looks removed

    replaced_by: dict[str, str] = field(default_factory=dict)  # a scene this run stored, then gave way: by what
    added: set[str] = field(default_factory=set)  # the scenes this run stored that were not in the store before

    def merge(self, other: AddResult) -> None:
        """Add another path's result; a scene reached twice (a folder and a file in it) is listed once."""
        seen = {s.id for s in self.scenes}
        for scene, ev in zip(other.scenes, other.evidence, strict=True):
            if scene.id not in seen:
                self.scenes.append(scene)
                self.evidence.append(ev)
                seen.add(scene.id)
        self.failures.extend(f for f in other.failures if f not in self.failures)
        self.new += other.new
        self.added |= other.added
        self.replaced_by.update(other.replaced_by)
        self.moved.extend(other.moved)
        self.redated.extend(other.redated)
        self.drop_replaced()

    def drop_replaced(self) -> None:
        """A scene of this run that a later one of the same acquisition replaced (a quicklook, then its band
        files) is not listed nor counted as added: it is said as a copy, as it is when added again."""
        for scene in [s for s in self.scenes if s.id in self.replaced_by]:
            self.failures.append((scene.uri or scene.id, f"the same acquisition as scene "
                                  f"{self.replaced_by[scene.id]}, which has more bands or holds data; not added "
                                  "twice"))
            if scene.id in self.added:
                self.added.discard(scene.id)
                self.new -= 1
        kept = [(sc, ev) for sc, ev in zip(self.scenes, self.evidence, strict=True) if sc.id not in self.replaced_by]
        self.scenes, self.evidence = [sc for sc, _ in kept], [ev for _, ev in kept]


def parse_time(text: str) -> datetime:
    """Parse an ISO time or a TIFF ``YYYY:MM:DD HH:MM:SS`` time; naive times are taken as UTC."""
    t = text.strip()
    m = re.fullmatch(r"(\d{4}):(\d{2}):(\d{2}) (\d{2}):(\d{2}):(\d{2})", t)
    if m:
        return datetime(*map(int, m.groups()), tzinfo=UTC)
    value = datetime.fromisoformat(t.replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else ensure_utc(value)


def has_time_of_day(text: str) -> bool:
    """Whether a written time gives the time of day, not a date alone (``2023-06-11``)."""
    return re.search(TIME_OF_DAY_MARK, text.strip()) is not None  # 2023-10-21T10Z has one; 2023-10-21Z is a date


def time_from_files(files: list[Path], tags: dict[str, str], write_time: bool = True) -> tuple[datetime, bool] | None:
    """The acquisition time from the acquisition tags, a file name, ``annotations_coco.json`` or, last, the TIFF
    DateTime tag, and whether it has a time of day (a date alone is stored as 00:00 UTC and marked so: AIS cannot
    be matched to it)."""
    found = _time_from_tags(tags, TIME_TAGS)
    if found is not None:
        return found
    for f in files:
        m = _NAME_TIME.search(f.stem)
        if m and 1990 < int(m.group(1)) < 2100 and 1 <= int(m.group(2)) <= 12:
            parts = [int(g) if g else 0 for g in m.groups()]
            try:
                return datetime(*parts, tzinfo=UTC), m.group(4) is not None  # type: ignore[misc]
            except ValueError:
                continue
    coco = files[0].parent / "annotations_coco.json"
    if coco.exists():
        try:
            info = json.loads(coco.read_text()).get("info", {})
            if info.get("acquisition_date"):
                text = str(info["acquisition_date"])
                return parse_time(text), has_time_of_day(text)
        except (ValueError, OSError):
            pass
    return _time_from_tags(tags, WRITE_TIME_TAGS) if write_time else None


def _time_from_tags(tags: dict[str, str], keys: tuple[str, ...]) -> tuple[datetime, bool] | None:
    for key in keys:
        if tags.get(key):
            try:
                return parse_time(tags[key]), has_time_of_day(tags[key])
            except ValueError:
                continue
    return None


def group_files(folder: Path) -> list[list[Path]]:
    """Scenes in a folder tree: band-named files of one directory together, any other GeoTIFF alone. A file given
    itself is its scene; a band file brings the other bands of its scene (same folder and name prefix)."""
    if folder.is_file():
        band = band_of(folder.stem)
        if band is None or folder.suffix.lower() not in SUFFIXES:  # a file named: that file (refused if unread)
            return [[folder]]
        return [[p for p in sorted(folder.parent.iterdir()) if p.is_file() and p.suffix.lower() in SUFFIXES
                  and not p.name.startswith(".") and (b := band_of(p.stem)) is not None and b[0] == band[0]]]
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                   and not p.name.startswith("."))
    by_dir: dict[tuple[Path, str], list[Path]] = {}
    groups: list[list[Path]] = []
    for f in files:
        band = band_of(f.stem)
        if band is not None:
            by_dir.setdefault((f.parent, band[0]), []).append(f)
        else:
            groups.append([f])
    groups.extend(by_dir.values())
    return sorted(groups, key=lambda g: str(g[0]))


def _check_readable(ds: Any, path: Path) -> None:
    """Read the first and last row of every band: a truncated file fails here, not halfway through detection."""
    for i in range(1, ds.count + 1):
        ds.read(i, window=Window(0, 0, ds.width, 1))
        ds.read(i, window=Window(0, ds.height - 1, ds.width, 1))


def _cloud_cover(tag: str | None) -> float | None:
    """The ``CLOUD_COVER`` tag, a percentage as Landsat and Sentinel-2 metadata write it, as a fraction of the
    scene (``Scene.cloud_cover``), or None (unknown) when absent, not a number ('n/a', '') or outside 0-100. It had
    been stored as written (87 for 87 %). A tag of 1 is 1 %: reading small values as fractions would make a clear
    scene's 1 % a fully cloudy one."""
    try:
        value = float(tag) if tag is not None else None
    except ValueError:
        return None
    if value is None or not np.isfinite(value) or not 0 <= value <= 100:
        return None
    return value / 100.0


def _default_names(count: int, sar: bool) -> list[str]:
    if count == 1:
        return ["sar" if sar else "pan"]
    if count == 3:
        return ["red", "green", "blue"]
    if count == 4:
        return ["blue", "green", "red", "nir"]
    if sar:
        return [f"sar{i}" for i in range(1, count + 1)]
    return [f"band{i}" for i in range(1, count + 1)]


def is_alpha(ds: Any, index: int) -> bool:
    """Whether band ``index`` (1-based) of an open file holds a mask's values: 0 and the type's top (255) and little
    else. GDAL tags the fourth of four byte bands as alpha by default, also when a user's export holds blue,
    green, red and near-infrared there: such a band is data, and its zeros no mask."""
    from rasterio.enums import Resampling

    scale = max(1, int(np.ceil(max(ds.height, ds.width) / 512)))
    sample = ds.read(index, out_shape=(max(1, ds.height // scale), max(1, ds.width // scale)),
                     resampling=Resampling.nearest)
    top = np.iinfo(sample.dtype).max if np.issubdtype(sample.dtype, np.integer) else 1.0
    return float(np.mean((sample != 0) & (sample != top))) <= 0.01


def _names_by_colour(colours: Any, sar: bool, tags_hold: bool = True) -> list[str | None]:
    """Band names of a file whose descriptions name none: by its colour interpretation when it says red, green and
    blue (an RGBA export: red and blue had been swapped and its alpha read as the near-infrared, a clean look
    with no ship), else by the count of its bands (``_default_names``); an alpha band gets None (it is the mask).
    ``tags_hold=False`` (a band tagged alpha whose values are no mask's, see ``is_alpha``): the tags are not to
    be trusted, and the file is named by its count."""
    from rasterio.enums import ColorInterp

    colours = list(colours)
    if not tags_hold:
        return list(_default_names(len(colours), sar))
    data = [i for i, c in enumerate(colours) if c != ColorInterp.alpha]
    rgb = {ColorInterp.red, ColorInterp.green, ColorInterp.blue}
    names: list[str | None] = [None] * len(colours)
    if not sar and rgb <= set(colours):
        rest = [i for i in data if colours[i] not in rgb]
        for i in data:
            names[i] = colours[i].name if colours[i] in rgb else ("nir" if len(rest) == 1 else f"band{i + 1}")
        return names
    for i, n in zip(data, _default_names(len(data), sar), strict=True):
        names[i] = n
    return names


def scene_from_files(files: list[Path], *, bands: list[str] | None = None, when: datetime | None = None,
                     when_has_time: bool = True,
                     sensor: str | None = None, sar_values: str | None = None) -> tuple[Scene, Evidence]:
    """Check one scene's files and describe them as a Scene (+ its scene Evidence). Errors name the file."""
    refs: dict[str, dict[str, Any]] = {}
    alpha: dict[str, Any] | None = None  # the file's alpha band: its mask
    tags: dict[str, str] = {}
    shape0: tuple[int, int] | None = None
    grid0: Grid | None = None
    georef = None
    first = files[0]
    for f in files:
        code = (band_of(f.stem) or ("", f.stem.lower()))[1]  # b02, scl, vv ... (a band file of a group)
        try:
            with rasterio.open(f) as ds:
                g = georef_of(ds, str(f))
                tags = {**ds.tags(), **tags}
                if shape0 is None:
                    shape0, grid0, georef, first = (ds.height, ds.width), grid_of(ds), g, f
                elif (ds.height, ds.width) != shape0 and len(files) > 1 and BAND_ALIASES.get(code) == "nir08":
                    continue  # B8A at 20 m beside the 10 m bands: not used by the detectors, left out
                elif (ds.height, ds.width) != shape0 and code != "scl":
                    raise SceneReadError(f"{f}: {ds.width} x {ds.height} px but {first.name} is {shape0[1]} x "
                                         f"{shape0[0]} px; band files of one scene must have the same size")
                elif grid0 is not None and (why := grid_mismatch(ds, grid0, first.name,
                                                                 resampled=(ds.height, ds.width) != shape0)):
                    raise SceneReadError(f"{f}: does not line up with {first.name}: {why}; band files of one "
                                         f"scene must share one grid")
                _check_readable(ds, f)
                sensor_hint = sensor or tags.get("ROUTEWATCH_SENSOR") or ""
                if len(files) > 1:
                    name = BAND_ALIASES[code]
                    if name in refs:  # B08.tif and nir.tif in one folder: which is the band? (the last had won)
                        raise SceneReadError(f"{f}: band {name} twice in one scene ({Path(refs[name]['path']).name} "
                                             f"and {f.name}); keep one of them in the folder")
                    refs[name] = {"path": str(f.resolve()), "index": 1}
                    continue
                descs = [(d or "").strip().lower() for d in ds.descriptions]
                from rasterio.enums import ColorInterp

                tagged = [i for i, c in enumerate(ds.colorinterp, start=1) if c == ColorInterp.alpha]
                # each such band read once (a decimated sample); --bands names every band as data
                masks = set() if bands else {i for i in tagged if is_alpha(ds, i)}
                if bands:
                    if len(bands) != ds.count:
                        raise SceneReadError(f"{f}: --bands names {len(bands)} bands but the file has {ds.count}")
                    names = [BAND_ALIASES.get(b.strip().lower(), b.strip().lower()) for b in bands]  # B02 = blue
                    twice = sorted({n for n in names if names.count(n) > 1})
                    if twice:
                        raise SceneReadError(f"{f}: --bands names {', '.join(twice)} twice ({','.join(bands)}): "
                                             "each band of the file needs its own name")
                    if not DETECTOR_BANDS & set(names):
                        raise SceneReadError(f"{f}: --bands {','.join(bands)} names no band a detector reads "
                                             f"({', '.join(sorted(DETECTOR_BANDS))}; B02-B04, B08 also)")
                elif all(descs) and len(named := {BAND_ALIASES.get(d, d) for d in descs}) == len(descs) \
                        and DETECTOR_BANDS & named:  # descriptions that name bands ("Band 1" does not; nor
                    names = [BAND_ALIASES.get(d, d) for d in descs]  # "b8, nir": one band twice)
                else:
                    names = _names_by_colour(ds.colorinterp, is_sar(sensor_hint), len(masks) == len(tagged))
                for i, n in enumerate(names, start=1):
                    # an alpha band is the mask (read with the bands), not a band of data, unless --bands names it
                    if n is not None and (bands or i not in masks):
                        refs[n] = {"path": str(f.resolve()), "index": i}
                    elif i in masks:
                        alpha = {"path": str(f.resolve()), "index": i}
        except SceneReadError:
            raise
        except (RasterioError, OSError) as exc:
            raise SceneReadError(f"{f}: not a readable GeoTIFF (corrupt or truncated?): {error_text(exc)}") from exc
    assert georef is not None
    found = time_from_files(files, tags, write_time=False)
    source = "files" if found is not None else None
    if when is not None and (found is None or not found[1]):  # --time: for files without a time of day
        if found is not None and found[0].date() != ensure_utc(when).date():
            raise SceneReadError(f"{first}: the files date it {found[0]:%Y-%m-%d} (no time of day), not the day of "
                                 f"--time {ensure_utc(when):%Y-%m-%d}; add each day's images with its own --time")
        found, source = (ensure_utc(when), when_has_time), "given"
    if found is None:  # the file's write time: nothing better says when
        found, source = _time_from_tags(tags, WRITE_TIME_TAGS), "write time"
    if found is None:
        raise SceneReadError(f"{first}: no acquisition time in tags, file name or annotations; give --time")
    acquired, time_of_day = found
    if acquired > latest_observation_time():  # a look in 2030 would stand in every later judgement
        said, fix = {"files": ("its name or tags date it", "correct the name or the time tag"),
                     "given": ("--time dates it", "check --time"),
                     "write time": ("its write time dates it", "give --time")}[source or "files"]
        raise SceneReadError(f"{first}: {said} {acquired:%Y-%m-%d %H:%M} UTC, in the future: not an acquisition "
                             f"time; {fix}")
    if sensor:
        sensor_name = sensor
    elif tags.get("ROUTEWATCH_SENSOR"):
        sensor_name = tags["ROUTEWATCH_SENSOR"]
    elif len(files) > 1 and any((band_of(f.stem) or ("", ""))[1].startswith("b0") for f in files):
        sensor_name = "sentinel-2"
    else:
        sensor_name = "geotiff"
    simulated = tags.get("ROUTEWATCH_SIMULATED") == "1"
    kind = "sar" if is_sar(sensor_name) or set(refs) & {"vv", "vh", "hh", "hv", "sar"} else "optical"
    attributes: dict[str, Any] = {"kind": kind, "bands": {k: v for k, v in refs.items() if k != "scl"},
                                  "files": [str(f.resolve()) for f in files], "source": "local"}
    if "scl" in refs:
        attributes["scl"] = refs["scl"]
    if alpha is not None:
        attributes["alpha"] = alpha
    if kind == "sar" and sar_values:  # amplitude or intensity, as the user says (else the detector's rule)
        attributes["sar_values"] = sar_values
    # "day": stored as 00:00 UTC, right for the day's coverage, no time to match AIS at; always written, so that a
    # real 00:00:00 UTC time is told from a date alone
    attributes["time_precision"] = "second" if time_of_day else "day"
    attributes["time_source"] = source  # files (tags, name, annotations), given (--time), or write time
    # each file's size and modification time: a file rewritten at the same size keeps the scene's id, not these
    stats = [f.stat() for f in files]
    attributes["stamps"] = [[st.st_size, st.st_mtime_ns] for st in stats]
    if georef.uses_gcps:
        attributes["geolocation"] = "gcps"
    if kind == "sar":  # the Sentinel-1 mode its name states (IW, EW, ...): which ambiguity geometry applies
        from routewatch.detect.ambiguity import sentinel1_mode

        mode = next((m for m in (sentinel1_mode(str(f)) for f in files) if m), None)
        if mode:
            attributes["instrument_mode"] = mode
    cloud = _cloud_cover(tags.get("CLOUD_COVER"))
    key_parts = [f"{f.resolve()}:{st.st_size}" for f, st in zip(files, stats, strict=True)]
    scene_id = stable_id("scene", "local", *key_parts)
    # one file: it; plain band names (B02.tiff): their folder; prefixed band files: the first (the folder may
    # hold several scenes)
    uri = str(first.resolve()) if len(files) == 1 or (band_of(first.stem) or ("", ""))[0] else \
        str(first.parent.resolve())
    scene = Scene(id=scene_id, sensor=sensor_name, acquired=acquired, footprint=georef.footprint(),
                  resolution_m=round(georef.ground_pixel_size_m(), 3),
                  cloud_cover=cloud, uri=uri, collection="local",
                  simulated=simulated, attributes=attributes)
    return scene, scene_evidence(scene)


def scene_evidence(scene: Scene) -> Evidence:
    """The evidence record of a scene added from local files (its file, sensor and time)."""
    label = "simulated scene" if scene.simulated else "scene"
    uri = scene.uri or ""
    return Evidence(id=stable_id("evidence", scene.id), kind=EvidenceKind.SCENE,
                    description=f"{label} {Path(uri).name} ({scene.sensor}, {scene.acquired:%Y-%m-%d %H:%M} UTC)",
                    source="local file", uri=Path(uri).as_uri(), observed_at=scene.acquired,
                    attributes={"scene_id": scene.id, "simulated": scene.simulated})


def scan_folder(folder: str | Path, *, bands: list[str] | None = None, when: datetime | None = None,
                when_has_time: bool = True,
                sensor: str | None = None, sar_values: str | None = None) -> AddResult:
    """Describe every scene in a folder (or the one scene of a file); bad files become failures (file and reason),
    the rest go on."""
    root = Path(folder)
    result = AddResult()
    if not root.is_dir() and not root.is_file():
        raise FileNotFoundError(f"{root}: no such file or folder")
    if root.is_dir():  # a link to nothing has no content to add, but it was meant to be read: said, not skipped
        def unreadable(err: OSError) -> None:  # pathlib's walk passes over a folder it may not list, unsaid
            result.failures.append((str(err.filename), f"{err.filename}: a folder that cannot be read "
                                                       f"({err.strerror or type(err).__name__}): its files are not added"))

        for _ in os.walk(root, onerror=unreadable):
            pass
        for p in sorted(root.rglob("*")):
            if p.is_symlink() and not p.exists() and p.suffix.lower() in SUFFIXES:
                result.failures.append((str(p), f"{p}: a link to nothing (its target {os.readlink(p)} is gone, or "
                                                "the link loops)"))
    for group in group_files(root):
        try:
            with warnings.catch_warnings():  # a file without georeference is refused below, by name, not warned of
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                scene, ev = scene_from_files(group, bands=bands, when=when, when_has_time=when_has_time,
                                             sensor=sensor, sar_values=sar_values)
        except Exception as exc:  # one file's failure, whatever it is, is that file's and is said
            whole = "" if len(group) == 1 else \
                f" (so none of the scene's {len(group)} band files is added: {', '.join(f.name for f in group)})"
            if not isinstance(exc, SceneReadError):  # a georeference that cannot be placed on the Earth (a local
                # CRS, a geostationary disk's corners off the globe, too few GCPs) had ended the whole run
                exc = SceneReadError(f"{group[0]}: cannot be placed on the Earth or read ({type(exc).__name__}: "
                                     f"{error_text(exc) if isinstance(exc, RasterioError) else exc})")
            result.failures.append((str(group[0]), f"{exc}{whole}"))
            continue
        result.scenes.append(scene)
        result.evidence.append(ev)
    return result


def scl_cloud_fraction(path: str, index: int) -> float:
    """Cloud share of a whole scene from its SCL band (for scenes without a provider cloud figure)."""
    from routewatch.sources.imagery.looks import SCL_CLOUDY

    with rasterio.open(path) as ds:
        scl = ds.read(index, out_shape=(min(ds.height, 512), min(ds.width, 512)))
    return float(np.isin(scl, SCL_CLOUDY).mean())
