"""Why a --log could not be opened: SQLite says only "unable to open database file", and the line guessed "missing
folder or no permission", also for a log on a read-only mount (an edge box's read-only root or data partition),
where neither was the cause and changing permissions could not help."""

from __future__ import annotations

import os
import sqlite3
import types
from pathlib import Path

import pytest

from edge_runtime.station import schema

CANTOPEN = sqlite3.OperationalError("unable to open database file")


def test_a_log_on_a_read_only_file_system_says_so(tmp_path: Path, monkeypatch):
    flags = types.SimpleNamespace(f_flag=os.ST_RDONLY)
    monkeypatch.setattr(schema.os, "statvfs", lambda folder: flags)
    err = schema.log_error(tmp_path / "station.db", CANTOPEN, "opening it")
    assert str(err) == (
        f"{tmp_path / 'station.db'}: inspection log cannot be opened: {tmp_path} is on a read-only file system; "
        "put --log on a writable disk (while opening it)"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_log_in_a_folder_without_write_permission_says_so(tmp_path: Path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    err = schema.log_error(folder / "station.db", CANTOPEN, "opening it")
    assert f"no permission to write in {folder}; fix its permissions or use another --log" in str(err)


def test_a_log_whose_folder_is_missing_says_so(tmp_path: Path):
    err = schema.log_error(tmp_path / "gone" / "station.db", CANTOPEN, "opening it")
    assert f"its folder {tmp_path / 'gone'} does not exist; create it or use another --log" in str(err)


@pytest.mark.parametrize("version", [-1, -2147483648])
def test_a_log_with_a_negative_schema_is_refused_not_sent_to_a_migration(tmp_path: Path, version: int):
    """edge-log said "has schema -1; run edge-infer --log on it once to migrate it", exit 7, and edge-infer --log
    then failed with "table runs already exists; check the disk": no migration starts from a negative version."""
    from click.testing import CliRunner

    from edge_runtime.errors import DataError, ExitCode, OutputError
    from edge_runtime.station.log_cli import main

    path = tmp_path / "station.db"
    schema.connect(path).close()
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version={version}")
    con.close()
    result = CliRunner().invoke(main, ["summary", str(path)])
    assert result.exit_code == ExitCode.BAD_DATA, result.output
    assert f"not an inspection log this defect-edge can read (schema {version}" in result.output
    assert "migrate" not in result.output
    with pytest.raises(OutputError, match="can use .* use another --log"):
        schema.connect(path).close()
    with pytest.raises(DataError):
        schema.connect(path, readonly=True).close()
