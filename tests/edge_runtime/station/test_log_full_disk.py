"""edge-infer --log on a full disk: one line naming the full disk and the room left (exit 7), and a new log that
could not be made is not left behind; an existing log is kept. edge-log reading a log on a full disk: the same, and
nothing left beside the log."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from edge_runtime.cli import main
from edge_runtime.errors import ExitCode
from edge_runtime.station import schema
from edge_runtime.station.log_cli import main as edge_log
from edge_runtime.station.query import Filter, open_reader, rows
from tests.conftest import REPO
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


def test_a_new_log_on_a_full_disk_names_the_disk_and_is_not_left_behind(tmp_path: Path, tiny_model: Path, monkeypatch):
    """It said `inspection log cannot grow: the disk (or the database's size limit) is full; free space or lower
    --log-max`, advice for a log that exists, and left a log without its schema, which edge-log then refused as
    "not a defect-edge inspection log"."""
    write_parts(tmp_path / "parts", [200])
    _tight_pages(monkeypatch, 1)
    db = tmp_path / "new" / "f.db"
    result = CliRunner().invoke(
        main, ["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--log", str(db)]
    )
    assert result.exit_code == ExitCode.OUTPUT_ERROR, result.output
    assert result.output.strip().splitlines()[-1] == (
        f"error: {db}: inspection log cannot be created: the disk is full (12288 bytes left); free space there or "
        "put --log on another disk (while opening it)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parts"]  # no f.db, -wal, -shm, nor its folder


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


# Run where it may mount (a mount namespace): edge-infer --log on a fresh 200 KiB tmpfs filled to each level, then
# on an existing log once the disk has filled up; prints what each run said and left.
_ON_SMALL_DISKS = """
import json, os, sqlite3, subprocess, sys
root, model, parts = sys.argv[1:4]
def fill(disk, kb):
    with open(os.path.join(disk, "fill"), "wb", buffering=0) as f:
        for _ in range(kb):
            try:
                f.write(bytes(1024))
            except OSError:  # full: the existing log took the room
                break
def run(disk, kb):
    fill(disk, kb)
    db = os.path.join(disk, "f.db")
    proc = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "--model", model, "--source", parts, "--log",
                           db, "--quiet"], capture_output=True, text=True, timeout=120)
    left = sorted(n for n in os.listdir(disk) if n != "fill")
    os.unlink(os.path.join(disk, "fill"))  # room to read the log
    items = None
    if "f.db" in left:
        try:
            with sqlite3.connect(db) as con:
                items = con.execute("SELECT count(*) FROM inspections").fetchone()[0]
        except sqlite3.Error as exc:  # a log without its schema
            items = str(exc)
    return {"fill": kb, "rc": proc.returncode, "stderr": proc.stderr, "left": left, "items": items}
def small_disk(name):
    disk = os.path.join(root, name)
    os.mkdir(disk)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", disk], check=True)
    return disk
out = [run(small_disk(str(kb)), kb) for kb in (112, 124, 136, 148, 160, 172, 184, 192)]
disk = small_disk("existing")
out += [run(disk, 0), run(disk, 200)]  # a log made with room; then the disk fills up
print(json.dumps(out))
"""


def _where_it_may_mount(tmp_path: Path) -> list[str]:
    """The command prefix under which a tmpfs may be mounted (a mount namespace: nothing outside it sees the
    mounts); skips where none may be made."""
    tries = [["unshare", "--user", "--map-root-user", "--mount"]]
    if os.geteuid() == 0:
        tries.append(["unshare", "--mount"])
    why = "unshare is not installed"
    for prefix in tries:
        try:
            probe = subprocess.run([*prefix, "mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(tmp_path)],
                                   capture_output=True, text=True, timeout=30)  # fmt: skip
        except OSError:
            continue
        if probe.returncode == 0:
            return prefix
        why = probe.stderr.strip() or f"exit {probe.returncode}"
    pytest.skip(f"no small tmpfs can be mounted here (no user or mount namespace: {why})")


def test_on_a_real_small_disk_every_run_is_logged_or_says_the_disk_is_full(tmp_path: Path, tiny_model: Path):
    """`edge-infer --log /mnt/f/f.db` on a 200 KiB tmpfs filled to 140-185 KB said `inspection log failed (cannot
    rollback - no transaction is active)` or `(disk I/O error); check the disk ... (while opening it)`, and left a
    0-4 KB f.db (with -wal and -shm) without a schema; an existing log on a disk that filled up said `disk I/O
    error` too."""
    write_parts(tmp_path / "parts", [200])
    (tmp_path / "disks").mkdir()
    prefix = _where_it_may_mount(tmp_path / "disks")
    proc = subprocess.run([*prefix, sys.executable, "-c", _ON_SMALL_DISKS, str(tmp_path / "disks"), str(tiny_model),
                           str(tmp_path / "parts")], capture_output=True, text=True, timeout=300, cwd=REPO)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    *new, existing, full = json.loads(proc.stdout)
    for run in new:
        assert "Traceback" not in run["stderr"], run
        if run["rc"] == 0:  # room enough for the log and its one item
            assert run["items"] == 1, run
            continue
        db = tmp_path / "disks" / str(run["fill"]) / "f.db"
        said = f"error: {db}: inspection log cannot be created: the disk is full ("
        assert run["rc"] == ExitCode.OUTPUT_ERROR and run["stderr"].splitlines()[-1].startswith(said), run
        assert run["left"] == [], run  # nothing: no f.db, -wal or -shm
    assert sum(run["rc"] != 0 for run in new) >= 5, new
    assert existing["rc"] == 0 and existing["items"] == 1, existing
    db = tmp_path / "disks" / "existing" / "f.db"
    assert full["rc"] == ExitCode.OUTPUT_ERROR and "Traceback" not in full["stderr"], full
    assert full["stderr"].splitlines()[-1].startswith(f"error: {db}: inspection log cannot grow: the disk is full ("), (
        full
    )
    assert full["items"] == 1, full  # the existing log is kept, with its item


def test_edge_log_on_a_full_disk_says_so_and_leaves_nothing_beside_the_log(
    tmp_path: Path, tiny_model: Path, monkeypatch
):
    """`edge-log summary f.db` on a full disk said `inspection log cannot be read (disk I/O error); check the disk and
    the file` (exit 3, as for a damaged log) and left an empty f.db-wal and a 3-byte f.db-shm beside it: SQLite's
    index file could not grow. Here SQLite's failure is played by a connection that makes those two files and
    fails as it does."""
    write_parts(tmp_path / "parts", [200])
    db = tmp_path / "f.db"
    assert CliRunner().invoke(main, ["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--log",
                                     str(db)]).exit_code == 0  # fmt: skip
    real = schema._open_readonly

    def on_a_full_disk(path, timeout_s, *, immutable):
        Path(f"{path}-wal").write_bytes(b"")
        Path(f"{path}-shm").write_bytes(b"\0" * 3)
        return _Failing(real(path, timeout_s, immutable=immutable))

    monkeypatch.setattr(schema, "_open_readonly", on_a_full_disk)
    monkeypatch.setattr(os, "statvfs", lambda path: NEARLY_FULL)
    result = CliRunner().invoke(edge_log, ["summary", str(db)])
    assert result.exit_code == ExitCode.OUTPUT_ERROR, result.output
    assert result.output.strip().splitlines()[-1] == (
        f"error: {db}: inspection log cannot be read: the disk is full (12288 bytes left), and a reader needs room "
        "beside the log for its index file (-shm); free space there, or copy the log to another disk and read the "
        "copy (while opening it)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.db", "parts"]  # no f.db-wal nor f.db-shm


class _Failing:
    """A connection whose statements fail as SQLite's do where the log's index file (-shm) cannot grow."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con

    def execute(self, *args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    def close(self) -> None:
        self.con.close()


_EDGE_LOG_ON_A_FULL_DISK = """
import os, subprocess, sys
disk, model, parts = sys.argv[1:4]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", disk], check=True)
db = os.path.join(disk, "f.db")
made = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "--model", model, "--source", parts, "--log", db,
                       "--quiet"], capture_output=True, text=True, timeout=120)
assert made.returncode == 0, made.stderr
with open(os.path.join(disk, "fill"), "wb", buffering=0) as f:
    try:
        while True:
            f.write(bytes(1024))
    except OSError:
        pass
read = subprocess.run([sys.executable, "-m", "edge_runtime.station.log_cli", "summary", db], capture_output=True,
                      text=True, timeout=120)
print(read.returncode)
print(sorted(os.listdir(disk)))
print(read.stderr.strip().splitlines()[-1] if read.stderr.strip() else "")
"""


def test_edge_log_on_a_real_full_disk_says_so_and_leaves_nothing(tmp_path: Path, tiny_model: Path):
    """The same on a real 300 KiB tmpfs filled up after the log was written."""
    write_parts(tmp_path / "parts", [200])
    (tmp_path / "disk").mkdir()
    prefix = _where_it_may_mount(tmp_path / "disk")
    proc = subprocess.run([*prefix, sys.executable, "-c", _EDGE_LOG_ON_A_FULL_DISK, str(tmp_path / "disk"),
                           str(tiny_model), str(tmp_path / "parts")], capture_output=True, text=True, timeout=300,
                          cwd=REPO)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    code, left, last = proc.stdout.splitlines()
    db = tmp_path / "disk" / "f.db"
    assert int(code) == ExitCode.OUTPUT_ERROR and left == "['f.db', 'fill']", proc.stdout
    assert last.startswith(f"error: {db}: inspection log cannot be read: the disk is full ("), proc.stdout
