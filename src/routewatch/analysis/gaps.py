"""AIS gaps and the imagery cues they raise.

A gap is a silence longer than ``min_gap_h`` between two positions of one vessel. Its context is the last position
before and the first after, the great-circle distance between them and the implied speed. A watched site is
reachable during the gap when the ship could sail from the last position to the site, stay ``min_dwell_h``, and
sail on to the first position at no more than ``max_speed_kn``:

    d(before, site) + d(site, after) <= max_speed * (duration - min_dwell)

Distances are great-circle lower bounds (the distance to a site is the distance to its centroid less the site's
radius), so the reachable set errs on the side of including a site: a cue costs an image check, a missed site costs
a missed visit. There is deliberately no "more than 50 nautical miles from shore" rule: the reference route's
ships went dark next to the coast. Each reachable site gives a cue: the site and the window
[earliest arrival, latest departure] in which imagery could show the ship there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from routewatch.analysis.port_visits import US_PER_H, Batch, VisitConfig, VisitScanner, haversine_m
from routewatch.analysis.seadistance import METRES_PER_NM
from routewatch.model import Site


@dataclass(frozen=True)
class GapConfig:
    min_gap_h: float = 6.0
    max_speed_kn: float = 18.0
    min_dwell_h: float = 2.0


GAP_SCHEMA: dict[str, Any] = {
    "mmsi": pl.Int32, "start": pl.Datetime("us", "UTC"), "end": pl.Datetime("us", "UTC"), "duration_h": pl.Float64,
    "lon_before": pl.Float64, "lat_before": pl.Float64, "lon_after": pl.Float64, "lat_after": pl.Float64,
    "distance_nm": pl.Float64, "implied_speed_kn": pl.Float64, "site_before": pl.String, "site_after": pl.String,
    "source_before": pl.String, "line_before": pl.Int64, "source_after": pl.String, "line_after": pl.Int64,
}


class GapDetector:
    """Collects gaps from the batches a :class:`VisitScanner` sees (one pass over the data for both)."""

    def __init__(self, sites: Mapping[str, Site], config: GapConfig | None = None):
        self.config = config or GapConfig()
        self.sites = dict(sites)
        self.keys = list(sites)
        self._parts: list[pl.DataFrame] = []
        self.layer_indexes: list = []  # the visit scan's site indexes, when its sites come in several layers

    def feed(self, batch: Batch, vstart: np.ndarray, dt_h: np.ndarray, site: np.ndarray, dist) -> None:
        after = np.flatnonzero(~vstart & (dt_h > self.config.min_gap_h))
        if after.size == 0:
            return
        before = after - 1
        t = batch.t
        (lon_b, lat_b), (lon_a, lat_a) = batch.lonlat(before), batch.lonlat(after)
        d_m = haversine_m(lon_b, lat_b, lon_a, lat_a)
        hours = dt_h[after]
        if self.layer_indexes:  # the scan's layer holds some sites only: the nearest of all of them
            near = [self._nearest(lon_b, lat_b), self._nearest(lon_a, lat_a)]
        else:
            near = [[self.keys[i] if i >= 0 else None for i in idx.tolist()] for idx in (site[before], site[after])]
        src_b, line_b = batch.refs(before)
        src_a, line_a = batch.refs(after)
        self._parts.append(pl.DataFrame({
            "mmsi": batch.mmsi[after].astype(np.int32),
            "start": pl.Series(t[before]).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
            "end": pl.Series(t[after]).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"), "duration_h": hours,
            "lon_before": lon_b, "lat_before": lat_b, "lon_after": lon_a, "lat_after": lat_a,
            "distance_nm": d_m / METRES_PER_NM, "implied_speed_kn": d_m / METRES_PER_NM / hours,
            "site_before": pl.Series(near[0], dtype=pl.String), "site_after": pl.Series(near[1], dtype=pl.String),
            "source_before": pl.Series(src_b.tolist(), dtype=pl.String), "line_before": line_b,
            "source_after": pl.Series(src_a.tolist(), dtype=pl.String), "line_after": line_a,
        }))

    def _nearest(self, lon: np.ndarray, lat: np.ndarray) -> list[str | None]:
        """The nearest site (key) of each position over every layer's index, or None beyond their reach."""
        best = np.full(lon.size, np.inf)
        keys: list[str | None] = [None] * lon.size
        for index in self.layer_indexes:
            site, dist = index.lookup(lon, lat)
            for i in np.flatnonzero((site >= 0) & (dist < best)):
                best[i], keys[i] = dist[i], index.keys[site[i]]
        return keys

    def finish(self) -> pl.DataFrame:
        """Every gap with ``reachable`` (list of site keys) and ``cues`` (site, window start, window end)."""
        gaps = pl.concat(self._parts, how="vertical") if self._parts else pl.DataFrame(schema=GAP_SCHEMA)
        gaps = gaps.select([pl.col(k).cast(v) for k, v in GAP_SCHEMA.items()]).sort("mmsi", "start")
        return add_reachable_sites(gaps, self.sites, self.config)


def add_reachable_sites(gaps: pl.DataFrame, sites: Mapping[str, Site], config: GapConfig) -> pl.DataFrame:
    """Add ``cues``: a list of {site, window_start, window_end} per gap, vectorised over gaps x sites."""
    keys = list(sites)
    cue_type = pl.List(pl.Struct({"site": pl.String, "window_start": pl.Datetime("us", "UTC"),
                                  "window_end": pl.Datetime("us", "UTC")}))
    if gaps.height == 0 or not keys:
        return gaps.with_columns(pl.lit([], dtype=cue_type).alias("cues"))
    cx = np.array([s.centroid_lonlat[0] for s in sites.values()])
    cy = np.array([s.centroid_lonlat[1] for s in sites.values()])
    radius = np.array([
        max(float(haversine_m(cx[i], cy[i], x, y)) for x, y in _vertices(s)) for i, s in enumerate(sites.values())
    ])
    lb, ab = gaps["lon_before"].to_numpy()[:, None], gaps["lat_before"].to_numpy()[:, None]
    la, aa = gaps["lon_after"].to_numpy()[:, None], gaps["lat_after"].to_numpy()[:, None]
    d_in = np.maximum(haversine_m(lb, ab, cx[None, :], cy[None, :]) - radius, 0.0)
    d_out = np.maximum(haversine_m(cx[None, :], cy[None, :], la, aa) - radius, 0.0)
    v = config.max_speed_kn * METRES_PER_NM  # metres per hour
    hours = gaps["duration_h"].to_numpy()[:, None]
    ok = (d_in + d_out) / v <= hours - config.min_dwell_h
    t0 = gaps["start"].dt.epoch("us").to_numpy()[:, None]
    t1 = gaps["end"].dt.epoch("us").to_numpy()[:, None]
    w0 = t0 + (d_in / v * US_PER_H).astype(np.int64)
    w1 = t1 - (d_out / v * US_PER_H).astype(np.int64)
    cues: list[list[dict]] = []
    for g in range(gaps.height):
        idx = np.flatnonzero(ok[g])
        cues.append([{"site": keys[i], "window_start": int(w0[g, i]), "window_end": int(w1[g, i])} for i in idx])
    out = gaps.with_columns(pl.Series("cues", cues, dtype=pl.List(pl.Struct({
        "site": pl.String, "window_start": pl.Int64, "window_end": pl.Int64}))))
    return out.with_columns(pl.col("cues").list.eval(pl.struct(
        pl.element().struct.field("site"),
        pl.from_epoch(pl.element().struct.field("window_start"), "us").dt.replace_time_zone("UTC").alias("window_start"),
        pl.from_epoch(pl.element().struct.field("window_end"), "us").dt.replace_time_zone("UTC").alias("window_end"),
    )).cast(cue_type))


def _vertices(site: Site) -> list[tuple[float, float]]:
    geom = site.geometry
    polys = list(getattr(geom, "geoms", [geom]))
    pts = [c for p in polys for c in getattr(p, "exterior", p).coords]
    return pts or [site.centroid_lonlat]


def cues_frame(gaps: pl.DataFrame) -> pl.DataFrame:
    """One row per (gap, reachable site): mmsi, site, window_start, window_end, gap start and end."""
    if gaps.height == 0:
        return pl.DataFrame(schema={"mmsi": pl.Int32, "site": pl.String, "window_start": pl.Datetime("us", "UTC"),
                                    "window_end": pl.Datetime("us", "UTC"), "gap_start": pl.Datetime("us", "UTC"),
                                    "gap_end": pl.Datetime("us", "UTC")})
    return (gaps.select("mmsi", pl.col("start").alias("gap_start"), pl.col("end").alias("gap_end"), "cues")
            .explode("cues").drop_nulls("cues").unnest("cues")
            .select("mmsi", "site", "window_start", "window_end", "gap_start", "gap_end"))


def visits_and_gaps(
    batches: Iterable[pl.DataFrame],
    sites: Mapping[str, Site],
    visit_config: VisitConfig | None = None,
    gap_config: GapConfig | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Visits and gaps in one pass over batches (days) of positions sorted by (mmsi, timestamp)."""
    detector = GapDetector(sites, gap_config)
    scanner = VisitScanner(sites, visit_config, gap_detector=detector)
    for batch in batches:
        scanner.feed(batch)
    return scanner.finish(), detector.finish()


def ais_gaps(batches: Iterable[pl.DataFrame], sites: Mapping[str, Site], config: GapConfig | None = None):
    """Gaps only (the visit scan runs too; it is what carries positions across batches)."""
    return visits_and_gaps(batches, sites, None, config)[1]
