"""Exports for other tools: GeoJSON, KML/KMZ (Google Earth), GeoPackage (QGIS, via pyogrio) and CSV.

Every layer carries the ids and evidence ids of its records, so a feature picked in QGIS can be walked back to
its sources. Geometries are WGS84 longitude/latitude (EPSG:4326); times are ISO-8601 UTC.
"""

from __future__ import annotations

import csv
import json
import re
import zipfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from shapely.geometry import LineString, Point, mapping

from routewatch.analysis.visits import AIS_DETAIL_MMSI
from routewatch.fuse import IDENTIFIED
from routewatch.fuse.io import is_fused_id
from routewatch.model import Activity, Route, Sighting, Trip, Visit
from routewatch.report.data import ReportData, chip_path
from routewatch.store.convert import activity_id

FORMATS = ("geojson", "kml", "gpkg", "csv")
DEFAULT_MAX_TRANSIT_DAYS = 10.0  # Route.max_transit_days' default, for a trip whose route is not in the store


def _iso(value: Any) -> Any:
    return value.isoformat().replace("+00:00", "Z") if hasattr(value, "isoformat") else value


def _site_point(data: ReportData, key: str | None) -> tuple[float, float] | None:
    site = data.sites.get(key or "")
    return site.centroid_lonlat if site else None


def date_only_sightings(data: ReportData) -> set[str]:
    """Sightings whose time is a date alone: made in a scene that gives no time of day, at that scene's time (a
    fusion copy given a time of day with ``fuse --time`` has one). Exports say so (``date_only``), so that the
    00:00 written for them is not read as a time: `fuse` leaves such detections out, or takes ``--time``."""
    from routewatch.sources.imagery.ingest import date_only

    looks = {lk.id: lk for lk in data.looks}
    out = set()
    for s in data.sightings:
        look = looks.get(s.look_id or "")
        scene = data.scenes.get(look.scene_id) if look is not None and look.scene_id else None
        if scene is not None and date_only(scene) and s.time == scene.acquired:
            out.add(s.id)
    return out


def features(data: ReportData) -> list[tuple[str, Any, dict[str, Any]]]:
    """(layer, shapely geometry, properties) for sites, detections (sightings with a position) and trips."""
    out: list[tuple[str, Any, dict[str, Any]]] = []
    dateless = date_only_sightings(data)
    for s in data.sites.values():
        out.append(("sites", s.geometry, {"id": s.key, "name": s.name, "kind": str(s.kind), "country": s.country or "",
                                         "notes": s.notes}))
    for s in data.sightings:
        if s.lon is None or s.lat is None:
            continue
        out.append(("detections", Point(s.lon, s.lat), {
            "id": s.id, "time": _iso(s.time), "date_only": s.id in dateless, "source_kind": str(s.source_kind),
            "site": s.site or "",
            "vessel": s.vessel or "", "event": s.event, "length_m": s.length_m, "width_m": s.width_m,
            "heading_deg": s.heading_deg, "score": s.score, "confidence": s.confidence,
            "identification_confidence": s.identification_confidence, "fusion": fusion_status(s),
            "original_id": original_id(data, s), "look_id": s.look_id or "",
            "simulated": bool(s.simulated), "evidence_ids": ",".join(s.evidence_ids),
            "mmsi": ais_mmsi(data, s)}))
    visits = {v.id: v for v in data.visits}
    sim_visits = simulated_visits(data)
    for t in data.trips:
        route = data.routes.get(t.route)
        origin_site = visits[t.origin_visit].site if t.origin_visit in visits else (route.origin[0] if route else None)
        a = _site_point(data, origin_site)
        if a is None:
            continue
        dest_site = trip_destination(t, route, visits)
        b = _site_point(data, dest_site)
        props = {
            "id": t.id, "route": t.route, "vessel": t.vessel or "", "depart": _iso(t.depart),
            "arrive": _iso(t.arrive) if t.arrive else None, "kind": t.kind, "confidence": t.confidence,
            "distance_nm": t.distance_nm, "origin": origin_site or "", "destination": dest_site or "",
            "arrival_known": t.arrive is not None, "until": _iso(trip_until(t, route)),
            "simulated": bool({t.origin_visit, t.destination_visit} & sim_visits),
            "evidence_ids": ",".join(t.evidence_ids)}
        # A trip whose arrival (or destination) is unknown is a point at its origin, never a line to a guessed port.
        out.append(("trips", LineString([a, b]) if b is not None else Point(a), props))
    return out


def original_id(data: ReportData, s: Sighting) -> str:
    """The detection a fusion copy labels: its stored original, else the id its fusion evidence records (a
    detection fused from a file is not stored itself); empty for anything else."""
    if not is_fused_id(s.id):
        return ""
    if s.id in data.labelled_from:
        return data.labelled_from[s.id]
    for e in s.evidence_ids:
        ev = data.evidence.get(e)
        if ev is not None and ev.attributes.get("detection"):
            return str(ev.attributes["detection"])
    return ""


def ais_mmsi(data: ReportData, s: Sighting) -> int | None:
    """The MMSI AIS gives a sighting's ship: an AIS visit's, or that of the AIS position fusion matched to an
    identified detection (a watchlist vessel's or another ship's); None for a dark, no-ais or unfused detection.
    Without it an export named a ship off the watchlist only by "identified"."""
    if str(s.source_kind) == "ais" or fusion_status(s) == IDENTIFIED:
        for e in s.evidence_ids:
            ev = data.evidence.get(e)
            if ev is not None and (ev.attributes.get("detection") or str(ev.kind) == "ais") \
                    and ev.attributes.get("mmsi") is not None:
                return int(ev.attributes["mmsi"])
        m = re.match(AIS_DETAIL_MMSI, s.detail or "")
        return int(m.group(1)) if m else None
    return None


def fusion_status(s: Sighting) -> str:
    """What fusion said of a detection: identified (AIS explains it), dark, unresolved or no-ais; empty when not fused. The
    reasons and the AIS message are in its fusion evidence (``evidence_ids``)."""
    if not is_fused_id(s.id) or not s.detail:
        return ""
    return s.detail.split(";", 1)[0].strip()


def trip_destination(trip: Trip, route: Route | None, visits: dict[str, Visit]) -> str | None:
    """The destination site the trip record names: its destination visit's site, or the route's only destination
    when the trip has a known arrival; None when the arrival is unknown (``origin_only``) or the port is not known."""
    if trip.destination_visit in visits:
        return visits[trip.destination_visit].site  # type: ignore[index]
    if trip.kind != "origin_only" and trip.arrive is not None and route is not None and len(route.destination) == 1:
        return route.destination[0]
    return None


def trip_until(trip: Trip, route: Route | None) -> datetime:
    """When a trip stops being shown on a time slider: its arrival, or, when that is unknown, the departure plus
    the route's ``max_transit_days`` (the longest feasible transit; 10 days for an unknown route)."""
    if trip.arrive is not None:
        return trip.arrive
    days = route.max_transit_days if route is not None else DEFAULT_MAX_TRANSIT_DAYS
    return trip.depart + timedelta(days=days)


TRIP_FIELDS = ("id", "route", "vessel", "depart", "arrive", "kind", "confidence", "distance_nm", "origin",
               "destination", "arrival_known", "until", "simulated", "evidence_ids")


def simulated_visits(data: ReportData) -> set[str]:
    """Visits resting on a simulated sighting: a trip from or to one is marked simulated in every export."""
    sim_sightings = {s.id for s in data.sightings if s.simulated}
    return {v.id for v in data.visits if sim_sightings.intersection(v.sighting_ids)}


def write_geojson(data: ReportData, path: Path) -> Path:
    """One FeatureCollection; each feature's ``layer`` property says sites, detections or trips. The evidence the
    features name is a foreign member ``evidence`` (GIS readers pass it by; ``fuse --detections`` reads features)."""
    feats = [{"type": "Feature", "geometry": mapping(g), "properties": {"layer": layer, **props}}
             for layer, g, props in features(data)]
    _atomic_text(path, json.dumps({"type": "FeatureCollection", "features": feats,
                                   "evidence": [{**r, "attributes": json.loads(r["attributes"])}
                                                for r in evidence_rows(data)]}, indent=1))
    return path


GPKG_LAYERS: dict[str, tuple[str, tuple[str, ...]]] = {
    # layer: (geometry type, fields); every layer is written, empty or not, so a GIS project built on the file
    # finds the same layers and columns whatever the store holds
    "sites": ("MultiPolygon", ("id", "name", "kind", "country", "notes")),
    "detections": ("Point", ("id", "time", "source_kind", "site", "vessel", "event", "length_m", "width_m",
                             "heading_deg", "score", "confidence", "identification_confidence", "fusion",
                             "original_id", "look_id", "simulated", "evidence_ids", "date_only", "mmsi")),
    "trips": ("LineString", TRIP_FIELDS),
    "trips_arrival_unknown": ("Point", TRIP_FIELDS),
}
GPKG_FLOATS = {"length_m", "width_m", "heading_deg", "score", "confidence", "identification_confidence",
               "distance_nm"}
GPKG_BOOLS = {"simulated", "date_only", "arrival_known"}  # GeoPackage booleans, so a GIS filter on them works


EVIDENCE_FIELDS = ("id", "kind", "description", "source", "uri", "observed_at", "attributes")


def evidence_rows(data: ReportData) -> list[dict[str, Any]]:
    """The evidence the exported records name (their ``evidence_ids``), one row each, ``attributes`` as JSON: the
    report URL, the scene, the chip and the AIS message lines the ids stand for, inside the export itself."""
    return [{"id": e.id, "kind": str(e.kind), "description": e.description, "source": e.source, "uri": e.uri or "",
             "observed_at": _iso(e.observed_at) or "",
             "attributes": json.dumps(e.attributes, default=str, sort_keys=True)}
            for e in sorted(data.evidence.values(), key=lambda e: e.id)]


def write_gpkg(data: ReportData, path: Path) -> Path:
    """GeoPackage layers sites, detections, trips (lines) and trips_arrival_unknown (points at the origin),
    EPSG:4326, and the attribute table evidence, written with pyogrio; a layer with no features is still written
    with its columns."""
    from pyogrio.raw import write

    tmp = path.with_name(path.stem + ".part.gpkg")  # GDAL wants the .gpkg extension on the file it writes
    tmp.unlink(missing_ok=True)
    by_layer: dict[str, list[tuple[Any, dict[str, Any]]]] = {name: [] for name in GPKG_LAYERS}
    for layer, geom, props in features(data):
        if layer == "trips" and geom.geom_type == "Point":
            layer = "trips_arrival_unknown"
        by_layer[layer].append((geom, props))
    for i, (layer, (gtype, names)) in enumerate(GPKG_LAYERS.items()):
        rows = by_layer[layer]
        cols = []
        for n in names:
            vals = [r[1].get(n) for r in rows]
            if n in GPKG_FLOATS:
                cols.append(np.array([np.nan if v is None else float(v) for v in vals], dtype="float64"))
            elif n in GPKG_BOOLS:  # written as "True"/"False" text they were both true to `simulated = 1`
                cols.append(np.array([bool(v) for v in vals], dtype=bool))
            else:
                cols.append(np.array(["" if v is None else str(v) for v in vals], dtype=object))
        geoms = np.array([g.wkb for g, _ in rows], dtype=object)
        write(str(tmp), geoms, cols, list(names), layer=layer, driver="GPKG", geometry_type=gtype,
              crs="EPSG:4326", append=i > 0, promote_to_multi=layer == "sites")
    rows_ev = evidence_rows(data)  # an attribute table: the records' evidence ids resolve inside the file
    write(str(tmp), None, [np.array([r[n] for r in rows_ev], dtype=object) for n in EVIDENCE_FIELDS],
          list(EVIDENCE_FIELDS), layer="evidence", driver="GPKG", append=True)
    tmp.replace(path)
    return path


ACTIVITY_COLUMNS = ["id", "route", "as_of", "status", "probability", "p_silence_if_active", "p_silence_low",
                    "p_silence_high", "interval_level", "last_activity", "quiet_start", "quiet_end", "days_quiet",
                    "expected_gap_days", "trips_total", "trips_recent", "usable_looks_quiet", "coverage",
                    "evidence_ids", "last_activity_evidence"]
INTERVAL_Z = 1.959964  # 95 % normal interval from the Monte Carlo standard error of P(silence | running)


def activity_row(a: Activity) -> list[Any]:
    """One judgement as a CSV row: its id, P(silence | running) with a 95 % Monte Carlo interval (blank when the
    analysis gave no standard error) and the quiet period it speaks about (last activity to ``as_of``)."""
    p, se = a.p_silence_if_active, a.details.get("p_silence_monte_carlo_se")
    low = high = level = None
    if p is not None and isinstance(se, int | float):
        low, high, level = max(0.0, p - INTERVAL_Z * se), min(1.0, p + INTERVAL_Z * se), 0.95
    return [activity_id(a.route, a.as_of), a.route, _iso(a.as_of), a.status, a.probability, p, low, high, level,
            _iso(a.last_activity), _iso(a.last_activity), _iso(a.as_of), a.days_quiet, a.expected_gap_days,
            a.trips_total, a.trips_recent, a.usable_looks_quiet, a.coverage, " ".join(a.evidence_ids),
            " ".join(a.last_activity_evidence)]


def write_csv(data: ReportData, folder: Path) -> Path:
    """One CSV per record kind in ``folder`` (sites, looks, sightings, visits, trips, activities)."""
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} is a file: a csv export writes a folder of tables")
    folder.mkdir(parents=True, exist_ok=True)
    visits = {v.id: v for v in data.visits}
    # what rests on simulated data says so in every table (the HTML report and the map formats already do)
    sim_visits = simulated_visits(data)
    dateless = date_only_sightings(data)

    def trip_row(x: Trip, route: Route | None) -> list[Any]:
        dest = trip_destination(x, route, visits)
        return [x.id, x.route, x.vessel, _iso(x.depart), _iso(x.arrive), x.kind, x.confidence, x.distance_nm, dest,
                x.arrive is not None, _iso(trip_until(x, route)),
                bool({x.origin_visit, x.destination_visit} & sim_visits), " ".join(x.evidence_ids)]

    def sim_route(key: str) -> bool:
        """As `analyze` and `status` say it: any simulated sighting or look at the route's sites (to as_of)."""
        route = data.routes.get(key)
        if route is None:
            return False
        sites = {*route.origin, *route.destination}
        return any(s.simulated and s.site in sites for s in data.sightings) or any(
            lk.simulated and lk.site in sites for lk in data.looks)

    tables: dict[str, tuple[list[str], list[list[Any]]]] = {
        "sites": (["key", "name", "kind", "lon", "lat", "wkt"],
                  [[s.key, s.name, s.kind, *s.centroid_lonlat, s.geometry.wkt] for s in data.sites.values()]),
        "looks": (["id", "site", "time", "sensor", "usable_fraction", "scene_id", "vessels_seen", "simulated",
                   "l50_m", "scale_m", "p_max", "note", "evidence_ids"],
                  [[x.id, x.site, _iso(x.time), x.sensor, x.usable_fraction, x.scene_id, x.vessels_seen, x.simulated,
                    x.detection.l50_m, x.detection.scale_m, x.detection.p_max, x.note, " ".join(x.evidence_ids)]
                   for x in data.looks]),
        "sightings": (["id", "time", "time_end", "source_kind", "site", "vessel", "event", "lon", "lat", "length_m",
                       "confidence", "identification_confidence", "fusion", "original_id", "simulated",
                       "evidence_ids", "date_only", "mmsi"],  # new columns go last: readers by position keep working
                      [[x.id, _iso(x.time), _iso(x.time_end), x.source_kind, x.site, x.vessel, x.event, x.lon, x.lat,
                        x.length_m, x.confidence, x.identification_confidence, fusion_status(x),
                        original_id(data, x), x.simulated, " ".join(x.evidence_ids), x.id in dateless,
                        ais_mmsi(data, x)]
                       for x in data.sightings]),
        "visits": (["id", "site", "vessel", "start", "end", "confidence", "simulated", "sighting_ids",
                    "evidence_ids"],
                   [[x.id, x.site, x.vessel, _iso(x.start), _iso(x.end), x.confidence, x.id in sim_visits,
                     " ".join(x.sighting_ids), " ".join(x.evidence_ids)] for x in data.visits]),
        "trips": (["id", "route", "vessel", "depart", "arrive", "kind", "confidence", "distance_nm",
                   "destination", "arrival_known", "until", "simulated", "evidence_ids"],
                  [trip_row(x, data.routes.get(x.route)) for x in data.trips]),
        "activities": ([*ACTIVITY_COLUMNS, "simulated"],
                       [[*activity_row(a), sim_route(a.route)] for a in data.activities.values()]),
        "evidence": (list(EVIDENCE_FIELDS), [list(r.values()) for r in evidence_rows(data)]),
    }
    for name, (header, rows) in tables.items():
        tmp = folder / f"{name}.csv.part"
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows([["" if v is None else str(v) for v in row] for row in rows])
        tmp.replace(folder / f"{name}.csv")
    return folder


def kml_document(data: ReportData, chip_href: Callable[[str], str | None]) -> str:
    """KML: site polygons, detections (with chips in their balloons) and trips as lines with time spans."""
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<kml xmlns="http://www.opengis.net/kml/2.2"><Document>',
             f"<name>routewatch as of {escape(_iso(data.as_of))}</name>",
             '<Style id="site"><PolyStyle><color>5514a5ff</color></PolyStyle></Style>',
             '<Style id="trip"><LineStyle><color>ff2020c0</color><width>2</width></LineStyle></Style>']
    chips_by_sighting = {}
    for s in data.sightings:
        for eid in s.evidence_ids:
            ev = data.evidence.get(eid)
            if ev is not None and str(ev.kind) == "chip":
                href = chip_href(_safe_name(eid))
                if href:
                    chips_by_sighting[s.id] = href
    parts.append("<Folder><name>sites</name>")
    for s in data.sites.values():
        polys = [s.geometry] if s.geometry.geom_type == "Polygon" else list(getattr(s.geometry, "geoms", []))
        rings = "".join("<Polygon><outerBoundaryIs><LinearRing><coordinates>"
                        + " ".join(f"{x:.6f},{y:.6f}" for x, y, *_ in p.exterior.coords)
                        + "</coordinates></LinearRing></outerBoundaryIs></Polygon>" for p in polys)
        parts.append(f"<Placemark><name>{escape(s.name)}</name><styleUrl>#site</styleUrl>"
                     f"<MultiGeometry>{rings}</MultiGeometry></Placemark>")
    parts.append("</Folder><Folder><name>detections</name>")
    for layer, geom, p in features(data):
        if layer != "detections":
            continue
        sim = "SIMULATED: " if p["simulated"] else ""
        fused = "" if not p["fusion"] else f"fusion: {p['fusion']}" + (
            f" (identification {p['identification_confidence']:.2f})" if p["identification_confidence"] is not None
            else "") + (f", AIS MMSI {p['mmsi']}" if p["mmsi"] is not None else "") + ", "
        desc = escape(f"{sim}{p['source_kind']} {p['event']} at {p['site']}, vessel {p['vessel'] or 'unidentified'}, "
                      f"{fused}length {p['length_m'] or '?'} m, evidence {p['evidence_ids']}")
        if p["id"] in chips_by_sighting:
            desc += escape(f'<br/><img src="{chips_by_sighting[p["id"]]}" width="128"/>')
        label = ((p["vessel"] or p["source_kind"]) + (f" ({p['fusion']})" if p["fusion"] else "")
                 + (" (simulated)" if p["simulated"] else ""))
        parts.append(f"<Placemark><name>{escape(label)}</name>"
                     f"<ExtendedData><Data name=\"simulated\"><value>{str(p['simulated']).lower()}</value></Data>"
                     f"<Data name=\"mmsi\"><value>{'' if p['mmsi'] is None else p['mmsi']}</value></Data>"
                     f"</ExtendedData>"
                     f"<TimeStamp><when>{p['time'][:10] if p['date_only'] else p['time']}</when></TimeStamp>"
                     f"<description>{desc}</description>"
                     f"<Point><coordinates>{geom.x:.6f},{geom.y:.6f}</coordinates></Point></Placemark>")
    parts.append("</Folder><Folder><name>trips</name>")
    for layer, geom, p in features(data):
        if layer != "trips":
            continue
        coords = " ".join(f"{x:.6f},{y:.6f}" for x, y in geom.coords)
        if geom.geom_type == "Point":  # arrival unknown: the departure, shown for at most the longest transit
            shape = f"<Point><coordinates>{coords}</coordinates></Point>"
            note = (f"arrived {p['arrive']}, destination port not named by the trip" if p["arrive"] else
                    f"arrival unknown (shown until {p['until']}, the departure plus the route's longest transit)")
        else:
            shape = f"<LineString><tessellate>1</tessellate><coordinates>{coords}</coordinates></LineString>"
            note = f"to {p['destination']}" + ("" if p["arrival_known"] else ", arrival unknown")
        label = f"{p['route']} {p['vessel']}" + (" (simulated)" if p["simulated"] else "")
        parts.append(f"<Placemark><name>{escape(label)}</name><styleUrl>#trip</styleUrl>"
                     f"<ExtendedData><Data name=\"simulated\"><value>{str(p['simulated']).lower()}</value></Data>"
                     "</ExtendedData>"
                     f"<TimeSpan><begin>{p['depart']}</begin><end>{p['until']}</end></TimeSpan>"
                     f"<description>{escape(p['kind'])}, {escape(note)}, confidence {p['confidence']:.2f}, evidence "
                     f"{escape(p['evidence_ids'])}</description>{shape}</Placemark>")
    parts.append("</Folder></Document></kml>\n")
    return "".join(parts)


def _safe_name(eid: str) -> str:
    """A file name from an evidence id that cannot climb out of the chips folder."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", eid).lstrip(".") or "chip"


def write_kml(data: ReportData, path: Path) -> Path:
    """``.kmz``: one zip with the chips inside; ``.kml``: chips copied beside it in ``<name>_chips/``."""
    chips = {_safe_name(eid): p for eid, ev in data.evidence.items()
             if str(ev.kind) == "chip" and (p := chip_path(ev, data.workspace_root)) is not None}
    if path.suffix.lower() == ".kmz":
        doc = kml_document(data, lambda eid: f"files/{eid}{chips[eid].suffix}" if eid in chips else None)
        tmp = path.with_name(path.name + ".part")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("doc.kml", doc)
            for eid, p in chips.items():
                zf.write(p, f"files/{eid}{p.suffix}")
        tmp.replace(path)
        return path
    folder = path.with_name(path.stem + "_chips")
    if chips:
        folder.mkdir(parents=True, exist_ok=True)
        for eid, p in chips.items():
            (folder / f"{eid}{p.suffix}").write_bytes(p.read_bytes())
    doc = kml_document(data, lambda eid: f"{folder.name}/{eid}{chips[eid].suffix}" if eid in chips else None)
    _atomic_text(path, doc)
    return path


def export(data: ReportData, fmt: str, output: Path) -> Path:
    """Write ``data`` in ``fmt`` (geojson, kml, gpkg, csv) to ``output`` (a folder for csv)."""
    output = Path(output)
    writers = {"geojson": write_geojson, "kml": write_kml, "gpkg": write_gpkg, "csv": write_csv}
    if fmt not in writers:
        raise ValueError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt != "csv":
        output.parent.mkdir(parents=True, exist_ok=True)
    return writers[fmt](data, output)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
