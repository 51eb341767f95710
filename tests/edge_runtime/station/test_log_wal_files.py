"""edge-log on a log copied with a write-ahead file that is not its own, or without the one it needs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from edge_runtime.errors import ExitCode
from edge_runtime.station.log import InspectionLog, LogConfig
from edge_runtime.station.log_cli import main
from tests.edge_runtime.station.conftest import RUN, write_items


def edge_log(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def _copy(log_path: Path, folder: Path, *, wal: bool) -> Path:
    """The log (and its write-ahead file) copied as ``scp station.db* folder/`` would, while a station writes it."""
    folder.mkdir(exist_ok=True)
    shutil.copy(log_path, folder / log_path.name)
    if wal:
        shutil.copy(f"{log_path}-wal", folder / f"{log_path.name}-wal")
    return folder / log_path.name


def test_a_stale_write_ahead_file_beside_a_newer_copy_is_refused_and_nothing_is_changed(
    station_log, log_path: Path, tmp_path: Path
):
    write_items(station_log, 8)
    copy = _copy(log_path, tmp_path / "copy", wal=True)  # the station still running: its items in the -wal
    station_log.close()
    later = InspectionLog(LogConfig(log_path, station="line-3"))
    later.start_run(RUN)
    write_items(later, 4)
    later.close()
    shutil.copy(log_path, copy)  # copied again, the log alone: the old -wal stays beside it
    before = copy.read_bytes()
    result = edge_log("summary", copy)
    # it read the old -wal's 8 items of the copy's 12, then copied them into the copy for good
    assert result.exit_code == ExitCode.BAD_DATA, result.output
    assert result.output.startswith("error:") and result.output.count("\n") == 1
    assert "station.db-wal" in result.output and "not this log's" in result.output
    assert copy.read_bytes() == before
    Path(f"{copy}-wal").unlink()
    Path(f"{copy}-shm").unlink(missing_ok=True)
    assert json.loads(edge_log("summary", copy, "--json").output)["items"] == 12


def test_a_write_ahead_file_of_another_log_is_refused(station_log, log_path: Path, tmp_path: Path):
    write_items(station_log, 8)
    other = InspectionLog(LogConfig(tmp_path / "other" / "station.db", station="line-4"))
    other.start_run(RUN)
    write_items(other, 3)
    mine = _copy(log_path, tmp_path / "mine", wal=False)
    station_log.close()
    shutil.copy(log_path, mine)
    shutil.copy(f"{other.path}-wal", f"{mine}-wal")  # line-4's beside line-3's log
    other.close()
    before = mine.read_bytes()
    result = edge_log("query", mine, "--json")
    assert result.exit_code == ExitCode.BAD_DATA, result.output
    assert "not this log's" in result.output and mine.read_bytes() == before


def test_reading_a_killed_stations_write_ahead_file_leaves_the_log_as_it_was(
    station_log, log_path: Path, tmp_path: Path
):
    write_items(station_log, 8)
    copy = _copy(log_path, tmp_path / "copy", wal=True)
    before, wal = copy.read_bytes(), Path(f"{copy}-wal").read_bytes()
    assert json.loads(edge_log("summary", copy, "--json").output)["items"] == 8
    for command in (("query", copy, "--json"), ("show", copy, "1", "--out", tmp_path / "p.png")):
        assert edge_log(*command).exit_code == 0
    # closing, the reader had copied the -wal into the log ("read-only"), and a stale -wal destroyed the log
    assert copy.read_bytes() == before and Path(f"{copy}-wal").read_bytes() == wal


def test_a_log_copied_without_the_write_ahead_file_that_holds_its_items_says_so(
    station_log, log_path: Path, tmp_path: Path
):
    alone = _copy(log_path, tmp_path / "copy", wal=False)  # the schema and the items are all in the -wal still
    result = edge_log("summary", alone)
    assert result.exit_code == ExitCode.BAD_DATA
    assert result.output.startswith("error:") and result.output.count("\n") == 1
    # it said "not a defect-edge inspection log (no schema); pass the file that edge-infer --log wrote": it was
    assert "station.db-wal" in result.output and "copy station.db and station.db-wal together" in result.output
