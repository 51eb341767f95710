"""The inspection side of the live view: what ``edge-infer``'s loop hands to the web view's process.

The web view (Starlette, uvicorn, the JPEG encoder) runs in a process of its own (see
:class:`~edge_runtime.station.server.StationServer`): in the inspection process any thread that holds the GIL
can keep the inspection thread waiting up to ``sys.getswitchinterval()`` (5 ms). What stays here is
:class:`LiveFeed`: each call of the loop (``start``, ``add``, ``event``, ``finish``) appends one small message to
a deque and keeps a reference to the newest picture. No lock, no pickling, no system call, nothing that can
block. A sender thread ships the messages every 50 ms over a pipe; it adds the newest picture only while someone
watches the stream, at most ``max_fps`` times a second, and a defective item's picture only when there is no
log to read thumbnails from.

>>> feed = LiveFeed(station="line-3")
>>> feed.add([{"defective": True, "score": 0.9, "label": "defective", "latency_ms": 0.5, "error": None}], [None])
>>> len(feed.pending)    # waiting for the web view's process (StationServer.start attaches it)
1
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any

import numpy as np

from edge_runtime.station.log import RunInfo

# While more messages than this wait (the view process is behind), defective items' pictures are left out:
# the gallery shows the last 24 anyway, and pictures are what would fill the memory.
PICTURE_BACKLOG = 64
# A view process that stops reading altogether (about half an hour at 30 FPS): further items are counted in
# ``dropped`` instead of queued. Inspection never waits for the view.
MAX_BACKLOG = 50_000
LAST_SEND_S = 2.0  # what is left is sent at the stop within this, or the view is given up (see LiveFeed.stop)


class Kind(str, Enum):
    """The messages from the inspection process to the web view's process."""

    START = "start"  # (RunInfo, live_source)
    ADD = "add"  # (records, gallery pictures or None, log ids or None, monotonic time, wall time)
    EVENT = "event"  # (source message,)
    FINISH = "finish"  # (interrupted, error, failure)


class LiveFeed:
    """Counters, records and pictures of the running inspection, on their way to the web view's process."""

    def __init__(self, *, station: str, max_fps: float = 10.0, keep_pictures: bool = True) -> None:
        self.station, self.max_fps, self.keep_pictures = station, max_fps, keep_pictures
        self.info: RunInfo | None = None
        self.pending: deque[tuple] = deque()
        self.newest: tuple[np.ndarray, dict] | None = None
        self.dropped = 0  # messages not queued because the view process stopped reading
        self.broken = False  # the view process is gone; the run goes on without it
        self._conn: Any = None
        self._wanted: Any = None
        self._sent_frame: tuple | None = None
        self._next_frame_t = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_broken: Callable[[str], None] = lambda message: None

    # -- called by the run (inference thread): appends only ------------------------------------------------
    def start(self, info: RunInfo, *, live_source: bool) -> None:
        self.info = info
        self._put((Kind.START, info, live_source))

    def add(
        self, records: Sequence[dict], pictures: Sequence[np.ndarray | None], ids: Sequence[int] | None = None
    ) -> None:
        if self.broken or not records:
            return
        gallery: list[np.ndarray | None] = [None] * len(records)
        if ids is None and self.keep_pictures and len(self.pending) < PICTURE_BACKLOG:
            gallery = [
                pic if rec.get("defective") and rec.get("error") is None else None
                for rec, pic in zip(records, pictures, strict=True)
            ]
        self._put((Kind.ADD, list(records), gallery, None if ids is None else list(ids), time.monotonic(), time.time()))
        if pictures and pictures[-1] is not None:
            self.newest = (pictures[-1], records[-1])  # a reference; sent only while someone watches

    def event(self, message: str) -> None:
        self._put((Kind.EVENT, message))

    def finish(self, *, interrupted: bool = False, error: str | None = None, failure: str | None = None) -> None:
        self._put((Kind.FINISH, interrupted, error, failure))

    def _put(self, message: tuple) -> None:
        if len(self.pending) >= MAX_BACKLOG and message[0] is not Kind.FINISH:  # the run's end always goes
            self.dropped += 1
            return
        self.pending.append(message)
        if self.broken:  # broke while this was put: nothing piles up for a view that is gone
            self.pending.clear()

    # -- the sender thread ------------------------------------------------------------------------------------
    def attach(self, conn: Any, wanted: Any, *, on_broken: Callable[[str], None] | None = None) -> None:
        """Start sending over ``conn`` (a pipe to the view process); ``wanted.value`` is the monotonic time until
        which the view wants frames (it watches the stream)."""
        self._conn, self._wanted = conn, wanted
        self._on_broken = on_broken or self._on_broken
        self.pump()  # what came before the view process was up
        self._thread = threading.Thread(target=self._send_loop, name="station feed", daemon=True)
        self._thread.start()

    def _send_loop(self) -> None:
        period = min(0.05, 0.5 / self.max_fps)
        while not self._stop.wait(period) and self.pump():
            pass

    def pump(self) -> bool:
        """Send what waits (one pickled batch) and, when due, the newest picture; False once the pipe broke."""
        if self.broken or self._conn is None:
            return not self.broken
        batch = []
        while self.pending:
            batch.append(self.pending.popleft())
        frame, now = None, time.monotonic()
        newest = self.newest
        due = newest is not None and newest is not self._sent_frame and now >= self._next_frame_t
        if due and self._wanted.value > now:  # someone watches the stream
            frame, self._sent_frame = newest, newest
            self._next_frame_t = now + 1.0 / self.max_fps
        if not batch and frame is None:
            return True
        try:
            self._conn.send((batch, frame))
        except (OSError, ValueError) as exc:  # the view process ended (or its pipe was closed)
            self.pending.clear()  # before ``broken``: whoever sees it broken sees no backlog (a test read 1 item)
            self.broken = True
            self.pending.clear()  # what an add() that saw it whole put in meanwhile
            self._on_broken(f"station: the live view stopped ({exc.__class__.__name__}); inspection goes on")
            return False
        return True

    def stop(self, wait_s: float = 5.0) -> bool:
        """Send what is left, stop the sender and close the pipe (the view process then ends). Idempotent.

        A view process that stopped reading (hung) leaves its pipe full and a send blocked for good: the last send
        is given ``LAST_SEND_S``, and then the feed is dropped, so that the caller goes on to end the process (a
        stop had waited on the send until SIGKILL). Returns whether the view was given up so."""
        self._stop.set()
        stuck = False
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(wait_s)
            stuck = self._thread.is_alive()
        if self._conn is not None and not stuck:
            last = threading.Thread(target=self.pump, name="station feed, last send", daemon=True)
            last.start()
            last.join(LAST_SEND_S)
            stuck = last.is_alive()
        if stuck:  # the blocked send ends when StationServer ends the view process
            self.pending.clear()
            self.broken = True
            return True
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None
        return False
