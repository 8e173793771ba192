"""The dashboard and JSON API (``routewatch serve``): FastAPI, server-rendered pages, Leaflet bundled, no CDN."""

from routewatch.web.app import create_app

__all__ = ["create_app"]
