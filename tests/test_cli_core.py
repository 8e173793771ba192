"""The core commands as a user runs them: init, import observations, analyze, status, simulate coverage."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from routewatch.cli import app
from routewatch.workspace import Workspace

runner = CliRunner()
ENV = {"COLUMNS": "220"}


def run(*args: str) -> str:
    result = runner.invoke(app, list(args), env=ENV)
    assert result.exit_code == 0, result.output
    return result.output


def stdout(*args: str) -> str:
    """What a script reading the command's standard output gets (notes such as the date judged go to stderr)."""
    result = runner.invoke(app, list(args), env=ENV)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_init_import_analyze_status(tmp_path: Path) -> None:
    ws = tmp_path / "case"
    out = run("init", str(ws), "--example", "rajin")
    assert (ws / "watchlist.toml").exists() and (ws / "observations.csv").exists()
    assert f"routewatch import observations {ws / 'observations.csv'} -w {ws}" in out  # what to do next
    out = run("import", "observations", str(ws / "observations.csv"), "-w", str(ws))
    assert "added 20 sightings" in out
    again = run("import", "observations", str(ws / "observations.csv"), "-w", str(ws))
    assert "already imported" in again
    out = run("analyze", "--as-of", "2024-03-02", "--coverage", "near-daily", "-w", str(ws))
    assert "paused" in out and "5 trips derived as of 2024-03-02" in out and "replacing" not in out
    out = run("analyze", "--as-of", "2024-02-10", "-w", str(ws))
    assert "trips derived as of 2024-02-10" in out and "replacing those as of 2024-03-02" in out
    again = run("analyze", "--as-of", "2024-02-10", "-w", str(ws))
    assert "trips derived as of 2024-02-10" in again and "replacing" not in again
    out = stdout("status", "--as-of", "2024-03-02", "--coverage", "sentinel-1:12:1.0", "-w", str(ws))
    assert out.startswith("rajin-russia\tundetermined")
    out = run("status", "--as-of", "2024-03-20", "-c", "near-daily", "-w", str(ws))
    assert "\tresumed\t" in out
    res = runner.invoke(app, ["status", "--as-of", "2024-03-20", "-c", "near-daily", "-w", str(ws)], env=ENV)
    assert "judged as of 2024-03-20 23:59 UTC" in res.stderr and "judged" not in res.stdout


def test_export_judges_under_the_coverage_it_is_given_and_says_when_the_stored_one_differs(tmp_path: Path) -> None:
    """`analyze -c near-daily` stores a paused judgement; `export` for that date judged on the ledger's looks
    alone under the same id without a word. It now takes --coverage, and says when it judges otherwise."""
    import csv as csv_module

    ws = tmp_path / "case"
    run("init", str(ws), "--example", "rajin")
    run("import", "observations", str(ws / "observations.csv"), "-w", str(ws))
    run("analyze", "--as-of", "2024-03-02", "--coverage", "near-daily", "-w", str(ws))
    rows = {}
    for name, extra in (("ledger", []), ("declared", ["--coverage", "near-daily"])):
        out = run("export", "-f", "csv", "-o", str(tmp_path / name), "--as-of", "2024-03-02", "-w", str(ws), *extra)
        assert ("made under a declared coverage" in out) is (name == "ledger"), out
        with (tmp_path / name / "activities.csv").open() as fh:
            rows[name] = next(csv_module.DictReader(fh))
    assert rows["declared"]["status"] == "paused" and rows["declared"]["coverage"] != rows["ledger"]["coverage"]
    # the store alone (no watchlist to judge with): its stored judgements are exported, without a word about a
    # ledger judgement it does not make, and --coverage is refused rather than ignored
    db = f"sqlite:///{ws / 'routewatch.sqlite'}"
    (tmp_path / "bare").mkdir()
    out = run("export", "-f", "csv", "-o", str(tmp_path / "stored"), "--as-of", "2024-03-02", "-w",
              str(tmp_path / "bare"), "--db", db)
    assert "made under a declared coverage" not in out
    res = runner.invoke(app, ["export", "-f", "csv", "-o", str(tmp_path / "x"), "--as-of", "2024-03-02", "-w",
                              str(tmp_path / "bare"), "--db", db, "--coverage", "near-daily"], env=ENV)
    assert res.exit_code == 2 and "needs the workspace's watchlist" in " ".join(res.output.split())


def test_bad_observation_file_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    ws = tmp_path / "case"
    run("init", str(ws), "--example", "rajin")
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "date_start,date_end,subject,subject_kind,site,event,detail,source,confidence\n"
        "2024-02-01,2024-02-01,ANGARA,vessel,rajin,present,fine,test,primary\n"
        "2024-02-03,2024-02-02,ANGARA,vessel,rajin,present,ends before it starts,test,primary\n"
    )
    result = runner.invoke(app, ["import", "observations", str(bad), "-w", str(ws)], env=ENV)
    assert result.exit_code == 1
    assert "bad.csv:3: date_end:" in result.output.replace("\n", "")
    out = run("analyze", "--as-of", "2024-03-02", "-w", str(ws))
    assert "0 visits" in out


def test_bad_coverage_and_missing_watchlist_are_clear(tmp_path: Path) -> None:
    result = runner.invoke(app, ["analyze", "-w", str(tmp_path)], env=ENV)
    assert result.exit_code == 2 and "No watchlist" in result.output
    ws = tmp_path / "case"
    run("init", str(ws), "--example", "rajin")
    result = runner.invoke(app, ["analyze", "-c", "landsat:16:0.5", "-w", str(ws)], env=ENV)
    assert result.exit_code != 0 and "unknown sensor" in result.output


@pytest.mark.parametrize("command", [["init"], ["import", "observations"], ["analyze"], ["status"], ["demo"],
                                     ["simulate", "coverage"], ["failures"]])
def test_every_core_command_has_help_with_an_example(command: list[str]) -> None:
    out = run(*command, "--help")
    assert "Example: routewatch" in out


def test_simulate_coverage_small_run() -> None:
    out = run("simulate", "coverage", "-s", "sentinel-1:12:1.0", "-s", "planetscope:1:0.55", "--years", "4")
    assert "sentinel-1 every 12 days" in out and "planetscope daily" in out


def test_a_route_deleted_from_the_watchlist_leaves_status_and_the_store(tmp_path: Path) -> None:
    """The store follows the workspace's watchlist file; a second workspace sharing the store keeps its own."""
    from routewatch.store import Store
    from routewatch.workspace import Workspace

    ws = tmp_path / "case"
    run("init", str(ws))
    assert stdout("status", "-w", str(ws)).startswith("example-route\t")
    text = (ws / "watchlist.toml").read_text()
    (ws / "watchlist.toml").write_text(text.replace("[routes.example-route]", "[routes.renamed-route]"))
    out = run("status", "-w", str(ws))
    assert "removed from the store: routes example-route" in out and "renamed-route\t" in out
    assert "example-route\t" not in out
    other = tmp_path / "other"  # a second workspace on the same store, with its own watchlist file
    run("init", str(other))
    db = ["--db", Workspace.open(ws).db_url]
    run("status", "-w", str(other), *db)
    store = Store.open(Workspace.open(ws).db_url)
    assert {"renamed-route", "example-route"} <= set(store.routes())  # each file owns its own entries
    out = run("status", "-w", str(ws))
    assert "removed" not in out  # the other file's example-route is not this file's to remove
    import shutil

    moved = tmp_path / "moved"  # a workspace copied elsewhere keeps following its file (its own store)
    shutil.copytree(ws, moved)
    text = (moved / "watchlist.toml").read_text()
    (moved / "watchlist.toml").write_text(text.replace("[routes.renamed-route]", "[routes.third-name]"))
    assert "removed from the store: routes renamed-route" in run("status", "-w", str(moved))


def test_bad_numbers_and_paths_are_clear_errors_and_create_nothing(tmp_path: Path) -> None:
    for args in (["--cadence-days", "0"], ["--years", "-1"], ["--vessel-length-m", "-5"]):
        result = runner.invoke(app, ["simulate", "coverage", *args], env=ENV)
        assert result.exit_code == 2 and "must be a positive number" in result.output, result.output
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    result = runner.invoke(app, ["init", str(a_file)], env=ENV)
    assert result.exit_code == 2 and "is a file" in result.output
    result = runner.invoke(app, ["init", str(tmp_path / "new"), "--example", "nosuch"], env=ENV)
    assert result.exit_code == 2 and "no example 'nosuch'" in result.output and not (tmp_path / "new").exists()


def test_status_says_what_its_probability_is(tmp_path: Path) -> None:
    """P means different things by status (docs/judgement.md): each status line says which, with its error."""
    ws = tmp_path / "case"
    run("init", str(ws), "--example", "rajin")
    run("import", "observations", str(ws / "observations.csv"), "-w", str(ws))
    paused = stdout("status", "--as-of", "2024-03-02", "-c", "near-daily", "-w", str(ws)).strip().split("\t")
    assert paused[1] == "paused" and paused[-1].startswith("P = 1 - P(silence | running)") and "+-" in paused[-1]
    resumed = stdout("status", "--as-of", "2024-03-20", "-c", "near-daily", "-w", str(ws)).strip().split("\t")
    assert resumed[1] == "resumed" and resumed[-1] == "P = the pause probability of the gap that ended"


def test_status_of_a_route_with_nothing_to_judge_says_so(tmp_path: Path) -> None:
    ws = tmp_path / "blank"
    run("init", str(ws))
    line = stdout("status", "-w", str(ws)).strip().split("\t")
    assert line[1] == "undetermined" and line[-1].startswith("no silence probability")


def test_a_judgement_resting_on_simulated_data_says_so(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from routewatch.model import Sighting, SourceKind
    from routewatch.store import Store
    from routewatch.workspace import Workspace

    ws = tmp_path / "case"
    run("init", str(ws), "--example", "rajin")
    run("import", "observations", str(ws / "observations.csv"), "-w", str(ws))
    assert "SIMULATED" not in run("status", "--as-of", "2024-03-02", "-w", str(ws))
    store = Store.open(Workspace.open(ws).db_url)
    store.add_sightings([Sighting("sim-1", datetime(2024, 2, 20, tzinfo=UTC), SourceKind.IMAGE, site="rajin",
                                  lon=130.29, lat=42.24, simulated=True)])
    for cmd in (["status"], ["analyze"]):
        out = " ".join(run(*cmd, "--as-of", "2024-03-02", "-w", str(ws)).split())
        assert "SIMULATED: rajin-russia rests partly on simulated data (1 sightings and 0 looks" in out


def test_failures_lists_what_earlier_runs_skipped(tmp_path: Path) -> None:
    """A truncated AIS file and a folder of one unreadable GeoTIFF: `routewatch failures` lists both, newest first,
    once each however often they were met, and --stage picks one."""
    ws = tmp_path / "case"
    run("init", str(ws), "--example", "rajin")
    assert "No failures recorded." in run("failures", "-w", str(ws))
    bad_ais = tmp_path / "cut.nmea.gz"
    bad_ais.write_bytes(b"\x1f\x8b\x08\x00broken")
    for _ in range(2):  # a gzip whose header is cut: named, not a bare "Aborted." (its EOFError reached click)
        res = runner.invoke(app, ["ais", "ingest", str(bad_ais), "-w", str(ws)], env=ENV)
        assert res.exit_code == 1 and "cut.nmea.gz: truncated or corrupt gzip" in " ".join(res.output.split())
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "junk_20231001.tif").write_bytes(b"II*\x00 not a tiff")
    runner.invoke(app, ["scenes", "add", str(folder), "-w", str(ws)], env=ENV)
    out = run("failures", "-w", str(ws))
    assert "2 failures recorded" in out and "cut.nmea.gz" in out and "junk_20231001.tif" in out
    assert out.index("junk_20231001.tif") < out.index("cut.nmea.gz")  # newest first
    only = run("failures", "--stage", "ais", "-w", str(ws))
    assert "1 failures recorded" in only and "junk" not in only
    from routewatch.store import Store

    Store.open(Workspace.open(ws).db_url).record_failure("detect", "/data/S1A_rajin[vv].tif", "bad [/b] band [vv]")
    out = " ".join(run("failures", "--stage", "detect", "-w", str(ws)).split())  # text, not rich markup
    assert "S1A_rajin[vv].tif" in out and "bad [/b] band [vv]" in out
    res = runner.invoke(app, ["failures", "--stage", "detct", "-w", str(ws)], env=ENV)
    assert res.exit_code == 2 and "the stages are" in res.output


@pytest.mark.parametrize(("url", "said"), [
    ("postgresql+psycopg://postgres@127.0.0.1:1/rw", "Connection refused"),
    ("postgres://postgres@host/rw", "unsupported store URL"),
    ("notaurl", "Could not parse"),
])
def test_a_store_that_cannot_be_opened_is_one_line_not_a_traceback(tmp_path: Path, url: str, said: str) -> None:
    """The command as installed (its entry point, not the test runner): no server, a misspelt URL scheme, no URL."""
    import subprocess
    import sys

    run("init", str(tmp_path / "ws"))
    res = subprocess.run([sys.executable, "-c", "from routewatch.cli import main; main()", "status", "-w",
                          str(tmp_path / "ws"), "--db", url], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and said in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_two_workspaces_on_one_store_keep_each_others_analyses(tmp_path: Path) -> None:
    """A team's shared store: one workspace's `analyze` replaces the visits and trips of its own sites and routes,
    never the other's (they had been wiped, leaving the other's judgement beside no trips)."""
    from routewatch.store import Store

    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    a, b = tmp_path / "a", tmp_path / "b"
    out = " ".join(run("init", str(a), "--example", "rajin", "--db", url).split())
    assert "give every command the same --db URL" in out and not (a / "routewatch.sqlite").exists()
    run("init", str(b), "--db", url)
    run("import", "observations", str(a / "observations.csv"), "-w", str(a), "--db", url)
    run("analyze", "--as-of", "2024-03-02", "--coverage", "near-daily", "-w", str(a), "--db", url)
    store = Store.open(url)
    mine = {(t.id, t.route) for t in store.trips()}
    assert mine and {r for _, r in mine} == {"rajin-russia"}
    run("analyze", "--as-of", "2024-03-02", "-w", str(b), "--db", url)
    assert mine <= {(t.id, t.route) for t in store.trips()}
    assert {v.site for v in store.visits()} >= {"rajin"}
