"""Charts as inline SVG: the route timeline (matplotlib) and the map (drawn here from site polygons).

The map needs no tile server: sites, route lines and detections are projected with a local equirectangular
projection (x scaled by cos(latitude), so shapes keep their proportions at port scale). A tile URL template
(``https://.../{z}/{x}/{y}.png``) adds a background only when the user gives one.
"""

from __future__ import annotations

import io
import math
from datetime import timedelta
from html import escape
from itertools import count
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.patches import Patch
from shapely.geometry import MultiPolygon, Polygon

from routewatch.report.data import ReportData, RouteView

_salt = count()
SITE_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]


def _svg(fig: Any) -> str:
    """Serialise a figure as an SVG fragment; a fresh hash salt keeps element ids unique within one page."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"rw{next(_salt)}"}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


OTHER_AIS_SHIPS = "other ships (AIS)"


def _row(v: Any) -> str:
    """A visit's timeline row: its watchlist vessel, one row for all ships AIS names and the watchlist does not
    (``mmsi:<n>``: one row each made a busy port's chart hundreds of rows tall), or its unidentified size class."""
    from routewatch.analysis.visits import AIS_SHIP_PREFIX

    if v.vessel is not None and v.vessel.startswith(AIS_SHIP_PREFIX):
        return OTHER_AIS_SHIPS
    return v.vessel or f"unidentified {v.size_class or ''}".strip()


def timeline_svg(view: RouteView, vessel_names: dict[str, str] | None = None) -> str:
    """Visits per vessel as bars (coloured by site), every origin look as a tick (usable or not), quiet shaded.

    The axis ends at the judgement's date (``view.quiet.end``), shown as a dashed line.
    """
    names = vessel_names or {}
    as_of = view.quiet.end
    rows = sorted({_row(v) for v in view.visits})
    sites = sorted({v.site for v in view.visits})
    colour = {s: SITE_COLOURS[i % len(SITE_COLOURS)] for i, s in enumerate(sites)}
    fig, ax = plt.subplots(figsize=(9.0, 0.9 + 0.42 * (len(rows) + 1)), dpi=96)
    times = [v.start for v in view.visits] + [lk.time for lk in view.origin_looks]
    start = min(times, default=as_of - timedelta(days=90)) - timedelta(days=2)
    for i, row in enumerate(rows, start=1):
        for v in view.visits:
            if _row(v) != row:
                continue
            width = max((v.end - v.start).total_seconds() / 86400.0, 0.5)
            ax.barh(i, width, left=mdates.date2num(v.start), height=0.6, color=colour[v.site],
                    alpha=0.35 + 0.6 * v.confidence, edgecolor="none")
    usable = [mdates.date2num(lk.time) for lk in view.origin_looks if lk.usable]
    unusable = [mdates.date2num(lk.time) for lk in view.origin_looks if not lk.usable]
    ax.vlines(usable, -0.3, 0.3, color="#2a7d2a", linewidth=1.0, label="usable look")
    ax.vlines(unusable, -0.3, 0.3, color="#aaaaaa", linewidth=1.0, label="unusable look")
    quiet = view.quiet.start
    if quiet is not None and quiet < as_of:
        ax.axvspan(mdates.date2num(quiet), mdates.date2num(as_of), color="#f2c14e", alpha=0.25, label="quiet period")
    ax.axvline(mdates.date2num(as_of), color="#333333", linewidth=1.0, linestyle="--")
    handles, labels = ax.get_legend_handles_labels()
    # one swatch per site in its bars' colour (an empty barh gives a handle in the default colour, not this one)
    handles += [Patch(color=colour[s], label=f"visit at {s}") for s in sites]
    labels += [f"visit at {s}" for s in sites]
    ax.set_yticks(range(len(rows) + 1), ["looks at origin", *(names.get(r, r) for r in rows)])
    ax.set_ylim(-0.7, len(rows) + 0.7)
    ax.set_xlim(mdates.date2num(start), mdates.date2num(as_of + timedelta(days=3)))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b %Y"))
    ax.tick_params(labelsize=8)
    ax.grid(axis="x", color="#eeeeee")
    ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_title(f"{view.route.name}: visits, looks at the origin, quiet period (UTC)", fontsize=9, loc="left")
    fig.autofmt_xdate()
    return _svg(fig)


def _rings(geom: Any) -> list[list[tuple[float, float]]]:
    if isinstance(geom, Polygon):
        return [list(geom.exterior.coords)]
    if isinstance(geom, MultiPolygon):
        return [list(p.exterior.coords) for p in geom.geoms]
    return []


def _tile_xy(lon: float, lat: float, z: int) -> tuple[float, float]:
    n = 2.0**z
    lat_r = math.radians(lat)
    return (lon + 180.0) / 360.0 * n, (1.0 - math.asinh(math.tan(lat_r)) / math.pi) / 2.0 * n


def map_svg(data: ReportData, width: int = 900, height: int = 480, tiles: str | None = None) -> str:
    """Sites (polygons), routes (lines between group centroids) and detections (dots) as one inline SVG."""
    # The map frames the routes' own sites: a watchlist site far away (a depot, a shipyard) would shrink the ports
    # to dots. Sites and detections outside the frame are named in a note instead of drawn.
    route_keys = {k for r in data.routes.values() for k in (*r.origin, *r.destination) if k in data.sites}
    framed = route_keys or set(data.sites)
    pts: list[tuple[float, float]] = []
    for key in framed:
        site = data.sites[key]
        for ring in _rings(site.geometry):
            pts.extend(ring)
        pts.append(site.centroid_lonlat)
    if pts:
        fx0, fx1 = min(p[0] for p in pts), max(p[0] for p in pts)
        fy0, fy1 = min(p[1] for p in pts), max(p[1] for p in pts)
        mx, my = max((fx1 - fx0) * 0.25, 0.05), max((fy1 - fy0) * 0.25, 0.05)

        def inside(lon: float, lat: float) -> bool:
            return fx0 - mx <= lon <= fx1 + mx and fy0 - my <= lat <= fy1 + my
    else:

        def inside(lon: float, lat: float) -> bool:
            return True

    dets = [s for s in data.sightings if s.lon is not None and s.lat is not None and inside(s.lon, s.lat)]
    pts.extend((float(s.lon), float(s.lat)) for s in dets)  # type: ignore[arg-type]
    shown = {k: site for k, site in data.sites.items() if k in framed or inside(*site.centroid_lonlat)}
    off_map = sorted(site.name for k, site in data.sites.items() if k not in shown)
    if not pts:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="60"><text x="10" y="30">no sites</text></svg>'
    lon0, lon1 = min(p[0] for p in pts), max(p[0] for p in pts)
    lat0, lat1 = min(p[1] for p in pts), max(p[1] for p in pts)
    pad_lon, pad_lat = max((lon1 - lon0) * 0.08, 0.01), max((lat1 - lat0) * 0.08, 0.01)
    lon0, lon1, lat0, lat1 = lon0 - pad_lon, lon1 + pad_lon, lat0 - pad_lat, lat1 + pad_lat
    kx = math.cos(math.radians((lat0 + lat1) / 2.0))
    scale = min(width / ((lon1 - lon0) * kx), height / (lat1 - lat0))
    w, h = (lon1 - lon0) * kx * scale, (lat1 - lat0) * scale

    def xy(lon: float, lat: float) -> tuple[float, float]:
        return (lon - lon0) * kx * scale, (lat1 - lat) * scale

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="map" viewBox="0 0 {w:.0f} {h:.0f}" '
           f'width="{w:.0f}" height="{h:.0f}" role="img" aria-label="map of sites, routes and detections">',
           f'<rect width="{w:.0f}" height="{h:.0f}" fill="#eef4f8"/>']
    if tiles:
        out.append(_tiles(tiles, lon0, lon1, lat0, lat1, xy))
    colour = {k: SITE_COLOURS[i % len(SITE_COLOURS)] for i, k in enumerate(sorted(data.sites))}
    for key, site in sorted(shown.items()):
        for ring in _rings(site.geometry):
            d = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(*p[:2]) for p in ring))
            out.append(f'<polygon points="{d}" fill="{colour[key]}" fill-opacity="0.25" stroke="{colour[key]}">'
                       f"<title>{escape(site.name)} ({escape(str(site.kind))})</title></polygon>")
        cx, cy = xy(*site.centroid_lonlat)
        out.append(f'<text x="{cx + 6:.1f}" y="{cy - 6:.1f}" font-size="12" font-family="sans-serif">'
                   f"{escape(site.name)}</text>")
    for route in data.routes.values():
        ends = [[data.sites[k].centroid_lonlat for k in grp if k in data.sites] for grp in (route.origin, route.destination)]
        for a in ends[0]:
            for b in ends[1]:
                (x1, y1), (x2, y2) = xy(*a), xy(*b)
                out.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="#444" '
                           f'stroke-width="1.5" stroke-dasharray="6 4"><title>{escape(route.name)}</title></line>')
    for s in dets:
        x, y = xy(float(s.lon), float(s.lat))  # type: ignore[arg-type]
        fill = "#e07000" if str(s.source_kind) == "ais" else "#c00000"
        label = f"{s.time:%Y-%m-%d %H:%M} UTC {s.source_kind} {s.vessel or 'unidentified'}"
        if s.length_m:
            label += f", {s.length_m:.0f} m"
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{fill}" stroke="white" stroke-width="0.8">'
                   f"<title>{escape(label)}</title></circle>")
    out.append(_scale_bar(w, h, scale, kx))
    if off_map:
        out.append(f'<text x="8" y="16" font-size="11" font-family="sans-serif" fill="#555">'
                   f"Off this map: {escape(', '.join(off_map))}</text>")
    out.append("</svg>")
    return "".join(out)


def _scale_bar(w: float, h: float, scale: float, kx: float) -> str:
    """A scale bar in kilometres (one degree of latitude is about 111.32 km; x is already scaled by cos(lat))."""
    px_per_km = scale / 111.32
    km = 10 ** math.floor(math.log10(max(w / 4 / px_per_km, 1e-6)))
    length = km * px_per_km
    y = h - 12
    return (f'<g font-size="11" font-family="sans-serif"><line x1="10" y1="{y:.1f}" x2="{10 + length:.1f}" '
            f'y2="{y:.1f}" stroke="#222" stroke-width="2"/><text x="10" y="{y - 4:.1f}">{km:g} km</text></g>')


def _tiles(template: str, lon0: float, lon1: float, lat0: float, lat1: float, xy: Any) -> str:
    """Background tiles from a user-given URL template, at a zoom that gives a handful of tiles."""
    z = max(0, min(18, int(math.log2(360.0 / max(lon1 - lon0, 1e-6))) + 2))
    tx0, ty0 = _tile_xy(lon0, lat1, z)
    tx1, ty1 = _tile_xy(lon1, lat0, z)
    parts = []
    for tx in range(int(tx0), int(tx1) + 1):
        for ty in range(int(ty0), int(ty1) + 1):
            n = 2.0**z
            west, east = tx / n * 360.0 - 180.0, (tx + 1) / n * 360.0 - 180.0
            north = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * ty / n))))
            south = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (ty + 1) / n))))
            (x0, y0), (x1, y1) = xy(west, north), xy(east, south)
            url = escape(template.format(z=z, x=tx, y=ty, s="a"))
            parts.append(f'<image href="{url}" x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" '
                         f'height="{y1 - y0:.1f}" preserveAspectRatio="none" opacity="0.8"/>')
    return "".join(parts)
