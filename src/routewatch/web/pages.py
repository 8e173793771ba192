"""Server-rendered pages: the routes overview with a Leaflet map, a route page, scene and detection pages, chips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

from routewatch.analysis.activity import probability_meaning
from routewatch.report.data import chip_path
from routewatch.report.html import headline
from routewatch.web.api import KEY_PATTERN, snapshot

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.filters["utc"] = lambda d: "—" if d is None else d.strftime("%Y-%m-%d %H:%M UTC")
templates.env.filters["pct"] = lambda p: "—" if p is None else f"{p:.0%}"
Id = Annotated[str, PathParam(pattern=KEY_PATTERN, max_length=200)]
router = APIRouter(include_in_schema=False)


def _render(request: Request, name: str, status_code: int = 200, headers: dict[str, str] | None = None,
            **context: Any) -> HTMLResponse:
    """A page; repeated requests are answered from the response cache (web.cache), not rendered again."""
    snap = snapshot(request)
    return templates.TemplateResponse(request, name, {
        "data": snap.data, "tiles": request.app.state.tiles, "headline": headline, "meaning": probability_meaning,
        "declared_coverage": request.app.state.declared_coverage, **context}, status_code=status_code, headers=headers)


def error_page(request: Request, status: int, detail: Any, headers: dict[str, str] | None = None) -> HTMLResponse:
    """The page a browser gets for a bad link: what is missing and a way back (``Vary``: the API answers JSON)."""
    return _render(request, "error.html", status_code=status, headers={**(headers or {}), "Vary": "Accept"},
                   status=status, detail=detail)


def _map_json(snap: Any) -> str:
    """Sites, route lines and detections for the Leaflet map, embedded in the page (no extra request)."""
    data = snap.data
    routes = []
    for r in data.routes.values():
        for a in r.origin:
            for b in r.destination:
                if a in data.sites and b in data.sites:
                    routes.append({"name": r.name, "from": data.sites[a].centroid_lonlat[::-1],
                                   "to": data.sites[b].centroid_lonlat[::-1]})
    dets = [{"id": s["id"], "lat": s["lat"], "lon": s["lon"], "kind": s["source_kind"], "time": s["time"],
             "vessel": s["vessel"]} for s in snap.json["sightings"] if s["lat"] is not None and s["lon"] is not None]
    doc = {"sites": snap.json["sites"], "routes": routes, "detections": dets[-2000:]}
    return json.dumps(doc).replace("</", "<\\/")


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    snap = snapshot(request)
    return _render(request, "index.html", views=snap.data.views, status=snap.json["status"], map_json=_map_json(snap))


def _view(snap: Any, key: str) -> Any:
    for v in snap.data.views:
        if v.route.key == key:
            return v
    raise HTTPException(404, "no such route")


@router.get("/routes/{key}", response_class=HTMLResponse)
def route_page(request: Request, key: Id) -> HTMLResponse:
    snap = snapshot(request)
    view = _view(snap, key)
    trips = [{"trip": t, "evidence": snap.data.trip_evidence(t), "scenes": snap.data.trip_scenes(t)} for t in view.trips]
    return _render(request, "route.html", view=view, trips=trips, timeline=snap.timeline(key),
                   names={k: v.name for k, v in snap.data.vessels.items()})


@router.get("/scenes/{scene_id}", response_class=HTMLResponse)
def scene_page(request: Request, scene_id: Id) -> HTMLResponse:
    data = snapshot(request).data
    scene = data.scenes.get(scene_id)
    if scene is None:
        raise HTTPException(404, "no such scene")
    looks = [lk for lk in data.looks if lk.scene_id == scene_id]
    look_ids = {lk.id for lk in looks}
    dets = [s for s in data.sightings if s.look_id in look_ids]
    return _render(request, "scene.html", scene=scene, looks=looks, detections=dets, chips=_chips(data, dets))


@router.get("/sightings/{sighting_id}", response_class=HTMLResponse)
def sighting_page(request: Request, sighting_id: Id) -> HTMLResponse:
    data = snapshot(request).data
    found = [s for s in data.sightings if s.id == sighting_id]
    if not found:
        raise HTTPException(404, "no such sighting")
    s = found[0]
    look = data.looks_by_id.get(s.look_id or "")
    evidence = [data.evidence[e] for e in s.evidence_ids if e in data.evidence]
    return _render(request, "sighting.html", s=s, look=look, evidence=evidence, chips=_chips(data, [s]))


def _chips(data: Any, sightings: list[Any]) -> dict[str, list[str]]:
    """Chip evidence ids per sighting (served by /chips/{id})."""
    out: dict[str, list[str]] = {}
    for s in sightings:
        out[s.id] = [e for e in s.evidence_ids if e in data.evidence and str(data.evidence[e].kind) == "chip"]
    return out


@router.get("/chips/{evidence_id}")
def chip(request: Request, evidence_id: Id) -> FileResponse:
    """A chip image; only image files inside the workspace are served, whatever the evidence URI says."""
    data = snapshot(request).data
    ev = data.evidence.get(evidence_id)
    root = data.workspace_root
    path = chip_path(ev, root) if ev is not None and str(ev.kind) == "chip" else None
    if path is None or root is None or not path.resolve().is_relative_to(root.resolve()):
        raise HTTPException(404, "no such chip")
    head = path.read_bytes()[:8]
    if head != b"\x89PNG\r\n\x1a\n" and head[:2] != b"\xff\xd8":
        raise HTTPException(404, "no such chip")
    return FileResponse(path, media_type="image/png" if head[:4] == b"\x89PNG" else "image/jpeg",
                        headers={"Cache-Control": "max-age=3600"})
