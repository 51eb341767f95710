"""Part 2 of ``python -m benchmarks.station``: a synthetic 30 FPS live source through ``edge-infer``'s loop
(newest-frame reader, ``run_inference``), with p50/p90/p99 capture-to-result latency without the station, with
``--serve`` and the page open (``benchmarks.station_viewer``), with ``--log``, and with both, rounds interleaved.

>>> live_run(frames, seconds=20, serve=True, log=None, viewer=Viewer(browser=True))["p99"]  # doctest: +SKIP
4.4
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.live import PacedSource, camera_frames
from benchmarks.station_probe import Probe, TimedSource, pct, process_cpu_s, slowest
from benchmarks.station_report import WARMUP_FRAMES
from benchmarks.station_viewer import Viewer, scheduling
from edge_runtime.config import RuntimeConfig
from edge_runtime.infer import InferConfig, run_inference
from edge_runtime.priority import Priority
from edge_runtime.summary import Summary

SAMPLES = Path(__file__).resolve().parents[1] / "edge_runtime" / "samples"
# name -> (--serve with the page open, --log, spinning threads (None: edge-infer's default))
Conditions = dict[str, tuple[bool, bool, bool | None]]


def open_live_station(*, serve: bool, log: Path | None, serve_fps: float | None) -> Any:
    """The station a live run feeds, as ``edge-infer --serve/--log`` opens it; None without either."""
    from edge_runtime.station.options import open_station
    from edge_runtime.station.server import Bind

    if not (serve or log):
        return None
    return open_station(
        {"serve": Bind("127.0.0.1", 0) if serve else None, "log": log, "station": "bench", "serve_fps": serve_fps},
        say=lambda m: None,
    )


def live_config(
    frames: list, probe: Probe, *, seconds: float, threads: int | None, spin: bool | None, priority: Priority
) -> InferConfig:
    """``edge-infer``'s config for ``seconds`` of ``frames`` at 30 FPS, each frame timed by ``probe``."""
    count = round(30 * seconds)
    return InferConfig(
        camera="synthetic 30 FPS",
        quiet=True,
        listener=probe,
        max_reconnects=0,
        capture=lambda: TimedSource(PacedSource(frames, fps=30.0, count=count), probe),
        runtime=RuntimeConfig(threads=threads, spin=spin),
        priority=priority,
    )


def live_row(
    probe: Probe, s: Summary, *, cpu_percent: float, view_percent: float | None, sched: dict, seen: dict
) -> dict[str, Any]:
    """One live run's results: latency after the warm-up frames, CPU use of each process, scheduling."""
    lat = probe.latencies_ms[WARMUP_FRAMES:]
    return {
        "frames": len(lat),
        "dropped": s.dropped_frames,
        "p50": pct(lat, 50),
        "p90": pct(lat, 90),
        "p99": pct(lat, 99),
        "max": round(max(lat), 3) if lat else None,
        "cpu_percent": round(cpu_percent, 1),
        "station_us_p50": pct(probe.in_loop_us, 50),
        "station_us_p99": pct(probe.in_loop_us, 99),
        "webview_cpu_percent": view_percent,
        "browser_cpu_percent": seen.get("browser_cpu_percent"),
        "viewer_cpu_percent": seen.get("viewer_cpu_percent"),
        "scheduling": {k: v for k, v in sched.items() if v},
        "priority": s.priority if s.priority_dropped is None else f"{s.priority}, then normal (CPU guard)",
        "slowest": slowest(lat, probe.cpu_wait_ms[WARMUP_FRAMES:]),
    }


def live_run(
    frames: list,
    *,
    seconds: float,
    serve: bool,
    log: Path | None,
    viewer: Viewer,
    screenshot: Path | None = None,
    threads: int | None = None,
    spin: bool | None = None,
    serve_fps: float | None = None,
    priority: Priority = Priority.AUTO,
) -> dict[str, Any]:
    station = open_live_station(serve=serve, log=log, serve_fps=serve_fps)
    probe = Probe(station)
    cfg = live_config(frames, probe, seconds=seconds, threads=threads, spin=spin, priority=priority)
    out: dict = {}
    t = threading.Thread(target=lambda: out.update(s=run_inference(cfg, log=lambda m: None)[0]), daemon=True)
    # The page is open (in its own process) before the run starts and watched until a second before it ends.
    session = viewer.open(station.server.url, seconds - 1.0, screenshot) if serve else None
    view_pid = station.server.process.pid if serve else None
    cpu0, wall0, view0 = time.process_time(), time.monotonic(), process_cpu_s(view_pid)
    t.start()
    seen = viewer.finish(session, timeout_s=seconds + 60) if session is not None else {}
    t.join(seconds + 30)
    wall = time.monotonic() - wall0
    cpu_percent = 100 * (time.process_time() - cpu0) / wall
    view_percent = round(100 * (process_cpu_s(view_pid) - view0) / wall, 1) if serve else None
    sched = {"inspection": scheduling(os.getpid()), "web view": scheduling(view_pid) if serve else None}
    sched["browser"] = seen.get("scheduling")
    if station is not None:
        station.close()
    return live_row(probe, out["s"], cpu_percent=cpu_percent, view_percent=view_percent, sched=sched, seen=seen)


def live_conditions(spin: str, priority: str) -> Conditions:
    """The conditions each round runs, by name, for ``--spin`` and ``--priority``."""
    conditions = {
        "no station": (False, False, None),
        "--serve + open page": (True, False, None),
        "--log": (False, True, None),
        "--log --serve + open page": (True, True, None),
    }
    if spin == "both":  # edge-infer's live default (threads sleep between frames) against spinning threads
        conditions = {
            "no station": (False, False, None),
            "--serve + open page": (True, False, None),
            "no station, threads spinning": (False, False, True),
            "--serve + open page, threads spinning": (True, False, True),
        }
    elif spin != "auto":
        conditions = {name: (serve, log, spin == "on") for name, (serve, log, _) in conditions.items()}
    if priority == "both":  # edge-infer's default (a real-time loop where allowed) against normal priority
        conditions = {
            "no station": (False, False, None),
            "--serve + open page": (True, False, None),
            "no station, normal priority": (False, False, None),
            "--serve + open page, normal priority": (True, False, None),
        }
    return conditions


def live_latency(
    seconds: float,
    rounds: int,
    tmp: Path,
    screenshot: Path,
    *,
    browser: bool,
    viewer_nice: int = 0,
    viewer_like_user: bool = False,
    threads: int | None = None,
    spin: str = "auto",
    serve_fps: float | None = None,
    priority: str = "auto",
) -> dict[str, Any]:
    paths = sorted(str(p) for p in SAMPLES.rglob("*.jpeg"))
    frames = camera_frames(paths, limit=len(paths))
    viewer = Viewer(browser=browser, nice=viewer_nice, like_user=viewer_like_user)
    conditions = live_conditions(spin, priority)
    results: dict[str, list[dict]] = {name: [] for name in conditions}
    shot = [name for name, (serve, _, _) in conditions.items() if serve][-1]  # the screenshot: its last round
    try:
        for k in range(rounds):
            for name, (serve, log, spinning) in conditions.items():
                normal = priority == "normal" or name.endswith("normal priority")
                last = k == rounds - 1 and name == shot
                row = live_run(
                    frames,
                    seconds=seconds,
                    serve=serve,
                    log=tmp / f"live{k}{name[:5]}.db" if log else None,
                    viewer=viewer,
                    screenshot=screenshot if last else None,
                    threads=threads,
                    spin=spinning,
                    serve_fps=serve_fps,
                    priority=Priority.NORMAL if normal else Priority.AUTO,
                )
                results[name].append(row)
                print(f"live round {k + 1} {name}: p50 {row['p50']} p99 {row['p99']} ms", file=sys.stderr)
    finally:
        viewer.close()
    return {
        "viewer": viewer.kind,
        "viewer_nice": viewer_nice,
        "viewer_like_user": viewer_like_user,
        "threads": threads,
        "spin": spin,
        "serve_fps": serve_fps,
        "priority": priority,
        "browser_cpu_percent": viewer.cpu_percent,
        "viewer_cpu_percent": viewer.viewer_cpu_percent,
        "seconds": seconds,
        "rounds": results,
    }
