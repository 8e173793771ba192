"""ASGI layers that keep reads cheap: whole responses cached per request line and snapshot, and security headers.

A dashboard read depends only on the snapshot it is answered from and on the request line (host, path, query), so
the first answer to a GET is kept as bytes (status, headers, body) and later identical GETs are sent straight from
memory, skipping routing, validation and JSON encoding. When the snapshot is replaced (the store changed, or a write
came through the API) the whole cache is dropped, so a client never reads an answer older than the snapshot. Only
200 answers are kept; the cache is bounded in entries and bytes (oldest dropped first).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

Entry = tuple[int, list[tuple[bytes, bytes]], bytes]
SKIP_PREFIXES = ("/static/", "/chips/")  # files: served by the file responses, with their own cache headers


class ReadCache:
    """Answer repeated GETs from memory for as long as the snapshot held by ``holder`` stays the same."""

    def __init__(self, app: ASGIApp, holder: Any, *, max_entries: int = 4096, max_bytes: int = 64 << 20,
                 max_body: int = 4 << 20) -> None:
        self.app, self.holder = app, holder
        self.max_entries, self.max_bytes, self.max_body = max_entries, max_bytes, max_body
        self._entries: OrderedDict[tuple[bytes, str, bytes], Entry] = OrderedDict()
        self._bytes = 0
        self._snap: Any = None
        self.hits = self.misses = 0

    def _current(self) -> Any:
        snap = self.holder.get()
        if snap is not self._snap:  # the store changed: every kept answer is out of date
            self._entries.clear()
            self._bytes = 0
            self._snap = snap
        return snap

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "GET" or path.startswith(SKIP_PREFIXES):
            await self.app(scope, receive, send)
            return
        snap = self._current()
        host = dict(scope.get("headers") or []).get(b"host", b"")
        key = (host, path, scope.get("query_string", b""))
        entry = self._entries.get(key)
        if entry is not None:
            self.hits += 1
            status, headers, body = entry
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        self.misses += 1
        start: Message | None = None
        chunks: list[bytes] = []
        size = 0
        keep = True

        async def capture(message: Message) -> None:
            nonlocal start, size, keep
            if message["type"] == "http.response.start":
                start = message
                keep = message["status"] == 200
            elif message["type"] == "http.response.body" and keep:
                body = message.get("body", b"")
                size += len(body)
                if size > self.max_body:
                    keep, chunks[:] = False, []
                else:
                    chunks.append(body)
            await send(message)

        await self.app(scope, receive, capture)
        if keep and start is not None and snap is self._snap:
            self._store(key, (start["status"], list(start.get("headers", [])), b"".join(chunks)))

    def _store(self, key: tuple[bytes, str, bytes], entry: Entry) -> None:
        self._entries[key] = entry
        self._bytes += len(entry[2])
        while self._entries and (len(self._entries) > self.max_entries or self._bytes > self.max_bytes):
            _, old = self._entries.popitem(last=False)
            self._bytes -= len(old[2])


class SecurityHeaders:
    """Add the Content-Security-Policy and friends to every answer (a plain ASGI layer: no per-request task)."""

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.extra = [(b"content-security-policy", csp.encode()), (b"x-content-type-options", b"nosniff"),
                      (b"referrer-policy", b"no-referrer")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def add(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                have = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in self.extra if k not in have]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, add)
