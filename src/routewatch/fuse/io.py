"""Fusion input and output files: detections GeoJSON in, labelled GeoJSON or CSV out.

A detections GeoJSON has Point features in WGS84 with properties ``length_m``, ``width_m``, ``heading_deg``,
``score`` (and ``row``/``col`` of the image, kept as they are), plus the image time in ``time`` (ISO 8601, UTC)
unless the caller gives it. A feature without a point or a time is an error that names the feature.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import polars as pl

from routewatch.model import Sighting, SourceKind, ensure_utc, stable_id

DET_SCHEMA = {"id": pl.String, "time": pl.Datetime("us", "UTC"), "lon": pl.Float64, "lat": pl.Float64,
              "length_m": pl.Float64, "width_m": pl.Float64, "heading_deg": pl.Float64, "score": pl.Float64,
              "site": pl.String}


def read_detections_geojson(path: Path, time: datetime | None = None, site: str | None = None) -> pl.DataFrame:
    data = json.loads(Path(path).read_text())
    rows = []
    for i, f in enumerate(data.get("features", [])):
        props = f.get("properties") or {}
        geom = f.get("geometry") or {}
        if geom.get("type") != "Point":
            raise ValueError(f"{path}: feature {i}: geometry must be a WGS84 Point, got {geom.get('type')!r}")
        when = time or (datetime.fromisoformat(props["time"].replace("Z", "+00:00")) if props.get("time") else None)
        if when is None:
            raise ValueError(f"{path}: feature {i}: no 'time' property; give the image time (--time)")
        lon, lat = geom["coordinates"][:2]
        rows.append({"id": str(props.get("id") or stable_id("det", Path(path).name, i, lon, lat)),
                     "time": ensure_utc(when), "lon": float(lon), "lat": float(lat),
                     **{k: (None if props.get(k) is None else float(props[k]))
                        for k in ("length_m", "width_m", "heading_deg", "score")},
                     "site": props.get("site") or site})
    return pl.DataFrame(rows, schema=DET_SCHEMA)


def detections_from_sightings(sightings: Iterable[Sighting]) -> pl.DataFrame:
    rows = [{"id": s.id, "time": s.time, "lon": s.lon, "lat": s.lat, "length_m": s.length_m, "width_m": s.width_m,
             "heading_deg": s.heading_deg, "score": s.score, "site": s.site, "evidence_ids": list(s.evidence_ids)}
            for s in sightings if s.source_kind == SourceKind.IMAGE and s.lon is not None and s.lat is not None]
    return pl.DataFrame(rows, schema={**DET_SCHEMA, "evidence_ids": pl.List(pl.String)})


def write_result(result: pl.DataFrame, path: Path) -> Path:
    """GeoJSON when the name ends in .geojson or .json, CSV otherwise; written whole, then renamed."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    flat = result.drop([c for c in ("evidence_ids",) if c in result.columns])
    if path.suffix.lower() in (".geojson", ".json"):
        feats = []
        for r in flat.iter_rows(named=True):
            props = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items() if k not in ("lon", "lat")}
            props["probabilities"] = json.loads(props["probabilities"] or "{}")
            feats.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
                          "properties": props})
        tmp.write_text(json.dumps({"type": "FeatureCollection", "features": feats}, indent=1))
    else:
        flat.write_csv(tmp)
    tmp.replace(path)
    return path
