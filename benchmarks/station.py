"""What the station costs: ``python -m benchmarks.station`` (writes benchmarks/results/station.md/.json/.png).

1. Folder throughput of the ``edge-infer`` pipeline with and without ``--log`` (rounds interleaved, so a busy
   machine hurts both alike), and the size of the log per 10,000 items.
2. A synthetic 30 FPS live source through the same loop (newest-frame reader, ``run_inference``): p50/p90/p99
   capture-to-result latency without the station, with ``--serve`` and the page open in headless Chromium,
   with ``--log``, and with both. "Result" is the moment the record is ready for stdout: after the log commit.
   The page is opened before the run by ``benchmarks.station_viewer`` in a process of its own, as a browser
   would be; the web view runs in its own process too (as ``edge-infer --serve`` runs it). In
   ``benchmarks.station_live``.
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
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.hardware import detect_hardware
from benchmarks.station_live import live_latency
from benchmarks.station_report import markdown
from edge_runtime.cli_support import Command, FiniteFloatRange, GivenPath, debug_option, friendly_errors, version_option
from edge_runtime.infer import InferConfig, run_inference
from edge_runtime.station.options import open_station

REPO = Path(__file__).resolve().parents[1]


# -- 1. folder throughput and log size ----------------------------------------------------------------------
def folder_run(folder: Path, log_path: Path | None) -> dict[str, Any]:
    # As edge-infer --source DIR --log FILE builds it (no decoded pictures kept for a folder).
    listener = open_station({"log": log_path, "source": str(folder), "station": "bench"}, say=lambda m: None)
    cpu0 = time.process_time()
    try:
        summary, _ = run_inference(InferConfig(source=str(folder), quiet=True, listener=listener), log=lambda m: None)
    finally:
        if listener is not None:
            listener.close()
    cpu_us = (time.process_time() - cpu0) / summary.items * 1e6
    return {"items": summary.items, "items_per_s": round(summary.items / summary.wall_s, 1), "cpu_us": round(cpu_us)}


def log_size(log_path: Path) -> dict[str, Any]:
    con = sqlite3.connect(log_path)
    rows, thumbs = con.execute(
        "SELECT (SELECT count(*) FROM inspections), (SELECT count(*) FROM thumbnails)"
    ).fetchone()
    thumb_bytes = con.execute("SELECT coalesce(sum(length(jpeg)), 0) FROM thumbnails").fetchone()[0]
    try:  # pages per table, where this SQLite has the dbstat table
        pages = dict(con.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
    except sqlite3.Error:
        pages = {}
    con.close()
    size = log_path.stat().st_size
    rows_bytes = size - pages.get("thumbnails", thumb_bytes)
    return {
        "bytes_per_item_row": round(rows_bytes / rows),
        "bytes_per_thumbnail": round(pages.get("thumbnails", thumb_bytes) / max(thumbs, 1)),
        "rows": rows,
        "thumbnails": thumbs,
        "file_bytes": size,
        "thumbnail_bytes": thumb_bytes,
        "mb_per_10k": round(size / rows * 10_000 / 1e6, 2),
        "mb_per_10k_without_images": round(rows_bytes / rows * 10_000 / 1e6, 2),
    }


def throughput(folder: Path, rounds: int, tmp: Path) -> dict[str, Any]:
    runs: dict[str, list[float]] = {"without --log": [], "with --log": []}
    cpu: dict[str, list[float]] = {"without --log": [], "with --log": []}
    folder_run(folder, None)  # warm the page cache and the model
    size = {}
    for k in range(rounds):
        for name, path in (("without --log", None), ("with --log", tmp / f"folder{k}.db")):
            r = folder_run(folder, path)
            runs[name].append(r["items_per_s"])
            cpu[name].append(r["cpu_us"])
        size = log_size(tmp / f"folder{k}.db")
        print(f"folder round {k + 1}: {runs['without --log'][-1]} vs {runs['with --log'][-1]} items/s", file=sys.stderr)
    best = {name: max(v) for name, v in runs.items()}
    median = {name: float(np.median(v)) for name, v in runs.items()}
    cpu_median = {name: float(np.median(v)) for name, v in cpu.items()}
    return {
        "cpu_us_per_item": cpu,
        "cpu_median": cpu_median,
        "ratio_best": round(best["with --log"] / best["without --log"], 3),
        "ratio_cpu": round(cpu_median["without --log"] / cpu_median["with --log"], 3),
        "folder": str(folder),
        "rounds": runs,
        "best": best,
        "median": median,
        "ratio_median": round(median["with --log"] / median["without --log"], 3),
        "log": size,
    }


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


def check_options(data: Path, out: Path, *, spin: str, priority: str) -> None:
    """Before any timing: the throughput folder (a missing one timed the 5 bundled samples without a word), the
    output folder, and the conditions (--priority both set its own and dropped --spin's)."""
    from edge_runtime.errors import DataError, OutputError, UsageError

    if priority == "both" and spin != "auto":
        raise UsageError(f"--priority both runs its own conditions at the default spin; drop --spin {spin}")
    if not data.is_dir():
        raise DataError(f"{data}: folder not found; pass --data DIR with the images for the throughput runs")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".station-probe").write_bytes(b"")
        (out / ".station-probe").unlink()
    except OSError as exc:
        raise OutputError(f"{out}: cannot write the results there ({exc.strerror or exc}); pass --out DIR") from exc


@click.command(cls=Command, help="Measure the station's costs; writes OUT/station.md, station.json and station.png.")
@click.option(
    "--data",
    type=GivenPath(path_type=Path, file_okay=False),
    default=REPO.parent / "shared" / "data" / "casting" / "train",
    show_default=True,
    help="Folder for the throughput runs.",
)
@click.option(
    "--seconds", type=FiniteFloatRange(min=1.5), default=20.0, show_default=True, help="Seconds per live run."
)
@click.option(
    "--rounds", type=click.IntRange(min=1), default=2, show_default=True, help="Interleaved rounds per condition."
)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=REPO / "benchmarks" / "results")
@click.option(
    "--viewer",
    type=click.Choice(["chromium", "http"]),
    default="chromium",
    show_default=True,
    help="The open page: headless Chromium on this machine, or an HTTP client doing what the page does.",
)
@click.option(
    "--viewer-nice",
    type=click.IntRange(0, 19),
    default=0,
    show_default=True,
    help="Run the open page (Chromium) at this lower CPU priority (0: as a browser normally runs).",
)
@click.option(
    "--viewer-like-user",
    is_flag=True,
    help="Start the browser without CAP_SYS_NICE, as an ordinary user's browser runs (as root, Chromium raises "
    "its compositor and IO threads to nice -8, above the inspection).",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 64),
    default=None,
    help="onnxruntime threads for the live runs (as edge-infer --threads) [default: onnxruntime decides].",
)
@click.option(
    "--spin",
    type=click.Choice(["auto", "on", "off", "both"]),
    default="auto",
    show_default=True,
    help="onnxruntime's idle threads in the live runs: auto as edge-infer (sleeping between a live source's "
    "frames), on (spinning), off, or both (no station and --serve with each, interleaved).",
)
@click.option(
    "--serve-fps",
    type=click.FloatRange(0.5, 30.0),
    default=None,
    help="The page's stream rate, as edge-infer --serve-fps [default: edge-infer's].",
)
@click.option(
    "--priority",
    type=click.Choice(["auto", "normal", "both"]),
    default="auto",
    show_default=True,
    help="The inspection loop's CPU priority in the live runs: auto as edge-infer (real-time where the system "
    "allows it), normal, or both (no station and --serve with each, interleaved).",
)
@version_option
@debug_option
@friendly_errors
def main(
    *,
    debug: bool,
    data: Path,
    seconds: float,
    rounds: int,
    out: Path,
    viewer: str,
    viewer_nice: int,
    viewer_like_user: bool,
    threads: int | None,
    spin: str,
    serve_fps: float | None,
    priority: str,
) -> None:
    check_options(data, out, spin=spin, priority=priority)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        res = {
            "hardware": detect_hardware().to_dict(),
            "load_average_at_start": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": "python -m benchmarks.station " + " ".join(sys.argv[1:]),
        }
        res["folder"] = throughput(data, max(rounds, 3), tmp)
        res["live"] = live_latency(
            seconds,
            rounds,
            tmp,
            out / "station.png",
            browser=viewer == "chromium",
            viewer_nice=viewer_nice,
            viewer_like_user=viewer_like_user,
            threads=threads,
            spin=spin,
            serve_fps=serve_fps,
            priority=priority,
        )
        res["sigkill"] = sigkill(tmp)
    (out / "station.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (out / "station.md").write_text(markdown(res))
    click.echo(markdown(res))


if __name__ == "__main__":
    main()
