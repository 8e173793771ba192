"""The watchlist loader: the shipped example is valid, and every error names the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from routewatch.demo import example_dir
from routewatch.model import SiteKind
from routewatch.watchlist import WatchlistError, load_watchlist, parse_coverage_spec

GOOD = """
[sites.a]
name = "A"
kind = "port"
bbox = [130.0, 42.0, 130.1, 42.1]

[sites.b]
kind = "berth"
polygon = "POLYGON ((133 42.7, 133.1 42.7, 133.1 42.8, 133 42.8, 133 42.7))"

[groups]
east = ["b"]

[routes.a-b]
origin = ["a"]
destination = ["east"]
vessels = ["v"]

[vessels.v]
name = "VESSEL"
length_m = 120
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "watchlist.toml"
    p.write_text(text)
    return p


def test_reference_example_is_valid_and_cites_sources() -> None:
    w = load_watchlist(example_dir() / "watchlist.toml")
    assert set(w.routes) == {"rajin-russia"}
    route = w.routes["rajin-russia"]
    assert route.origin == ("rajin",) and route.destination == ("dunai", "vostochny")
    assert {w.vessels[v].name for v in route.vessels} == {"ANGARA", "LADY R", "MAIA-1", "MARIA"}
    assert all(site.sources for site in w.sites.values()), "every site cites a source"
    assert all(v.sources for v in w.vessels.values()), "every vessel cites a source"
    assert w.sites["rajin"].geometry.contains(
        __import__("shapely.geometry", fromlist=["Point"]).Point(130.2826, 42.2271)
    ), "the Rajin box holds the published berth point"
    assert [c.sensor for c in w.coverage["near-daily"]] == ["planetscope", "sentinel-2", "sentinel-1"]


def test_vessel_identifiers_are_kept_as_their_digits_and_link_to_the_ais_registry(tmp_path: Path) -> None:
    """``IMO 9161003`` and ``273 456 789`` are how people write them; the registry holds numbers."""
    import polars as pl

    from routewatch.sources.ais.registry import link_watchlist, mmsi_to_vessel

    w = load_watchlist(write(tmp_path, GOOD.replace("length_m = 120", 'length_m = 120\nimo = "IMO 9161003"\n'
                                                                      'mmsi = "273 456 789"')))
    v = w.vessels["v"]
    assert (v.imo, v.mmsi) == ("9161003", "273456789")
    for written in ("IMO 9161003", "imo9161003", "9161003", "273 456 789", "273456789"):  # an observation's words
        assert w.vessel_by_name(written) is v
    assert w.vessel_by_name("IMO 9161004") is None and w.vessel_by_name("") is None
    reg = pl.DataFrame({"mmsi": [636000001, 273456789], "imo": [9161003, None], "call_sign": [None, None],
                        "name": ["OTHER NAME", None]})
    assert link_watchlist(reg, w.vessels)["link"].to_list() == ["imo", "mmsi"]
    assert mmsi_to_vessel(w.vessels, reg) == {273456789: "v", 636000001: "v"}


def test_good_watchlist_resolves_groups(tmp_path: Path) -> None:
    w = load_watchlist(write(tmp_path, GOOD))
    assert w.routes["a-b"].destination == ("b",)
    assert w.sites["b"].kind is SiteKind.BERTH
    assert w.vessel_by_name("vessel") is w.vessels["v"]


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "message"),
    [
        (
            "bbox = [130.0, 42.0, 130.1, 42.1]",
            "bbox = [130.1, 42.0, 130.0, 42.1]",
            5,
            "sites.a.bbox",
            "min must be below max",
        ),
        (
            'polygon = "POLYGON ((133 42.7, 133.1 42.7, 133.1 42.8, 133 42.8, 133 42.7))"',
            'polygon = "POLYGON ((133 42.7, 133.1 42.8, 133.1 42.7, 133 42.8, 133 42.7))"',
            9,
            "sites.b.polygon",
            "invalid polygon",
        ),
        (
            'destination = ["east"]',
            'destination = ["west"]',
            16,
            "routes.a-b.destination",
            "unknown site or group 'west'",
        ),
        ('vessels = ["v"]', 'vessels = ["w"]', 17, "routes.a-b.vessels", "unknown vessel 'w'"),
        ('kind = "berth"', 'kind = "harbour"', 8, "sites.b.kind", "unknown kind 'harbour'"),
        ("length_m = 120", "length_m = -5", 21, "vessels.v.length_m", "positive number"),
        ('vessels = ["v"]', 'vessels = ["v"]\nmax_transit_dayz = 9', 18, "routes.a-b.max_transit_dayz",
         "unknown key; allowed: destination, max_speed_kn, max_transit_days"),
        ('kind = "port"', 'kind = "port"\ncountri = "KP"', 5, "sites.a.countri", "unknown key"),
        ("length_m = 120", "length_m = 120\nbeam = 18", 22, "vessels.v.beam", "unknown key"),
        ("length_m = 120", 'length_m = 120\nimo = "unknown"', 22, "vessels.v.imo", "must be seven digits"),
        ("length_m = 120", 'length_m = 120\nimo = "IMO 916100"', 22, "vessels.v.imo", "must be seven digits"),
        ("length_m = 120", 'length_m = 120\nmmsi = "2734567890"', 22, "vessels.v.mmsi", "nine-digit MMSI"),
        ("length_m = 120", 'length_m = 120\n\n[coverage.daily]\nsensors = ["sentinel-1:12:1.0"]\nevry = 3', 25,
         "coverage.daily.evry", "unknown key; allowed: sensors"),
    ],
)
def test_errors_name_file_line_and_field(
    tmp_path: Path, old: str, new: str, line: int, field: str, message: str
) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(WatchlistError) as info:
        load_watchlist(path)
    text = str(info.value)
    assert text.startswith(f"{path}:{line}: {field}: "), text
    assert message in text


def test_duplicate_keys_are_refused_with_their_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + '\n[sites.a]\nname = "again"\nbbox = [1.0, 1.0, 2.0, 2.0]\n')
    with pytest.raises(WatchlistError) as info:
        load_watchlist(path)
    assert str(info.value).startswith(f"{path}:23: toml: ")


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(WatchlistError, match="cannot read"):
        load_watchlist(tmp_path / "absent.toml")


def test_coverage_spec() -> None:
    c = parse_coverage_spec("planetscope:1:0.56")
    assert (c.sensor, c.every_days, c.usable) == ("planetscope", 1.0, 0.56)
    assert c.describe() == "planetscope daily, 56% usable"
    with pytest.raises(ValueError, match="unknown sensor"):
        parse_coverage_spec("landsat:16:0.5")
    with pytest.raises(ValueError, match="usable"):
        parse_coverage_spec("sentinel-1:12:1.5")


def test_non_table_entries_and_booleans_are_located_errors(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("length_m = 120", "length_m = true"))
    with pytest.raises(WatchlistError, match=r":21: vessels\.v\.length_m: must be a positive number"):
        load_watchlist(path)
    path = write(tmp_path, GOOD + '\n[vessels]\nw = "not a table"\n')
    with pytest.raises(WatchlistError, match=r"vessels\.w\.key: must be a table"):
        load_watchlist(path)
    path = write(tmp_path, GOOD + '\n[coverage]\ndaily = "planetscope:1:0.5"\n')
    with pytest.raises(WatchlistError, match=r"coverage\.daily\.sensors: must be a table"):
        load_watchlist(path)
