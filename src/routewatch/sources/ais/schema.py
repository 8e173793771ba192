"""The canonical AIS position frame that every reader produces and every analysis reads.

Columns (one row per position report):

* ``mmsi`` Int32; ``timestamp`` UTC datetime (microseconds), the receiver's time of the message;
* ``lon``, ``lat`` WGS84 degrees; ``sog_kn`` speed over ground in knots; ``cog_deg`` course over ground and
  ``heading_deg`` true heading in degrees (null when the message says "not available");
* ``nav_status`` the AIS navigational status code (null when unknown); ``msg_type`` the AIS message type
  (0 for provider CSV rows);
* ``source`` the input file name and ``line`` its 1-based line number, so that any derived claim can be walked
  back to the message it rests on.

Duplicates are rows with the same (mmsi, timestamp, lon, lat): the same file ingested twice, or one message heard
by two receivers that stamp it with the same time; and one message heard by receivers whose clocks differ by up
to 2 s (the same mmsi and point; :mod:`.partitions`). Receivers whose clocks differ by more give one row each
(docs/ais.md).
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from routewatch.model import latest_observation_time

POSITION_SCHEMA: dict[str, pl.DataType] = {
    "mmsi": pl.Int32(),
    "timestamp": pl.Datetime("us", "UTC"),
    "lon": pl.Float64(),
    "lat": pl.Float64(),
    "sog_kn": pl.Float32(),
    "cog_deg": pl.Float32(),
    "heading_deg": pl.Float32(),
    "nav_status": pl.Int8(),
    "msg_type": pl.Int8(),
    "source": pl.String(),
    "line": pl.Int64(),
}
DEDUPE_KEY = ("mmsi", "timestamp", "lon", "lat")


# Past these a value is "not available" (ITU-R M.1371: speed 102.3 kn, course 360, heading 511) or no value at all
# (a course of 400 deg): one rule for every reader. Type 27's own codes (63 kn, 511 deg) are read by the NMEA reader.
VALID_BELOW = {"sog_kn": 102.3 - 1e-3, "cog_deg": 360.0, "heading_deg": 360.0}


# Times a position can have: AIS began around 2000, so a time outside these is a corrupt value (a millisecond epoch
# read as seconds, a receiver clock at zero) that would make a day partition of 1970 or of the year 55969 (which
# no datetime can even hold): a bad row, counted with its line, in every reader.
# A time later than the ingest itself (plus a day for a receiver clock set ahead or a zone written wrong) is no
# position yet: a 2030 row had made a day partition, a visit and a six-year gap cued to every site.
TIME_MIN = datetime(1980, 1, 1, tzinfo=UTC)
BAD_TIME = "time out of range (before 1980 or in the future)"


def plausible_time(column: str = "timestamp") -> pl.Expr:
    """Whether a time lies in [:data:`TIME_MIN`, :func:`~routewatch.model.latest_observation_time`) (null for a
    null time)."""
    return pl.col(column).is_between(TIME_MIN, latest_observation_time(), closed="left")


def available(column: str) -> pl.Expr:
    """``column`` with its not-available codes and impossible values (negative, past the limit, NaN) as nulls."""
    c = pl.col(column)
    return pl.when(c.is_not_nan() & (c >= 0) & (c < VALID_BELOW[column])).then(c).otherwise(None).alias(column)


def empty_positions() -> pl.DataFrame:
    return pl.DataFrame(schema=POSITION_SCHEMA)


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """Select and cast the canonical columns in order (missing optional columns become nulls)."""
    exprs = [
        (pl.col(k) if k in frame.columns else pl.lit(None)).cast(v).alias(k) for k, v in POSITION_SCHEMA.items()
    ]
    return frame.select(exprs)


# An ISO 8601 zone designator after a time of day: Z, +05, -0530, +02:00
ZONE = r"(Z|[+-]\d{2}(?::?\d{2})?)"
# A time of day (hh:mm, seconds and a fraction optional) as it ends the local part of an ISO 8601 time
TIME_OF_DAY = r"\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?"


def utc_offset_us(zone: pl.Expr) -> pl.Expr:
    """Microseconds east of UTC of a zone designator (:data:`ZONE`); none (null) is UTC."""
    z = zone.str.replace(":", "").str.replace("Z", "+0000").str.pad_end(5, "0")
    east = (z.str.slice(1, 2).cast(pl.Int64, strict=False) * 3600
            + z.str.slice(3, 2).cast(pl.Int64, strict=False) * 60) * 1_000_000
    return pl.when(z.str.starts_with("-")).then(-east).otherwise(east).fill_null(0)


def iso_utc(text: pl.Expr) -> pl.Expr:
    """ISO 8601 times in any of their spellings (format inferred), with or without a zone, as UTC: a time with an
    offset is moved to UTC, one without is taken as UTC. The zone is looked for only after a time of day, so the
    ``-01`` of a date alone is not read as an offset."""
    parts = text.str.strip_chars().str.extract_groups(r"^(.*?" + TIME_OF_DAY + r")\s*" + ZONE + r"?$")
    local = pl.coalesce(parts.struct.field("1"), text.str.strip_chars())
    return ((local.str.to_datetime(strict=False, time_unit="us").dt.epoch("us") - utc_offset_us(parts.struct.field("2")))
            .cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
