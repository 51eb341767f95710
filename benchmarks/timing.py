"""Warm up, then time a fixed count (CONVENTIONS.md rule 11): latency percentiles and peak memory."""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.metrics import nearest_rank


@dataclass(frozen=True)
class Stats:
    """Latency of ``runs`` timed calls, in milliseconds; ``items`` images were processed per call.

    >>> s = Stats.from_seconds([0.001, 0.002, 0.003], items=1)
    >>> (s.p50_ms, round(s.throughput))
    (2.0, 500)
    """

    runs: int
    items: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput: float  # items per second over all timed calls

    @classmethod
    def from_seconds(cls, seconds: list[float] | np.ndarray, *, items: int) -> Stats:
        t = np.asarray(seconds, dtype=np.float64) * 1000.0
        if t.size == 0:
            raise ValueError("no timings to summarise")
        # nearest rank, as edge-infer's summary, the station page and edge-log report (numpy interpolates)
        p50, p90, p99 = (nearest_rank(t.tolist(), q) for q in (50, 90, 99))
        total_s = float(t.sum()) / 1000.0
        return cls(
            runs=int(t.size),
            items=items,
            mean_ms=float(t.mean()),
            p50_ms=float(p50),
            p90_ms=float(p90),
            p99_ms=float(p99),
            throughput=items * t.size / total_s if total_s > 0 else float("inf"),
        )


def measure(fn: Callable[[], object], *, warmup: int, runs: int, items: int = 1) -> Stats:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed, with the garbage collector paused.

    The process's peak memory is reset first (:func:`reset_peak_rss`), so :func:`peak_rss_mb` afterwards is this
    configuration's: what was resident when it started (the model, its inputs) and what it added while it ran.

    >>> measure(lambda: None, warmup=1, runs=5).runs
    5
    """
    start_row()
    for _ in range(warmup):
        fn()
    times = np.empty(runs, dtype=np.float64)
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()  # a collection inside one timed call would be charged to the model
    try:
        for i in range(runs):
            t0 = time.perf_counter()
            fn()
            times[i] = time.perf_counter() - t0
    finally:
        if was_enabled:
            gc.enable()
    return Stats.from_seconds(times, items=items)


def runs_for_batch(batch: int, *, runs: int, min_runs: int) -> int:
    """A fixed count per batch size: about the same number of images for every batch, at least ``min_runs``.

    Batch 1 gets ``runs`` itself, as ``--runs`` promises (``--runs 1`` was timed 20 times without a word).

    >>> runs_for_batch(32, runs=1000, min_runs=20), runs_for_batch(1, runs=3, min_runs=20)
    (31, 3)
    """
    return runs if batch == 1 else max(min_runs, runs // batch)


PEAK_PER_ROW = True  # False once a reset failed: the rows' peak is then the worker's since it started (said on them)


def start_row() -> None:
    """A row's configuration starts: its peak memory from here (:data:`PEAK_PER_ROW` says whether that worked)."""
    global PEAK_PER_ROW
    PEAK_PER_ROW = reset_peak_rss()


def reset_peak_rss() -> bool:
    """Set this process's peak memory back to what is resident now (Linux: ``clear_refs`` 5); False where it cannot
    be. One worker times several configurations in turn, and a peak only ever rises: without this, a batch-1 row
    run after batch 32 reported batch 32's memory."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB).

    On Linux the memory's own high-water mark (``VmHWM``): ``ru_maxrss`` survives ``exec``, so a worker started by
    edge-bench reported edge-bench's own size whenever that was larger (every ONNX row read 275 MiB, the parent's,
    for a worker that peaked at about 100). Elsewhere ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows has no getrusage
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0
