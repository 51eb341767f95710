"""edge-infer as a user runs it: outputs, errors mid-folder, exit codes, video, live source, SIGTERM."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime.cli import main
from edge_runtime.errors import ExitCode
from edge_runtime.outputs import RECORD_KEYS
from tests.conftest import REPO
from tests.edge_runtime.conftest import make_tiny_model, write_parts
from tests.edge_runtime.test_sources import FakeCamera


def run(*args: str) -> tuple[int, list[dict], str]:
    """Invoke edge-infer in-process with --json; returns (exit code, JSON records on stdout, stderr)."""
    result = CliRunner().invoke(main, [*args, "--json"])
    records = [json.loads(line) for line in result.stdout.splitlines()]  # stdout must be pure JSON lines
    return result.exit_code, records, result.stderr


def test_help_documents_sources_outputs_and_exit_codes():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    read = " ".join(result.output.split())  # as read, whatever the help's line wrapping
    for text in ("--camera", "--source", "--json", "--output", "--fail-on-defect", "10 defect found", "130"):
        assert text in read


def test_unreadable_item_mid_folder_gets_an_error_line_and_the_run_goes_on(tmp_path: Path, tiny_model: Path):
    write_parts(tmp_path / "parts", [10, 200, 30, 250])
    (tmp_path / "parts" / "part_01b.jpg").write_bytes(b"\xff\xd8\xff truncated")
    (tmp_path / "parts" / "notes.txt").write_text("not an image: ignored")
    code, recs, err = run("--model", str(tiny_model), "--source", str(tmp_path / "parts"))
    assert code == ExitCode.OK
    assert [Path(r["source"]).name for r in recs] == [
        "part_00.png", "part_01.png", "part_01b.jpg", "part_02.png", "part_03.png"
    ]  # fmt: skip
    assert all(list(r) == list(RECORD_KEYS) for r in recs)
    bad = recs[2]
    assert "part_01b.jpg" in bad["error"] and bad["label"] is None and bad["score"] is None
    good = [r for r in recs if r["error"] is None]
    assert [r["defective"] for r in good] == [False, True, False, True]
    assert [r["label"] for r in good] == ["ok", "defective", "ok", "defective"]
    assert all(0 <= r["score"] <= 1 and r["latency_ms"] > 0 and r["frame"] is None for r in good)
    assert "5 items, 2 defective, 2 ok, 1 error" in err
    assert "1 file not inspected, not images or hidden: notes.txt" in err  # named: one expected inspected shows


def test_fail_on_defect_is_a_gate(tmp_path: Path, tiny_model: Path):
    write_parts(tmp_path / "good", [10, 20])
    write_parts(tmp_path / "mixed", [10, 220])
    code, _, err = run("--model", str(tiny_model), "--source", str(tmp_path / "good"), "--fail-on-defect")
    assert code == 0 and "gate:" not in err
    (tmp_path / "mixed" / "part_02.png").write_bytes(b"\x89PNG\r\n\x1a\n not a picture")
    code, _, err = run("--model", str(tiny_model), "--source", str(tmp_path / "mixed"), "--fail-on-defect")
    # exit 10 came with no reason on stderr but the summary's counts
    assert code == 10 and err.strip().splitlines()[-1] == "gate: not passed: 1 defective item, 1 item error"
    assert run("--model", str(tiny_model), "--source", str(tmp_path / "mixed"))[0] == 0


def test_output_files_are_written_as_jsonl_and_csv(tmp_path: Path, tiny_model: Path):
    write_parts(tmp_path / "parts", [10, 220, 240])
    for name in ("v.jsonl", "v.csv"):
        result = CliRunner().invoke(
            main, ["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--output", str(tmp_path / name)]
        )
        assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in (tmp_path / "v.jsonl").read_text().splitlines()]
    rows = list(csv.DictReader((tmp_path / "v.csv").open()))
    assert [r["defective"] for r in lines] == [False, True, True]
    assert [r["defective"] for r in rows] == ["False", "True", "True"] and rows[0]["frame"] == ""


def test_missing_and_invalid_model_exit_4_with_one_line(tmp_path: Path):
    write_parts(tmp_path / "parts", [10])
    code, _, err = run("--model", str(tmp_path / "none.onnx"), "--source", str(tmp_path / "parts"))
    assert code == ExitCode.BAD_MODEL and "none.onnx" in err and "Traceback" not in err
    no_meta = make_tiny_model(tmp_path / "no_meta.onnx", metadata="")
    code, _, err = run("--model", str(no_meta), "--source", str(tmp_path / "parts"))
    assert code == ExitCode.BAD_MODEL and "no defect-edge metadata" in err


def test_bad_inputs_have_their_own_exit_codes(tmp_path: Path, tiny_model: Path):
    code, _, err = run("--model", str(tiny_model), "--source", str(tmp_path / "missing"))
    assert code == ExitCode.BAD_DATA and "no such file or folder" in err
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_bytes(b"nope")
    code, recs, err = run("--model", str(tiny_model), "--source", str(tmp_path / "junk"))
    assert code == ExitCode.BAD_DATA and len(recs) == 1 and recs[0]["error"]
    # exit 3 came with the summary alone
    assert (
        err.strip().splitlines()[-1]
        == "error: no verdict: the one item could not be read (each record says why); check the source"
    )
    assert run("--model", str(tiny_model))[0] == ExitCode.BAD_DATA  # neither --source nor --camera


def test_missing_camera_fails_within_seconds_with_exit_5(tiny_model: Path):
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "edge_runtime.cli", "--model", str(tiny_model), "--camera", "/dev/video97"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert r.returncode == ExitCode.SOURCE_UNAVAILABLE, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: ") and "/dev/video97" in r.stderr
    assert time.monotonic() - t0 < 30  # generous: includes interpreter start-up on a busy machine


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) if f.ndim == 2 else f)
    writer.release()
    return path


@pytest.mark.data
def test_video_of_real_images_yields_one_line_per_frame(tmp_path: Path, tiny_model: Path, casting_dir: Path):
    images = sorted((casting_dir / "test" / "ok_front").glob("*.jpeg"))[:12]
    video = write_video(tmp_path / "line.avi", [cv2.imread(str(p)) for p in images])
    code, recs, err = run("--model", str(tiny_model), "--source", str(video), "--save", str(tmp_path / "out.avi"))
    assert code == 0, err
    assert [r["frame"] for r in recs] == list(range(12))
    assert all(r["source"] == str(video) and r["error"] is None for r in recs)
    saved = cv2.VideoCapture(str(tmp_path / "out.avi"))
    assert int(saved.get(cv2.CAP_PROP_FRAME_COUNT)) == 12


def test_max_frames_stops_a_video(tmp_path: Path, tiny_model: Path):
    video = write_video(tmp_path / "v.avi", [np.full((64, 64), 40 + i, np.uint8) for i in range(20)])
    code, recs, err = run("--model", str(tiny_model), "--source", str(video), "--max-frames", "5")
    assert code == 0 and len(recs) == 5
    # a gate's exit 0 on the first 5 of 20 read as the whole video judged: the summary says where it stopped
    assert "stopped at --max-frames 5: items after them, if any, were not inspected" in err.splitlines()
    code, recs, err = run("--model", str(tiny_model), "--source", str(video), "--max-frames", "25")
    assert code == 0 and len(recs) == 20 and "--max-frames" not in err


def test_max_frames_at_the_source_s_very_end_claims_no_stop(tmp_path: Path, tiny_model: Path):
    """--max-frames 20 on a 20-frame video (or 4 on a folder of 4 images) said "stopped at --max-frames 20: items
    after them, if any, were not inspected", though the whole source had been judged."""
    video = write_video(tmp_path / "v.avi", [np.full((64, 64), 40 + i, np.uint8) for i in range(20)])
    for extra in ([], ["--save", str(tmp_path / "out.avi")]):  # --save: the reader reads fewer frames ahead
        code, recs, err = run("--model", str(tiny_model), "--source", str(video), "--max-frames", "20", *extra)
        assert code == 0 and len(recs) == 20 and "--max-frames" not in err, err
    write_parts(tmp_path / "parts", [10, 200, 30, 250])
    for n, told in (("4", False), ("3", True)):
        code, recs, err = run("--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--max-frames", n)
        assert code == 0 and len(recs) == int(n) and ("stopped at --max-frames" in err) is told, err
    # a video cut short: its frames were all read, but its end is no clean one (the cut is not told): the line stays
    cut = tmp_path / "cut.avi"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size * 6 // 10])
    code, recs, err = run("--model", str(tiny_model), "--source", str(cut))
    if "stopped at frame" not in err:
        pytest.skip("this container keeps no frame count once cut")
    code, recs, err = run("--model", str(tiny_model), "--source", str(cut), "--max-frames", str(len(recs)))
    assert f"stopped at --max-frames {len(recs)}: items after them" in err and "stopped at frame" not in err


def test_live_camera_runs_until_sigterm_then_stops_cleanly_with_the_summary(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
):
    import edge_runtime.inputs as inputs
    from edge_runtime.infer import InferConfig, run_inference

    monkeypatch.setattr(inputs, "capture_factory", lambda name, **kw: lambda: FakeCamera(fps=300.0))
    timer = threading.Timer(0.8, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    messages: list[str] = []
    out = tmp_path / "live.jsonl"
    cfg = InferConfig(camera="0", model=tiny_model, output=out, quiet=True)
    summary, code = run_inference(cfg, log=messages.append)
    timer.cancel()
    assert code == ExitCode.INTERRUPTED and summary.interrupted
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == summary.items > 0
    frames = [r["frame"] for r in lines]
    assert frames == sorted(frames) and frames[-1] >= len(frames) - 1
    assert "interrupted" in messages[-1] or "interrupted" in "\n".join(messages)
    # a live source leaves the CPU to the rest of the station between frames (no spinning threads)
    assert any("(not spinning)" in m for m in messages if m.startswith("model "))


def test_show_without_a_display_runs_headless_with_a_notice(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    write_parts(tmp_path / "parts", [10, 220])
    code, recs, err = run("--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--show")
    assert code == 0 and len(recs) == 2
    assert "no display found" in err and "running headless" in err


@pytest.mark.parametrize("env", [{"DISPLAY": ":987"}, {"WAYLAND_DISPLAY": "wayland-987"}])
def test_show_on_a_display_that_cannot_be_reached_runs_headless_and_keeps_everything(
    tmp_path: Path, tiny_model: Path, env: dict[str, str]
):
    """A stale DISPLAY (after an SSH session, a kiosk's X server restarting): OpenCV's Qt aborted the process
    (exit 134), with no summary, one record of the run's and an unplayable --save video."""
    write_parts(tmp_path / "parts", [10, 220, 30])
    base = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    args = ["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--show", "--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "edge_runtime.cli", *args, "--summary", str(tmp_path / "s.json")],
        cwd=REPO, env=base | env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 3, proc.stderr
    assert "--show: cannot open a window on display" in proc.stderr and "running headless" in proc.stderr
    assert json.loads((tmp_path / "s.json").read_text())["items"] == 3


def test_debug_prints_the_traceback_and_keeps_the_documented_exit_code(tmp_path: Path, tiny_model: Path):
    code, _, err = run("--model", str(tiny_model), "--source", str(tmp_path / "missing"), "--debug")
    assert code == ExitCode.BAD_DATA and "Traceback" in err  # was exit 1, which the README keeps for bugs
    assert err.strip().splitlines()[-1].startswith("error: ")


def test_a_stop_while_the_station_starts_releases_the_camera(tiny_model: Path, monkeypatch: pytest.MonkeyPatch):
    """Ctrl-C or SIGTERM after the camera opened but before the inspection loop (while --log/--serve started, or
    the real-time priority was set) left the capture thread running and the camera held: a program that calls
    run_inference could not open it again."""
    import edge_runtime.inputs as inputs
    from edge_runtime.infer import InferConfig, run_inference

    cam = FakeCamera(fps=300.0)
    monkeypatch.setattr(inputs, "capture_factory", lambda name, **kw: lambda: cam)

    class StoppedWhileStarting:
        def on_start(self, model, spec) -> None:  # noqa: ANN001
            raise KeyboardInterrupt

    cfg = InferConfig(camera="0", model=tiny_model, quiet=True, listener=StoppedWhileStarting())
    summary, code = run_inference(cfg, log=lambda m: None)
    assert code == ExitCode.INTERRUPTED and summary.interrupted
    assert cam.released.wait(3.0), "the camera is still held after run_inference returned"


def test_the_summary_names_the_model_file_by_its_content_hash_too(tmp_path: Path, tiny_model: Path):
    """--summary named the model by its path alone: a model swapped there after the run left the summary naming a
    file that never judged its items. The SHA-256 of the bytes the run loaded is there now."""
    import hashlib

    from tests.edge_runtime.conftest import write_parts

    write_parts(tmp_path / "parts", [10, 220])
    model = tmp_path / "m.onnx"
    model.write_bytes(tiny_model.read_bytes())
    code, records, _ = run("--model", str(model), "--source", str(tmp_path / "parts"), "--summary",
                           str(tmp_path / "s.json"))  # fmt: skip
    summary = json.loads((tmp_path / "s.json").read_text())
    assert code == 0 and len(records) == 2 and summary["model"] == str(model)
    assert summary["model_sha256"] == hashlib.sha256(tiny_model.read_bytes()).hexdigest()
