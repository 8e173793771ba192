"""CLI verbs of the ais stage: ``ais ingest``, ``ais visits``, ``ais gaps`` and the top-level ``fuse``."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from routewatch.cli.core import DbOpt, WorkspaceOpt, console, open_workspace

ais_app = typer.Typer(help="AIS: ingest NMEA and provider CSVs, port visits, gaps and cues.", no_args_is_help=True)


def _time(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{name}: {text!r} is not an ISO date or time") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


EDGE_DAYS = 31  # `ais gaps` over a window reads at most this many days each side of it for the gaps' other ends


def _window(since: str | None, until: str | None, days: bool = True) -> tuple[datetime | None, datetime | None]:
    """``--since`` and ``--until`` as UTC times; an empty window (until before since: by day for the AIS
    commands, whose windows are whole days; to the time with ``days=False``) is refused, not read as "no AIS" or
    widened into another."""
    s, u = _time(since, "--since"), _time(until, "--until")
    if s is not None and u is not None and ((_day_start(u) < _day_start(s)) if days else u < s):
        raise typer.BadParameter(f"--until {until} is before --since {since}")
    return s, u


def _day_start(t: datetime) -> datetime:
    """Midnight UTC of ``t``'s day: the AIS windows are whole days."""
    return datetime(t.year, t.month, t.day, tzinfo=UTC)


def _check_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot be written (a folder, or in a folder that is not there) before a command
    reads and stores anything: said after, it had ended the command with a traceback, its results stored."""
    if not out.resolve().parent.is_dir() or out.is_dir():
        why = "is a folder; name a file" if out.is_dir() else f"{out.resolve().parent} is not a folder"
        console.print(f"[red]--out {out}: {why}[/red]")
        raise typer.Exit(2)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


def _mmsi_map(ws, watchlist):
    from routewatch.sources.ais.registry import mmsi_to_vessel, read_statics, vessel_registry

    reg = vessel_registry(ws.ais_dir)
    lengths = {int(m): float(v) for m, v in reg.select("mmsi", "length_m").drop_nulls().iter_rows()}
    return mmsi_to_vessel(watchlist.vessels, reg, read_statics(ws.ais_dir)), lengths


def _mmsis(ws) -> list[int]:
    """The ships in the workspace's AIS (one column of every partition)."""
    from routewatch.sources.ais.partitions import scan_positions

    return scan_positions(ws.ais_dir).select("mmsi").unique().collect()["mmsi"].to_list()


def _days(ws, since, until, label):
    from routewatch.sources.ais.partitions import day_dirs, iter_days

    s, u = _time(since, "--since"), _time(until, "--until")
    days = day_dirs(ws.ais_dir, s.date() if s else None, u.date() if u else None)
    if not days:
        held = day_dirs(ws.ais_dir)
        if held:  # there is AIS, just not in the days asked for
            console.print(f"[red]No AIS days between {s.date() if s else 'the start'} and "
                          f"{u.date() if u else 'the end'}[/red]: the workspace holds {held[0][0]} to {held[-1][0]} "
                          f"({len(held)} days).")
        else:
            console.print(f"[red]No AIS partitions in {ws.ais_dir}[/red]: run `routewatch ais ingest FILES` first.")
        raise typer.Exit(2)

    def gen(progress):
        task = progress.add_task(label, total=len(days))
        for _, frame in iter_days(ws.ais_dir, s.date() if s else None, u.date() if u else None):
            yield frame
            progress.advance(task)
    return gen


def _without_date_only_scenes(store, det):
    """Detections whose look's scene has an acquisition time of day; and how many were left out for lack of one
    (a scene stored at 00:00 UTC because only its date is known: AIS at midnight says nothing of its ships)."""
    import polars as pl

    if det.height == 0 or det["look_id"].is_null().all():
        return det, 0
    t0, t1 = det["time"].min(), det["time"].max()
    scene_of = {lk.id: lk.scene_id for lk in store.looks(since=t0, until=t1)}
    from routewatch.sources.imagery.ingest import date_only

    dated = {s.id for s in store.scenes(since=t0, until=t1) if date_only(s)}
    drop = [scene_of.get(lk) in dated for lk in det["look_id"].to_list()]
    keep = det.filter(~pl.Series(drop, dtype=pl.Boolean))
    return keep, det.height - keep.height


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""
    app.add_typer(ais_app, name="ais")

    @ais_app.command("ingest")
    def ingest(
        files: Annotated[list[Path], typer.Argument(help="NMEA files (.txt, .nmea, .gz) or provider CSVs")],
        workspace: WorkspaceOpt = None,
        db: DbOpt = None,
        default_time: Annotated[str | None, typer.Option(help="UTC time for NMEA lines that carry none")] = None,
        mapping: Annotated[Path | None, typer.Option(help="TOML column mapping for other CSV layouts")] = None,
        force: Annotated[bool, typer.Option(help="Re-read files already in the manifest (still adds nothing twice)")] = False,
    ) -> None:
        """Ingest AIS into the workspace's day partitions and vessel registry; bad lines are reported, not fatal.

        Example: routewatch ais ingest feed-2024-01-*.nmea marinecadastre_2023_01_11.csv -w rajin-case
        """
        from routewatch.sources.ais.ingest import ingest_file
        from routewatch.sources.ais.providers import RAGGED, load_mapping
        from routewatch.sources.ais.records import registry_rows, store_ais
        from routewatch.sources.ais.registry import link_watchlist, vessel_registry

        ws, watchlist, store = open_workspace(workspace, db)
        try:
            cmap = load_mapping(mapping) if mapping else None
        except ValueError as exc:
            console.print(f"[red]{escape(str(exc))}[/red]")
            raise typer.Exit(2) from None
        if cmap is not None and "sog_kn" not in cmap.columns:
            console.print(f"[yellow]{mapping}: no speed column (sog_kn): the positions it reads carry no speed, so "
                          "`ais visits` cannot see a ship stop (a moored ship stays at level 1)[/yellow]")
        table = Table("file", "kind", "added", "duplicates", "bad lines", "static")
        failed = 0
        with _progress() as progress:
            task = progress.add_task("ingest", total=len(files))
            for f in files:
                try:
                    s = ingest_file(f, ws.ais_dir, default_time=_time(default_time, "--default-time"),
                                    mapping=cmap, force=force)
                except (OSError, ValueError) as exc:
                    failed += 1
                    store.record_failure("ais", str(Path(f).resolve()), str(exc))  # as the manifest names it
                    text = str(exc) if str(exc).startswith(str(f)) else f"{f}: {exc}"  # named once
                    console.print(f"[red]{escape(text)}[/red]")
                    continue
                finally:
                    progress.advance(task)
                # read now (or before): an earlier failure of it is past, however the path was written then
                store.clear_failures("ais", [str(Path(f).resolve()), str(f)])
                if s.skipped:
                    table.add_row(f.name, s.kind, "0", "-", "-", "already ingested")
                    continue
                table.add_row(f.name, s.kind, f"{s.added:,}", f"{s.duplicates:,}", f"{s.report.bad_total:,}",
                              f"{s.statics_added:,}")
                if s.report.bad:
                    console.print(f"  [yellow]{escape(f.name)}: bad lines by reason:[/yellow] "
                                  + escape(", ".join(f"{reason}: {n:,}" for reason, n in sorted(
                                      s.report.bad.items(), key=lambda kv: -kv[1]))))
                for line, reason, text in s.report.examples:  # the first five of each reason
                    console.print(f"  [yellow]{escape(f.name)}:{line}[/yellow] {escape(reason)}: {escape(text)}")
                if s.unread and s.report.statics and RAGGED not in s.report.bad:
                    # no position, but ships named (a vessel list): what it gives, the registry has; not a failure
                    console.print(f"  [yellow]{escape(f.name)}: no usable position in it; its {s.report.statics:,} "
                                  "registry records (names, IMO numbers, call signs, sizes) were read[/yellow]")
                elif s.unread:
                    shifted = max(s.report.bad, key=s.report.bad.get, default="") == RAGGED
                    check = ("the file's separator (a mapping's delimiter) and quoting" if shifted
                             else "the column mapping (its time_format, lon and lat)")
                    console.print(f"  [yellow]{escape(f.name)}: every row is bad, so the file is not marked as "
                                  f"ingested: check {check} against the examples above and run again[/yellow]")
                    failed += 1  # nothing read: a script must see it, as it sees an unreadable file
                    store.record_failure("ais", str(Path(f).resolve()), "every row is bad: " + ", ".join(
                        f"{reason}: {n:,}" for reason, n in s.report.bad.items()))
                if s.report.dead_reckoning:
                    console.print(f"  {escape(f.name)}: {s.report.dead_reckoning:,} positions are the ships' own "
                                  "dead-reckoning estimates (AIS time stamp 62: no GNSS fix), kept")
                if s.report.untimed:
                    console.print(f"  [yellow]{f.name}: {s.report.untimed:,} positions and static reports carry no "
                                  "time and were left out; run again with --default-time (UTC) to add them (the file is not marked "
                                  "as ingested)[/yellow]")
        console.print(table)
        linked = link_watchlist(vessel_registry(ws.ais_dir), watchlist.vessels)
        store_ais(store, vessels=registry_rows(linked))
        if failed:
            raise typer.Exit(1)

    @ais_app.command("visits")
    def visits(
        workspace: WorkspaceOpt = None,
        db: DbOpt = None,
        since: Annotated[str | None, typer.Option(help="First day (YYYY-MM-DD)")] = None,
        until: Annotated[str | None, typer.Option(help="Last day (YYYY-MM-DD)")] = None,
        entry_m: Annotated[float, typer.Option(help="Entry distance from the site polygon, metres")] = 1000.0,
        exit_m: Annotated[float, typer.Option(help="Exit distance (hysteresis), metres")] = 2000.0,
        min_level: Annotated[int, typer.Option(min=1, max=4,
                                               help="Keep visits of at least this GFW-style level (1-4)")] = 2,
        out: Annotated[Path | None, typer.Option(help="Also write the visits as CSV")] = None,
    ) -> None:
        """Port visits at the watched sites from the AIS partitions, stored as AIS sightings with evidence.

        Example: routewatch ais visits -w rajin-case --since 2023-08-01 --min-level 2 --out visits.csv
        """
        import polars as pl

        from routewatch.analysis.port_visits import VisitConfig, port_visits
        from routewatch.sources.ais.records import (
            reach_stored_visits,
            registry_rows,
            store_ais,
            visit_records,
            windowed_visits,
        )
        from routewatch.sources.ais.registry import link_watchlist, vessel_registry

        if not 0 < entry_m <= exit_m or not math.isfinite(exit_m):
            raise typer.BadParameter(f"--exit-m ({exit_m:g}) must be at least --entry-m ({entry_m:g}), both positive: "
                                     "a ship leaves only once farther out than where it entered (hysteresis)")
        ws, watchlist, store = open_workspace(workspace, db)
        cfg = VisitConfig(entry_m=entry_m, exit_m=exit_m, min_level=min_level)
        s, u = _window(since, until)
        _days(ws, since, until, "visits")  # no AIS in the window asked for: said of that window, not the one read
        if out is not None:
            _check_out(out)  # said before anything is read and stored
        if s is not None or u is not None:  # read on over the days of stored visits that reach the window's edges
            lo, hi = reach_stored_visits(store, watchlist.sites, s and _day_start(s),
                                         u and _day_start(u) + timedelta(days=1), timedelta(hours=cfg.split_h))
            # and over the silence a call may hold (split_h) before the window: a call that began then below
            # --min-level (entered at 21:46, silent at its berth for 29 h) was stored by no run, so no stored
            # visit reaches back to its entry (one day back had lost entries older than that)
            if lo is not None and s is not None:
                lo = min(lo, _day_start(s) - timedelta(hours=cfg.split_h))
            # a day past a stored visit's ends: its approach and its departure, which make its level, lie
            # outside it (read from its first position inside, a run had lost the entry and stored the call
            # again a level lower)
            if lo is not None:
                lo = _day_start(lo) - timedelta(days=1)
            if hi is not None:
                hi = _day_start(hi - timedelta(microseconds=1)) + timedelta(days=2)
            since = lo.date().isoformat() if lo is not None else None
            until = (hi - timedelta(microseconds=1)).date().isoformat() if hi is not None else None
        gen = _days(ws, since, until, "visits")
        with _progress() as progress:
            frame = port_visits(gen(progress), watchlist.sites, cfg)
        # what the window asked for: the days read past its edges complete the visits that cross them, but a
        # visit wholly outside it is not part of the answer: neither printed, written nor stored (a run had
        # stored, and rewritten, visits of days it was not asked about)
        if s is not None:
            frame = frame.filter(pl.col("end") >= _day_start(s))
        if u is not None:
            frame = frame.filter(pl.col("start") < _day_start(u) + timedelta(days=1))
        mmsi_vessel, lengths = _mmsi_map(ws, watchlist)
        _, sightings, evidence = visit_records(frame, mmsi_vessel, lengths)
        named = pl.Series([sg.vessel is not None for sg in sightings], dtype=pl.Boolean)  # a record a frame row
        # a run over all the AIS replaces the earlier visits at the watched sites; one over some days adds to
        # them, and a visit it cut at the window's edge does not replace what a run that saw more stored
        whole = since is None and until is None
        remove: list[str] = []
        if not whole:
            sightings, evidence, remove = windowed_visits(store, sightings, evidence,
                                                          [int(m) for m in frame["mmsi"].to_list()])
        linked = link_watchlist(vessel_registry(ws.ais_dir), watchlist.vessels)  # the watchlist as it is now
        store_ais(store, sightings=sightings, evidence=evidence,
                  replace=("visits", watchlist.sites) if whole else None, remove=remove,
                  mmsis=_mmsis(ws) if whole else None, vessels=registry_rows(linked))
        shown = frame.with_columns(named.alias("_named"))
        if out:
            shown.drop("_named").write_csv(out)
        table = Table("site", "visits", "identified", "mean confidence")
        for site, g in shown.group_by("site", maintain_order=True):  # identified as the records name them
            table.add_row(str(site[0]), str(g.height), str(int(g["_named"].sum())), f"{g['confidence'].mean():.2f}")
        console.print(table)
        note = "" if len(sightings) == frame.height else \
            f" ({frame.height - len(sightings)} cut at the window's edge, already stored whole)"
        console.print(f"{len(sightings)} AIS visits stored as sightings (event ais_visit){note}.")

    @ais_app.command("gaps")
    def gaps(
        workspace: WorkspaceOpt = None,
        db: DbOpt = None,
        since: Annotated[str | None, typer.Option(help="First day (YYYY-MM-DD)")] = None,
        until: Annotated[str | None, typer.Option(help="Last day (YYYY-MM-DD)")] = None,
        min_gap_h: Annotated[float, typer.Option(help="Report silences longer than this, hours")] = 6.0,
        max_speed_kn: Annotated[float, typer.Option(help="Fastest the ship could sail while dark, knots")] = 18.0,
        min_dwell_h: Annotated[float, typer.Option(help="Least time at a site to count it reachable, hours")] = 2.0,
        out: Annotated[Path | None, typer.Option(help="Also write the cues (site, window, MMSI) as CSV")] = None,
    ) -> None:
        """AIS gaps with the watched sites each ship could have visited while dark: cues for imagery.

        Example: routewatch ais gaps -w rajin-case --min-gap-h 12 --max-speed-kn 14 --out cues.csv
        """
        from routewatch.analysis.gaps import GapConfig, cues_frame, visits_and_gaps
        from routewatch.sources.ais.records import gap_rows, store_ais
        from routewatch.sources.ais.registry import vessel_at

        for name, value, least in (("--min-gap-h", min_gap_h, None), ("--max-speed-kn", max_speed_kn, None),
                                   ("--min-dwell-h", min_dwell_h, 0.0)):
            if not (value >= least if least is not None else value > 0) or not math.isfinite(value):
                raise typer.BadParameter(f"{name} must be {'at least 0' if least is not None else 'positive'}, "
                                         f"got {value:g}")
        if out is not None:
            _check_out(out)  # said before anything is read and stored
        s, u = _window(since, until)
        ws, watchlist, store = open_workspace(workspace, db)
        gen = _days(ws, since, until, "gaps")

        def with_edges(progress):
            """The window's days between each of its ships' last position before it and first after it: a gap
            that crosses an edge of the window (one that only crossed midnight, run day by day) is the window's
            too (read from the window alone, every such gap had been dropped without a word). The days beyond
            are read one at a time, only until every ship of the window is found, and at most EDGE_DAYS each way
            (a ship new in the window would have them all read: quadratic day by day); a longer silence across
            an edge, or one that spans the whole window, is reported by a run over all the AIS."""
            import polars as pl

            from routewatch.sources.ais.partitions import day_dirs, read_day, scan_positions

            if s is None and u is None:
                yield from gen(progress)
                return
            ships = scan_positions(ws.ais_dir, s and _day_start(s),
                                   u and _day_start(u) + timedelta(days=1) - timedelta(microseconds=1)
                                   ).select("mmsi").unique().collect()["mmsi"]

            def edge(days, first: bool) -> pl.DataFrame | None:
                pending, found = ships, []
                for _, ddir in days:
                    if pending.len() == 0:
                        break
                    part = read_day(ddir).filter(pl.col("mmsi").is_in(pending.implode()))
                    if part.height:
                        part = part.group_by("mmsi", maintain_order=True).first() if first else \
                            part.group_by("mmsi", maintain_order=True).last()
                        found.append(part)
                        pending = pending.filter(~pending.is_in(part["mmsi"].implode()))
                return pl.concat(found).sort("mmsi") if found else None

            if s is not None:  # days before the window, latest first; each ship's last position there
                prior = edge(reversed(day_dirs(ws.ais_dir, (_day_start(s) - timedelta(days=EDGE_DAYS)).date(),
                                               (_day_start(s) - timedelta(days=1)).date())), False)
                if prior is not None:
                    yield prior
            yield from gen(progress)
            if u is not None:  # days after it, earliest first; each ship's first position there
                later = edge(day_dirs(ws.ais_dir, (_day_start(u) + timedelta(days=1)).date(),
                                      (_day_start(u) + timedelta(days=EDGE_DAYS)).date()), True)
                if later is not None:
                    yield later

        with _progress() as progress:
            _, frame = visits_and_gaps(with_edges(progress), watchlist.sites, None,
                                       GapConfig(min_gap_h, max_speed_kn, min_dwell_h))
        mmsi_vessel, _ = _mmsi_map(ws, watchlist)
        rows, evidence = gap_rows(frame, mmsi_vessel)
        whole = since is None and until is None  # as for visits: only a run over all the AIS replaces
        mmsis = _mmsis(ws)
        # a run over some days replaces the gaps with an end in them: it read all their positions
        read = None if whole else (
            _day_start(s) if s else datetime(1000, 1, 1, tzinfo=UTC),
            _day_start(u) + timedelta(days=1) if u else datetime(9999, 1, 1, tzinfo=UTC),
            timedelta(days=EDGE_DAYS), mmsis)
        store_ais(store, evidence=evidence, gaps=rows, replace=("gaps", mmsis) if whole else None, gaps_read=read)
        cues = cues_frame(frame)
        if out:
            cues.write_csv(out)
        table = Table("mmsi", "vessel", "site", "window start (UTC)", "window end (UTC)")
        for r in cues.head(30).iter_rows(named=True):
            table.add_row(str(r["mmsi"]), vessel_at(mmsi_vessel, r["mmsi"], r["gap_start"], r["gap_end"]) or "-",
                          r["site"],
                          f"{r['window_start']:%Y-%m-%d %H:%M}", f"{r['window_end']:%Y-%m-%d %H:%M}")
        console.print(table)
        console.print(f"{frame.height} gaps over {min_gap_h:g} h, {cues.height} cues stored in ais_gaps.")

    @app.command("fuse")
    def fuse(
        detections: Annotated[Path | None, typer.Option(help="Detections GeoJSON (default: image sightings in the store)")] = None,
        workspace: WorkspaceOpt = None,
        db: DbOpt = None,
        time: Annotated[str | None, typer.Option(help="Image time (UTC) for features without a 'time' property, or with a "
                                                        "date alone; a feature's own time wins")] = None,
        since: Annotated[str | None, typer.Option(help="Store sightings from this time")] = None,
        until: Annotated[str | None, typer.Option(help="Store sightings until this time")] = None,
        lookback_days: Annotated[float, typer.Option(min=0.0, help="AIS days before an image used for "
                                                                   "reachability")] = 3.0,
        position_sigma: Annotated[float, typer.Option(min=1.0, help="Image georeference and AIS position error "
                                                                  "together, 1 sigma (m); raise it for images "
                                                                  "located to worse than 150 m")] = 150.0,
        ais_false_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of a watchlist vessel's prior "
                                                      "kept where its AIS places it elsewhere (AIS positions can be "
                                                      "false: spoofing); raise it for a fleet known to spoof")] = 0.02,
        out: Annotated[Path, typer.Option(help="Result file: .geojson or .csv")] = Path("fused.geojson"),
    ) -> None:
        """Match ship detections to AIS (identified, dark, unresolved where a ship AIS heard but cannot place
        could be the detection, or no-ais where no AIS is received near them) and score the unidentified ships
        against the watchlist.

        Example: routewatch fuse --detections rajin-2023-10-21.geojson --time 2023-10-21T01:52Z -w rajin-case
        """
        import polars as pl

        from routewatch.fuse import (
            NO_AIS,
            FuseConfig,
            FusionInputs,
            IdentifyConfig,
            fuse_detections,
            fused_sightings,
        )
        from routewatch.fuse.io import (
            assign_sites,
            detections_from_sightings,
            read_detections_geojson,
            write_result,
        )
        from routewatch.sources.ais.partitions import scan_positions
        from routewatch.sources.imagery.local import has_time_of_day

        _check_out(out)  # said before anything is fused and stored, not after
        ws, watchlist, store = open_workspace(workspace, db)
        if detections:
            copies: list[str] = []
            day_only: list[str] = []
            ghosts: list[str] = []
            try:
                det = read_detections_geojson(detections, _time(time, "--time"), left_out=copies, dateless=day_only,
                                              time_has_clock=not time or has_time_of_day(time), ghosts=ghosts)
            except (OSError, ValueError, KeyError) as exc:
                console.print(f"[red]{detections}: {exc}[/red]")
                raise typer.Exit(2) from None
            if copies:
                console.print(f"[yellow]{len(copies)} features are fusion's own results (ids fused-...) whose "
                              "detections are in the file too, or not named: left out[/yellow]")
            if ghosts:
                console.print(f"[yellow]{len(ghosts)} detections left out: `detect sar` took them for azimuth "
                              "ambiguities (property `ambiguity`)[/yellow]")
            if day_only:
                console.print(f"[yellow]{len(day_only)} detections left out: their time is a date alone, and AIS "
                              "cannot be matched at an unknown time of day (give the image time of day with --time)"
                              "[/yellow]")
        else:
            if time:  # the stored detections carry their scenes' times: --time would change nothing
                console.print("[yellow]--time is for --detections files; the stored detections keep their scenes' "
                              "times (`scenes add --time` dates a scene)[/yellow]")
            s, u = _window(since, until, days=False)
            det = detections_from_sightings(store.sightings(since=s, until=u))
            det, dateless = _without_date_only_scenes(store, det)
            if dateless:
                console.print(f"[yellow]{dateless} detections left out: their scenes give a date but no time of day, "
                              "and AIS cannot be matched at an unknown time (add the scenes again with `scenes add "
                              "--time`, then `detect` them again)[/yellow]")
        if det.height == 0:
            console.print("[yellow]No detections to fuse.[/yellow]")
            raise typer.Exit(0)
        moved: list[str] = []  # a detection's site: the watched site it lies in or at (a label is checked)
        det = assign_sites(det, watchlist.sites, corrected=moved)
        if moved:
            console.print(f"[yellow]{len(moved)} detections named a site that is not a watched site within 1 km of "
                          f"their point (e.g. {moved[0]}): given the site the point lies in or at, or none[/yellow]")
        t0, t1 = det["time"].min(), det["time"].max()
        # a day after the last image too: a watchlist vessel's first AIS position after an image can rule it out
        positions = scan_positions(ws.ais_dir, t0 - timedelta(days=lookback_days), t1 + timedelta(days=1)).collect()
        mmsi_vessel, lengths = _mmsi_map(ws, watchlist)
        cfg = FuseConfig(position_sigma_m=position_sigma)
        result = fuse_detections(det, positions, FusionInputs(watchlist.vessels, watchlist.routes, mmsi_vessel, lengths,
                                                              watchlist.sites), cfg,
                                 IdentifyConfig(ais_false_rate=ais_false_rate))
        sightings, evidence = fused_sightings(result)
        with store.transaction() as conn:
            store.add_evidence(evidence, conn=conn)
            store.add_sightings(sightings, conn=conn)
        try:
            write_result(result, out)
        except OSError as exc:
            console.print(f"[red]{out}: {exc}[/red] (the fused sightings are stored)")
            raise typer.Exit(1) from None
        counts = result.group_by("status", maintain_order=True).len()
        console.print(" ".join(f"{r['status']}: {r['len']}" for r in counts.iter_rows(named=True)))
        no_ais = result.filter(pl.col("status").eq(NO_AIS)).height
        if no_ais:
            console.print(f"[yellow]{no_ais} of {result.height} detections had no AIS coverage (no AIS position "
                          f"within {cfg.coverage_radius_m / 1000:g} km within +-{cfg.window_min:g} min of the image): "
                          f"status {NO_AIS}, not dark; their watchlist scores are in {out}.[/yellow]")
        named = (result.filter(pl.col("vessel").is_not_null()).group_by("status", maintain_order=True).len()
                 .sort("status"))
        by_status = ", ".join(f"{r['status']}: {r['len']}" for r in named.iter_rows(named=True))
        console.print(f"{named['len'].sum()} of {result.height} detections named a watchlist vessel"
                      + (f" ({by_status})" if by_status else "") + f"; results in {out}.")
