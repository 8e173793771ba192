"""Calibrate a sensor's detection-probability curve from simulated scenes (see docs/coverage.md).

Ships of known length are simulated over a port (at anchor and at berths), each scene goes through the same
per-scene chain as ``detect --site`` (water mask, shore rim, detector), and each truth ship counts as detected when
a detection lies within half its length plus 20 m of its centre. A logistic curve in length is then fitted by
maximum likelihood (:func:`routewatch.sources.imagery.looks.fit_detection_model`).

Run: ``python -m routewatch.sources.imagery.calibrate`` (prints the fitted curves for simulated SAR and optical).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from pyproj import Geod
from shapely.geometry import Point, box

from routewatch.detect.water import load_water_polygons
from routewatch.model import DetectionModel, Site, SiteKind
from routewatch.simulate import ShipSpec, simulate_scene
from routewatch.sources.imagery.local import scene_from_files
from routewatch.sources.imagery.looks import fit_detection_model
from routewatch.sources.imagery.pipeline import Detector, process_scene

CAL_SITE = Site("calibration", "calibration port", SiteKind.PORT, box(130.265, 42.215, 130.310, 42.250))
_GEOD = Geod(ellps="WGS84")


@dataclass
class Calibration:
    """Outcomes per truth ship and the fitted curve."""

    sensor: str
    lengths_m: list[float]
    detected: list[bool]
    model: DetectionModel

    @property
    def recall(self) -> float:
        return float(np.mean(self.detected)) if self.detected else 0.0


def simulate_outcomes(sensor: str, n_scenes: int = 8, ships_per_scene: int = 10, seed: int = 0,
                      detector: Detector | None = None, lengths: tuple[float, float] = (10.0, 200.0),
                      work_dir: Path | None = None, water_polygons: bool = False) -> tuple[list[float], list[bool]]:
    """(length, detected) for every simulated truth ship inside the site (the scenes reach beyond it, and a look
    keeps only the detections in its site); ``water_polygons`` uses the true coast as user polygons."""
    rng = np.random.default_rng(seed)
    out_l: list[float] = []
    out_d: list[bool] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(work_dir or tmp)
        for k in range(n_scenes):
            specs = [ShipSpec(float(rng.uniform(*lengths))) for _ in range(ships_per_scene)]
            when = datetime(2023, 1, 1, 9, tzinfo=UTC) + timedelta(days=k)
            sim = simulate_scene(CAL_SITE, when, sensor, specs, root / f"cal_{k:03d}.tif", seed=seed + k)
            scene, _ev = scene_from_files([sim.path])
            water = load_water_polygons(sim.path.with_name(sim.path.stem + ".water.geojson")) if water_polygons \
                else None
            outcome = process_scene(scene, CAL_SITE, water, str(root / "chips"), detector)
            if outcome.failure:
                raise ValueError(outcome.failure[1])
            dets = [(s.lon, s.lat) for s in outcome.sightings]
            for ship in sim.ships:
                if not CAL_SITE.geometry.covers(Point(ship.lon, ship.lat)):
                    continue  # in the scene's margin around the site: a look at the site does not search there
                hit = False
                if dets:
                    _, _, d = _GEOD.inv([ship.lon] * len(dets), [ship.lat] * len(dets), [p[0] for p in dets],
                                        [p[1] for p in dets])
                    hit = bool(np.min(d) <= ship.length_m / 2 + 20.0)
                out_l.append(ship.length_m)
                out_d.append(hit)
    return out_l, out_d


def calibrate(sensor: str, **kw: object) -> Calibration:
    """Simulate, detect and fit the detection curve of one sensor ("simulated-sar" or "simulated-optical")."""
    lengths, detected = simulate_outcomes(sensor, **kw)  # type: ignore[arg-type]
    return Calibration(sensor, lengths, detected, fit_detection_model(lengths, detected))


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("sensor", "water", "ships", "recall", "l50 (m)", "scale (m)", "p_max", "p(50 m)", "p(120 m)")
    for sensor, polys in (("simulated-sar", False), ("simulated-sar", True), ("simulated-optical", False),
                          ("simulated-optical", True)):
        label = "user polygons" if polys else "from the image"
        try:
            cal = calibrate(sensor, n_scenes=16, ships_per_scene=12, water_polygons=polys)
        except (ValueError, FileNotFoundError) as exc:
            table.add_row(sensor, label, "-", "-", "-", "-", "-", "-", "not calibrated")
            Console(stderr=True).print(f"{sensor}: {exc}")
            continue
        m = cal.model
        table.add_row(sensor, label, str(len(cal.lengths_m)), f"{cal.recall:.2f}", f"{m.l50_m:.1f}", f"{m.scale_m:.1f}",
                      f"{m.p_max:.2f}", f"{m.probability(50):.2f}", f"{m.probability(120):.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
