"""The inspection log's errors told as sentences: what went wrong with the file, and what to do (exit 7 for a log
being written, exit 3 for one that is read).

>>> log_error("station.db", sqlite3.OperationalError("database is locked"), "writing 32 records")  # doctest: +SKIP
OutputError('station.db: inspection log is locked by another program ...')
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from edge_runtime.atomic import disk_room
from edge_runtime.errors import DataError, OutputError
from edge_runtime.station.wal_match import wal_holds_frames

# sqlite3 error codes (Python 3.11 exposes them as ``sqlite_errorcode``; the primary code is the low byte).
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY, SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL = 5, 6, 8, 10, 11, 13
SQLITE_CANTOPEN, SQLITE_NOTADB = 14, 26
# A write to the log that fails with less room than this left failed for the room: one transaction needs its pages
# in the write-ahead file (a batch with thumbnails: some 100 KB) and SQLite's 32 KiB index beside it.
FULL_DISK_BYTES = 1 << 20


def read_error(path: Path | str, exc: sqlite3.Error, doing: str) -> DataError:
    """:func:`log_error` for a log that is read (``edge-log``): the log is the input, so bad data (exit 3), and the
    advice fits a reader (it said "use another --log", an option edge-log does not have)."""
    code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    text = str(exc).lower()
    if code in (SQLITE_BUSY, SQLITE_LOCKED) or "locked" in text:
        why = "is locked by another program (a writer that holds it without committing); read it once that is done"
    elif code in (SQLITE_NOTADB, SQLITE_CORRUPT) or "not a database" in text or "malformed" in text:
        if (cut := log_cut_short(path)) is not None:
            return DataError(f"{cut} (while {doing})")
        why = "is damaged (or not a defect-edge inspection log); restore it from a backup"
    else:
        why = f"cannot be read ({exc}); check the disk and the file"
    return DataError(f"{path}: inspection log {why} (while {doing})")


def log_cut_short(path: Path | str) -> str | None:
    """The message for a log file shorter than its header says (a copy cut by a full disk or a dropped
    connection), or None. Not where a write-ahead file holds pages: a live log's checkpoint may lag its header.
    SQLite says only "file is not a database" or "malformed": it was "not a defect-edge inspection log, or damaged;
    pass the file that edge-infer --log wrote", of that very file."""
    try:
        with open(path, "rb") as f:
            head = f.read(100)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return None
    if len(head) < 100 or not head.startswith(b"SQLite format 3\x00") or wal_holds_frames(path):
        return None
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages, counter, valid_for = (int.from_bytes(head[i : i + 4], "big") for i in (28, 24, 92))
    if counter != valid_for or size >= pages * page:  # a header size SQLite itself would not trust, or no cut
        return None
    return (f"{path}: inspection log cut short: {size} bytes of the {pages * page} its header names (a copy "
            "interrupted, or made onto a full disk?); the items past the cut are lost from this file: copy it again "
            "if it is a copy, or restore it from a backup")  # fmt: skip


def log_error(path: Path | str, exc: sqlite3.Error, doing: str, *, creating: bool = False) -> OutputError:
    """One sentence (exit 7) for what went wrong with the log, naming the file and what to do. ``creating``: a log
    this run is making (removed again when it fails), where any error may be the disk filling up."""
    code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    text = str(exc).lower()
    spaceless = creating or code in (SQLITE_FULL, SQLITE_IOERR) or "full" in text or "disk i/o error" in text
    if spaceless and (full := full_disk(path, creating=creating)) is not None:
        why = full
    elif code in (SQLITE_BUSY, SQLITE_LOCKED) or "locked" in text:
        why = "is locked by another program (a writer that never commits); stop it or use another --log"
    elif code == SQLITE_READONLY or "readonly" in text or "read-only" in text:
        why = "is read-only; fix its permissions (file and folder) or use another --log"
    elif code == SQLITE_FULL or "full" in text:
        why = "cannot grow: the disk (or the database's size limit) is full; free space or lower --log-max"
    elif code in (SQLITE_NOTADB, SQLITE_CORRUPT) or "not a database" in text or "malformed" in text:
        why = "is not a defect-edge inspection log or is damaged; use another --log"
    elif code == SQLITE_CANTOPEN or "unable to open" in text:
        why = _cannot_open(path)
    elif "disk i/o error" in text and (limit := _file_size_limit()) is not None:
        # a write past `ulimit -f` (EFBIG) reaches SQLite as an I/O error: "check the disk" could not help
        why = (f"failed ({exc}): it may not grow past the file-size limit of {limit} bytes (ulimit -f); raise the "
               "limit or lower --log-max")  # fmt: skip
    else:
        why = f"failed ({exc}); check the disk and the file"
    return OutputError(f"{path}: inspection log {why} (while {doing})")


def _cannot_open(path: Path | str) -> str:
    """Why SQLite could not open the log ("unable to open database file" names no cause), told from its folder:
    it had said "missing folder or no permission" for a log on a read-only mount too."""
    folder = Path(path).absolute().parent
    if not folder.is_dir():
        return f"cannot be opened: its folder {folder} does not exist; create it or use another --log"
    with contextlib.suppress(OSError, AttributeError):  # statvfs: not on Windows
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"cannot be opened: {folder} is on a read-only file system; put --log on a writable disk"
    if not os.access(folder, os.W_OK | os.X_OK):  # the log's -wal and -shm files are made beside it
        return f"cannot be opened: no permission to write in {folder}; fix its permissions or use another --log"
    return "cannot be opened (missing folder or no permission); use another --log"


def full_disk(path: Path | str, *, creating: bool = False, reading: bool = False) -> str | None:
    """The failure told as the full disk it is, or None where the disk has room (or cannot be asked). A full disk
    reaches SQLite as "database or disk is full", as "disk I/O error" (its index file, ``-shm``, could not grow) or,
    while the schema is made, as whatever the statement that failed says: each said "check the disk".
    ``reading``: a reader's connection (edge-log), which needs room for the index file alone."""
    if str(path) == ":memory:" or (room := disk_room(Path(path).absolute().parent)) is None or room >= FULL_DISK_BYTES:
        return None
    if reading:
        return (
            f"cannot be read: the disk is full ({room} bytes left), and a reader needs room beside the log for its "
            "index file (-shm); free space there, or copy the log to another disk and read the copy"
        )
    if creating:
        return f"cannot be created: the disk is full ({room} bytes left); free space there or put --log on another disk"
    return f"cannot grow: the disk is full ({room} bytes left); free space there or lower --log-max"


def _file_size_limit() -> int | None:
    """This process's file-size limit in bytes (``ulimit -f``), None when there is none."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else int(soft)
