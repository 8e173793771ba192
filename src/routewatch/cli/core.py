"""CLI verbs of the core: init, import, analyze, status, demo, simulate coverage."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from routewatch.analysis.activity import describe_call, probability_meaning
from routewatch.model import Activity, CoverageAssumption
from routewatch.workspace import Workspace

console = Console()

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", help="Workspace folder (default: ROUTEWATCH_WORKSPACE or .)"),
]
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Store URL, e.g. postgresql+psycopg://user@host/db (default: ROUTEWATCH_DB or the "
        "workspace's SQLite file)",
    ),
]
AsOfOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="Judge as of this date (YYYY-MM-DD, end of that UTC day) or ISO time"),
]
CoverageOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--coverage",
        "-c",
        help="Declared coverage instead of the ledger: a schedule named in the watchlist (near-daily) or "
        "sensor:every_days:usable (planetscope:1:0.56); repeat to combine",
    ),
]


def parse_as_of(text: str | None) -> datetime:
    """A date means the end of that UTC day (evidence of the whole day counts); a time is taken as given."""
    if not text:
        return datetime.now(UTC)
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime.combine(d + timedelta(days=1), time(0, 0), tzinfo=UTC) - timedelta(microseconds=1)
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date (YYYY-MM-DD) or ISO time") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def resolve_coverage(specs: list[str] | None, watchlist: object) -> tuple[CoverageAssumption, ...] | None:
    from routewatch.watchlist import parse_coverage_spec

    if not specs:
        return None
    out: list[CoverageAssumption] = []
    named = getattr(watchlist, "coverage", {})
    for spec in specs:
        if spec in named:
            out.extend(named[spec])
        elif ":" in spec:
            try:
                out.append(parse_coverage_spec(spec))
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from None
        else:
            raise typer.BadParameter(
                f"unknown coverage schedule {spec!r}; named ones: {', '.join(named) or 'none'}"
            )
    return tuple(out)


def _load_watchlist(ws: Workspace) -> Any:
    """The workspace's validated watchlist, or None when it has no watchlist file; a bad file exits 2, named."""
    from routewatch.watchlist import WatchlistError, load_watchlist

    if not ws.watchlist_path.exists():
        return None
    try:
        return load_watchlist(ws.watchlist_path)
    except WatchlistError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def open_workspace(workspace: Path | None, db: str | None) -> tuple[Workspace, object, object]:
    """The workspace, its validated watchlist and its store (schema created or upgraded)."""
    from routewatch.store import Store

    ws = Workspace.open(workspace, db)
    watchlist = _load_watchlist(ws)
    if watchlist is None:
        console.print(
            f"[red]No watchlist at {ws.watchlist_path}[/red]: run `routewatch init {ws.root}` first."
        )
        raise typer.Exit(2)
    store = Store.open(ws.db_url)
    sync_store(store, watchlist, ws)
    return ws, watchlist, store


def open_workspace_or_store(workspace: Path | None, db: str | None) -> tuple[Workspace, Any, Any]:
    """Workspace, watchlist (None when the workspace has none) and store: for the commands that also work on a
    store alone (a server's database); neither a watchlist nor a store is an error, and nothing is created."""
    from routewatch.store import Store
    from routewatch.workspace import DB_NAME

    ws = Workspace.open(workspace, db)
    watchlist = _load_watchlist(ws)
    if watchlist is None and not ws.db_url_override and not (ws.root / DB_NAME).exists():
        console.print(f"[red]No watchlist or store in {ws.root}[/red]: run `routewatch init {ws.root}` first.")
        raise typer.Exit(2)
    store = Store.open(ws.db_url)
    if watchlist is not None:
        sync_store(store, watchlist, ws)
    return ws, watchlist, store


def _say_simulated(store: Any, watchlist: Any, activities: Any, when: datetime) -> None:
    """A judgement that rests partly on simulated sightings or looks says so, on stderr, beside the table."""
    for a in activities:
        route = watchlist.routes.get(a.route)
        if route is None:
            continue
        sightings, looks = store.simulated_counts((*route.origin, *route.destination), when)
        if sightings or looks:  # on stderr: status's lines on stdout stay plain for scripts
            Console(stderr=True).print(f"[bold red]SIMULATED:[/bold red] {a.route} rests partly on simulated data "
                          f"({sightings} sightings and {looks} looks at its sites are simulated, not evidence "
                          "about the real case)")


def sync_store(store: Any, watchlist: Any, ws: Workspace) -> None:
    """The store follows the workspace's watchlist file: entries removed from the file leave it (their
    observations stay). The workspace's own SQLite store has one file, whatever folder the workspace is copied
    or moved to; a store named by --db may be shared, so there each file (by its absolute path) owns its own."""
    import hashlib

    from routewatch.store.schema import ADDED_BY_WATCHLIST

    owner = f"{ADDED_BY_WATCHLIST}:" + (
        hashlib.sha256(str(ws.watchlist_path.resolve()).encode()).hexdigest()[:16] if ws.db_url_override
        else "workspace")
    clashes: dict[str, list[str]] = {}
    for name, keys in store.sync_watchlist(watchlist, owner, clashes).items():
        console.print(f"[dim]no longer in the watchlist, removed from the store: {name} {', '.join(keys)}[/dim]")
    for name, keys in clashes.items():
        Console(stderr=True).print(
            f"[yellow]{name} {', '.join(keys)}: another workspace's watchlist on this store already defines them; "
            "the store keeps its definition (this watchlist's is used in this workspace's analysis): give them "
            "other keys if they are other places[/yellow]")


STATUS_STYLE = {
    "active": "green",
    "slowing": "yellow",
    "paused": "red",
    "resumed": "cyan",
    "undetermined": "magenta",
}


def status_table(activities: list[Activity], watchlist: object, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in (
        "route",
        "status",
        "P",
        "last activity",
        "days quiet",
        "P(silence | running)",
        "quiet looks",
        "95 % call in",
        "trips",
        "coverage",
    ):
        table.add_column(col, overflow="fold")
    for a in activities:
        routes = getattr(watchlist, "routes", {})
        name = routes[a.route].name if a.route in routes else a.route
        style = STATUS_STYLE.get(a.status.value, "white")
        call = describe_call(a.days_to_confident_call)
        table.add_row(
            name,
            f"[{style}]{a.status.value}[/{style}]",
            f"{a.probability:.2f}",
            f"{a.last_activity:%Y-%m-%d}" if a.last_activity else "-",
            f"{a.days_quiet:.0f}" if a.days_quiet is not None else "-",
            f"{a.p_silence_if_active:.3f}" if a.p_silence_if_active is not None else "-",
            str(a.usable_looks_quiet),
            call,
            str(a.trips_total),
            a.coverage,
        )
    return table


def register(app: typer.Typer) -> None:
    """Add the core commands to the main app."""
    import_app = typer.Typer(help="Import evidence into the store.", no_args_is_help=True)
    simulate_app = typer.Typer(help="Simulations for planning and testing.", no_args_is_help=True)
    app.add_typer(import_app, name="import")
    app.add_typer(simulate_app, name="simulate")

    @app.command()
    def init(
        directory: Annotated[Path, typer.Argument(help="Folder for the new workspace")],
        example: Annotated[
            str | None, typer.Option(help="Start from a shipped example (rajin: the reference case)")
        ] = None,
        force: Annotated[bool, typer.Option(help="Overwrite an existing watchlist")] = False,
        db: DbOpt = None,
    ) -> None:
        """Create a workspace: a watchlist, the store and folders for AIS, scenes, chips and reports.

        Example: routewatch init my-case --example rajin
        """
        if directory.exists() and not directory.is_dir():
            console.print(f"[red]{directory} is a file[/red]: give a folder for the new workspace.")
            raise typer.Exit(2)
        if example:  # an unknown example is refused before anything is created
            _example_file(example, "watchlist.toml")
        ws = Workspace.open(directory, db).ensure()
        if ws.watchlist_path.exists() and not force:
            console.print(f"{ws.watchlist_path} exists; keeping it (use --force to replace).")
        else:
            src = _example_file(example or "blank", "watchlist.toml")
            shutil.copyfile(src, ws.watchlist_path)
            if example:
                for extra in ("observations.csv", "SOURCES.md", "published_estimates.csv"):
                    shutil.copyfile(_example_file(example, extra), ws.root / extra)
        _, _, _store = open_workspace(ws.root, db)
        from sqlalchemy.engine import make_url

        shown = make_url(ws.db_url).render_as_string(hide_password=True)
        console.print(f"Workspace ready at {ws.root} (store: {shown}).", markup=False)
        if ws.db_url_override:  # the workspace does not remember a shared store: every command must name it
            console.print("Its store is not the workspace's own: give every command the same --db URL (or set "
                          "ROUTEWATCH_DB), or it will use a new routewatch.sqlite in the workspace.", markup=False)
        if example and (ws.root / "observations.csv").exists():
            import shlex

            obs, root = ws.root / "observations.csv", shlex.quote(str(ws.root))
            console.print(f"The example's evidence (sources: SOURCES.md) is in {obs}, not yet in the store. Import it:",
                          markup=False)
            console.print(f"  routewatch import observations {shlex.quote(str(obs))} -w {root}", soft_wrap=True,
                          markup=False)
            if example == "rajin":
                console.print(f"  routewatch analyze --as-of 2024-03-02 --coverage near-daily -w {root}",
                              soft_wrap=True, markup=False)

    @import_app.command("observations")
    def import_observations_cmd(
        files: Annotated[list[Path], typer.Argument(help="CSV or JSON files of analyst observations")],
        workspace: WorkspaceOpt = None,
        db: DbOpt = None,
    ) -> None:
        """Import dated analyst observations (sightings, negative looks, counts) with their sources.

        A file is imported whole or not at all; importing it again adds nothing. Schema: docs/observations.md.

        Example: routewatch init my-case --example rajin && routewatch import observations my-case/observations.csv -w my-case
        """
        from routewatch.sources.reports.observations import ObservationError, import_observations

        _, watchlist, store = open_workspace(workspace, db)
        failed = False
        for f in files:
            try:
                result = import_observations(store, f, watchlist)
            except ObservationError as exc:
                console.print(f"[red]{exc}[/red]")
                failed = True
                continue
            console.print(str(result))  # it names the file
        if failed:
            raise typer.Exit(1)

    @app.command()
    def analyze(
        as_of: AsOfOpt = None,
        coverage: CoverageOpt = None,
        workspace: WorkspaceOpt = None,
        db: DbOpt = None,
    ) -> None:
        """Derive visits, trips and each route's status as of a date, using no later evidence.

        Example: routewatch analyze --as-of 2024-03-02 --coverage near-daily -w my-case
        """
        from routewatch.pipeline import analyze as run

        _, watchlist, store = open_workspace(workspace, db)
        when = parse_as_of(as_of)
        before = store.derived_as_of()
        with console.status(f"reading evidence up to {when:%Y-%m-%d} and judging {len(watchlist.routes)} routes"):
            result = run(store, watchlist, when, coverage=resolve_coverage(coverage, watchlist))
        replaced = f" (replacing those as of {before:%Y-%m-%d %H:%M:%S} UTC)" if before and before != when else ""
        console.print(
            f"{len(result.visits)} visits, {len(result.trips)} trips derived as of {when:%Y-%m-%d %H:%M:%S} UTC "
            f"and saved{replaced}."
        )
        console.print(
            status_table(list(result.activities.values()), watchlist, f"Routes as of {when:%Y-%m-%d}")
        )
        for a in result.activities.values():
            console.print(f"[bold]{a.route}[/bold]: {a.explanation}")
        _say_simulated(store, watchlist, result.activities.values(), when)

    @app.command()
    def failures(
        stage: Annotated[str | None, typer.Option(help="Only this stage: ais, scenes add, fetch, detect, watch")] = None,
        workspace: WorkspaceOpt = None,
        db: DbOpt = None,
    ) -> None:
        """Inputs that earlier runs skipped (a truncated file, an unreadable scene, a failed download) with the
        reason and when it was last met: what the store's evidence does not include.

        Example: routewatch failures --stage detect -w my-case
        """
        from rich.markup import escape

        stages = ("ais", "scenes add", "fetch", "detect", "watch")
        if stage is not None and stage not in stages:
            console.print(f"[red]--stage {escape(repr(stage))}: the stages are {', '.join(stages)}[/red]")
            raise typer.Exit(2)
        _, _, store = open_workspace(workspace, db)
        rows = sorted(store.failures(stage), key=lambda f: f.created, reverse=True)
        if not rows:
            console.print("No failures recorded" + (f" for stage {stage!r}." if stage else "."))
            return
        table = Table("last met (UTC)", "stage", "input", "reason", title=f"{len(rows)} failures recorded",
                      title_justify="left")
        for f in rows:
            table.add_row(f"{f.created:%Y-%m-%d %H:%M}", escape(f.stage), escape(f.path), escape(f.message))
        console.print(table)

    @app.command()
    def status(
        as_of: AsOfOpt = None,
        coverage: CoverageOpt = None,
        workspace: WorkspaceOpt = None,
        db: DbOpt = None,
    ) -> None:
        """One line per route: status, probability, last activity, days quiet, coverage, what the probability is
        (the date judged, now unless --as-of, goes to stderr).

        Example: routewatch status --as-of 2024-03-20 -w my-case
        """
        from routewatch.pipeline import analyze as run

        _, watchlist, store = open_workspace(workspace, db)
        when = parse_as_of(as_of)
        result = run(store, watchlist, when, coverage=resolve_coverage(coverage, watchlist), persist=False)
        # the date judged, on stderr: the lines themselves keep their fields for scripts
        typer.echo(f"judged as of {when:%Y-%m-%d %H:%M} UTC" + ("" if as_of else " (now; --as-of for another date)"),
                   err=True)
        for a in result.activities.values():
            last = f"{a.last_activity:%Y-%m-%d}" if a.last_activity else "never"
            quiet = f"{a.days_quiet:.0f} days quiet" if a.days_quiet is not None else ""
            # Plain tab-separated text (no rich markup) so scripts can cut it.
            typer.echo(f"{a.route}\t{a.status.value}\tP={a.probability:.2f}\tlast {last}\t{quiet}\t{a.coverage}"
                       f"\t{probability_meaning(a)}")
        _say_simulated(store, watchlist, result.activities.values(), when)

    @app.command()
    def demo(
        workspace: WorkspaceOpt = None,
        as_of: Annotated[str, typer.Option(help="Judge as of this date")] = "2024-03-02",
        imagery: Annotated[bool, typer.Option(help="Also run the simulated-imagery part")] = True,
    ) -> None:
        """Build the reference-case workspace (Rajin -> Dunai/Vostochny) and print the route judgement.

        Example: routewatch demo --as-of 2024-03-20
        """
        from routewatch.demo import run_demo

        run_demo(
            Workspace.open(workspace or Path("demo-workspace")),
            parse_as_of(as_of),
            imagery=imagery,
            console=console,
        )

    @simulate_app.command("coverage")
    def simulate_coverage_cmd(
        sensors: Annotated[
            list[str] | None,
            typer.Option(
                "--sensors", "-s", help="A sensor mix: sensor:every_days:usable joined with '+'; repeat"
            ),
        ] = None,
        cadence_days: Annotated[
            float, typer.Option(help="Mean days between calls of the simulated route")
        ] = 7.0,
        shape: Annotated[float, typer.Option(help="Regularity of the gaps (gamma shape; 1 = Poisson)")] = 2.0,
        years: Annotated[float, typer.Option(help="Years of running route simulated per mix")] = 100.0,
        stop_after_days: Annotated[
            float, typer.Option(help="Days each simulated route runs before it stops")
        ] = 180.0,
        vessel_length_m: Annotated[float, typer.Option(help="Length of the route's vessels, metres")] = 120.0,
        seed: Annotated[int, typer.Option(help="Random seed (same seed, same table)")] = 0,
    ) -> None:
        """Per sensor mix: the median days from a stop to a 95 % pause call, and false alarms per year.

        Each mix is sensor:every_days:usable terms joined with '+'. The default table has Sentinel-1 alone,
        Sentinel-2 with cloud, daily PlanetScope and a Sentinel-1 + Sentinel-2 mix.

        Example: routewatch simulate coverage -s sentinel-1:12:1.0 -s planetscope:1:0.55+sentinel-1:12:1.0
        """
        from rich.progress import Progress

        from routewatch.simulate.coverage import DEFAULT_MIXES, parse_sensor_mix, simulate_coverage

        for name, value in (("--cadence-days", cadence_days), ("--shape", shape), ("--years", years),
                            ("--stop-after-days", stop_after_days), ("--vessel-length-m", vessel_length_m)):
            if not value > 0:
                raise typer.BadParameter(f"{name} must be a positive number, not {value:g}")
        try:
            mixes = (
                [parse_sensor_mix(s) for s in sensors]
                if sensors
                else [parse_sensor_mix(m) for m in DEFAULT_MIXES]
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        results = []
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("simulating sensor mixes", total=len(mixes))
            for mix in mixes:
                results += simulate_coverage(
                    [mix],
                    cadence_days=cadence_days,
                    shape=shape,
                    years=years,
                    stop_after_days=stop_after_days,
                    seed=seed,
                    vessel_length_m=vessel_length_m,
                )
                progress.advance(task)
        table = Table(
            title=f"Coverage planning: a route calling every {cadence_days:g} days (gamma shape {shape:g}), "
            f"{vessel_length_m:g} m vessels, stopping after {stop_after_days:g} days; {years:g} years per mix",
            title_justify="left",
        )
        for col in (
            "sensor mix",
            "usable looks / year",
            "median days stop -> 95 % call",
            "IQR (days)",
            "never called",
            "false alarms / year",
            "false alarms / quiet run",
        ):
            table.add_column(col, overflow="fold")
        for r in results:
            median = (
                "not reached"
                if r.median_days_to_call == float("inf")
                else (f"{r.median_days_to_call:.1f} ± {r.median_se:.1f}")
            )
            table.add_row(
                r.label,
                f"{r.usable_looks_per_year:.0f}",
                median,
                f"{r.q25_days:.0f}-{r.q75_days:.0f}",
                f"{r.censored}/{r.stops}",
                f"{r.false_alarms_per_year:.2f} ± {r.false_alarms_per_year_se:.2f}",
                f"{r.false_alarms_per_quiet_run:.3f}",
            )
        console.print(table)


def _example_file(example: str, name: str) -> Path:
    base = resources.files("routewatch.examples")
    path = Path(str(base / example / name))
    if not path.exists():
        raise typer.BadParameter(f"no example {example!r} (file {name})")
    return path
