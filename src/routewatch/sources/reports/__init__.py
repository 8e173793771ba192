"""Analyst reports: dated, sourced observations (CSV or JSON) imported as evidence, sightings, looks and counts."""

from routewatch.sources.reports.observations import (
    ImportResult,
    ObservationError,
    Observations,
    import_observations,
    parse_observations,
)

__all__ = ["ImportResult", "ObservationError", "Observations", "import_observations", "parse_observations"]
