"""NMEA reader: the shared real sample against pyais, tag blocks, multipart, and a property-based test."""

from __future__ import annotations

import codecs
import os
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyais import decode, encode_dict

from routewatch.sources.ais.nmea import GLUED, NOT_A_FIX, read_nmea_lines

SHARED = Path(os.environ.get("ROUTEWATCH_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
SAMPLE = SHARED / "data" / "ais" / "pyais_nmea_data_sample.txt"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _sample_lines() -> list[str]:
    if not SAMPLE.exists():
        pytest.skip(f"shared data missing: {SAMPLE} (the ../shared folder beside the repository)")
    return SAMPLE.read_text().splitlines()


@pytest.mark.shared
def test_shared_sample_counts_match_pyais_line_by_line():
    lines = _sample_lines()
    positions, empty, first_fragments = {}, 0, 0
    for i, line in enumerate(lines, start=1):
        parts = line.split(",")
        if parts[5] == "":
            empty += 1
            continue
        if parts[1] != "1":
            first_fragments += 1
            continue
        msg = decode(line).asdict()
        if msg["msg_type"] in (1, 2, 3, 18, 19) and abs(msg["lon"]) <= 180 and abs(msg["lat"]) <= 90:
            positions[i] = msg
    res = read_nmea_lines(lines, source="sample", default_time=T0)
    assert res.report.lines == len(lines) == 898
    assert res.report.bad["empty payload"] == empty == 100
    assert res.report.bad["incomplete multipart message"] == first_fragments == 20
    assert res.positions.height == len(positions)
    for row in res.positions.iter_rows(named=True):
        ref = positions[row["line"]]
        assert row["mmsi"] == ref["mmsi"]
        assert row["lon"] == pytest.approx(ref["lon"], abs=1e-9)
        assert row["lat"] == pytest.approx(ref["lat"], abs=1e-9)
    examples = {reason: line for line, reason, _ in res.report.examples}
    assert lines[examples["empty payload"] - 1].split(",")[5] == ""
    # every reason shows its first lines, "position not available" too (lon 181 or lat 91 in the message)
    assert set(examples) == set(res.report.bad)
    for line, reason, _ in res.report.examples:
        if reason == "position not available":
            msg = decode(lines[line - 1]).asdict()
            assert abs(msg["lon"]) > 180 or abs(msg["lat"]) > 90


@pytest.mark.shared
def test_fast_path_equals_pyais_path():
    lines = _sample_lines()
    fast = read_nmea_lines(lines, default_time=T0)
    slow = read_nmea_lines(lines, default_time=T0, fast=False)
    assert fast.report.fast_path > 700 and slow.report.fast_path == 0
    assert fast.positions.sort("line").equals(slow.positions.sort("line"))


def test_times_from_tag_block_trailing_epoch_and_iso_prefix_and_untimed():
    s = "!AIVDM,1,1,,A,13RlIW?04F1beOVEFLB9bRvH0L0L,0*6C"
    lines = [f"\\s:rx1,c:1700000000\\{s}", f"{s},1700000060", f"2023-11-14 22:15:00 {s}", s]
    res = read_nmea_lines(lines)
    assert res.report.untimed == 1
    got = dict(zip(res.positions["line"], res.positions["timestamp"], strict=True))
    assert got[1] == datetime.fromtimestamp(1700000000, UTC)
    assert got[2] == datetime.fromtimestamp(1700000060, UTC)
    assert got[3] == datetime(2023, 11, 14, 22, 15, tzinfo=UTC)


def test_a_leading_iso_time_wins_over_a_trailing_number_and_a_long_clock_is_corrupt_not_cut():
    """A nine-digit number ending a line that writes its time as ISO is no time (a station id had moved a 2024
    message to 2001); a c: of 14 digits is a corrupt clock, refused, not its first 13 digits read as milliseconds
    (a plausible 2024 time, stored without a word). Both decoding paths agree."""
    s = "!AIVDM,1,1,,A,13RlIW?04F1beOVEFLB9bRvH0L0L,0*6C"
    lines = [f"2024-01-01T10:00:00Z {s},992570001", f"\\s:rx1,c:17041034400000\\{s}",
             f"\\s:rx1,c:1704103440000\\{s}", f"{s},1704103500", f"\\s:rx1,c:1704103560.5\\{s}",
             f"\\c:1704103620 ,s:rx1\\{s}"]  # a fraction of a second, a blank: the clock all the same
    for fast in (True, False):
        res = read_nmea_lines(lines, fast=fast)
        got = dict(zip(res.positions["line"], res.positions["timestamp"], strict=True))
        assert got == {1: datetime(2024, 1, 1, 10, tzinfo=UTC), 3: datetime.fromtimestamp(1704103440, UTC),
                       4: datetime.fromtimestamp(1704103500, UTC), 5: datetime.fromtimestamp(1704103560, UTC),
                       6: datetime.fromtimestamp(1704103620, UTC)}
        assert res.report.bad == {"time out of range (before 1980 or in the future)": 1}
        assert [e[0] for e in res.report.examples] == [2]


def _static_sentences(seq: str = "3") -> list[str]:
    data = {"type": 5, "mmsi": 273210440, "imo": 9179842, "callsign": "UBYT2", "shipname": "ANGARA",
            "to_bow": 100, "to_stern": 20, "to_port": 10, "to_starboard": 8}
    return encode_dict(data, radio_channel="A", talker_id="AI", seq_id=int(seq))


def test_multipart_reassembled_across_interleaved_lines_and_stale_fragments_reported():
    frags = _static_sentences()
    assert len(frags) == 2
    pos = "!AIVDM,1,1,,A,13RlIW?04F1beOVEFLB9bRvH0L0L,0*6C"
    res = read_nmea_lines([frags[0], pos, frags[1]], default_time=T0)
    assert res.report.statics == 1 and res.positions.height == 1
    st_ = res.statics[0]
    assert (st_["mmsi"], st_["name"], st_["call_sign"], st_["length_m"], st_["beam_m"]) == (
        273210440, "ANGARA", "UBYT2", 120, 18)
    stale = read_nmea_lines([frags[0], *[pos] * 5, frags[1]], default_time=T0, fragment_max_lines=3)
    assert stale.report.statics == 0
    assert stale.report.bad["incomplete multipart message"] == 1
    assert stale.report.bad["orphan fragment"] == 1


def test_checksum_mismatch_and_garbage_are_counted_with_line_numbers():
    good = "!AIVDM,1,1,,A,13RlIW?04F1beOVEFLB9bRvH0L0L,0*6C"
    res = read_nmea_lines(["hello", good.replace("*6C", "*6D"), good], default_time=T0)
    assert res.positions.height == 1
    assert res.report.bad == {"no AIS sentence": 1, "checksum mismatch": 1}
    assert [(ln, r) for ln, r, _ in res.report.examples] == [(1, "no AIS sentence"), (2, "checksum mismatch")]


@pytest.mark.parametrize("gz", [False, True])
def test_line_numbers_of_a_file_hold_after_a_stray_carriage_return(tmp_path, gz):
    """Binary junk can hold a lone carriage return; lines end at newlines only, so the numbers reported after it
    are the file's (text mode would split the junk line in two)."""
    import gzip

    from routewatch.sources.ais.ingest import ingest_file

    good = "!AIVDM,1,1,,A,13RlIW?04F1beOVEFLB9bRvH0L0L,0*6C"
    data = f"{good}\r\njunk\rmore junk\n{good.replace('*6C', '*6D')}\n{good}\n".encode()
    p = tmp_path / ("f.nmea.gz" if gz else "f.nmea")
    p.write_bytes(gzip.compress(data) if gz else data)
    report = ingest_file(p, tmp_path / "ais", default_time=T0).report
    assert [(ln, r) for ln, r, _ in report.examples] == [(2, "no AIS sentence"), (3, "checksum mismatch")]
    assert report.lines == 4


position = st.fixed_dictionaries({
    "type": st.sampled_from([1, 2, 3, 18]),
    "mmsi": st.integers(1, 999_999_999),
    "lon": st.integers(-108_000_000, 108_000_000).map(lambda v: v / 600000),
    "lat": st.integers(-54_000_000, 54_000_000).map(lambda v: v / 600000),
    "speed": st.integers(0, 1022).map(lambda v: v / 10),
    "course": st.integers(0, 3599).map(lambda v: v / 10),
    "heading": st.integers(0, 359),
    "second": st.integers(0, 63),
})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(position, min_size=1, max_size=30), st.lists(st.text(max_size=90), max_size=10), st.randoms())
def test_reader_never_crashes_and_never_loses_a_valid_message(messages, garbage, rnd: random.Random):
    valid = [encode_dict(m, radio_channel="B", talker_id="AI")[0] for m in messages]
    mutated = []
    for s in valid[:5]:
        i = rnd.randrange(1, len(s))
        ch = rnd.choice("0123456789ABCDEFabc,*!\\")
        if s[i] != ch:
            mutated.append(s[:i] + ch + s[i + 1:])
    lines = [(s, True) for s in valid] + [(g, False) for g in garbage] + [(m, False) for m in mutated]
    rnd.shuffle(lines)
    res = read_nmea_lines([text for text, _ in lines], default_time=T0)
    got = {(r["line"]): r for r in res.positions.iter_rows(named=True)}
    for lineno, (text, is_valid) in enumerate(lines, start=1):
        if not is_valid:
            continue
        ref = decode(text).asdict()
        if ref["lon"] == 0 and ref["lat"] == 0:  # 0 N 0 E exactly: a transponder's default, reported as such
            assert lineno not in got and res.report.bad.get("position not available", 0) >= 1
            continue
        if ref["second"] in NOT_A_FIX:  # typed by hand or no fix: no observation, counted as bad
            assert lineno not in got and res.report.bad.get(NOT_A_FIX[ref["second"]], 0) >= 1
            continue
        assert lineno in got, f"lost valid message on line {lineno}: {text}"
        assert got[lineno]["mmsi"] == ref["mmsi"]
        assert got[lineno]["lon"] == pytest.approx(ref["lon"], abs=1e-9)
        assert got[lineno]["lat"] == pytest.approx(ref["lat"], abs=1e-9)
        if ref["speed"] < 102.3:
            assert got[lineno]["sog_kn"] == pytest.approx(ref["speed"], abs=1e-4)


def test_a_file_whose_lines_end_with_a_carriage_return_alone_is_read_whole(tmp_path):
    from routewatch.sources.ais.ingest import ingest_file

    good = "!AIVDM,1,1,,A,13RlIW?04F1beOVEFLB9bRvH0L0L,0*6C"
    p = tmp_path / "cr.nmea"
    p.write_bytes(("\r".join(f"\\c:{1704067200 + 60 * i}\\{good}" for i in range(3)) + "\r").encode())
    summary = ingest_file(p, tmp_path / "ais")
    assert summary.report.lines == 3 and summary.report.messages == 3 and summary.added == 3


@pytest.mark.parametrize("gz", [False, True])
def test_a_byte_order_mark_does_not_hide_the_first_lines_time(tmp_path, gz):
    import gzip

    from routewatch.sources.ais.ingest import ingest_file

    good = "!AIVDM,1,1,,A,13RlIW?04F1beOVEFLB9bRvH0L0L,0*6C"
    data = codecs.BOM_UTF8 + "".join(f"2024-01-01T00:0{i}:00Z {good}\n" for i in range(3)).encode()
    p = tmp_path / ("bom.nmea.gz" if gz else "bom.nmea")
    p.write_bytes(gzip.compress(data) if gz else data)
    summary = ingest_file(p, tmp_path / "ais")
    assert summary.report.untimed == 0 and summary.added == 3 and summary.report.bad_total == 0


def test_a_static_report_with_one_zero_dimension_keeps_the_size():
    """A = C = 0 means "reference point unknown": the length and beam are then B and D alone."""
    static = encode_dict({"type": 24, "mmsi": 244270489, "partno": 1, "ship_type": 37, "to_bow": 12,
                          "to_stern": 0, "to_port": 0, "to_starboard": 3}, radio_channel="A", talker_id="AI")[0]
    res = read_nmea_lines([static], default_time=T0)
    (rec,) = res.statics
    assert (rec["length_m"], rec["beam_m"]) == (12, 3)
    none = encode_dict({"type": 24, "mmsi": 244270489, "partno": 1, "ship_type": 37}, radio_channel="A",
                       talker_id="AI")[0]
    (rec,) = read_nmea_lines([none], default_time=T0).statics
    assert (rec["length_m"], rec["beam_m"]) == (None, None)


def _tag(fields: str) -> str:
    body = fields
    cs = 0
    for ch in body:
        cs ^= ord(ch)
    return f"\\{body}*{cs:02X}\\"


def test_fragments_grouped_by_tag_block_or_naming_their_station_only_once():
    """Feeds often give the station and time on the first fragment only (NMEA 4 ``g:`` groups): the message is
    reassembled by its group, or else joins the one pending message of its channel and sequence id."""
    frags = _static_sentences()
    grouped = [_tag("g:1-2-73874,s:r003669945,c:1700000000") + frags[0], _tag("g:2-2-73874") + frags[1]]
    res = read_nmea_lines(grouped)
    assert res.report.statics == 1 and not res.report.bad
    assert res.statics[0]["t_us"] == 1_700_000_000_000_000 and res.statics[0]["name"] == "ANGARA"
    # no group: the second fragment names no station and joins the pending message of its channel and sequence
    ungrouped = [_tag("s:r003669945,c:1700000000") + frags[0], frags[1]]
    res = read_nmea_lines(ungrouped, default_time=T0)  # a default time for the untimed fragment is no staleness
    assert res.report.statics == 1 and not res.report.bad
    assert res.statics[0]["t_us"] == 1_700_000_000_000_000
    # two stations with the same sequence id pending: a fragment naming neither is not guessed
    other = [_tag("s:rx2,c:1700000000") + f for f in _static_sentences()]
    res = read_nmea_lines([ungrouped[0], other[0], frags[1], other[1]], default_time=T0)
    assert res.report.statics == 1 and res.report.bad == {"orphan fragment": 1, "incomplete multipart message": 1}


def test_type_27_not_available_values_and_courses_beyond_360_are_null():
    """Type 27 writes "not available" as 63 kn and 511 deg (not 102.3 and 360); a course of 360 deg or more is no
    course on any path, so that the slow path (pyais) and the fast path agree."""
    t27 = encode_dict({"msg_type": 27, "mmsi": 366123456, "lon": 10.5, "lat": 55.1, "speed": 63, "course": 511,
                       "status": 5}, talker_id="AI")[0]
    t27_moving = encode_dict({"msg_type": 27, "mmsi": 366123457, "lon": 10.5, "lat": 55.1, "speed": 12,
                              "course": 90, "status": 0}, talker_id="AI")[0]
    t1 = encode_dict({"msg_type": 1, "mmsi": 366123458, "lon": 10.5, "lat": 55.1, "speed": 3.0, "course": 370.0,
                      "heading": 45}, talker_id="AI")[0]
    for fast in (True, False):
        res = read_nmea_lines([t27, t27_moving, t1], default_time=T0, fast=fast)
        rows = {r["mmsi"]: r for r in res.positions.iter_rows(named=True)}
        assert rows[366123456]["sog_kn"] is None and rows[366123456]["cog_deg"] is None
        assert (rows[366123457]["sog_kn"], rows[366123457]["cog_deg"]) == (12, 90)
        assert rows[366123458]["cog_deg"] is None and rows[366123458]["heading_deg"] == 45


def test_a_payload_outside_the_armour_alphabet_is_a_decode_error_on_both_paths():
    good = "!AIVDM,1,1,,A,13RlIW?04F1beOVEFLB9bRvH0L0L,0*6C"
    body = "AIVDM,1,1,,A,13RlIW?04F1beOVEFLB9bRvH0LXL,0"
    cs = 0
    for ch in body:
        cs ^= ord(ch)
    bad = f"!{body}*{cs:02X}"
    for fast in (True, False):
        res = read_nmea_lines([good, bad], default_time=T0, fast=fast)
        assert res.positions["line"].to_list() == [1] and res.report.bad == {"decode error": 1}
        assert res.report.examples[0][:2] == (2, "decode error")


def test_a_leading_time_with_a_utc_offset_is_moved_to_utc():
    s = "!AIVDM,1,1,,A,13RlIW?04F1beOVEFLB9bRvH0L0L,0*6C"
    lines = [f"2024-01-01T10:00:00+02:00 {s}", f"2024-01-01 10:00:00Z {s}", f"2024-01-01T10:00:00-0530 {s}",
             f"2024-01-01T10:00:00 {s}", f"2024-01-01T10:00:00+05 {s}", f"2024-01-01T10:00:00-03 {s}"]
    got = read_nmea_lines(lines).positions
    assert got.sort("line")["timestamp"].to_list() == [
        datetime(2024, 1, 1, 8, tzinfo=UTC), datetime(2024, 1, 1, 10, tzinfo=UTC),
        datetime(2024, 1, 1, 15, 30, tzinfo=UTC), datetime(2024, 1, 1, 10, tzinfo=UTC),
        datetime(2024, 1, 1, 5, tzinfo=UTC), datetime(2024, 1, 1, 13, tzinfo=UTC)]


def test_blank_lines_are_not_bad_lines_and_a_folder_is_named_as_one(tmp_path):
    from routewatch.sources.ais.ingest import ingest_file

    good = "!AIVDM,1,1,,A,13RlIW?04F1beOVEFLB9bRvH0L0L,0*6C"
    res = read_nmea_lines([good, "", "   ", "junk", good], default_time=T0)
    assert res.report.bad == {"no AIS sentence": 1} and res.report.examples[0][:2] == (4, "no AIS sentence")
    assert res.report.lines == 5 and res.positions["line"].to_list() == [1, 5]
    with pytest.raises(FileNotFoundError, match="a folder, not a file"):
        ingest_file(tmp_path, tmp_path / "ais")


def test_a_position_at_exactly_0_n_0_e_is_not_available_on_both_paths(tmp_path):
    """0 N 0 E exactly is a transponder's default without a position fix: not a place (nor a stop at sea)."""
    null_island = encode_dict({"type": 1, "mmsi": 273210440, "lon": 0.0, "lat": 0.0, "speed": 0.0, "course": 0.0,
                               "heading": 0}, radio_channel="A", talker_id="AI")[0]
    near = encode_dict({"type": 1, "mmsi": 273210440, "lon": 0.001, "lat": 0.0, "speed": 0.0, "course": 0.0,
                        "heading": 0}, radio_channel="A", talker_id="AI")[0]
    for fast in (True, False):
        res = read_nmea_lines([null_island, near], default_time=T0, fast=fast)
        assert res.report.bad == {"position not available": 1} and res.positions["line"].to_list() == [2]
    from routewatch.sources.ais import read_provider_csv

    csv_path = tmp_path / "f.csv"
    csv_path.write_text("MMSI,BaseDateTime,LAT,LON,SOG,VesselName\n273210440,2024-01-01T00:00:00,0,0,0.1,\n"
                        "273210440,2024-01-01T00:01:00,0,0.001,0.1,\n273210441,2024-01-01T00:02:00,0,0,0.1,NO FIX\n")
    res = read_provider_csv(csv_path)
    assert res.positions["line"].to_list() == [3] and res.report.bad_total == 2
    # a row without a position still names its ship in the registry
    assert res.statics.select("mmsi", "name").rows() == [(273210441, "NO FIX")]


def test_a_static_report_without_a_time_is_held_back_like_a_position(tmp_path):
    """One type 5 with no time claiming a watched ship's IMO had gone into the registry with no first or last time,
    which holds at every time: every call of that MMSI was named the watched ship. It is counted as untimed, not
    kept, and the file is not marked as ingested, so that --default-time reads it later."""
    from routewatch.sources.ais.ingest import ingest_file
    from routewatch.sources.ais.registry import vessel_registry

    res = read_nmea_lines(_static_sentences())
    assert res.statics == [] and res.report.untimed == 1 and res.report.statics == 1
    timed = read_nmea_lines(_static_sentences(), default_time=T0)
    assert len(timed.statics) == 1 and timed.statics[0]["t_us"] == int(T0.timestamp() * 1_000_000)
    f = tmp_path / "untimed.nmea"
    f.write_text("\n".join(_static_sentences()) + "\n")
    ais = tmp_path / "ais"
    first = ingest_file(f, ais)
    assert first.report.untimed == 1 and vessel_registry(ais).height == 0
    again = ingest_file(f, ais, default_time=T0)  # not marked as read: the default time reads it now
    assert not again.skipped and again.statics_added == 1
    assert vessel_registry(ais)["imo"].to_list() == [9179842]


def test_a_trailing_nine_digit_number_is_a_station_id_not_a_time():
    """``...*hh,366999999`` (an MMSI or station id after the sentence) had been read as Unix seconds: a position
    of 1981 over --default-time, or one refused as before 1980. Ten digits (seconds) or thirteen (milliseconds)
    are a time; nine are not, on both decoding paths."""
    s = "!AIVDM,1,1,,A,13RlIW?04F1beOVEFLB9bRvH0L0L,0*6C"
    lines = [f"{s},366999999", f"{s},257123450", f"{s},1704103500", f"{s},1704103500123"]
    for fast in (True, False):
        res = read_nmea_lines(lines, default_time=T0, fast=fast)
        got = dict(zip(res.positions["line"], res.positions["timestamp"], strict=True))
        assert got == {1: T0, 2: T0, 3: datetime.fromtimestamp(1704103500, UTC),
                       4: datetime.fromtimestamp(1704103500.123, UTC)}
        assert not res.report.bad
        assert read_nmea_lines(lines[:2], fast=fast).report.untimed == 2


def test_a_tag_block_with_a_wrong_checksum_is_a_bad_line():
    """NMEA 4 tag blocks carry their own checksum: one digit of ``c:`` corrupted had moved a position by three
    months without a word. A tag block without a checksum is read as it is."""
    s = "!AIVDM,1,1,,A,13RlIW?04F1beOVEFLB9bRvH0L0L,0*6C"
    good = _tag("s:R1,c:1700000000")
    corrupt = good.replace("1700000000", "1709000000")
    for fast in (True, False):
        res = read_nmea_lines([good + s, corrupt + s, "\\s:R1,c:1700000060\\" + s], fast=fast)
        assert res.positions["line"].to_list() == [1, 3]
        assert res.report.bad == {"tag block checksum mismatch": 1} and res.report.examples[0][0] == 2


def test_a_group_id_is_unique_within_its_station_only():
    """Two receivers that both number a message group 17 (same channel and sequence id): the key had been the
    group alone, so one receiver's second fragment was spliced onto the other's message and a type 5 lost. And a
    grouped first fragment followed by an untagged second one is one message."""
    a = encode_dict({"type": 5, "mmsi": 211111111, "shipname": "ALPHA", "imo": 9000001}, radio_channel="A",
                    talker_id="AI", seq_id=3)
    b = encode_dict({"type": 5, "mmsi": 222222222, "shipname": "BRAVO", "imo": 9000002}, radio_channel="A",
                    talker_id="AI", seq_id=3)
    lines = [_tag("s:R1,g:1-2-17,c:1700000000") + a[0], _tag("s:R2,g:1-2-17,c:1700000000") + b[0],
             _tag("s:R1,g:2-2-17") + a[1], _tag("s:R2,g:2-2-17") + b[1]]
    res = read_nmea_lines(lines)
    assert not res.report.bad and sorted(r["mmsi"] for r in res.statics) == [211111111, 222222222]
    assert {r["mmsi"]: r["name"] for r in res.statics} == {211111111: "ALPHA", 222222222: "BRAVO"}
    half = read_nmea_lines([_tag("s:R1,g:1-2-18,c:1700000000") + a[0], a[1]])
    assert not half.report.bad and [r["name"] for r in half.statics] == ["ALPHA"]


def test_a_renamed_ship_keeps_none_of_its_former_identity_in_the_registry(tmp_path):
    """A type 5 as LADY R (IMO 9161003, 120 m) in January, then one as FU HAI 8 with IMO "not available" in
    March: the registry row had read FU HAI 8, IMO 9161003 (each field's latest value taken on its own). A class B
    ship's nameless part B still completes its part A."""
    from routewatch.sources.ais.ingest import ingest_file
    from routewatch.sources.ais.registry import vessel_registry

    jan = encode_dict({"type": 5, "mmsi": 412000002, "shipname": "LADY R", "imo": 9161003, "callsign": "UBLR",
                       "to_bow": 100, "to_stern": 20}, radio_channel="A", talker_id="AI", seq_id=1)
    mar = encode_dict({"type": 5, "mmsi": 412000002, "shipname": "FU HAI 8", "imo": 0, "callsign": "BXYZ9",
                       "to_bow": 30, "to_stern": 10}, radio_channel="A", talker_id="AI", seq_id=2)
    part_a = encode_dict({"type": 24, "mmsi": 244270489, "partno": 0, "shipname": "SMALL ONE"}, radio_channel="A",
                         talker_id="AI")[0]
    part_b = encode_dict({"type": 24, "mmsi": 244270489, "partno": 1, "ship_type": 37, "callsign": "PB1",
                          "to_bow": 8, "to_stern": 4}, radio_channel="A", talker_id="AI")[0]
    f = tmp_path / "ids.nmea"
    f.write_text("\n".join([*(_tag("c:1704067200") + s for s in jan), *(_tag("c:1709251200") + s for s in mar),
                            _tag("c:1709251300") + part_a, _tag("c:1709251400") + part_b]) + "\n")
    ingest_file(f, tmp_path / "ais")
    reg = {r["mmsi"]: r for r in vessel_registry(tmp_path / "ais").iter_rows(named=True)}
    ship = reg[412000002]
    assert (ship["name"], ship["imo"], ship["call_sign"], ship["length_m"]) == ("FU HAI 8", None, "BXYZ9", 40)
    small = reg[244270489]
    assert (small["name"], small["call_sign"], small["length_m"]) == ("SMALL ONE", "PB1", 12)
    # a nameless record before the rename (a type 5 with a blank name, a class B part B) is the former identity's
    blank = encode_dict({"type": 5, "mmsi": 412000003, "shipname": "", "imo": 9161003, "callsign": "UBLR"},
                        radio_channel="A", talker_id="AI", seq_id=3)
    named = encode_dict({"type": 5, "mmsi": 412000003, "shipname": "FU HAI 9", "imo": 0}, radio_channel="A",
                        talker_id="AI", seq_id=4)
    old_b = encode_dict({"type": 24, "mmsi": 244270490, "partno": 1, "callsign": "OLDCS", "to_bow": 8, "to_stern": 4},
                        radio_channel="A", talker_id="AI")[0]
    new_a = encode_dict({"type": 24, "mmsi": 244270490, "partno": 0, "shipname": "NEW"}, radio_channel="A",
                        talker_id="AI")[0]
    g = tmp_path / "ids2.nmea"
    g.write_text("\n".join([*(_tag("c:1704067200") + s for s in blank), *(_tag("c:1709251200") + s for s in named),
                            _tag("c:1704067200") + old_b, _tag("c:1709251300") + new_a]) + "\n")
    ingest_file(g, tmp_path / "ais")
    reg = {r["mmsi"]: r for r in vessel_registry(tmp_path / "ais").iter_rows(named=True)}
    assert (reg[412000003]["name"], reg[412000003]["imo"], reg[412000003]["call_sign"]) == ("FU HAI 9", None, None)
    assert (reg[244270490]["name"], reg[244270490]["call_sign"], reg[244270490]["length_m"]) == ("NEW", None, None)


def test_sentences_run_together_and_a_file_of_bad_sentences_are_said_for_what_they_are(tmp_path):
    """Two sentences on one line (a lost newline): the second had vanished without a count. A file whose AIS
    sentences all fail their checksums had been refused as "not an NMEA file, give a column mapping"."""
    from routewatch.sources.ais.ingest import ingest_file

    s = "!AIVDM,1,1,,A,13RlIW?04F1beOVEFLB9bRvH0L0L,0*6C"
    res = read_nmea_lines([s + s, s], default_time=T0)
    assert res.positions.height == 2 and res.report.bad == {GLUED: 1} and "not read" in GLUED
    assert res.report.examples[0][0] == 1
    f = tmp_path / "bad.nmea"
    f.write_text("\n".join([s.replace("*6C", "*6D")] * 3) + "\n")
    with pytest.raises(ValueError, match=r"no AIS message decoded in 3 lines \(checksum mismatch: 3\)"):
        ingest_file(f, tmp_path / "ais", default_time=T0)


def test_an_untimed_type_19_is_one_untimed_message():
    t19 = encode_dict({"type": 19, "mmsi": 244270491, "lon": 10.5, "lat": 55.1, "speed": 3.0, "course": 90.0,
                       "shipname": "EXTENDED B", "to_bow": 10, "to_stern": 5}, radio_channel="A", talker_id="AI")
    res = read_nmea_lines(t19)
    assert res.report.untimed == 1 and res.statics == [] and res.positions.height == 0


def test_an_untimed_type_19_without_a_position_is_still_untimed():
    t19 = encode_dict({"type": 19, "mmsi": 244270492, "lon": 181.0, "lat": 91.0, "shipname": "NO FIX"},
                      radio_channel="A", talker_id="AI")
    res = read_nmea_lines(t19)
    assert res.report.untimed == 1 and res.statics == []


def test_typed_and_unfixed_positions_are_bad_and_dead_reckoning_is_kept_and_counted():
    """The time stamp field says whether a position was measured: 61 (typed by hand) and 63 (no fix) are no
    observation of where the ship is and are counted as bad with their line; 62 (dead reckoning) is kept and
    counted; 60 (no time) and an ordinary second are positions. Class A and B alike, on both decoding paths (the
    fast path reads the field itself: checked against pyais's reading of the same sentences)."""
    lines, expect = [], {}
    for k, second in enumerate((12, 60, 61, 62, 63)):
        for mtype in (1, 18):
            msg = {"type": mtype, "mmsi": 273000100 + k, "lon": 131.0 + k / 100, "lat": 42.0, "speed": 5.0,
                   "course": 90.0, "heading": 90, "second": second}
            sentence = encode_dict(msg, radio_channel="A", talker_id="AI")[0]
            assert decode(sentence).asdict()["second"] == second
            lines.append(f"{sentence},{1700000000 + len(lines)}")
            expect[len(lines)] = second
    # an estimated position without a time is left out, and not counted as kept
    lines.append(encode_dict({"type": 1, "mmsi": 273000199, "lon": 131.5, "lat": 42.0, "second": 62},
                             radio_channel="A", talker_id="AI")[0])
    for fast in (True, False):
        res = read_nmea_lines(lines, fast=fast)
        assert res.report.untimed == 1
        kept = sorted(line for line, s in expect.items() if s in (12, 60, 62))
        assert sorted(res.positions["line"].to_list()) == kept
        assert res.report.bad == {"manual position input (AIS time stamp 61)": 2,
                                  "positioning system inoperative (AIS time stamp 63)": 2}
        assert sorted(e[0] for e in res.report.examples) == sorted(
            line for line, s in expect.items() if s in (61, 63))
        assert res.report.dead_reckoning == 2
        assert res.report.fast_path == (11 if fast else 0)
