"""AIS sources: NMEA 0183 (pyais plus a vectorised fast path) and provider CSVs into day-partitioned Parquet."""

from routewatch.sources.ais.ingest import FileSummary, ingest_file, ingest_files
from routewatch.sources.ais.nmea import NmeaResult, ReadReport, read_nmea_lines
from routewatch.sources.ais.partitions import day_dirs, read_day, scan_positions, write_positions
from routewatch.sources.ais.providers import (
    DMA,
    MARINECADASTRE,
    ColumnMapping,
    load_mapping,
    read_provider_csv,
)
from routewatch.sources.ais.registry import link_watchlist, mmsi_to_vessel, vessel_registry
from routewatch.sources.ais.schema import POSITION_SCHEMA

__all__ = [
    "DMA", "MARINECADASTRE", "POSITION_SCHEMA", "ColumnMapping", "FileSummary", "NmeaResult", "ReadReport",
    "day_dirs", "ingest_file", "ingest_files", "link_watchlist", "load_mapping", "mmsi_to_vessel",
    "read_day", "read_nmea_lines", "read_provider_csv", "scan_positions", "vessel_registry", "write_positions",
]
