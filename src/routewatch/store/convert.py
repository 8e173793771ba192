"""Records (``routewatch.model``) to table rows and back. Evidence ids travel separately, in ``evidence_links``."""

from __future__ import annotations

from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry

from routewatch.model import (
    Activity,
    AggregateObservation,
    DetectionModel,
    Evidence,
    EvidenceKind,
    Look,
    Mode,
    Route,
    Scene,
    Sighting,
    Site,
    SiteKind,
    SourceKind,
    Status,
    Trip,
    Vessel,
    Visit,
    ensure_utc,
    stable_id,
)


def to_wkt(geometry: BaseGeometry) -> str:
    return shapely.to_wkt(geometry, rounding_precision=-1)


def bbox(geometry: BaseGeometry | None) -> dict[str, float | None]:
    if geometry is None or geometry.is_empty:
        return {"min_lon": None, "min_lat": None, "max_lon": None, "max_lat": None}
    x0, y0, x1, y1 = geometry.bounds
    return {"min_lon": x0, "min_lat": y0, "max_lon": x1, "max_lat": y1}


def _utc(value: Any) -> Any:
    return None if value is None else ensure_utc(value)


def activity_id(route: str, as_of: Any) -> str:
    """Activities are keyed by (route, as_of); this id names one in ``evidence_links``."""
    return stable_id("act", route, ensure_utc(as_of))


def site_row(s: Site) -> dict[str, Any]:
    return {
        "key": s.key, "name": s.name, "kind": str(s.kind), "geometry_wkt": to_wkt(s.geometry),
        **bbox(s.geometry), "country": s.country, "notes": s.notes, "sources": list(s.sources),
    }


def site_from(r: Any) -> Site:
    return Site(
        key=r.key, name=r.name, kind=SiteKind(r.kind), geometry=shapely.from_wkt(r.geometry_wkt),
        country=r.country, notes=r.notes, sources=tuple(r.sources or ()),
    )


def route_row(r: Route) -> dict[str, Any]:
    return {
        "key": r.key, "name": r.name, "origin": list(r.origin), "destination": list(r.destination),
        "mode": str(r.mode), "vessels": list(r.vessels), "max_speed_kn": r.max_speed_kn,
        "max_transit_days": r.max_transit_days, "notes": r.notes, "sources": list(r.sources),
    }


def route_from(r: Any) -> Route:
    return Route(
        key=r.key, name=r.name, origin=tuple(r.origin), destination=tuple(r.destination), mode=Mode(r.mode),
        vessels=tuple(r.vessels or ()), max_speed_kn=r.max_speed_kn, max_transit_days=r.max_transit_days,
        notes=r.notes, sources=tuple(r.sources or ()),
    )


VESSEL_FIELDS = ("key", "name", "imo", "mmsi", "call_sign", "vessel_type", "length_m", "beam_m", "capacity_teu",
                 "flag", "sanctions", "notes")


def vessel_row(v: Vessel) -> dict[str, Any]:
    return {**{f: getattr(v, f) for f in VESSEL_FIELDS}, "sources": list(v.sources)}


def vessel_from(r: Any) -> Vessel:
    return Vessel(**{f: getattr(r, f) for f in VESSEL_FIELDS}, sources=tuple(r.sources or ()))


def evidence_row(e: Evidence) -> dict[str, Any]:
    return {
        "id": e.id, "kind": str(e.kind), "description": e.description, "source": e.source, "uri": e.uri,
        "observed_at": _utc(e.observed_at), "attributes": dict(e.attributes),
    }


def evidence_from(r: Any) -> Evidence:
    return Evidence(
        id=r.id, kind=EvidenceKind(r.kind), description=r.description, source=r.source, uri=r.uri,
        observed_at=r.observed_at, attributes=dict(r.attributes or {}),
    )


def scene_row(s: Scene) -> dict[str, Any]:
    return {
        "id": s.id, "sensor": s.sensor, "acquired": ensure_utc(s.acquired),
        "footprint_wkt": None if s.footprint is None else to_wkt(s.footprint), **bbox(s.footprint),
        "resolution_m": s.resolution_m, "cloud_cover": s.cloud_cover, "uri": s.uri, "collection": s.collection,
        "simulated": s.simulated, "attributes": dict(s.attributes),
    }


def scene_from(r: Any) -> Scene:
    return Scene(
        id=r.id, sensor=r.sensor, acquired=r.acquired,
        footprint=None if r.footprint_wkt is None else shapely.from_wkt(r.footprint_wkt),
        resolution_m=r.resolution_m, cloud_cover=r.cloud_cover, uri=r.uri, collection=r.collection,
        simulated=bool(r.simulated), attributes=dict(r.attributes or {}),
    )


def look_row(x: Look) -> dict[str, Any]:
    return {
        "id": x.id, "site": x.site, "time": ensure_utc(x.time), "sensor": x.sensor,
        "usable_fraction": x.usable_fraction, "l50_m": x.detection.l50_m, "scale_m": x.detection.scale_m,
        "p_max": x.detection.p_max, "source_kind": str(x.source_kind), "scene_id": x.scene_id,
        "vessels_seen": x.vessels_seen, "simulated": x.simulated, "note": x.note,
    }


def look_from(r: Any, evidence_ids: tuple[str, ...]) -> Look:
    return Look(
        id=r.id, site=r.site, time=r.time, sensor=r.sensor, usable_fraction=r.usable_fraction,
        detection=DetectionModel(l50_m=r.l50_m, scale_m=r.scale_m, p_max=r.p_max),
        source_kind=SourceKind(r.source_kind), scene_id=r.scene_id, evidence_ids=evidence_ids,
        vessels_seen=r.vessels_seen, simulated=bool(r.simulated), note=r.note,
    )


SIGHTING_FIELDS = ("id", "site", "vessel", "object_kind", "event", "lon", "lat", "length_m", "width_m",
                   "heading_deg", "score", "count", "confidence", "identification_confidence", "look_id", "detail",
                   "simulated")


def sighting_row(s: Sighting) -> dict[str, Any]:
    return {
        **{f: getattr(s, f) for f in SIGHTING_FIELDS}, "time": ensure_utc(s.time), "time_end": _utc(s.time_end),
        "source_kind": str(s.source_kind),
    }


def sighting_from(r: Any, evidence_ids: tuple[str, ...]) -> Sighting:
    values = {f: getattr(r, f) for f in SIGHTING_FIELDS}
    values["simulated"] = bool(values["simulated"])
    return Sighting(**values, time=r.time, time_end=r.time_end, source_kind=SourceKind(r.source_kind),
                    evidence_ids=evidence_ids)


def aggregate_row(a: AggregateObservation) -> dict[str, Any]:
    return {
        "id": a.id, "start_time": ensure_utc(a.start), "end_time": ensure_utc(a.end), "scope": a.scope,
        "event": a.event, "count": a.count, "denominator": a.denominator, "detail": a.detail,
        "subjects": list(a.subjects), "confidence": a.confidence, "lower_bound": a.lower_bound,
    }


def aggregate_from(r: Any, evidence_ids: tuple[str, ...]) -> AggregateObservation:
    return AggregateObservation(
        id=r.id, start=r.start_time, end=r.end_time, scope=r.scope, event=r.event, count=r.count,
        denominator=r.denominator, detail=r.detail, evidence_ids=evidence_ids, subjects=tuple(r.subjects or ()),
        confidence=r.confidence, lower_bound=bool(r.lower_bound),
    )


def visit_row(v: Visit) -> dict[str, Any]:
    return {
        "id": v.id, "site": v.site, "vessel": v.vessel, "start_time": ensure_utc(v.start),
        "end_time": ensure_utc(v.end), "confidence": v.confidence, "sighting_ids": list(v.sighting_ids),
        "size_class": v.size_class, "start_bound": _utc(v.start_bound), "end_bound": _utc(v.end_bound),
        "source_kinds": list(v.source_kinds),
    }


def visit_from(r: Any, evidence_ids: tuple[str, ...]) -> Visit:
    return Visit(
        id=r.id, site=r.site, vessel=r.vessel, start=r.start_time, end=r.end_time, confidence=r.confidence,
        sighting_ids=tuple(r.sighting_ids or ()), evidence_ids=evidence_ids, size_class=r.size_class,
        start_bound=r.start_bound, end_bound=r.end_bound, source_kinds=tuple(r.source_kinds or ()),
    )


def trip_row(t: Trip) -> dict[str, Any]:
    return {
        "id": t.id, "route": t.route, "vessel": t.vessel, "origin_visit": t.origin_visit,
        "destination_visit": t.destination_visit, "depart": ensure_utc(t.depart), "arrive": _utc(t.arrive),
        "confidence": t.confidence, "kind": t.kind, "distance_nm": t.distance_nm,
    }


def trip_from(r: Any, evidence_ids: tuple[str, ...]) -> Trip:
    return Trip(
        id=r.id, route=r.route, vessel=r.vessel, origin_visit=r.origin_visit,
        destination_visit=r.destination_visit, depart=r.depart, arrive=r.arrive, confidence=r.confidence,
        evidence_ids=evidence_ids, kind=r.kind, distance_nm=r.distance_nm,
    )


ACTIVITY_FIELDS = ("route", "probability", "days_quiet", "p_silence_if_active", "expected_gap_days",
                   "trips_total", "trips_recent", "coverage", "usable_looks_quiet", "days_to_confident_call",
                   "explanation")


def activity_row(a: Activity) -> dict[str, Any]:
    return {
        **{f: getattr(a, f) for f in ACTIVITY_FIELDS}, "id": activity_id(a.route, a.as_of),
        "as_of": ensure_utc(a.as_of), "status": str(a.status), "last_activity": _utc(a.last_activity),
        "last_activity_evidence": list(a.last_activity_evidence), "details": dict(a.details),
    }


def activity_from(r: Any, evidence_ids: tuple[str, ...]) -> Activity:
    return Activity(
        **{f: getattr(r, f) for f in ACTIVITY_FIELDS}, as_of=r.as_of, status=Status(r.status),
        last_activity=r.last_activity, last_activity_evidence=tuple(r.last_activity_evidence or ()),
        evidence_ids=evidence_ids, details=dict(r.details or {}),
    )
