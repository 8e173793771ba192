"""Provider CSV layouts (MarineCadastre, Danish Maritime Authority, a mapping) and idempotent ingest."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from pyproj import Transformer

from routewatch.model import Vessel
from routewatch.sources.ais import ingest_files, read_provider_csv, vessel_registry
from routewatch.sources.ais.ingest import ingest_file
from routewatch.sources.ais.partitions import day_dirs, read_day, read_manifest
from routewatch.sources.ais.providers import load_mapping
from routewatch.sources.ais.registry import link_watchlist

SHARED = Path(os.environ.get("ROUTEWATCH_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
AIS = SHARED / "data" / "ais"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data missing: {path} (the ../shared folder beside the repository)")
    return path


@pytest.mark.shared
def test_marinecadastre_rows_read_as_the_csv_module_reads_them():
    path = _need(AIS / "marinecadastre_sample_20230111.csv")
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    res = read_provider_csv(path)
    assert res.positions.height == len(rows) == 1000 and res.report.bad_total == 0
    got = res.positions.sort("line")
    for k in (0, 1, 500, 999):
        ref, row = rows[k], got.row(k, named=True)
        assert row["line"] == k + 2
        assert row["mmsi"] == int(ref["MMSI"])
        assert row["lat"] == pytest.approx(float(ref["LAT"])) and row["lon"] == pytest.approx(float(ref["LON"]))
        assert row["timestamp"] == datetime.fromisoformat(ref["BaseDateTime"]).replace(tzinfo=UTC)
        heading = float(ref["Heading"])
        assert row["heading_deg"] == (None if heading == 511 else pytest.approx(heading))
    naisha = res.statics.filter(pl.col("mmsi") == 636021061).row(0, named=True)
    assert (naisha["name"], naisha["imo"], naisha["length_m"], naisha["beam_m"]) == ("MSC NAISHA III", 9307839, 208, 30)


def _write_dma(tmp_path: Path) -> tuple[Path, list[dict]]:
    """A Danish Maritime Authority layout file from the shared (EPSG:32632) GeoJSON, reprojected to WGS84."""
    data = json.loads(_need(AIS / "dma_ais_utm32N.geojson").read_text())
    to_wgs84 = Transformer.from_crs(32632, 4326, always_xy=True)
    header = ["# Timestamp", "Type of mobile", "MMSI", "Latitude", "Longitude", "Navigational status", "ROT", "SOG",
              "COG", "Heading", "IMO", "Callsign", "Name", "Ship type", "Cargo type", "Width", "Length"]
    truth = []
    path = tmp_path / "aisdk_20170705.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for f in data["features"]:
            p = f["properties"]
            lon, lat = to_wgs84.transform(*f["geometry"]["coordinates"])
            truth.append({"mmsi": p["MMSI"], "lon": lon, "lat": lat, "ts": p["Timestamp"], "status": p["NavStatus"]})
            w.writerow([p["Timestamp"], "Class A", p["MMSI"], f"{lat:.6f}", f"{lon:.6f}", p["NavStatus"], "",
                        p["SOG"], p["COG"], "", "Unknown", "", p["Name"], p["ShipType"], "", "", ""])
        w.writerow(["31/02/2017 19:00:00", "Class A", "219000000", "56.0", "11.0", "Moored"] + [""] * 11)
    return path, truth


@pytest.mark.shared
def test_danish_layout_read_from_reprojected_shared_positions(tmp_path):
    path, truth = _write_dma(tmp_path)
    res = read_provider_csv(path)
    assert res.positions.height == len(truth) == 257
    assert res.report.bad == {"unparsable or out-of-range row": 1}
    assert res.report.examples[0][0] == len(truth) + 2  # the impossible date's line number
    got = res.positions.sort("line")
    for k in (0, 100, 256):
        row, ref = got.row(k, named=True), truth[k]
        assert row["mmsi"] == ref["mmsi"]
        assert row["lon"] == pytest.approx(ref["lon"], abs=1e-6) and row["lat"] == pytest.approx(ref["lat"], abs=1e-6)
        assert row["timestamp"] == datetime.strptime(ref["ts"], "%d/%m/%Y %H:%M:%S").replace(tzinfo=UTC)
    assert got.filter(pl.col("mmsi") == 265410000)["nav_status"].unique().to_list() == [0]  # "Under way using engine"
    assert got["lat"].min() > 54 and got["lat"].max() < 59  # Kattegat, not the UTM metres


def test_column_mapping_reads_another_layout(tmp_path):
    (tmp_path / "m.toml").write_text('layout = "mine"\nmmsi = "ship"\ntimestamp = "when"\nlon = "x"\nlat = "y"\n'
                                     'time_format = "%Y%m%d %H%M%S"\nsog_kn = "speed"\nname = "nm"\n')
    data = tmp_path / "feed.csv"
    data.write_text("ship,when,x,y,speed,nm\n273210440,20240101 120000,130.29,42.23,0.1,NORTH STAR\n1,bad,0,0,0,\n")
    mapping = load_mapping(tmp_path / "m.toml")
    res = read_provider_csv(data, mapping)
    assert mapping.name == "mine" and res.positions.height == 1 and res.report.bad_total == 1
    assert res.positions["timestamp"][0] == datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert res.statics["name"].to_list() == ["NORTH STAR"]  # the vessel-name column, not the mapping's name
    bad = tmp_path / "bad.toml"
    for text, message in (('mmsi = "a"\ntimestamp = "b"\nlon = "c"\n', "lacks lat"),
                          ('mmsi = "a"\ntimestamp = "b"\nlon = "c"\nlat = "d"\nname_col = "nm"\n',
                           r"bad\.toml: unknown key\(s\) name_col"),
                          ('mmsi = "a"\ntimestamp = "b"\nlon = "c"\nlat = 3\n', r"lat = 3: expected a column name"),
                          ('mmsi = "a\n', "cannot read the column mapping")):
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_mapping(bad)


def test_a_mapping_without_a_time_format_reads_iso_times_with_their_zones(tmp_path):
    """ISO 8601 as exports write it: Z, +02:00, +05, fractions, or no zone (UTC); a %z format takes Z too."""
    (tmp_path / "iso.toml").write_text('mmsi = "ship"\ntimestamp = "when"\nlon = "x"\nlat = "y"\n')

    def read(name: str, times: list[str], mapping: str = "iso.toml"):
        """One ship's positions at these times as written, read with the mapping."""
        path = tmp_path / name
        path.write_text("ship,when,x,y\n" + "".join(f"273210440,{t},130.29,42.23\n" for t in times))
        return read_provider_csv(path, load_mapping(tmp_path / mapping))

    def hours(res) -> list[datetime]:
        return res.positions.sort("line")["timestamp"].to_list()

    res = read("iso.csv", ["2024-01-01T00:00:00Z", "2024-01-01T03:00:00+02:00", "2024-01-01T05:00:00.000Z",
                           "2024-01-01 06:00:00", "2024-01-01T12:00:00+05"])
    assert res.report.bad_total == 0
    assert hours(res) == [datetime(2024, 1, 1, h, tzinfo=UTC) for h in (0, 1, 5, 6, 7)]
    # zones only further down (the first times have none, so the file is parsed as written): those rows are read
    # again with their zones
    res = read("later.csv", ["2024-01-01T06:00:00", "2024-01-01T03:00:00+02:00", " 2024-01-01T07:00:00 ",
                             "2024-01-01T08:00:00Z"])
    assert res.report.bad_total == 0
    assert hours(res) == [datetime(2024, 1, 1, h, tzinfo=UTC) for h in (6, 1, 7, 8)]
    # zones of both signs first seen past the rows sampled
    res = read("mixed.csv", [f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}" for i in range(300)]
               + ["2024-01-01T10:00:00-05:00", "2024-01-01T11:00:00Z"])
    assert hours(res)[-2:] == [datetime(2024, 1, 1, 15, tzinfo=UTC), datetime(2024, 1, 1, 11, tzinfo=UTC)]
    # the first time that parses has a zone, but only after more rows than are sampled (times missing or N/A)
    res = read("late.csv", ["N/A"] * 250 + ["2024-01-01T12:00:00+02:00", "2024-01-01T13:00:00"])
    assert res.report.bad_total == 250
    assert res.positions["timestamp"].to_list() == [datetime(2024, 1, 1, h, tzinfo=UTC) for h in (10, 13)]
    (tmp_path / "z.toml").write_text('mmsi = "ship"\ntimestamp = "when"\nlon = "x"\nlat = "y"\n'
                                     'time_format = "%Y-%m-%dT%H:%M:%S%z"\n')
    res = read("z.csv", ["2024-01-01T00:00:00Z", "2024-01-01T03:00:00+02:00"], mapping="z.toml")
    assert hours(res) == [datetime(2024, 1, 1, 0, tzinfo=UTC), datetime(2024, 1, 1, 1, tzinfo=UTC)]
    # a date alone is no time for a position: a bad row, not its midnight (zoned or not)
    res = read("dates.csv", ["2024-01-01T05:00:00", "2024-01-02", "2024-01-03T07:00:00+02:00", "2024-01-04Z"])
    assert res.report.bad_total == 2 and [e[0] for e in res.report.examples] == [3, 5]
    assert hours(res) == [datetime(2024, 1, 1, 5, tzinfo=UTC), datetime(2024, 1, 3, 5, tzinfo=UTC)]


@pytest.mark.parametrize("sep", [";", "\t"])
def test_a_mapping_names_the_delimiter_of_a_file_not_separated_by_commas(tmp_path, sep):
    """Many European exports separate fields with semicolons (their decimal comma taken): without a way to say so
    the file could not be read at all. Rows with a separator too many are still found by line."""
    rows = [["ship", "when", "x", "y", "name"], ["273210440", "2024-01-01 12:00:00", "130.29", "42.23", "NORTH, STAR"],
            ["273210440", "2024-01-01 13:00:00", "130.30", "42.24", "NORTH, STAR", "extra"],
            ["273210441", "2024-01-01 14:00:00", "130.31", "42.25", ""]]
    data = tmp_path / "feed.csv"
    data.write_text("".join(sep.join(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match="give a column mapping with its delimiter"):
        read_provider_csv(data)
    toml_sep = "\\t" if sep == "\t" else sep
    (tmp_path / "m.toml").write_text(f'mmsi = "ship"\ntimestamp = "when"\nlon = "x"\nlat = "y"\nname = "name"\n'
                                     f'time_format = "%Y-%m-%d %H:%M:%S"\ndelimiter = "{toml_sep}"\n')
    mapping = load_mapping(tmp_path / "m.toml")
    assert mapping.delimiter == sep
    got = ingest_file(data, tmp_path / "ais", mapping=mapping)
    assert got.added == 2 and got.report.bad == {"row with more fields than the header": 1}
    assert got.report.examples[0][0] == 3
    res = read_provider_csv(data, mapping)
    assert res.positions.sort("line")["lon"].to_list() == [130.29, 130.31]
    assert res.statics.filter(pl.col("mmsi") == 273210440)["name"].to_list() == ["NORTH, STAR"]
    (tmp_path / "bad.toml").write_text('mmsi = "a"\ntimestamp = "b"\nlon = "c"\nlat = "d"\ndelimiter = ";;"\n')
    with pytest.raises(ValueError, match="delimiter = ';;': expected one character"):
        load_mapping(tmp_path / "bad.toml")


def test_a_column_the_mapping_names_and_the_file_lacks_is_refused_by_name(tmp_path):
    """A misspelt column in a user's mapping (speed as "sped") would leave every speed unread, and stops with it."""
    (tmp_path / "m.toml").write_text('mmsi = "ship"\ntimestamp = "when"\nlon = "x"\nlat = "y"\nsog_kn = "sped"\n')
    data = tmp_path / "f.csv"
    data.write_text("ship,when,x,y,speed\n273210440,2024-01-01T00:00:00,130.29,42.23,0.1\n")
    with pytest.raises(ValueError, match=r"f\.csv: line 1: column 'sped' \(sog_kn\) of mapping 'm' not in the header"
                                         r" \(it has: 'ship', 'when', 'x', 'y', 'speed'\)"):
        read_provider_csv(data, load_mapping(tmp_path / "m.toml"))


@pytest.mark.parametrize("gz", [False, True])
def test_a_csv_whose_lines_end_with_a_carriage_return_alone_is_read_whole(tmp_path, gz):
    import gzip

    rows = [["MMSI", "BaseDateTime", "LAT", "LON", "SOG"]] + [
        ["273210440", f"2024-01-01T00:0{i}:00", "42.23", "130.29", "0.1"] for i in range(3)]
    data = "\r".join(",".join(r) for r in rows).encode() + b"\r"
    path = tmp_path / ("cr.csv.gz" if gz else "cr.csv")
    path.write_bytes(gzip.compress(data) if gz else data)
    summary = ingest_file(path, tmp_path / "ais")
    assert summary.added == 3 and summary.report.lines == 4 and summary.report.bad_total == 0
    assert sorted(read_day(day_dirs(tmp_path / "ais")[0][1])["line"].to_list()) == [2, 3, 4]


def test_a_mapping_given_for_a_command_leaves_nmea_and_known_layouts_alone(tmp_path):
    """`ais ingest a.nmea mc.csv mine.csv --mapping mine.toml`: the mapping reads the file it fits; the NMEA file
    is read as NMEA and the MarineCadastre export as MarineCadastre."""
    (tmp_path / "mine.toml").write_text('layout = "mine"\nmmsi = "ship"\ntimestamp = "when"\nlon = "x"\nlat = "y"\n')
    mine = tmp_path / "mine.csv"
    mine.write_text("ship,when,x,y\n273210440,2024-01-01T00:00:00Z,130.29,42.23\n")
    mc = tmp_path / "mc.csv"
    mc.write_text("MMSI,BaseDateTime,LAT,LON,SOG\n273210441,2024-01-01T00:00:00,42.23,130.29,0.1\n")
    nmea = tmp_path / "a.nmea"
    nmea.write_text("\\c:1704067200\\!AIVDM,1,1,,A,13RlIW?04F1beOVEFLB9bRvH0L0L,0*6C\n")
    other = tmp_path / "other.csv"
    other.write_text("vessel,t,x,y\n273210442,2024-01-01T00:00:00,130.29,42.23\n")
    mapping = load_mapping(tmp_path / "mine.toml")
    got = {Path(s.path).name: (s.kind, s.added) for s in ingest_files([mine, mc, nmea], tmp_path / "ais", mapping=mapping)}
    assert got == {"mine.csv": ("mine", 1), "mc.csv": ("marinecadastre", 1), "a.nmea": ("nmea", 1)}
    with pytest.raises(ValueError, match=r"other\.csv: line 1: column 'ship' \(mmsi\)"):
        ingest_file(other, tmp_path / "ais", mapping=mapping)
    again = ingest_file(mc, tmp_path / "ais", mapping=mapping)  # skipped as read: still named by its layout
    assert again.skipped and again.kind == "marinecadastre"
    # NMEA after a blank line or a banner, with or without the mapping, and an NMEA log named .csv: NMEA all
    late = tmp_path / "late.nmea"
    late.write_text("\nreceiver log\n\\c:1704067260\\!AIVDM,1,1,,A,13RlIW?04F1beOVEFLB9bRvH0L0L,0*6C\n")
    named = tmp_path / "log.csv"
    named.write_text("\\c:1704067320\\!AIVDM,1,1,,A,13RlIW?04F1beOVEFLB9bRvH0L0L,0*6C\n")
    assert (ingest_file(late, tmp_path / "ais", mapping=mapping).kind, ingest_file(named, tmp_path / "ais").kind) \
        == ("nmea", "nmea")
    # a provider file with another name and no mapping: read as NMEA, it is told that a mapping would read it
    tsv = tmp_path / "export.tsv"
    tsv.write_text("ship\twhen\tx\ty\n273210443\t2024-01-01T00:00:00\t130.29\t42.23\n")
    with pytest.raises(ValueError, match=r"not an NMEA file.*give a column mapping \(--mapping\) with its delimiter"):
        ingest_file(tsv, tmp_path / "ais")


@pytest.mark.shared
def test_ingest_twice_adds_nothing_and_partitions_by_day(tmp_path):
    files = [_need(AIS / "marinecadastre_sample_20230111.csv"), AIS / "pyais_nmea_data_sample.txt"]
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    first = ingest_files(files, tmp_path, default_time=t0)
    assert first[0].added == 1000 and first[1].added > 700
    again = ingest_files(files, tmp_path, default_time=t0)
    assert all(s.skipped for s in again)
    before = read_manifest(tmp_path)
    forced = ingest_files(files, tmp_path, default_time=t0, force=True)
    assert [s.added for s in forced] == [0, 0]
    after = read_manifest(tmp_path)  # a forced re-read keeps what the first reading added
    assert after.keys() == before.keys()
    for key, entry in after.items():
        assert (entry["added"], entry["duplicates"]) == (before[key]["added"], before[key]["duplicates"])
        assert entry["first_ingested_at"] == before[key]["ingested_at"] <= entry["ingested_at"]
    days = day_dirs(tmp_path)
    assert [d.isoformat() for d, _ in days] == ["2023-01-11", "2024-01-01"]
    day = read_day(days[0][1])
    assert day.height == 1000 and day.equals(day.sort("mmsi", "timestamp"))
    reg = vessel_registry(tmp_path)
    assert reg.filter(pl.col("mmsi") == 636021061)["name"][0] == "MSC NAISHA III"
    linked = link_watchlist(reg, {"naisha": Vessel("naisha", "MSC Naisha III", imo="9307839")})
    assert linked.filter(pl.col("vessel") == "naisha")["link"].to_list() == ["imo"]


def test_an_empty_file_is_nothing_to_read_whatever_its_name(tmp_path):
    for name in ("hour.csv", "hour.nmea", "hour.csv.gz.part"):
        (tmp_path / name).write_bytes(b"")
        got = ingest_file(tmp_path / name, tmp_path / "ais")
        assert (got.kind, got.added, got.report.bad_total, got.skipped) == ("empty", 0, 0, False)
    assert read_manifest(tmp_path / "ais") == {}


def test_unknown_csv_layout_names_the_file(tmp_path):
    p = tmp_path / "odd.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"odd\.csv: line 1: unknown CSV layout"):
        read_provider_csv(p)
    p.write_text("MMSI,BaseDateTime,LON,SOG,COG,Heading,VesselName,IMO,CallSign\n1,2023-01-11T00:00:00,1,1,1,1,A,B,C\n")
    with pytest.raises(ValueError, match=r"odd\.csv: line 1: marinecadastre layout without its 'LAT' \(lat\) column"):
        read_provider_csv(p)


def test_padded_times_parse_and_bad_times_are_counted_by_line(tmp_path):
    p = tmp_path / "mc.csv"
    p.write_text("MMSI,BaseDateTime,LAT,LON,SOG\n273210440,2023-01-11T00:00:00,42.2,130.3,1\n"
                 "273210441, 2023-01-11T00:00:01 ,42.2,130.3,1\n273210442,11/01/2023,42.2,130.3,1\n")
    res = read_provider_csv(p)
    assert res.positions.sort("line")["timestamp"].to_list() == [
        datetime(2023, 1, 11, tzinfo=UTC), datetime(2023, 1, 11, 0, 0, 1, tzinfo=UTC)]
    assert res.report.bad == {"unparsable or out-of-range row": 1} and res.report.examples[0][0] == 4


def test_a_bad_csv_row_is_said_field_by_field_under_the_files_own_column_names(tmp_path):
    """The examples had listed the row's values only ("mmsi=None time=... lat=91.0"), not which was refused."""
    p = tmp_path / "mc.csv"
    p.write_text("MMSI,BaseDateTime,LAT,LON,SOG\n"
                 "273210440,2023-01-11T00:00:00,91.0,130.3,1\n"  # line 2: latitude past the pole
                 "273210441,2023-01-11T00:00:01,42.2,181.0,1\n"
                 "273210442,2023-01-11T00:00:02,0,0,1\n"
                 "x7,2023-01-11T00:00:03,42.2,130.3,1\n"
                 "273210444,2023-13-11T00:00:04,42.2,130.3,1\n"
                 "273210445,1970-01-01T00:00:00,42.2,130.3,1\n")
    said = {line: text for line, _, text in read_provider_csv(p).report.examples}
    assert said[2].startswith("LAT 91.0 out of range (-90 to 90)")
    assert said[3].startswith("LON 181.0 out of range (-180 to 180)")
    assert said[4].startswith("LON, LAT 0, 0: the default of a transponder without a position fix")
    assert said[5].startswith("MMSI missing or not a number")
    assert said[6].startswith("BaseDateTime '2023-13-11T00:00:04' not read as %Y-%m-%dT%H:%M:%S")
    assert len(said) == 5  # the first five examples of the reason
    assert read_provider_csv(p).report.bad == {"unparsable or out-of-range row": 6}
    p.write_text("MMSI,BaseDateTime,LAT,LON,SOG\n273210445,1970-01-01T00:00:00,42.2,130.3,1\n")
    (example,) = read_provider_csv(p).report.examples
    assert example[2].startswith("BaseDateTime 1970-01-01 00:00 out of range (before 1980 or in the future)")


def test_csv_line_numbers_hold_across_the_readers_batches(tmp_path):
    """The reader parses a large file in batches on several threads; every position must still carry the line
    it came from (the evidence link), including a bad row deep in the file."""
    n = 250_000
    p = tmp_path / "big.csv"
    rows = [f"{200_000_000 + k % 997},2023-01-11T{k // 3600 % 24:02d}:{k // 60 % 60:02d}:{k % 60:02d},"
            f"{20 + k * 1e-6:.6f},{-120 + k * 1e-6:.6f},{k % 20}" for k in range(n)]
    rows[200_000] = "273210442,not a time,42.2,130.3,1"
    p.write_text("MMSI,BaseDateTime,LAT,LON,SOG\n" + "\n".join(rows) + "\n")
    res = read_provider_csv(p)
    assert res.report.examples[0][0] == 200_002 and res.positions.height == n - 1
    got = res.positions.select("line", "mmsi", "lat").sort("line")
    k = got["line"].to_numpy() - 2
    assert (got["mmsi"].to_numpy() == 200_000_000 + k % 997).all()
    assert abs(got["lat"].to_numpy() - (20 + k * 1e-6)).max() < 1e-9


def test_manifest_written_with_sha256_digests_still_skips_its_files(tmp_path):
    """Workspaces ingested before the manifest used XXH3 list files by SHA-256: such a file, ingested again (also
    under another name), is skipped without being read and is then listed under its new digest, once."""
    p = tmp_path / "mc.csv"
    p.write_text("MMSI,BaseDateTime,LAT,LON,SOG\n273210440,2023-01-11T00:00:00,42.2,130.3,1\n"
                 "273210441,2023-01-11T00:00:01,42.3,130.4,1\n")
    ais = tmp_path / "ais"
    assert ingest_files([p], ais)[0].added == 2
    manifest_path = ais / "manifest.json"
    (digest, entry), = json.loads(manifest_path.read_text()).items()
    assert digest.startswith("xxh3-128:") and len(digest) == len("xxh3-128:") + 32
    old = hashlib.sha256(p.read_bytes()).hexdigest()
    other = "0" * 64  # another file of the old manifest, never ingested again
    manifest_path.write_text(json.dumps({old: entry, other: {**entry, "path": "gone.csv"}}))
    copy = tmp_path / "renamed.csv"
    copy.write_bytes(p.read_bytes())
    again = ingest_files([p, copy], ais)
    assert [(s.skipped, s.added) for s in again] == [(True, 0), (True, 0)]
    assert json.loads(manifest_path.read_text()) == {digest: entry, other: {**entry, "path": "gone.csv"}}
    assert ingest_files([p], ais)[0].skipped
    assert sum(read_day(d).height for _, d in day_dirs(ais)) == 2
    forced = ingest_files([p], ais, force=True)[0]  # --force still reads it, and still adds nothing
    assert (forced.skipped, forced.added, forced.duplicates) == (False, 0, 2)


def _position_lines(n: int, t0: datetime) -> list[str]:
    """``n`` timed type-1 position reports (tag block ``c:`` seconds), five ships, one report a minute."""
    from pyais import encode_dict

    out = []
    for i in range(n):
        msg = {"type": 1, "mmsi": 273_000_000 + i % 5, "lon": 131.0 + i * 1e-3, "lat": 42.0, "speed": 5.0,
               "course": 90.0, "heading": 90}
        sentence = encode_dict(msg, radio_channel="A", talker_id="AI")[0]
        out.append(f"\\c:{int(t0.timestamp()) + 60 * i}\\{sentence}")
    return out


def test_a_forced_reread_with_another_mapping_adds_beside_the_first_never_over_it(tmp_path, monkeypatch):
    """A file read with lon and lat swapped, then again with --force and the right mapping: its new rows have the
    same count, first ship, time and last line, so its part took the same name and replaced the first (rows lost,
    the manifest counting them). Both stay, as the manifest says; an interrupted write leaves no temporary file."""
    data = tmp_path / "feed.csv"
    data.write_text("ship,when,x,y\n273210440,20240101 120000,30.29,42.23\n273210440,20240101 130000,30.30,42.24\n")
    head = 'mmsi = "ship"\ntimestamp = "when"\ntime_format = "%Y%m%d %H%M%S"\n'
    (tmp_path / "swapped.toml").write_text(head + 'lon = "y"\nlat = "x"\n')
    (tmp_path / "right.toml").write_text(head + 'lon = "x"\nlat = "y"\n')
    ais = tmp_path / "ais"
    assert ingest_file(data, ais, mapping=load_mapping(tmp_path / "swapped.toml")).added == 2
    again = ingest_file(data, ais, mapping=load_mapping(tmp_path / "right.toml"), force=True)
    (_, ddir), = day_dirs(ais)
    rows = read_day(ddir)
    assert again.added == 2 and rows.height == 4 and sorted(rows["lon"].to_list()) == [30.29, 30.30, 42.23, 42.24]
    (entry,) = read_manifest(ais).values()
    assert entry["added"] == rows.height
    # a third reading adds nothing; and one stopped while writing leaves no temporary part behind
    assert ingest_file(data, ais, mapping=load_mapping(tmp_path / "right.toml"), force=True).added == 0

    def stopped(self, path, **kwargs):
        Path(path).write_bytes(b"PAR1")  # a part half written when the user pressed Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(pl.DataFrame, "write_parquet", stopped)
    shifted = tmp_path / "other.csv"
    shifted.write_text(data.read_text().replace("30.29", "30.31"))
    with pytest.raises(KeyboardInterrupt):
        ingest_file(shifted, ais, mapping=load_mapping(tmp_path / "right.toml"))
    assert not list(ais.rglob("*.tmp")) and read_day(ddir).height == 4


def test_a_time_past_any_believable_date_is_a_bad_row_not_an_aborted_file(tmp_path):
    """A millisecond epoch read with a seconds format is the year 55969, which no datetime holds: the whole file
    had failed on it. It is a bad row, its time shown as written; so is an NMEA clock of 14 digits (the year 2286)."""
    from pyais import encode_dict

    data = tmp_path / "epoch.csv"
    data.write_text("ship,when,x,y\n777777777,1704067200,130.28,42.23\n777777777,1704074400000,130.28,42.23\n")
    (tmp_path / "m.toml").write_text('mmsi = "ship"\ntimestamp = "when"\nlon = "x"\nlat = "y"\ntime_format = "%s"\n')
    ais = tmp_path / "ais"
    got = ingest_file(data, ais, mapping=load_mapping(tmp_path / "m.toml"))
    assert got.added == 1 and got.report.bad == {"unparsable or out-of-range row": 1}
    assert got.report.examples[0][0] == 3 and "time='1704074400000'" in got.report.examples[0][2]
    line = encode_dict({"type": 1, "mmsi": 273000001, "lon": 130.28, "lat": 42.23, "speed": 0.1},
                       radio_channel="A", talker_id="AI")[0]
    nmea = tmp_path / "clock.nmea"
    nmea.write_text(f"\\c:99999999999999\\{line}\n\\c:1704067200\\{line}\n")
    got = ingest_file(nmea, ais)
    assert got.added == 1 and got.report.bad == {"time out of range (before 1980 or in the future)": 1}
    assert got.report.examples[0][0] == 1
    assert [d.isoformat() for d, _ in day_dirs(ais)] == ["2024-01-01"]
    # a static report with such a clock is a bad line too: it would be the ship's latest name until 2286
    static = encode_dict({"type": 5, "mmsi": 273000002, "shipname": "WRONG CLOCK", "imo": 9000001},
                         radio_channel="A", talker_id="AI")
    names = tmp_path / "static.nmea"
    names.write_text("".join(f"\\c:99999999999999\\{part}\n" for part in static))
    got = ingest_file(names, ais)
    assert got.report.bad == {"time out of range (before 1980 or in the future)": 1} and got.statics_added == 0
    # a mapping that fits no row (epoch seconds read as ISO times): the file is not marked as read, and the fixed
    # mapping then reads it without --force
    (tmp_path / "iso.toml").write_text('mmsi = "ship"\ntimestamp = "when"\nlon = "x"\nlat = "y"\n')
    seconds = tmp_path / "seconds.csv"
    seconds.write_text("ship,when,x,y\n777777778,1704067200,130.28,42.23\n")
    wrong = ingest_file(seconds, ais, mapping=load_mapping(tmp_path / "iso.toml"))
    assert wrong.unread and wrong.added == 0 and "time='1704067200'" in wrong.report.examples[0][2]
    assert str(seconds.resolve()) not in {e["path"] for e in read_manifest(ais).values()}
    right = ingest_file(seconds, ais, mapping=load_mapping(tmp_path / "m.toml"))
    assert not right.skipped and right.added == 1
    # a file that names its ships, read with lon and lat swapped (every latitude out of range): still unread
    named = tmp_path / "named.csv"
    named.write_text("ship,when,x,y,nm\n777777779,1704067200,130.28,42.23,NORTH STAR\n")
    (tmp_path / "swapped.toml").write_text('mmsi = "ship"\ntimestamp = "when"\nlon = "y"\nlat = "x"\nname = "nm"\n'
                                           'time_format = "%s"\n')
    assert ingest_file(named, ais, mapping=load_mapping(tmp_path / "swapped.toml")).unread
    assert ingest_file(named, ais, mapping=load_mapping(tmp_path / "m.toml")).added == 1


def test_nmea_file_read_in_chunks_lands_whole_or_not_at_all(tmp_path, monkeypatch):
    """A file read in several chunks: an error in a later chunk leaves no part of it (no visible part, no temporary
    file, nothing in the manifest); the next run stores every position once, repeats across chunks dropped."""
    from routewatch.sources.ais import ingest as ingest_mod
    from routewatch.sources.ais.ingest import ingest_file
    from routewatch.sources.ais.partitions import read_manifest

    t0 = datetime(2024, 1, 5, tzinfo=UTC)
    from pyais import encode_dict

    lines = _position_lines(30, t0)
    static = encode_dict({"type": 24, "mmsi": 273_000_001, "partno": 0, "shipname": "NORTH STAR"},
                         radio_channel="A", talker_id="AI")[0]
    lines[0] = f"\\c:{int(t0.timestamp())}\\{static}"  # a static report in the first chunk
    path = tmp_path / "feed.nmea"
    path.write_text("\n".join(lines + lines[:5]) + "\n")  # the last chunk repeats the first five reports
    ais = tmp_path / "ais"
    real = ingest_mod.read_nmea_lines
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest_mod, "read_nmea_lines", failing)
    with pytest.raises(OSError, match="disk went away"):
        ingest_file(path, ais, chunk_lines=10)
    assert calls["n"] == 3  # two chunks were read and written (staged) before the failure
    assert day_dirs(ais) == [] or all(not any(d.iterdir()) for _, d in day_dirs(ais))
    assert not list(ais.rglob("*.tmp")) and read_manifest(ais) == {}
    assert not (ais / "vessels.parquet").exists()  # nor the registry: it is merged once the positions are in

    monkeypatch.setattr(ingest_mod, "read_nmea_lines", real)
    done = ingest_file(path, ais, chunk_lines=10)
    assert (done.added, done.duplicates, done.statics_added) == (29, 4, 1)
    assert pl.read_parquet(ais / "vessels.parquet")["name"].to_list() == ["NORTH STAR"]
    (day, ddir), = day_dirs(ais)
    assert day.isoformat() == "2024-01-05" and read_day(ddir).height == 29
    assert len(list(ddir.glob("part-*.parquet"))) == 3 and not list(ais.rglob("*.tmp"))


@pytest.mark.parametrize("name", ["mc.csv", "mc.csv.gz", "MC.CSV.GZ"])
def test_a_value_that_does_not_parse_costs_its_row_only(tmp_path, name):
    """Files are read strictly first (faster); one with a value that is not a number is read again leniently,
    so that row alone is reported, by line, and the rest of the file is kept."""
    import gzip

    text = ("MMSI,BaseDateTime,LAT,LON,SOG\n273210440,2023-01-11T00:00:00,42.2,130.3,1\n"
            "273210441,2023-01-11T00:00:01,N/A,130.3,1\n273210442,2023-01-11T00:00:02,42.2,130.3,fast\n"
            "273210443,2023-01-11T00:00:03,42.3,130.4,2\n")
    p = tmp_path / name
    p.write_bytes(gzip.compress(text.encode()) if name.lower().endswith(".gz") else text.encode())
    res = read_provider_csv(p)
    got = res.positions.sort("line")
    assert got["mmsi"].to_list() == [273210440, 273210442, 273210443]
    assert got["sog_kn"].to_list()[1] is None  # an unreadable speed is unknown, not a reason to drop the position
    assert res.report.bad == {"unparsable or out-of-range row": 1} and res.report.examples[0][0] == 3
    summary = ingest_file(p, tmp_path / "ais")  # a gzipped provider file goes in whole, like a plain one
    assert summary.kind == "marinecadastre" and summary.added == 3 and summary.report.bad_total == 1


def test_ragged_rows_stray_bytes_and_blank_lines_do_not_stop_a_file(tmp_path):
    """A row with more fields than the header (an unquoted comma in a name), bytes that are not UTF-8 and blank
    lines: the file still goes in. The ragged row is reported by line and left out: its values after the stray
    comma have shifted (the registry would take a call sign for an IMO number). A quoted comma is not a
    separator. Blank lines are not data and not reported as bad rows."""
    head = "MMSI,BaseDateTime,LAT,LON,SOG,VesselName\n"
    body = (b"273210440,2023-01-11T00:00:00,42.2,130.3,1,NORTH\n"
            b"273210441,2023-01-11T00:00:01,42.2,130.3,1,SEA, THE\n"
            b"273210442,2023-01-11T00:00:02,42.2,130.3,1,S\xf8RLAND\n\n"
            b"273210443,2023-01-11T00:00:03,42.2,130.3,1,EAST\n\n"
            b'273210444,2023-01-11T00:00:04,42.2,130.3,1,"WEST, THE"\n\n')
    p = tmp_path / "mc.csv"
    p.write_bytes(head.encode() + body)
    res = read_provider_csv(p)
    assert res.positions.sort("line")["line"].to_list() == [2, 4, 6, 8]
    assert res.report.bad == {"row with more fields than the header": 1}
    assert [e[0] for e in res.report.examples] == [3]
    assert sorted(res.statics["name"].to_list()) == ["EAST", "NORTH", "S\ufffdRLAND", "WEST, THE"]


def test_a_file_that_is_not_csv_at_all_is_named(tmp_path):
    p = tmp_path / "broken.csv"
    p.write_text('MMSI,BaseDateTime,LAT,LON\n273210440,2023-01-11T00:00:00,42.2,130.3\n1,"2023,3,4\n')
    with pytest.raises(ValueError, match=r"broken\.csv: line 3: a quote opened there is not closed .* cannot be read as CSV"):
        read_provider_csv(p)
    p.write_bytes(b"\xef\xbb\xbf\xef\xbb\xbfMMSI,BaseDateTime,LAT,LON\n1,2023-01-11T00:00:00,1,1\n")  # two marks
    with pytest.raises(ValueError, match=r"broken\.csv: "):
        read_provider_csv(p)


def test_a_clean_file_is_read_once_strictly(tmp_path, monkeypatch):
    """The lenient mode costs every file about 15 %: a file without a bad value is read once, strictly."""
    from routewatch.sources.ais import providers

    calls = []
    real = providers._scan
    monkeypatch.setattr(providers, "_scan", lambda *a: calls.append(a[4]) or real(*a))  # (..., lenient, separator)
    p = tmp_path / "mc.csv"
    p.write_text("MMSI,BaseDateTime,LAT,LON\n273210440,2023-01-11T00:00:00,42.2,130.3\n")
    assert read_provider_csv(p).positions.height == 1 and calls == [False]
    p.write_text("MMSI,BaseDateTime,LAT,LON\n273210440,2023-01-11T00:00:00,N/A,130.3\n")
    assert read_provider_csv(p).report.bad_total == 1 and calls == [False, False, True]


def test_header_with_a_byte_order_mark_or_blanks_after_the_commas(tmp_path):
    """Spreadsheet exports write a UTF-8 byte-order mark and sometimes ``MMSI, BaseDateTime, ...``: the layout is
    still recognised and the columns found, by ``ais ingest`` as by the reader."""
    rows = "273210440, 2023-01-11T00:00:00, 42.2, 130.3\n"
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + ("MMSI,BaseDateTime,LAT,LON\n" + rows.replace(", ", ",")).encode())
    spaced = tmp_path / "spaced.txt"  # not named .csv: recognised from the header alone
    spaced.write_text("MMSI, BaseDateTime, LAT, LON\n" + rows.replace(", 2023", ",2023"))
    for p in (bom, spaced):
        s = ingest_file(p, tmp_path / "ais")
        assert s.kind == "marinecadastre" and s.report.bad_total == 0, p
    assert read_provider_csv(spaced).positions["lat"].to_list() == [42.2]
    assert ingest_file(spaced, tmp_path / "ais", force=True).added == 0  # same position: nothing new


def test_a_line_of_garbage_is_a_bad_row_not_a_blank_one(tmp_path):
    """Blank lines are skipped silently, but text that does not parse as any column is reported, even when the
    reader's lenient mode has turned every field of it into a null; a repeated column name reads the first."""
    p = tmp_path / "mc.csv"
    p.write_text("MMSI,BaseDateTime,LAT,LON, LAT\n273210440,2023-01-11T00:00:00,42.2,130.3,99\n"
                 "--- end of export ---\n\n")
    res = read_provider_csv(p)
    assert res.positions["lat"].to_list() == [42.2]
    assert res.report.bad == {"unparsable or out-of-range row": 1} and res.report.examples[0][0] == 3


def test_the_lenient_read_gives_every_other_row_the_strict_reads_values(tmp_path):
    """A bad value sends a file to the lenient read; the other rows must come out exactly as a clean file's do
    (blanks around numbers, signs, exponents, a blank line), and only the bad row is reported."""
    head = "MMSI,BaseDateTime,LAT,LON,SOG, LAT\n"  # a padded repeat of a name: the exact spelling wins
    rows = ("+273210440,2023-01-11T00:00:00, 42.123456 ,-0.0,1e1,7\n"
            "273210441,2023-01-11T00:00:01,42.2,130.3,,7\n\n"
            "273210442,2023-01-11T00:00:02,-42.5,+130.25, 3.5 ,7\n")
    clean, dirty = tmp_path / "clean.csv", tmp_path / "dirty.csv"
    clean.write_text(head.replace("LAT,LON,SOG, LAT", " LAT,LON,SOG,LAT") + rows)
    dirty.write_text(head.replace("LAT,LON,SOG, LAT", " LAT,LON,SOG,LAT") + rows
                     + "273210443,2023-01-11T00:00:03,42.2,N/A,1,7\n")
    a, b = read_provider_csv(clean), read_provider_csv(dirty)
    assert a.report.bad == {} and b.report.bad == {"unparsable or out-of-range row": 1}
    assert b.report.examples[0][0] == 6
    cols = ["line", "mmsi", "timestamp", "lat", "lon", "sog_kn"]
    assert a.positions.sort("line").select(cols).equals(b.positions.sort("line").select(cols))
    assert a.positions.sort("line")["lat"].to_list() == [7.0, 7.0, 7.0]  # "LAT", not " LAT"
    assert a.positions.sort("line")["sog_kn"].to_list() == [10.0, None, 3.5]
    blanks = tmp_path / "blanks.csv"  # a line of blanks only is blank too, whichever read it takes
    blanks.write_text(head + "273210441,2023-01-11T00:00:01,42.2,130.3,1,7\n   ,  ,   ,  ,  ,  \n")
    assert read_provider_csv(blanks).report.bad == {} and read_provider_csv(blanks).positions.height == 1


@pytest.mark.parametrize("name", ["mc.csv", "mc.csv.gz"])
def test_a_quoted_field_over_two_lines_keeps_later_line_numbers_true(tmp_path, name):
    """A vessel name with a line break, quoted, makes one record of two lines: the positions after it, the bad
    row's example and the registry's first line must still name the file's lines (the evidence link), whether
    the file is read directly or ingested (where the hashing thread counts the lines)."""
    import gzip

    text = ('MMSI,BaseDateTime,LAT,LON,SOG,VesselName\n'
            '273210440,2023-01-11T00:00:00,42.2,130.3,1,"NORTH\nSTAR"\n'  # lines 2-3
            '\n'  # line 4: blank
            '273210441,2023-01-11T00:00:01,N/A,130.3,1,"SAY ""HI"", THEN\n\nGO"\n'  # lines 5-7, bad latitude
            '273210442,2023-01-11T00:00:02,42.3,130.4,2,EAST\n')  # line 8
    p = tmp_path / name
    p.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    res = read_provider_csv(p)
    assert res.positions.sort("line")["line"].to_list() == [2, 8]
    assert [e[0] for e in res.report.examples] == [5] and res.report.lines == 8
    # the bad row has no usable position but names its ship (from its first line)
    assert dict(zip(res.statics["name"], res.statics["line"], strict=True)) == {
        "NORTH\nSTAR": 2, 'SAY "HI", THEN\n\nGO': 5, "EAST": 8}
    summary = ingest_file(p, tmp_path / "ais")
    assert summary.added == 2 and [e[0] for e in summary.report.examples] == [5]
    (_, ddir), = day_dirs(tmp_path / "ais")
    assert read_day(ddir)["line"].to_list() == [2, 8]


def test_a_truncated_gzip_file_is_named_and_leaves_nothing(tmp_path):
    """A download cut short: a ValueError naming the file (which ``ais ingest`` records as a failure before going
    on), nothing written, and the file is not marked as ingested."""
    import gzip

    good = tmp_path / "a.csv"
    good.write_text("MMSI,BaseDateTime,LAT,LON\n273210440,2023-01-11T00:00:00,42.2,130.3\n")
    cut = tmp_path / "b.csv.gz"
    cut.write_bytes(gzip.compress(good.read_bytes() * 50)[:-30])
    with pytest.raises(ValueError, match=r"b\.csv\.gz: cannot be decompressed"):
        ingest_file(cut, tmp_path / "ais")
    assert not day_dirs(tmp_path / "ais") and not (tmp_path / "ais" / "manifest.json").exists()
    assert ingest_file(good, tmp_path / "ais").added == 1


def test_a_ragged_row_in_an_otherwise_clean_file_is_reported(tmp_path):
    """No stray byte to force the lenient read: the strict read itself must refuse the row with an unquoted comma
    (polars cuts it silently when only some columns are read), so its shifted values never reach the registry."""
    head = ("MMSI,BaseDateTime,LAT,LON,SOG,COG,Heading,VesselName,IMO,CallSign,VesselType,Status,Length,Width,"
            "Draft,Cargo,TransceiverClass\n")
    rows = ["636021061,2023-01-11T00:00:00,42.2,130.3,1,1,1,MSC NAISHA III,IMO9307839,A8LU4,70,0,208,30,8,70,A",
            "636021062,2023-01-11T00:00:00,42.2,130.3,1,1,1,MSC, NAISHA,IMO1234567,A8LU5,70,0,208,30,8,70,A"]
    p = tmp_path / "mc.csv"
    p.write_text(head + "\n".join(rows) + "\n")
    res = read_provider_csv(p)
    assert res.report.bad == {"row with more fields than the header": 1} and res.report.examples[0][0] == 3
    assert res.statics["name"].to_list() == ["MSC NAISHA III"] and res.positions["mmsi"].to_list() == [636021061]


def test_a_quote_inside_an_unquoted_field_does_not_shift_the_lines_after_a_quoted_newline(tmp_path):
    """``12"3`` is text to polars and to the csv module alike; only a quote that opens a field hides newlines. The
    reader's warning about its row estimate ("CSV malformed"), which the records check makes moot, is not shown."""
    rows = ['1,2023-01-11T00:00:00,42.2,130.3,A', '2,2023-01-11T00:00:01,42.2,130.3,"two\nlines"',
            '3,2023-01-11T00:00:02,42.2,130.3,12"3', '4,2023-01-11T00:00:03,42.2,130.3,B',
            '5,2023-01-11T00:00:04,42.2,130.3,C']
    p = tmp_path / "q.csv"
    p.write_text("MMSI,BaseDateTime,LAT,LON,VesselName\n" + "\n".join(rows) + "\n")
    res = read_provider_csv(p)
    assert res.positions.sort("line")["line"].to_list() == [2, 3, 5, 6, 7] and res.report.lines == 7
    import warnings

    head = ("MMSI,BaseDateTime,LAT,LON,SOG,COG,Heading,VesselName,IMO,CallSign,VesselType,Status,Length,Width,"
            "Draft,Cargo,TransceiverClass\n")
    p.write_text(head + '273210444,2023-01-11T00:04:00,43.4,-70.4,5.0,90.0,95.0,B"AD,,X,31,0.0,,,,52.0,A\n'
                 "273210445,2023-01-11T00:05:00,43.5,-70.5,5.0,90.0,95.0,GOOD,,X,31,0.0,,,,52.0,A\n")
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        res = read_provider_csv(p)
    assert res.positions.height == 2 and res.report.bad == {}
    assert not [w for w in shown if "CSV malformed" in str(w.message)]


def test_a_ragged_row_is_found_beside_blank_lines_and_quoted_commas(tmp_path):
    """Blank lines have no commas and quoted commas are not separators: neither may hide a ragged row from the
    comma count, and a quoted comma alone is never reported."""
    head = "MMSI,BaseDateTime,LAT,LON,VesselName,CallSign\n"
    rows = ['1,2023-01-11T00:00:00,42.2,130.3,"SEA, THE",A1', "", "",
            "2,2023-01-11T00:00:01,42.2,130.3,MSC, NAISHA,B2", "3,2023-01-11T00:00:02,42.2,130.3,EAST,C3", ""]
    p = tmp_path / "mc.csv"
    p.write_text(head + "\n".join(rows) + "\n")
    res = read_provider_csv(p)
    assert res.report.bad == {"row with more fields than the header": 1} and res.report.examples[0][0] == 5
    assert sorted(res.positions["mmsi"].to_list()) == [1, 3]
    p.write_text(head + "\n".join(r for r in rows if "NAISHA" not in r) + "\n")
    assert read_provider_csv(p).report.bad == {}


def test_a_ragged_row_is_found_in_a_file_cut_short(tmp_path):
    """A download cut mid-row ends in a short row (the reader pads it with nulls): its missing commas must not
    hide a ragged row's extra one from the count."""
    head = "MMSI,BaseDateTime,LAT,LON,VesselName,CallSign,TransceiverClass\n"
    rows = ["1,2023-01-11T00:00:00,42.2,130.3,EAST,A1,A", "2,2023-01-11T00:00:01,42.2,130.3,MSC, NAISHA,B2,A",
            "3,2023-01-11T00:00:02,42.2,130.3,WEST,C3"]
    p = tmp_path / "cut.csv"
    p.write_text(head + "\n".join(rows))
    res = read_provider_csv(p)
    assert res.report.bad == {"row with more fields than the header": 1} and res.report.examples[0][0] == 3
    assert sorted(res.positions["mmsi"].to_list()) == [1, 3]


def _csv_rows(path: Path, head: str, rows: list[str]):
    """Write a header line and rows as a CSV file and read it: (the file, the reader's result)."""
    path.write_text(head + "\n".join(rows) + "\n")
    return path, read_provider_csv(path)


def test_rows_ending_with_a_separator_the_header_lacks_are_read_and_a_shifted_row_among_them_is_not(tmp_path):
    """Some exports end every row with a separator: the empty field after the header's last is the row's end, not
    a shift (every row had been refused as ragged, and the file with them). A stray comma in such a file is still
    a ragged row, and so is a row of the same file with a field too many after the last."""
    head = "MMSI,BaseDateTime,LAT,LON,VesselName,CallSign\n"
    rows = ["1,2023-01-11T00:00:00,42.2,130.3,EAST,A1,", "2,2023-01-11T00:00:01,42.2,130.3,MSC, NAISHA,B2,",
            "3,2023-01-11T00:00:02,42.2,130.3,WEST,C3,", "4,2023-01-11T00:00:03,42.2,130.3,NORTH,D4,,"]
    p, res = _csv_rows(tmp_path / "trail.csv", head, rows)
    assert res.report.bad == {"row with more fields than the header": 2}
    assert [e[0] for e in res.report.examples] == [3, 5] and "separator ending each row" in res.report.examples[0][2]
    assert sorted(res.positions["mmsi"].to_list()) == [1, 3]
    assert sorted(res.statics["call_sign"].to_list()) == ["A1", "C3"]
    # all rows clean: every one read, none reported; the same rows without the separator read the same
    p.write_text(head + "\n".join(r for r in rows if "NAISHA" not in r and "NORTH" not in r) + "\n")
    res = read_provider_csv(p)
    assert res.report.bad == {} and sorted(res.positions["mmsi"].to_list()) == [1, 3]
    p.write_text(head + "\n".join(r.rstrip(",") for r in rows if "NAISHA" not in r and "NORTH" not in r) + "\n")
    assert read_provider_csv(p).report.bad == {}
    # a last column that is blank in every row ends each row with the separator too, but with the header's count
    # of fields: no trailing separator, so a stray comma there is still a ragged row (it had been read, shifted)
    blank_last = ["1,2023-01-11T00:00:00,42.2,130.3,EAST,", "2,2023-01-11T00:00:01,42.2,130.3,MSC, NAISHA,",
                  "3,2023-01-11T00:00:02,42.2,130.3,WEST,"]
    _, res = _csv_rows(tmp_path / "blank_last.csv", head, blank_last)
    assert res.report.bad == {"row with more fields than the header": 1} and res.report.examples[0][0] == 3
    # a header that ends with the separator too names an empty last column: rows like it are not ragged either
    p.write_text(head.replace("\n", ",\n") + "\n".join(rows[:1] + rows[2:3]) + "\n")
    assert read_provider_csv(p).report.bad == {}


def test_a_status_outside_the_codes_and_placeholder_names_are_none(tmp_path):
    """MarineCadastre writes a status of -99 and the Danish exports a call sign of "Unknown": neither is a value
    (the status had been stored as -99 and "Unknown" as a ship's call sign in the registry)."""
    head = "MMSI,BaseDateTime,LAT,LON,VesselName,CallSign,Status\n"
    rows = ["1,2023-01-11T00:00:00,42.2,130.3,EAST,Unknown,-99.0", "2,2023-01-11T00:00:00,42.2,130.3,N/A,B2,5",
            "3,2023-01-11T00:00:00,42.2,130.3,unknown,UNKNOWN,16", "4,2023-01-11T00:00:00,42.2,130.3,WEST,C4,2.5"]
    _, res = _csv_rows(tmp_path / "mc.csv", head, rows)
    status = dict(zip(res.positions["mmsi"], res.positions["nav_status"], strict=True))
    assert status == {1: None, 2: 5, 3: None, 4: None}
    got = {r["mmsi"]: (r["name"], r["call_sign"]) for r in res.statics.iter_rows(named=True)}
    assert got == {1: ("EAST", None), 2: (None, "B2"), 4: ("WEST", "C4")}  # ship 3 names nothing
    # placeholders written two ways, and an IMO number with and without its prefix, are one record, not two
    rows = ["1,2023-01-11T00:00:00,42.2,130.3,EAST,Unknown,IMO9307839", "1,2023-01-11T01:00:00,42.2,130.3,EAST,N/A,"
            "9307839"]
    _, res = _csv_rows(tmp_path / "twice.csv", "MMSI,BaseDateTime,LAT,LON,VesselName,CallSign,IMO\n", rows)
    (rec,) = res.statics.iter_rows(named=True)
    assert (rec["call_sign"], rec["imo"], rec["first_seen"].hour, rec["last_seen"].hour) == (None, 9307839, 0, 1)


def test_an_mmsi_written_as_a_whole_float_is_read(tmp_path):
    """pandas writes an integer column with a blank in it as floats (273210440.0): such rows had all been refused;
    an MMSI with a fraction is still a bad row."""
    head = "MMSI,BaseDateTime,LAT,LON,VesselName\n"
    rows = ["273210440.0,2023-01-11T00:00:00,42.2,130.3,A", "273210441,2023-01-11T00:00:01,42.2,130.3,B",
            "273210442.5,2023-01-11T00:00:02,42.2,130.3,C", " 273210443.00 ,2023-01-11T00:00:03,42.2,130.3,D"]
    _, res = _csv_rows(tmp_path / "mc.csv", head, rows)
    assert res.positions["mmsi"].to_list() == [273210440, 273210441, 273210443]
    assert res.report.bad == {"unparsable or out-of-range row": 1} and res.report.examples[0][0] == 4
    assert sorted(res.statics["mmsi"].to_list()) == [273210440, 273210441, 273210443]


def test_a_header_repeated_in_another_column_order_refuses_the_file_at_its_line(tmp_path):
    """Concatenated exports repeat their header: in the first one's order it is one bad row; in another order every
    later row had been read into the wrong columns (longitude as latitude) without a word."""
    head = "MMSI,BaseDateTime,LON,LAT\n"
    same = ["1,2023-01-11T00:00:00,130.3,42.2", "MMSI,BaseDateTime,LON,LAT", "2,2023-01-11T00:00:01,130.4,42.3"]
    _, res = _csv_rows(tmp_path / "same.csv", head, same)
    assert sorted(res.positions["lon"].to_list()) == [130.3, 130.4] and res.report.bad_total == 1
    swapped = ["1,2023-01-11T00:00:00,130.3,42.2", "MMSI,BaseDateTime,LAT,LON", "2,2023-01-11T00:00:01,42.3,130.4"]
    with pytest.raises(ValueError, match=r"swapped\.csv: line 3: the header again, in another column order"):
        _csv_rows(tmp_path / "swapped.csv", head, swapped)
    # two Excel exports joined with `cat`: the second header starts with its byte-order mark
    with pytest.raises(ValueError, match=r"bom\.csv: line 3: the header again, in another column order"):
        _csv_rows(tmp_path / "bom.csv", head, [swapped[0], "\ufeff" + swapped[1], swapped[2]])
    time_first = "BaseDateTime,MMSI,LON,LAT\n"  # the mark ahead of the time column itself
    with pytest.raises(ValueError, match=r"bom2\.csv: line 3: the header again, in another column order"):
        _csv_rows(tmp_path / "bom2.csv", time_first, ["2023-01-11T00:00:00,1,130.3,42.2", "\ufeffBaseDateTime,MMSI,LAT,LON",
                                                      "2023-01-11T00:00:01,2,42.3,130.4"])
    # a column the reader needs, named twice: ambiguous, refused (polars had read one of them without a word)
    with pytest.raises(ValueError, match=r"twice\.csv: line 1: column 'LON' \(lon\) appears 2 times .*fields 3, 5"):
        _csv_rows(tmp_path / "twice.csv", "MMSI,BaseDateTime,LON,LAT,LON\n", ["1,2023-01-11T00:00:00,130.3,42.2,0"])


def test_imo_numbers_are_seven_digits_and_zero_sizes_are_unknown(tmp_path):
    """MarineCadastre writes IMO0000000 for none and sometimes longer digit runs: neither is an IMO number (cut
    to seven digits it would be a made-up one that could link the wrong ship); a length or width of 0 is not
    available, as in the AIS messages."""
    head = "MMSI,BaseDateTime,LAT,LON,VesselName,IMO,CallSign,Length,Width\n"
    rows = ["1,2023-01-11T00:00:00,42.2,130.3,A,IMO9307839,C1,208,30",
            "2,2023-01-11T00:00:00,42.2,130.3,B,IMO180000000,C2,0,0",
            "3,2023-01-11T00:00:00,42.2,130.3,C,IMO0000000,C3,100,20",
            "4,2023-01-11T00:00:00,42.2,130.3,D,9307839,C4,,",
            "5,2023-01-11T00:00:00,42.2,130.3,E,9307839.0,C5,,", "6,2023-01-11T00:00:00,42.2,130.3,F,imo9307839,C6,,"]
    p = tmp_path / "mc.csv"
    p.write_text(head + "\n".join(rows) + "\n")
    got = {r["mmsi"]: r for r in read_provider_csv(p).statics.iter_rows(named=True)}
    assert [got[m]["imo"] for m in (1, 2, 3, 4, 5, 6)] == [9307839, None, None, 9307839, 9307839, 9307839]
    assert (got[2]["length_m"], got[2]["beam_m"], got[3]["length_m"]) == (None, None, 100)


def _sentence(body: str) -> str:
    cs = 0
    for ch in body:
        cs ^= ord(ch)
    return f"!{body}*{cs:02X}"


@pytest.mark.parametrize("cut_after", [1, 2])
def test_a_message_of_three_fragments_cut_by_a_chunk_boundary_is_read_whole(tmp_path, cut_after):
    """A large NMEA file is read in chunks; an unfinished multipart message moves to the next chunk from its first
    fragment, also when two of its three fragments are before the boundary."""
    from pyais import encode_dict

    two = encode_dict({"type": 5, "mmsi": 273210440, "imo": 9179842, "callsign": "UBYT2", "shipname": "ANGARA",
                       "to_bow": 100, "to_stern": 20, "to_port": 10, "to_starboard": 8}, talker_id="AI", seq_id=4)
    payload = "".join(s.split(",")[5] for s in two)
    fill = two[-1].split(",")[6].split("*")[0]
    parts = [payload[:24], payload[24:48], payload[48:]]
    frags = [_sentence(f"AIVDM,3,{i + 1},4,A,{p},{fill if i == 2 else 0}") for i, p in enumerate(parts)]
    pos = "!AIVDM,1,1,,A,13RlIW?04F1beOVEFLB9bRvH0L0L,0*6C"
    whole = [pos] * (5 - cut_after) + frags + [pos]
    path = tmp_path / "feed.nmea"
    path.write_text("\n".join(f"\\c:{1_700_000_000 + 10 * i}\\{s}" if not s.startswith("!AIVDM,3,2")
                              and not s.startswith("!AIVDM,3,3") else s for i, s in enumerate(whole)) + "\n")
    done = ingest_file(path, tmp_path / "ais", chunk_lines=5)  # the boundary falls after fragment `cut_after`
    assert done.report.bad == {} and done.report.statics == 1 and done.statics_added == 1
    assert done.added == 5 - cut_after + 1


def test_csv_courses_and_headings_outside_a_circle_and_negative_speeds_are_null(tmp_path):
    """As on the NMEA paths: a heading of 400 or a course of 365 is no direction (fusion would read 400 as 40)."""
    rows = ["1,2023-01-11T00:00:00,42.2,130.3,5.5,365,400", "2,2023-01-11T00:00:00,42.2,130.3,-1,359.9,359",
            "3,2023-01-11T00:00:00,42.2,130.3,102.3,360,511", "4,2023-01-11T00:00:00,42.2,130.3,0,0,0"]
    p = tmp_path / "mc.csv"
    p.write_text("MMSI,BaseDateTime,LAT,LON,SOG,COG,Heading\n" + "\n".join(rows) + "\n")
    got = {r["mmsi"]: (r["sog_kn"], r["cog_deg"], r["heading_deg"])
           for r in read_provider_csv(p).positions.iter_rows(named=True)}
    assert got[1] == (5.5, None, None) and got[3] == (None, None, None) and got[4] == (0, 0, 0)
    assert got[2][0] is None and got[2][1] == pytest.approx(359.9) and got[2][2] == 359


def test_the_manifest_names_a_file_by_its_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d1").mkdir()
    (tmp_path / "d1" / "pos.csv").write_text("MMSI,BaseDateTime,LAT,LON\n273210440,2024-01-01T00:00:00,42.2,130.2\n")
    ingest_file(Path("d1/pos.csv"), tmp_path / "ais")
    (entry,) = read_manifest(tmp_path / "ais").values()
    assert entry["path"] == str(tmp_path / "d1" / "pos.csv")


def test_a_position_dated_after_the_ingest_is_a_bad_row(tmp_path: Path) -> None:
    """A row dated next month (a clock or a zone gone wrong) is refused with its line: it had made a day
    partition, a visit and a gap of years cued to every site. An hour ago is read."""
    from datetime import timedelta

    from pyais import encode_dict

    now = datetime.now(UTC).replace(microsecond=0)
    mc = tmp_path / "future.csv"
    mc.write_text("MMSI,BaseDateTime,LAT,LON,SOG\n"
                  f"273210441,{(now - timedelta(hours=1)).replace(tzinfo=None).isoformat()},42.23,130.29,0.1\n"
                  f"273210441,{(now + timedelta(days=30)).replace(tzinfo=None).isoformat()},42.23,130.29,0.1\n")
    got = ingest_file(mc, tmp_path / "ais")
    assert got.added == 1 and got.report.bad == {"unparsable or out-of-range row": 1}
    assert got.report.examples[0][0] == 3
    assert [d for d, _ in day_dirs(tmp_path / "ais")] == [(now - timedelta(hours=1)).date()]
    line = encode_dict({"type": 1, "mmsi": 273000001, "lon": 130.28, "lat": 42.23, "speed": 0.1},
                       radio_channel="A", talker_id="AI")[0]
    nmea = tmp_path / "future.nmea"
    nmea.write_text(f"\\c:{int(now.timestamp()) - 60}\\{line}\n\\c:{int(now.timestamp()) + 30 * 86400}\\{line}\n")
    got = ingest_file(nmea, tmp_path / "ais")
    assert got.added == 1 and got.report.bad == {"time out of range (before 1980 or in the future)": 1}


def test_a_stray_quote_beside_a_field_quoted_over_two_lines_costs_nothing(tmp_path):
    """polars cannot get past a quote inside an unquoted name once another field is quoted over two lines: the
    whole file had been refused. The csv module reads it (the stray quote is text), every row keeps its line, and
    a quote never closed is refused by the line it opens on."""
    p = tmp_path / "q.csv"
    p.write_text('MMSI,BaseDateTime,LAT,LON,SOG,COG,Heading,VesselName\n'
                 '273210441,2024-01-01T00:00:00,42.23,130.29,0.1,0,0,"OK NAME"\n'
                 '273210442,2024-01-01T00:01:00,42.23,130.29,0.1,0,0,BAD "QUOTE\n'
                 '273210443,2024-01-01T00:02:00,42.23,130.29,0.1,0,0,"MULTI\nLINE"\n'
                 '273210444,2024-01-01T00:03:00,42.23,130.29,0.1,0,0,FINE\n')
    res = read_provider_csv(p)
    assert res.positions.sort("line")["line"].to_list() == [2, 3, 4, 6] and res.report.bad == {}
    assert sorted(res.statics["name"].to_list()) == ['BAD "QUOTE', "FINE", "MULTI\nLINE", "OK NAME"]
    never = tmp_path / "never.csv"
    never.write_text(p.read_text().replace('"OK NAME"', '"OK NAME') + "".join(
        f"27321045{i},2024-01-01T00:0{i}:00,42.23,130.29,0.1,0,0,X\n" for i in range(8)))
    with pytest.raises(ValueError, match=r"never\.csv: line 2: a quote opened there is not closed"):
        read_provider_csv(never)


def test_a_carriage_return_alone_in_a_name_keeps_every_line_number(tmp_path):
    """Read through the csv module (a stray quote forced it), a bare carriage return in a name had ended the
    record there: an invented bad row, and every later line number one off. And in the first 100 lines it had
    crashed the separator check, aborting the whole ingest."""
    p = tmp_path / "cr.csv"
    p.write_bytes(b'MMSI,BaseDateTime,LAT,LON,SOG,COG,Heading,VesselName\n'
                  b'273210441,2024-01-01T00:00:00,42.23,130.29,0.1,0,0,"OK NAME"\n'
                  b'273210442,2024-01-01T00:01:00,42.23,130.29,0.1,0,0,BAD "QUOTE\n'
                  b'273210443,2024-01-01T00:02:00,42.23,130.29,0.1,0,0,"MULTI\nLINE"\n'
                  b'273210445,2024-01-01T00:04:00,42.23,130.29,0.1,0,0,CR\rIN NAME\n'
                  b'273210446,not a time,42.23,130.29,0.1,0,0,BAD ROW\n'
                  b'273210447,2024-01-01T00:06:00,42.23,130.29,0.1,0,0,LAST\n')
    res = read_provider_csv(p)
    assert res.positions.sort("line")["line"].to_list() == [2, 3, 4, 6, 8]
    assert sum(res.report.bad.values()) == 1 and [e[0] for e in res.report.examples] == [7]
    got = ingest_file(p, tmp_path / "ais")
    assert got.added == 5


def _rows(path: Path, header: bytes, *rows: bytes) -> Path:
    """A CSV of ``header`` and ``rows`` as given, bytes and line ends untouched."""
    path.write_bytes(header + b"".join(rows))
    return path


def test_a_carriage_return_alone_in_a_ragged_row_or_beside_a_multi_line_field_is_read(tmp_path):
    """The csv module ends a record at a bare carriage return, polars and the line count do not: a ragged row
    with one had crashed the ingest, and a quoted field over two lines beside one had refused the file."""
    head = b"MMSI,BaseDateTime,LAT,LON,SOG,COG,Heading,VesselName\n"
    ragged = _rows(tmp_path / "ragged.csv", head, b"273210441,2024-01-01T00:00:00,42.23,130.29,0.1,0,0,A\n",
                   b"273210442,2024-01-01T00:01:00,42.23,130.29,0.1,0,0,MSC, NAI\rSHA\n",
                   b"273210443,2024-01-01T00:02:00,42.23,130.29,0.1,0,0,LAST\n")
    res = read_provider_csv(ragged)
    assert res.positions.sort("line")["line"].to_list() == [2, 4] and [e[0] for e in res.report.examples] == [3]
    multi = _rows(tmp_path / "multi.csv", head, b'273210441,2024-01-01T00:00:00,42.23,130.29,0.1,0,0,"TWO\nLINES"\n',
                  b"273210442,2024-01-01T00:01:00,42.23,130.29,0.1,0,0,CR\rIN\n",
                  b"273210443,2024-01-01T00:02:00,42.23,130.29,0.1,0,0,LAST\n")
    assert read_provider_csv(multi).positions.sort("line")["line"].to_list() == [2, 4, 5]
    # and through the csv-module read (a stray quote forces it), names as polars reads them: a quoted name with a
    # carriage return before the separator had made the file refused, and a CRLF inside quotes is kept
    head = b"MMSI,BaseDateTime,LAT,LON,SOG,VesselName,CallSign\n"
    stray = b'273210441,2024-01-01T00:00:00,42.23,130.29,0.1,BAD "QUOTE,A\n'
    both = _rows(tmp_path / "both.csv", head, stray, b'273210442,2024-01-01T00:01:00,42.23,130.29,0.1,"MULTI\r\nLINE",B\n',
                 b'273210443,2024-01-01T00:02:00,42.23,130.29,0.1,"KOTA"\r,C\n',
                 b"273210444,2024-01-01T00:03:00,42.23,130.29,0.1,KO\rTA,D\n")
    res = read_provider_csv(both)
    assert res.positions.sort("line")["line"].to_list() == [2, 3, 5, 6]
    assert sorted(res.statics["name"].to_list()) == ['BAD "QUOTE', "KO\rTA", "KOTA", "MULTI\r\nLINE"]
    # a carriage return ending a field, and a NUL byte, come back as polars reads them (the first had been
    # written bare and read as a line end, the second taken for the placeholder of a carriage return)
    ends = _rows(tmp_path / "ends.csv", head, stray, b'273210443,2024-01-01T00:00:30,42.23,130.29,0.1,"TWO\nLINES",B\n',
                 b"273210442,2024-01-01T00:01:00,42.23,130.29,0.1,NUL\x00NAME,C4\r\r\n")
    res = read_provider_csv(ends)
    assert dict(zip(res.statics["mmsi"].to_list(), zip(res.statics["name"].to_list(),
                                                        res.statics["call_sign"].to_list(), strict=True),
                    strict=True))[273210442] == ("NUL\x00NAME", "C4\r")


def test_interleaved_multipart_messages_are_read_whole_whatever_the_chunking(tmp_path):
    """Two receivers' type 5 messages interleaved (A1 B1 A2 B2): the chunker had cut at the last first fragment it
    saw (B1), whose second fragment was already in the block, splitting A into an incomplete message and an
    orphan, at every chunk boundary and at the end of every file: the registry depended on the chunk size (199,
    195, 180, 150 of 200 ships)."""
    from pyais import encode_dict

    from routewatch.sources.ais.registry import read_statics

    out, k = [], 0
    t0 = 1_700_000_000
    for i in range(40):
        for j in range(6):
            out.append(f"\\c:{t0 + len(out)}\\" + encode_dict({"type": 1, "mmsi": 300000000 + j, "lon": 10 + j / 100,
                                                               "lat": 55 + i / 1000})[0])
        a = encode_dict({"type": 5, "mmsi": 240000000 + k, "shipname": f"SHIP{k}", "imo": 1000000 + k},
                        seq_id=k % 10, radio_channel="A")
        b = encode_dict({"type": 5, "mmsi": 240000001 + k, "shipname": f"SHIP{k + 1}", "imo": 1000001 + k},
                        seq_id=(k + 1) % 10, radio_channel="B")
        k += 2
        tag = f"\\c:{t0 + len(out)}\\"
        out += [tag + a[0], tag + b[0], tag + a[1], tag + b[1]]
    f = tmp_path / "interleaved.nmea"
    f.write_text("\n".join(out) + "\n")
    for n in (1_000_000, 200, 50, 21, 20):
        ais = tmp_path / f"ais{n}"
        s = ingest_file(f, ais, chunk_lines=n)
        assert not s.report.bad and s.report.statics == 80, n
        assert read_statics(ais).height == 80, n


def test_three_receivers_interleaved_give_the_same_registry_at_any_chunk_size(tmp_path):
    """Random interleavings of three receivers' feeds (positions and two-part type 5s with random sequence ids and
    channels, so keys repeat across receivers) and a lost first fragment: the messages read must not depend on
    how the file is cut into chunks (spans keyed without the station had chained, and an orphan near a boundary
    had made the chunker cut nowhere)."""
    import random

    from pyais import encode_dict

    from routewatch.sources.ais.registry import read_statics

    for seed in range(3):
        rng = random.Random(seed)
        streams, k = [], 0
        for st in range(3):
            lines = []
            for i in range(30):
                if rng.random() < 0.5:
                    lines.append((st, encode_dict({"type": 1, "mmsi": 300000000 + st * 100 + i, "lon": 10 + i / 100,
                                                   "lat": 55 + st / 100})[0]))
                else:
                    parts = encode_dict({"type": 5, "mmsi": 240000000 + k, "shipname": f"SHIP{k}", "imo": 1000000 + k},
                                        seq_id=rng.randrange(3), radio_channel=rng.choice("AB"))
                    k += 1
                    lines += [(st, p) for p in parts]
            streams.append(lines)
        streams[0].insert(5, (0, encode_dict({"type": 5, "mmsi": 251000000, "shipname": "LOST"}, seq_id=9,
                                             radio_channel="A")[0]))  # its second fragment never came
        out, pos = [], [0, 0, 0]
        while any(pos[i] < len(streams[i]) for i in range(3)):
            i = rng.choice([i for i in range(3) if pos[i] < len(streams[i])])
            st, sentence = streams[i][pos[i]]
            pos[i] += 1
            out.append(f"\\s:r{st},c:{1_700_000_000 + len(out)}\\{sentence}")
        f = tmp_path / f"feed{seed}.nmea"
        f.write_text("\n".join(out) + "\n")
        got = {}
        for n in (1_000_000, 13, 37):
            ais = tmp_path / f"ais{seed}-{n}"
            s = ingest_file(f, ais, chunk_lines=n)
            got[n] = (sorted(read_statics(ais)["mmsi"].to_list()), s.added)
        assert got[13] == got[1_000_000] == got[37], seed


def test_messages_told_apart_by_their_group_are_not_split_by_the_chunker(tmp_path):
    """Two messages on one sequence id and channel, told apart only by their NMEA 4 group (A1 B1 A2 B2, no
    station): the reader joins them by group; the chunker, keyed without it, had taken B1 for a new message on
    A's key and cut between A1 and A2 (one type 5 lost at 13-line chunks)."""
    from pyais import encode_dict

    from routewatch.sources.ais.registry import read_statics

    def tag(fields: str) -> str:
        cs = 0
        for ch in fields:
            cs ^= ord(ch)
        return f"\\{fields}*{cs:02X}\\"

    a = encode_dict({"type": 5, "mmsi": 240000001, "shipname": "ALPHA", "imo": 1000001}, seq_id=1, radio_channel="A")
    b = encode_dict({"type": 5, "mmsi": 240000002, "shipname": "BRAVO", "imo": 1000002}, seq_id=1, radio_channel="A")
    pos = [encode_dict({"type": 1, "mmsi": 300000000 + i, "lon": 10 + i / 100, "lat": 55.0})[0] for i in range(10)]
    t = 1_700_000_000
    lines = [tag(f"c:{t + i}") + p for i, p in enumerate(pos)]
    lines += [tag(f"g:1-2-17,c:{t + 20}") + a[0], tag(f"g:1-2-18,c:{t + 20}") + b[0], tag("g:2-2-17") + a[1],
              tag("g:2-2-18") + b[1]]
    lines += [tag(f"c:{t + 30 + i}") + p for i, p in enumerate(pos)]
    f = tmp_path / "feed.nmea"
    f.write_text("\n".join(lines) + "\n")
    for n in (1_000_000, 13):
        s = ingest_file(f, tmp_path / f"ais{n}", chunk_lines=n)
        assert sorted(read_statics(tmp_path / f"ais{n}")["name"].to_list()) == ["ALPHA", "BRAVO"] and not s.report.bad


def test_a_message_of_three_fragments_150_lines_apart_is_read_whatever_the_chunking(tmp_path):
    """The reader joins fragments up to 200 lines apart; the chunker had looked only at messages begun in a
    block's last 200 lines, so a cut 100 lines after the second of three fragments split the message."""
    from pyais import encode_dict

    two = encode_dict({"type": 5, "mmsi": 273210440, "imo": 9179842, "shipname": "ANGARA"}, talker_id="AI", seq_id=4)
    payload = "".join(s.split(",")[5] for s in two)
    fill = two[-1].split(",")[6].split("*")[0]

    def sentence(body: str) -> str:
        cs = 0
        for ch in body:
            cs ^= ord(ch)
        return f"!{body}*{cs:02X}"

    parts = [payload[:24], payload[24:48], payload[48:]]
    frags = [sentence(f"AIVDM,3,{i + 1},4,A,{p},{fill if i == 2 else 0}") for i, p in enumerate(parts)]

    def pos(i: int) -> str:
        return f"\\c:{1_700_000_000 + i}\\" + encode_dict({"type": 1, "mmsi": 300000000 + i % 50, "lon": 10.0,
                                                         "lat": 55.0})[0]

    lines = ([pos(i) for i in range(10)] + ["\\c:1700000010\\" + frags[0]] + [pos(i) for i in range(150)] + [frags[1]]
             + [pos(i) for i in range(150)] + [frags[2]] + [pos(i) for i in range(20)])
    f = tmp_path / "f.nmea"
    f.write_text("\n".join(lines) + "\n")
    for n in (1_000_000, 260):
        s = ingest_file(f, tmp_path / f"ais{n}", chunk_lines=n)
        assert s.report.statics == 1 and not s.report.bad, n


def test_one_message_heard_by_two_receivers_whose_clocks_differ_is_stored_once(tmp_path):
    """Two receivers stamp the same message a second apart: it had been stored twice (the repeat key holds the
    time), a moving ship's track stepping back and forth. The same ship at the same point within 2 s is one
    message, in one file or across files; a ship that keeps its point is heard every few minutes and stays."""
    from pyais import encode_dict

    def line(mmsi: int, lon: float, t: int, station: str) -> str:
        s = encode_dict({"type": 1, "mmsi": mmsi, "lon": lon, "lat": 42.2, "speed": 12.0, "course": 90.0},
                        radio_channel="A", talker_id="AI")[0]
        tag = f"s:{station},c:{t}"
        cs = 0
        for ch in tag:
            cs ^= ord(ch)
        return f"\\{tag}*{cs:02X}\\{s}"

    moving = [(273000301, 130.30 + 0.001 * k, 1_700_000_000 + 10 * k) for k in range(6)]
    moored = [(273000302, 130.25, 1_700_000_000 + 180 * k) for k in range(4)]  # every 3 min, the same point
    a = tmp_path / "rx_a.nmea"
    b = tmp_path / "rx_b.nmea"
    both = tmp_path / "both.nmea"
    a.write_text("\n".join(line(m, x, t, "rxa") for m, x, t in moving + moored) + "\n")
    b.write_text("\n".join(line(m, x, t + 1, "rxb") for m, x, t in moving + moored) + "\n")  # a second late
    both.write_text(a.read_text() + b.read_text())
    one = ingest_file(both, tmp_path / "ais1")
    assert one.added == 10 and one.duplicates == 10
    first = ingest_file(a, tmp_path / "ais2")
    second = ingest_file(b, tmp_path / "ais2")
    assert (first.added, second.added, second.duplicates) == (10, 0, 10)
    stored = pl.concat([read_day(d) for _, d in day_dirs(tmp_path / "ais2")])
    assert stored.height == 10 and set(stored["source"]) == {"rx_a.nmea"}
    late = tmp_path / "rx_c.nmea"  # three seconds late: another message, as far as the stamps can tell
    late.write_text("\n".join(line(m, x, t + 3, "rxc") for m, x, t in moving) + "\n")
    assert ingest_file(late, tmp_path / "ais2").added == 6

    # across midnight: one receiver's clock puts the copy on the day before, the other's on the day after
    midnight = 1_700_006_400  # 2023-11-15 00:00:00 UTC
    assert midnight % 86_400 == 0
    early = tmp_path / "rx_early.nmea"
    later = tmp_path / "rx_later.nmea"
    ships = [(273000303, 130.40, midnight - 1), (273000304, 130.41, midnight)]  # copies stamped 2 s apart:
    # 23:59:58 and 00:00:00, 23:59:59 and 00:00:01
    early.write_text("\n".join(line(m, x, t - 1, "rxe") for m, x, t in ships) + "\n")
    later.write_text("\n".join(line(m, x, t + 1, "rxl") for m, x, t in ships) + "\n")
    for order in ((early, later), (later, early)):
        where = tmp_path / f"ais-{order[0].stem}"
        assert ingest_file(order[0], where).added == 2
        assert ingest_file(order[1], where).added == 0, order[0].name
        assert sum(read_day(d).height for _, d in day_dirs(where)) == 2
    feed = tmp_path / "rx_both.nmea"  # one file read in chunks: a chunk's staged part of the day before counts
    feed.write_text(early.read_text() + later.read_text())
    assert ingest_file(feed, tmp_path / "ais-chunks", chunk_lines=2).added == 2
    moved = tmp_path / "rx_moved.nmea"  # the ship a second later but elsewhere: its next report, kept
    moved.write_text("\n".join(line(m, x + 0.001, t + 1, "rxm") for m, x, t in ships) + "\n")
    assert ingest_file(moved, tmp_path / "ais-rx_early").added == 2
