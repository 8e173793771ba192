"""Load benchmark of ``routewatch serve``: 50 concurrent clients for 30 s on 127.0.0.1, and the report build time.

Run: ``python -m benchmarks.bench_web [--workspace demo-workspace] [--clients 50] [--seconds 30]``. Without a
workspace it builds the sample workspace in a temporary folder. The baseline, in the same run, is the same reads
served straight from the store (what the API would cost without its in-memory snapshot), one client.
Figures go to the "web" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

API = ["/api/v1/status", "/api/v1/looks?limit=100", "/api/v1/sightings?limit=100", "/api/v1/trips", "/api/v1/sites"]
PAGES = ["/", "/routes/{route}"]
ROOT = Path(__file__).resolve().parents[1]


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else (values[0] if values else float("nan"))


async def load(base: str, paths: list[str], clients: int, seconds: float) -> tuple[dict[str, list[float]], int]:
    lat: dict[str, list[float]] = {"api": [], "page": []}
    errors = 0
    stop = time.monotonic() + seconds

    async def client(i: int) -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            k = i
            while time.monotonic() < stop:
                path = paths[k % len(paths)]
                k += 1
                t0 = time.perf_counter()
                try:
                    r = await c.get(path)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                (lat["api"] if path.startswith("/api/") else lat["page"]).append((time.perf_counter() - t0) * 1000)
                errors += not ok

    await asyncio.gather(*(client(i) for i in range(clients)))
    return lat, errors


def baseline(url: str) -> list[float]:
    """The same API reads straight from the store, serialised, one at a time (ms)."""
    from routewatch.store import Store
    from routewatch.web.serialize import to_json

    store = Store.open(url)
    out = []
    for _ in range(20):
        for read in (lambda: store.looks()[:100], lambda: store.sightings()[:100], store.trips,
                     lambda: list(store.sites().values())):
            t0 = time.perf_counter()
            [to_json(x) for x in read()]
            out.append((time.perf_counter() - t0) * 1000)
    store.close()
    return out


def write_section(text: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"<!-- web start -->\n{text.rstrip()}\n<!-- web end -->"
    if "<!-- web start -->" in doc:
        doc = re.sub(r"<!-- web start -->.*?<!-- web end -->", lambda _m: block, doc, flags=re.S)
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    path.write_text(doc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workspace", type=Path)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    ws = args.workspace
    label = str(ws)
    if ws is None:
        from routewatch.report.sample import write_sample
        from routewatch.store import Store

        ws = Path(tmp.name)
        s = Store.open(f"sqlite:///{ws / 'routewatch.sqlite'}")
        write_sample(s, ws)
        s.close()
        label = "sample workspace (routewatch.report.sample)"
    url = f"sqlite:///{ws.resolve() / 'routewatch.sqlite'}"
    from routewatch.report import build_report, gather
    from routewatch.store import Store

    store = Store.open(url)
    acts = store.activities()
    as_of = max((a.as_of for a in acts), default=datetime.now(UTC))
    route = next(iter(store.routes()), "none")
    t0 = time.perf_counter()
    gather(store, as_of, workspace_root=ws)
    t_gather = time.perf_counter() - t0
    t0 = time.perf_counter()
    build_report(store, as_of, ws / "bench-report.html", workspace_root=ws)
    t_report = time.perf_counter() - t0
    store.close()
    base_ms = baseline(url)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-c", "from routewatch.cli import main; main()", "serve", "--port", str(port),
           "-w", str(ws), "--db", url]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(base + "/api/v1/status", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        paths = API * 3 + [p.format(route=route) for p in PAGES]
        started = time.perf_counter()
        lat, errors = asyncio.run(load(base, paths, args.clients, args.seconds))
        wall = time.perf_counter() - started
        hwm = re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{server.pid}/status").read_text())
        server_peak_mb = int(hwm.group(1)) / 1024 if hwm else float("nan")
    finally:
        server.terminate()
        server.wait(10)
    n = len(lat["api"]) + len(lat["page"])
    own_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = f"""## web: dashboard load and report build

`python -m benchmarks.bench_web` on {label}; {os.cpu_count()} CPU cores shared with other work; {datetime.now(UTC):%Y-%m-%d}.

| measure | value | target |
|---|---|---|
| clients x duration | {args.clients} x {wall:.0f} s, {n} requests ({n / wall:.0f} per s) | 50 x 30 s |
| API reads p50 / p95 | {pct(lat['api'], 50):.1f} ms / {pct(lat['api'], 95):.1f} ms ({len(lat['api'])} requests) | p95 < 100 ms |
| pages p50 / p95 | {pct(lat['page'], 50):.1f} ms / {pct(lat['page'], 95):.1f} ms ({len(lat['page'])} requests) | |
| errors | {errors} | 0 |
| baseline: same reads from the store, uncached, one client, p50 / p95 | {pct(base_ms, 50):.1f} ms / {pct(base_ms, 95):.1f} ms | |
| report build (gather + render + write) | {t_report:.2f} s (gather alone {t_gather:.2f} s) | < 5 s |
| peak memory: server / benchmark process | {server_peak_mb:.0f} MiB / {own_peak_mb:.0f} MiB | |
"""
    print(text)
    write_section(text)
    tmp.cleanup()


if __name__ == "__main__":
    main()
