"""The dashboard application: FastAPI with server-rendered pages, a JSON API and bundled static files.

Read-only unless a token is configured; uploads larger than ``max_body_bytes`` are refused with 413 before they
are read into memory; pages carry a Content-Security-Policy that keeps every request on this server (map tiles
from a user-given URL template are the one, explicit, exception). Repeated GETs are answered from whole responses
kept per snapshot (``web.cache``); every layer is plain ASGI, so a cached read costs no task and no thread.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from routewatch.web import api, pages
from routewatch.web.cache import ReadCache, SecurityHeaders
from routewatch.web.state import SnapshotHolder

STATIC = Path(__file__).parent / "static"
MAX_BODY_BYTES = 1_000_000
log = logging.getLogger("routewatch.web")


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413: by Content-Length first, then while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await JSONResponse({"detail": f"request body over {self.limit} bytes"}, 413)(scope, receive, send)
            return
        seen = 0
        too_large = False

        async def limited() -> Message:
            nonlocal seen, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # stop the app reading: it sees a disconnect, and its answer is dropped
                too_large = True
                return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if not too_large:
                await send(message)

        try:
            await self.app(scope, limited, guarded)
        except Exception:
            if not too_large:
                raise
        if too_large:
            await JSONResponse({"detail": f"request body over {self.limit} bytes"}, 413)(scope, receive, send)


def coverage_text(name: str | None, coverage: Any) -> str | None:
    """How a declared coverage schedule is stated on the pages and in the status API."""
    if not coverage:
        return None
    terms = "; ".join(c.describe() + (f" at {c.site}" if c.site else "") for c in coverage)
    return f"{name}: {terms}" if name else terms


def create_app(store: Any, *, token: str | None = None, as_of: datetime | None = None,
               workspace_root: Path | None = None, tiles: str | None = None,
               max_body_bytes: int = MAX_BODY_BYTES, refresh_s: float = 60.0, watchlist: Any = None,
               coverage: Any = None, coverage_name: str | None = None, cache: bool = True) -> FastAPI:
    """The app over an open store. ``as_of`` None follows the clock; ``tiles`` is an optional URL template.

    With ``coverage`` (CoverageAssumption values; needs ``watchlist``) every snapshot is judged afresh under that
    declared schedule instead of showing the stored judgements, and the pages and the status API say so.
    """
    app = FastAPI(title="routewatch", version="1", docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json",
                  description="Sites, routes, the coverage ledger (looks), sightings, visits, trips and route "
                              "status. Reads are open; writes need `Authorization: Bearer <token>`.")
    analyzer = None
    if coverage:
        if watchlist is None:
            raise ValueError("a declared coverage schedule needs the watchlist to judge the routes")
        from routewatch.pipeline import analyze

        def analyzer(when: datetime) -> Any:
            return analyze(store, watchlist, when, coverage=tuple(coverage), persist=False)
    elif as_of is not None and watchlist is not None:
        # a fixed date other than the stored analysis's: derived for that date (nothing written), as report and
        # export do, so that no record after it is used; the clock-following default shows the stored analysis
        from routewatch.report.data import derive_as_of

        def analyzer(when: datetime) -> Any:
            return derive_as_of(store, watchlist, when)[0]

    app.state.store = store
    app.state.token = token
    app.state.tiles = tiles
    app.state.declared_coverage = coverage_text(coverage_name, coverage)
    app.state.snapshots = SnapshotHolder(store, as_of, workspace_root, ttl_s=refresh_s, analyzer=analyzer)
    tile_host = f" {urlparse(tiles).scheme}://{urlparse(tiles).netloc}" if tiles else ""
    csp = (f"default-src 'self'; img-src 'self' data:{tile_host}; style-src 'self' 'unsafe-inline'; "
           "script-src 'self'; frame-ancestors 'none'")

    def _wants_page(request: Request) -> bool:
        return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        """A page for a browser (a bad link gives a page with a way back), JSON for the API and scripts."""
        if not _wants_page(request):
            return await http_exception_handler(request, exc)
        return pages.error_page(request, exc.status_code, exc.detail, exc.headers)  # keeps Allow on a 405

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Any:
        if not _wants_page(request):
            return await request_validation_exception_handler(request, exc)
        return pages.error_page(request, 422, "not a valid address")

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("error serving %s", request.url.path)
        return JSONResponse({"detail": "internal error"}, 500)

    @app.get("/api/docs", include_in_schema=False, response_class=HTMLResponse)
    def api_docs(request: Request) -> HTMLResponse:
        """The API described from its OpenAPI document, rendered here (Swagger UI would load from a CDN)."""
        return pages.templates.TemplateResponse(request, "api_docs.html", {
            "spec": app.openapi(), "data": app.state.snapshots.get().data})

    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(SecurityHeaders, csp=csp)
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    if cache:
        app.add_middleware(ReadCache, holder=app.state.snapshots)
    return app
