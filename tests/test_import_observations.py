"""Analyst observation import: semantics, all-or-nothing validation, idempotency, CSV = JSON, on both dialects."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from shapely.geometry import box

from routewatch.model import SENSOR_DETECTION, Site, SiteKind, SourceKind, Vessel
from routewatch.sources.reports import ObservationError, import_observations, parse_observations
from routewatch.store import Store
from routewatch.watchlist import Watchlist

HEADER = "date_start,date_end,subject,subject_kind,site,event,detail,source,confidence"
SITES = ("rajin", "dunai", "vostochny", "vladivostok_anchorage", "zhoushan_xinya", "tumangang", "tikhoretsk")


def make_watchlist() -> Watchlist:
    """The reference case's sites and vessels, built here so the test does not depend on the example files."""
    sites = {k: Site(k, k.title(), SiteKind.PORT, box(130 + i, 42, 130.1 + i, 42.1)) for i, k in enumerate(SITES)}
    vessels = {
        "angara": Vessel("angara", "ANGARA", imo="9179842", length_m=120.0),
        "lady-r": Vessel("lady-r", "LADY R", imo="9161003"),
        "maia-1": Vessel("maia-1", "MAIA-1", length_m=131.0),
        "maria": Vessel("maria", "MARIA"),
    }
    return Watchlist(sites=sites, vessels=vessels, groups={"russia": ("dunai", "vostochny")})


def write(tmp_path: Path, name: str, *lines: str) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_reference_csv_imports_with_its_evidence(store: Store, shared_dir: Path) -> None:
    path = shared_dir / "reference" / "seed-case-events.csv"
    rows = csv_rows(path)
    result = import_observations(store, path, make_watchlist())
    assert result.rows == len(rows) and result.evidence == len(rows)
    sightings, looks, aggs = store.sightings(), store.looks(), store.aggregates()
    stored_evidence = store.evidence({e for r in [*sightings, *looks, *aggs] for e in r.evidence_ids})
    assert len(stored_evidence) == len(rows)  # every row is evidence, and every record links to one
    assert all(r.evidence_ids and set(r.evidence_ids) <= set(stored_evidence) for r in [*sightings, *looks, *aggs])
    assert {e.source for e in stored_evidence.values()} == {r["source"] for r in rows}

    # Row by row, from the CSV: subjects separated by ';' give one sighting each, identified by watchlist name.
    three = next(r for r in rows if r["date_start"] == "2024-02-27")
    names = three["subject"].split(";")
    on_27 = [s for s in sightings if s.time == datetime(2024, 2, 27, tzinfo=UTC)]
    assert sorted(s.vessel for s in on_27) == sorted(n.lower().replace(" ", "-") for n in names)
    assert all(s.identification_confidence == 0.7 and s.site == three["site"] for s in on_27)
    (look_27,) = [x for x in looks if x.id == on_27[0].look_id]
    assert look_27.vessels_seen == len(names) and look_27.source_kind is SourceKind.REPORT
    # An unnamed vessel stays unidentified, with its length read from the subject.
    unknown = [s for s in sightings if s.time.date().isoformat() == "2023-10-19"]
    assert [(s.vessel, s.length_m, s.identification_confidence) for s in unknown] == [(None, 115.0, None)]
    # A route scope with a group name: an aggregate with the vessels it names.
    trips = [a for a in aggs if a.scope == "rajin>russia"]
    assert len(trips) == 1 and trips[0].event == "trip_count"
    assert set(trips[0].subjects) == {"angara", "lady-r", "maia-1", "maria"}
    # date_end is inclusive: ANGARA at Zhoushan until the end of 25 April.
    (zhoushan,) = [s for s in sightings if s.site == "zhoushan_xinya"]
    assert zhoushan.time_end == datetime(2024, 4, 26, tzinfo=UTC) - timedelta(microseconds=1)


def test_example_watchlist_imports_the_reference_csv(store: Store, shared_dir: Path) -> None:
    from routewatch.watchlist import load_watchlist

    example = Path(__file__).resolve().parents[1] / "src" / "routewatch" / "examples" / "rajin" / "watchlist.toml"
    if not example.is_file():
        pytest.skip(f"example watchlist {example.name} is not there yet")
    wl = load_watchlist(example)
    store.upsert_watchlist(wl)
    result = import_observations(store, shared_dir / "reference" / "seed-case-events.csv", wl)
    assert result.evidence == result.rows > 0
    assert {s.site for s in store.sightings()} <= set(wl.sites)


def test_reimport_adds_nothing(store: Store, tmp_path: Path) -> None:
    lines = [HEADER + ",id",
             "2024-02-04,2024-02-04,LADY R,vessel,rajin,present,at Rajin,NK Pro,secondary,",
             "2024-02-05,2024-02-05,imagery,aggregate,rajin,coverage,seen,CSIS,primary,cov-1",
             "2024-02-06,,,vessel,rajin,empty,berth empty,Planet,0.8,"]
    first = write(tmp_path, "a.csv", *lines)
    wl = make_watchlist()
    r1 = import_observations(store, first, wl)
    assert (r1.evidence, r1.sightings, r1.looks, r1.aggregates) == (3, 1, 2, 1)
    counts = store.table_counts()
    assert import_observations(store, first, wl).already_imported
    forced = import_observations(store, first, wl, force=True)
    assert (forced.evidence, forced.sightings, forced.looks, forced.aggregates) == (0, 0, 0, 0)
    # The same rows in another order, in another file, with a changed line layout: still nothing new.
    shuffled = write(tmp_path, "b.csv", lines[0], lines[3], "", lines[1], lines[2])
    again = import_observations(store, shuffled, wl)
    assert not again.already_imported and (again.evidence, again.sightings, again.looks) == (0, 0, 0)
    after = store.table_counts()
    assert after["imports"] == counts["imports"] + 1
    assert {k: v for k, v in after.items() if k != "imports"} == {k: v for k, v in counts.items() if k != "imports"}
    # A row with an id is updated in place when its text is corrected.
    fixed = write(tmp_path, "c.csv", lines[0], lines[2].replace(",seen,", ",seen on 49 of 109 days,"))
    assert import_observations(store, fixed, wl).aggregates == 0
    assert [a.detail for a in store.aggregates()] == ["seen on 49 of 109 days"]


GOOD = "2024-02-04,2024-02-04,LADY R,vessel,rajin,present,at Rajin,NK Pro,secondary"
BAD_CASES = {
    "missing column": ((HEADER.replace(",confidence", ""), GOOD.rsplit(",", 1)[0]), 1, "confidence"),
    "bad date": ((HEADER, GOOD, "2024-02-31,2024-03-01,MARIA,vessel,rajin,present,x,y,primary"), 3, "date_start"),
    "end before start": ((HEADER, GOOD, "2024-02-05,2024-02-04,MARIA,vessel,rajin,present,x,y,primary"), 3,
                         "date_end"),
    "unknown site": ((HEADER, GOOD, "2024-02-05,2024-02-05,MARIA,vessel,pyongyang,present,x,y,primary"), 3, "site"),
    "unknown group": ((HEADER, GOOD, "2024-02-05,2024-02-05,MARIA,aggregate,rajin>china,trip_count,x,y,primary"),
                      3, "site"),
    "unknown event": ((HEADER, GOOD, "2024-02-05,2024-02-05,MARIA,vessel,rajin,sailing,x,y,primary"), 3, "event"),
    "bad confidence": ((HEADER, GOOD, "2024-02-05,2024-02-05,MARIA,vessel,rajin,present,x,y,1.5"), 3, "confidence"),
    "bad grade": ((HEADER, GOOD, "2024-02-05,2024-02-05,MARIA,vessel,rajin,present,x,y,likely"), 3, "confidence"),
    "duplicate id": ((HEADER + ",id", GOOD + ",r1", GOOD.replace("LADY R", "MARIA") + ",r1"), 3, "id"),
    "field count": ((HEADER, GOOD, "2024-02-05,2024-02-05,MARIA,vessel,rajin,present,x,y"), 3, "row"),
    "unclosed quote": ((HEADER, GOOD, '2024-02-05,2024-02-05,MARIA,vessel,rajin,present,"x,y,primary'), 3, "csv"),
    "naive time": ((HEADER + ",time_start", GOOD + ",", GOOD + ",2024-02-04T10:00"), 3, "time_start"),
    "unknown column": ((HEADER + ",colour", GOOD + ",red"), 1, "colour"),
    "subjectless sighting": ((HEADER, GOOD, "2024-02-05,2024-02-05,,vessel,rajin,present,x,y,primary"), 3,
                             "subject"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_a_bad_file_stores_nothing(store: Store, tmp_path: Path, case: str) -> None:
    lines, line, fieldname = BAD_CASES[case]
    wl = make_watchlist()
    import_observations(store, write(tmp_path, "earlier.csv", HEADER, GOOD.replace("04", "01")), wl)
    before = store.table_counts()
    path = write(tmp_path, "bad.csv", *lines)
    with pytest.raises(ObservationError) as info:
        import_observations(store, path, wl)
    err = info.value
    assert (err.line, err.field) == (line, fieldname)
    assert str(err).startswith(f"{path}:{line}: {fieldname}: ")
    assert store.table_counts() == before


def test_bad_json_is_located(tmp_path: Path) -> None:
    good = {"date_start": "2024-02-04", "date_end": "2024-02-04", "subject": "LADY R", "subject_kind": "vessel",
            "site": "rajin", "event": "present", "detail": "", "source": "NK Pro", "confidence": "primary"}
    text = "[\n" + json.dumps(good) + ",\n" + json.dumps({**good, "site": "nowhere"}) + "\n]"
    with pytest.raises(ObservationError) as info:
        parse_observations(write(tmp_path, "x.json", text), make_watchlist())
    assert (info.value.line, info.value.field) == (3, "site")
    with pytest.raises(ObservationError) as info:
        parse_observations(write(tmp_path, "y.json", "[\n" + json.dumps(good) + ",\n {\"site\": }]"), make_watchlist())
    assert (info.value.line, info.value.field) == (3, "json")
    with pytest.raises(ObservationError, match="object"):
        parse_observations(write(tmp_path, "z.json", "[1, 2]"), make_watchlist())


def test_json_and_csv_give_the_same_records(store: Store, tmp_path: Path, shared_dir: Path) -> None:
    source = shared_dir / "reference" / "seed-case-events.csv"
    rows = csv_rows(source)
    for r in rows:  # what a JSON writer would produce: numbers as numbers, a few optional fields as null
        r["count"] = None  # type: ignore[assignment]
        if r["confidence"] == "primary":
            r["confidence"] = 0.9  # type: ignore[assignment]
    as_json = write(tmp_path, "obs.json", json.dumps(rows, indent=2))
    wl = make_watchlist()
    from_csv, from_json = parse_observations(source, wl), parse_observations(as_json, wl)
    assert from_json.sightings == from_csv.sightings
    assert from_json.looks == from_csv.looks
    assert from_json.aggregates == from_csv.aggregates
    strip = {"file", "line", "confidence"}  # where the row was read from, and how its grade was spelled
    assert [(e.id, e.description, e.source, e.observed_at, {k: v for k, v in e.attributes.items() if k not in strip})
            for e in from_json.evidence] == \
        [(e.id, e.description, e.source, e.observed_at, {k: v for k, v in e.attributes.items() if k not in strip})
         for e in from_csv.evidence]
    import_observations(store, source, wl)
    again = import_observations(store, as_json, wl)
    assert (again.evidence, again.sightings, again.looks, again.aggregates) == (0, 0, 0, 0)


def test_semantics_of_columns(tmp_path: Path) -> None:
    header = HEADER + ",time_start,time_end,count,denominator,lower_bound,length_m,lon,lat,sensor,source_url"
    path = write(
        tmp_path, "obs.csv", header,
        # A precise time wins over the date; a lone time is an instant.
        "2023-10-20,2023-10-20,unknown vessel,vessel,RAJIN,departure,gone,VOA,0.65,"
        "2023-10-20T02:01:00+09:00,,,,,98.5,130.28,42.23,planetscope,https://example.org/a",
        # A negative look with a sensor: vessels_seen 0 and that sensor's detection model.
        "2024-02-20,2024-02-20,imagery,vessel,rajin,no_vessel,empty berth,Planet,primary,,,,,,,,,planetscope,",
        # Coverage counts, a lower bound on a route scope, and two subjects with one vessel known by IMO.
        "2023-08-01,2024-02-12,imagery,aggregate,rajin,coverage,49 of 109,CSIS,secondary,,,49,109,,,,,,",
        "2023-08-01,2024-02-29,9179842;Unknown ship,aggregate,Rajin>RUSSIA,trip_count,32,NK Pro,tertiary,"
        ",,32,,true,,,,,",
    )
    obs = parse_observations(path, make_watchlist())
    (s,) = obs.sightings
    assert s.time == datetime(2023, 10, 19, 17, 1, tzinfo=UTC) and s.time_end is None
    assert (s.site, s.vessel, s.length_m, s.lon, s.lat, s.confidence) == ("rajin", None, 98.5, 130.28, 42.23, 0.65)
    positive, negative = obs.looks
    assert positive.id == s.look_id and positive.vessels_seen == 1 and positive.sensor == "planetscope"
    assert negative.vessels_seen == 0 and negative.detection == SENSOR_DETECTION["planetscope"]
    assert negative.time == datetime(2024, 2, 20, tzinfo=UTC) and negative.usable_fraction == 1.0
    coverage, trips = obs.aggregates
    assert (coverage.count, coverage.denominator, coverage.confidence) == (49.0, 109.0, 0.7)
    assert coverage.end == datetime(2024, 2, 13, tzinfo=UTC) - timedelta(microseconds=1)
    assert (trips.scope, trips.count, trips.lower_bound, trips.confidence) == ("rajin>russia", 32.0, True, 0.5)
    assert trips.subjects == ("angara", "Unknown ship")
    ev = {e.id: e for e in obs.evidence}
    assert ev[s.evidence_ids[0]].uri == "https://example.org/a"
    assert ev[trips.evidence_ids[0]].attributes["scope_sites"] == {"origin": ["rajin"],
                                                                    "destination": ["dunai", "vostochny"]}
    assert ev[trips.evidence_ids[0]].attributes["line"] == 5
    assert len({e.id for e in obs.evidence}) == 4


def test_multiline_cells_keep_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "obs.csv", HEADER, '2024-02-04,2024-02-04,LADY R,vessel,rajin,present,"two', 'lines",a,1',
                 "2024-02-05,2024-02-05,LADY R,vessel,rajin,present,x,a,2")
    with pytest.raises(ObservationError) as info:
        parse_observations(path, make_watchlist())
    assert (info.value.line, info.value.field) == (4, "confidence")


def test_a_form_feed_or_line_separator_inside_a_cell_is_text_not_a_line_break(tmp_path: Path) -> None:
    """Only a newline ends a line: a form feed or U+2028 pasted into a note once split the row (or shifted the
    line numbers after it)."""
    path = write(tmp_path, "obs.csv", HEADER, '2024-02-04,2024-02-04,LADY R,vessel,rajin,present,"page\fbreak",a,1',
                 "2024-02-05,2024-02-05,LADY R,vessel,rajin,present,para\u2028sep,a,1",
                 "2024-02-06,2024-02-06,LADY R,vessel,rajin,present,x,a,2")
    with pytest.raises(ObservationError) as info:
        parse_observations(path, make_watchlist())
    assert (info.value.line, info.value.field) == (4, "confidence")


def test_a_csv_with_carriage_returns_alone_is_read(tmp_path: Path) -> None:
    """Spreadsheets on a Mac save "CSV (Macintosh)" with a carriage return alone at each line end."""
    lines = [",".join(HEADER.split(",")), "2024-02-04,2024-02-04,LADY R,vessel,rajin,present,x,a,1"]
    path = tmp_path / "mac.csv"
    path.write_bytes(("\r".join(lines) + "\r").encode())
    assert parse_observations(path, make_watchlist()).rows == 1


def test_a_count_row_without_a_count_is_flagged(store: Store, tmp_path: Path) -> None:
    """A trip count written only in the detail text counts nothing: the import says so, by line (the judgement
    changes from paused to active on the reference case when the 32 trips are lost this way)."""
    path = write(tmp_path, "counts.csv", HEADER + ",count",
                 "2023-08-01,2024-02-29,,aggregate,rajin,trip_count,at least 32 trips,NK Pro,secondary,",
                 "2023-08-01,2024-02-29,,aggregate,rajin,trip_count,32 trips,NK Pro,secondary,32")
    result = import_observations(store, path, make_watchlist())
    assert result.uncounted == ((2, "trip_count"),) and result.aggregates == 2
    assert "1 count rows have no count and count nothing" in str(result) and "line 2 (trip_count)" in str(result)
