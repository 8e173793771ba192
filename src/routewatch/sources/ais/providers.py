"""Provider CSV exports of AIS: the US MarineCadastre layout, the Danish Maritime Authority layout, and others
through a column mapping.

A mapping names, for each canonical column, the provider's column, plus the time format. Rows whose MMSI, time or
position do not parse, or whose position is out of range, are counted as bad with their line numbers; they never
abort the file. Static columns (name, IMO, call sign, length, width) feed the vessel registry.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import re
import tomllib
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from routewatch.model import TIME_OF_DAY_MARK
from routewatch.sources.ais.nmea import ReadReport
from routewatch.sources.ais.schema import (
    TIME_OF_DAY,
    VALID_BELOW,
    ZONE,
    available,
    conform,
    iso_utc,
    plausible_time,
)

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
    delimiter: str = ","  # the field separator (";" in many European exports, "\t" for tab-separated files)

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


MAPPING_COLUMNS = ("mmsi", "timestamp", "lon", "lat", "sog_kn", "cog_deg", "heading_deg", "nav_status",
                   *STATIC_FIELDS)


def load_mapping(path: Path) -> ColumnMapping:
    """Read a column mapping from TOML (see docs/ais.md): required keys mmsi, timestamp, lon, lat; ``layout``
    names the mapping (``name`` is the vessel-name column, like the other canonical columns). A key that is none
    of these is refused, so that a misspelt column is not silently left unread."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the column mapping ({exc})") from None
    missing = [k for k in ("mmsi", "timestamp", "lon", "lat") if k not in data]
    if missing:
        raise ValueError(f"{path}: column mapping lacks {', '.join(missing)}")
    known = {*MAPPING_COLUMNS, "layout", "time_format", "nav_status_words", "delimiter"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(unknown)} in the column mapping; the keys are "
                         f"layout, time_format, nav_status_words, delimiter and the columns "
                         f"{', '.join(MAPPING_COLUMNS)}")
    for k, v in data.items():
        if (k == "nav_status_words") != isinstance(v, bool) or (k != "nav_status_words" and not isinstance(v, str)):
            raise ValueError(f"{path}: {k} = {v!r}: expected " + ("true or false" if k == "nav_status_words"
                                                                 else "a column name in quotes"))
    delimiter = data.get("delimiter", ",")
    if len(delimiter) != 1 or delimiter in "\"\r\n":
        raise ValueError(f"{path}: delimiter = {delimiter!r}: expected one character such as \",\", \";\" or \"\\t\"")
    extra = {k: data[k] for k in MAPPING_COLUMNS[4:] if k in data}
    return ColumnMapping(data.get("layout", path.stem), data["mmsi"], data["timestamp"], data["lon"], data["lat"],
                         data.get("time_format"), extra, bool(data.get("nav_status_words", False)), delimiter)


def header_fields(header: str, delimiter: str = ",") -> list[str]:
    """The header line's fields as the CSV reader sees them (byte-order mark and line end removed)."""
    return next(csv.reader([header.lstrip("\ufeff").rstrip("\r\n")], delimiter=delimiter), [])


def header_names(header: str, delimiter: str = ",") -> dict[str, str]:
    """The header line's column names, trimmed, each to the name as the CSV reader sees it (quotes removed,
    blanks kept: ``MMSI, BaseDateTime`` has a column named ``" BaseDateTime"``)."""
    names: dict[str, str] = {}
    for f in header_fields(header, delimiter):  # a name written exactly wins over a padded one; otherwise the first of its spellings
        if f.strip() not in names or f == f.strip() != names[f.strip()]:
            names[f.strip()] = f
    return names


def read_header(path: Path) -> str:
    """The first line of a plain or gzipped CSV, as UTF-8 without a byte-order mark (stray bytes as U+FFFD)."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace") as fh:  # type: ignore[operator]
        return str(fh.readline())


@dataclass(frozen=True)
class FileShape:
    """What one pass over a CSV's bytes tells the reader, at numpy speed (about 0.04 CPU-s per 230 MB): its
    newlines, commas, whether it ends with a newline, and whether it holds a quote character.

    Without quotes no field can span lines or hide a comma, so the file has ``records`` CSV records (the header
    included), each on the line of its index plus one, and a row with more fields than the header shows as more
    commas than the rows need. The hashing pass of an ingest computes it on its own blocks.
    """

    newlines: int
    commas: int  # field separators (commas unless the mapping gives another delimiter)
    ends_with_newline: bool
    quoted: bool
    last_line: bytes = b""  # the file's last line (a download cut short ends in a short row)
    separator: bytes = b","

    @property
    def records(self) -> int:
        return self.newlines + (0 if self.ends_with_newline else 1)

    @classmethod
    def of(cls, blocks, separator: str = ",") -> FileShape:
        newlines = commas = 0
        sep = ord(separator)
        tail, quoted = b"", False
        for block in blocks:
            arr = np.frombuffer(block, np.uint8)
            newlines += int(np.count_nonzero(arr == ord("\n")))
            commas += int(np.count_nonzero(arr == sep))
            quoted = quoted or b'"' in block
            tail = block[-65536:] if len(block) >= 65536 else (tail + block)[-65536:]
        body = tail[:-1] if tail.endswith(b"\n") else tail
        return cls(newlines, commas, tail.endswith(b"\n"), quoted, body[body.rfind(b"\n") + 1:],
                   separator.encode())

    def commas_short(self, n_fields: int) -> int:
        """How many commas the last line lacks for ``n_fields`` fields (a row cut short, padded with nulls by
        the reader): they would otherwise hide as many extra commas of a ragged row from the count."""
        if not self.last_line.strip(b"\r, \t" + self.separator):
            return 0
        return max(0, n_fields - 1 - self.last_line.count(self.separator))


def record_lines(data: bytes, delimiter: str = ",") -> np.ndarray:
    """The file line on which each data record (after the header) starts, when quoted fields span lines.

    Read with the csv module, which like polars takes a quote inside an unquoted field (``12"3``) as text, so
    only quotes that open a field can hide a newline. Only called for the rare file whose record count differs
    from its line count; a blank line is a record here as it is a (null) row for polars.
    """
    # a carriage return alone is no line end for polars nor the line count: a blank here
    text = data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", " ")
    reader = csv.reader(io.StringIO(text, newline="\n"), delimiter=delimiter)
    starts, done = [], 0
    with contextlib.suppress(csv.Error):  # a quote never closed: polars has refused the file already
        for _ in reader:
            starts.append(done + 1)
            done = reader.line_num
    return np.asarray(starts[1:], dtype=np.int64)


MAX_RECORD_LINES = 5  # a quoted field over more lines than this is a quote never closed, not an address


def recoded_csv(path: Path, data: bytes, delimiter: str, why: str) -> bytes:
    """``data`` read by the csv module (a quote inside an unquoted field is text; a quoted field may span lines)
    and written out again with regular quoting, each record on the lines it had, so that line numbers hold. A
    record over more than :data:`MAX_RECORD_LINES` lines is a quote never closed: refused by its line."""
    # A carriage return alone is no record end for polars nor the line count, where the csv module would end the
    # record (every later line number had been off by one): one just before a separator or a line end is dropped,
    # as polars drops it, and any other is kept through a placeholder, put back in the fields written.
    text = data.decode("utf-8", "replace")
    mark = next(chr(c) for c in range(0xE000, 0xF900) if chr(c) not in text)  # a private-use character, unused
    text = re.sub("\r(?=" + re.escape(delimiter) + ")", "", text)
    text = re.sub("\r(?!\n)", mark, text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    out = io.StringIO()
    special = (delimiter, '"', "\n", "\r")

    def field(value: str) -> str:  # quoted when it holds a carriage return too (csv.writer leaves those bare)
        value = value.replace(mark, "\r")
        return '"' + value.replace('"', '""') + '"' if any(c in value for c in special) else value

    done = 0
    try:
        for row in reader:
            if reader.line_num - done > MAX_RECORD_LINES:
                raise ValueError(f"{path}: line {done + 1}: a quote opened there is not closed within "
                                 f"{MAX_RECORD_LINES} lines; the file cannot be read as CSV ({why})")
            out.write(delimiter.join(field(f) for f in row) + "\n")
            done = reader.line_num
    except csv.Error as exc:  # a quote that opens a field on the record's first line and closes nowhere right
        raise ValueError(f"{path}: line {done + 1}: a quote opened there is not closed ({exc} at line "
                         f"{reader.line_num}); the file cannot be read as CSV ({why})") from None
    return out.getvalue().encode("utf-8")


def _as_polars_reads(line: str) -> str:
    """One line of a CSV (split at newlines) for the csv module: its line-end carriage return dropped and any other
    a blank, since polars and the line count end no record there (the csv module would)."""
    return line.rstrip("\r").replace("\r", " ")


RAGGED = "row with more fields than the header"


def rows_end_with_separator(head: bytes, separator: str = ",") -> bool:
    """Whether a CSV's rows end with a separator that its header does not (some exports end every value with
    one): the empty field after the header's last is then the row's end, not a value that shifted the others.

    Judged on the first 100 data lines of ``head`` (the file's first bytes): the header must not end with the
    separator, every line must have more fields than the header, and some one more, an empty one.
    """
    lines = [_as_polars_reads(ln) for ln in head.decode("utf-8", "replace").lstrip("\ufeff").split("\n")]
    if len(head) >= 1 << 16:
        lines = lines[:-1]  # the last line may be cut by the head's end
    header, rows = (lines[0], [ln for ln in lines[1:101] if ln.strip()]) if lines else ("", [])
    if not rows or header.endswith(separator):
        return False
    n = len(header_fields(header, separator))
    # every row has more fields than the header (a shifted row has more still), and rows have one more, an empty
    # one: a row whose last column is merely blank ends with the separator too, but has the header's count
    try:  # a carriage return alone inside a line: no row shape to judge (the read reports the file)
        parsed = [next(csv.reader([ln], delimiter=separator), []) for ln in rows]
    except csv.Error:
        return False
    return all(len(f) > n for f in parsed) and any(len(f) == n + 1 and not f[-1].strip() for f in parsed)


def ragged_lines(data: bytes, n_fields: int, delimiter: str = ",") -> list[int]:
    """File lines (1-based) whose record has more than ``n_fields`` fields: a separator in an unquoted value
    (``MSC, NAISHA``) shifts every value after it, so such a row cannot be trusted.

    Separators are counted per line with numpy; only lines with too many are parsed with the csv module (a quoted
    comma is not a separator). A record spanning lines is judged by its first line. Called after the lenient read
    (which cut such rows to the header's columns) and when the file's comma count (:class:`FileShape`) exceeds
    what its rows need.
    """
    buf = np.frombuffer(data, np.uint8)
    newlines = np.flatnonzero(buf == ord("\n"))
    per_line = np.bincount(np.searchsorted(newlines, np.flatnonzero(buf == ord(delimiter))),
                           minlength=len(newlines) + 1)
    out = []
    for i in np.flatnonzero(per_line > n_fields - 1):
        if i == 0:
            continue  # the header
        start = newlines[i - 1] + 1
        end = newlines[i] if i < len(newlines) else len(buf)
        text = _as_polars_reads(bytes(buf[start:end]).decode("utf-8", "replace"))
        if len(next(csv.reader([text], delimiter=delimiter), [])) > n_fields:
            out.append(int(i) + 1)
    return out


def detect_layout(header: str) -> ColumnMapping | None:
    """Recognise a known provider from the header line."""
    cols = header_names(header)
    for mapping in LAYOUTS.values():
        if all(c in cols for c in (mapping.mmsi, mapping.timestamp, mapping.lon, mapping.lat)):
            return mapping
    return None


def _nearest_layout(header: str) -> tuple[ColumnMapping, list[str]] | None:
    """A known layout that the header follows but for some required columns (most of its columns are there), with
    the required ones missing: a clearer error than "unknown layout" for a file whose LAT column was dropped."""
    cols = header_names(header)
    for mapping in LAYOUTS.values():
        names = mapping.source_columns()
        missing = [k for k in ("mmsi", "timestamp", "lon", "lat") if names[k] not in cols]
        if sum(v in cols for v in names.values()) >= len(names) / 2 and len(missing) < 4:
            return mapping, missing
    return None


@dataclass
class CsvResult:
    """Canonical positions, the read report, and the static records (mmsi, first_seen, last_seen, timestamp (= last),
    line, name, imo, call_sign, length_m, beam_m). The static records are reduced in a background thread (polars
    releases the GIL) so that the caller can sort and write the positions meanwhile; ``statics`` waits for them."""

    positions: pl.DataFrame
    report: ReadReport
    _statics: Future[pl.DataFrame] | pl.DataFrame

    @property
    def statics(self) -> pl.DataFrame:
        if isinstance(self._statics, Future):
            self._statics = self._statics.result()
            self.report.statics = self._statics.height
        return self._statics


def _mmsi_from_text(text: pl.Expr) -> pl.Expr:
    """An MMSI as written: digits, or a whole number written as a float (``273210440.0``: pandas writes an integer
    column that has a blank as floats; such rows had been refused)."""
    text = text.str.strip_chars()
    as_float = text.cast(pl.Float64, strict=False)
    whole = pl.when(as_float.is_finite() & (as_float == as_float.floor()) & (as_float.abs() < 1e12)) \
        .then(as_float.cast(pl.Int64))
    return pl.coalesce(text.cast(pl.Int64, strict=False), whole)


def _scan(path: Path, data: bytes | None, columns: list[str], overrides: dict[str, pl.DataType],
          lenient: bool, separator: str = ",") -> pl.LazyFrame:
    """Typed columns parsed by the CSV reader itself; times stay text and are parsed with their known format.

    ``lenient`` turns a value that does not parse into a null (the row is then reported as bad), cuts a row with
    more fields than the header to the header's columns, and reads bytes that are not UTF-8 as U+FFFD, instead of
    stopping at the first of them; it costs about 15 % of the read, so a file is read strictly first (see
    :func:`read_provider_csv`). Polars cuts a row with too many fields silently when only some
    columns are read (the strict read too): :func:`read_provider_csv` finds such rows from the file's commas.
    """
    kwargs: dict = {"schema_overrides": overrides, "infer_schema": False, "separator": separator}
    if lenient:
        kwargs.update(ignore_errors=True, truncate_ragged_lines=True, encoding="utf8-lossy")
    if data is not None:  # a decompressed file: the lazy reader wants a file of plain text, so read it eagerly
        return pl.read_csv(io.BytesIO(data), columns=columns, **kwargs).lazy()
    return pl.scan_csv(path, **kwargs).select(columns)


def read_provider_csv(path: Path, mapping: ColumnMapping | None = None, source: str | None = None,
                      shape: Callable[[], FileShape] | None = None) -> CsvResult:
    """Read one provider CSV into canonical positions (see :mod:`.schema`) and static records.

    One lazy query: numbers are parsed by the CSV reader (no text columns to cast afterwards), times with the
    layout's explicit format, and static columns are reduced to one row per distinct (mmsi, static fields) record
    with the span it was heard, so a day file of millions of rows gives thousands of registry rows.

    Every position keeps the file line it came from, also after a quoted field that spans lines, and a row with
    more fields than the header (its values after the stray comma have shifted) is reported and left out. Both
    rest on the file's :class:`FileShape`, which ``shape`` gives when the caller computed it anyway (an ingest
    does, while hashing the file); otherwise it is computed here.
    """
    path = Path(path)
    data = None
    if path.suffix.lower() == ".gz":  # decompressed once, for both reads and the line count
        try:
            data = gzip.decompress(path.read_bytes())
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: cannot be decompressed ({exc or type(exc).__name__})") from None
    head = data[: 1 << 16] if data is not None else _head(path)
    if b"\r" in head and b"\n" not in head:  # lines ended by a carriage return alone (classic Mac): the CSV
        # reader splits on newlines only, and would read the whole file as its header
        data = (data if data is not None else path.read_bytes()).replace(b"\r", b"\n")
    header = read_header(path)
    mapping = mapping or detect_layout(header)
    if mapping is None:
        near = _nearest_layout(header)
        if near is not None:
            layout, missing = near
            raise ValueError(f"{path}: line 1: {layout.name} layout without its "
                             + ", ".join(f"{layout.source_columns()[k]!r} ({k})" for k in missing) + " column")
        hint = ""
        if "," not in header and any(c in header for c in ";\t|"):  # another separator: a mapping can name it
            hint = " with its delimiter (the header is not separated by commas)"
        raise ValueError(f"{path}: line 1: unknown CSV layout (header {header.strip()[:80]!r}); give a column "
                         f"mapping{hint}")
    sep = mapping.delimiter
    present = header_names(header, sep)
    if mapping is not LAYOUTS.get(mapping.name):  # a user's mapping: a column it names and the file lacks is a
        # misspelling or the wrong mapping, not a column to do without (a speed never read ends every stop)
        absent = [(k, v) for k, v in mapping.source_columns().items() if v not in present]
        if absent:
            raise ValueError(f"{path}: line 1: " + ", ".join(f"column {v!r} ({k})" for k, v in absent)
                             + f" of mapping {mapping.name!r} not in the header (it has: "
                             + ", ".join(repr(n) for n in present) + ")")
    fields = header_fields(header, sep)
    for key, name in mapping.source_columns().items():  # a padded repeat (" LAT") yields to the exact spelling,
        spelt = present.get(name.strip())  # but the same spelling twice leaves polars to pick one, silently
        if spelt is not None and fields.count(spelt) > 1:
            where = ", ".join(str(i + 1) for i, f in enumerate(fields) if f == spelt)
            raise ValueError(f"{path}: line 1: column {spelt!r} ({key}) appears {fields.count(spelt)} times in the "
                             f"header (fields {where}): which one to read is ambiguous; rename one")
    wanted = {k: present[v] for k, v in mapping.source_columns().items() if v in present}
    for key in ("mmsi", "timestamp", "lon", "lat"):
        if key not in wanted:
            raise ValueError(f"{path}: line 1: column {mapping.source_columns()[key]!r} ({key}) is missing")
    numeric = {"mmsi": pl.Int64, "lon": pl.Float64, "lat": pl.Float64, "sog_kn": pl.Float32, "cog_deg": pl.Float32,
               "heading_deg": pl.Float32, "length_m": pl.Float32, "beam_m": pl.Float32}
    overrides = {v: (numeric.get(k, pl.String)) for k, v in wanted.items()}
    if "nav_status" in wanted and not mapping.nav_status_words:
        overrides[wanted["nav_status"]] = pl.Float32
    sources = list(dict.fromkeys(wanted.values()))

    def blank(text_cols: list[str]) -> pl.Expr:
        """Every field empty (no text, or blanks only): a blank line, which is not data and not a bad row either.
        ``text_cols`` are the columns still held as text (the strict reader makes a number of blanks a null)."""
        return pl.all_horizontal(pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "") if c in text_cols
                                 else pl.col(c).is_null() for c in text_cols + [k for k in wanted if k not in text_cols])

    def scan(lenient: bool) -> pl.LazyFrame:
        """The wanted columns under their canonical names, typed. The lenient read takes every column as text
        first and marks blank lines (``_blank``) there, so that a line of text that parses as nothing is told
        from an empty one, and casts the numbers after; the strict read marks them later, on its few bad rows."""
        lf = _scan(path, data, sources, {c: pl.String if lenient else overrides[c] for c in sources}, lenient,
                   sep).select(
            [pl.col(v).alias(k) for k, v in wanted.items()])
        if lenient:
            lf = lf.with_columns(blank(list(wanted)).alias("_blank")).with_columns(
                _mmsi_from_text(pl.col(k)) if k == "mmsi" else pl.col(k).str.strip_chars().cast(overrides[v], strict=False)
                for k, v in wanted.items() if overrides[v] != pl.String)
        return lf.with_row_index("line", offset=2)

    # ISO times (no format given) are parsed as written when the file's first times carry no zone, the common case
    # and ten times quicker; rows that fail (a zone further down) are parsed again below with their zone
    zoned = not mapping.time_format and _times_have_zones(path, data, wanted["timestamp"], sep)

    def parse(text: pl.Expr, with_zones: bool = False) -> pl.Expr:
        """UTC times: with the layout's format (a ``%z`` in it also takes ``Z``), or ISO 8601 with or without a
        zone when it gives none."""
        fmt = mapping.time_format
        if not fmt:  # a date alone is no time for a position (its midnight would be made up): a bad row
            parsed = iso_utc(text) if with_zones or zoned else \
                text.str.to_datetime(strict=False, time_unit="us").dt.replace_time_zone("UTC")
            return pl.when(text.str.contains(TIME_OF_DAY_MARK)).then(parsed)
        if "%z" in fmt or "%:z" in fmt:
            text = text.str.replace(r"Z\s*$", "+00:00")
        return text.str.to_datetime(fmt, strict=False, time_unit="us").dt.replace_time_zone("UTC")

    # Times padded with blanks are rare: parse as written; the rows that fail are parsed again without the
    # blanks below (a when/then here would strip and parse every row a second time).
    exprs = [parse(pl.col("timestamp")).alias("timestamp"), pl.col("line").cast(pl.Int64),
             pl.lit(source or path.name).alias("source"), pl.lit(0, pl.Int8).alias("msg_type")]
    if "nav_status" in wanted:
        if mapping.nav_status_words:
            exprs.append(pl.col("nav_status").str.to_lowercase().replace_strict(
                NAV_STATUS_WORDS, default=None, return_dtype=pl.Int8).alias("nav_status"))
        else:  # a code 0-15; anything else (MarineCadastre writes -99) is not a status
            code = pl.col("nav_status")
            exprs.append(pl.when(code.is_between(0, 15) & (code == code.floor())).then(code.cast(pl.Int8))
                         .alias("nav_status"))
    exprs.extend(available(col) for col in VALID_BELOW if col in wanted)  # not-available codes become nulls
    valid = (
        pl.col("mmsi").is_between(1, 999_999_999) & plausible_time()  # a time, and a believable one
        & pl.col("lon").is_between(-180, 180) & pl.col("lat").is_between(-90, 90)
        & ((pl.col("lon") != 0) | (pl.col("lat") != 0))  # 0 N 0 E exactly: a default, not a place
    ).fill_null(False)

    def collect(lenient: bool) -> pl.DataFrame:
        timestamp = parse(pl.col("timestamp")).alias("timestamp")  # built now: `zoned` may have changed
        with warnings.catch_warnings():  # a quote inside a field makes polars warn of its row count estimate;
            warnings.filterwarnings("ignore", message="CSV malformed")  # the records are checked below
            return scan(lenient).with_columns(pl.col("timestamp").alias("_raw")).with_columns(
                timestamp, *exprs[1:]).collect(engine="streaming")  # a batch of rows at a time

    # Most provider files are clean: read strictly, and only a file with a bad value, a ragged row or a byte
    # that is not UTF-8 is read again, leniently (a second read: about 1.7 times the time of one).
    def read(lenient: bool) -> pl.DataFrame:
        nonlocal zoned
        try:
            return collect(lenient)
        except pl.exceptions.PolarsError as exc:
            if zoned or mapping.time_format or "time zone" not in str(exc):
                raise
            zoned = True  # the first time polars parsed had a zone (past the rows sampled): read every zone
            return collect(lenient)

    frame = None
    with contextlib.suppress(pl.exceptions.PolarsError):
        frame = read(lenient=False)
    lenient = frame is None
    if lenient:
        try:
            frame = read(lenient=True)
        except pl.exceptions.PolarsError as exc:  # e.g. a quote never closed: the file cannot be read as CSV
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            # a stray quote that polars cannot get past (beside a field quoted over two lines): written out again
            # by the csv module, which reads such a quote as text, and read once more; a quote that swallows
            # many lines is refused there by line
            data = recoded_csv(path, data if data is not None else path.read_bytes(), sep, first)
            try:
                frame = read(lenient=True)
            except pl.exceptions.PolarsError:
                raise ValueError(f"{path}: cannot be read as CSV ({first})") from None
    file = FileShape.of([data], sep) if data is not None else shape() if shape else \
        FileShape.of(_file_blocks(path), sep)
    if file.quoted and file.records != frame.height + 1:  # a quoted field spans lines: rows are not lines
        lines = record_lines(data if data is not None else path.read_bytes(), sep)
        if len(lines) < frame.height:  # the two readers disagree on the records: say so rather than guess
            raise ValueError(f"{path}: {frame.height:,} records read but only {len(lines):,} found by the csv "
                             "module; line numbers cannot be given (check the quoting)")
        frame = frame.with_columns(pl.Series("line", lines[frame["line"].to_numpy() - 2]))
    retry = frame.select(pl.col("timestamp").is_null() & pl.col("_raw").is_not_null()).to_series()
    if retry.any():  # parsed again, those rows only: blanks stripped, and an ISO time's zone read
        idx = retry.arg_true()
        fixed = pl.DataFrame({"_raw": frame["_raw"].gather(idx)}).select(
            parse(pl.col("_raw").str.strip_chars(), with_zones=True)).to_series()
        frame = frame.with_columns(frame["timestamp"].scatter(idx, fixed))
    frame = frame.with_columns(valid.alias("_ok"))
    report = ReadReport(lines=file.records)
    n_fields = len(fields)
    # Rows that all end with a separator the header lacks have one empty field more than the header: no shift
    trailing = rows_end_with_separator(data[: 1 << 16] if data is not None else head, sep)
    row_fields = n_fields + trailing
    # Both readers cut a row with too many fields to the header's columns (its values may have shifted): such a
    # row shows as more commas than the header and the rows need (a blank line has none; a quoted comma also
    # counts, and then the exact search below finds no row).
    empty = int(frame.select((pl.col("mmsi").is_null() & pl.col("_raw").is_null() & pl.col("lon").is_null()
                              & pl.col("lat").is_null()).sum()).item())
    needed = n_fields - 1 + (row_fields - 1) * (frame.height - empty) - file.commas_short(row_fields)
    if lenient or file.commas > needed:
        ragged = frame.select(pl.col("line").is_in(
            ragged_lines(data if data is not None else path.read_bytes(), row_fields, sep))).to_series()
        if ragged.any():
            report.bad[RAGGED] = int(ragged.sum())
            said = f"more than the header's {n_fields} fields" + (" and the separator ending each row"
                                                                   if trailing else "")
            for row in frame.filter(ragged).head(5).iter_rows(named=True):
                report.examples.append((int(row["line"]), RAGGED, said))
            frame = frame.filter(~ragged)
    n_good = int(frame["_ok"].sum())
    heard, some_bad = frame, n_good < frame.height  # the registry learns from every row with an MMSI and a time
    if n_good < frame.height:
        bad = frame.filter(~pl.col("_ok"))
        if "_blank" not in bad.columns:  # strict read: the text columns and the time as written tell blank lines
            texts = [k for k, v in wanted.items() if overrides[v] == pl.String and k not in ("timestamp", "nav_status")]
            bad = bad.with_columns(blank([*texts, "_raw"]).alias("_blank"))
        bad = bad.filter(~pl.col("_blank"))
        _refuse_reordered_headers(path, data, bad, fields, sep, mapping.source_columns()["timestamp"])
        if bad.height:
            report.bad["unparsable or out-of-range row"] = bad.height
        columns = mapping.source_columns()
        for row in bad.head(5).select(  # times as numbers and text: a year past 9999 is no Python datetime
                "line", "mmsi", pl.col("timestamp").dt.epoch("us").alias("t_us"),
                pl.col("timestamp").dt.strftime("%Y-%m-%d %H:%M").alias("t_text"), "_raw", "lon", "lat",
        ).iter_rows(named=True):
            report.examples.append((int(row["line"]), "unparsable or out-of-range row",  # the time as written
                                    "; ".join(_row_faults(row, columns, mapping.time_format))
                                    + f" (mmsi={row['mmsi']} time={row['_raw']!r} lon={row['lon']} lat={row['lat']})"))
        frame = frame.filter(pl.col("_ok"))
    frame = frame.drop("_raw", *(["_blank"] if "_blank" in frame.columns else []))
    positions = conform(frame)
    report.messages = report.positions = positions.height
    pool = ThreadPoolExecutor(1)
    statics = pool.submit(_static_records, heard if some_bad else frame, [c for c in STATIC_FIELDS if c in wanted],
                          some_bad)
    pool.shutdown(wait=False)
    return CsvResult(positions, report, statics)


def _epoch_us(t: datetime) -> int:
    return round(t.timestamp() * 1_000_000)


def _row_faults(row: Mapping[str, Any], columns: Mapping[str, str], time_format: str | None) -> list[str]:
    """What is wrong with a bad row, field by field under the file's own column names (the example had only
    listed the values, leaving the reader to find which one was refused)."""
    from routewatch.model import latest_observation_time
    from routewatch.sources.ais.schema import TIME_MIN

    out = []
    mmsi, t, raw, lon, lat = row["mmsi"], row["t_us"], row["_raw"], row["lon"], row["lat"]
    if mmsi is None:
        out.append(f"{columns['mmsi']} missing or not a number")
    elif not 1 <= mmsi <= 999_999_999:
        out.append(f"{columns['mmsi']} {mmsi} is not an MMSI (1-999999999)")
    if t is None:
        out.append(f"{columns['timestamp']} missing" if raw is None or not str(raw).strip() else
                   f"{columns['timestamp']} {raw!r} not read as {time_format or 'an ISO 8601 time with a time of day'}")
    elif not _epoch_us(TIME_MIN) <= t < _epoch_us(latest_observation_time()):
        out.append(f"{columns['timestamp']} {row['t_text']} out of range (before {TIME_MIN:%Y} or in the future)")
    for key, limit in (("lon", 180), ("lat", 90)):
        value = row[key]
        if value is None:
            out.append(f"{columns[key]} missing or not a number")
        elif not -limit <= value <= limit:
            out.append(f"{columns[key]} {value} out of range (-{limit} to {limit})")
    if lon == 0 and lat == 0:
        out.append(f"{columns['lon']}, {columns['lat']} 0, 0: the default of a transponder without a position fix")
    return out or ["refused"]


def _refuse_reordered_headers(path: Path, data: bytes | None, bad: pl.DataFrame, header: list[str], separator: str,
                              time_column: str) -> None:
    """Exports concatenated into one file repeat their header: one in the first header's order is one bad row, but
    one in another order moves every later value into another column (longitude read as latitude), so the file is
    refused at that line. Only bad rows whose time is the time column's name are looked at."""
    raw = pl.col("_raw").str.strip_chars().str.strip_chars_start("\ufeff")  # a byte-order mark ahead of it too
    wanted = set(bad.filter(raw == time_column.strip())["line"].to_list())
    if not wanted:
        return
    first = [f.strip() for f in header]  # the header's fields
    last = max(wanted)
    with (io.BytesIO(data) if data is not None else path.open("rb")) as fh:  # up to the last such line only, and
        text = {n: line for n, line in zip(range(1, last + 1), fh, strict=False) if n in wanted}  # split at \n only
    for n in sorted(text):
        line = text[n].decode("utf-8", "replace").lstrip("\ufeff").rstrip("\r\n")  # `cat` of two Excel exports
        fields = [f.strip() for f in next(csv.reader([line], delimiter=separator), [])]
        if sorted(fields) == sorted(first) and fields != first:
            raise ValueError(f"{path}: line {n}: the header again, in another column order than line 1 "
                             f"({separator.join(fields)}): the rows after it would be read into the wrong columns; "
                             "split the file at this line and ingest the parts")


def _times_have_zones(path: Path, data: bytes | None, column: str, separator: str = ",", rows: int = 200) -> bool:
    """Whether the first times of a CSV's time column carry a UTC offset or Z (ISO 8601 with a zone)."""
    try:
        head = pl.read_csv(io.BytesIO(data) if data is not None else path, columns=[column], n_rows=rows,
                           infer_schema=False, truncate_ragged_lines=True, encoding="utf8-lossy",
                           separator=separator)
    except pl.exceptions.PolarsError:
        return False  # the reads below say what is wrong with the file
    return bool(head.to_series().drop_nulls().str.contains(TIME_OF_DAY + r"\s*" + ZONE + r"\s*$").any())


def _head(path: Path, size: int = 1 << 16) -> bytes:
    with path.open("rb") as fh:
        return fh.read(size)


def _file_blocks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        yield from iter(lambda: fh.read(1 << 22), b"")


NO_TEXT = ["", "unknown", "undefined", "n/a", "na", "none", "null", "-"]  # placeholders for a name or call sign


def _static_records(rows: pl.DataFrame, static_cols: list[str], check: bool = False) -> pl.DataFrame:
    """One row per distinct (mmsi, static fields): first and last time heard, first line (group-by on hashes).
    ``check``: ``rows`` also hold rows left out of the positions; those without a valid MMSI and time go."""
    if not static_cols:
        return pl.DataFrame(schema={"mmsi": pl.Int64, "timestamp": pl.Datetime("us", "UTC"), "line": pl.Int64})
    heard = pl.any_horizontal(pl.col(c).is_not_null() for c in static_cols)
    if check:  # a row without a usable position (0 N 0 E, no fix) still names its ship
        heard = heard & pl.col("mmsi").is_between(1, 999_999_999).fill_null(False) & plausible_time().fill_null(False)
    return (
        rows.lazy().select("mmsi", "timestamp", "line", *static_cols)
        .filter(heard)
        .group_by("mmsi", *static_cols)
        .agg(pl.col("timestamp").min().alias("first_seen"), pl.col("timestamp").max().alias("last_seen"),
             pl.col("line").min())
        .with_columns(# an IMO number is exactly seven digits (IMO prefix allowed), never 0000000: a longer
                      # run of digits cut to seven would make up a number that could link the wrong ship
                      *([pl.col("imo").str.extract(r"(?i)^\s*(?:IMO)?\s*(\d{7})(?:\.0+)?\s*$", 1)
                         .cast(pl.Int64, strict=False)
                         .replace(0, None)] if "imo" in static_cols else []),
                      # a name or call sign written "Unknown" (the Danish exports) or "N/A" is none
                      *(pl.when(~pl.col(c).str.strip_chars().str.to_lowercase().is_in(NO_TEXT)).then(pl.col(c))
                        .alias(c) for c in ("name", "call_sign") if c in static_cols),
                      # a length or width of 0 is "not available", as in the AIS messages themselves
                      *(pl.when(pl.col(c) > 0).then(pl.col(c)).alias(c) for c in ("length_m", "beam_m")
                        if c in static_cols))
        .filter(pl.any_horizontal(pl.col(c).is_not_null() for c in static_cols))  # placeholders alone say nothing
        # records that the cleaning made the same ("Unknown" and "N/A", "IMO9307839" and "9307839") are one
        .group_by("mmsi", *static_cols)
        .agg(pl.col("first_seen").min(), pl.col("last_seen").max(), pl.col("line").min())
        .with_columns(pl.col("last_seen").alias("timestamp"))
        .sort("mmsi", "first_seen")
        .collect()
    )
