"""Simulation for tests, demos and coverage planning; everything made here is marked simulated."""

from routewatch.simulate.scenes import (
    OPTICAL_SENSOR,
    SAR_SENSOR,
    ShipSpec,
    SimulatedScene,
    TruthShip,
    simulate_scene,
    simulate_site_scenes,
)

__all__ = [
    "OPTICAL_SENSOR",
    "SAR_SENSOR",
    "ShipSpec",
    "SimulatedScene",
    "TruthShip",
    "simulate_scene",
    "simulate_site_scenes",
]
