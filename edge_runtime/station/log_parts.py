"""The inspection log's small parts: record times, thumbnails, storable text, and the WAL checkpoint thread."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

THUMB_PX = 128


def epoch(stamp: str | None) -> float:
    """The record's ISO time (``2026-11-25T20:53:53.073Z``) as UTC seconds since the epoch."""
    if not stamp:
        return time.time()
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def thumbnail(picture: np.ndarray, record: dict[str, Any], *, px: int = THUMB_PX, quality: int = 80) -> bytes:
    """A JPEG of the part at most ``px`` on its longest side, with the defect box in red when the record has one."""
    h, w = picture.shape[:2]
    scale = min(1.0, px / max(h, w))
    small = picture
    while max(small.shape[:2]) >= 4 * px:  # halve first: INTER_AREA at odd ratios costs ~10x more than this
        small = cv2.pyrDown(small)
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = cv2.resize(small, size, interpolation=cv2.INTER_LINEAR)
    box = record.get("defect_box")
    if isinstance(box, (list, tuple)) and len(box) == 4:
        if small.ndim == 2:
            small = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
        from edge_runtime.heatmap import visible

        x0, y0, x1, y1 = (round(float(v) * scale) for v in box)
        x0, y0, x1, y1 = visible((x0, y0, x1, y1), small.shape, 10)  # a pinhole's box would be a dot
        cv2.rectangle(small, (x0, y0), (x1 - 1, y1 - 1), (0, 0, 255), 1)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(small), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes() if ok else b""


def storable(text: str | None) -> str | None:
    """``text`` as SQLite can store it: a file name that is not UTF-8 (``caf\\udce9.jpeg``, as Python reads it)
    stopped the run with "unexpected UnicodeEncodeError", exit 1, and left a log without a schema; its bytes are
    written as escapes instead (``caf\\xe9.jpeg``).

    >>> storable("caf\\udce9.jpeg"), storable(None)
    ('caf\\\\xe9.jpeg', None)
    """
    if text is None:
        return None
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def hold(path: Path) -> int:
    """A read-only descriptor of the log file, kept for the run (-1 where it cannot be opened)."""
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return -1


class Checkpointer:
    """Every ``every_s`` seconds, a passive WAL checkpoint on its own connection (never blocks the writer).

    ``copying`` is held while it copies, so that the writer's own truncating checkpoint does not wait on it in the
    inspection loop; ``before`` (called holding it) may skip a checkpoint: one would write the write-ahead file's
    pages into a log emptied under the run."""

    def __init__(
        self,
        path: Path,
        every_s: float = 10.0,
        on_tick: Callable[[], None] | None = None,
        before: Callable[[], bool] | None = None,
    ) -> None:
        self.path, self.every_s, self.on_tick, self.before = path, every_s, on_tick, before
        self.copying = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="log checkpoints", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            con = sqlite3.connect(str(self.path), timeout=0.05, check_same_thread=False)
        except sqlite3.Error:  # the writer reports a log that cannot be opened
            return
        while not self._stop.wait(self.every_s):
            with self.copying, contextlib.suppress(sqlite3.Error):  # busy: next time; a full disk fails the writer
                if self.before is None or self.before():
                    con.execute("PRAGMA wal_checkpoint(PASSIVE)")
            if self.on_tick is not None and not self._stop.is_set():
                self.on_tick()
        con.close()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5.0)


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
