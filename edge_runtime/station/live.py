"""What the web view shows now: counters, the newest annotated frame, the last defects.

It lives in the web view's process (:mod:`edge_runtime.station.view_process`), filled from the run's
:class:`~edge_runtime.station.feed.LiveFeed`. An encoder thread draws and JPEG-encodes the newest picture at most
``max_fps`` times a second, and only while someone watches the stream (it then keeps ``wanted`` set, which tells
the run to send pictures).

>>> live = LiveState(station="line-3")
>>> live.add([{"defective": True, "score": 0.9, "label": "defective", "latency_ms": 0.5, "error": None}], [None])
>>> live.status()["items"], live.status()["defective"]
(1, 1)
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_runtime.metrics import nearest_rank
from edge_runtime.station.log import RunInfo
from edge_runtime.station.log_parts import thumbnail
from edge_runtime.summary import no_part

FINAL_STATES = ("finished", "stopped", "lost", "error")
STATE_FOR_EVENT = (
    ("reconnected", "connected"),
    ("lost", "lost"),
    ("reconnect", "reconnecting"),
    ("dropped", "reconnecting"),
    ("failed", "reconnecting"),
)


def encode_frame(picture: np.ndarray, rec: dict[str, Any], *, fps: float | None, max_px: int = 960) -> bytes:
    """The picture with its verdict drawn (as ``--show`` draws it; with ``--heatmap`` the defect's box, not the map),
    as a JPEG no wider than ``max_px``."""
    import cv2

    from edge_runtime.annotate import annotate
    from edge_runtime.model import Prediction

    h, w = picture.shape[:2]
    s = 1.0
    if max(h, w) > max_px:
        s = max_px / max(h, w)
        picture = cv2.resize(picture, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    pred = None
    if rec.get("error") is None and rec.get("score") is not None:
        box = rec.get("defect_box")  # edge-infer --heatmap: in the picture's pixels before the resize above
        shown = tuple(round(float(v) * s) for v in box) if isinstance(box, list | tuple) and len(box) == 4 else None
        pred = Prediction(str(rec["label"]), float(rec["score"]), bool(rec["defective"]), float(rec["latency_ms"]),
                          defect_box=shown)  # fmt: skip
    canvas = annotate(picture, pred, fps=fps, error=str(rec.get("error") or ""))
    ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 75])
    return buf.tobytes() if ok else b""


class LiveState:
    """Counters and recent items of the running inspection, as the web server shows them.

    ``wanted`` (a shared ``multiprocessing`` double, optional) is kept at a monotonic time a second ahead while
    someone watches the stream: the run sends pictures only then.
    """

    def __init__(self, *, station: str, max_fps: float = 10.0, keep_pictures: bool = True, wanted: Any = None) -> None:
        self.station, self.max_fps, self.keep_pictures, self.wanted = station, max_fps, keep_pictures, wanted
        self.lock = threading.Lock()
        self.started = time.time()
        self.started_mono = time.monotonic()  # uptime: a clock set after the start (NTP, no clock battery) moved it
        self.info: RunInfo | None = None
        self.live_source = False
        self.source_state = "starting"
        self.end_error: str | None = None  # why the run ended, where it ended on an error
        self.items = self.defective = self.errors = self.warned = self.unlike = 0
        self.last_unlike: str | None = None  # the station check's reason, from the record's unlike_training
        self.latencies: deque[float] = deque(maxlen=1000)
        # (monotonic time, items) per add: FPS counts the items of the last seconds, however they were batched
        self.stamps: deque[tuple[float, int]] = deque(maxlen=4096)
        self.counting_since: float | None = None  # when the run started (monotonic): FPS's window in its first seconds
        self.last_item_at: float | None = None  # monotonic: a page opened during an outage tells since when
        self.minutes: dict[int, list[int]] = {}  # UTC minute -> [items, defective]
        self.recent: deque[tuple[int, dict]] = deque(maxlen=500)
        self.gallery: deque[tuple[int, dict, np.ndarray | None]] = deque(maxlen=24)
        self.latest: tuple[np.ndarray, dict] | None = None
        self.seq = 0  # of the latest picture
        self.next_id = 1
        self.jpeg: bytes | None = None
        self.jpeg_seq = 0
        self.watchers = 0
        self.wanted_until = 0.0
        self.status_asked = 0.0  # monotonic time of the last status request (the page asks every second)
        self.final_told = False  # a status request was answered with the run's end
        self.final_gallery = False  # ... and the gallery was asked for after that (its last defects)
        self._stop = threading.Event()
        self._encoder = threading.Thread(target=self._encode_loop, name="station encoder", daemon=True)
        self._encoder.start()

    # -- filled from the run's feed ------------------------------------------------------------------------
    def start(self, info: RunInfo, *, live_source: bool) -> None:
        with self.lock:
            self.info, self.live_source = info, live_source
            self.counting_since = time.monotonic()
            self.source_state = "connected" if live_source else "running"

    def add(
        self,
        records: Sequence[dict],
        pictures: Sequence[np.ndarray | None],
        ids: Sequence[int] | None = None,
        *,
        at: tuple[float, float] | None = None,
    ) -> None:
        """Count ``records``; a defective one's picture (when there is no log: ``ids`` None) goes to the gallery.
        ``at``: when the run judged them (monotonic, wall clock), for FPS and the per-minute rate."""
        mono, wall = at if at is not None else (time.monotonic(), time.time())
        now, minute = mono, int(wall // 60)
        with self.lock:
            bucket = self.minutes.setdefault(minute, [0, 0, 0])  # items, defective, errors
            for k, rec in enumerate(records):
                rid = ids[k] if ids else self.next_id
                self.next_id = rid + 1
                self.items += 1
                bucket[0] += 1
                if rec.get("error") is not None:
                    self.errors += 1
                    bucket[2] += 1
                elif rec.get("defective"):
                    self.defective += 1
                    bucket[1] += 1
                    self.gallery.append((rid, rec, None if ids or not self.keep_pictures else pictures[k]))
                if rec.get("latency_ms") is not None:
                    self.latencies.append(rec["latency_ms"])
                if rec.get("warning") or no_part(rec):  # a verdict not to be trusted, as the page's counter says
                    self.warned += 1
                if rec.get("unlike_training"):
                    self.unlike += 1
                    why = rec["unlike_training"]  # the station check's reasons, a list in the record
                    self.last_unlike = "; ".join(map(str, why)) if isinstance(why, list | tuple) else str(why)
                self.recent.append((rid, rec))
            if records:
                self.stamps.append((now, len(records)))
                self.last_item_at = now
                if self.counting_since is None:
                    self.counting_since = now
            if self.live_source:
                self.source_state = "connected"
            if len(self.minutes) > 1500:  # keep a day and a bit
                for old in sorted(self.minutes)[:-1440]:
                    del self.minutes[old]

    def show(self, picture: np.ndarray, record: dict) -> None:
        """The newest picture and its record, for the stream."""
        with self.lock:
            self.latest = (picture, record)
            self.seq += 1

    def event(self, message: str) -> None:
        low = message.lower()
        with self.lock:
            for word, state in STATE_FOR_EVENT:
                if word in low:
                    self.source_state = state
                    break

    def finish(self, *, interrupted: bool = False, error: str | None = None, failure: str | None = None) -> None:
        """The run's end: ``error`` the source lost, ``failure`` an output or the log that failed (exit 7: the page
        said "finished", and a camera gate stopped on a locked log read as a normal end)."""
        with self.lock:
            self.source_state = "error" if failure else "lost" if error else "stopped" if interrupted else "finished"
            self.end_error = failure or error

    def linger(self, max_s: float = 2.5, *, polled_within_s: float = 3.0) -> None:
        """After the run has ended: while a page that was polling has not yet been told so, keep serving (at most
        ``max_s``). The page then shows the run's end and its final counts ("finished", "lost"), not the state of
        its last poll before the view closed."""
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            with self.lock:
                # the gallery too: the page that showed the end lacked the run's last defects, one "pending" for good
                told = self.final_told and self.final_gallery
                running, asked = self.source_state not in FINAL_STATES, self.status_asked
            if running:
                return
            if told:
                time.sleep(0.2)  # the answer to that last request is on its way
                return
            if time.monotonic() - asked > polled_within_s:
                return
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._encoder.join(2.0)

    # -- read by the server ---------------------------------------------------------------------------------
    def fps(self, now: float | None = None, window_s: float = 2.0) -> float:
        """Items judged per second over the last ``window_s`` (over the time since the run started, in its first
        seconds). Items judged in one batch share one stamp, so the count is divided by the window, not by the
        time between the first and the last stamp in it (a folder's batches of 64 gave thousands of FPS)."""
        now = time.monotonic() if now is None else now
        n = sum(k for t, k in self.stamps if 0 <= now - t <= window_s)
        since = self.counting_since if self.counting_since is not None else now
        span = min(window_s, now - since)
        if n == 0 or span < 0.2:  # no item, or too soon to tell a rate
            return 0.0
        return round(n / span, 1)

    def status(self) -> dict[str, Any]:
        with self.lock:
            self.status_asked = time.monotonic()
            self.final_told = self.final_told or self.source_state in FINAL_STATES
            lat, info = list(self.latencies), self.info
            # an age, not a time: the page's clock may differ from the station's
            age = None if self.last_item_at is None else round(time.monotonic() - self.last_item_at, 1)
            judged = self.items - self.errors
            out = {
                "station": self.station,
                "items": self.items,
                "defective": self.defective,
                "errors": self.errors,
                "ok": judged - self.defective,
                "defect_rate": round(self.defective / judged, 4) if judged else None,
                "fps": self.fps(),
                "uptime_s": round(time.monotonic() - self.started_mono, 1),
                "started": self.started,
                "source_state": self.source_state,
                "error": self.end_error,
                "warnings": self.warned,
                "last_item_age_s": age,
                "station_check": {"flagged": self.unlike, "last": self.last_unlike},
            }
        p50, p99 = nearest_rank(lat, 50), nearest_rank(lat, 99)
        out |= {
            "latency_ms_p50": None if p50 is None else round(p50, 3),
            "latency_ms_p99": None if p99 is None else round(p99, 3),
        }
        if info is not None:
            out |= {
                "source": info.source,
                "model_version": info.model_version,
                "model_file": info.model_file,
                "providers": info.providers,
                "precision": info.precision,
                "threshold": info.threshold,
            }
        return out

    def recent_rows(self, after_id: int = 0, limit: int = 100) -> list[dict]:
        with self.lock:
            chosen = [(rid, rec) for rid, rec in self.recent if rid > after_id][:limit]
        return [{"id": rid, **rec, "has_image": bool(rec.get("defective"))} for rid, rec in chosen]

    def gallery_asked(self) -> None:
        """The page asked for its gallery (from the log or from here): once after the end, it has the last one."""
        with self.lock:
            self.final_gallery = self.final_gallery or self.final_told

    def defects(self, limit: int = 24) -> list[dict]:
        self.gallery_asked()
        with self.lock:
            chosen = list(self.gallery)[-limit:][::-1]
        return [{"id": rid, **rec, "has_image": pic is not None} for rid, rec, pic in chosen]

    def gallery_thumbnail(self, item_id: int) -> bytes | None:
        with self.lock:
            found = next(((rec, pic) for rid, rec, pic in self.gallery if rid == item_id), None)
        if found is None or found[1] is None:
            return None
        return thumbnail(found[1], found[0])

    def rate(self, hours: float, bucket_s: int = 600) -> list[dict]:
        since = (time.time() - hours * 3600) // 60
        buckets: dict[int, list[int]] = {}
        with self.lock:
            for minute, counts in self.minutes.items():
                if minute >= since:
                    b = buckets.setdefault(minute * 60 // bucket_s, [0, 0, 0])
                    for i, c in enumerate(counts):
                        b[i] += c
        from edge_runtime.station.query import rate_bucket

        return [rate_bucket(b * bucket_s, n, d, e) for b, (n, d, e) in sorted(buckets.items())]

    def want_frames(self) -> None:
        """A viewer asked for a frame: keep encoding for the next few seconds."""
        self.wanted_until = time.monotonic() + 3.0

    def _encode_loop(self) -> None:
        period = 1.0 / self.max_fps
        while not self._stop.wait(period):
            now = time.monotonic()
            if self.watchers <= 0 and now > self.wanted_until:
                continue
            if self.wanted is not None:
                self.wanted.value = now + 1.0
            with self.lock:
                # no rate yet (the first frame after a pause is shown before it is counted): no "0.0 FPS" on it
                latest, seq, fps = self.latest, self.seq, (self.fps() or None) if self.live_source else None
            if latest is None or seq == self.jpeg_seq:
                continue
            try:
                jpeg = encode_frame(latest[0], latest[1], fps=fps)
            except Exception:  # noqa: BLE001 - a frame that cannot be drawn is skipped; the next one may work
                continue
            self.jpeg, self.jpeg_seq = jpeg, seq
