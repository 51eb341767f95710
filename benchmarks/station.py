"""What the station costs: ``python -m benchmarks.station`` (writes benchmarks/results/station.md/.json/.png).

1. Folder throughput of the ``edge-infer`` pipeline with and without ``--log`` (rounds interleaved, so a busy
   machine hurts both alike), and the size of the log per 10,000 items.
2. A synthetic 30 FPS live source through the same loop (newest-frame reader, ``run_inference``): p50/p90/p99
   capture-to-result latency without the station, with ``--serve`` and the page open in headless Chromium,
   with ``--log``, and with both. "Result" is the moment the record is ready for stdout: after the log commit.
3. SIGKILL: ``edge-infer --log --output`` killed mid-run; records in ``--output`` against rows in the log,
   and ``PRAGMA integrity_check``.

Needs the base install for 1 and 3, the ``[station]`` extra for 2, and playwright + Debian's chromium for the
open page (otherwise the page is simulated by an HTTP client reading the stream and polling the JSON).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.hardware import detect_hardware
from benchmarks.live import PacedSource, camera_frames
from edge_runtime.infer import InferConfig, run_inference
from edge_runtime.station.listener import StationListener
from edge_runtime.station.log import InspectionLog, LogConfig

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "edge_runtime" / "samples"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
WARMUP_FRAMES = 30


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3) if values else float("nan")


# -- 1. folder throughput and log size ----------------------------------------------------------------------
def folder_run(folder: Path, log_path: Path | None) -> dict[str, Any]:
    listener = StationListener(log=InspectionLog(LogConfig(log_path, station="bench"))) if log_path else None
    try:
        summary, _ = run_inference(InferConfig(source=str(folder), quiet=True, listener=listener), log=lambda m: None)
    finally:
        if listener is not None:
            listener.close()
    return {"items": summary.items, "items_per_s": round(summary.items / summary.wall_s, 1)}


def log_size(log_path: Path) -> dict[str, Any]:
    con = sqlite3.connect(log_path)
    rows, thumbs = con.execute(
        "SELECT (SELECT count(*) FROM inspections), (SELECT count(*) FROM thumbnails)"
    ).fetchone()
    thumb_bytes = con.execute("SELECT coalesce(sum(length(jpeg)), 0) FROM thumbnails").fetchone()[0]
    con.close()
    size = log_path.stat().st_size
    return {
        "rows": rows,
        "thumbnails": thumbs,
        "file_bytes": size,
        "thumbnail_bytes": thumb_bytes,
        "mb_per_10k": round(size / rows * 10_000 / 1e6, 2),
        "mb_per_10k_without_images": round((size - thumb_bytes) / rows * 10_000 / 1e6, 2),
    }


def throughput(folder: Path, rounds: int, tmp: Path) -> dict[str, Any]:
    runs: dict[str, list[float]] = {"without --log": [], "with --log": []}
    folder_run(folder, None)  # warm the page cache and the model
    size = {}
    for k in range(rounds):
        runs["without --log"].append(folder_run(folder, None)["items_per_s"])
        path = tmp / f"folder{k}.db"
        runs["with --log"].append(folder_run(folder, path)["items_per_s"])
        size = log_size(path)
        print(f"folder round {k + 1}: {runs['without --log'][-1]} vs {runs['with --log'][-1]} items/s", file=sys.stderr)
    best = {name: max(v) for name, v in runs.items()}
    median = {name: float(np.median(v)) for name, v in runs.items()}
    return {
        "folder": str(folder),
        "rounds": runs,
        "best": best,
        "median": median,
        "ratio_median": round(median["with --log"] / median["without --log"], 3),
        "log": size,
    }


# -- 2. live latency ----------------------------------------------------------------------------------------
@dataclass
class Probe:
    """A listener that times capture -> result, after the station (if any) has handled the record."""

    inner: StationListener | None = None
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def wants_pictures(self) -> bool:
        return self.inner is not None

    def on_start(self, model: Any, spec: Any) -> None:
        if self.inner is not None:
            self.inner.on_start(model, spec)

    def on_records(self, records: Any, items: Any) -> None:
        if self.inner is not None:
            self.inner.on_records(records, items)
        now = time.monotonic()
        self.latencies_ms.extend((now - it.timestamp) * 1000.0 for it in items if it.timestamp is not None)

    def on_event(self, message: str) -> None:
        if self.inner is not None:
            self.inner.on_event(message)

    def on_close(self, summary: Any) -> None:
        if self.inner is not None:
            self.inner.on_close(summary)


class Viewer:
    """The open page: headless Chromium when available, else an HTTP client doing what the page does."""

    def __init__(self) -> None:
        self.browser = self.pw = self.page = None
        self.kind = "http client (stream + 1 s polling)"
        if Path(CHROMIUM).exists():
            try:
                from playwright.sync_api import sync_playwright

                self.pw = sync_playwright().start()
                self.browser = self.pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                self.kind = "headless Chromium (the real page)"
            except ImportError:
                pass

    def watch(self, url: str, seconds: float, screenshot: Path | None = None) -> None:
        if self.browser is None:
            self._http(url, seconds)
            return
        page = self.browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.wait_for_timeout(seconds * 1000)
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=True)
        page.close()

    def _http(self, url: str, seconds: float) -> None:
        end = time.monotonic() + seconds

        def stream() -> None:
            with urllib.request.urlopen(url + "stream.mjpg", timeout=10) as r:
                while time.monotonic() < end and r.read(65536):
                    pass

        t = threading.Thread(target=stream, daemon=True)
        t.start()
        while time.monotonic() < end:
            for path in ("api/status", "api/defects?limit=24"):
                urllib.request.urlopen(url + path, timeout=5).read()
            time.sleep(1.0)
        t.join(2)

    def close(self) -> None:
        if self.browser is not None:
            self.browser.close()
            self.pw.stop()


def live_run(
    frames: list, *, seconds: float, serve: bool, log: Path | None, viewer: Viewer, screenshot: Path | None = None
) -> dict[str, Any]:
    from edge_runtime.station.options import open_station
    from edge_runtime.station.server import Bind

    station = (
        open_station(
            {"serve": Bind("127.0.0.1", 0) if serve else None, "log": log, "station": "bench"}, say=lambda m: None
        )
        if serve or log
        else None
    )
    probe = Probe(station)
    count = round(30 * seconds)
    cfg = InferConfig(
        camera="synthetic 30 FPS",
        quiet=True,
        listener=probe,
        max_reconnects=0,
        capture=lambda: PacedSource(frames, fps=30.0, count=count),
    )
    out: dict = {}
    t = threading.Thread(target=lambda: out.update(s=run_inference(cfg, log=lambda m: None)[0]), daemon=True)
    t.start()
    if serve:
        viewer.watch(station.server.url, seconds - 1.0, screenshot)
    t.join(seconds + 30)
    if station is not None:
        station.close()
    lat = probe.latencies_ms[WARMUP_FRAMES:]
    s = out["s"]
    return {
        "frames": len(lat),
        "dropped": s.dropped_frames,
        "p50": pct(lat, 50),
        "p90": pct(lat, 90),
        "p99": pct(lat, 99),
        "max": round(max(lat), 3) if lat else None,
    }


def live_latency(seconds: float, rounds: int, tmp: Path, screenshot: Path) -> dict[str, Any]:
    paths = sorted(str(p) for p in SAMPLES.rglob("*.jpeg"))
    frames = camera_frames(paths, limit=len(paths))
    viewer = Viewer()
    conditions = {
        "no station": (False, False),
        "--serve + open page": (True, False),
        "--log": (False, True),
        "--log --serve + open page": (True, True),
    }
    results: dict[str, list[dict]] = {name: [] for name in conditions}
    try:
        for k in range(rounds):
            for name, (serve, log) in conditions.items():
                last = k == rounds - 1 and serve and log
                row = live_run(
                    frames,
                    seconds=seconds,
                    serve=serve,
                    log=tmp / f"live{k}{name[:5]}.db" if log else None,
                    viewer=viewer,
                    screenshot=screenshot if last else None,
                )
                results[name].append(row)
                print(f"live round {k + 1} {name}: p50 {row['p50']} p99 {row['p99']} ms", file=sys.stderr)
    finally:
        viewer.close()
    return {"viewer": viewer.kind, "seconds": seconds, "rounds": results}


# -- 3. SIGKILL -----------------------------------------------------------------------------------------------
def sigkill(tmp: Path, kill_after_lines: tuple[int, ...] = (200, 700, 1500)) -> list[dict[str, Any]]:
    from edge_runtime.demo import make_sample_video

    video = tmp / "line.avi"
    make_sample_video(video, frames_per_image=150)
    out = []
    for n in kill_after_lines:
        db, jsonl = tmp / f"kill{n}.db", tmp / f"kill{n}.jsonl"
        cmd = [
            sys.executable,
            "-m",
            "edge_runtime.cli",
            "--source",
            str(video),
            "--log",
            str(db),
            "--output",
            str(jsonl),
            "--quiet",
            "--batch-size",
            "8",
        ]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and (not jsonl.exists() or jsonl.read_text().count("\n") < n):
            time.sleep(0.002)
        alive = proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        lines = [x for x in jsonl.read_text().split("\n") if x.endswith("}")]
        frames = {json.loads(x)["frame"] for x in lines}
        con = sqlite3.connect(db)
        logged = {r[0] for r in con.execute("SELECT frame FROM inspections")}
        ok = con.execute("PRAGMA integrity_check").fetchone()[0]
        con.close()
        out.append(
            {
                "killed_while_running": alive,
                "records_in_output": len(frames),
                "rows_in_log": len(logged),
                "output_records_missing_from_log": len(frames - logged),
                "integrity_check": ok,
            }
        )
    return out


def markdown(res: dict[str, Any]) -> str:
    hw, f = res["hardware"], res["folder"]
    lines = [
        f"# Station costs ({hw['cpu']}, {hw['cores']} cores, {res['date']})",
        "",
        f"`{res['command']}`",
        "",
        "## Folder throughput with and without `--log`",
        "",
        f"`{f['folder']}`, bundled INT8 model, rounds interleaved; items/s of the whole run.",
        "",
        "| run | rounds (items/s) | median | best |",
        "| --- | --- | --- | --- |",
    ]
    for name, v in f["rounds"].items():
        lines.append(
            f"| {name} | {', '.join(f'{x:.0f}' for x in v)} | {f['median'][name]:.0f} | {f['best'][name]:.0f} |"
        )
    lg = f["log"]
    lines += [
        "",
        f"With `--log`: **{100 * f['ratio_median']:.1f}%** of the throughput without it (medians).",
        "",
        "## Log size",
        "",
        f"{lg['rows']} items, {lg['thumbnails']} defective with a thumbnail: "
        f"{lg['file_bytes'] / 1e6:.2f} MB, that is **{lg['mb_per_10k']} MB per 10,000 items** "
        f"({lg['mb_per_10k_without_images']} MB without the thumbnails).",
        "",
        "## Live latency, 30 FPS synthetic source",
        "",
        f"Capture -> result (log committed), {res['live']['seconds']:g} s per run, first {WARMUP_FRAMES} "
        f"frames dropped as warm-up; open page: {res['live']['viewer']}.",
        "",
        "| condition | p50 ms (per round) | p90 ms | p99 ms (per round) | frames dropped |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, rows in res["live"]["rounds"].items():
        lines.append(
            f"| {name} | {' / '.join(str(r['p50']) for r in rows)} | {' / '.join(str(r['p90']) for r in rows)} "
            f"| {' / '.join(str(r['p99']) for r in rows)} | {' / '.join(str(r['dropped']) for r in rows)} |"
        )
    lines += [
        "",
        "## SIGKILL",
        "",
        "`edge-infer --source line.avi --log kill.db --output kill.jsonl` killed with SIGKILL mid-run.",
        "",
        "| records in --output | rows in the log | output records missing from the log | integrity_check |",
        "| --- | --- | --- | --- |",
    ]
    for k in res["sigkill"]:
        lines.append(
            f"| {k['records_in_output']} | {k['rows_in_log']} | {k['output_records_missing_from_log']} | "
            f"{k['integrity_check']} |"
        )
    return "\n".join(lines) + "\n"


@click.command(help="Measure the station's costs; writes OUT/station.md, station.json and station.png.")
@click.option(
    "--data",
    type=click.Path(path_type=Path, file_okay=False),
    default=REPO.parent / "shared" / "data" / "casting" / "train",
    show_default=True,
    help="Folder for the throughput runs.",
)
@click.option("--seconds", type=float, default=20.0, show_default=True, help="Seconds per live run.")
@click.option("--rounds", type=int, default=2, show_default=True, help="Interleaved rounds per condition.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=REPO / "benchmarks" / "results")
def main(data: Path, seconds: float, rounds: int, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        res = {
            "hardware": detect_hardware().to_dict(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": "python -m benchmarks.station " + " ".join(sys.argv[1:]),
        }
        res["folder"] = throughput(data if data.is_dir() else SAMPLES, max(rounds, 3), tmp)
        res["live"] = live_latency(seconds, rounds, tmp, out / "station.png")
        res["sigkill"] = sigkill(tmp)
    (out / "station.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (out / "station.md").write_text(markdown(res))
    click.echo(markdown(res))


if __name__ == "__main__":
    main()
