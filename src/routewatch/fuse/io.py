"""Fusion input and output files: detections GeoJSON in, labelled GeoJSON or CSV out.

A detections GeoJSON has Point features in WGS84 with properties ``length_m``, ``width_m``, ``heading_deg``,
``score`` (and ``row``/``col`` of the image, kept as they are), plus the image time in ``time`` (ISO 8601, UTC)
unless the caller gives it. A feature without a point or a time, or with coordinates outside lon [-180, 180] /
lat [-90, 90], is an error that names the feature; so is a file written from an image without georeference
(``"routewatch": {"georeferenced": false}``: its points are pixel columns and rows, not lon/lat).

Fusion's own output (sightings ``fused-...`` with a ``fusion-...`` evidence) is not fused as detections: read
from the store it is left out, and an export's copy is read as the detection it names (``original_id``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from routewatch.analysis.port_visits import SiteIndex
from routewatch.model import Sighting, Site, SourceKind, ensure_utc, stable_id

FUSED_PREFIX = "fused"  # stable_id prefix of the sightings fusion writes
FUSION_EVIDENCE_PREFIX = "fusion"  # stable_id prefix of their evidence

DET_SCHEMA = {"id": pl.String, "time": pl.Datetime("us", "UTC"), "lon": pl.Float64, "lat": pl.Float64,
              "length_m": pl.Float64, "width_m": pl.Float64, "heading_deg": pl.Float64, "score": pl.Float64,
              "site": pl.String}


def _lonlat(path: Path, i: int, geom: dict) -> tuple[float, float]:
    coords = geom.get("coordinates")
    try:
        lon, lat = float(coords[0]), float(coords[1])  # type: ignore[index]
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"{path}: feature {i}: Point coordinates must be [lon, lat], got {coords!r}") from None
    if not (math.isfinite(lon) and math.isfinite(lat) and -180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise ValueError(f"{path}: feature {i}: coordinates [{lon:g}, {lat:g}] are outside lon [-180, 180] / "
                         "lat [-90, 90]: fusion needs WGS84 lon/lat")
    return lon, lat


def _evidence_list(value: Any) -> list[str]:
    """Evidence ids as a GeoJSON writes them: a list, or one comma-separated string (as ``export`` writes them)."""
    items = value.split(",") if isinstance(value, str) else value or []
    return [str(e).strip() for e in items if str(e).strip()]


def _feature_time(path: Path, i: int, written: Any, given: datetime | None,
                  date_only: bool = False, given_has_time: bool = True) -> tuple[datetime | None, bool]:
    """(time, whether it is a date alone). A feature's own time wins; ``given`` (``fuse --time``) is for features
    without one, or with a date alone: written so, or marked ``date_only`` (an export writes such a detection's
    time as 00:00). An image time to the day cannot be matched to AIS, which moves by kilometres in hours, so a
    date alone without ``given`` is returned as such, for the caller to leave out; so is one given a date alone
    (``given_has_time`` False: ``--time 2023-10-21``), which says no more than the feature."""
    from routewatch.sources.imagery.local import has_time_of_day

    if written in (None, ""):
        return given, given is not None and not given_has_time
    text = str(written).strip()
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{path}: feature {i}: 'time' {text!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:  # the format's times are UTC
        when = when.replace(tzinfo=UTC)
    if date_only or not has_time_of_day(text):  # a date alone: the time given says when in the day
        if given is None:
            return when, True
        if ensure_utc(given).date() != ensure_utc(when).date():
            raise ValueError(f"{path}: feature {i}: its date {text[:10]} is not that of --time {given.isoformat()}")
        return given, not given_has_time
    return when, False


def read_detections_geojson(path: Path, time: datetime | None = None, site: str | None = None,
                            left_out: list[str] | None = None, dateless: list[str] | None = None,
                            time_has_clock: bool = True, ghosts: list[str] | None = None) -> pl.DataFrame:
    """Image detections of a GeoJSON (``detect``'s, an ``export``'s detections layer, or the user's own).

    A feature fusion wrote (id ``fused-...``) is read as the detection it labels when it names it
    (``original_id``, as ``export`` writes it) and that detection is not in the file too; otherwise it is left
    out, its id added to ``left_out``: fused as well, a ship would be matched a second time, as another ship.
    A feature dated to the day alone is left out without ``time`` (``--time``) or with a ``time`` that is a date
    alone too (``time_has_clock`` False), its id (or index) added to ``dateless``. A feature ``detect sar`` took
    for an azimuth ambiguity (an ``ambiguity`` property: a ghost of a brighter return along track, no ship) is
    left out, its id (or index) added to ``ghosts``."""
    from routewatch.sources.imagery.local import has_time_of_day

    data = json.loads(Path(path).read_text())
    meta = data.get("routewatch") if isinstance(data, dict) else None
    if isinstance(meta, dict) and meta.get("georeferenced") is False:
        raise ValueError(f"{path}: the detections were made on an image without georeference (their points are "
                         "pixel columns and rows); fusion needs lon/lat from a georeferenced image")
    rows = []
    meta = meta if isinstance(meta, dict) else {}
    listed = {str((f.get("properties") or {}).get("id")) for f in data.get("features", []) if isinstance(f, dict)}
    for i, f in enumerate(data.get("features", [])):
        props = dict(f.get("properties") or {})
        if meta.get("simulated") and props.get("simulated") is None:  # `detect` marks the file of a simulated image
            props["simulated"] = True
        geom = f.get("geometry") or {}
        if props.get("layer") not in (None, "detections"):
            continue  # an `export` GeoJSON: its sites and trips are not detections
        if props.get("ambiguity"):
            if ghosts is not None:
                ghosts.append(str(props.get("id", i)))
            continue
        if is_fused_id(props.get("id") or ""):  # fusion's labelled copy of a detection
            if not props.get("original_id") or str(props["original_id"]) in listed:
                if left_out is not None:  # its detection is beside it, or unknown: not fused a second time
                    left_out.append(str(props["id"]))
                continue
            # an export lists the copy alone, naming its detection: fused again as that detection, without the
            # earlier fusion's own evidence
            props["id"] = str(props["original_id"])
            props["evidence_ids"] = [e for e in _evidence_list(props.get("evidence_ids"))
                                     if not e.startswith(f"{FUSION_EVIDENCE_PREFIX}-")]
        if geom.get("type") != "Point":
            raise ValueError(f"{path}: feature {i}: geometry must be a WGS84 Point, got {geom.get('type')!r}")
        lon, lat = _lonlat(path, i, geom)
        when, day_only = _feature_time(path, i, props.get("time"), time,
                                       str(props.get("date_only")).strip().lower() in ("true", "1", "yes"),
                                       time_has_clock)
        if day_only:
            if dateless is not None:
                dateless.append(str(props.get("id", i)))
            continue
        if when is None:
            raise ValueError(f"{path}: feature {i}: no 'time' property; give the image time (--time)")
        given = props.get("id")
        if given is None or isinstance(given, int | float) or str(given).isdigit():
            # no id, or the index of the feature in its file (detect writes 0, 1, ...): two images' files share
            # those, so the image time and the point make it an id (the same detection keeps it in any file).
            # A time the command gave (--time, for a feature without one or with a date alone) is the user's
            # claim, not the detection's: the file (its full path) stands for it, so that fusing it again with a
            # corrected --time replaces the earlier labels (they had stayed beside the new ones, a 9 h visit and
            # doubled confidences made of one image)
            written = props.get("time")
            own = written not in (None, "") and has_time_of_day(str(written).strip()) and \
                str(props.get("date_only")).strip().lower() not in ("true", "1", "yes")
            given = stable_id("det", ensure_utc(when), lon, lat, given) if own else \
                stable_id("det", "time given", str(Path(path).resolve()), lon, lat, given)
        for k in ("length_m", "width_m"):  # a size is a positive number of metres (a negative one had been scored)
            v = props.get(k)
            try:
                ok = v is None or (not isinstance(v, bool) and math.isfinite(float(v)) and float(v) > 0)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"{path}: feature {i}: {k} {v!r} is not a positive number of metres")
        rows.append({"id": str(given),
                     "time": ensure_utc(when), "lon": float(lon), "lat": float(lat),
                     **{k: (None if props.get(k) is None else float(props[k]))
                        for k in ("length_m", "width_m", "heading_deg", "score")},
                     "site": props.get("site") or site,
                     # an exported sighting brings its evidence and its simulated mark along
                     "evidence_ids": _evidence_list(props.get("evidence_ids")),
                     # and its look, which a later `detect` of that scene replaces together with its labels
                     "look_id": str(props["look_id"]) if props.get("look_id") else None,
                     "simulated": str(props.get("simulated")).strip().lower() in ("true", "1", "yes")})
    return pl.DataFrame(rows, schema={**DET_SCHEMA, "evidence_ids": pl.List(pl.String), "look_id": pl.String,
                                      "simulated": pl.Boolean})


def fused_id(detection_id: str) -> str:
    """The id of the sighting fusion writes for a detection (see :func:`routewatch.fuse.fused_sightings`)."""
    return stable_id(FUSED_PREFIX, detection_id)


def fused_expr() -> pl.Expr:
    """Rows of a sightings frame that fusion wrote (by id; see :func:`is_fused` for records)."""
    return pl.col("id").str.starts_with(f"{FUSED_PREFIX}-")


def is_fused_id(sighting_id: str) -> bool:
    """An id that fusion wrote (:func:`fused_id`): the labelled copy of a detection."""
    return str(sighting_id).startswith(f"{FUSED_PREFIX}-")


def is_fused(s: Sighting) -> bool:
    """A sighting that fusion wrote (its id, or its evidence, comes from :func:`routewatch.fuse.fused_sightings`)."""
    return is_fused_id(s.id) or any(e.startswith(FUSION_EVIDENCE_PREFIX + "-")
                                                      for e in s.evidence_ids)


def labelled_once(sightings: Iterable[Sighting]) -> tuple[list[Sighting], dict[str, str]]:
    """Sightings with each detection that fusion labelled shown once, as its labelled copy (which carries the
    original's evidence and look), and {copy id: original id} for the originals left out: the records counterpart
    of :func:`routewatch.pipeline.without_fused_originals`, for what a report or an export lists (an export names
    each copy's original, so that ``fuse --detections`` can fuse that detection again)."""
    items = list(sightings)
    copies = {s.id for s in items if is_fused_id(s.id)}
    if not copies:
        return items, {}
    originals = {fused_id(s.id): s.id for s in items if fused_id(s.id) in copies}
    gone = set(originals.values())
    return [s for s in items if s.id not in gone], originals


def detections_from_sightings(sightings: Iterable[Sighting]) -> pl.DataFrame:
    """The image detections among stored sightings; fusion's own earlier output is left out, so a second run
    fuses the same detections again (same ids) instead of fusing its results."""
    rows = [{"id": s.id, "time": s.time, "lon": s.lon, "lat": s.lat, "length_m": s.length_m, "width_m": s.width_m,
             "heading_deg": s.heading_deg, "score": s.score, "site": s.site, "evidence_ids": list(s.evidence_ids),
             "look_id": s.look_id, "simulated": s.simulated}
            for s in sightings if s.source_kind == SourceKind.IMAGE and s.lon is not None and s.lat is not None
            and not is_fused(s)]
    return pl.DataFrame(rows, schema={**DET_SCHEMA, "evidence_ids": pl.List(pl.String), "look_id": pl.String,
                                      "simulated": pl.Boolean})


def assign_sites(det: pl.DataFrame, sites: Mapping[str, Site], max_distance_m: float = 1000.0,
                 corrected: list[str] | None = None) -> pl.DataFrame:
    """Each detection's ``site``: the watched site whose polygon holds it or lies within ``max_distance_m`` of it
    (the nearest; the port-visit entry distance by default), else none. A site the detection names is kept when
    it is a watched site within that distance of the point; any other (a site the watchlist lacks, or a port
    5,000 km away) would make a call there, and with it a route vessel's prior, out of a label: it is replaced by
    the site the point gives, and the detection's id (its row number without one) added to ``corrected``.

    Named sites are checked per site, vectorised, in its local metres; the site index is built only for the
    detections still without a site."""
    from routewatch.fuse.identify import site_distances_m

    if det.height == 0:
        return det
    given = det["site"].to_list() if "site" in det.columns else [None] * det.height
    keys: list[str | None] = list(given)
    lon, lat = det["lon"].to_numpy().astype(np.float64), det["lat"].to_numpy().astype(np.float64)
    named = np.array([g is not None for g in given], bool)
    for name in {g for g in given if g is not None}:
        rows = np.flatnonzero(named & (np.array(given, dtype=object) == name))
        far = rows if name not in sites else \
            rows[site_distances_m(sites[name].geometry, lon[rows], lat[rows]) > max_distance_m]
        for i in far:
            keys[i] = None
    todo = np.flatnonzero(np.array([k is None for k in keys], bool))
    if todo.size and sites:
        index = SiteIndex(sites, max_distance_m)
        idx, dist = index.lookup(lon[todo], lat[todo])
        for i, k, d in zip(todo, idx, dist, strict=True):
            if k >= 0 and d <= max_distance_m:
                keys[int(i)] = index.keys[int(k)]
    if corrected is not None:
        ids = det["id"].to_list() if "id" in det.columns else list(range(det.height))
        corrected.extend(str(i) for i, g, k in zip(ids, given, keys, strict=True) if g is not None and g != k)
    return det.with_columns(pl.Series("site", keys, pl.String))


def write_result(result: pl.DataFrame, path: Path) -> Path:
    """GeoJSON when the name ends in .geojson or .json, CSV otherwise. A regular file (or a new one) is written
    whole beside the target, then renamed over it; an existing target that is not a regular file (``/dev/null``,
    ``/dev/stdout``, a named pipe) is written to directly, never replaced."""
    path = Path(path)
    flat = result.drop([c for c in ("evidence_ids",) if c in result.columns])
    if path.suffix.lower() in (".geojson", ".json"):
        feats = []
        for r in flat.iter_rows(named=True):
            props = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items() if k not in ("lon", "lat")}
            props["probabilities"] = json.loads(props["probabilities"] or "{}")
            feats.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
                          "properties": props})
        text = json.dumps({"type": "FeatureCollection", "features": feats}, indent=1)
    else:
        text = flat.write_csv()
    if path.exists() and not path.is_file():
        with path.open("w") as fh:  # a device or pipe: renaming over it would replace the node itself
            fh.write(text)
        return path
    target = path.resolve() if path.is_symlink() else path  # keep a link to a regular file a link
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(target)
    return path
