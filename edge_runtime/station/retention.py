"""Retention of the inspection log while a station runs: ``--log-keep`` (this station's items older than it) and
``--log-max`` (the oldest items of any station, until the file fits), with the deleted rows' space given back.
:class:`Retention` is part of :class:`~edge_runtime.station.log.InspectionLog`."""

from __future__ import annotations

import math
import sqlite3
import time
from typing import TYPE_CHECKING

from edge_runtime.clock import EARLIEST

if TYPE_CHECKING:
    from edge_runtime.errors import OutputError
    from edge_runtime.station.log import LogConfig

DELETE_CHUNK = 5000


class Retention:
    """What the log deletes, and when; the log's connection, config and station come from InspectionLog."""

    con: sqlite3.Connection
    cfg: LogConfig
    station: str
    next_retention: float
    retention_deleted: int

    if TYPE_CHECKING:  # log_guard.WatchedFiles's, before this class in InspectionLog's bases

        def _failure(self, exc: sqlite3.Error, doing: str, *, creating: bool = False) -> OutputError: ...

    def used_bytes(self) -> int:
        """Bytes the log's live pages take (free pages and the WAL not counted)."""
        page = self.con.execute("PRAGMA page_size").fetchone()[0]
        count = self.con.execute("PRAGMA page_count").fetchone()[0]
        free = self.con.execute("PRAGMA freelist_count").fetchone()[0]
        return int((count - free) * page)

    def apply_retention(self, now: float | None = None) -> int:
        """Delete this station's items older than ``keep_s``, then the oldest items until the log fits ``max_bytes``;
        returns the count (also added to ``retention_deleted``, which the run's summary tells).

        ``keep_s`` is the station's own: one station's ``--log-keep 1s`` had deleted the other stations' items of a
        shared log. ``max_bytes`` bounds the file, whoever wrote it, so it takes the oldest items of any station."""
        self.next_retention = time.monotonic() + self.cfg.retention_every_s
        if self.cfg.keep_s is None and self.cfg.max_bytes is None:
            return 0
        deleted = 0
        try:
            if self.cfg.keep_s is not None:
                cutoff = (time.time() if now is None else now) - self.cfg.keep_s
                # not items an unset clock stamped 1970: inspected minutes ago, not decades (--log-max still bounds)
                own = "time < ? AND time >= ? AND run_id IN (SELECT id FROM runs WHERE station = ?)"
                deleted += self._delete_where(own, (cutoff, EARLIEST, self.station))
            if self.cfg.max_bytes is not None:
                deleted += self._shrink_to(self.cfg.max_bytes)
            if deleted:
                self._give_back_space()
        except sqlite3.Error as exc:
            raise self._failure(exc, "applying retention") from exc
        self.retention_deleted += deleted
        return deleted

    def _give_back_space(self) -> None:
        """Return the deleted rows' pages to the disk. A log made before auto-vacuum was really on (it was set after
        WAL mode, where SQLite ignores it) is rewritten once with it on: its file never shrank."""
        if self.con.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:  # incremental
            # run to its end: execute() stepped it once, which freed one page
            self.con.executescript("PRAGMA incremental_vacuum;")
            return
        self.con.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self.con.execute("VACUUM")

    def _delete_where(self, where: str, args: tuple, limit: int | None = None) -> int:
        total = 0
        while limit is None or total < limit:
            n = DELETE_CHUNK if limit is None else min(DELETE_CHUNK, limit - total)
            cur = self.con.execute(
                f"DELETE FROM inspections WHERE id IN (SELECT id FROM inspections WHERE {where} ORDER BY id LIMIT ?)",
                (*args, n),
            )
            total += cur.rowcount
            if cur.rowcount < n:
                break
        return total

    def _shrink_to(self, max_bytes: int) -> int:
        """Delete the oldest rows until the live pages fit in 90% of ``max_bytes`` (room to grow before next time)."""
        deleted = 0
        if self.used_bytes() <= max_bytes:
            return 0
        target = 0.9 * max_bytes
        for _ in range(50):
            used = self.used_bytes()
            if used <= target:
                break
            rows = self.con.execute("SELECT count(*) FROM inspections").fetchone()[0]
            if not rows:
                break
            # Half the share the average row would need, each pass: the oldest rows may be the large ones (a
            # defect's picture), and deleting the whole share at once took a 2 MB log to 0.3 MB for --log-max 1MB.
            share = (1.0 - target / used) / 2
            deleted += self._delete_where("1", (), limit=max(1, math.ceil(rows * share)))
        return deleted
