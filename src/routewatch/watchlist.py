"""Load and validate a watchlist: sites (polygons), routes between site groups, vessels and coverage schedules.

The format is TOML (see docs/watchlist.md)::

    [sites.rajin]
    name = "Rajin (Najin) port"
    kind = "port"
    bbox = [130.265, 42.215, 130.310, 42.250]     # lon_min, lat_min, lon_max, lat_max (WGS84)
    # or: polygon = "POLYGON ((...))" (WKT), geojson = '{"type": "Polygon", ...}', geojson_file = "rajin.geojson"

    [groups]
    russia = ["dunai", "vostochny"]

    [routes.rajin-russia]
    origin = ["rajin"]
    destination = ["russia"]                        # site keys or group names
    vessels = ["angara", "lady-r"]

    [vessels.angara]
    name = "ANGARA"
    length_m = 120

    [coverage.near-daily]                           # named schedules for the judgement's --coverage option
    sensors = ["planetscope:1:0.56", "sentinel-1:12:1.0"]

Every error names the file, the line and the field, so an analyst can fix a watchlist without reading code.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shapely import wkt as shapely_wkt
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from routewatch.model import SENSOR_DETECTION, CoverageAssumption, Mode, Route, Site, SiteKind, Vessel

KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


class WatchlistError(ValueError):
    """A watchlist problem, located: ``file:line: field: message``."""

    def __init__(self, path: Path | str | None, line: int | None, fieldname: str, message: str) -> None:
        where = f"{path or '<watchlist>'}" + (f":{line}" if line else "")
        super().__init__(f"{where}: {fieldname}: {message}")
        self.path, self.line, self.field = path, line, fieldname


@dataclass(frozen=True)
class Watchlist:
    """Sites, routes and vessels by key; named site groups and coverage schedules. ``path``: where it was read."""

    sites: dict[str, Site] = field(default_factory=dict)
    routes: dict[str, Route] = field(default_factory=dict)
    vessels: dict[str, Vessel] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    coverage: dict[str, tuple[CoverageAssumption, ...]] = field(default_factory=dict)
    path: Path | None = None

    def expand(self, names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
        """Site keys for a list of site keys and group names, in order, without repeats."""
        out: list[str] = []
        for n in names:
            for k in self.groups.get(n, (n,)):
                if k not in out:
                    out.append(k)
        return (out and tuple(out)) or ()

    def vessel_by_name(self, name: str) -> Vessel | None:
        """A vessel by key, name, IMO or MMSI (case-insensitive); an IMO or MMSI as people write them (``IMO 9161003``,
        ``273 210 440``) matches the digits the watchlist keeps."""
        wanted = name.strip().casefold()
        digits = wanted.removeprefix("imo").replace(" ", "").replace("-", "")
        for v in self.vessels.values():
            ids = {v.key.casefold(), v.name.casefold(), (v.imo or "").casefold(), (v.mmsi or "").casefold()}
            if wanted in ids - {""} or (digits.isdigit() and digits in {v.imo, v.mmsi}):  # a missing IMO or MMSI
                return v  # matches nothing
        return None

    def vessel_lengths(self) -> dict[str, float]:
        return {k: v.length_m for k, v in self.vessels.items() if v.length_m}


class _Locator:
    """Finds the line of a table header or a key inside it, since tomllib reports values without positions."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def table(self, *parts: str) -> int | None:
        targets = {".".join(parts), ".".join(f'"{p}"' if "-" in p or "." in p else p for p in parts)}
        for i, line in enumerate(self.lines, start=1):
            m = re.match(r"^\s*\[\s*([^\]]+?)\s*\]\s*(#.*)?$", line)
            if m and m.group(1).replace(" ", "") in targets:
                return i
        return None

    def key(self, table: tuple[str, ...], key: str) -> int | None:
        start = self.table(*table)
        if start is None:
            return None
        for i in range(start, len(self.lines)):
            line = self.lines[i]
            if re.match(r"^\s*\[", line):
                break
            if re.match(rf"^\s*{re.escape(key)}\s*=", line):
                return i + 1
        return start


def _str_tuple(value: Any, where: tuple[str, ...], key: str, err: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise err(where, key, "must be a string or a list of strings")
    return tuple(value)


def _geometry(entry: Mapping[str, Any], base: Path | None, where: tuple[str, ...], err: Any) -> BaseGeometry:
    given = [k for k in ("bbox", "polygon", "geojson", "geojson_file") if k in entry]
    if len(given) != 1:
        raise err(where, "geometry", "give exactly one of bbox, polygon (WKT), geojson, geojson_file")
    kind = given[0]
    value = entry[kind]
    try:
        if kind == "bbox":
            if not (
                isinstance(value, list) and len(value) == 4 and all(isinstance(v, int | float) for v in value)
            ):
                raise err(where, kind, "must be [lon_min, lat_min, lon_max, lat_max]")
            x0, y0, x1, y1 = (float(v) for v in value)
            if not (x0 < x1 and y0 < y1):
                raise err(where, kind, f"min must be below max, got {value}")
            geom = box(x0, y0, x1, y1)
        elif kind == "polygon":
            geom = shapely_wkt.loads(str(value))
        elif kind == "geojson":
            geom = shape(json.loads(value) if isinstance(value, str) else value)
        else:
            p = Path(str(value))
            if not p.is_absolute() and base is not None:
                p = base.parent / p
            data = json.loads(p.read_text())
            if data.get("type") == "FeatureCollection":
                data = data["features"][0]["geometry"]
            elif data.get("type") == "Feature":
                data = data["geometry"]
            geom = shape(data)
    except WatchlistError:
        raise
    except Exception as exc:  # shapely/json raise many types; the message is what matters to the user
        raise err(where, kind, f"cannot read geometry: {exc}") from exc
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise err(where, kind, f"must be a polygon, got {geom.geom_type}")
    if not geom.is_valid:
        raise err(where, kind, f"invalid polygon: {explain_validity(geom)}")
    x0, y0, x1, y1 = geom.bounds
    if not (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
        raise err(where, kind, f"coordinates outside WGS84 lon/lat range: bounds {geom.bounds}")
    return geom


def parse_coverage_spec(text: str, *, site: str | None = None) -> CoverageAssumption:
    """``sensor:every_days:usable`` (e.g. ``planetscope:1:0.56``) as a CoverageAssumption."""
    parts = text.strip().split(":")
    if len(parts) != 3:
        raise ValueError(f"coverage {text!r}: expected sensor:every_days:usable, e.g. planetscope:1:0.56")
    sensor, every, usable = parts[0].strip().lower(), float(parts[1]), float(parts[2])
    if sensor not in SENSOR_DETECTION:
        raise ValueError(
            f"coverage {text!r}: unknown sensor {sensor!r}; known: {', '.join(sorted(SENSOR_DETECTION))}"
        )
    if every <= 0 or not 0 <= usable <= 1:
        raise ValueError(f"coverage {text!r}: every_days must be > 0 and usable in [0, 1]")
    return CoverageAssumption(sensor=sensor, every_days=every, usable=usable, site=site)


SITE_KEYS = frozenset({"name", "kind", "bbox", "polygon", "geojson", "geojson_file", "country", "notes", "sources"})
VESSEL_KEYS = frozenset({"name", "imo", "mmsi", "call_sign", "type", "length_m", "beam_m", "capacity_teu", "flag",
                         "sanctions", "notes", "sources"})
ROUTE_KEYS = frozenset({"name", "origin", "destination", "mode", "vessels", "max_speed_kn", "max_transit_days",
                        "notes", "sources"})


def _no_unknown_keys(entry: Mapping[str, Any], allowed: frozenset[str], where: tuple[str, ...], err: Any) -> None:
    """A misspelt key (``max_transit_dayz``) would otherwise be dropped silently and its default used."""
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise err(where, unknown[0], f"unknown key; allowed: {', '.join(sorted(allowed))}")


def load_watchlist(path: str | Path) -> Watchlist:
    """Read and validate a watchlist file; raises WatchlistError naming the file, line and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WatchlistError(path, None, "file", f"cannot read: {exc.strerror}") from exc
    return parse_watchlist(text, path)


def parse_watchlist(text: str, path: Path | None = None) -> Watchlist:
    loc = _Locator(text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise WatchlistError(path, int(m.group(1)) if m else None, "toml", str(exc)) from exc

    def err(where: tuple[str, ...], key: str, message: str) -> WatchlistError:
        return WatchlistError(path, loc.key(where, key), ".".join((*where, key)), message)

    unknown = set(data) - {"sites", "routes", "vessels", "groups", "coverage", "watchlist"}
    if unknown:
        first = sorted(unknown)[0]
        raise WatchlistError(
            path,
            loc.table(first),
            first,
            "unknown section; expected sites, groups, routes, vessels, coverage",
        )

    sites: dict[str, Site] = {}
    for key, entry in (data.get("sites") or {}).items():
        where = ("sites", key)
        if not KEY_RE.match(key):
            raise err(where, "key", "site keys are lower-case letters, digits, '-' and '_'")
        if not isinstance(entry, dict):
            raise err(where, "key", "must be a table")
        _no_unknown_keys(entry, SITE_KEYS, where, err)
        kind = entry.get("kind", "port")
        try:
            site_kind = SiteKind(kind)
        except ValueError:
            raise err(
                where, "kind", f"unknown kind {kind!r}; one of {', '.join(k.value for k in SiteKind)}"
            ) from None
        sites[key] = Site(
            key=key,
            name=str(entry.get("name", key)),
            kind=site_kind,
            geometry=_geometry(entry, path, where, err),
            country=entry.get("country"),
            notes=str(entry.get("notes", "")),
            sources=_str_tuple(entry.get("sources"), where, "sources", err),
        )

    groups: dict[str, tuple[str, ...]] = {}
    for name, members in (data.get("groups") or {}).items():
        tup = _str_tuple(members, ("groups",), name, err)
        if name in sites:
            raise err(("groups",), name, "a group cannot have the same name as a site")
        for member in tup:
            if member not in sites:
                raise err(("groups",), name, f"unknown site {member!r}")
        groups[name] = tup

    vessels: dict[str, Vessel] = {}
    for key, entry in (data.get("vessels") or {}).items():
        where = ("vessels", key)
        if not KEY_RE.match(key):
            raise err(where, "key", "vessel keys are lower-case letters, digits, '-' and '_'")
        if not isinstance(entry, dict):
            raise err(where, "key", "must be a table")
        _no_unknown_keys(entry, VESSEL_KEYS, where, err)
        for num in ("length_m", "beam_m", "capacity_teu"):
            v = entry.get(num)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
                                  or v <= 0):
                raise err(where, num, f"must be a positive number, got {v!r}")
        vessels[key] = Vessel(
            key=key,
            name=str(entry.get("name", key.upper())),
            imo=_identifier(entry.get("imo"), 7, where, "imo", err, prefix="IMO"),
            mmsi=_identifier(entry.get("mmsi"), 9, where, "mmsi", err),
            call_sign=_opt_str(entry.get("call_sign")),
            vessel_type=str(entry.get("type", "")),
            length_m=_opt_float(entry.get("length_m")),
            beam_m=_opt_float(entry.get("beam_m")),
            capacity_teu=_opt_float(entry.get("capacity_teu")),
            flag=_opt_str(entry.get("flag")),
            sanctions=str(entry.get("sanctions", "")),
            notes=str(entry.get("notes", "")),
            sources=_str_tuple(entry.get("sources"), where, "sources", err),
        )

    def resolve(where: tuple[str, ...], key: str, names: tuple[str, ...]) -> tuple[str, ...]:
        if not names:
            raise err(where, key, "must name at least one site or group")
        out: list[str] = []
        for n in names:
            if n in groups:
                out.extend(m for m in groups[n] if m not in out)
            elif n in sites:
                if n not in out:
                    out.append(n)
            else:
                raise err(where, key, f"unknown site or group {n!r}")
        return tuple(out)

    routes: dict[str, Route] = {}
    for key, entry in (data.get("routes") or {}).items():
        where = ("routes", key)
        if not KEY_RE.match(key):
            raise err(where, "key", "route keys are lower-case letters, digits, '-' and '_'")
        if not isinstance(entry, dict):
            raise err(where, "key", "must be a table")
        _no_unknown_keys(entry, ROUTE_KEYS, where, err)
        origin = resolve(where, "origin", _str_tuple(entry.get("origin"), where, "origin", err))
        destination = resolve(
            where, "destination", _str_tuple(entry.get("destination"), where, "destination", err)
        )
        if set(origin) & set(destination):
            raise err(where, "destination", "a site cannot be both origin and destination")
        fleet = _str_tuple(entry.get("vessels"), where, "vessels", err)
        for v in fleet:
            if v not in vessels:
                raise err(where, "vessels", f"unknown vessel {v!r}")
        mode = entry.get("mode", "sea")
        try:
            route_mode = Mode(mode)
        except ValueError:
            raise err(where, "mode", f"unknown mode {mode!r}; one of sea, rail, air") from None
        for num in ("max_speed_kn", "max_transit_days"):
            v = entry.get(num)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or v <= 0):
                raise err(where, num, f"must be a positive number, got {v!r}")
        routes[key] = Route(
            key=key,
            name=str(entry.get("name", key)),
            origin=origin,
            destination=destination,
            mode=route_mode,
            vessels=fleet,
            max_speed_kn=float(entry.get("max_speed_kn", 16.0)),
            max_transit_days=float(entry.get("max_transit_days", 10.0)),
            notes=str(entry.get("notes", "")),
            sources=_str_tuple(entry.get("sources"), where, "sources", err),
        )

    coverage: dict[str, tuple[CoverageAssumption, ...]] = {}
    for name, entry in (data.get("coverage") or {}).items():
        where = ("coverage", name)
        if not isinstance(entry, dict):
            raise err(where, "sensors", "must be a table with a sensors list")
        _no_unknown_keys(entry, frozenset({"sensors"}), where, err)
        specs = _str_tuple(entry.get("sensors"), where, "sensors", err)
        try:
            items = [parse_coverage_spec(s) for s in specs]
        except ValueError as exc:
            raise err(where, "sensors", str(exc)) from None
        if not items:
            raise err(where, "sensors", "list at least one sensor:every_days:usable")
        coverage[name] = tuple(items)

    return Watchlist(sites=sites, routes=routes, vessels=vessels, groups=groups, coverage=coverage, path=path)


def describe_coverage(items: tuple[CoverageAssumption, ...] | list[CoverageAssumption]) -> str:
    return " + ".join(CoverageAssumption(c.sensor, c.every_days, c.usable).describe() for c in items)


def _identifier(v: Any, digits: int, where: tuple[str, ...], field: str, err: Any, prefix: str = "") -> str | None:
    """An IMO number (seven digits, ``IMO 9161003`` allowed) or an MMSI (up to nine digits, blanks allowed) as its
    digits alone, so that it links to the AIS registry, which holds numbers; anything else is refused by name."""
    if v in (None, ""):
        return None
    text = str(v).strip()
    if prefix and text.upper().startswith(prefix):
        text = text[len(prefix):]
    text = text.replace(" ", "").replace("-", "")
    if not text.isdigit() or len(text) > digits or (field == "imo" and len(text) != digits) or int(text) == 0:
        what = "seven digits (an IMO prefix is allowed)" if field == "imo" else "the nine-digit MMSI"
        raise err(where, field, f"must be {what}, got {v!r}")
    return text


def _opt_str(v: Any) -> str | None:
    return None if v in (None, "") else str(v)


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)
