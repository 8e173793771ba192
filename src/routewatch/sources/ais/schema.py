"""The canonical AIS position frame that every reader produces and every analysis reads.

Columns (one row per position report):

* ``mmsi`` Int32; ``timestamp`` UTC datetime (microseconds), the receiver's time of the message;
* ``lon``, ``lat`` WGS84 degrees; ``sog_kn`` speed over ground in knots; ``cog_deg`` course over ground and
  ``heading_deg`` true heading in degrees (null when the message says "not available");
* ``nav_status`` the AIS navigational status code (null when unknown); ``msg_type`` the AIS message type
  (0 for provider CSV rows);
* ``source`` the input file name and ``line`` its 1-based line number, so that any derived claim can be walked
  back to the message it rests on.

Duplicates are rows with the same (mmsi, timestamp, lon, lat): the same message heard by two receivers or the
same file ingested twice.
"""

from __future__ import annotations

import polars as pl

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
