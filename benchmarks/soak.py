"""Soak test: 100,000 frames of a synthetic live source through the edge-infer pipeline, watching for leaks.

    python -m benchmarks.soak                      # 100,000 frames, bundled INT8 model
    python -m benchmarks.soak --frames 20000 --model m.onnx --out /tmp/soak

It runs :func:`edge_runtime.infer.run_inference` exactly as ``edge-infer --camera`` does (capture thread,
newest-frame mode, one frame per inference), with a record listener that samples every ``--window`` frames:
resident memory (RSS), open file descriptors, threads and the p99 latency of that window. It reports RSS after
warm-up (the first window) and at the end, descriptors and threads before and after the run, and p99 over time;
Markdown and JSON go to ``benchmarks/results/soak.md`` / ``soak.json``.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np

from edge_runtime.cli_support import (
    Command,
    FiniteFloatRange,
    debug_option,
    echo_first,
    friendly_errors,
    version_option,
)
from edge_runtime.errors import DefectEdgeError, ExitCode, OutputError, SourceError, UsageError, exit_codes_help
from edge_runtime.metrics import nearest_rank
from edge_runtime.stopping import StopSignals

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLES = Path(__file__).resolve().parents[1] / "edge_runtime" / "samples"


def rss_mib() -> float:
    """Resident set size of this process (Linux /proc; elsewhere the peak from resource)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


class SyntheticCamera:
    """A live source that cycles through the sample images at up to ``fps`` frames per second."""

    def __init__(self, frames: list[np.ndarray], fps: float) -> None:
        self.frames, self.period, self.n = frames, 1.0 / fps, 0

    def read(self) -> tuple[bool, np.ndarray]:
        time.sleep(self.period)
        self.n += 1
        return True, self.frames[self.n % len(self.frames)]

    def release(self) -> None:
        pass


@dataclass
class Window:
    frames: int  # frames processed when the window closed
    p99_ms: float
    p50_ms: float
    rss_mib: float
    fds: int
    threads: int


@dataclass
class Sampler:
    """A record listener (the station's hook in edge-infer) that samples the process every ``every`` frames."""

    every: int
    windows: list[Window] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    frames: int = 0
    wants_pictures: bool = False

    def on_start(self, model: Any, spec: Any) -> None:
        pass

    def on_event(self, message: str) -> None:
        pass

    def on_close(self, summary: Any) -> None:
        pass

    def on_records(self, records: list[dict], items: list) -> None:
        for rec in records:
            self.frames += 1
            if rec["latency_ms"] is not None:
                self.latencies.append(rec["latency_ms"])
            if self.frames % self.every == 0:
                self.close_window()

    def close_window(self) -> None:
        """Sample the process now; also at the end, for the frames after the last full window (a run shorter than
        one window had no sample at all, and lost the whole run to an IndexError)."""
        if self.windows and self.windows[-1].frames == self.frames:
            return
        p99, p50 = (nearest_rank(self.latencies, q) or math.nan for q in (99, 50))  # as edge-infer reports them
        self.windows.append(Window(self.frames, p99, p50, rss_mib(), open_fds(), threading.active_count()))
        self.latencies = []  # bounded: one window at a time


def run_soak(frames: int, model: Path | None, fps: float, every: int, *, stop: Any = None) -> dict[str, Any]:
    """The warm-up run, then the measured one; ``stop`` (the command's :class:`StopSignals`, installed for the
    moments between the runs) only counts a signal once the measured run is over, so its figures are reported."""
    import cv2

    from edge_runtime.infer import InferConfig, run_inference
    from edge_runtime.model import RuntimeConfig

    pictures = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(SAMPLES.rglob("*.jpeg"))]

    def config(n: int, listener: Any) -> InferConfig:
        return InferConfig(
            camera="synthetic", capture=lambda: SyntheticCamera(pictures, fps), model=model, max_frames=n,
            quiet=True, listener=listener, runtime=RuntimeConfig(threads=1),
        )  # fmt: skip

    # A short first run: onnxruntime opens its telemetry database once per process (3 descriptors, kept).
    rss0 = rss_mib()
    _, code = run_inference(config(1000, None), log=lambda m: None)
    if code != ExitCode.OK:  # a Ctrl-C here stopped only the warm-up: the whole measured run followed, exit 0
        what = "was interrupted" if code == ExitCode.INTERRUPTED else f"ended early (exit code {int(code)})"
        raise DefectEdgeError(f"the warm-up run {what}; nothing was measured", exit_code=ExitCode(code))
    time.sleep(0.5)
    sampler = Sampler(every=every)
    fds0, threads0 = open_fds(), threading.active_count()
    t0 = time.perf_counter()
    summary, code = run_inference(config(frames, sampler), log=lambda m: None)
    wall = time.perf_counter() - t0
    if stop is not None:
        stop.closing = True
    time.sleep(0.5)  # let the capture thread finish its release
    if sampler.frames == 0:
        raise SourceError(f"the soak run processed no frame (exit code {int(code)}); rerun with --debug")
    sampler.close_window()
    w = sampler.windows
    return {
        "frames": summary.items, "frames_requested": frames, "exit_code": int(code), "wall_s": round(wall, 1),
        "fps": round(summary.items / wall, 1), "dropped_frames": summary.dropped_frames,
        "rss_mib_start": round(rss0, 1), "rss_mib_after_warmup": round(w[0].rss_mib, 1),
        "rss_mib_end": round(w[-1].rss_mib, 1), "rss_growth_mib": round(w[-1].rss_mib - w[0].rss_mib, 2),
        "fds_start": fds0, "fds_end": open_fds(), "threads_start": threads0, "threads_end": threading.active_count(),
        "p99_ms_first_window": round(w[0].p99_ms, 3), "p99_ms_last_window": round(w[-1].p99_ms, 3),
        "summary_p50_ms": summary.to_dict()["latency_ms_p50"], "summary_p99_ms": summary.to_dict()["latency_ms_p99"],
        "source_fps_cap": fps, "window": every, "model": str(model or "bundled INT8"),
        "windows": [asdict(x) for x in w],
    }  # fmt: skip


def heading(r: dict[str, Any]) -> str:
    """The report's first line; a run that ended early says so and how far it got (it read as a complete soak of
    fewer frames, and replaced the last complete report)."""
    if r["exit_code"] == 0:
        return f"# Soak: {r['frames']} frames through edge-infer (live, newest-frame mode)"
    why = "interrupted" if r["exit_code"] == ExitCode.INTERRUPTED else f"ended early (exit code {r['exit_code']})"
    return (
        f"# Soak {why} after {r['frames']} of {r['frames_requested']} frames: not a complete run "
        "(edge-infer, live, newest-frame mode)"
    )


def soak_command(frames: int, model: Path | None, fps: float, window: int) -> str:
    """The command that was run (the report gave ``--frames N`` alone, N being the frames done)."""
    args = ["--frames", str(frames), "--window", str(window), "--fps", f"{fps:g}"]
    return shlex.join(["python", "-m", "benchmarks.soak", *args, *(["--model", str(model)] if model else [])])


def markdown(r: dict[str, Any], hw: Any) -> str:
    lines = [
        heading(r),
        "",
        f"`{r['command']}` on {hw.cpu} ({hw.cores} cores), onnxruntime "
        f"{hw.onnxruntime}, model {r['model']}, 1 inference thread; synthetic source capped at "
        f"{r['source_fps_cap']:g} FPS; {r['wall_s']} s, {r['fps']} frames/s, {r['dropped_frames']} frames skipped.",
        "",
        "Start: the process before anything ran (RSS), and after a 1000-frame first run (descriptors, threads: "
        "onnxruntime opens its telemetry database once per process). After warm-up: the first window.",
        "",
        "| measure | start | after warm-up | end | target |",
        "| --- | --- | --- | --- | --- |",
        f"| RSS MiB | {r['rss_mib_start']} | {r['rss_mib_after_warmup']} | {r['rss_mib_end']} | growth < 5 MiB "
        f"(measured {r['rss_growth_mib']:+}) |",
        f"| open file descriptors | {r['fds_start']} | | {r['fds_end']} | equal |",
        f"| threads | {r['threads_start']} | | {r['threads_end']} | equal |",
        "",
        f"p99 latency per {r['window']} frames (ms):",
        "",
        "| frames | p50 ms | p99 ms | RSS MiB | fds | threads |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {w['frames']} | {w['p50_ms']:.3f} | {w['p99_ms']:.3f} | {w['rss_mib']:.1f} | {w['fds']} | {w['threads']} |"
        for w in r["windows"]
    ]
    return "\n".join(lines) + "\n"


@click.command(
    cls=Command,
    help="Soak test: frames of a synthetic live source through edge-infer; RSS, fds, threads, p99.\n\n"
    + exit_codes_help(0, 1, 2, 3, 4, 5, 7, 130),
)
@click.option("--frames", type=click.IntRange(min=1000), default=100_000, show_default=True)
@click.option("--model", "model_name", type=click.Path(dir_okay=False), default=None,
              help="ONNX model, or int8 / fp32 for a shipped one [default: bundled INT8]")  # fmt: skip
@click.option("--fps", type=FiniteFloatRange(min=1), default=1000.0, show_default=True, help="Source frame-rate cap.")
@click.option("--window", type=click.IntRange(min=100), default=10_000, show_default=True)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=RESULTS, show_default=True)
@version_option
@debug_option
@friendly_errors
def main(frames: int, model_name: str | None, fps: float, window: int, out: Path, *, debug: bool) -> None:
    from benchmarks.hardware import detect_hardware
    from benchmarks.preflight import check_model_file, check_outputs
    from edge_runtime.model import model_path

    model = None if model_name is None else model_path(model_name)  # a bare int8 / fp32: a shipped one

    if frames < 2 * window:  # growth is RSS at the end against RSS after the first window
        raise UsageError(
            f"--window {window}: --frames {frames} holds fewer than two windows, so memory growth cannot be "
            f"measured; use --window {frames // 2} or less"
        )
    if model is not None:  # a missing or damaged model: exit 4 before the run, not a traceback
        check_model_file(model)
    files = {"--out": out / "soak.md", "the JSON beside it": out / "soak.json"}
    check_outputs(files, {"--model": model}, None, option="--out")  # an unwritable --out lost the whole run at its end
    # Also between the warm-up and the measured run, where a SIGTERM killed the process without a word.
    with StopSignals() as stop:
        result = run_soak(frames, model, fps, window, stop=stop)
        result["command"] = soak_command(frames, model, fps, window)
        hw = detect_hardware()
        result["hardware"] = hw.to_dict()
        text = markdown(result, hw)
        lost = echo_first(text)  # first: a failed write below loses no figure, nor a failed print the files
        write_report(files, text, result)
    if lost is not None:
        raise lost
    if result["exit_code"] != 0:
        raise DefectEdgeError(
            f"the run ended early (exit code {result['exit_code']}); the frames it measured are reported above",
            exit_code=ExitCode(result["exit_code"]),
        )
    if stop.requested:  # came once the run was measured: the report is complete, the stop still asked for
        raise DefectEdgeError("interrupted after the run; its report is complete", exit_code=ExitCode.INTERRUPTED)


def write_report(files: dict[str, Path], text: str, result: dict[str, Any]) -> None:
    from edge_runtime.atomic import atomic_write_text

    md, js = files.values()
    for path, content in ((md, text), (js, json.dumps(result, indent=2) + "\n")):
        try:
            atomic_write_text(path, content)
        except OSError as exc:
            raise OutputError(f"{path}: cannot write ({exc.strerror or exc}); choose another --out") from exc


if __name__ == "__main__":
    main()
