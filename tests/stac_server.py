"""A small but real STAC API on 127.0.0.1 for the imagery tests.

It serves the landing page, conformance, collections, ``/search`` (GET and POST, with paging by ``next`` links),
a Planetary-Computer-style SAS token endpoint, and the COG files under ``/data/`` with HTTP range requests. Every
data request is logged (path, Range header, bytes sent) so tests can check for partial reads, cache hits and
resumes. ``require_token`` refuses unsigned data URLs (403); ``delay_s`` slows data responses (so a test can kill a
download midway); ``drop_after`` closes the connection without answering after that many data requests.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from shapely.geometry import box, shape

TOKEN = "st=2024-01-01&se=2099-01-01&sig=test-signature"
CONFORMS = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#query",
    "https://api.stacspec.org/v1.0.0/collections",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]


@dataclass
class DataRequest:
    path: str
    range: str | None
    sent: int
    token_ok: bool


@dataclass
class StacState:
    items: list[dict[str, Any]]
    files: dict[str, Path]
    page_size: int = 2
    require_token: bool = True
    delay_s: float = 0.0
    drop_after: int | None = None
    searches: int = 0
    tokens_issued: int = 0
    data: list[DataRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset_log(self) -> None:
        with self.lock:
            self.data.clear()
            self.searches = 0


def _match(item: dict[str, Any], params: dict[str, Any]) -> bool:
    cols = params.get("collections")
    if cols and item["collection"] not in cols:
        return False
    geom = None
    if params.get("intersects"):
        geom = shape(params["intersects"])
    elif params.get("bbox"):
        geom = box(*[float(v) for v in params["bbox"]])
    if geom is not None and not shape(item["geometry"]).intersects(geom):
        return False
    dt = params.get("datetime")
    if dt:
        lo, _, hi = dt.partition("/")
        t = datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))
        if lo not in ("", "..") and t < datetime.fromisoformat(lo.replace("Z", "+00:00")):
            return False
        if hi not in ("", "..") and t > datetime.fromisoformat(hi.replace("Z", "+00:00")):
            return False
    query = params.get("query") or {}
    for prop, ops in query.items():
        v = item["properties"].get(prop)
        if v is None:
            return False
        for op, limit in ops.items():
            if (op == "lte" and not v <= limit) or (op == "lt" and not v < limit) or (op == "gte" and not v >= limit):
                return False
    return True


def make_handler(state: StacState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            return None

        @property
        def base(self) -> str:
            return f"http://{self.headers.get('Host')}"

        def _json(self, body: Any, status: int = 200) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:
            self._route("GET")

        def do_HEAD(self) -> None:
            self._route("HEAD")

        def do_POST(self) -> None:
            self._route("POST")

        def _route(self, method: str) -> None:
            url = urlparse(self.path)
            path = url.path.rstrip("/") or "/"
            query = parse_qs(url.query)
            if path.startswith("/data/"):
                return self._data(path[len("/data/"):], query, method)
            if path == "/":
                return self._json(self._landing())
            if path == "/conformance":
                return self._json({"conformsTo": CONFORMS})
            if path == "/collections":
                return self._json({"collections": [self._collection(c) for c in self._collection_ids()],
                                   "links": []})
            m = re.fullmatch(r"/collections/([^/]+)", path)
            if m:
                return self._json(self._collection(m.group(1)))
            m = re.fullmatch(r"/api/sas/v1/token/([^/]+)", path)
            if m:
                with state.lock:
                    state.tokens_issued += 1
                    n = state.tokens_issued
                # a fresh token per request, as a real SAS endpoint rotates them (and so GDAL's in-process
                # cache, keyed by URL, cannot answer one fetch with another's bytes)
                return self._json({"msft:expiry": "2099-01-01T00:00:00Z", "token": f"{TOKEN}-{n}"})
            if path == "/search":
                if method == "POST":
                    n = int(self.headers.get("Content-Length") or 0)
                    params = json.loads(self.rfile.read(n) or b"{}")
                else:
                    params = {k: v[0] for k, v in query.items()}
                    for k in ("collections", "bbox"):
                        if k in params:
                            params[k] = params[k].split(",")
                    for k in ("intersects", "query"):
                        if k in params:
                            params[k] = json.loads(params[k])
                return self._search(params, method)
            return self._json({"code": "NotFound", "description": path}, 404)

        def _collection_ids(self) -> list[str]:
            return sorted({i["collection"] for i in state.items})

        def _collection(self, cid: str) -> dict[str, Any]:
            return {"type": "Collection", "stac_version": "1.0.0", "id": cid, "description": cid,
                    "license": "proprietary",
                    "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                               "temporal": {"interval": [[None, None]]}},
                    "links": [{"rel": "self", "href": f"{self.base}/collections/{cid}"}]}

        def _landing(self) -> dict[str, Any]:
            b = self.base
            return {"type": "Catalog", "stac_version": "1.0.0", "id": "test-stac", "description": "test API",
                    "conformsTo": CONFORMS,
                    "links": [{"rel": "self", "href": f"{b}/"}, {"rel": "root", "href": f"{b}/"},
                              {"rel": "conformance", "href": f"{b}/conformance"},
                              {"rel": "data", "href": f"{b}/collections"},
                              {"rel": "search", "href": f"{b}/search", "type": "application/geo+json",
                               "method": "GET"},
                              {"rel": "search", "href": f"{b}/search", "type": "application/geo+json",
                               "method": "POST"}]}

        def _search(self, params: dict[str, Any], method: str) -> None:
            with state.lock:
                state.searches += 1
            matched = [i for i in state.items if _match(i, params)]
            start = int(params.get("token") or 0)
            limit = min(int(params.get("limit") or state.page_size), state.page_size)
            page = matched[start:start + limit]
            feats = []
            for it in page:
                it = json.loads(json.dumps(it))
                for a in it["assets"].values():
                    a["href"] = f"{self.base}{a['href']}"
                it["links"] = [{"rel": "self", "href": f"{self.base}/collections/{it['collection']}/items/{it['id']}"}]
                feats.append(it)
            links = []
            if start + limit < len(matched):
                nxt = str(start + limit)
                if method == "POST":
                    links.append({"rel": "next", "href": f"{self.base}/search", "method": "POST",
                                  "body": {**params, "token": nxt}, "merge": False})
                else:
                    q = {k: (",".join(v) if isinstance(v, list) else json.dumps(v) if isinstance(v, dict) else v)
                         for k, v in params.items()}
                    q["token"] = nxt
                    links.append({"rel": "next", "href": f"{self.base}/search?{urlencode(q)}", "method": "GET"})
            self._json({"type": "FeatureCollection", "features": feats, "links": links,
                        "numberMatched": len(matched), "numberReturned": len(feats)})

        def _data(self, name: str, query: dict[str, list[str]], method: str) -> None:
            token_ok = query.get("sig", [""])[0].startswith("test-signature-")
            f = state.files.get(name)
            if f is None:
                return self._json({"code": "NotFound"}, 404)
            with state.lock:
                n_before = len(state.data)
            if state.drop_after is not None and n_before >= state.drop_after:
                with state.lock:
                    state.data.append(DataRequest(name, self.headers.get("Range"), 0, token_ok))
                self.close_connection = True
                self.connection.shutdown(2)
                return None
            if state.require_token and not token_ok:
                with state.lock:
                    state.data.append(DataRequest(name, self.headers.get("Range"), 0, token_ok))
                return self._json({"code": "AuthenticationFailed"}, 403)
            if state.delay_s:
                time.sleep(state.delay_s)
            data = f.read_bytes()
            rng = self.headers.get("Range")
            status, body = 200, data
            if rng:
                m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
                if not m:
                    return self._json({"code": "BadRange", "range": rng}, 416)
                lo = int(m.group(1))
                hi = int(m.group(2)) if m.group(2) else len(data) - 1
                hi = min(hi, len(data) - 1)
                status, body = 206, data[lo:hi + 1]
            self.send_response(status)
            self.send_header("Content-Type", "image/tiff")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(body)))
            if status == 206:
                self.send_header("Content-Range", f"bytes {lo}-{hi}/{len(data)}")
            self.end_headers()
            sent = 0
            if method != "HEAD":
                try:
                    self.wfile.write(body)
                    sent = len(body)
                except (BrokenPipeError, ConnectionResetError):
                    sent = 0  # the client hung up (GDAL aborts a GET once it has the headers)
            with state.lock:
                state.data.append(DataRequest(name, rng, sent, token_ok))
            return None

    return Handler


class StacServer:
    """Run a :class:`StacState` on an ephemeral 127.0.0.1 port in a daemon thread."""

    def __init__(self, state: StacState) -> None:
        self.state = state
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> StacServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
