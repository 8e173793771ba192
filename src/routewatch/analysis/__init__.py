"""Analysis: pure functions from evidence to visits, trips, route judgement, change points and estimates.

Every function takes ``as_of`` (where time matters) and uses nothing observed after it; none touches the store or
the network. Import from the submodules (``analysis.visits``, ``analysis.trips``, ...) for the full API.
"""

from routewatch.analysis.changepoint import bocpd, poisson_cusum
from routewatch.analysis.estimates import ContainersPerTrip, PublishedCount, estimate_cargo, sensitivity_table
from routewatch.analysis.seadistance import sea_distance, site_distance
from routewatch.analysis.trips import build_trips, compare_with_published, count_trips
from routewatch.analysis.visits import build_visits, build_visits_frame

__all__ = [
    "ContainersPerTrip",
    "PublishedCount",
    "bocpd",
    "build_trips",
    "build_visits",
    "build_visits_frame",
    "compare_with_published",
    "count_trips",
    "estimate_cargo",
    "poisson_cusum",
    "sea_distance",
    "sensitivity_table",
    "site_distance",
]
