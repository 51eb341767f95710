"""The inspection log's schema: versioned with ``PRAGMA user_version``, created and migrated by the tool.

Every connection runs in WAL mode (readers such as ``edge-log`` or the web view never block the writer) with
``synchronous=NORMAL``: a committed row survives a killed process (SIGKILL), which is what "nothing lost"
means here; only a power cut can lose the last commits before a checkpoint.

>>> con = connect(":memory:")
>>> con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
True
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from edge_runtime.errors import DataError, OutputError
from edge_runtime.station.log_errors import (
    SQLITE_CANTOPEN,
    SQLITE_CORRUPT,
    SQLITE_FULL,
    SQLITE_IOERR,
    SQLITE_NOTADB,
    SQLITE_READONLY,
    full_disk,
    log_cut_short,
    log_error,
    read_error,
)
from edge_runtime.station.wal_match import check_own_wal, missing_wal, runs_in_file, wal_holds_frames

# Migrations, oldest first: entry k takes a log from version k to k + 1. Append, never edit a released entry.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        started REAL NOT NULL,           -- UTC, seconds since the epoch
        station TEXT NOT NULL,
        source TEXT NOT NULL,
        model_version TEXT NOT NULL,     -- hash of the weights, from the model's metadata
        model_file TEXT NOT NULL,
        providers TEXT NOT NULL,         -- JSON list, as onnxruntime reports them
        precision TEXT NOT NULL,
        threshold REAL NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL
    );
    CREATE TABLE inspections (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,              -- UTC, seconds since the epoch (the record's "time")
        run_id INTEGER NOT NULL REFERENCES runs(id),
        source TEXT NOT NULL,
        frame INTEGER,
        label TEXT,
        score REAL,
        threshold REAL NOT NULL,
        defective INTEGER,               -- 1/0, NULL for an unreadable item
        latency_ms REAL,
        error TEXT,
        warning TEXT,                    -- the record's warning (untrustworthy verdict, station check); NULL when none
        extra TEXT                       -- JSON, record fields this schema has no column for (defect_box...)
    );
    CREATE INDEX inspections_time ON inspections(time);
    CREATE INDEX inspections_defective ON inspections(defective, time);
    CREATE TABLE thumbnails (
        inspection_id INTEGER PRIMARY KEY REFERENCES inspections(id) ON DELETE CASCADE,
        jpeg BLOB NOT NULL
    );
    """,
    # the model file's SHA-256, as loaded (edge-infer --summary's model_sha256): the path alone named whatever file
    # lay there later. NULL for the runs logged before: no hash was taken of what judged them
    "ALTER TABLE runs ADD COLUMN model_sha256 TEXT",
]
SCHEMA_VERSION = len(MIGRATIONS)
# The oldest schema edge-log reads as it is: a reader never writes, so it does not migrate (a station's log is often
# not the reader's to write); what a newer schema added reads as unknown (NULL) for such a log.
READABLE_SINCE = 1
SHM_BYTES = 32768  # the index file (-shm) a working WAL connection maps: one 32 KiB region at least


def connect(path: Path | str, *, readonly: bool = False, timeout_s: float = 2.0) -> sqlite3.Connection:
    """Open (and create or migrate, unless ``readonly``) an inspection log. Raises :class:`OutputError` (exit 7);
    read (``readonly``), a missing or foreign file is :class:`DataError` (exit 3): the log is the input then.

    ``timeout_s`` is how long a write waits for another writer before the log counts as locked.
    """
    try:
        if readonly:
            if not Path(path).is_file():
                raise DataError(f"{path}: no inspection log there; pass the file that edge-infer --log wrote")
            before = runs_in_file(path) if wal_holds_frames(path) else None  # first: see wal_match
            con, version = _reader(path, timeout_s)
            try:
                check_version(path, version, writable=False)
                check_own_wal(path, con, before)
            except BaseException:
                _close(con)
                raise
            return con
        if str(path) != ":memory:":
            if len(os.fsencode(Path(path).name)) > 255:  # SQLite says only "unable to open"
                raise OutputError(f"{path}: inspection log file name too long (over 255 bytes); use a shorter --log")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        creating = str(path) != ":memory:" and not os.path.lexists(path)
        con = sqlite3.connect(str(path), timeout=timeout_s, isolation_level=None, check_same_thread=False)
        try:
            _prepare(con, path, creating=creating)
        except sqlite3.Error as exc:
            error = log_error(path, exc, "opening it", creating=creating)  # the disk's room before the close frees any
            _close(con)
            raise error from exc
        except BaseException:
            _close(con)  # its files can then be removed (InspectionLog removes a log it could not make)
            raise
        return con
    except sqlite3.Error as exc:
        error = read_error(path, exc, "opening it") if readonly else log_error(path, exc, "opening it")
        code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        if readonly and (code in (SQLITE_NOTADB, SQLITE_CORRUPT) or "not a database" in str(exc).lower()):
            # read (edge-log): the log is the input, so bad data (exit 3), and edge-log takes no --log
            error = DataError(
                log_cut_short(path)
                or f"{path}: not a defect-edge inspection log, or damaged; pass the file that edge-infer --log wrote"
            )
        elif (
            readonly
            and code in (SQLITE_READONLY, SQLITE_CANTOPEN)
            and not os.access(Path(path).resolve().parent, os.W_OK)
        ):
            # a killed station's write-ahead file still holds items, and SQLite needs to write beside the log to
            # read them: the advice was "use another --log", an option edge-log does not have
            error = OutputError(
                f"{path}: its write-ahead file ({Path(path).name}-wal, left by a station that was stopped abruptly) "
                "still holds items, which cannot be read in a folder you cannot write; copy both files to a "
                "writable folder and read the copy, or read it as the station's user"
            )
        raise error from exc
    except OSError as exc:
        raise OutputError(
            f"{path}: cannot create the inspection log ({exc.strerror or exc}); use another --log"
        ) from exc


def _prepare(con: sqlite3.Connection, path: Path | str, *, creating: bool) -> None:
    """WAL mode and the schema, on a new connection of a writer."""
    # Deleted rows' pages go back to the disk (retention). Only a new, empty file takes this, and only before
    # WAL mode is set: after it, SQLite kept auto_vacuum off and --log-max never shrank the file.
    con.execute("PRAGMA auto_vacuum=INCREMENTAL")
    mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(path) != ":memory:" and str(mode).lower() != "wal":
        if (full := full_disk(path, creating=creating)) is not None:  # no room for the write-ahead files
            raise OutputError(f"{path}: inspection log {full} (while opening it)")
        raise OutputError(f"{path}: inspection log cannot use WAL mode (journal mode {mode}); use a local disk")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("PRAGMA foreign_keys=ON")
    migrate(con, path)


def _close(con: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        con.close()


def _open_readonly(path: Path | str, timeout_s: float, *, immutable: bool) -> sqlite3.Connection:
    """A connection that cannot change the log. Where this user may write the log and its folder, and no
    write-ahead file holds pages, it is opened read-write with ``query_only``: the last connection to close then
    removes the ``-wal`` and ``-shm`` files, as a writer's does; a ``mode=ro`` reader left an empty ``-wal`` and a
    32 KiB ``-shm`` beside a closed log."""
    resolved = Path(path).resolve()
    # not where a write-ahead file holds pages: closing, the last connection would copy them into the log, and
    # that file may be a stale one (see wal_match); a station's own is copied by the station
    writable = os.access(resolved, os.W_OK) and os.access(resolved.parent, os.W_OK) and not wal_holds_frames(path)
    mode = "immutable=1" if immutable else "mode=rw" if writable else "mode=ro"
    con = sqlite3.connect(f"{resolved.as_uri()}?{mode}", uri=True, timeout=timeout_s, check_same_thread=False)
    con.execute("PRAGMA query_only=1")
    return con


def _reader(path: Path | str, timeout_s: float) -> tuple[sqlite3.Connection, int]:
    """A reader's connection and the log's schema version. Where it fails, the ``-wal`` and ``-shm`` it made are
    removed again; on a full disk (SQLite's "disk I/O error": the index file could not grow) the line says so (it
    said "check the disk and the file", and left an empty ``-wal`` and a 3-byte ``-shm`` beside the log)."""
    made = (not os.path.lexists(f"{path}-wal"), not os.path.lexists(f"{path}-shm"))
    con = None
    try:
        con = _open_readonly(path, timeout_s, immutable=False)
        return con, con.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.OperationalError as exc:
        code, text = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF, str(exc).lower()
        spaceless = code in (SQLITE_FULL, SQLITE_IOERR) or "disk" in text
        full = full_disk(path, reading=True) if spaceless else None  # before the removal frees any
        if con is not None:
            _close(con)
        _remove_unused(path, made)
        if not _needs_immutable(path, exc):
            if full is not None:
                raise OutputError(f"{path}: inspection log {full} (while opening it)") from exc
            raise
    con = _open_readonly(path, timeout_s, immutable=True)
    return con, con.execute("PRAGMA user_version").fetchone()[0]


def _remove_unused(path: Path | str, made: tuple[bool, bool]) -> None:
    """Remove the ``-wal`` and ``-shm`` a failed reader made (``made``: which of the two) where they hold nothing:
    an empty ``-wal``, and a ``-shm`` short of the 32 KiB index a working connection maps. Both stay where a
    ``-shm`` of that size is there: a writer opened the log meanwhile and uses them."""
    files = (Path(f"{path}-wal"), Path(f"{path}-shm"))
    sizes = []
    for file in files:
        try:
            sizes.append(file.stat().st_size)
        except OSError:
            sizes.append(None)
    if sizes[1] is not None and sizes[1] >= SHM_BYTES:
        return
    for file, was_made, size, most in zip(files, made, sizes, (0, SHM_BYTES - 1), strict=True):
        if was_made and size is not None and size <= most:
            with contextlib.suppress(OSError):
                file.unlink()


def _needs_immutable(path: Path | str, exc: sqlite3.OperationalError) -> bool:
    """A log no writer has open, in a folder this user cannot write (a station's log read by a quality engineer
    on another account): SQLite refuses even a read-only connection, because a WAL log needs its index file
    (``-shm``) made beside it. Read as a file that does not change, it gives every committed item: a writer that
    stops checkpoints its write-ahead file into the log and removes it. Not where that file still holds items
    (a writer that was killed): those would be left out silently, so the error stands.
    """
    code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    if code not in (SQLITE_READONLY, SQLITE_CANTOPEN) or os.access(Path(path).resolve().parent, os.W_OK):
        return False
    wal = Path(f"{path}-wal")
    return not (wal.exists() and wal.stat().st_size > 0)


@contextlib.contextmanager
def snapshot(con: sqlite3.Connection) -> Iterator[None]:
    """One read transaction: its statements read the log as it was at the first. Apart, a station's retention
    between two made a summary count 40 items, then rank latencies among none ("unexpected TypeError", exit 1)."""
    began = not con.in_transaction
    if began:
        con.execute("BEGIN")  # deferred: reads nothing yet, so it cannot fail on the file
    try:
        yield
    finally:
        if began:
            with contextlib.suppress(sqlite3.Error):
                con.execute("COMMIT")


def check_version(path: Path | str, version: int, *, writable: bool) -> None:
    if version < 0:  # no defect-edge writes one: edge-log advised a migration, which cannot start from it
        if writable:
            raise OutputError(f"{path}: not an inspection log this defect-edge can use (schema {version}, which no "
                              "defect-edge writes); use another --log")  # fmt: skip
        raise DataError(f"{path}: not an inspection log this defect-edge can read (schema {version}, which no "
                        "defect-edge writes); pass the file that edge-infer --log wrote")  # fmt: skip
    if version > SCHEMA_VERSION:
        error = OutputError if writable else DataError  # read (edge-log), the log is the input: bad data, exit 3
        raise error(
            f"{path}: inspection log has schema {version}, newer than this defect-edge ({SCHEMA_VERSION}); upgrade"
        )
    if not writable and version == 0:
        if (missing := missing_wal(path)) is not None:
            raise DataError(missing)
        raise DataError(
            f"{path}: not a defect-edge inspection log (no schema); pass the file that edge-infer --log wrote"
        )
    if not writable and version < READABLE_SINCE:
        raise OutputError(f"{path}: inspection log has schema {version}; run edge-infer --log on it once to migrate it")


def migrate(con: sqlite3.Connection, path: Path | str) -> int:
    """Bring the log to :data:`SCHEMA_VERSION`, one migration per transaction (a new log: all in one, made at the
    newest schema); returns the version it found."""
    found = con.execute("PRAGMA user_version").fetchone()[0]
    if found == 0 and con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise OutputError(f"{path}: is an SQLite file but not an inspection log; use another --log")
    check_version(path, found, writable=True)
    version = found
    while version < SCHEMA_VERSION:
        version = _migrate_step(con)
    check_version(path, version, writable=True)  # a newer defect-edge sharing the log migrated it meanwhile
    return found


def _migrate_step(con: sqlite3.Connection) -> int:
    """One transaction of :func:`migrate`; returns the version the log is at after it."""
    con.execute("BEGIN IMMEDIATE")
    try:
        # read again under the lock: another station sharing the log, started at the same moment, may have
        # migrated it since; its migration was run a second time ("duplicate column name", exit 7)
        version = con.execute("PRAGMA user_version").fetchone()[0]
        # a new log in one step: each step's commit wrote its pages again (a log made on a nearly full disk then
        # failed where it had fitted)
        upto = SCHEMA_VERSION if version == 0 else min(version + 1, SCHEMA_VERSION)
        for step in range(version, upto):
            for statement in _statements(MIGRATIONS[step]):
                con.execute(statement)
        if upto > version:
            con.execute(f"PRAGMA user_version={upto}")
        con.execute("COMMIT")
    except BaseException:
        # SQLite rolls back by itself on some errors (a full disk): a second ROLLBACK then failed with "cannot
        # rollback - no transaction is active", and that hid the real cause
        if con.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
        raise
    return max(version, upto)


def _statements(script: str) -> list[str]:
    """Split a migration into statements (no semicolons inside our SQL's strings), dropping comments."""
    text = re.sub(r"--[^\n]*", "", script)
    return [s.strip() for s in text.split(";") if s.strip()]
