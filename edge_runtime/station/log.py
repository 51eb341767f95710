"""Writing the inspection log: one row per item, a small JPEG for each defective part, retention while running.

The caller commits a batch of records with :meth:`InspectionLog.write` *before* it writes them anywhere else,
so every record that reached stdout or ``--output`` is in the log even after a SIGKILL. A write that fails
(locked, read-only or full database) raises :class:`~edge_runtime.errors.OutputError` (exit 7): the run stops
rather than leave a silent gap.

>>> log = InspectionLog(LogConfig(Path("station.db"), station="line-3"))        # doctest: +SKIP
>>> log.start_run(RunInfo(source="parts/", model_version="ab12", model_file="m.onnx",
...               providers=["CPUExecutionProvider"], precision="int8", threshold=0.41))  # doctest: +SKIP
>>> ids = log.write(records, pictures)                                          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.atomic import missing_folders, remove_empty
from edge_runtime.errors import OutputError
from edge_runtime.station import log_guard as guard
from edge_runtime.station.log_parts import THUMB_PX, Checkpointer, epoch, file_size, hold, storable, thumbnail
from edge_runtime.station.retention import Retention
from edge_runtime.station.schema import connect, log_error
from edge_runtime.summary import plural

Item = tuple[int, float]  # a row's id and time: the id alone may come again once the newest rows are deleted
COLUMNS = ("source", "frame", "label", "score", "defective", "latency_ms", "error", "warning", "time")


@dataclass(frozen=True)
class LogConfig:
    """Where the log lives and how long it keeps items (``keep_s``) or how large it may grow (``max_bytes``)."""

    path: Path
    station: str = ""  # "" -> the host name
    keep_s: float | None = None
    max_bytes: int | None = None
    thumb_px: int = THUMB_PX
    retention_every_s: float = 60.0
    checkpoint_every_s: float = 10.0  # the WAL checkpoint, and retention when it is due and no item comes
    busy_timeout_s: float = 2.0  # how long a write waits for another writer before the log counts as locked


@dataclass(frozen=True)
class RunInfo:
    """What judged the items of one run: written once per run, referenced by every row."""

    source: str
    model_version: str
    model_file: str
    providers: list[str]
    precision: str
    threshold: float
    model_sha256: str | None = None  # of the model file's bytes as loaded (EdgeModel.sha256); None: not known


class InspectionLog(guard.WatchedFiles, Retention):
    """The writer side of an inspection log (one per process; readers use :mod:`edge_runtime.station.query`)."""

    def __init__(self, cfg: LogConfig, *, say: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.path = cfg.path
        self.station = cfg.station or socket.gethostname()
        self.say = say or (lambda message: print(message, file=sys.stderr, flush=True))
        # made by this run: removed again if no item was ever written to it (a source that never gave a frame)
        self.created = str(cfg.path) != ":memory:" and not os.path.lexists(cfg.path)
        self._made = missing_folders(Path(cfg.path).parent) if self.created else []
        # the files it makes: a stale -wal or -shm that was there before is not this run's to remove
        sides = (str(cfg.path), f"{cfg.path}-wal", f"{cfg.path}-shm")
        self._fresh = [name for name in sides if not os.path.lexists(name)] if self.created else []
        # Checkpoints (copying the WAL into the database and syncing it: milliseconds) run on a helper thread
        # every 10 s, not in a commit of the inspection loop: a sync stalls file writes for a moment, so fewer
        # syncs means fewer slow frames. The WAL is cut back to 32 MB after each (it is reused, not regrown), or to
        # an eighth of --log-max (at least 1 MB): with --log-max 1MB a 32 MB WAL stayed beside the log.
        wal_max = 32 * 2**20 if cfg.max_bytes is None else min(32 * 2**20, max(2**20, cfg.max_bytes // 8))
        self.wal_max, self.next_wal_check = wal_max, 0.0
        self.index_held = -1
        try:
            self._open()
        except BaseException:
            # A log this run could not finish making (a full disk) is removed with its -wal and -shm: a 4 KB file
            # without a schema was left, which edge-log then called "not a defect-edge inspection log". So are the
            # folders made for it (a name SQLite could not open: too long).
            with contextlib.suppress(sqlite3.Error, AttributeError):
                self.con.close()
            self._remove_made()
            raise
        self.held = hold(cfg.path)  # to tell, at the end, a log deleted during the run (not one renamed)
        self.damage: str | None = None  # the log emptied or cut under the run: every later write fails with it
        self.next_renewal, self.side_files_since, self.side_files_told = 0.0, None, False
        self.run_id: int | None = None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="log thumbnails")
        # write() runs on the inspection loop, flush(wait=False) also on a live source's reader thread
        self._lock = threading.RLock()
        self.pending: list[Future] = []
        self.threshold = math.nan
        self.rows = 0
        self.next_retention = 0.0
        self.retention_deleted = 0  # items --log-keep / --log-max deleted during this run
        self.apply_retention()
        self.checkpointer = self._checkpointer()

    def _open(self) -> None:
        """Connect; again when the write-ahead files were deleted under the run (SQLite makes new ones then)."""
        self._release_index()  # the old connection is closed: the descriptor takes none of its locks along
        self.con = connect(self.path, timeout_s=self.cfg.busy_timeout_s)
        self.con.execute("PRAGMA wal_autocheckpoint=0")
        self.con.execute(f"PRAGMA journal_size_limit={self.wal_max}")
        self.sides = guard.side_files(self.path)  # the -wal and -shm this connection made or joined
        # read by the cut check (_look_for_cut); SQLite makes it beside the file a link names
        self.index_held = hold(Path(f"{os.path.realpath(self.path)}-shm"))

    def _checkpointer(self) -> Checkpointer:
        return Checkpointer(self.path, self.cfg.checkpoint_every_s, on_tick=self._idle_retention, before=self._whole)

    def start_run(self, info: RunInfo) -> int:
        """Record the model and source of this run; every row written afterwards refers to it."""
        values = (
            time.time(),
            self.station,
            storable(info.source),
            info.model_version,
            storable(info.model_file),
            json.dumps(list(info.providers)),
            info.precision,
            info.threshold,
            socket.gethostname(),
            os.getpid(),
            info.model_sha256,
        )
        try:
            cur = self.con.execute(
                "INSERT INTO runs (started, station, source, model_version, model_file, providers, precision, "
                "threshold, host, pid, model_sha256) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                values,
            )
        except sqlite3.Error as exc:  # on a log this run made, no item yet: the close removes it
            raise log_error(self.path, exc, "recording the run", creating=self.created) from exc
        self.run_id, self.threshold = int(cur.lastrowid or 0), info.threshold
        return self.run_id

    def write(
        self,
        records: Sequence[dict[str, Any]],
        pictures: Sequence[np.ndarray | None] = (),
        *,
        source_pixels: bool = True,
    ) -> list[int]:
        """Insert ``records`` in one committed transaction; returns their row ids, in order.

        The thumbnails of defective records (those with a picture) are made on a helper thread, off the
        inspection loop, and stored with the next write or by :meth:`flush`: each row is committed before this
        returns, its image follows at most one batch later. ``source_pixels`` False: the pictures are the model's
        inputs, not the source images, so a ``defect_box`` (in source pixels) is not drawn on them. Raises
        :class:`OutputError` when the log cannot be written.
        """
        with self._lock:
            return self._write(records, pictures, source_pixels=source_pixels)

    def _write(
        self, records: Sequence[dict[str, Any]], pictures: Sequence[np.ndarray | None], *, source_pixels: bool
    ) -> list[int]:
        if self.run_id is None:
            raise RuntimeError("start_run() first")
        self._check_whole()
        self._check_side_files()
        ready = self._ready_thumbnails()
        try:
            self.con.execute("BEGIN IMMEDIATE")
            try:
                stamps = [epoch(rec.get("time")) for rec in records]
                ids = [self._insert(rec, stamp) for rec, stamp in zip(records, stamps, strict=True)]
                self._store_thumbnails(ready)
                self.con.execute("COMMIT")
            except BaseException:
                if self.con.in_transaction:
                    self.con.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            doing, creating = f"writing {plural(len(records), 'record')}", self.created and not self.rows
            raise self._failure(exc, doing, creating=creating) from exc
        items = list(zip(ids, stamps, strict=True))
        for item, rec, pic in zip(items, records, list(pictures) or [None] * len(ids), strict=True):
            if rec.get("defective") and pic is not None:
                drawn = rec if source_pixels else {k: v for k, v in rec.items() if k != "defect_box"}
                self.pending.append(
                    self.pool.submit(lambda *a: (a[0], thumbnail(*a[1:], px=self.cfg.thumb_px)), item, pic, drawn)
                )
        self.rows += len(ids)
        if time.monotonic() >= self.next_retention:
            self.apply_retention()
        if time.monotonic() >= self.next_wal_check:
            self._cut_wal()
        return ids

    def _cut_wal(self) -> None:
        """Under steady writing a passive checkpoint never ends with the whole WAL copied before the next write, so
        SQLite never starts the WAL over: it grew to 1.7 GB in a long video run with --log-max 2MB. Past its limit
        it is checkpointed and truncated here, between two writes (a copy of at most that much); a reader that holds
        it (the station page's query) makes this wait 50 ms at most, and the next try comes a second later."""
        if file_size(f"{self.path}-wal") <= self.wal_max:  # a stat per batch: microseconds
            return
        busy = True
        if not self.checkpointer.copying.acquire(blocking=False):  # the helper thread is copying it now
            self.next_wal_check = time.monotonic() + 1.0
            return
        if not self._whole():  # copied, a cut would be hidden: the next write says what happened, or tries again
            self.checkpointer.copying.release()
            self.next_wal_check = time.monotonic() + 1.0
            return
        self.con.execute("PRAGMA busy_timeout=50")
        try:
            with contextlib.suppress(sqlite3.OperationalError):
                busy = bool(self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0])
        except sqlite3.DatabaseError as exc:  # a damaged log: it was "unexpected DatabaseError", exit 1
            raise log_error(self.path, exc, "checkpointing its write-ahead file") from exc
        finally:
            self.checkpointer.copying.release()
            if busy:  # a reader holds the WAL: the next try a second later
                self.next_wal_check = time.monotonic() + 1.0
            self.con.execute(f"PRAGMA busy_timeout={int(self.cfg.busy_timeout_s * 1000)}")

    def _ready_thumbnails(self, *, wait: bool = False) -> list[tuple[Item, bytes]]:
        done = [f for f in self.pending if wait or f.done()]
        self.pending = [f for f in self.pending if not (wait or f.done())]
        return [f.result() for f in done]

    def _store_thumbnails(self, ready: list[tuple[Item, bytes]]) -> None:
        # The row may be gone already (retention), and its id given to a new row (SQLite takes the largest id + 1):
        # once the newest items were deleted (a clock that jumped past --log-keep, a tiny --log-max), a deleted
        # defect's picture went to an OK item, or failed the run (exit 7, "UNIQUE constraint failed").
        self.con.executemany(
            "INSERT OR IGNORE INTO thumbnails (inspection_id, jpeg) SELECT ?, ? WHERE EXISTS "
            "(SELECT 1 FROM inspections WHERE id = ? AND run_id = ? AND time = ?)",
            [(rid, jpeg, rid, self.run_id, stamp) for (rid, stamp), jpeg in ready if jpeg],
        )

    def flush(self, *, wait: bool = True) -> None:
        """Store the thumbnails still being made (``wait``: the end of a run), or those made already (a live source
        that went quiet: its last defect's picture was "pending" on the station page until the next write).
        Raises :class:`OutputError`."""
        with self._lock:
            ready = self._ready_thumbnails(wait=wait)
            if not ready:
                return
            try:
                with self.con:
                    self.con.execute("BEGIN IMMEDIATE")
                    self._store_thumbnails(ready)
            except sqlite3.Error as exc:
                raise log_error(self.path, exc, "storing the last thumbnails") from exc
            if time.monotonic() >= self.next_retention:
                self.apply_retention()

    def last_pass(self) -> None:
        """The last retention pass, before the run's summary counts it (made at the close, after it: untold)."""
        with self._lock:
            if self.rows:
                self.apply_retention()

    def _idle_retention(self) -> None:
        """Retention when it is due, from the checkpoint thread: it ran only with a write, so a station whose line
        stood still (no item) kept items past --log-keep for as long as it stood (all 643 of a 1-minute log after
        2 minutes without a camera). Never waits: a writer or the close holding the log skips this tick."""
        if time.monotonic() < self.next_retention or not self._lock.acquire(blocking=False):
            return
        try:
            if self.run_id is not None and time.monotonic() >= self.next_retention:
                self.apply_retention()
        except OutputError:
            pass  # the next write reports what is wrong with the log
        finally:
            self._lock.release()

    def _insert(self, rec: dict[str, Any], stamp: float) -> int:
        extra = {k: v for k, v in rec.items() if k not in COLUMNS and v is not None}
        defective = rec.get("defective")
        cur = self.con.execute(
            "INSERT INTO inspections (time, run_id, source, frame, label, score, threshold, defective, latency_ms, "
            "error, warning, extra) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                stamp,
                self.run_id,
                storable(str(rec.get("source", ""))),
                rec.get("frame"),
                rec.get("label"),
                rec.get("score"),
                self.threshold,
                None if defective is None else int(bool(defective)),
                rec.get("latency_ms"),
                storable(rec.get("error")),
                storable(rec.get("warning") or None),
                json.dumps(extra) if extra else None,
            ),
        )
        return int(cur.lastrowid or 0)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        with contextlib.suppress(OutputError):  # on_close flushed already unless the run failed
            self.flush()
            if self.rows:  # the items since the last minute's retention: the log ends within --log-max
                self.apply_retention()
        self.pool.shutdown(wait=True)
        self.checkpointer.stop()
        with contextlib.suppress(sqlite3.Error):
            self.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with contextlib.suppress(sqlite3.Error):  # a connection whose disk went away: nothing left to save
            self.con.close()
        if self.held >= 0:  # closed only after SQLite's own: closing a descriptor drops the process's file locks
            os.close(self.held)
            self.held = -1
        self._release_index()
        if self.created and self.rows == 0:  # a refused run (no such source, a video without a frame): no empty log
            self._remove_made()

    def _remove_made(self) -> None:
        """Remove the files this run made for a new log, and the folders it made for it (--log a/b/station.db)."""
        for leftover in self._fresh:
            with contextlib.suppress(OSError):
                os.unlink(leftover)
        remove_empty(self._made)
