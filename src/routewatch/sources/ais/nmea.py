"""Read NMEA 0183 AIS sentences (``!AIVDM``/``!AIVDO`` and other talkers) into positions and static reports.

What a receiver or a feed writes varies, so the reader accepts, per line: an optional leading ISO timestamp, an
optional NMEA 4 tag block (``\\s:station,c:unix-seconds*hh\\``), the sentence, and optional trailing fields after the
checksum ending in a unix timestamp (``...*5C,1241544035``). Single-sentence position reports go through the
vectorised decoder (:mod:`.sixbit`); everything else is reassembled (multipart messages keyed on source station,
channel, sequence id and fragment count, with a timeout for stale fragments) and decoded with pyais.

A bad line is counted with its reason and line number and never aborts the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl
from pyais import decode as pyais_decode

from routewatch.model import ensure_utc, latest_observation_time
from routewatch.sources.ais.schema import (
    BAD_TIME,
    POSITION_SCHEMA,
    TIME_MIN,
    VALID_BELOW,
    ZONE,
    available,
    empty_positions,
    plausible_time,
    utc_offset_us,
)
from routewatch.sources.ais.sixbit import POSITION_PAYLOAD_CHARS, decode_positions

_SENTENCE = r"!([A-Z]{2}VD[MO],[^*!\\]*)\*([0-9A-Fa-f]{2})"
_ISO_PREFIX = r"^\s*(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?)\s*" + ZONE + "?"
_ARMOUR = r"^[0-W`-w]*$"  # the six-bit armour alphabet: a payload with any other character is not AIS
# a receiver's time after the sentence: Unix seconds (ten digits, 2001-2286) or milliseconds (thirteen); a nine-digit
# number there is a station id or an MMSI (as seconds it would be a time before 2001, before AIS was in use)
_TRAILING_EPOCH = r"^,(?:[^,]*,)*\s*(\d{10}|\d{13})(?:\.\d+)?\s*$"
# An NMEA 4 tag block and the fields of it that key a multipart message: the reader and the ingest's chunker
# (which must cut a file only where the reader would not join fragments) read them alike
TAG_BLOCK = r"\\([^\\]*)\\"
TAG_STATION = r"(?:^|,)s:([^,*]*)"
TAG_GROUP = r"(?:^|,)g:\d+-\d+-([^,*]+)"  # sentence grouping (g:fragment-count-group)


def fitting_message(key: tuple, pending: Iterable[tuple]) -> tuple | None:
    """The one pending message a later fragment joins when it names no station or no group (some feeds tag the
    first fragment only): keys are (station, group, channel, sequence id, fragment count); it fits a pending key
    with its channel, sequence id and count whose station and group agree where it names them. None when no
    pending key, or more than one, fits: then it is not guessed."""
    fits = [k for k in pending if k[2:] == key[2:] and key[0] in (None, k[0]) and key[1] in (None, k[1])]
    return fits[0] if len(fits) == 1 else None
POSITION_TYPES_SLOW = {1, 2, 3, 18, 19, 27}
STATIC_TYPES = {5, 19, 24}
MAX_EXAMPLES = 5
# The time stamp field (UTC second of the fix) of a position report also says whether the position was measured
# (ITU-R M.1371): 60 no time, 61 typed in by hand (manual input mode), 62 estimated (dead reckoning), 63 no fix
# (positioning system inoperative). A typed or unfixed position is no observation of where the ship is (a stale
# position typed at the last port, a transponder's last fix repeated): it is counted as bad, with its line. A
# dead-reckoning position is the ship's own estimate through a GNSS outage (jamming included) and is kept; the
# report counts them.
NOT_A_FIX = {61: "manual position input (AIS time stamp 61)", 63: "positioning system inoperative (AIS time stamp 63)"}
DEAD_RECKONING = 62


@dataclass
class ReadReport:
    """What happened to each line of one input: counts by outcome and the first examples of each problem."""

    lines: int = 0
    messages: int = 0  # decoded AIS messages (a multipart message counts once)
    positions: int = 0
    statics: int = 0
    fast_path: int = 0
    untimed: int = 0  # decoded positions and static reports without any time (give a default time to keep them)
    dead_reckoning: int = 0  # positions kept that the ship estimated by dead reckoning (time stamp 62)
    # lines of such positions while a block is read (counted once the untimed and bad clocks are left out)
    dead_reckoning_lines: list[int] = field(default_factory=list, repr=False, compare=False)
    bad: dict[str, int] = field(default_factory=dict)
    examples: list[tuple[int, str, str]] = field(default_factory=list)  # (line, reason, text)

    def add_bad(self, reason: str, line: int, text: str, count: int = 1) -> None:
        self.bad[reason] = self.bad.get(reason, 0) + count
        if (self.bad[reason] <= MAX_EXAMPLES or count == 0) and sum(
                1 for e in self.examples if e[1] == reason) < MAX_EXAMPLES:
            self.examples.append((line, reason, text[:120]))

    def add_bad_rows(self, reason: str, where: np.ndarray, line: Callable[[int], int],
                     text: Callable[[int], str]) -> None:
        """Count the rows ``where`` (indices) as bad for ``reason``; only the first few are looked up as examples."""
        for i in where[:MAX_EXAMPLES]:
            self.add_bad(reason, line(int(i)), text(int(i)), count=0)
        if where.size:
            self.bad[reason] = self.bad.get(reason, 0) + int(where.size)

    @property
    def bad_total(self) -> int:
        return sum(self.bad.values())


@dataclass
class NmeaResult:
    positions: pl.DataFrame  # POSITION_SCHEMA
    statics: list[dict[str, Any]]  # one dict per static report: mmsi, time, imo, name, call_sign, dims...
    report: ReadReport


def _binary_buffers(series: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (n + 1) and bytes of a string column, zero-copy through Arrow."""
    arr = series.cast(pl.Binary).rechunk().to_arrow()
    _, offs_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offs_buf, dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return offsets, data


def nmea_checksum_ok(bodies: pl.Series, checksums: pl.Series) -> np.ndarray:
    """XOR of the characters between ``!`` and ``*`` against the two hex digits, vectorised with reduceat."""
    offsets, data = _binary_buffers(bodies.fill_null(""))
    starts = offsets[:-1]
    lengths = np.diff(offsets)
    if data.size == 0:
        return np.zeros(len(bodies), bool)
    xor = np.bitwise_xor.reduceat(np.append(data, 0), np.minimum(starts, data.size))
    xor = np.where(lengths > 0, xor, 0)
    expected = checksums.fill_null("zz").str.to_integer(base=16, strict=False).fill_null(-1).to_numpy()
    return xor.astype(np.int64) == expected


GLUED = "another sentence on the line (not read; the first one is)"
CORRUPT_CLOCK = 10**15  # milliseconds: a time far in the future, so the line is refused as `time out of range`


def _epoch_us(epoch: pl.Expr) -> pl.Expr:
    """Unix seconds, or milliseconds when the number is too big for seconds, as microseconds."""
    return pl.when(epoch > 10**11).then(epoch * 1000).otherwise(epoch * 1_000_000)


def _parse_lines(lines: list[str], default_us: int | None, first_line: int = 1) -> pl.DataFrame:
    """Split every line into its parts with polars string kernels (no Python loop)."""
    df = pl.DataFrame({"raw": pl.Series(lines, dtype=pl.String)}).with_row_index("line", offset=first_line)
    sent = pl.col("raw").str.extract_groups(_SENTENCE)
    df = df.with_columns(
        sent.struct.field("1").alias("body"),
        sent.struct.field("2").alias("cs"),
        pl.col("raw").str.extract(TAG_BLOCK, 1).alias("tag"),
        pl.col("raw").str.extract(r"\*[0-9A-Fa-f]{2}(,.*)$", 1).alias("trailer"),
        pl.col("raw").str.extract_groups(_ISO_PREFIX).alias("_iso"),
    ).with_columns(pl.col("_iso").struct.field("1").alias("iso"), pl.col("_iso").struct.field("2").alias("iso_zone"))
    parts = pl.col("body").str.split_exact(",", 7).struct
    # the clock's digits up to its end: a 14-digit c: is a corrupt clock (refused as out of range below), not
    # its first 13 digits read as milliseconds
    clock = pl.col("tag").str.extract(r"(?:^|,)c:\s*(\d{9,})(?:\.\d*)?\s*(?:[,*]|$)", 1)
    epoch = pl.when(clock.str.len_bytes() > 13).then(pl.lit(CORRUPT_CLOCK)).otherwise(clock.cast(pl.Int64, strict=False))
    trailing = pl.col("trailer").str.extract(_TRAILING_EPOCH, 1).cast(pl.Int64, strict=False)
    # a time written with a UTC offset (+02:00, -0500, +05) is moved to UTC; without one it is taken as UTC
    iso_us = (pl.col("iso").str.replace(" ", "T").str.to_datetime(strict=False, time_unit="us").dt.epoch("us")
              - utc_offset_us(pl.col("iso_zone")))
    # c: first, then a leading ISO time, then a trailing number: a line that writes its time as ISO keeps it,
    # whatever number ends it (a station id of nine digits had moved a 2024 message to 2001)
    epoch_us = pl.coalesce(_epoch_us(epoch), iso_us, _epoch_us(trailing))
    df = df.with_columns(
        parts.field("field_1").cast(pl.Int32, strict=False).alias("count"),
        parts.field("field_2").cast(pl.Int32, strict=False).alias("index"),
        parts.field("field_3").alias("seq"),
        parts.field("field_4").alias("channel"),
        parts.field("field_5").alias("payload"),
        parts.field("field_6").cast(pl.Int32, strict=False).alias("fill"),
        parts.field("field_7").alias("extra"),
        pl.col("tag").str.extract(TAG_STATION, 1).alias("station"),
        # often only the first fragment of a group names its station
        pl.col("tag").str.extract(TAG_GROUP, 1).alias("group"),
        epoch_us.alias("_own"),
        pl.col("tag").str.extract(r"^(.*)\*([0-9A-Fa-f]{2})$", 1).alias("tag_body"),
        pl.col("tag").str.extract(r"^(.*)\*([0-9A-Fa-f]{2})$", 2).alias("tag_cs"),
    ).with_columns(
        pl.col("_own").is_not_null().alias("own_time"),
        pl.coalesce("_own", pl.lit(default_us, dtype=pl.Int64)).alias("t_us"),
    )
    # a tag block's own checksum (NMEA 4: the XOR of its characters before the *): a corrupt one makes its time,
    # station and group untrusted (a bit flipped in c: had moved a position by three months without a word)
    tag_bad = df["tag_cs"].is_not_null().to_numpy() & ~nmea_checksum_ok(df["tag_body"], df["tag_cs"])
    return df.drop("tag", "trailer", "iso", "iso_zone", "_iso", "_own", "tag_body", "tag_cs").with_columns(
        pl.Series("tag_bad", tag_bad, pl.Boolean),
        # two sentences run together (a lost newline): the first is read, the second is said, not lost in silence
        (pl.col("raw").str.count_matches(r"![A-Z]{2}VD[MO],") > 1).alias("glued"))


def read_nmea_lines(
    lines: Iterable[str],
    *,
    source: str = "",
    default_time: datetime | None = None,
    fragment_timeout_s: float = 60.0,
    fragment_max_lines: int = 200,
    fast: bool = True,
    first_line: int = 1,
) -> NmeaResult:
    """Decode NMEA lines; ``fast=False`` sends every message through pyais (the reference the tests compare to).

    ``default_time`` (UTC) is given to messages that carry no time of their own; without it they are decoded and
    counted as ``untimed`` but not returned, because a position without a time cannot be placed, and a static
    report without one would link its identity to the ship at every time.
    """
    lines = list(lines)
    report = ReadReport(lines=len(lines))
    default_us = None if default_time is None else int(ensure_utc(default_time).timestamp() * 1_000_000)
    if not lines:
        return NmeaResult(empty_positions(), [], report)
    df = _parse_lines(lines, default_us, first_line)
    has_sentence = df["body"].is_not_null().to_numpy()
    ok_cs = nmea_checksum_ok(df["body"], df["cs"]) & has_sentence
    well_formed = (
        df["count"].is_not_null() & df["index"].is_not_null() & df["fill"].is_not_null()
        & df["extra"].is_null() & (df["index"] <= df["count"]) & (df["index"] >= 1)
    ).fill_null(False).to_numpy()
    nonempty = df["payload"].fill_null("").str.len_bytes().to_numpy() > 0
    raw = df["raw"]
    tag_bad = df["tag_bad"].to_numpy()
    ok_cs &= ~tag_bad
    for mask, reason in (
        (~has_sentence & (df["raw"].str.strip_chars().str.len_bytes() > 0).to_numpy(), "no AIS sentence"),
        (has_sentence & tag_bad, "tag block checksum mismatch"),
        (has_sentence & ~tag_bad & ~ok_cs, "checksum mismatch"),
        (ok_cs & ~well_formed, "malformed fields"),
        (ok_cs & well_formed & ~nonempty, "empty payload"),
    ):
        report.add_bad_rows(reason, np.flatnonzero(mask), lambda i: i + first_line, raw.__getitem__)
    glued = df["glued"].to_numpy() & ok_cs
    report.add_bad_rows(GLUED, np.flatnonzero(glued), lambda i: i + first_line, raw.__getitem__)
    good = ok_cs & well_formed & nonempty
    frames: list[pl.DataFrame] = []
    fast_mask = np.zeros(len(df), bool)
    if fast:
        fast_mask = good & (
            (df["count"] == 1) & (df["fill"] == 0)
            & (df["payload"].str.len_bytes() == POSITION_PAYLOAD_CHARS)
            & df["payload"].str.slice(0, 1).is_in(["1", "2", "3", "B"])
        ).fill_null(False).to_numpy()
        frames.append(_fast_positions(df.filter(pl.Series(fast_mask)), source, report))
    slow_mask = good & ~fast_mask
    if slow_mask.any():  # pyais decodes characters outside the six-bit alphabet; the fast path refuses them: so here
        idx = np.flatnonzero(slow_mask)
        armoured = df["payload"].gather(idx).fill_null("").str.contains(_ARMOUR).to_numpy()
        for i in idx[~armoured]:
            report.add_bad("decode error", int(i) + first_line, raw[int(i)])
        slow_mask[idx[~armoured]] = False
    slow = df.filter(pl.Series(slow_mask))
    slow_pos, statics = _slow_path(slow, source, report, fragment_timeout_s, fragment_max_lines)
    frames.append(slow_pos)
    positions = pl.concat([f for f in frames if f.height], how="vertical") if any(f.height for f in frames) \
        else empty_positions()
    timed = positions.filter(pl.col("timestamp").is_not_null())
    report.untimed += positions.height - timed.height
    odd = ~timed.select(plausible_time()).to_series()
    if odd.any():  # a corrupt clock (c: of 14 digits, or 0): a bad line, not a position of 2286 or 1970
        lines = timed.filter(odd)["line"].to_numpy()
        report.add_bad_rows(BAD_TIME, np.arange(lines.size), lambda k: int(lines[k]),
                            lambda k: str(raw[int(lines[k]) - first_line]))
        timed = timed.filter(~odd)
    lo, hi = (int(t.timestamp() * 1_000_000) for t in (TIME_MIN, latest_observation_time()))
    kept = []  # a static report with such a clock would be the registry's latest record for its ship until 2286
    untimed_lines = set(positions.filter(pl.col("timestamp").is_null())["line"].to_list()) if statics else set()
    for r in statics:
        if r["t_us"] is None:  # untimed, as a position is: an identity without a time would hold at every time
            # (one line claiming a watched ship's IMO had named that ship for every call); a type 19 is counted
            # once, as the position it also is when it gave one
            report.untimed += 0 if r.get("msg_type") == 19 and int(r["line"]) in untimed_lines else 1
        elif lo <= r["t_us"] < hi:
            kept.append(r)
        else:
            report.add_bad(BAD_TIME, int(r["line"]), str(raw[int(r["line"]) - first_line]))
    statics = kept
    report.positions = timed.height
    if report.dead_reckoning_lines:  # the estimated positions kept, not those left out for want of a time
        report.dead_reckoning += int(timed["line"].is_in(report.dead_reckoning_lines).sum())
        report.dead_reckoning_lines.clear()
    return NmeaResult(timed, statics, report)


def _fast_positions(df: pl.DataFrame, source: str, report: ReadReport) -> pl.DataFrame:
    if df.height == 0:
        return empty_positions()
    offsets, data = _binary_buffers(df["payload"])
    start = int(offsets[0])
    payload = data[start : start + df.height * POSITION_PAYLOAD_CHARS].reshape(df.height, POSITION_PAYLOAD_CHARS)
    dec = decode_positions(payload)
    ok = dec.pop("ok")
    report.messages += int(ok.sum())
    report.fast_path += int(ok.sum())
    for i in np.flatnonzero(~ok):
        report.add_bad("decode error", int(df["line"][int(i)]), df["raw"][int(i)])
    # 0 N 0 E exactly is a receiver's or transponder's default, not a place (GPS without a fix)
    has_pos = ok & ~np.isnan(dec["lon"]) & ~np.isnan(dec["lat"]) & ~((dec["lon"] == 0) & (dec["lat"] == 0))
    report.add_bad_rows("position not available", np.flatnonzero(ok & ~has_pos), lambda i: int(df["line"][i]),
                        df["raw"].__getitem__)
    second = dec["second"]
    for code, reason in NOT_A_FIX.items():
        unfixed = has_pos & (second == code)
        report.add_bad_rows(reason, np.flatnonzero(unfixed), lambda i: int(df["line"][i]), df["raw"].__getitem__)
        has_pos &= ~unfixed
    report.dead_reckoning_lines.extend(df["line"].filter(pl.Series(has_pos & (second == DEAD_RECKONING))).to_list())
    nav = dec["nav_status"]
    out = pl.DataFrame({
        "mmsi": dec["mmsi"], "timestamp": df["t_us"], "lon": dec["lon"], "lat": dec["lat"],
        "sog_kn": dec["sog_kn"], "cog_deg": dec["cog_deg"], "heading_deg": dec["heading_deg"],
        "nav_status": np.where(nav < 0, 0, nav), "msg_type": dec["msg_type"], "line": df["line"].to_numpy(),
    }).with_columns(
        pl.when(pl.Series(nav) >= 0).then(pl.col("nav_status")).otherwise(None).alias("nav_status"),
    )
    return _finish(out.filter(pl.Series(has_pos)), source)


def _finish(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    """Give a frame of decoded columns the canonical schema; not-available and impossible speeds, courses and
    headings (and NaN) become nulls, by the rule every reader uses (``schema.available``)."""
    frame = frame.with_columns(
        pl.col("timestamp").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        pl.lit(source).alias("source"),
        *(available(c) for c in VALID_BELOW),
    )
    return frame.select([pl.col(k).cast(v) for k, v in POSITION_SCHEMA.items()])


def _slow_path(
    df: pl.DataFrame, source: str, report: ReadReport, timeout_s: float, max_lines: int
) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """Multipart reassembly and pyais decoding for everything the fast path does not take."""
    rows: list[dict[str, Any]] = []
    statics: list[dict[str, Any]] = []
    pending: dict[tuple, list[tuple[int, int | None, str, str, int | None]]] = {}
    cache: dict[str, Any] = {}
    cols = [df[c].to_list() for c in ("line", "raw", "body", "cs", "count", "index", "seq", "channel", "station",
                                      "group", "own_time", "t_us")]
    loose: dict[tuple, list[tuple]] = {}  # (channel, seq, count) -> keys of pending messages, for fragments that
    # do not name their station or group (some feeds tag the first fragment only)

    def emit(line: int, t_us: int | None, sentences: list[str], raw: str) -> None:
        key = "\n".join(sentences)
        try:
            msg = cache.get(key)
            if msg is None:
                msg = pyais_decode(*[s.encode() for s in sentences]).asdict()
                if len(cache) < 200_000:
                    cache[key] = msg
        except Exception as exc:  # pyais raises many exception types for bad payloads
            report.add_bad("decode error", line, f"{raw} ({type(exc).__name__})")
            return
        report.messages += 1
        _collect(msg, line, t_us, rows, statics, report, raw)

    def drop(key: tuple) -> None:
        del pending[key]
        same = loose.get(key[2:])
        if same and key in same:
            same.remove(key)

    for line, raw, body, cs, count, index, seq, channel, station, group, own_time, t_us in zip(*cols, strict=True):
        sentence = f"!{body}*{cs}"
        if count == 1:
            emit(line, t_us, [sentence], raw)
            continue
        # (station, tag-block group, channel, sequence id, fragment count): a group id is unique within its station
        # only (two receivers' group 17 had been spliced together). A later fragment that names no station, or no
        # group, joins the one pending message it fits (a feed may tag the first fragment only); with several
        # it is not guessed
        key = (station, group, channel, seq, count)
        if index > 1 and key not in pending and (station is None or group is None):
            key = fitting_message(key, loose.get(key[2:], [])) or key
        frags = pending.get(key)
        if index == 1:
            if frags:
                report.add_bad("incomplete multipart message", frags[0][0], frags[0][2])
                drop(key)
            pending[key] = [(line, t_us if own_time else None, raw, sentence, t_us)]
            loose.setdefault(key[2:], []).append(key)
            continue
        mine = t_us if own_time else None  # a default time given to untimed lines says nothing of staleness
        stale = frags is not None and (
            line - frags[-1][0] > max_lines
            or (mine is not None and frags[-1][1] is not None and abs(mine - frags[-1][1]) > timeout_s * 1e6)
        )
        if frags is None or len(frags) != index - 1 or stale:
            if frags:
                report.add_bad("incomplete multipart message", frags[0][0], frags[0][2])
                drop(key)
            report.add_bad("orphan fragment", line, raw)
            continue
        frags.append((line, mine, raw, sentence, t_us))
        if index == count:
            drop(key)
            # the message's time: the first fragment's own, else any fragment's own, else the default
            when = next((f[1] for f in frags if f[1] is not None), frags[0][4])
            emit(frags[0][0], when, [f[3] for f in frags], frags[0][2])
    for frags in pending.values():
        report.add_bad("incomplete multipart message", frags[0][0], frags[0][2])
    if not rows:
        return empty_positions(), statics
    frame = pl.DataFrame(rows, schema={
        "mmsi": pl.Int64, "timestamp": pl.Int64, "lon": pl.Float64, "lat": pl.Float64, "sog_kn": pl.Float32,
        "cog_deg": pl.Float32, "heading_deg": pl.Float32, "nav_status": pl.Int8, "msg_type": pl.Int8,
        "line": pl.Int64,
    })
    return _finish(frame, source), statics


def _na(value: Any, missing: float) -> Any:
    return None if value is None or value == missing else value


def _collect(msg: dict[str, Any], line: int, t_us: int | None, rows: list, statics: list, report: ReadReport,
             raw: str) -> None:
    """Turn one pyais message dict into a position row and/or a static record."""
    mtype = int(msg.get("msg_type", 0))
    if mtype in POSITION_TYPES_SLOW:
        lon, lat = msg.get("lon"), msg.get("lat")
        second = msg.get("second")  # type 27 has none
        if lon is None or lat is None or abs(lon) > 180 or abs(lat) > 90 or (lon == 0 and lat == 0):
            report.add_bad("position not available", line, raw)
        elif second in NOT_A_FIX:
            report.add_bad(NOT_A_FIX[second], line, raw)
        else:
            if second == DEAD_RECKONING:
                report.dead_reckoning_lines.append(line)
            status = msg.get("status")
            heading = msg.get("heading")  # 511 (not available) and anything else past 360 is no heading
            # "not available": 102.3 kn and 360 deg in types 1-3, 18, 19; 63 kn and 511 deg in type 27 (long range,
            # whole knots and degrees). A course or heading of 360 or more is no direction at all (as the fast path).
            speed = _na(msg.get("speed"), 63) if mtype == 27 else msg.get("speed")  # the rest: schema.available
            rows.append({
                "mmsi": int(msg["mmsi"]), "timestamp": t_us, "lon": float(lon), "lat": float(lat),
                "sog_kn": speed, "cog_deg": msg.get("course"), "heading_deg": heading,
                "nav_status": None if status is None else int(status), "msg_type": mtype, "line": line,
            })
    if mtype in STATIC_TYPES:
        report.statics += 1
        # A zero dimension is "not available" for that side only: with the reference point unknown a ship
        # sends A = C = 0 and its length and beam in B and D (ITU-R M.1371), so the sums are the dimensions
        length = (msg.get("to_bow") or 0) + (msg.get("to_stern") or 0)
        beam = (msg.get("to_port") or 0) + (msg.get("to_starboard") or 0)
        statics.append({
            "mmsi": int(msg["mmsi"]), "t_us": t_us, "line": line, "msg_type": mtype,
            "imo": msg.get("imo") or None, "name": (msg.get("shipname") or "").strip("@ ") or None,
            "call_sign": (msg.get("callsign") or "").strip("@ ") or None,
            "ship_type": None if msg.get("ship_type") is None else int(msg["ship_type"]),
            "length_m": length or None,
            "beam_m": beam or None,
        })


def split_lines(data: bytes) -> list[str]:
    """Bytes of a file to lines (ASCII; undecodable bytes kept as replacement characters so they are reported)."""
    return data.decode("ascii", errors="replace").splitlines()

