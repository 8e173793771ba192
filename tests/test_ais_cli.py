"""The AIS commands end to end (`ais ingest`, `ais visits`, `ais gaps`, `fuse`) on a workspace made by `init`.

Expected answers come from the input files themselves (read with the csv module) or from hand-built tracks, never
from the code under test. Bad input files must give a clear error naming the file or line, let the run go on with
the other files, and leave nothing half-written.
"""

from __future__ import annotations

import csv
import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from routewatch.cli import app
from routewatch.sources.ais.partitions import day_dirs, read_day, read_manifest
from routewatch.store import Store, schema
from routewatch.workspace import Workspace

runner = CliRunner()
HOUSTON = (-95.3, 29.6, -94.9, 29.85)  # lon_min, lat_min, lon_max, lat_max: Houston ship channel and Galveston Bay
MC_HEADER = ["MMSI", "BaseDateTime", "LAT", "LON", "SOG", "COG", "Heading", "VesselName", "IMO", "CallSign",
             "VesselType", "Status", "Length", "Width", "Draft", "Cargo", "TransceiverClass"]
DARK_MMSI = 111000111
T_GAP = datetime(2023, 1, 12, tzinfo=UTC)


def _inside(lon: float, lat: float, bbox=HOUSTON, pad: float = 0.0) -> bool:
    return bbox[0] - pad <= lon <= bbox[2] + pad and bbox[1] - pad <= lat <= bbox[3] + pad


def _watchlist(known_mmsi: str) -> str:
    return f"""
[sites.houston]
name = "Houston"
kind = "port"
bbox = [{HOUSTON[0]}, {HOUSTON[1]}, {HOUSTON[2]}, {HOUSTON[3]}]
sources = ["test fixture"]

[sites.far-port]
name = "A port on the other side of the Earth"
kind = "port"
bbox = [130.265, 42.215, 130.310, 42.250]
sources = ["test fixture"]

[routes.test-route]
name = "Houston to the far port"
origin = ["houston"]
destination = ["far-port"]
mode = "sea"
vessels = ["known"]

[vessels.known]
name = "KNOWN"
mmsi = "{known_mmsi}"
length_m = 100
sources = ["test fixture"]

[coverage.sentinel-1]
sensors = ["sentinel-1:12:1.0"]
"""


def _init(root: Path, known_mmsi: str = "999999999") -> Workspace:
    res = runner.invoke(app, ["init", str(root)])
    assert res.exit_code == 0, res.output
    ws = Workspace.open(root)
    ws.watchlist_path.write_text(_watchlist(known_mmsi))
    return ws


def _run(*args: str, code: int = 0) -> str:
    res = runner.invoke(app, list(args))
    assert res.exit_code == code, res.output
    return " ".join(res.output.split())  # rich wraps long lines; compare on words


def _mc_rows(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _stopped_in_houston(rows: list[dict]) -> list[dict]:
    """Rows inside the site and stopped (< 0.2 kn): each is a one-position visit of GFW level 2 (a stop)."""
    return [r for r in rows if _inside(float(r["LON"]), float(r["LAT"])) and float(r["SOG"] or "nan") < 0.2]


def _write_track_csv(path: Path) -> list[tuple[datetime, float, float]]:
    """One ship sailing off Galveston, silent 12 h, then back 20 km further on (a gap that could reach Houston)."""
    fixes = [(T_GAP + timedelta(minutes=10 * i), -94.5 + 0.002 * i, 29.0) for i in range(7)]
    fixes += [(T_GAP + timedelta(hours=13, minutes=10 * i), -94.3 + 0.002 * i, 29.05) for i in range(7)]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(MC_HEADER)
        for t, lon, lat in fixes:
            w.writerow([DARK_MMSI, f"{t:%Y-%m-%dT%H:%M:%S}", lat, lon, 10.0, 90.0, 90, "DARK ONE", "", "D1",
                        70, 0, 150, 25, 8.0, 70, "A"])
    return fixes


def _write_houston_call(path: Path, t0: datetime, stopped: int, mmsi: int) -> Path:
    """A ship sailing into Houston from t0, stopped inside for ``stopped`` half hours, and sailing out."""
    track = [(t0 + timedelta(minutes=20 * i), -94.7 - 0.1 * i, 29.7, 10.0) for i in range(3)]  # sailing in
    track += [(t0 + timedelta(minutes=40 + 30 * i), -95.0, 29.7, 0.0) for i in range(stopped)]  # stopped inside
    track += [(track[-1][0] + timedelta(minutes=20 * i), -95.0 + 0.1 * i, 29.7, 10.0) for i in range(1, 5)]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(MC_HEADER)
        for t, lon, lat, sog in track:
            w.writerow([mmsi, f"{t:%Y-%m-%dT%H:%M:%S}", lat, lon, sog, 90.0, 90, "IN PORT", "", "T2",
                        70, 0, 150, 25, 8.0, 70, "A"])
    return path


def _stored_visits(root: Path) -> list[tuple]:
    """(start, end, confidence) of the AIS visits stored at Houston."""
    return sorted((s.time, s.time_end, s.confidence)
                  for s in Store.open(Workspace.open(root).db_url).sightings(site="houston") if s.event == "ais_visit")


def _no_tmp_files(ws: Workspace) -> bool:
    return not any(p.name.endswith(".tmp") for p in ws.ais_dir.rglob("*"))


@pytest.mark.shared
def test_ingest_reports_bad_files_and_lines_and_goes_on(tmp_path, shared_dir, monkeypatch):
    mc = shared_dir / "data" / "ais" / "marinecadastre_sample_20230111.csv"
    nmea = shared_dir / "data" / "ais" / "pyais_nmea_data_sample.txt"
    rows = _mc_rows(mc)
    known = _stopped_in_houston(rows)[0]["MMSI"]
    ws = _init(tmp_path / "ws", known)
    monkeypatch.chdir(tmp_path)  # relative names keep the messages short enough not to wrap
    good = nmea.read_text().splitlines()[:40]
    bad = Path("bad.nmea")
    bad.write_text("\n".join([good[0], good[1][:-1] + ("0" if good[1][-1] != "0" else "1"), "hello world",
                              *good[2:]]) + "\n")
    odd = Path("odd.csv")
    odd.write_text("a,b\n1,2\n")
    out = _run("ais", "ingest", str(odd), str(mc), "missing.nmea", str(bad), str(nmea), "-w", "ws",
               "--default-time", "2024-01-01T00:00Z", code=1)
    assert "odd.csv: line 1: unknown CSV layout" in out
    assert "missing.nmea: no such file" in out
    assert "bad.nmea:2 checksum mismatch" in out and "bad.nmea:3 no AIS sentence" in out
    assert "bad.nmea: bad lines by reason:" in out and "checksum mismatch: 1" in out
    assert f"{nmea.name}: bad lines by reason: empty payload: 100" in " ".join(out.split())
    assert f"{nmea.name}:" in out and "position not available:" in out  # by line, like every other reason
    failures = {Path(f.path).name for f in Store.open(ws.db_url).failures("ais")}
    assert {"odd.csv", "missing.nmea"} <= failures
    # the run went on: the good files are in, the bad ones are not half-in
    days = dict(day_dirs(ws.ais_dir))
    assert read_day(days[datetime(2023, 1, 11).date()]).height == len(rows) == 1000
    manifest = {Path(e["path"]).name for e in read_manifest(ws.ais_dir).values()}
    assert manifest == {mc.name, "bad.nmea", nmea.name} and _no_tmp_files(ws)
    # the registry reached the store, linked to the watchlist by MMSI
    with Store.open(ws.db_url).engine.connect() as conn:
        vessels = {r.mmsi: r for r in conn.execute(select(schema.ais_vessels))}
    with_static = {r["MMSI"] for r in rows if r["VesselName"] or r["IMO"] or r["CallSign"]}
    assert with_static <= set(vessels)
    assert vessels[known].vessel == "known"
    # the watchlist edited (the MMSI dropped, the vessel named as another ship of the file is called): the next
    # `ais visits` links it again, and a name alone is no link
    other = next(r for r in rows if r["VesselName"] and r["MMSI"] != known)
    (tmp_path / "ws" / "watchlist.toml").write_text(_watchlist("999999999").replace('name = "KNOWN"',
                                                                                    f'name = "{other["VesselName"]}"'))
    _run("ais", "visits", "-w", "ws")
    with Store.open(ws.db_url).engine.connect() as conn:
        relinked = {r.mmsi: r.vessel for r in conn.execute(select(schema.ais_vessels))}
    assert relinked[known] is None and relinked[other["MMSI"]] is None and set(relinked.values()) == {None}
    (tmp_path / "ws" / "watchlist.toml").write_text(_watchlist(known))
    _run("ais", "visits", "-w", "ws")
    # again: every file is known by its content, nothing is added
    total = sum(read_day(d).height for _, d in day_dirs(ws.ais_dir))
    out = _run("ais", "ingest", str(mc), str(nmea), "-w", "ws", "--default-time", "2024-01-01T00:00Z")
    assert out.count("already") == 2  # "already ingested", wrapped in a narrow table
    out = _run("ais", "ingest", str(mc), "-w", "ws", "--force")
    assert sum(read_day(d).height for _, d in day_dirs(ws.ais_dir)) == total


@pytest.mark.shared
def test_untimed_positions_are_reported_and_a_truncated_or_foreign_file_does_not_stop_the_run(
        tmp_path, shared_dir, monkeypatch):
    """The pyais sample has no times: its positions are reported as left out, and the file stays unmarked so that
    a second run with --default-time adds them. A gzip cut short and a GeoJSON given by mistake are failures
    named by file; the files after them are still read."""
    import gzip

    nmea = shared_dir / "data" / "ais" / "pyais_nmea_data_sample.txt"
    ws = _init(tmp_path / "ws")
    monkeypatch.chdir(tmp_path)
    cut = Path("cut.nmea.gz")
    cut.write_bytes(gzip.compress(nmea.read_bytes())[: len(gzip.compress(nmea.read_bytes())) // 2])
    foreign = Path("tracks.geojson")
    foreign.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [10.0, 57.0]}, "properties": {}}]}, indent=1))
    out = _run("ais", "ingest", str(cut), str(foreign), str(nmea), "-w", "ws", code=1)
    assert "cut.nmea.gz: truncated or corrupt gzip" in out
    assert "tracks.geojson: no AIS sentence in" in out and "not an NMEA file" in out
    assert "positions and static reports carry no time and were left out" in out
    assert {Path(f.path).name for f in Store.open(ws.db_url).failures("ais")} >= {"cut.nmea.gz", "tracks.geojson"}
    assert all(Path(f.path).is_absolute() for f in Store.open(ws.db_url).failures("ais"))  # as the manifest
    assert read_manifest(ws.ais_dir) == {} and day_dirs(ws.ais_dir) == [] and _no_tmp_files(ws)
    out = _run("ais", "ingest", str(nmea), "-w", "ws", "--default-time", "2024-01-01T00:00Z")
    added = sum(read_day(d).height for _, d in day_dirs(ws.ais_dir))
    assert added > 700 and "already ingested" not in out
    assert _run("ais", "ingest", str(nmea), "-w", "ws").count("already ingested") == 1


@pytest.mark.shared
def test_visits_from_the_marinecadastre_sample_are_stored_once(tmp_path, shared_dir):
    mc = shared_dir / "data" / "ais" / "marinecadastre_sample_20230111.csv"
    rows = _mc_rows(mc)
    stopped = _stopped_in_houston(rows)
    near = [r for r in rows if _inside(float(r["LON"]), float(r["LAT"]), pad=0.04)]
    inside = [r for r in rows if _inside(float(r["LON"]), float(r["LAT"]))]
    assert len(near) == len(inside) and len(stopped) > 10  # no ship between the entry and exit distances
    ws = _init(tmp_path / "ws", stopped[0]["MMSI"])
    _run("ais", "ingest", str(mc), "-w", str(ws.root))
    visits_csv = tmp_path / "visits.csv"
    out = _run("ais", "visits", "-w", str(ws.root), "--out", str(visits_csv))
    assert f"{len(stopped)} AIS visits stored" in out
    got = _mc_rows(visits_csv)
    assert sorted(r["mmsi"] for r in got) == sorted(r["MMSI"] for r in stopped)
    assert {r["site"] for r in got} == {"houston"} and {r["level"] for r in got} == {"2"}
    _run("ais", "visits", "-w", str(ws.root))  # a second run replaces, never duplicates
    sightings = [s for s in Store.open(ws.db_url).sightings(site="houston") if s.event == "ais_visit"]
    assert len(sightings) == len(stopped)
    # other settings: the run replaces the visits it covers (none are level 4, so none are left)
    assert "0 AIS visits stored" in _run("ais", "visits", "-w", str(ws.root), "--min-level", "4")
    assert not [s for s in Store.open(ws.db_url).sightings(site="houston") if s.event == "ais_visit"]
    _run("ais", "visits", "-w", str(ws.root))
    assert len([s for s in Store.open(ws.db_url).sightings(site="houston") if s.event == "ais_visit"]) == len(stopped)
    out = _run("ais", "visits", "-w", str(ws.root), "--entry-m", "3000", "--exit-m", "2000", code=2)
    assert "must be at least --entry-m" in out
    # a run over some days only adds: nothing it could have cut at the window's edge is removed
    _run("ais", "visits", "-w", str(ws.root), "--min-level", "4", "--since", "2023-01-11")
    assert len([s for s in Store.open(ws.db_url).sightings(site="houston") if s.event == "ais_visit"]) == len(stopped)
    # another workspace on the same store, watching another site: its run leaves these visits alone
    other = _init(tmp_path / "other")
    other.watchlist_path.write_text(other.watchlist_path.read_text().replace("[sites.houston]", "[sites.elsewhere]")
                                    .replace('origin = ["houston"]', 'origin = ["elsewhere"]'))
    _run("ais", "ingest", str(mc), "-w", str(other.root), "--db", ws.db_url)
    _run("ais", "visits", "-w", str(other.root), "--db", ws.db_url, "--min-level", "4")
    assert len([s for s in Store.open(ws.db_url).sightings(site="houston") if s.event == "ais_visit"]) == len(stopped)
    assert [s.vessel for s in sightings if s.vessel] == ["known"]
    # a third workspace watching the same site, with AIS of other ships: its run leaves these ships' visits alone
    same = _init(tmp_path / "same")
    _write_track_csv(tmp_path / "track.csv")
    _run("ais", "ingest", str(tmp_path / "track.csv"), "-w", str(same.root), "--db", ws.db_url)
    _run("ais", "visits", "-w", str(same.root), "--db", ws.db_url)
    assert len([s for s in Store.open(ws.db_url).sightings(site="houston") if s.event == "ais_visit"]) == len(stopped)


def test_a_visit_over_two_days_is_not_cut_or_doubled_by_runs_over_one_day(tmp_path):
    """A ship enters Houston on 11 Jan 05:40, stops, and leaves on 12 Jan 06:40. A run over all the AIS stores that
    visit; runs over one of the days (which see it cut at the window's edge) neither replace it with a shorter
    one nor add a second, overlapping visit. A run over the second day in an empty store reads the day before it
    too, so it stores the whole call, and a later run over both days keeps it."""
    csv_path = _write_houston_call(tmp_path / "visit.csv", datetime(2023, 1, 11, 5, 0, tzinfo=UTC), 50, 222000222)

    def stored(root):
        return [v[:2] for v in _stored_visits(root)]

    ws = _init(tmp_path / "ws")
    _run("ais", "ingest", str(csv_path), "-w", str(ws.root))
    _run("ais", "visits", "-w", str(ws.root))
    (whole,) = stored(ws.root)
    assert whole[0].day == 11 and whole[1].day == 12
    for day in ("2023-01-11", "2023-01-12"):
        _run("ais", "visits", "-w", str(ws.root), "--since", day, "--until", day)
        assert stored(ws.root) == [whole]
    fresh = _init(tmp_path / "fresh")
    _run("ais", "ingest", str(csv_path), "-w", str(fresh.root))
    _run("ais", "visits", "-w", str(fresh.root), "--since", "2023-01-12", "--until", "2023-01-12")
    (part,) = stored(fresh.root)
    assert part == whole
    _run("ais", "visits", "-w", str(fresh.root), "--since", "2023-01-11", "--until", "2023-01-12")
    assert stored(fresh.root) == [whole]


def test_a_windowed_run_shows_only_the_visits_of_its_window(tmp_path):
    """The days read past a window's edge complete the visits that cross it; a visit wholly before the window is
    not part of the answer: it had been printed and written to --out once a run over all the AIS had stored it
    (the same window gave 0 visits in a fresh store and 1 after)."""
    calls = _write_houston_call(tmp_path / "visit.csv", datetime(2023, 1, 11, 1, 0, tzinfo=UTC), 20, 222000444)
    later = tmp_path / "later.csv"
    with later.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(MC_HEADER)
        w.writerow([222000555, "2023-01-12T06:00:00", 27.0, -90.0, 10.0, 90.0, 90, "FAR", "", "F1", 70, 0, 150, 25,
                    8.0, 70, "A"])
    ws = _init(tmp_path / "ws")
    _run("ais", "ingest", str(calls), str(later), "-w", str(ws.root))
    answers = []
    for whole_first in (False, True):
        if whole_first:
            _run("ais", "visits", "-w", str(ws.root))
        out = tmp_path / f"v{whole_first}.csv"
        _run("ais", "visits", "-w", str(ws.root), "--since", "2023-01-12", "--out", str(out))
        answers.append(len(_mc_rows(out)))
    assert answers == [0, 0]
    _run("ais", "visits", "-w", str(ws.root), "--since", "2023-01-11", "--out", str(out))
    assert len(_mc_rows(out)) == 1


def test_runs_day_after_day_store_a_port_call_over_midnight_once(tmp_path):
    """Run each day as it comes (--until day 1, then --since day 2), or the other way round: a window reads the
    day after it and the days before it too, so the first run finds the whole call, and the second finds it again
    and leaves it as stored (one visit, of the level of the whole call), as a run over all the AIS would store it."""
    csv_path = _write_houston_call(tmp_path / "visit.csv", datetime(2023, 1, 11, 20, 0, tzinfo=UTC), 30, 222000333)

    stored = _stored_visits

    whole_ws = _init(tmp_path / "whole")
    _run("ais", "ingest", str(csv_path), "-w", str(whole_ws.root))
    _run("ais", "visits", "-w", str(whole_ws.root))
    (whole,) = stored(whole_ws.root)
    assert whole[0].day == 11 and whole[1].day == 12
    for order in (("--until", "2023-01-11", "--since", "2023-01-12"), ("--since", "2023-01-12", "--until", "2023-01-11")):
        ws = _init(tmp_path / order[0].strip("-"))
        _run("ais", "ingest", str(csv_path), "-w", str(ws.root))
        _run("ais", "visits", "-w", str(ws.root), *order[:2])
        (part,) = stored(ws.root)
        assert part == whole  # read on (or back) past the window: the call is whole at once
        out = _run("ais", "visits", "-w", str(ws.root), *order[2:])
        assert stored(ws.root) == [whole], order
        assert "already stored whole" in out or "1 AIS visits stored" in out
        # the part it replaced leaves no evidence behind that nothing cites
        with Store.open(Workspace.open(ws.root).db_url).engine.connect() as conn:
            ais_ev = [r.id for r in conn.execute(select(schema.evidence)) if r.id.startswith("ais-")]
        assert len(ais_ev) == 1


def test_a_call_longer_than_the_days_read_is_stored_cut_then_replaced_whole(tmp_path):
    """A 55 h call: the run of its first day reads one day on and stores it cut (no departure seen, a lower
    level); the run two days later reads back over the stored part and replaces it with the whole call."""
    csv_path = _write_houston_call(tmp_path / "long.csv", datetime(2023, 1, 11, 20, 0, tzinfo=UTC), 110, 222000334)
    whole_ws = _init(tmp_path / "whole")
    _run("ais", "ingest", str(csv_path), "-w", str(whole_ws.root))
    _run("ais", "visits", "-w", str(whole_ws.root))
    (whole,) = _stored_visits(whole_ws.root)
    ws = _init(tmp_path / "days")
    _run("ais", "ingest", str(csv_path), "-w", str(ws.root))
    _run("ais", "visits", "-w", str(ws.root), "--until", "2023-01-11")
    (part,) = _stored_visits(ws.root)
    assert part[0] == whole[0] and part[1] < whole[1] and part[2] < whole[2]
    out = _run("ais", "visits", "-w", str(ws.root), "--since", "2023-01-14")
    assert _stored_visits(ws.root) == [whole] and "1 AIS visits stored" in out


def test_a_later_days_run_never_stores_a_call_again_a_level_lower(tmp_path):
    """A call entered just after midnight, stored whole by its day's run; the next day's run reads back over it
    from the day before its first position inside (read from that position, the entry had been lost and the call
    stored again at confidence 0.8), and a run that saw less leaves the stored call as it is."""
    call = _write_houston_call(tmp_path / "call.csv", datetime(2023, 1, 11, 23, 30, tzinfo=UTC), 4, 222000335)
    other = _write_houston_call(tmp_path / "other.csv", datetime(2023, 1, 13, 10, 0, tzinfo=UTC), 4, 222000336)
    whole_ws = _init(tmp_path / "whole")
    ws = _init(tmp_path / "days")
    for w in (whole_ws, ws):
        _run("ais", "ingest", str(call), str(other), "-w", str(w.root))
    _run("ais", "visits", "-w", str(whole_ws.root))
    whole = _stored_visits(whole_ws.root)
    assert len(whole) == 2 and whole[0][0].day == 12 and whole[0][2] >= 0.95
    _run("ais", "visits", "-w", str(ws.root), "--since", "2023-01-12", "--until", "2023-01-12")
    assert _stored_visits(ws.root) == whole[:1]
    _run("ais", "visits", "-w", str(ws.root), "--since", "2023-01-13", "--until", "2023-01-13")
    assert _stored_visits(ws.root) == whole


def test_visit_and_gap_options_out_of_range_are_refused_before_anything_is_replaced(tmp_path):
    ws = _init(tmp_path / "ws")
    _write_track_csv(tmp_path / "track.csv")
    _run("ais", "ingest", str(tmp_path / "track.csv"), "-w", str(ws.root))
    for args in (["visits", "--min-level", "7"], ["visits", "--min-level", "0"], ["visits", "--exit-m", "inf"],
                 ["gaps", "--min-gap-h", "-1"],
                 ["gaps", "--max-speed-kn", "0"], ["gaps", "--min-dwell-h", "-2"], ["gaps", "--max-speed-kn", "nan"],
                 # an empty window: not "no AIS", nor widened into the days before it
                 ["visits", "--until", "2024-03-01", "--since", "2024-03-05"],
                 ["gaps", "--until", "2024-03-01", "--since", "2024-03-05"]):
        out = _run("ais", *args, "-w", str(ws.root), code=2)
        assert args[1] in out


def test_gaps_give_cues_for_reachable_sites_only(tmp_path):
    ws = _init(tmp_path / "ws")
    fixes = _write_track_csv(tmp_path / "track.csv")
    _run("ais", "ingest", str(tmp_path / "track.csv"), "-w", str(ws.root))
    cues_csv = tmp_path / "cues.csv"
    for _ in range(2):  # idempotent: the same gap id replaces itself
        out = _run("ais", "gaps", "-w", str(ws.root), "--min-gap-h", "6", "--out", str(cues_csv))
    assert "1 gaps over 6 h, 1 cues" in out
    cues = _mc_rows(cues_csv)
    assert [(c["mmsi"], c["site"]) for c in cues] == [(str(DARK_MMSI), "houston")]
    start, end = fixes[6][0], fixes[7][0]
    w0, w1 = (datetime.fromisoformat(cues[0][k]) for k in ("window_start", "window_end"))
    assert start < w0 < w1 < end
    with Store.open(ws.db_url).engine.connect() as conn:
        gaps = list(conn.execute(select(schema.ais_gaps)))
    assert len(gaps) == 1 and gaps[0].mmsi == str(DARK_MMSI)
    assert [c["site"] for c in gaps[0].reachable_sites] == ["houston"]
    assert gaps[0].end_time - gaps[0].start_time == end - start
    with Store.open(ws.db_url).engine.connect() as conn:
        assert [e.id for e in conn.execute(select(schema.evidence))
                if e.id.startswith("aisgap-ev")] == gaps[0].evidence_ids
    out = _run("ais", "gaps", "-w", str(ws.root), "--min-gap-h", "20")  # the 13 h gap is not one now
    assert "0 gaps over 20 h" in out
    with Store.open(ws.db_url).engine.connect() as conn:
        assert list(conn.execute(select(schema.ais_gaps))) == []
        # and its evidence went with it (100 orphans had been left by a run at a lower threshold)
        assert [e.id for e in conn.execute(select(schema.evidence)) if e.id.startswith("aisgap-ev")] == []


def test_fuse_identifies_the_ais_ship_and_leaves_the_other_dark(tmp_path, monkeypatch):
    ws = _init(tmp_path / "ws")
    fixes = _write_track_csv(tmp_path / "track.csv")
    _run("ais", "ingest", str(tmp_path / "track.csv"), "-w", str(ws.root))
    (t0, lon0, lat0), (t1, lon1, _) = fixes[2], fixes[3]
    when = t0 + (t1 - t0) / 2
    det = tmp_path / "det.geojson"
    det.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [(lon0 + lon1) / 2, lat0]},
         "properties": {"id": "near", "length_m": 150, "width_m": 25, "heading_deg": 90, "score": 0.9}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-94.0, 28.7]},
         "properties": {"id": "far", "length_m": 100, "width_m": 18, "heading_deg": 10, "score": 0.8}},
    ]}))
    out_file = tmp_path / "fused.geojson"
    _run("fuse", "--detections", str(det), "--time", when.isoformat(), "-w", str(ws.root), "--out", str(out_file))
    feats = {f["properties"]["id"]: f["properties"] for f in json.loads(out_file.read_text())["features"]}
    assert feats["near"]["status"] == "identified" and int(feats["near"]["mmsi"]) == DARK_MMSI
    assert feats["far"]["status"] == "dark" and feats["far"]["mmsi"] is None
    fused = [s for s in Store.open(ws.db_url).sightings() if s.id.startswith("fused-")]
    assert len(fused) == 2
    # what fusion said is kept with its reasons in the evidence, and every export says it of each detection
    store = Store.open(ws.db_url)
    ev = store.evidence([e for s in fused for e in s.evidence_ids if e.startswith("fusion-")])
    by_status = {e.attributes["status"]: e.attributes for e in ev.values()}
    assert "AIS MMSI" in by_status["identified"]["reasons"] and isinstance(by_status["dark"]["reasons"], dict)
    from routewatch.report.data import gather
    from routewatch.report.export import features

    dets = [p for layer, _, p in features(gather(store, when + timedelta(hours=1))) if layer == "detections"]
    assert sorted(p["fusion"] for p in dets) == ["dark", "identified"]
    # the detections came from a file, not the store: the export still names each one, so fusing the export
    # fuses them again, once (the same copies, nothing added)
    exp = tmp_path / "exp.geojson"
    from routewatch.report.export import write_geojson

    write_geojson(gather(store, when + timedelta(hours=1)), exp)
    out = _run("fuse", "--detections", str(exp), "-w", str(ws.root), "--out", str(tmp_path / "again.geojson"))
    assert "2 detections" in out or "of 2 detections" in out
    again = sorted(s.id for s in Store.open(ws.db_url).sightings() if s.id.startswith("fused-"))
    assert again == sorted(s.id for s in fused)
    # a broken detections file: the error names it, nothing is written
    monkeypatch.chdir(tmp_path)
    Path("broken.geojson").write_text('{"type": "FeatureCollection", "features": [{"geometry": {"type": "Pol')
    out = _run("fuse", "--detections", "broken.geojson", "--time", when.isoformat(), "-w", "ws",
               "--out", "broken-out.geojson", code=2)
    assert "broken.geojson" in out
    assert not Path("broken-out.geojson").exists()
    assert len([s for s in Store.open(ws.db_url).sightings() if s.id.startswith("fused-")]) == 2


def test_visits_without_partitions_says_what_to_do(tmp_path):
    ws = _init(tmp_path / "ws")
    out = _run("ais", "visits", "-w", str(ws.root), code=2)
    assert "No AIS partitions" in out and "routewatch ais ingest" in out
    _write_track_csv(tmp_path / "track.csv")
    _run("ais", "ingest", str(tmp_path / "track.csv"), "-w", str(ws.root))
    out = _run("ais", "visits", "-w", str(ws.root), "--since", "2030-01-01", code=2)  # AIS, but not then
    assert "No AIS days between 2030-01-01 and the end" in out and "holds 2023-01-12 to 2023-01-12" in out


def test_a_column_mapping_with_a_misspelt_key_is_refused_by_name(tmp_path):
    ws = _init(tmp_path / "ws")
    (tmp_path / "m.toml").write_text('mmsi = "a"\ntimestamp = "b"\nlon = "c"\nlat = "d"\nname_col = "nm"\n')
    (tmp_path / "f.csv").write_text("a,b,c,d\n273210440,2024-01-01T00:00:00,130.2,42.2\n")
    out = _run("ais", "ingest", str(tmp_path / "f.csv"), "--mapping", str(tmp_path / "m.toml"), "-w", str(ws.root),
               code=2)
    assert "unknown key(s) name_col" in out and not day_dirs(ws.ais_dir)
    # a mapping without a speed column reads positions no stop can be seen in: said before reading
    (tmp_path / "m.toml").write_text('mmsi = "a"\ntimestamp = "b"\nlon = "c"\nlat = "d"\n')
    out = _run("ais", "ingest", str(tmp_path / "f.csv"), "--mapping", str(tmp_path / "m.toml"), "-w", str(ws.root))
    assert "no speed column (sog_kn)" in out and len(day_dirs(ws.ais_dir)) == 1
    # a mapping that fits no row: said, and the file left unread for the fixed mapping
    (tmp_path / "g.csv").write_text("a,b,c,d\n273210441,2024-01-02T00:00:00,130.2,42.2\n")
    (tmp_path / "epoch.toml").write_text('mmsi = "a"\ntimestamp = "b"\nlon = "c"\nlat = "d"\nsog_kn = "c"\n'
                                         'time_format = "%s"\n')
    out = _run("ais", "ingest", str(tmp_path / "g.csv"), "--mapping", str(tmp_path / "epoch.toml"), "-w", str(ws.root),
               code=1)  # nothing read: a failure a script sees, listed by `routewatch failures`
    assert "every row is bad, so the file is not marked as ingested" in out
    assert "every row is bad" in _run("failures", "-w", str(ws.root))
    out = _run("ais", "ingest", str(tmp_path / "g.csv"), "--mapping", str(tmp_path / "m.toml"), "-w", str(ws.root))
    assert "already" not in out and len(day_dirs(ws.ais_dir)) == 2
    assert "every row is bad" not in _run("failures", "-w", str(ws.root))
    # no position but ships named (a vessel list): its registry records are read, and that is no failure
    (tmp_path / "list.csv").write_text("a,b,c,d,nm\n273210443,2024-01-03T00:00:00,,,ANGARA\n")
    (tmp_path / "named.toml").write_text('mmsi = "a"\ntimestamp = "b"\nlon = "c"\nlat = "d"\nsog_kn = "c"\n'
                                         'name = "nm"\n')
    out = _run("ais", "ingest", str(tmp_path / "list.csv"), "--mapping", str(tmp_path / "named.toml"), "-w",
               str(ws.root))
    assert "its 1 registry records" in out and "every row is bad" not in out
    # every row with a field too many: the hint is the separator and quoting, not the times
    (tmp_path / "h.csv").write_text("a,b,c,d\n273210442,2024-01-03T00:00:00,130,2,42.2\n")
    out = _run("ais", "ingest", str(tmp_path / "h.csv"), "--mapping", str(tmp_path / "m.toml"), "-w", str(ws.root),
               code=1)
    assert "check the file's separator" in out.replace("\n", " ") and "time_format" not in out


@pytest.mark.parametrize("verb", [["ais", "ingest"], ["ais", "visits"], ["ais", "gaps"], ["fuse"]])
def test_every_verb_has_help_with_an_example(verb):
    out = _run(*verb, "--help")
    assert "Example: routewatch" in out and "--workspace" in out


def test_a_file_that_failed_and_was_fixed_leaves_the_failure_list(tmp_path, monkeypatch):
    ws = _init(tmp_path / "ws")
    fixes = _write_track_csv(tmp_path / "track.csv")
    good = (tmp_path / "track.csv").read_bytes()
    gz = tmp_path / "track.csv.gz"
    gz.write_bytes(gzip.compress(good)[:60])  # cut short in the download
    monkeypatch.chdir(tmp_path)  # named relatively now, absolutely when read again: the same file
    _run("ais", "ingest", "track.csv.gz", "-w", str(ws.root), code=1)
    assert [f.path for f in Store.open(ws.db_url).failures("ais")] == [str(gz)]
    gz.write_bytes(gzip.compress(good))  # downloaded again
    _run("ais", "ingest", str(gz), "-w", str(ws.root))
    assert Store.open(ws.db_url).failures("ais") == []
    assert sum(read_day(d).height for _, d in day_dirs(ws.ais_dir)) == len(fixes)


def test_gaps_over_a_window_take_the_gaps_that_cross_its_edges(tmp_path):
    """Run day by day, `ais gaps --since D --until D` had dropped every gap that began the day before (read from
    the window's days alone, the gap's first end was not there): the 13 h silence across midnight is found from
    either of its days, and stored once."""
    ws = _init(tmp_path / "ws")
    fixes = _write_track_csv(tmp_path / "track.csv")
    late = [(t + timedelta(hours=18), lon, lat) for t, lon, lat in fixes]  # the same track, from 18:00
    with (tmp_path / "track.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(MC_HEADER)
        for t, lon, lat in late:
            w.writerow([DARK_MMSI, f"{t:%Y-%m-%dT%H:%M:%S}", lat, lon, 10.0, 90.0, 90, "DARK ONE", "", "D1",
                        70, 0, 150, 25, 8.0, 70, "A"])
    fixes = late
    _run("ais", "ingest", str(tmp_path / "track.csv"), "-w", str(ws.root))
    first, last = fixes[6][0].date(), fixes[7][0].date()
    assert first != last  # the silence crosses midnight
    for day in (first, last):
        out = _run("ais", "gaps", "-w", str(ws.root), "--since", str(day), "--until", str(day), "--min-gap-h", "6")
        assert "1 gaps over 6 h, 1 cues" in out
    with Store.open(ws.db_url).engine.connect() as conn:
        gaps = list(conn.execute(select(schema.ais_gaps)))
    assert len(gaps) == 1 and gaps[0].end_time - gaps[0].start_time == fixes[7][0] - fixes[6][0]


def test_day_by_day_visits_see_a_call_that_began_below_min_level_the_day_before(tmp_path):
    """In at 21:40 moving slowly, stopped after midnight: the first day's part was level 1, dropped by
    --min-level 2 and stored by no run, so the next day's run had no stored visit to read back to and stored the
    call from midnight, its entry unseen (level 3). The day before the window is read too: the call is whole."""
    ws = _init(tmp_path / "ws")
    t0 = datetime(2023, 1, 12, 21, 0, tzinfo=UTC)
    track = [(t0 + timedelta(minutes=20 * i), -94.7 - 0.1 * i, 29.7, 10.0) for i in range(3)]  # sailing in
    track += [(t0 + timedelta(minutes=40 + 10 * i), -95.0 - 0.001 * i, 29.7, 1.0) for i in range(12)]  # slow
    track += [(track[-1][0] + timedelta(minutes=30 * i), -95.012, 29.7, 0.0) for i in range(1, 10)]  # stopped
    track += [(track[-1][0] + timedelta(minutes=20 * i), -95.0 + 0.1 * i, 29.7, 10.0) for i in range(1, 5)]
    path = tmp_path / "call.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(MC_HEADER)
        for t, lon, lat, sog in track:
            w.writerow([366000001, f"{t:%Y-%m-%dT%H:%M:%S}", lat, lon, sog, 90.0, 90, "SLOW IN", "", "S1",
                        70, 0, 150, 25, 8.0, 70, "A"])
    _run("ais", "ingest", str(path), "-w", str(ws.root))
    for day in ("2023-01-12", "2023-01-13"):
        _run("ais", "visits", "-w", str(ws.root), "--since", day, "--until", day)
    whole = _stored_visits(ws.root)
    _run("ais", "visits", "-w", str(ws.root))  # a run over all the AIS
    assert _stored_visits(ws.root) == whole and len(whole) == 1 and whole[0][0] < datetime(2023, 1, 13, tzinfo=UTC)


def test_gaps_over_a_window_read_a_bounded_number_of_days_beyond_it(tmp_path, monkeypatch):
    """A ship new in the window is found on no day before it: the walk had read every day of the archive on
    each windowed run (quadratic, run day by day). It stops at 31 days each way."""
    from routewatch.sources.ais import partitions

    ws = _init(tmp_path / "ws")
    path = tmp_path / "days.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(MC_HEADER)
        for d in range(80):
            t = datetime(2023, 1, 1, 12, tzinfo=UTC) + timedelta(days=d)
            w.writerow([366000002, f"{t:%Y-%m-%dT%H:%M:%S}", 27.0, -90.0, 10.0, 90.0, 90, "OLD", "", "O1",
                        70, 0, 150, 25, 8.0, 70, "A"])
        w.writerow([366000003, "2023-02-10T12:00:00", 27.5, -90.0, 10.0, 90.0, 90, "NEW", "", "N1",
                    70, 0, 150, 25, 8.0, 70, "A"])
    _run("ais", "ingest", str(path), "-w", str(ws.root))
    read = []
    real = partitions.read_day
    monkeypatch.setattr(partitions, "read_day", lambda d, columns=None: read.append(d) or real(d, columns))
    _run("ais", "gaps", "-w", str(ws.root), "--since", "2023-02-10", "--until", "2023-02-10")
    assert len(read) <= 2 * 31 + 1  # and the window's own day (80 days had been read)


def test_ingest_says_how_many_positions_were_dead_reckoned_and_which_lines_had_no_fix(tmp_path, monkeypatch):
    from pyais import encode_dict

    ws = _init(tmp_path / "ws")
    monkeypatch.chdir(tmp_path)
    lines = []
    for k, second in enumerate((10, 62, 62, 63)):
        msg = {"type": 1, "mmsi": 273000200 + k, "lon": 131.9, "lat": 42.8, "speed": 3.0, "second": second}
        lines.append(f"{encode_dict(msg, radio_channel='A', talker_id='AI')[0]},{1700000000 + k}")
    Path("feed.nmea").write_text("\n".join(lines) + "\n")
    out = _run("ais", "ingest", "feed.nmea", "-w", "ws")
    assert "feed.nmea: 2 positions are the ships' own dead-reckoning estimates" in out
    assert "feed.nmea:4 positioning system inoperative (AIS time stamp 63)" in out
    stored = sorted(m for _, d in day_dirs(ws.ais_dir) for m in read_day(d)["mmsi"].to_list())
    assert stored == [273000200, 273000201, 273000202]  # the fixed and the estimated positions, not the unfixed


def _write_rows(path: Path, mmsi: int, times: list[datetime], lon: float = -90.0, lat: float = 25.0) -> Path:
    """A ship at sea (far from the watched port), heard at the given times."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(MC_HEADER)
        for k, t in enumerate(times):
            w.writerow([mmsi, f"{t:%Y-%m-%dT%H:%M:%S}", lat, lon + 0.01 * k, 10.0, 90.0, 90, "AT SEA", "", "T3",
                        70, 0, 150, 25, 8.0, 70, "A"])
    return path


def test_a_gap_another_receiver_fills_is_removed_by_the_runs_of_its_days(tmp_path):
    """A 12 h silence across midnight, stored by the runs of its two days; a second receiver's file then fills
    it: the same runs again find no gap, and the stored one goes (it had stayed, the runs saying 0 stored)."""
    ws = _init(tmp_path / "ws")
    t0 = datetime(2023, 1, 11, 12, 0, tzinfo=UTC)
    heard = [t0 + timedelta(hours=h) for h in range(9)] + [t0 + timedelta(hours=20 + h) for h in range(6)]
    _run("ais", "ingest", str(_write_rows(tmp_path / "a.csv", 222000340, heard)), "-w", str(ws.root))
    for day in ("2023-01-11", "2023-01-12"):
        _run("ais", "gaps", "-w", str(ws.root), "--since", day, "--until", day)

    def stored() -> list:
        with Store.open(Workspace.open(ws.root).db_url).engine.connect() as conn:
            return [(r.start_time, r.end_time) for r in conn.execute(select(schema.ais_gaps))]

    assert stored() == [(t0 + timedelta(hours=8), t0 + timedelta(hours=20))]
    filled = [t0 + timedelta(hours=8, minutes=30 + 60 * h) for h in range(12)]
    _run("ais", "ingest", str(_write_rows(tmp_path / "b.csv", 222000340, filled)), "-w", str(ws.root))
    for day in ("2023-01-11", "2023-01-12"):
        _run("ais", "gaps", "-w", str(ws.root), "--since", day, "--until", day)
    assert stored() == []


def test_an_out_file_that_cannot_be_written_is_refused_before_visits_or_gaps_are_stored(tmp_path):
    ws = _init(tmp_path / "ws")
    csv_path = _write_houston_call(tmp_path / "call.csv", datetime(2023, 1, 11, 20, 0, tzinfo=UTC), 4, 222000341)
    _run("ais", "ingest", str(csv_path), "-w", str(ws.root))
    for cmd in ("visits", "gaps"):
        for bad in (tmp_path / "no-such-folder" / "x.csv", tmp_path):
            out = _run("ais", cmd, "-w", str(ws.root), "--out", str(bad), code=2)
            assert "--out" in out and "Traceback" not in out
    assert _stored_visits(ws.root) == []


def test_a_gap_ending_past_the_days_a_windowed_run_reads_is_kept(tmp_path):
    """A windowed `ais gaps` reads at most 31 days past its window for a gap's other end: a gap ending exactly then
    was not read, so it is not refuted (review: it had been removed)."""
    ws = _init(tmp_path / "ws")
    t0 = datetime(2023, 1, 11, 6, 0, tzinfo=UTC)
    heard = [t0 + timedelta(hours=h) for h in range(5)] + [datetime(2023, 2, 12, tzinfo=UTC)]
    _run("ais", "ingest", str(_write_rows(tmp_path / "a.csv", 222000342, heard)), "-w", str(ws.root))
    _run("ais", "gaps", "-w", str(ws.root))

    def stored() -> list:
        with Store.open(Workspace.open(ws.root).db_url).engine.connect() as conn:
            return [(r.start_time, r.end_time) for r in conn.execute(select(schema.ais_gaps))]

    whole = stored()
    assert whole == [(t0 + timedelta(hours=4), datetime(2023, 2, 12, tzinfo=UTC))]
    _run("ais", "gaps", "-w", str(ws.root), "--since", "2023-01-11", "--until", "2023-01-11")
    assert stored() == whole
