"""Provider CSV exports of AIS: the US MarineCadastre layout, the Danish Maritime Authority layout, and others
through a column mapping.

A mapping names, for each canonical column, the provider's column, plus the time format. Rows whose MMSI, time or
position do not parse, or whose position is out of range, are counted as bad with their line numbers; they never
abort the file. Static columns (name, IMO, call sign, length, width) feed the vessel registry.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from routewatch.sources.ais.nmea import ReadReport
from routewatch.sources.ais.schema import conform

# ITU-R M.1371 navigational status codes by the words the Danish Maritime Authority writes.
NAV_STATUS_WORDS = {
    "under way using engine": 0, "at anchor": 1, "not under command": 2, "restricted manoeuverability": 3,
    "restricted maneuverability": 3, "constrained by her draught": 4, "moored": 5, "aground": 6,
    "engaged in fishing": 7, "under way sailing": 8, "reserved for future amendment [hsc]": 9,
    "reserved for future amendment [wig]": 10, "power-driven vessel towing astern": 11,
    "power-driven vessel pushing ahead or towing alongside": 12, "ais-sart": 14, "unknown value": 15,
}
STATIC_FIELDS = ("name", "imo", "call_sign", "length_m", "beam_m")


@dataclass(frozen=True)
class ColumnMapping:
    """Which provider column feeds each canonical column; ``time_format`` is a strftime pattern (UTC assumed)."""

    name: str
    mmsi: str
    timestamp: str
    lon: str
    lat: str
    time_format: str | None = None
    columns: dict[str, str] = field(default_factory=dict)  # optional: sog_kn, cog_deg, heading_deg, nav_status,
    # name, imo, call_sign, length_m, beam_m
    nav_status_words: bool = False

    def source_columns(self) -> dict[str, str]:
        return {"mmsi": self.mmsi, "timestamp": self.timestamp, "lon": self.lon, "lat": self.lat, **self.columns}


MARINECADASTRE = ColumnMapping(
    "marinecadastre", "MMSI", "BaseDateTime", "LON", "LAT", "%Y-%m-%dT%H:%M:%S",
    {"sog_kn": "SOG", "cog_deg": "COG", "heading_deg": "Heading", "nav_status": "Status", "name": "VesselName",
     "imo": "IMO", "call_sign": "CallSign", "length_m": "Length", "beam_m": "Width"},
)
DMA = ColumnMapping(
    "dma", "MMSI", "# Timestamp", "Longitude", "Latitude", "%d/%m/%Y %H:%M:%S",
    {"sog_kn": "SOG", "cog_deg": "COG", "heading_deg": "Heading", "nav_status": "Navigational status",
     "name": "Name", "imo": "IMO", "call_sign": "Callsign", "length_m": "Length", "beam_m": "Width"},
    nav_status_words=True,
)
LAYOUTS = {m.name: m for m in (MARINECADASTRE, DMA)}


def load_mapping(path: Path) -> ColumnMapping:
    """Read a column mapping from TOML (see docs/ais.md): required keys mmsi, timestamp, lon, lat."""
    data = tomllib.loads(path.read_text())
    missing = [k for k in ("mmsi", "timestamp", "lon", "lat") if k not in data]
    if missing:
        raise ValueError(f"{path}: column mapping lacks {', '.join(missing)}")
    extra = {k: v for k, v in data.items() if k not in {"name", "mmsi", "timestamp", "lon", "lat", "time_format",
                                                          "nav_status_words"}}
    return ColumnMapping(data.get("name", path.stem), data["mmsi"], data["timestamp"], data["lon"], data["lat"],
                         data.get("time_format"), extra, bool(data.get("nav_status_words", False)))


def detect_layout(header: str) -> ColumnMapping | None:
    """Recognise a known provider from the header line."""
    cols = [c.strip() for c in header.strip().split(",")]
    for mapping in LAYOUTS.values():
        if all(c in cols for c in (mapping.mmsi, mapping.timestamp, mapping.lon, mapping.lat)):
            return mapping
    return None


@dataclass
class CsvResult:
    positions: pl.DataFrame
    statics: pl.DataFrame  # mmsi, timestamp, line, name, imo, call_sign, length_m, beam_m
    report: ReadReport


def read_provider_csv(path: Path, mapping: ColumnMapping | None = None, source: str | None = None) -> CsvResult:
    """Read one provider CSV into canonical positions (see :mod:`.schema`) and static rows."""
    path = Path(path)
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        header = fh.readline()
    mapping = mapping or detect_layout(header)
    if mapping is None:
        raise ValueError(f"{path}: line 1: unknown CSV layout (header {header.strip()[:80]!r}); give a column mapping")
    present = {c.strip() for c in header.strip().split(",")}
    wanted = {k: v for k, v in mapping.source_columns().items() if v in present}
    for key in ("mmsi", "timestamp", "lon", "lat"):
        if key not in wanted:
            raise ValueError(f"{path}: line 1: column {mapping.source_columns()[key]!r} ({key}) is missing")
    numeric = {"mmsi": pl.Int64, "lon": pl.Float64, "lat": pl.Float64, "sog_kn": pl.Float32, "cog_deg": pl.Float32,
               "heading_deg": pl.Float32, "length_m": pl.Float32, "beam_m": pl.Float32}
    overrides = {v: (numeric.get(k, pl.String)) for k, v in wanted.items()}
    if "nav_status" in wanted and not mapping.nav_status_words:
        overrides[wanted["nav_status"]] = pl.Float32
    raw = pl.read_csv(path, columns=list(dict.fromkeys(wanted.values())), schema_overrides=overrides,
                      ignore_errors=True, infer_schema=False)
    frame = raw.select([pl.col(v).alias(k) for k, v in wanted.items()]).with_row_index("line", offset=2)
    ts = pl.col("timestamp").str.strip_chars()
    ts = ts.str.to_datetime(mapping.time_format, strict=False, time_unit="us") if mapping.time_format \
        else ts.str.to_datetime(strict=False, time_unit="us")
    exprs = [ts.dt.replace_time_zone("UTC").alias("timestamp"), pl.col("line").cast(pl.Int64),
             pl.lit(source or path.name).alias("source"), pl.lit(0, pl.Int8).alias("msg_type")]
    if "nav_status" in wanted:
        if mapping.nav_status_words:
            exprs.append(pl.col("nav_status").str.to_lowercase().replace_strict(
                NAV_STATUS_WORDS, default=None, return_dtype=pl.Int8).alias("nav_status"))
        else:
            exprs.append(pl.col("nav_status").cast(pl.Int8, strict=False))
    for col, missing in (("sog_kn", 102.3), ("cog_deg", 360.0), ("heading_deg", 511.0)):
        if col in wanted:
            exprs.append(pl.when(pl.col(col) < missing - 1e-3).then(pl.col(col)).otherwise(None).alias(col))
    frame = frame.with_columns(exprs)
    valid = (
        pl.col("mmsi").is_between(1, 999_999_999) & pl.col("timestamp").is_not_null()
        & pl.col("lon").is_between(-180, 180) & pl.col("lat").is_between(-90, 90)
    ).fill_null(False)
    frame = frame.with_columns(valid.alias("_ok"))
    report = ReadReport(lines=frame.height + 1)
    bad = frame.filter(~pl.col("_ok"))
    if bad.height:
        report.bad["unparsable or out-of-range row"] = bad.height
        for row in bad.head(5).iter_rows(named=True):
            report.examples.append((int(row["line"]), "unparsable or out-of-range row",
                                    f"mmsi={row['mmsi']} time={row['timestamp']} lon={row['lon']} lat={row['lat']}"))
    good = frame.filter(pl.col("_ok"))
    positions = conform(good)
    report.messages = report.positions = positions.height
    static_cols = [c for c in STATIC_FIELDS if c in wanted]
    statics = good.select(["mmsi", "timestamp", "line", *static_cols])
    if "imo" in static_cols:
        statics = statics.with_columns(pl.col("imo").str.extract(r"(\d{7})", 1).cast(pl.Int64, strict=False))
    if static_cols:
        statics = statics.filter(pl.any_horizontal(pl.col(c).is_not_null() for c in static_cols))
        statics = statics.unique(["mmsi", *static_cols], keep="last", maintain_order=True)
    report.statics = statics.height
    return CsvResult(positions, statics, report)
