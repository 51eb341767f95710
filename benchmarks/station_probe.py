"""What ``benchmarks.station`` measures inside a live run: capture -> result per frame, the station's own time in
the loop, and the inspection thread's waits for a CPU (Linux schedstat)."""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.live import PacedSource
from edge_runtime.metrics import nearest_rank
from edge_runtime.station.listener import StationListener


def pct(values: list[float], q: float) -> float:
    return round(nearest_rank(values, q), 3) if values else float("nan")  # as edge-infer and the page report


def cpu_wait_ns(tid: int | None) -> int | None:
    """Nanoseconds thread ``tid`` of this process has been runnable but waiting for a CPU so far (Linux
    schedstat); None when unknown."""
    if tid is None:
        return None
    try:
        with open(f"/proc/self/task/{tid}/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None


class TimedSource:
    """The synthetic camera, noting at each frame it delivers the moment the frame was due (its schedule: when a
    real camera would have had it, so a capture thread that wakes late counts in the latency) and how long the
    inspection thread has waited for a CPU so far (with the same reading at the frame's result, the wait falls
    exactly in the frame's latency)."""

    def __init__(self, inner: PacedSource, probe: Probe) -> None:
        self.inner, self.probe = inner, probe

    def read(self) -> tuple[bool, Any]:
        due = self.inner.due
        ok, frame = self.inner.read()
        if ok:  # frame index k of the run is the k-th frame delivered
            self.probe.capture_wait_ns.append(cpu_wait_ns(self.probe.tid))
            self.probe.due.append(due)
        return ok, frame

    def release(self) -> None:
        self.inner.release()


@dataclass
class Probe:
    """A listener that times capture -> result, after the station (if any) has handled the record.

    Per frame it also takes from the kernel's schedstat how long, between the frame's capture and its result, the
    inspection thread was runnable but waiting for a CPU (other threads or processes had the cores): its wake-up
    and any preemption. The rest of the latency is the thread's own work and its sleeps: the GIL, a lock,
    onnxruntime's other thread, I/O.
    """

    inner: StationListener | None = None
    latencies_ms: list[float] = field(default_factory=list)
    in_loop_us: list[float] = field(default_factory=list)  # the station's own time on the inspection thread
    cpu_wait_ms: list[float] = field(default_factory=list)  # per frame: the inspection thread waiting for a CPU
    capture_wait_ns: list[int | None] = field(default_factory=list)  # per frame delivered, see TimedSource
    due: list[float] = field(default_factory=list)  # per frame delivered: when the camera had it (monotonic)
    tid: int | None = None  # the inspection thread

    @property
    def wants_pictures(self) -> bool:
        return self.inner is not None

    def on_start(self, model: Any, spec: Any) -> None:
        self.tid = threading.get_native_id()  # run_inference calls back on the inspection thread
        if self.inner is not None:
            self.inner.on_start(model, spec)

    def on_records(self, records: Any, items: Any) -> None:
        if self.inner is not None:
            t0 = time.perf_counter()
            self.inner.on_records(records, items)
            self.in_loop_us.append((time.perf_counter() - t0) * 1e6)
        now = time.monotonic()
        timed = [it for it in items if it.timestamp is not None]
        # From the frame's due time where the camera says it (TimedSource), else from its capture thread's stamp.
        latencies = [(now - self._captured(it)) * 1000.0 for it in timed]
        self.latencies_ms.extend(latencies)
        wait_ns = cpu_wait_ns(self.tid)
        for it, latency in zip(timed, latencies, strict=True):
            known = it.frame is not None and it.frame < len(self.capture_wait_ns)
            at_capture = self.capture_wait_ns[it.frame] if known else None
            ok = wait_ns is not None and at_capture is not None
            # The kernel adds a wait to the count when the thread next runs, so a preemption that began before the
            # frame was captured can land in its window: never more than the frame's own latency.
            wait = min((wait_ns - at_capture) / 1e6, latency) if ok else math.nan  # type: ignore[operator]
            self.cpu_wait_ms.append(wait)

    def _captured(self, item: Any) -> float:
        return self.due[item.frame] if item.frame is not None and item.frame < len(self.due) else item.timestamp

    def on_event(self, message: str) -> None:
        if self.inner is not None:
            self.inner.on_event(message)

    def on_close(self, summary: Any) -> None:
        if self.inner is not None:
            self.inner.on_close(summary)


def process_cpu_s(pid: int | None) -> float:
    """CPU seconds used so far by process ``pid`` (the web view's process); 0 without one."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def slowest(latencies: list[float], cpu_wait_ms: list[float]) -> dict[str, float]:
    """The slowest 1% of frames (latency >= p99), mean ms: latency, the inspection thread waiting for a CPU, and
    the rest (its own work and its sleeps); and the mean wait over all frames."""
    cut = float(np.percentile(latencies, 99)) if latencies else math.nan  # the slowest 1%, between ranks
    slow = [(t, cpu_wait_ms[k]) for k, t in enumerate(latencies) if t >= cut and not math.isnan(cpu_wait_ms[k])]
    if not slow:
        return {}
    latency, waiting = (float(np.mean(v)) for v in zip(*slow, strict=True))
    all_waits = [w for w in cpu_wait_ms if not math.isnan(w)]
    out = {"latency_ms": latency, "cpu_wait_ms": waiting, "rest_ms": latency - waiting}
    return {k: round(v, 3) for k, v in out.items()} | {"frames": len(slow), "all_cpu_wait_ms": pct(all_waits, 50)}
