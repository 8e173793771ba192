"""The JSON API (``/api/v1``): read endpoints with pagination and filters, token-protected write endpoints.

Every path and query value is validated before use (keys match ``KEY_PATTERN``, times must carry a time zone,
``limit`` is bounded), so an injection- or traversal-shaped value is refused with 422 and never reaches a query.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, HttpUrl, field_validator, model_validator
from shapely.geometry import shape

from routewatch.model import Evidence, EvidenceKind, Sighting, Site, SiteKind, SourceKind, stable_id
from routewatch.web.serialize import FastJSON as JSONResponse

KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,199}$"
KeyPath = Annotated[str, PathParam(pattern=KEY_PATTERN, max_length=200)]
OptKey = Annotated[str | None, Query(pattern=KEY_PATTERN, max_length=200)]
Limit = Annotated[int, Query(ge=1, le=1000, description="page size (at most 1000)")]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]

router = APIRouter(prefix="/api/v1")
bearer = HTTPBearer(auto_error=False)


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise HTTPException(422, f"{name} has no time zone: give it in UTC, e.g. 2024-03-01T00:00:00Z")
    return value.astimezone(UTC) if value else None


def _page(request: Request, items: list[dict[str, Any]], limit: int, offset: int) -> JSONResponse:
    """A page of items with the total and the link to the next page (None on the last)."""
    page = items[offset: offset + limit]
    nxt = None
    if offset + limit < len(items):
        nxt = str(request.url.include_query_params(offset=offset + limit, limit=limit))
    return JSONResponse({"items": page, "total": len(items), "limit": limit, "offset": offset, "next": nxt})


def _between(items: list[dict[str, Any]], key: str, since: datetime | None, until: datetime | None) -> list[dict]:
    lo = since.isoformat().replace("+00:00", "Z") if since else None
    hi = until.isoformat().replace("+00:00", "Z") if until else None
    return [x for x in items if (lo is None or x[key] >= lo) and (hi is None or x[key] <= hi)]


def _one(items: list[dict[str, Any]], key: str, what: str) -> JSONResponse:
    for x in items:
        if x["key"] == key:
            return JSONResponse(x)
    raise HTTPException(404, f"no such {what}")


def snapshot(request: Request) -> Any:
    return request.app.state.snapshots.get()


def require_token(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    """Write endpoints: 401 without a bearer token, 403 with a wrong one (or when the server has none set)."""
    expected: str | None = request.app.state.token
    if creds is None or not creds.credentials:
        raise HTTPException(401, "a bearer token is required for write endpoints",
                            headers={"WWW-Authenticate": "Bearer"})
    if not expected or not secrets.compare_digest(creds.credentials.encode(), expected.encode()):
        raise HTTPException(403, "token refused")


@router.get("/sites", summary="Watched sites (polygons as GeoJSON)")
async def list_sites(request: Request, limit: Limit = 100, offset: Offset = 0) -> JSONResponse:
    return _page(request, snapshot(request).json["sites"], limit, offset)


@router.get("/sites/{key}", summary="One site")
async def get_site(request: Request, key: KeyPath) -> JSONResponse:
    return _one(snapshot(request).json["sites"], key, "site")


@router.get("/routes", summary="Routes with their origin and destination site groups")
async def list_routes(request: Request, limit: Limit = 100, offset: Offset = 0) -> JSONResponse:
    return _page(request, snapshot(request).json["routes"], limit, offset)


@router.get("/routes/{key}", summary="One route")
async def get_route(request: Request, key: KeyPath) -> JSONResponse:
    return _one(snapshot(request).json["routes"], key, "route")


@router.get("/looks", summary="The coverage ledger: every look at a site, usable or not")
async def list_looks(request: Request, site: OptKey = None, since: datetime | None = None, until: datetime | None = None,
               limit: Limit = 100, offset: Offset = 0) -> JSONResponse:
    items = snapshot(request).json["looks"]
    if site:
        items = [x for x in items if x["site"] == site]
    items = _between(items, "time", _aware(since, "since"), _aware(until, "until"))
    return _page(request, items, limit, offset)


@router.get("/sightings", summary="Image detections, AIS positions and reports")
async def list_sightings(request: Request, site: OptKey = None, vessel: OptKey = None, since: datetime | None = None,
                   until: datetime | None = None, limit: Limit = 100, offset: Offset = 0) -> JSONResponse:
    items = snapshot(request).json["sightings"]
    items = [x for x in items if (not site or x["site"] == site) and (not vessel or x["vessel"] == vessel)]
    items = _between(items, "time", _aware(since, "since"), _aware(until, "until"))
    return _page(request, items, limit, offset)


@router.get("/visits", summary="Vessel presence at sites")
async def list_visits(request: Request, site: OptKey = None, vessel: OptKey = None, limit: Limit = 100,
                offset: Offset = 0) -> JSONResponse:
    items = [x for x in snapshot(request).json["visits"]
             if (not site or x["site"] == site) and (not vessel or x["vessel"] == vessel)]
    return _page(request, items, limit, offset)


@router.get("/trips", summary="Trips along routes, with their evidence ids")
async def list_trips(request: Request, route: OptKey = None, vessel: OptKey = None, limit: Limit = 100,
               offset: Offset = 0) -> JSONResponse:
    items = [x for x in snapshot(request).json["trips"]
             if (not route or x["route"] == route) and (not vessel or x["vessel"] == vessel)]
    return _page(request, items, limit, offset)


@router.get("/status", summary="Each route's status, probability, days quiet and quiet-period coverage")
async def list_status(request: Request, route: OptKey = None) -> JSONResponse:
    snap = snapshot(request)
    items = [x for x in snap.json["status"] if not route or x["route"] == route]
    return JSONResponse({"as_of": snap.data.as_of.isoformat().replace("+00:00", "Z"),
                         "declared_coverage": request.app.state.declared_coverage, "items": items})


class SiteIn(BaseModel):
    key: str = Field(pattern=KEY_PATTERN, max_length=200)
    name: str = Field(min_length=1, max_length=300)
    kind: SiteKind
    geometry: dict[str, Any] = Field(description="GeoJSON Polygon or MultiPolygon in WGS84 degrees")
    country: str | None = Field(default=None, max_length=100)
    notes: str = Field(default="", max_length=5000)

    @field_validator("geometry")
    @classmethod
    def _polygon(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type") not in ("Polygon", "MultiPolygon"):
            raise ValueError("geometry must be a GeoJSON Polygon or MultiPolygon")
        try:
            geom = shape(value)
        except Exception as exc:
            raise ValueError(f"geometry is not valid GeoJSON: {exc}") from None
        x0, y0, x1, y1 = geom.bounds
        if not (geom.is_valid and -180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
            raise ValueError("geometry must be a valid polygon within WGS84 bounds (lon -180..180, lat -90..90)")
        return value


class ObservationIn(BaseModel):
    """An analyst observation: a vessel (or object) seen at a site at a time, with its source."""

    time: datetime
    time_end: datetime | None = None
    site: str = Field(pattern=KEY_PATTERN, max_length=200)
    vessel: str | None = Field(default=None, pattern=KEY_PATTERN, max_length=200)
    event: Literal["present", "loading", "unloading", "arrival", "departure"] = "present"
    object_kind: Literal["vessel", "containers", "railcars", "aircraft"] = "vessel"
    count: int = Field(default=1, ge=1, le=100_000)
    confidence: float = Field(default=0.7, ge=0.0, le=1.0)
    source: str = Field(min_length=1, max_length=500)
    url: HttpUrl | None = None
    detail: str = Field(default="", max_length=5000)

    @field_validator("time", "time_end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give the time with a time zone (UTC), e.g. 2024-03-01T00:00:00Z")
        return value.astimezone(UTC) if value else None

    @model_validator(mode="after")
    def _ordered(self) -> ObservationIn:
        if self.time_end is not None and self.time_end < self.time:
            raise ValueError(f"time_end {self.time_end.isoformat()} is before time {self.time.isoformat()}")
        return self


@router.post("/sites", status_code=201, dependencies=[Depends(require_token)], summary="Add or replace a site")
def add_site(request: Request, body: SiteIn) -> dict[str, Any]:
    """Create a site, or replace one the API created earlier. A site brought by a watchlist file is refused
    with 409: the file is its source of truth, so edit the file (a replacement here would be undone, or would
    silently diverge from it)."""
    from sqlalchemy import select

    from routewatch.store.schema import ADDED_BY_API, sites
    from routewatch.watchlist import Watchlist

    site = Site(body.key, body.name, body.kind, shape(body.geometry), body.country, body.notes)
    store = request.app.state.store
    with store.transaction() as conn:
        owner = conn.execute(select(sites.c.added_by).where(sites.c.key == site.key)).scalar_one_or_none()
        if owner is not None and owner != ADDED_BY_API:
            raise HTTPException(409, f"site {site.key!r} comes from a watchlist file ({owner}); the API may only "
                                     "replace sites it added itself: edit the watchlist file instead")
        store.upsert_watchlist(Watchlist(sites={site.key: site}), conn=conn, added_by=ADDED_BY_API)
    request.app.state.snapshots.refresh()
    return {"key": site.key}


@router.post("/observations", status_code=201, dependencies=[Depends(require_token)],
             summary="Import analyst observations (JSON list); idempotent by content")
def add_observations(request: Request, body: Annotated[list[ObservationIn], Field(max_length=10_000)]) -> dict:
    store = request.app.state.store
    known = set(store.sites())
    unknown = sorted({o.site for o in body} - known)
    if unknown:
        raise HTTPException(422, f"unknown site(s): {', '.join(unknown)}; add them first")
    from routewatch.watchlist import Watchlist

    fleet = Watchlist(vessels=store.vessels())  # matched by key, name, IMO or MMSI, as the CSV import does
    vessel_keys = {o.vessel: v.key for o in body if o.vessel and (v := fleet.vessel_by_name(o.vessel))}
    unknown = sorted({o.vessel for o in body if o.vessel and o.vessel not in vessel_keys})
    if unknown:
        raise HTTPException(422, f"vessel: unknown vessel(s) {', '.join(unknown)}; give the key, name, IMO or MMSI "
                                 "of a watchlist vessel, or leave vessel out for an unidentified one")
    evidence, sightings = [], []
    for o in body:
        vessel = vessel_keys[o.vessel] if o.vessel else None
        time_end = o.time_end if o.time_end is not None and o.time_end > o.time else None
        url = str(o.url) if o.url else None
        ev = Evidence(stable_id("ev", "report", o.source, url, o.time, o.site, vessel, o.detail), EvidenceKind.REPORT,
                      o.detail or f"{o.event} at {o.site}", source=o.source, uri=url, observed_at=o.time)
        evidence.append(ev)
        sightings.append(Sighting(stable_id("sig", "report", ev.id), o.time, SourceKind.REPORT, o.site, vessel,
                                  o.object_kind, o.event, time_end, count=o.count, confidence=o.confidence,
                                  evidence_ids=(ev.id,), detail=o.detail))
    with store.transaction() as conn:
        store.add_evidence(evidence, conn=conn)
        added = store.add_sightings(sightings, conn=conn)
    request.app.state.snapshots.refresh()
    return {"received": len(body), "added": added, "ids": [s.id for s in sightings]}
