"""CLI verbs of the imagery stage: `fetch` (STAC, windowed, cached, resumable) and `scenes add FOLDER`."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(stderr=True)

WorkspaceOpt = Annotated[Path | None, typer.Option("--workspace", "-w",
                                                   help="Workspace folder (default: ROUTEWATCH_WORKSPACE or .)")]
DbOpt = Annotated[str | None, typer.Option("--db", help="Store URL (default: ROUTEWATCH_DB or the workspace's "
                                                         "SQLite file)")]


def _day(text: str, end: bool = False) -> datetime:
    """YYYY-MM-DD (start of the UTC day, or its end for --to) or an ISO time."""
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            if end:
                return datetime.combine(d + timedelta(days=1), time(0), tzinfo=UTC) - timedelta(microseconds=1)
            return datetime.combine(d, time(0), tzinfo=UTC)
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date (YYYY-MM-DD) or ISO time") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _failures(rows: list[tuple[str, str]]) -> None:
    for path, message in rows:
        console.print(f"[yellow]skipped[/yellow] {path}: {message}" if path not in message else
                      f"[yellow]skipped[/yellow] {message}")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""

    @app.command("fetch")
    def fetch_cmd(
        site: Annotated[str, typer.Option("--site", help="site key from the watchlist")],
        start: Annotated[str, typer.Option("--from", help="first day (YYYY-MM-DD, UTC)")],
        end: Annotated[str, typer.Option("--to", help="last day (YYYY-MM-DD, UTC, inclusive)")],
        sensor: Annotated[str, typer.Option("--sensor", help="sentinel-1 or sentinel-2")] = "sentinel-2",
        endpoint: Annotated[str, typer.Option(
            "--stac", help="planetary-computer, earth-search, or a STAC API URL")] = "planetary-computer",
        token_url: Annotated[str | None, typer.Option(
            "--token-url", help="SAS token endpoint for signing asset URLs (Planetary Computer style)")] = None,
        max_cloud: Annotated[float | None, typer.Option(
            "--max-cloud", help="skip Sentinel-2 scenes cloudier than this fraction (0-1)")] = None,
        max_items: Annotated[int | None, typer.Option("--max-items", help="stop after this many scenes")] = None,
        workspace: WorkspaceOpt = None,
        db: DbOpt = None,
    ) -> None:
        """Find scenes over a site and download only the site window of each (cached; resumes if interrupted).

        Example: routewatch fetch --site rajin --from 2023-08-01 --to 2024-03-02 --sensor sentinel-1
        """
        from routewatch.cli.core import open_workspace_or_store
        from routewatch.sources.imagery.ingest import fetch_site, resolve_site

        if sensor not in ("sentinel-1", "sentinel-2"):
            raise typer.BadParameter(f"--sensor must be sentinel-1 or sentinel-2, not {sensor!r}")
        if _day(end, end=True) < _day(start):
            raise typer.BadParameter(f"--to {end} is before --from {start}")
        ws, _, store = open_workspace_or_store(workspace, db)  # neither watchlist nor store: said, nothing made
        ws.ensure()
        try:
            site_rec = resolve_site(ws, site, store)
        except KeyError as exc:
            console.print(f"[red]error:[/red] {exc.args[0]}")
            raise typer.Exit(2) from None
        import requests
        from pystac_client.exceptions import APIError

        try:
            result = fetch_site(ws, site_rec, _day(start), _day(end, end=True), sensor, endpoint=endpoint,
                                token_url=token_url, max_cloud=max_cloud, max_items=max_items, store=store)
        except (APIError, requests.RequestException) as exc:  # offline, or the catalogue is down
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            console.print(f"[red]fetch from the STAC catalogue {escape(endpoint)} stopped[/red]: {escape(first)}")
            raise typer.Exit(2) from None
        _failures(result.failures)
        console.print(f"{result.found} scenes found, {len(result.scenes)} stored "
                      f"({result.cached} from the cache), {len(result.failures)} failed")
        if result.failures:  # the others are in; a script still sees that something was skipped
            raise typer.Exit(1)

    scenes_app = typer.Typer(help="Manage scenes in the store (your own GeoTIFFs and COGs).", no_args_is_help=True)
    app.add_typer(scenes_app, name="scenes")

    @scenes_app.command("add")
    def scenes_add_cmd(
        paths: Annotated[list[Path], typer.Argument(
            help="folders of GeoTIFFs/COGs (searched recursively) or image files")],
        sensor: Annotated[str | None, typer.Option(
            "--sensor", help="sensor name: planetscope, skysat, maxar, sentinel-2, sentinel-1, ...")] = None,
        bands: Annotated[str | None, typer.Option(
            "--bands", help="band names in file order, e.g. red,green,blue,nir")] = None,
        when: Annotated[str | None, typer.Option(
            "--time", help="acquisition time (ISO, UTC) when the files do not say")] = None,
        sar_values: Annotated[str | None, typer.Option(
            "--sar-values", help="SAR files: amplitude (default: a GRD's digital numbers, a rendering) or "
                                 "intensity (power: sigma0, gamma0 products)")] = None,
        workspace: WorkspaceOpt = None,
        db: DbOpt = None,
    ) -> None:
        """Add your own images (any CRS, any band layout) as scenes; bad files are reported and skipped.

        Example: routewatch scenes add ~/planet/rajin --sensor planetscope --bands blue,green,red,nir

        A band file (B04.tif, scene_B04.tif) brings the other bands of its scene in its folder.
        """
        from routewatch.cli.core import open_workspace
        from routewatch.detect.sar import SAR_VALUES
        from routewatch.sources.imagery.ingest import add_folder, date_only
        from routewatch.sources.imagery.local import SUFFIXES, AddResult, has_time_of_day
        from routewatch.sources.imagery.looks import is_sar

        if sar_values is not None and sar_values not in SAR_VALUES:
            console.print(f"[red]error:[/red] --sar-values must be {' or '.join(SAR_VALUES)}, got {sar_values!r}")
            raise typer.Exit(2)
        for path in paths:
            if not path.is_dir() and not path.is_file():
                console.print(f"[red]error:[/red] {path}: no such file or folder")
                raise typer.Exit(2)
            if path.is_file() and path.suffix.lower() not in SUFFIXES:
                console.print(f"[red]error:[/red] {path}: not a GeoTIFF (files ending {', '.join(SUFFIXES)}); "
                              "convert it (gdal_translate -of COG) or give its folder")
                raise typer.Exit(2)
        ws, _, store = open_workspace(workspace, db)  # no workspace: says so and creates nothing
        ws.ensure()
        given = _day(when) if when else None
        if when and given is not None and not has_time_of_day(when):  # a date alone, however written: its 00:00 UTC
            given = given.replace(hour=0, minute=0, second=0, microsecond=0)
        result = AddResult()
        for path in paths:
            part = add_folder(path, store=store, bands=bands.split(",") if bands else None,
                              when=given, when_has_time=not when or has_time_of_day(when), sensor=sensor,
                              sar_values=sar_values)
            result.merge(part)
        table = Table("scene", "sensor", "time (UTC)", "pixel (m)", "bands", "note")
        dated, unread, written = 0, [], 0
        for s in result.scenes:
            alone = date_only(s)
            dated += alone
            notes = ["SIMULATED"] if s.simulated else []
            if alone:
                notes.append("date only")
            if s.attributes.get("time_source") == "write time":
                notes.append("write time")
                written += 1
            sar = s.attributes.get("kind") == "sar" or is_sar(s.sensor)  # as the detectors tell it (vv, hh bands too)
            if not sar and not {"blue", "green", "red"} <= set(s.attributes.get("bands", {})):
                notes.append("no detector reads these bands")  # said now, not as a water-mask failure at detect
                unread.append(Path(s.uri or "").name)
            table.add_row(Path(s.uri or "").name, s.sensor,
                          f"{s.acquired:%Y-%m-%d}" if alone else f"{s.acquired:%Y-%m-%d %H:%M}",
                          f"{s.resolution_m:.2f}", ",".join(s.attributes.get("bands", {})), ", ".join(notes))
        Console().print(table)
        if dated:
            console.print(f"[yellow]{dated} scene(s) give a date but no time of day (stored at 00:00 UTC): "
                          "enough for the coverage ledger, but `fuse` cannot match AIS to their ships; add them "
                          "again with --time YYYY-MM-DDTHH:MMZ to give the time[/yellow]")
        if written:
            console.print(f"[yellow]{written} scene(s) are dated by the time their file was written (no acquisition "
                          "time in the name, tags or annotations): an export's time, not the image's, unless the "
                          "provider wrote it so. Add them again with --time YYYY-MM-DDTHH:MMZ to date them[/yellow]")
        if unread:
            console.print(f"[yellow]{len(unread)} scene(s) ({', '.join(unread[:3])}{', ...' if len(unread) > 3 else ''}) "
                          "have no blue, green and red bands for the optical detector, and are not SAR: `detect` "
                          "will not find ships in them. Add them again with --sensor sentinel-1 (a SAR file) or "
                          "--bands naming the file's bands in order (e.g. --bands blue,green,red,nir)[/yellow]")
        _failures(result.failures)
        again = len(result.scenes) - result.new
        console.print(f"{result.new} scenes added" + (f", {again} already in the store" if again else "")
                      + f", {len(result.failures)} skipped (scenes or files, listed above)")
        if result.moved:
            console.print(f"{len(result.moved)} stored scenes were the same acquisitions, read from files since "
                          "moved or rewritten, or holding no data: replaced by these, their looks removed (run "
                          "detect again)")
        if result.redated:
            console.print(f"[yellow]{len(result.redated)} stored scenes are dated anew: their looks and detections, "
                          "made at the old time, are removed; run `routewatch detect --site` again[/yellow]")
        if not result.scenes and not result.failures:  # nothing to read at all: say so (and fail a script)
            console.print(f"[red]error:[/red] {', '.join(map(str, paths))}: no GeoTIFF in it or below it (files ending "
                          f"{', '.join(SUFFIXES)})")
            raise typer.Exit(1)
        if result.failures:  # the others are in; a script still sees that something was skipped
            raise typer.Exit(1)
