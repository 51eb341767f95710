"""Whether the write-ahead file beside an inspection log is its own, told before ``edge-log`` reads through it.

SQLite ties a log's write-ahead file (``station.db-wal``) to it by name alone. A stale one, left from an earlier
copy (``scp station.db* .``, later ``scp station.db .``), or another log's, is read as the log's newest pages:
edge-log listed the older copy's 352 items of a log's 369, and closing the reader copied them into the log for good.
Runs are only ever added to a log (retention deletes items, never runs), so every run the log file holds by itself
is also in the log read through its own write-ahead file. The other way round, a log copied without the
write-ahead file that holds all its items was refused as "not a defect-edge inspection log" (:func:`missing_wal`).

>>> before = runs_in_file(Path("station.db"))           # doctest: +SKIP
>>> con = sqlite3.connect("station.db")                 # doctest: +SKIP
>>> check_own_wal(Path("station.db"), con, before)      # doctest: +SKIP
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from edge_runtime.errors import DataError

RUNS_SQL = "SELECT id, started, station, host, pid FROM runs"
WAL_MODE = 2  # the file format's read and write versions (header bytes 18 and 19) in WAL mode


def wal_holds_frames(path: Path | str) -> bool:
    """Whether a write-ahead file with content lies beside the log (a running station's, or one left behind)."""
    try:
        return os.path.getsize(f"{path}-wal") > 0
    except OSError:
        return False


def runs_in_file(path: Path | str) -> dict[int, tuple] | None:
    """The runs the log file holds by itself, its write-ahead file left aside (``immutable``: no lock, no
    ``-shm``, the file only read); None where it holds none yet or they cannot be read (a checkpoint writing).
    Read before the log itself: a run a station adds meanwhile is then in the later read too."""
    try:
        con = sqlite3.connect(f"{Path(path).resolve().as_uri()}?immutable=1", uri=True)
    except (sqlite3.Error, OSError, ValueError):
        return None
    try:
        return {row[0]: tuple(row[1:]) for row in con.execute(RUNS_SQL)}
    except sqlite3.Error:
        return None
    finally:
        con.close()


def check_own_wal(path: Path | str, con: sqlite3.Connection, before: dict[int, tuple] | None) -> None:
    """:class:`DataError` (exit 3) where a run of the log file (``before``) is missing from, or differs in, the log
    as ``con`` reads it through its write-ahead file."""
    if not before:
        return
    now = {row[0]: tuple(row[1:]) for row in con.execute(RUNS_SQL)}
    odd = next((run for run, fields in before.items() if now.get(run) != fields), None)
    if odd is None:
        return
    name = Path(path).name
    raise DataError(
        f"{path}: the write-ahead file beside it ({name}-wal) is not this log's (left from an older copy, or "
        f"another log's): read through it, the log's run {odd} is missing or changed; move {name}-wal and "
        f"{name}-shm away and read the log again"
    )


def missing_wal(path: Path | str) -> str | None:
    """The message for a log in WAL mode that holds no schema by itself and has no write-ahead file beside it: its
    items were all still in that file (a log copied alone while its station ran, or after it was killed)."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[18] != WAL_MODE or wal_holds_frames(path):
        return None
    name = Path(path).name
    return (
        f"{path}: inspection log holds no items by itself: they are all in its write-ahead file ({name}-wal), "
        f"which is missing or empty here (the log was copied alone while its station ran, or after it was stopped "
        f"abruptly); copy {name} and {name}-wal together, or copy the log once its station has stopped"
    )
