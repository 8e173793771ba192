"""CLI verbs of the surfaces: report, export, serve, watch (thin over routewatch.report, .web and .alerts)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from routewatch.cli.core import (
    AsOfOpt,
    CoverageOpt,
    DbOpt,
    WorkspaceOpt,
    console,
    open_workspace_or_store,
    parse_as_of,
    resolve_coverage,
)
from routewatch.workspace import Workspace

TilesOpt = Annotated[str | None, typer.Option(
    help="Optional map tile URL template, e.g. https://tile.example.org/{z}/{x}/{y}.png (off by default: "
         "the map is drawn from the site polygons and nothing is fetched)")]




SERVE_ENV = "ROUTEWATCH_SERVE_SETTINGS"


def _serve_app(settings: dict[str, Any], token: str | None, store: Any = None, watchlist: Any = None) -> Any:
    """The dashboard app for ``serve``'s settings (one process, or each worker of several)."""
    from datetime import datetime

    from routewatch.store import Store
    from routewatch.watchlist import load_watchlist
    from routewatch.web import create_app

    root = Path(settings["workspace"])
    if store is None:  # a worker: open without writing (the parent already brought the store up to date)
        store = Store.open(settings["db"])
        ws = Workspace.open(root, settings["db"])
        watchlist = load_watchlist(ws.watchlist_path) if ws.watchlist_path.exists() else None
    specs = settings.get("coverage") or []
    return create_app(store, token=token, as_of=datetime.fromisoformat(settings["as_of"]) if settings["as_of"] else None,
                      workspace_root=root, tiles=settings["tiles"], max_body_bytes=settings["max_upload"],
                      watchlist=watchlist, coverage=resolve_coverage(specs, watchlist),
                      coverage_name=", ".join(specs) or None, cache=settings.get("cache", True))


def serve_app_from_env() -> Any:
    """Factory for uvicorn's worker processes (``serve --workers N``): settings from the environment."""
    import json
    import os

    return _serve_app(json.loads(os.environ[SERVE_ENV]), os.environ.get("ROUTEWATCH_TOKEN") or None)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""

    @app.command()
    def report(
        as_of: AsOfOpt = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="HTML file to write")] = None,
        coverage: CoverageOpt = None,
        tiles: TilesOpt = None,
        stored: Annotated[bool, typer.Option(help="Use the judgements already in the store instead of analyzing")] = False,
        workspace: WorkspaceOpt = None,
        db: DbOpt = None,
    ) -> None:
        """Write the self-contained HTML report (opens offline; charts and chips inside the file).

        Example: routewatch report --as-of 2024-03-02 -o report.html -w demo-workspace
        """
        import time

        from routewatch.report import build_report

        ws, watchlist, store = open_workspace_or_store(workspace, db)
        when = parse_as_of(as_of)
        started = time.perf_counter()
        analysis = None
        if watchlist is not None and not stored:
            from routewatch.pipeline import analyze

            with console.status("analyzing"):
                analysis = analyze(store, watchlist, when, coverage=resolve_coverage(coverage, watchlist),
                                   persist=False)
        else:
            from routewatch.report.data import ANALYZE_HINT, stored_as_of

            judged = stored_as_of(store)
            if judged is None:
                console.print(ANALYZE_HINT)
            elif judged < when:
                # the stored judgement speaks for its own date: the page is headed with it and shows nothing later
                console.print(f"the stored judgement was made as of {judged:%Y-%m-%d %H:%M} UTC: the report is for "
                              f"that date (leave out --stored to judge as of {when:%Y-%m-%d})")
                when = judged
            elif judged > when:  # its visits and trips rest on what the store held at that later date
                fix = (f"Run `routewatch analyze --as-of {when:%Y-%m-%d}` first, or leave out --stored."
                       if watchlist is not None else
                       "This store has no watchlist here to analyse it again for that date (give a workspace "
                       f"with one), or give an --as-of on or after {judged:%Y-%m-%d}.")
                console.print(f"[red]error:[/red] the store's analysis is as of {judged:%Y-%m-%d %H:%M} UTC, after "
                              f"--as-of {when:%Y-%m-%d %H:%M}: its visits and trips may rest on later data. {fix}")
                raise typer.Exit(2)
        out = output or ws.reports_dir / f"report-{when:%Y-%m-%d}.html"
        with console.status("writing the report"):
            build_report(store, when, out, analysis=analysis, tiles=tiles, workspace_root=ws.root)
        console.print(f"report written to {out} ({out.stat().st_size / 1024:.0f} KiB, "
                      f"{time.perf_counter() - started:.1f} s)")

    @app.command()
    def export(
        fmt: Annotated[str, typer.Option("--format", "-f", help="geojson, kml (or .kmz output), gpkg or csv")],
        output: Annotated[Path, typer.Option("--output", "-o", help="file to write (a folder for csv)")],
        as_of: AsOfOpt = None,
        coverage: CoverageOpt = None,
        workspace: WorkspaceOpt = None,
        db: DbOpt = None,
    ) -> None:
        """Export sites, detections and trips for QGIS (gpkg), Google Earth (kml/kmz), or as GeoJSON/CSV.

        With --coverage the routes are judged under that declared schedule, as `analyze -c` does; without it,
        under the looks in the coverage ledger.

        Example: routewatch export --format kml -o case.kmz -w demo-workspace
        """
        from routewatch.report import FORMATS, gather
        from routewatch.report import export as run
        from routewatch.report.data import declared_judgements, derive_as_of

        if fmt not in FORMATS:
            raise typer.BadParameter(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}", param_hint="--format")
        if fmt == "csv" and output.exists() and not output.is_dir():
            console.print(f"[red]{output} is an existing file[/red]: a csv export writes a folder of tables; "
                          "name a folder (new or existing) with -o.")
            raise typer.Exit(2)
        if fmt != "csv" and output.is_dir():
            console.print(f"[red]{output} is a folder[/red]: a {fmt} export writes one file; name a file with -o.")
            raise typer.Exit(2)
        ws, watchlist, store = open_workspace_or_store(workspace, db)
        when = parse_as_of(as_of)
        # the same records as `report --as-of` and `analyze --as-of` for this date: re-derived when the stored
        # analysis was made for another date
        if coverage and watchlist is None:
            console.print("[red]--coverage needs the workspace's watchlist to judge the routes under it[/red] (this "
                          "store has none here: export its stored judgements without --coverage)")
            raise typer.Exit(2)
        declared = resolve_coverage(coverage, watchlist) if coverage else None
        with console.status(f"deriving visits and trips as of {when:%Y-%m-%d}"):
            analysis, note = derive_as_of(store, watchlist, when, coverage=declared)
        if note:
            console.print(note)
        if analysis is not None and declared is None and declared_judgements(store, when):  # one id, two answers
            console.print(f"[yellow]the judgements stored for {when:%Y-%m-%d %H:%M} UTC were made under a declared "
                          "coverage (`analyze -c`); this export judges the routes on the looks in the coverage "
                          "ledger: give the same --coverage to export those[/yellow]")
        data = gather(store, when, analysis=analysis, workspace_root=ws.root)
        try:
            path = run(data, fmt, output)
        except OSError as exc:
            console.print(f"[red]cannot write {output}[/red]: {exc}")
            raise typer.Exit(2) from None
        placed = sum(1 for x in data.sightings if x.lon is not None and x.lat is not None)
        where = "" if fmt == "csv" or placed == len(data.sightings) else \
            f" ({len(data.sightings) - placed} without a position are only in the CSV export)"
        console.print(f"{fmt} written to {path}: {len(data.sites)} sites, "
                      f"{placed if fmt != 'csv' else len(data.sightings)} sightings{where}, "
                      f"{len(data.trips)} trips as of {when:%Y-%m-%d %H:%M} UTC")

    @app.command()
    def serve(
        host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1 keeps it on this machine)")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="TCP port")] = 8000,
        token: Annotated[str | None, typer.Option(envvar="ROUTEWATCH_TOKEN", help="Bearer token for write "
                                                  "endpoints (none: read-only)")] = None,
        as_of: Annotated[str | None, typer.Option("--as-of", help="Show records up to this date (default: now)")] = None,
        coverage: CoverageOpt = None,
        tiles: TilesOpt = None,
        max_upload: Annotated[int, typer.Option(help="Largest request body accepted, bytes")] = 1_000_000,
        workers: Annotated[int, typer.Option(min=1, max=64, help="Server processes (each holds its own snapshot)")] = 1,
        cache: Annotated[bool, typer.Option(help="Answer repeated reads from whole responses kept per snapshot")] = True,
        workspace: WorkspaceOpt = None,
        db: DbOpt = None,
    ) -> None:
        """Serve the dashboard and the JSON API (docs at /api/docs); read-only unless a token is set.

        With --coverage the routes are judged under that declared schedule (named in the watchlist, or
        sensor:every_days:usable), and every page says so.

        Example: ROUTEWATCH_TOKEN=secret routewatch serve --port 8000 --coverage near-daily -w demo-workspace
        """
        import json
        import os

        import uvicorn

        ws, watchlist, store = open_workspace_or_store(workspace, db)
        declared = resolve_coverage(coverage, watchlist)
        if declared and watchlist is None:
            console.print(f"[red]No watchlist at {ws.watchlist_path}[/red]: --coverage needs one to judge the routes.")
            raise typer.Exit(2)
        when = parse_as_of(as_of) if as_of else None
        settings = {"workspace": str(ws.root), "db": ws.db_url, "as_of": when.isoformat() if when else None,
                    "coverage": list(coverage or []), "tiles": tiles, "max_upload": max_upload, "cache": cache}
        mode = "writes need the token" if token else "read-only"
        console.print(f"serving {ws.root} on http://{host}:{port}/ ({mode}, {workers} worker(s))")
        if workers == 1:
            app_ = _serve_app(settings, token, store=store, watchlist=watchlist)
            uvicorn.run(app_, host=host, port=port, log_level="warning")
            return
        store.close()
        os.environ[SERVE_ENV] = json.dumps(settings)  # the workers are fresh processes: they read it back
        if token:
            os.environ["ROUTEWATCH_TOKEN"] = token
        uvicorn.run("routewatch.cli.surfaces:serve_app_from_env", factory=True, workers=workers, host=host,
                    port=port, log_level="warning")

    @app.command()
    def watch(
        every: Annotated[str, typer.Option(help="Interval between cycles: 30m, 6h, 1d")] = "6h",
        webhook: Annotated[str | None, typer.Option(help="URL to POST each alert to (JSON)")] = None,
        log: Annotated[Path | None, typer.Option("--log", help="File to append each alert to (JSON lines)")] = None,
        sensor: Annotated[list[str] | None, typer.Option(help="Fetch and detect this sensor each cycle (repeat)")] = None,
        cycles: Annotated[int | None, typer.Option(help="Stop after this many cycles (default: run forever)")] = None,
        attempts: Annotated[int, typer.Option(help="Webhook attempts per cycle")] = 5,
        backoff: Annotated[float, typer.Option(help="First retry wait in seconds (doubles each retry)")] = 2.0,
        notify_initial: Annotated[bool, typer.Option(help="Also alert the first status seen per route")] = False,
        coverage: CoverageOpt = None,
        workspace: WorkspaceOpt = None,
        db: DbOpt = None,
    ) -> None:
        """Run the chain every interval and alert (webhook and/or log) once per route status change.

        Example: routewatch watch --every 6h --webhook https://hooks.example.org/rw --log alerts.jsonl -w my-case
        """
        from datetime import UTC, datetime

        from routewatch.alerts import AlertConfig, baselines_since, default_chain, parse_every, pending
        from routewatch.alerts import watch as run

        try:
            interval = parse_every(every)
            cfg = AlertConfig(webhook, log, attempts=attempts, backoff_s=backoff, notify_initial=notify_initial)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        ws, watchlist, store = open_workspace_or_store(workspace, db)
        if watchlist is None:
            console.print(f"[red]No watchlist at {ws.watchlist_path}[/red]: watch needs one to analyze.")
            raise typer.Exit(2)
        chain = default_chain(ws, store, watchlist, tuple(sensor or ()), resolve_coverage(coverage, watchlist))

        cycle_start = [datetime.now(UTC)]

        def report_cycle(n: int, sent: list[dict]) -> None:
            waiting = pending(store)
            changes = ", ".join(f"{a['route']}: {a['old_status']} -> {a['new_status']}" for a in sent)
            first = baselines_since(store, cycle_start[0])
            cycle_start[0] = datetime.now(UTC)
            if first:  # a route's first status is the reference for changes, not an alert (unless --notify-initial)
                changes += ("; " if changes else "") + "baseline recorded, not sent: " + ", ".join(
                    f"{b['route']}: {b['new_status']}" for b in first)
            if waiting:
                what = ", ".join(f"{a['route']}: {a['old_status']} -> {a['new_status']}" for a in waiting[:10])
                changes += ("; " if changes else "") + (
                    f"{len(waiting)} alert(s) pending delivery ({what}; last error: {waiting[-1]['last_error']}), "
                    "retried next cycle")
            console.print(f"cycle {n}: {changes or 'no change'}", markup=False)

        run(store, chain, cfg, interval, cycles=cycles, on_cycle=report_cycle)
