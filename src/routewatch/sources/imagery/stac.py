"""STAC search for Sentinel-1 GRD and Sentinel-2 L2A scenes over a site, with URL-signing hooks.

Two public APIs are configured by default (never contacted by the tests, which serve their own API on 127.0.0.1):

* Microsoft Planetary Computer: Sentinel-1 GRD and Sentinel-2 L2A; asset URLs must be signed with a short-lived
  SAS token, which the anonymous token endpoint hands out per collection (:class:`SasTokenSigner`);
* Earth Search (Element 84): Sentinel-2 L2A on public S3 buckets, no signing.

A signer is any callable ``(href, collection) -> href``; :class:`SasTokenSigner` is the Planetary Computer style
(append ``?<token>``), and a user can pass their own (a commercial provider's signed URLs, say).
"""

from __future__ import annotations

import threading
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import httpx
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from routewatch.model import ensure_utc


class Signer(Protocol):
    def __call__(self, href: str, collection: str) -> str: ...


@dataclass(frozen=True)
class StacEndpoint:
    """A STAC API and how its collections and asset keys map to our sensors and band names."""

    name: str
    url: str
    collections: dict[str, str]  # sensor -> collection id
    assets: dict[str, dict[str, str]]  # sensor -> {band name: asset key}
    token_url: str | None = None  # SAS token endpoint (Planetary Computer style), None: unsigned
    resolution_m: dict[str, float] = field(default_factory=lambda: {"sentinel-1": 10.0, "sentinel-2": 10.0})


PLANETARY_COMPUTER = StacEndpoint(
    name="planetary-computer",
    url="https://planetarycomputer.microsoft.com/api/stac/v1",
    collections={"sentinel-1": "sentinel-1-grd", "sentinel-2": "sentinel-2-l2a"},
    assets={"sentinel-1": {"vv": "vv", "vh": "vh", "hh": "hh", "hv": "hv"},
            "sentinel-2": {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "scl": "SCL"}},
    token_url="https://planetarycomputer.microsoft.com/api/sas/v1/token",
)
EARTH_SEARCH = StacEndpoint(
    name="earth-search",
    url="https://earth-search.aws.element84.com/v1",
    collections={"sentinel-2": "sentinel-2-l2a"},
    assets={"sentinel-2": {"blue": "blue", "green": "green", "red": "red", "nir": "nir", "scl": "scl"}},
)
ENDPOINTS: dict[str, StacEndpoint] = {e.name: e for e in (PLANETARY_COMPUTER, EARTH_SEARCH)}


def endpoint_for(name_or_url: str, sensor: str, token_url: str | None = None) -> StacEndpoint:
    """A configured endpoint by name, or a custom API URL that follows the Planetary Computer layout."""
    if name_or_url in ENDPOINTS:
        ep = ENDPOINTS[name_or_url]
        if token_url:
            ep = StacEndpoint(ep.name, ep.url, ep.collections, ep.assets, token_url, ep.resolution_m)
    else:
        pc = PLANETARY_COMPUTER
        ep = StacEndpoint("custom", name_or_url.rstrip("/"), pc.collections, pc.assets, token_url)
    if sensor not in ep.collections:
        raise ValueError(f"{ep.name} has no collection for {sensor!r}; it offers {', '.join(ep.collections)}")
    return ep


class SasTokenSigner:
    """Planetary Computer style signing: one SAS token per collection, fetched anonymously and cached to expiry.

    ``GET {token_url}/{collection}`` answers ``{"token": "st=...&sig=...", "msft:expiry": "2024-...Z"}``; the
    signed URL is the asset URL with the token as its query string.
    """

    def __init__(self, token_url: str, client: httpx.Client | None = None, margin_s: float = 300.0) -> None:
        self.token_url = token_url.rstrip("/")
        self._client = client or httpx.Client(timeout=30.0)
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self.margin_s = margin_s
        self.requests = 0

    def token(self, collection: str) -> str:
        with self._lock:
            cached = self._tokens.get(collection)
            if cached and cached[1] - self.margin_s > _time.time():
                return cached[0]
            resp = self._client.get(f"{self.token_url}/{collection}")
            self.requests += 1
            if resp.status_code != 200:
                raise PermissionError(f"token endpoint {self.token_url}/{collection} answered {resp.status_code}")
            body = resp.json()
            expiry = body.get("msft:expiry")
            until = (datetime.fromisoformat(expiry.replace("Z", "+00:00")).timestamp() if expiry
                     else _time.time() + 3600)
            self._tokens[collection] = (body["token"], until)
            return body["token"]

    def __call__(self, href: str, collection: str) -> str:
        if "sig=" in href or "token=" in href:
            return href  # already signed
        sep = "&" if "?" in href else "?"
        return f"{href}{sep}{self.token(collection)}"


@dataclass
class SceneCandidate:
    """A STAC item reduced to what fetching needs; ``hrefs`` are signed, per band name."""

    item_id: str
    collection: str
    sensor: str
    acquired: datetime
    footprint: BaseGeometry | None
    cloud_cover: float | None
    hrefs: dict[str, str]
    self_href: str | None
    properties: dict[str, Any]


def search(endpoint: StacEndpoint, sensor: str, geometry: BaseGeometry, start: datetime, end: datetime, *,
           max_cloud: float | None = None, max_items: int | None = None, signer: Signer | None = None,
           bands: list[str] | None = None) -> list[SceneCandidate]:
    """Items of the sensor's collection intersecting ``geometry`` in [start, end], oldest first."""
    from pystac_client import Client

    collection = endpoint.collections[sensor]
    client = Client.open(endpoint.url)
    query = {"eo:cloud_cover": {"lte": max_cloud * 100}} if max_cloud is not None and sensor == "sentinel-2" else None
    dt = f"{ensure_utc(start).isoformat().replace('+00:00', 'Z')}/{ensure_utc(end).isoformat().replace('+00:00', 'Z')}"
    found = client.search(collections=[collection], intersects=mapping(geometry), datetime=dt, query=query,
                          max_items=max_items, limit=100)
    wanted = endpoint.assets[sensor]
    out: list[SceneCandidate] = []
    for item in found.items():
        hrefs: dict[str, str] = {}
        for band, key in wanted.items():
            if bands and band not in bands and band != "scl":
                continue
            asset = item.assets.get(key)
            if asset is None:
                continue
            hrefs[band] = signer(asset.href, collection) if signer else asset.href
        if not hrefs:
            continue
        cc = item.properties.get("eo:cloud_cover")
        acquired = item.datetime or datetime.fromisoformat(str(item.properties["start_datetime"]).replace("Z", "+00:00"))
        out.append(SceneCandidate(
            item_id=item.id, collection=collection, sensor=sensor, acquired=ensure_utc(acquired),
            footprint=shape(item.geometry) if item.geometry else None,
            cloud_cover=None if cc is None else float(cc) / 100.0, hrefs=hrefs, self_href=item.get_self_href(),
            properties=dict(item.properties)))
    out.sort(key=lambda c: c.acquired)
    return out


def default_signer(endpoint: StacEndpoint, client: httpx.Client | None = None) -> Callable[[str, str], str] | None:
    """The endpoint's own signer (SAS tokens for the Planetary Computer), or None when assets are public."""
    return SasTokenSigner(endpoint.token_url, client) if endpoint.token_url else None
