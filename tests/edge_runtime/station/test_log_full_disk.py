"""edge-infer --log on a full disk: one line naming the full disk and the room left (exit 7), and a new log that
could not be made is not left behind; an existing log is kept."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from edge_runtime.cli import main
from edge_runtime.errors import ExitCode
from edge_runtime.station import schema
from edge_runtime.station.query import Filter, open_reader, rows
from tests.edge_runtime.conftest import write_parts

NEARLY_FULL = SimpleNamespace(f_bavail=3, f_bfree=3, f_frsize=4096)  # 12288 bytes left


def _tight_pages(monkeypatch: pytest.MonkeyPatch, pages: int | None) -> None:
    """What a full disk looks like to SQLite where no small disk can be mounted: its page limit refuses the next
    page (``pages`` None: no more than the file has now)."""
    real = sqlite3.connect

    def tight(*args, **kwargs) -> sqlite3.Connection:
        con = real(*args, **kwargs)
        limit = pages or con.execute("PRAGMA page_count").fetchone()[0]
        con.execute(f"PRAGMA max_page_count={limit}")
        return con

    monkeypatch.setattr(schema.sqlite3, "connect", tight)
    monkeypatch.setattr(os, "statvfs", lambda path: NEARLY_FULL)


def test_an_existing_log_on_a_full_disk_is_kept_and_the_line_names_the_room_left(
    tmp_path: Path, tiny_model: Path, monkeypatch
):
    """It said `the disk (or the database's size limit) is full`, a limit the tool never sets, and not how much
    room was left."""
    write_parts(tmp_path / "parts", [200, 10])
    write_parts(tmp_path / "more", [200] * 40)  # their thumbnails need pages the log does not have
    db = tmp_path / "f.db"
    args = ["--model", str(tiny_model), "--log", str(db), "--source"]
    assert CliRunner().invoke(main, [*args, str(tmp_path / "parts")]).exit_code == 0
    _tight_pages(monkeypatch, None)
    result = CliRunner().invoke(main, [*args, str(tmp_path / "more")])
    assert result.exit_code == ExitCode.OUTPUT_ERROR, result.output
    last = result.output.strip().splitlines()[-1]
    assert (
        "inspection log cannot grow: the disk is full (12288 bytes left); free space there or lower --log-max" in last
    )
    monkeypatch.undo()
    assert len(list(rows(open_reader(db), Filter()))) == 2  # the first run's items, kept


def test_a_migration_that_sqlite_rolled_back_itself_reports_its_own_error(tmp_path: Path):
    """On a full disk SQLite rolls the schema's transaction back by itself; the second ROLLBACK failed, and the
    line said `cannot rollback - no transaction is active` instead of the full disk."""

    class FullDisk(sqlite3.Connection):
        def execute(self, sql: str, *args):  # type: ignore[override]
            if sql.startswith("CREATE TABLE"):
                super().execute("ROLLBACK")
                raise sqlite3.OperationalError("database or disk is full")
            return super().execute(sql, *args)

    con = sqlite3.connect(tmp_path / "f.db", isolation_level=None, factory=FullDisk)
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
        schema.migrate(con, tmp_path / "f.db")
