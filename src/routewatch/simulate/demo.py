"""The imagery part of `make demo`: SIMULATED radar scenes of Rajin through the real imagery chain.

The scenes are synthetic (routewatch.simulate.scenes) and are kept in their own workspace folder,
``<demo>/simulated-imagery``, with its own store, so nothing simulated can reach the reference case's judgement.
They go through the same steps as real images: `scenes add` from a folder, `detect --site` (water mask, CFAR,
measurement, chips, looks for every scene including the empty ones), then visits from the detections. Every line
printed says SIMULATED.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from typing import Any

from rich.console import Console

from routewatch.workspace import Workspace

# Ships placed in the simulated Rajin scenes: a call of a 120 m ship (LADY R's size) on 4-5 February and of a
# 131 m ship (MAIA-1's size) on 12-13 February 2024, as the published sightings describe; empty berths otherwise.
SIM_START = date(2024, 2, 1)
SIM_END = date(2024, 2, 20)
SIM_EVERY_DAYS = 1.0


def _ships_by_day() -> dict[date, list[Any]]:
    from routewatch.simulate.scenes import ShipSpec

    lady_r = ShipSpec(length_m=120.0, width_m=19.0, name="120 m ro-ro (LADY R's size)")
    maia = ShipSpec(length_m=131.0, width_m=20.0, name="131 m general cargo (MAIA-1's size)")
    return {
        date(2024, 2, 4): [lady_r],
        date(2024, 2, 5): [lady_r],
        date(2024, 2, 12): [maia],
        date(2024, 2, 13): [maia],
    }


def run_imagery_demo(ws: Workspace, store: Any, watchlist: Any, console: Console) -> str:
    """Simulate, add, detect and derive visits in ``<ws>/simulated-imagery``; return a one-line SIMULATED summary."""
    from routewatch.pipeline import analyze
    from routewatch.simulate.scenes import simulate_site_scenes
    from routewatch.sources.imagery.ingest import add_folder
    from routewatch.sources.imagery.pipeline import detect_site
    from routewatch.store import Store

    sim = Workspace(ws.root / "simulated-imagery").ensure()
    shutil.copyfile(ws.watchlist_path, sim.watchlist_path)
    sim_store = Store.open(sim.db_url)
    sim_store.upsert_watchlist(watchlist)
    site = watchlist.sites["rajin"]
    folder = sim.scenes_dir / "rajin-simulated"
    ships = _ships_by_day()
    scenes = simulate_site_scenes(site, SIM_START, SIM_END, "sentinel-1", ships, folder, seed=7,
                                  every_days=SIM_EVERY_DAYS)
    # The analyst's water polygon for the site: here the simulation's own, as a user would digitise it.
    water = sim.root / "water" / "rajin.geojson"
    water.parent.mkdir(exist_ok=True)
    shutil.copyfile(scenes[0].path.with_name(scenes[0].path.stem + ".water.geojson"), water)
    added = add_folder(folder, store=sim_store)
    since = datetime.combine(SIM_START, datetime.min.time(), tzinfo=UTC)
    result = detect_site(sim, "rajin", since, progress=False)
    as_of = datetime.combine(SIM_END + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    derived = analyze(sim_store, watchlist, as_of, persist=True)
    visits = [v for v in derived.visits if v.site == "rajin"]
    placed = sum(len(s.ships) for s in scenes)
    lines = [
        f"SIMULATED imagery (synthetic radar scenes, not evidence about the real case), in {sim.root}:",
        f"  {len(scenes)} simulated scenes of Rajin, {len(added.scenes)} added from the folder, "
        f"{len(added.failures)} failures",
        f"  {result.looks} looks ({result.usable_looks} usable), {result.sightings} ship detections "
        f"(ships placed: {placed} ship-days)",
        f"  {len(visits)} visits at Rajin from the detections: "
        + ", ".join(f"{v.start:%d %b}-{v.end:%d %b} ({v.size_class or v.vessel})" for v in visits),
    ]
    for line in lines:
        console.print(f"[yellow]{line}[/yellow]")
    return lines[0] + " " + "; ".join(line.strip() for line in lines[1:]) + "."
