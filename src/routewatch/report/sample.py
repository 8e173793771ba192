"""A small sample workspace written straight into a store: two sites, one sea route, two vessels, six months.

It exists so the surfaces (report, exports, dashboard, alerts) can be tried and tested without running the
analysis chain. Every record is marked simulated unless ``simulated=False`` is asked for (tests use both), so a
report built from it says plainly that it rests on simulated data. Positions are near the reference-case ports.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shapely.geometry import box

from routewatch.model import (
    SENSOR_DETECTION,
    Activity,
    Evidence,
    EvidenceKind,
    Look,
    Mode,
    Route,
    Scene,
    Sighting,
    Site,
    SiteKind,
    SourceKind,
    Status,
    Trip,
    Vessel,
    Visit,
    stable_id,
)
from routewatch.watchlist import Watchlist

AS_OF = datetime(2024, 3, 1, tzinfo=UTC)
START = datetime(2023, 9, 1, tzinfo=UTC)
ROUTE = "rajin-vostochny"


@dataclass(frozen=True)
class Sample:
    watchlist: Watchlist
    as_of: datetime
    counts: dict[str, int]


def chip_png(seed: int, size: int = 24) -> bytes:
    """A tiny grey PNG with a bright ship-like bar, different per seed (Pillow)."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (size, size), 40 + seed % 30)
    ImageDraw.Draw(img).rectangle([4, size // 2 - 2 + seed % 3, size - 5, size // 2 + 2 + seed % 3], fill=230)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def watchlist() -> Watchlist:
    rajin = Site("rajin", "Rajin port", SiteKind.PORT, box(130.265, 42.215, 130.310, 42.250), "KP",
                 sources=("https://example.org/rajin",))
    vost = Site("vostochny", "Vostochny port", SiteKind.PORT, box(133.02, 42.71, 133.10, 42.76), "RU")
    route = Route(ROUTE, "Rajin → Vostochny", ("rajin",), ("vostochny",), Mode.SEA, ("angara", "maria"))
    vessels = {"angara": Vessel("angara", "ANGARA", imo="9179842", length_m=120.0, capacity_teu=400),
               "maria": Vessel("maria", "MARIA", length_m=105.0, capacity_teu=300)}
    return Watchlist({"rajin": rajin, "vostochny": vost}, {ROUTE: route}, vessels)


def write_sample(store: Any, root: Path, simulated: bool = True, status: Status = Status.PAUSED) -> Sample:
    """Write the sample into ``store``; chips go to ``root/chips``. Idempotent (deterministic ids)."""
    wl = watchlist()
    store.upsert_watchlist(wl)
    chips_dir = root / "chips"
    chips_dir.mkdir(parents=True, exist_ok=True)
    ev: list[Evidence] = []
    scenes: list[Scene] = []
    looks: list[Look] = []
    sightings: list[Sighting] = []
    visits: list[Visit] = []
    trips: list[Trip] = []
    t = START
    i = 0
    while t <= AS_OF:  # a look at Rajin every 3 days, every fourth one clouded out
        sensor = "planetscope" if i % 2 else "sentinel-2"
        scene = Scene(stable_id("scene", sensor, t), sensor, t, box(130.2, 42.1, 130.4, 42.3),
                      3.0 if sensor == "planetscope" else 10.0, 0.8 if i % 4 == 3 else 0.1, simulated=simulated)
        scenes.append(scene)
        ev.append(Evidence(stable_id("ev", "scene", scene.id), EvidenceKind.SCENE, f"{sensor} scene {t:%Y-%m-%d}",
                           source=sensor, observed_at=t))
        looks.append(Look(stable_id("look", "rajin", t), "rajin", t, sensor, 0.0 if i % 4 == 3 else 0.9,
                          SENSOR_DETECTION[sensor], SourceKind.IMAGE, scene.id, (ev[-1].id,), None, simulated))
        t += timedelta(days=3)
        i += 1
    calls = [(START + timedelta(days=d), ("angara", "maria")[k % 2]) for k, d in enumerate(range(3, 160, 14))]
    for k, (arrive, vessel) in enumerate(calls):
        look = min(looks, key=lambda lk: abs((lk.time - arrive).total_seconds()))
        chip = Evidence(stable_id("ev", "chip", k), EvidenceKind.CHIP, f"chip of {vessel} at Rajin {arrive:%d %b}",
                        uri=f"chips/sample-{k}.png", observed_at=look.time)
        (root / chip.uri).write_bytes(chip_png(k))  # type: ignore[operator]
        rep = Evidence(stable_id("ev", "report", k), EvidenceKind.REPORT, f"report of {vessel} loading",
                       source="Open-source report", uri=f"https://example.org/reports/{k}", observed_at=arrive)
        ais = Evidence(stable_id("ev", "ais", k), EvidenceKind.AIS, f"AIS positions of {vessel} off Vostochny",
                       source="AIS", observed_at=arrive + timedelta(days=3))
        ev += [chip, rep, ais]
        s_img = Sighting(stable_id("sig", "img", k), look.time, SourceKind.IMAGE, "rajin", vessel, event="detection",
                         lon=130.28 + 0.002 * k, lat=42.23, length_m=118.0, width_m=18.0, score=0.9,
                         confidence=0.85, identification_confidence=0.7, look_id=look.id,
                         evidence_ids=(chip.id, rep.id), simulated=simulated)
        s_ais = Sighting(stable_id("sig", "ais", k), arrive + timedelta(days=3), SourceKind.AIS, "vostochny", vessel,
                         event="ais_position", lon=133.06, lat=42.735 + 0.001 * k, confidence=0.95,
                         evidence_ids=(ais.id,), simulated=simulated)
        sightings += [s_img, s_ais]
        v_o = Visit(stable_id("visit", "rajin", k), "rajin", vessel, look.time, look.time + timedelta(days=1), 0.8,
                    (s_img.id,), (chip.id, rep.id), source_kinds=("image",))
        v_d = Visit(stable_id("visit", "vost", k), "vostochny", vessel, s_ais.time, s_ais.time + timedelta(days=2),
                    0.9, (s_ais.id,), (ais.id,), source_kinds=("ais",))
        visits += [v_o, v_d]
        trips.append(Trip(stable_id("trip", k), ROUTE, vessel, v_o.id, v_d.id, v_o.end, v_d.start, 0.75,
                          (rep.id, chip.id, ais.id), "observed", 190.0))
    last = trips[-1]
    quiet = (AS_OF - last.depart).total_seconds() / 86400.0
    assumption = Evidence(stable_id("ev", "declared", "coverage"), EvidenceKind.DECLARED,
                          "looks at Rajin every 3 days (sentinel-2 and planetscope alternating)")
    ev.append(assumption)
    activity = Activity(
        ROUTE, AS_OF, status, 0.93 if status == Status.PAUSED else 0.8, last.depart, last.evidence_ids, quiet,
        0.07, 14.0, len(trips), 0, "actual looks at rajin (sentinel-2, planetscope)", sum(lk.usable for lk in looks
        if lk.time > last.depart), 0.0 if status == Status.PAUSED else 9.0,
        f"No route vessel seen at Rajin for {quiet:.0f} days despite usable looks.", (assumption.id, *last.evidence_ids),
        {"estimates": [{"name": "containers", "unit": "containers", "value": 3400.0, "low": 2600.0, "high": 4300.0,
                        "level": 0.9, "assumptions": {"containers_per_trip": "250-330 (reported stack of ~300)",
                                                      "trips": len(trips)}}]})
    store.add_evidence(ev)
    store.add_scenes(scenes)
    store.add_looks(looks)
    store.add_sightings(sightings)
    store.replace_derived(visits, trips, AS_OF)
    store.add_activities([activity])
    counts = {"looks": len(looks), "sightings": len(sightings), "visits": len(visits), "trips": len(trips)}
    return Sample(wl, AS_OF, counts)
