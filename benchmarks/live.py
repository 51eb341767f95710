"""A live loop with a synthetic camera at a fixed frame rate: capture-to-result latency and frames dropped.

The camera is paced on its own thread and read through :class:`edge_runtime.sources.LatestFrameReader`, the
same newest-frame-only reader and loop ``edge-infer`` uses for cameras, so a slow consumer drops frames
instead of working on stale ones. Frames are decoded sample images (a camera delivers pixels, not JPEG files).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence

import cv2
import numpy as np

from benchmarks.config import Job, Row, Section
from benchmarks.onnx_bench import base_row, fill, load_edge_model
from benchmarks.timing import Stats, start_row
from edge_runtime.inputs import iter_live
from edge_runtime.model import EdgeModel
from edge_runtime.sources import LatestFrameReader
from edge_runtime.verdicts import batches, predict_items


class PacedSource:
    """A ``cv2.VideoCapture`` look-alike that delivers ``count`` frames at ``fps``, then ends."""

    def __init__(self, frames: Sequence[np.ndarray], *, fps: float, count: int) -> None:
        self._frames = itertools.cycle(frames)
        self._period = 1.0 / fps
        self._count = count
        self._sent = 0
        self._next = time.monotonic()
        self.delivered_due: list[float] = []  # per frame delivered (index as the reader numbers it): its due time

    @property
    def due(self) -> float:
        """When the next frame is due (time.monotonic()): the moment a real camera would have it."""
        return self._next

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self._sent >= self._count:
            return False, None
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        # Absolute deadlines: a late frame does not shift the ones after it.
        self.delivered_due.append(self._next)
        self._next += self._period
        self._sent += 1
        return True, next(self._frames)

    @property
    def sent(self) -> int:
        """Frames delivered so far."""
        return self._sent

    def release(self) -> None:
        pass


def camera_frames(paths: Sequence[str], limit: int = 16) -> list[np.ndarray]:
    """Decoded colour frames from the sample images, as a camera would hand them over."""
    frames = [f for f in (cv2.imread(p, cv2.IMREAD_COLOR) for p in paths[:limit]) if f is not None]
    if not frames:
        frames = [np.full((300, 300, 3), 128, np.uint8)]
    return frames


def live_row(model: EdgeModel, frames: Sequence[np.ndarray], *, fps: int, seconds: float, threads: int) -> Row:
    """Run the loop for ``seconds`` at ``fps``; latency is from the moment each processed frame was due (when a
    real camera would have had it, so a capture thread that wakes late counts) to its verdict."""
    count = max(1, round(fps * seconds))
    latencies: list[float] = []
    done: list[float] = []
    model.predict(frames[0])  # first call allocates; a camera loop is warm after its first frame
    start_row()  # this rate's own peak memory, not the earlier rates' of the same worker
    camera = PacedSource(frames, fps=fps, count=count)
    reader = LatestFrameReader(camera, name=f"synthetic {fps} FPS", reconnect=False)
    # The loop of edge-infer on a live source, with its preparation (the station check, the part's square for the
    # symmetry look): newest frame, one at a time.
    for batch in batches(iter_live(reader, model.input_for_verdict, keep_original=False), 1):
        predict_items(model, batch)
        done.append(time.monotonic())
        item = batch[0]
        due = camera.delivered_due
        captured = due[item.frame] if item.frame is not None and item.frame < len(due) else item.timestamp
        latencies.append(done[-1] - captured)
    stats = Stats.from_seconds(latencies, items=1)
    row = fill(base_row(model, Section.LIVE, batch=1, threads=threads), stats)
    # Results per second of the camera's own time (its frames at its rate): never above its FPS. Over the span from
    # the first result to the last it read 32 for a 30 FPS camera, and above the FPS whenever the first result
    # came later after its frame than the last one did.
    row.throughput = round(len(done) / (camera.sent / fps), 1) if camera.sent else None
    row.fps_target, row.frames_captured, row.frames_dropped = fps, reader.captured, reader.dropped
    row.note = f"{seconds:g} s, {len(latencies)} frames processed"
    return row


def live_rows(job: Job) -> Iterator[Row]:
    """One row per frame rate, each yielded once measured."""
    model, _ = load_edge_model(job)
    frames = camera_frames(job.images)
    for fps in job.fps:
        yield live_row(model, frames, fps=fps, seconds=job.seconds, threads=job.threads)
