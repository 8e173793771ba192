"""Simulated SAR and optical scenes over a watchlist site, written as georeferenced COGs, with ground truth.

What is simulated (and why it is good enough for demos, tests and calibrating detection probability):

* geometry: a UTM grid (or EPSG:3857) over the site's bounding box plus a margin, at the sensor's pixel size;
* coast: land on one side of a wavy line through the site, with piers sticking out into the water, so that ships
  lie alongside quays as in real ports (the hard case);
* SAR: K-distributed sea clutter (gamma texture x gamma speckle, ENL 4.4 like Sentinel-1 GRD IW), land about
  13 dB brighter with its own texture, ships as oriented hulls whose brightness grows with length
  (:func:`ship_sigma0`), written as uint16 amplitude DN;
* optical: Sentinel-2-like surface reflectance x 10000 (blue, green, red, nir) for water, land and ships, Gaussian
  noise, optional cloud (smooth random field) with cloud shadow, and a scene classification layer (SCL);
* every file is tagged ``ROUTEWATCH_SIMULATED=1`` so scenes, looks and sightings made from it say so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import numpy as np
from affine import Affine
from pyproj import CRS, Transformer
from scipy import ndimage

from routewatch.model import Site, ensure_utc
from routewatch.sources.imagery.cog import write_cog

SAR_SENSOR = "simulated-sar"
OPTICAL_SENSOR = "simulated-optical"


@dataclass(frozen=True)
class ShipSpec:
    """A ship to place: length/width in metres, heading in degrees clockwise from north; position optional."""

    length_m: float
    width_m: float | None = None
    heading_deg: float | None = None
    lon: float | None = None
    lat: float | None = None
    name: str | None = None


@dataclass(frozen=True)
class TruthShip:
    """A ship as placed in a simulated scene (WGS84 centre, ground metres, heading in [0, 180))."""

    lon: float
    lat: float
    length_m: float
    width_m: float
    heading_deg: float
    row: float
    col: float
    alongside: bool
    name: str | None = None


@dataclass
class SimulatedScene:
    """One simulated COG and what is in it."""

    path: Path
    time: datetime
    sensor: str
    ships: list[TruthShip] = field(default_factory=list)
    cloud_fraction: float = 0.0


def _utm_crs(lon: float, lat: float) -> CRS:
    zone = int((lon + 180) // 6) + 1
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def _grid(site: Site, res_m: float, margin_m: float, crs_kind: str) -> tuple[Affine, CRS, int, int]:
    lon, lat = site.centroid_lonlat
    crs = CRS.from_epsg(3857) if crs_kind == "3857" else _utm_crs(lon, lat)
    tr = Transformer.from_crs(4326, crs, always_xy=True)
    minx, miny, maxx, maxy = site.geometry.bounds
    xs, ys = tr.transform([minx, maxx, minx, maxx], [miny, miny, maxy, maxy])
    # Web Mercator metres are stretched by 1/cos(lat): keep the requested ground pixel size
    scale = 1.0 / math.cos(math.radians(lat)) if crs_kind == "3857" else 1.0
    px = res_m * scale
    m = margin_m * scale
    x0, x1 = min(xs) - m, max(xs) + m
    y0, y1 = min(ys) - m, max(ys) + m
    width = math.ceil((x1 - x0) / px)
    height = math.ceil((y1 - y0) / px)
    return Affine(px, 0, x0, 0, -px, y1), crs, height, width


def _coast(shape: tuple[int, int], rng: np.random.Generator, res_m: float) -> tuple[np.ndarray, list[tuple]]:
    """Land mask (True = land) with a wavy coast and 2-4 piers; returns the piers as (r0, c0, r1, c1, axis)."""
    h, w = shape
    rr, cc = np.mgrid[0:h, 0:w]
    side = int(rng.integers(0, 4))  # land along the north, east, south or west
    depth = rng.uniform(0.25, 0.4)
    waves = sum(rng.uniform(5, 20) / res_m * 10 * np.sin(2 * np.pi * (k + 1) * np.arange(max(h, w)) / max(h, w)
                                                          + rng.uniform(0, 6.3)) for k in range(3))
    if side in (0, 2):
        edge = depth * h + waves[:w]
        land = rr < edge[None, :] if side == 0 else rr > (h - edge)[None, :]
    else:
        edge = depth * w + waves[:h]
        land = cc > (w - edge)[:, None] if side == 1 else cc < edge[:, None]
    piers = []
    n = int(rng.integers(2, 5))
    pier_w = max(round(70 / res_m), 3)
    pier_l = round(rng.uniform(500, 900) / res_m)
    along = w if side in (0, 2) else h
    for k in range(n):
        pos = int((k + 1) * along / (n + 1))
        base = int(depth * (h if side in (0, 2) else w))
        if side == 0:
            r0, r1, c0, c1 = base - 5, base + pier_l, pos - pier_w // 2, pos + pier_w // 2 + 1
        elif side == 2:
            r0, r1, c0, c1 = h - base - pier_l, h - base + 5, pos - pier_w // 2, pos + pier_w // 2 + 1
        elif side == 1:
            r0, r1, c0, c1 = pos - pier_w // 2, pos + pier_w // 2 + 1, w - base - pier_l, w - base + 5
        else:
            r0, r1, c0, c1 = pos - pier_w // 2, pos + pier_w // 2 + 1, base - 5, base + pier_l
        r0, r1, c0, c1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
        land[r0:r1, c0:c1] = True
        piers.append((r0, c0, r1, c1, "rows" if side in (0, 2) else "cols"))
    return land, piers


def _hull(shape: tuple[int, int], row: float, col: float, length_px: float, width_px: float,
          heading_deg: float, ss: int = 4) -> np.ndarray:
    """Fractional cover (0..1) of a pointed hull, by supersampling a box around it."""
    h, w = shape
    half = math.ceil(length_px / 2 + 2)
    r0, r1 = max(int(row) - half, 0), min(int(row) + half + 1, h)
    c0, c1 = max(int(col) - half, 0), min(int(col) + half + 1, w)
    cover = np.zeros(shape, dtype=np.float32)
    if r1 <= r0 or c1 <= c0:
        return cover
    rr, cc = np.mgrid[r0:r1:1 / ss, c0:c1:1 / ss]
    rr, cc = rr + 0.5 / ss - 0.5, cc + 0.5 / ss - 0.5  # sample points relative to pixel centres
    t = math.radians(heading_deg)
    dx, dy = cc - col, -(rr - row)  # east, north
    along = dx * math.sin(t) + dy * math.cos(t)
    across = dx * math.cos(t) - dy * math.sin(t)
    half_l, half_w = length_px / 2, width_px / 2
    bow = np.clip((half_l - along) / max(half_w * 2, 1e-6), 0, 1)  # taper the last part to a point
    inside = (np.abs(along) <= half_l) & (np.abs(across) <= half_w * np.minimum(1.0, bow + 0.2))
    block = inside.reshape(r1 - r0, ss, c1 - c0, ss).mean(axis=(1, 3))
    cover[r0:r1, c0:c1] = block
    return cover


def _place_ships(specs: Sequence[ShipSpec], land: np.ndarray, piers: list[tuple], res_m: float,
                 transform: Affine, to_lonlat: Transformer, from_lonlat: Transformer, rng: np.random.Generator
                 ) -> tuple[list[TruthShip], np.ndarray, np.ndarray]:
    h, w = land.shape
    occupied = ndimage.binary_dilation(land, iterations=1)
    cover_all = np.zeros(land.shape, dtype=np.float32)
    weight = np.zeros(land.shape, dtype=np.float32)  # cover x radar brightness of each hull
    truth: list[TruthShip] = []
    for spec in specs:
        length = float(spec.length_m)
        width = float(spec.width_m or max(length / 6.5, res_m * 0.6))
        for _attempt in range(200):
            alongside = False
            if spec.lon is not None and spec.lat is not None:
                x, y = from_lonlat.transform(spec.lon, spec.lat)
                col, row = ~transform @ (x, y)
                col, row = col - 0.5, row - 0.5
                heading = spec.heading_deg if spec.heading_deg is not None else float(rng.uniform(0, 180))
            elif piers and rng.random() < 0.5:
                r0, c0, r1, c1, axis = piers[int(rng.integers(len(piers)))]
                gap = width / 2 / res_m + 1.6
                if axis == "rows":  # pier runs north-south: moor on its east or west face
                    row = float(rng.uniform(r0 + 8 + length / res_m / 2, max(r1 - length / res_m / 2, r0 + 9)))
                    col = (c0 - gap - 0.5) if rng.random() < 0.5 else (c1 - 1 + gap + 0.5)
                    heading = 0.0
                else:
                    col = float(rng.uniform(c0 + 8 + length / res_m / 2, max(c1 - length / res_m / 2, c0 + 9)))
                    row = (r0 - gap - 0.5) if rng.random() < 0.5 else (r1 - 1 + gap + 0.5)
                    heading = 90.0
                alongside = True
            else:
                row, col = float(rng.uniform(0, h)), float(rng.uniform(0, w))
                heading = spec.heading_deg if spec.heading_deg is not None else float(rng.uniform(0, 180))
            cover = _hull(land.shape, row, col, length / res_m, width / res_m, heading)
            body = cover > 0.05
            if body.sum() == 0 or (body & occupied).any():
                if spec.lon is not None:
                    raise ValueError(f"ship {spec.name or length} at {spec.lon}, {spec.lat} is on land or overlaps")
                continue
            occupied |= ndimage.binary_dilation(body, iterations=2)
            cover_all = np.maximum(cover_all, cover)
            weight = np.maximum(weight, cover * ship_sigma0(length))
            x, y = transform @ (col + 0.5, row + 0.5)
            lon, lat = to_lonlat.transform(x, y)
            truth.append(TruthShip(float(lon), float(lat), length, width, heading % 180.0, row, col, alongside,
                                   spec.name))
            break
    return truth, cover_all, weight


def ship_sigma0(length_m: float) -> float:
    """Mean radar brightness (sigma0, linear) of a hull: grows with size, about +11 dB at 150 m, -2 dB at 20 m.

    A rough fit to the spread of ship radar cross-sections per unit area reported for C-band; it is what makes
    small boats hard to see in simulated SAR, as in real images.
    """
    db = min(max(-2.0 + 15.0 * math.log10(max(length_m, 1.0) / 20.0), -12.0), 14.0)
    return 10 ** (db / 10)


def sea_clutter(shape: tuple[int, int], seed: int = 3, looks: float = 1.0, nu: float = 8.0, patch_px: int = 32
                ) -> np.ndarray:
    """Open-sea SAR amplitude (uint16) with K-distributed clutter: a gamma texture of shape ``nu`` constant over
    ``patch_px`` squares (swell and wind cells) times gamma speckle of ``looks`` looks (1: single-look, the
    heaviest tail; Sentinel-1 GRD is about 4.4). Used to bound a detector's false alarms on sea without ships."""
    rng = np.random.default_rng(seed)
    cells = rng.gamma(nu, 1 / nu, (shape[0] // patch_px + 1, shape[1] // patch_px + 1))
    tex = np.repeat(np.repeat(cells, patch_px, 0), patch_px, 1)[: shape[0], : shape[1]]
    inten = rng.gamma(looks, 1 / looks, shape) * tex
    return np.clip(np.sqrt(inten) * 200.0, 0, 65535).astype(np.uint16)


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, sigma: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return (f - f.mean()) / (f.std() + 1e-9)


def _sar_pixels(land: np.ndarray, cover: np.ndarray, weight: np.ndarray, rng: np.random.Generator,
                enl: float = 4.4) -> np.ndarray:
    shape = land.shape
    sea_sigma0, land_sigma0 = 10 ** (-20 / 10), 10 ** (-7 / 10)
    nu = 6.0  # K-distribution shape of the sea texture (larger = closer to pure speckle)
    texture = ndimage.uniform_filter(rng.gamma(nu, 1 / nu, shape).astype(np.float32), 3)
    texture /= texture.mean()
    land_tex = np.exp(0.6 * _smooth_field(shape, rng, 2.0))
    mean = np.where(land, land_sigma0 * land_tex, sea_sigma0 * texture).astype(np.float32)
    mean = mean * (1 - cover) + weight
    speckle = rng.gamma(enl, 1 / enl, shape).astype(np.float32)
    intensity = mean * speckle
    return np.clip(np.sqrt(intensity) * 1000.0, 1, 65535).astype(np.uint16)


_REFLECTANCE = {  # blue, green, red, nir surface reflectance
    "water": (0.06, 0.05, 0.03, 0.015),
    "land": (0.08, 0.10, 0.12, 0.25),
    "ship": (0.22, 0.22, 0.21, 0.24),
    "cloud": (0.55, 0.55, 0.56, 0.58),
}


def _optical_pixels(land: np.ndarray, cover: np.ndarray, rng: np.random.Generator, cloud_cover: float
                    ) -> tuple[list[np.ndarray], np.ndarray, float]:
    shape = land.shape
    tex = 1 + 0.15 * _smooth_field(shape, rng, 1.5)
    cloud = np.zeros(shape, dtype=bool)
    if cloud_cover >= 1.0:
        cloud[:] = True
    elif cloud_cover > 0:
        field_ = _smooth_field(shape, rng, max(shape) / 12)
        cloud = field_ > np.quantile(field_, 1 - cloud_cover)
    shadow = np.roll(cloud, (6, 6), axis=(0, 1)) & ~cloud
    bands = []
    for i in range(4):
        water, landv, ship, cl = (_REFLECTANCE[k][i] for k in ("water", "land", "ship", "cloud"))
        base = np.where(land, landv * tex, water).astype(np.float32)
        base = base * (1 - cover) + ship * cover
        base = np.where(shadow, base * 0.5, base)
        base = np.where(cloud, cl, base)
        base = base + rng.normal(0, 0.004, shape).astype(np.float32)
        bands.append(np.clip(base * 10000 + 1000, 1, 65535).astype(np.uint16))  # L2A offset of 1000 (baseline 4)
    scl = np.where(land, 5, 6).astype(np.uint8)
    scl[shadow] = 3
    scl[cloud] = 9
    return bands, scl, float(cloud.mean())


def simulate_scene(site: Site, when: datetime, sensor: str, ships: Sequence[ShipSpec], out_path: str | Path,
                   seed: int = 0, resolution_m: float = 10.0, cloud_cover: float = 0.0, crs: str = "utm",
                   margin_m: float = 400.0) -> SimulatedScene:
    """Write one simulated scene over ``site`` as a COG (plus ``<name>.truth.geojson``) and return its truth.

    The coastline is fixed by ``seed`` (same site, same port layout); ships and noise vary with the time.
    """
    when = ensure_utc(when)
    kind = "sar" if "sar" in sensor else "optical"
    transform, grid_crs, h, w = _grid(site, resolution_m, margin_m, crs)
    layout_rng = np.random.default_rng(seed)
    rng = np.random.default_rng([seed, int(when.timestamp())])
    land, piers = _coast((h, w), layout_rng, resolution_m)
    to_ll = Transformer.from_crs(grid_crs, 4326, always_xy=True)
    from_ll = Transformer.from_crs(4326, grid_crs, always_xy=True)
    truth, cover, weight = _place_ships(ships, land, piers, resolution_m, transform, to_ll, from_ll, rng)
    tags = {"ROUTEWATCH_SIMULATED": "1", "ROUTEWATCH_SENSOR": sensor, "ROUTEWATCH_SITE": site.key,
            "ACQUISITION_DATETIME": when.isoformat(), "ROUTEWATCH_RESOLUTION_M": f"{resolution_m:g}"}
    out = Path(out_path)
    cloud_frac = 0.0
    if kind == "sar":
        write_cog(out, [_sar_pixels(land, cover, weight, rng)], transform=transform, crs=grid_crs, descriptions=["vv"],
                  tags=tags)
    else:
        bands, scl, cloud_frac = _optical_pixels(land, cover, rng, cloud_cover)
        tags["CLOUD_COVER"] = f"{cloud_frac:.4f}"
        write_cog(out, [*bands, scl.astype(np.uint16)], transform=transform, crs=grid_crs,
                  descriptions=["blue", "green", "red", "nir", "scl"], tags=tags, nodata=0)
    feats = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [s.lon, s.lat]},
              "properties": {k: v for k, v in asdict(s).items() if k not in ("lon", "lat")}} for s in truth]
    _write_water(out.with_name(out.stem + ".water.geojson"), ~land, transform, to_ll)
    truth_path = out.with_name(out.stem + ".truth.geojson")
    truth_path.write_text(json.dumps({"type": "FeatureCollection", "simulated": True, "features": feats}, indent=1))
    return SimulatedScene(out, when, sensor, truth, cloud_frac)


def _write_water(path: Path, water: np.ndarray, transform: Affine, to_ll: Transformer) -> None:
    """The simulated water as WGS84 polygons: what an analyst would digitise (the user-polygon mask path)."""
    import shapely
    from rasterio.features import shapes
    from shapely.geometry import mapping, shape
    from shapely.ops import unary_union

    polys = [shape(g) for g, v in shapes(water.astype(np.uint8), mask=water, transform=transform) if v == 1]
    merged = (shapely.transform(unary_union(polys), lambda x, y: to_ll.transform(x, y), interleaved=False)
              if polys else None)
    feats = [] if merged is None else [{"type": "Feature", "properties": {"simulated": True},
                                        "geometry": mapping(merged)}]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))


ShipsByDay = Mapping[date, Sequence[ShipSpec | float]] | Callable[[date], Sequence[ShipSpec | float]]


def simulate_site_scenes(site: Site, start: date | datetime, end: date | datetime, sensor: str,
                         ships_by_day: ShipsByDay, out_dir: str | Path, seed: int = 0,
                         every_days: float | None = None, cloud_cover: float | Callable[[date], float] = 0.0,
                         resolution_m: float = 10.0, crs: str = "utm") -> list[SimulatedScene]:
    """One simulated scene every ``every_days`` (default: 12 for SAR, 5 for optical) over [start, end].

    ``ships_by_day`` maps a date to the ships present (ShipSpec or just a length in metres); days missing from
    it have an empty port, which is what negative looks are made of.
    """
    kind = "sar" if "sar" in sensor.lower() or "sentinel-1" in sensor.lower() else "optical"
    sim_sensor = SAR_SENSOR if kind == "sar" else OPTICAL_SENSOR
    step = every_days if every_days is not None else (12.0 if kind == "sar" else 5.0)
    d0 = start.date() if isinstance(start, datetime) else start
    d1 = end.date() if isinstance(end, datetime) else end
    hour = time(9, 0) if kind == "sar" else time(2, 0)
    out = Path(out_dir)
    scenes: list[SimulatedScene] = []
    k = 0
    while True:
        day = d0 + timedelta(days=math.floor(k * step))
        if day > d1:
            break
        raw = ships_by_day(day) if callable(ships_by_day) else ships_by_day.get(day, ())
        specs = [s if isinstance(s, ShipSpec) else ShipSpec(float(s)) for s in raw]
        cc = cloud_cover(day) if callable(cloud_cover) else cloud_cover
        name = f"{site.key}_{sim_sensor}_{day:%Y%m%d}.tif"
        scenes.append(simulate_scene(site, datetime.combine(day, hour, tzinfo=UTC), sim_sensor, specs, out / name,
                                     seed=seed, resolution_m=resolution_m, cloud_cover=cc, crs=crs))
        k += 1
    return scenes
