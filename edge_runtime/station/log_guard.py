"""What another program can do to a running station's log files, and how the writer tells it.

A log emptied in place (``: > station.db``, logrotate's copytruncate) lost its records, and one cut to another
length (``truncate -s 8192 station.db``) those past the cut: the writer stops (exit 7). Its write-ahead files deleted
(``rm station.db-wal station.db-shm``) hid the newest items from ``edge-log`` and lost them to a SIGKILL: the writer
copies them into the log and makes new ones once no other process has the log open (:func:`alone`).

>>> held = os.open("station.db", os.O_RDONLY)     # doctest: +SKIP
>>> suspect(held) is None  # a log with its header; an emptied one gives (its size, 0)  # doctest: +SKIP
True
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edge_runtime.atomic import write_back_path
from edge_runtime.errors import OutputError
from edge_runtime.station.schema import log_error
from edge_runtime.station.wal_index import Unsettled, missing_pages

if TYPE_CHECKING:
    from edge_runtime.station.log_parts import Checkpointer

SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
HEADER = 100  # the database header, on page 1
LOCKS = Path("/proc/locks")  # every POSIX lock of the machine (Linux): an open SQLite connection holds one

FileId = tuple[int, int]  # (st_dev, st_ino)


def _looks(held: int) -> tuple[int, bytes]:
    return os.fstat(held).st_size, os.pread(held, HEADER, 0)


def suspect(held: int) -> tuple[int, int] | None:
    """(file size, 0) when the file held as ``held`` lost its header (emptied, or cut inside it), else None. Reads
    100 bytes and stats: microseconds.

    A file shorter than the size its header names is not taken for a cut one: a checkpoint writes page 1, which
    names the new size, before the pages that make the file that long, and another station's checkpoint on a slow
    disk, or one a reader's older snapshot stopped part-way while --log-max shrank the log, left a whole log short
    for seconds or for good. Checked that way, healthy stations stopped with exit 7 (5 runs of 5 with --log-max,
    the station page and edge-log reading)."""
    try:
        size, head = _looks(held)
    except OSError:
        return None
    if head[:16] != SQLITE_MAGIC or size < HEADER:  # emptied (0 bytes), or cut inside the header
        return size, 0
    return None


def damage_message(path: Path | str, size: int, _: int = 0) -> str:
    keep = "keep the log whole while a station writes it (--log-keep and --log-max trim it)"
    how = "emptied" if size == 0 else f"cut to {size} bytes, inside its header,"
    return (f"{path}: inspection log {how} during the run by another program (a clean-up job, logrotate's "
            "copytruncate?): the records in it before are lost and the log is damaged; the items judged are on "
            f"stdout or in --output; {keep}")  # fmt: skip


def cut_message(path: Path | str, size: int, whole: int) -> str:
    return (f"{path}: inspection log cut to {size} bytes of its {whole} during the run by another program (truncate, "
            "a clean-up job?): the records past the cut are lost and the log is damaged; the items judged are on "
            "stdout or in --output; keep the log whole while a station writes it (--log-keep and --log-max trim "
            "it)")  # fmt: skip


def file_id(path: Path | str) -> FileId | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def held_id(held: int) -> FileId | None:
    try:
        st = os.fstat(held)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def side_files(path: Path | str) -> tuple[FileId | None, FileId | None]:
    """The ``-wal`` and ``-shm`` files beside the log now (None: not there)."""
    return file_id(f"{path}-wal"), file_id(f"{path}-shm")


def alone(held: int) -> bool:
    """Whether no other process has the log open (each SQLite connection holds a read lock on it while open).
    Another station writing it still writes the deleted files, and a reader that opened it since (edge-log, the
    station page) may have made its index of the write-ahead file before this run emptied it: either, joined by the
    new files, would damage the log. False where the system does not list its locks (only Linux does)."""
    try:
        st = os.fstat(held)
        lines = LOCKS.read_text().splitlines()
    except OSError:
        return False
    me, dev, ino = os.getpid(), (os.major(st.st_dev), os.minor(st.st_dev)), st.st_ino
    for line in lines:  # "1: POSIX  ADVISORY  READ 32473 fe:00:2172216 1073741826 1073742335"
        fields = line.split()
        if "->" in fields:  # a request waiting for a lock: the same fields, shifted
            fields = fields[fields.index("->") + 1 :]
        with contextlib.suppress(ValueError, IndexError):
            major, minor, inode = fields[5].split(":")
            if (int(major, 16), int(minor, 16)) == dev and int(inode) == ino and int(fields[4]) != me:
                return False
    return True


def side_files_message(path: Path | str, *, renewed: bool) -> str:
    name = Path(path).name
    told = (f"{path}: its write-ahead files ({name}-wal, {name}-shm, which hold the newest items) were deleted during "
            "the run by another program (a clean-up job?); ")  # fmt: skip
    if renewed:
        told += "their items were copied into the log and new ones made, nothing is lost; "
    else:
        why = ("another program has the log open (another station?)" if LOCKS.exists() else
               "this system cannot tell whether another program has the log open")  # fmt: skip
        told += (f"no new ones are made while {why}, so this run writes on into the deleted ones: edge-log misses "
                 "up to 10 s of items, and a SIGKILL would lose them; ")  # fmt: skip
    return told + f"never delete {name}-wal or {name}-shm while a station writes the log"


class WatchedFiles:
    """The checks of :class:`~edge_runtime.station.log.InspectionLog` on its files, made at each write and at the
    end of the run."""

    path: Path
    con: sqlite3.Connection
    held: int  # a descriptor of the log file, held for the run (-1: none)
    index_held: int  # one of its WAL index (-shm) as this run's connection opened it (-1: none)
    damage: str | None
    sides: tuple[FileId | None, FileId | None]
    next_renewal: float
    side_files_since: float | None  # when this run found its write-ahead files deleted, until it made new ones
    side_files_told: bool
    checkpointer: Checkpointer
    say: Callable[[str], None]
    _lock: threading.RLock

    def _open(self) -> None: ...

    def _checkpointer(self) -> Checkpointer: ...

    def _check_whole(self) -> None:
        """A log emptied in place during the run (``: > station.db``, logrotate's copytruncate) lost its records, and
        the run went on writing into a damaged file (edge-log could read none of its items). It stops here (exit 7).
        The file's header is read through the descriptor held for the run (microseconds a batch)."""
        message = self._look_for_damage()
        if message is not None:
            raise OutputError(message)

    def _look_for_damage(self) -> str | None:
        """What another program did to the log file (kept: the checkpoints that would write into it are skipped)."""
        if self.damage is not None or self.held < 0 or (found := suspect(self.held)) is None:
            return self.damage
        self.damage = damage_message(self.path, *found)
        return self.damage

    def _look_for_cut(self) -> str | None:
        """A log cut short under the run (``truncate -s 8192 station.db``) lost the records past the cut; the run
        went on writing, and its next checkpoint filled the gap with zeros, which edge-log then read as a damaged
        log (exit 0, the cut never told). Called before each checkpoint this process makes (a stat and a 136-byte
        read of the WAL index): the cut is told by the pages it took, not by the file's size, which a healthy log
        falls short of while its checkpoints catch up (see :mod:`edge_runtime.station.wal_index`). Raises
        :class:`~edge_runtime.station.wal_index.Unsettled` where commits kept changing the index while it looked."""
        if self.damage is not None or self.held < 0 or self.index_held < 0:
            return self.damage
        if side_files(self.path) != self.sides:  # deleted under the run: another station may write other ones
            return None
        found = missing_pages(self.held, self.index_held)
        if found is not None:
            self.damage = cut_message(self.path, *found)
        return self.damage

    def _cut_found(self) -> str | None:
        """:meth:`_look_for_cut` where no checkpoint depends on it (the end of the run, a failed write)."""
        try:
            return self._look_for_cut()
        except Unsettled:
            return None

    def _whole(self) -> bool:
        """Whether a checkpoint may copy into the log: not into one emptied or cut under the run (it would hide it),
        nor while the look was unsettled (the next checkpoint looks again)."""
        try:
            return self._look_for_damage() is None and self._look_for_cut() is None
        except Unsettled:
            return False

    def _failure(self, exc: sqlite3.Error, doing: str, *, creating: bool = False) -> OutputError:
        """What failed: a log cut under the run, whose pages past the cut read as zeros, is told as such (it was
        "not a defect-edge inspection log or is damaged; use another --log"), else as SQLite says."""
        cut = self._cut_found() if not creating else None
        return OutputError(cut) if cut is not None else log_error(self.path, exc, doing, creating=creating)

    def _release_index(self) -> None:
        """Close the WAL index's descriptor, only once this process's connections to the log are closed: closing
        any descriptor of a file drops every lock the process holds on it, SQLite's too."""
        if self.index_held >= 0:
            os.close(self.index_held)
            self.index_held = -1

    def _check_side_files(self, *, at_end: bool = False) -> None:
        """The log's write-ahead files deleted under the run (``rm station.db-wal station.db-shm``): this run went
        on writing into the deleted ones, edge-log read the log without their items, and a SIGKILL lost them (2816
        of 12160 items in a video run). Their items are copied into the log here, and the log is opened anew, which
        makes new files where edge-log finds them (2 stats a batch: microseconds). ``at_end``: told in any case."""
        now = time.monotonic()
        if self.held < 0 or side_files(self.path) == self.sides or (now < self.next_renewal and not at_end):
            return
        if held_id(self.held) != file_id(self.path):
            return  # the log itself moved (logrotate: it took its files along) or was deleted (told at the end)
        self.next_renewal = now + 1.0  # a reader is done within a second; a station sharing the log is not
        self.side_files_since = self.side_files_since or now
        if self._renew():
            self.side_files_since = None
            self.say(side_files_message(self.path, renewed=True))
        elif (at_end or now - self.side_files_since > 5.0) and not self.side_files_told:
            self.side_files_told = True
            self.say(side_files_message(self.path, renewed=False))

    def _renew(self) -> bool:
        if not alone(self.held):
            return False
        self.checkpointer.stop()
        try:
            try:  # every item into the log: the deleted files go with this connection
                busy = self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            except sqlite3.Error as exc:
                raise log_error(self.path, exc, "copying its deleted write-ahead file into it") from exc
            if busy or not alone(self.held):  # one that opened it meanwhile, before the copy: when it is done
                return False
            with contextlib.suppress(sqlite3.Error):
                self.con.close()
            self._open()
            return True
        finally:
            self.checkpointer = self._checkpointer()

    def check_still_there(self) -> None:
        """A log deleted during the run (with its -wal and -shm: a clean-up job, ``rm`` to "reset" it) took every
        record with it while the run went on writing into the unlinked file, exit 0. This connection still reads
        them: they are written back under the log's name (``VACUUM INTO``), and :class:`OutputError` says so."""
        try:
            if self.held < 0 or os.fstat(self.held).st_nlink > 0:  # still in a folder: here, or renamed (logrotate)
                self._cut_found()  # since the last checkpoint
                self._check_whole()
                with self._lock:
                    self._check_side_files(at_end=True)
                return
        except OSError:
            return
        where = write_back_path(Path(self.path))  # beside it where another run made a new log there meanwhile
        with self._lock:
            try:
                where.parent.mkdir(parents=True, exist_ok=True)  # deleted with it (`rm -rf logs/`): made again
                self.con.execute("VACUUM INTO ?", (str(where),))
            except (sqlite3.Error, OSError) as exc:
                raise OutputError(f"{self.path}: inspection log deleted during the run, and its records could not "
                                  f"be written back to {where} ({exc}); they are lost") from exc  # fmt: skip
        raise OutputError(f"{self.path}: inspection log deleted during the run; its records were written back to "
                          f"{where}; keep the log while a station writes it (--log-keep trims it)")  # fmt: skip
