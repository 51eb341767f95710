"""edge-infer --log: every record that reached stdout or --output is in the log, even after SIGKILL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime.cli import main
from edge_runtime.errors import ExitCode
from edge_runtime.station.query import Filter, open_reader, rows
from tests.conftest import REPO
from tests.edge_runtime.conftest import write_parts

COMPARED = ("source", "frame", "label", "score", "defective", "latency_ms", "error", "time")


def write_video(path: Path, frames: int, size: int = 32) -> Path:
    """Alternating bright (defective for the tiny model) and dark frames, Motion-JPEG."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (size, size))
    bright, dark = np.full((size, size, 3), 230, np.uint8), np.full((size, size, 3), 20, np.uint8)
    for i in range(frames):
        writer.write(bright if i % 2 == 0 else dark)
    writer.release()
    return path


def same_records(out: list[dict], logged: list[dict]) -> None:
    by_key = {(r["source"], r["frame"]): r for r in logged}
    for rec in out:
        row = by_key[(rec["source"], rec["frame"])]
        assert {k: row[k] for k in COMPARED} == {k: rec[k] for k in COMPARED}


def test_every_item_of_a_folder_is_logged_exactly_as_written(tmp_path: Path, tiny_model: Path):
    write_parts(tmp_path / "parts", [10, 220, 30, 240, 250])
    (tmp_path / "parts" / "broken.png").write_bytes(b"\x89PNG broken")
    db = tmp_path / "station.db"
    args = ["--model", tiny_model, "--source", tmp_path / "parts", "--log", db, "--station", "line-3", "--json"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.stdout.splitlines()]
    logged = list(rows(open_reader(db), Filter()))
    assert len(out) == len(logged) == 6
    same_records(out, logged)
    assert {r["station"] for r in logged} == {"line-3"}
    assert [r["has_image"] for r in logged] == [bool(r["defective"]) for r in logged]
    assert "logging every item to" in result.stderr


def test_log_options_are_checked_before_the_run(tmp_path: Path, tiny_model: Path):
    write_parts(tmp_path / "parts", [10])
    base = ["--model", str(tiny_model), "--source", str(tmp_path / "parts")]
    for extra, text in (
        (["--log-keep", "30d"], "need --log"),
        (["--log", "x.db", "--log-keep", "soon"], "duration"),
        (["--serve", "0.0.0.0:8080"], "needs --token"),
        (["--serve", "nohost"], "HOST:PORT"),
        (["--log", "x.db", "--log-max", "9" * 400 + "GB"], "size"),
        (["--serve", "127.0.0.1:0", "--serve-fps", "nan"], "--serve-fps"),
        # a station of spaces could not be told apart on the page; a newline split edge-log's summary in two
        (["--log", "x.db", "--station", "   "], "--station is blank"),
        (["--log", "x.db", "--station", "line\nbreak"], "control character"),
        (["--log", "x.db", "--station", "line\u2028break"], "control character"),
        (["--log", "x.db", "--station", "line-3 "], "spaces around it"),
        (["--log", "x.db", "--station", "line-3\udce9"], "--station holds a byte that is not UTF-8"),
    ):
        result = CliRunner().invoke(main, base + extra)
        assert result.exit_code == ExitCode.USAGE and text in result.output, extra
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def test_a_refused_run_leaves_no_new_log_and_an_existing_log_as_it_was(tmp_path: Path, tiny_model: Path):
    """``--source nonexist/ --log z.db`` was exit 3 with --output and --summary not written, but an empty z.db."""
    db = tmp_path / "z.db"
    args = ["--model", str(tiny_model), "--source", str(tmp_path / "nonexist"), "--log", str(db)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == ExitCode.BAD_DATA, result.output
    assert not any(p.name.startswith("z.db") for p in tmp_path.iterdir())
    write_parts(tmp_path / "parts", [10, 240])
    ok = CliRunner().invoke(main, [*args[:3], str(tmp_path / "parts"), *args[4:]])
    assert ok.exit_code == 0 and len(list(rows(open_reader(db), Filter()))) == 2
    again = CliRunner().invoke(main, args)  # refused again: the log with its two items stays
    assert again.exit_code == ExitCode.BAD_DATA and len(list(rows(open_reader(db), Filter()))) == 2


def test_a_refused_run_removes_the_folders_it_made_for_a_new_log(tmp_path: Path, tiny_model: Path):
    """``--source nosuch.png --log a/b/station.db`` removed the empty station.db but left a/b behind; folders that
    were there before the run stay."""
    (tmp_path / "kept").mkdir()
    for log in (tmp_path / "a" / "b" / "station.db", tmp_path / "kept" / "new" / "station.db"):
        args = ["--model", str(tiny_model), "--source", str(tmp_path / "nosuch.png"), "--log", str(log)]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == ExitCode.BAD_DATA, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and not any((tmp_path / "kept").iterdir())
    # a log SQLite cannot open: its folders were left, and the message blamed a missing folder or permissions
    parts = tmp_path / "parts"
    write_parts(parts, [10])
    long_name = tmp_path / "c" / "d" / ("x" * 300 + ".db")
    result = CliRunner().invoke(main, ["--model", str(tiny_model), "--source", str(parts), "--log", str(long_name)])
    assert result.exit_code == ExitCode.OUTPUT_ERROR and "file name too long" in result.output
    assert not (tmp_path / "c").exists()


def test_a_log_under_an_image_name_is_a_usage_error_and_a_video_without_frames_leaves_no_log(
    tmp_path: Path, tiny_model: Path
):
    """``--log parts/station.png`` was judged as an item of the run writing it, and of every later run over the
    folder; a video that opens but gives no frame (exit 5) left a new log holding one empty run."""
    write_parts(tmp_path / "parts", [10])
    base = ["--model", str(tiny_model), "--source", str(tmp_path / "parts")]
    result = CliRunner().invoke(main, [*base, "--log", str(tmp_path / "parts" / "station.png")])
    assert result.exit_code == ExitCode.USAGE and "name it .db" in result.output
    assert not (tmp_path / "parts" / "station.png").exists()
    video = tmp_path / "empty.avi"
    cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64)).release()
    args = ["--model", str(tiny_model), "--source", str(video), "--log", str(tmp_path / "z.db")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == ExitCode.SOURCE_UNAVAILABLE, result.output
    assert not any(p.name.startswith("z.db") for p in tmp_path.iterdir())


def test_a_locked_log_stops_the_run_with_exit_7_and_nothing_unlogged_is_written(tmp_path: Path, tiny_model: Path):
    write_parts(tmp_path / "parts", [10, 220, 30])
    db = tmp_path / "station.db"
    first = CliRunner().invoke(
        main, ["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--log", str(db)]
    )
    assert first.exit_code == 0
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another program holds the log
    out = tmp_path / "out.jsonl"
    args = ["--model", tiny_model, "--source", tmp_path / "parts", "--log", db, "--output", out, "--quiet"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    other.execute("ROLLBACK")
    assert result.exit_code == ExitCode.OUTPUT_ERROR, result.output
    assert "locked by another program" in result.output and "Traceback" not in result.output
    assert not out.exists() or out.read_text() == ""


def test_sigkill_loses_nothing_that_was_written(tmp_path: Path, tiny_model: Path):
    video = write_video(tmp_path / "line.avi", 30000)
    db, out = tmp_path / "station.db", tmp_path / "out.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "edge_runtime.cli",
        "--model",
        str(tiny_model),
        "--source",
        str(video),
        "--log",
        str(db),
        "--output",
        str(out),
        "--quiet",
        "--batch-size",
        "8",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 20_000):
        time.sleep(0.01)
    still_running = proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert still_running, "the run ended before it could be killed; make the video longer"
    lines = out.read_text().splitlines()
    written = [json.loads(x) for x in lines[:-1]] + [json.loads(x) for x in lines[-1:] if x.endswith("}")]
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    logged = list(rows(open_reader(db), Filter()))
    assert len(written) >= 50 and len(logged) >= len(written)
    same_records(written, logged)


def test_serve_without_the_station_extra_names_it(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "starlette", None)  # what a runtime-only install looks like
    write_parts(tmp_path / "parts", [10])
    args = ["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--serve", "127.0.0.1:0"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == ExitCode.MISSING_EXTRA
    assert "'.[station]'" in result.output and "Traceback" not in result.output


def test_the_summary_tells_what_retention_deleted(tmp_path: Path, tiny_model: Path):
    """--log-keep deleted a log's older items, exit 0, and nothing said so (with --log-keep 1M, read as 1 minute,
    a month of records went)."""
    from edge_runtime.station.log import InspectionLog, LogConfig
    from tests.edge_runtime.station.conftest import RUN, write_items

    db = tmp_path / "station.db"
    old = InspectionLog(LogConfig(db, station="line-3"))
    old.start_run(RUN)
    write_items(old, 40, t0=time.time() - 7200)
    old.close()
    write_parts(tmp_path / "parts", [10, 220])
    args = [
        "--model",
        tiny_model,
        "--source",
        tmp_path / "parts",
        "--log",
        db,
        "--station",
        "line-3",
        "--log-keep",
        "1h",
    ]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "inspection log: 40 older items deleted to keep within --log-keep 1h" in result.stderr
    assert len(list(rows(open_reader(db), Filter()))) == 2


def _start(tmp_path: Path, tiny_model: Path, video: Path) -> tuple[subprocess.Popen, Path, Path, Path]:
    """edge-infer --log on ``video`` in its own process (another process may then change its files); returns it,
    its log, its --output and its stderr file, once the output has records."""
    db, out, err = tmp_path / "station.db", tmp_path / "out.jsonl", tmp_path / "err.txt"
    cmd = [sys.executable, "-m", "edge_runtime.cli", "--model", str(tiny_model), "--source", str(video), "--log",
           str(db), "--output", str(out), "--quiet", "--batch-size", "8"]  # fmt: skip
    with open(err, "wb") as stderr:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 20_000):
        time.sleep(0.01)
    return proc, db, out, err


def _written(out: Path) -> list[dict]:
    lines = out.read_text().splitlines()
    return [json.loads(x) for x in lines[:-1]] + [json.loads(x) for x in lines[-1:] if x.endswith("}")]


def test_a_log_cut_short_under_the_run_stops_it_with_exit_7(tmp_path: Path, tiny_model: Path):
    """`truncate -s 8192 station.db` while edge-infer writes it: the run went on writing, its checkpoints filled the
    cut with zeros, and it ended exit 0 while edge-log could read none of its items ("damaged")."""
    from edge_runtime.station.log import InspectionLog, LogConfig
    from tests.edge_runtime.station.conftest import RUN, write_items

    earlier = InspectionLog(LogConfig(tmp_path / "station.db", station="line-3"))
    earlier.start_run(RUN)
    write_items(earlier, 2000)  # yesterday's items
    earlier.close()
    proc, db, out, err = _start(tmp_path, tiny_model, write_video(tmp_path / "line.avi", 30000))
    still_running = proc.poll() is None
    os.truncate(db, 8192)
    code = proc.wait(60)
    assert still_running, "the run ended before the log could be cut; make the video longer"
    message = err.read_text()
    assert code == ExitCode.OUTPUT_ERROR, message
    assert "station.db: inspection log cut to 8192 bytes of its" in message and "Traceback" not in message
    frames = [rec["frame"] for rec in _written(out)]
    assert frames == list(range(len(frames))) and len(frames) >= 50  # every item judged before it is in --output


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="the system does not list its locks")
def test_write_ahead_files_deleted_under_the_run_lose_nothing_to_a_sigkill(tmp_path: Path, tiny_model: Path):
    """`rm station.db-wal station.db-shm` while edge-infer writes the log: edge-log read it without the newest
    items, and a SIGKILL then lost them (2816 of 12160 records in --output were not in the log)."""
    proc, db, out, err = _start(tmp_path, tiny_model, write_video(tmp_path / "line.avi", 60000))
    os.unlink(f"{db}-wal")
    os.unlink(f"{db}-shm")
    edge_log = [sys.executable, "-m", "edge_runtime.station.log_cli", "summary", str(db)]
    subprocess.run(edge_log, cwd=REPO, capture_output=True, check=False)  # makes -wal and -shm files of its own
    deadline = time.monotonic() + 5  # it is told at the next write (a second later while edge-log holds its files)
    while time.monotonic() < deadline and "write-ahead files" not in err.read_text():
        time.sleep(0.05)
    told, size = err.read_text(), out.stat().st_size
    while time.monotonic() < deadline + 5 and out.stat().st_size < size + 20_000:  # items after the new files
        time.sleep(0.01)
    still_running = proc.poll() is None
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert still_running, "the run ended before it could be killed; make the video longer"
    written = _written(out)
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    logged = list(rows(open_reader(db), Filter()))
    assert len(written) >= 50 and len(logged) >= len(written), f"{len(written) - len(logged)} records lost"
    same_records(written, logged)
    assert "station.db-wal, station.db-shm" in told and "nothing is lost" in told, told


def test_the_summary_counts_the_items_the_last_retention_pass_deletes(tmp_path: Path, tiny_model: Path):
    """A run shorter than a minute, or the items since the last minute's pass: the pass at the close came after the
    summary, which said nothing while --log-max 1MB deleted 11436 of 12000 items."""
    video, db = write_video(tmp_path / "line.avi", 4000, size=64), tmp_path / "station.db"
    args = ["--model", tiny_model, "--source", video, "--log", db, "--log-max", "1MB", "--quiet"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    with contextlib.closing(open_reader(db)) as con:
        kept = len(list(rows(con, Filter())))
    assert 0 < kept < 4000, "the log did not outgrow --log-max; make the video longer"
    assert f"inspection log: {4000 - kept} older items deleted to keep within --log-max 1MB" in result.stderr


def test_each_run_logs_the_hash_of_the_model_file_it_loaded(tmp_path: Path, tiny_model: Path):
    """The log named the model's path only: a file replaced at that path left it naming a model that never judged
    the items. Each run records the SHA-256 of the bytes it loaded, as --summary's model_sha256, and edge-log
    shows two models where one path held two files."""
    import hashlib
    import shutil

    from edge_runtime.station.log_cli import main as edge_log

    write_parts(tmp_path / "parts", [10, 220])
    model, db = tmp_path / "model.onnx", tmp_path / "station.db"
    hashes = []
    for original in (tiny_model, REPO / "tests" / "models" / "tiny_left.onnx"):
        shutil.copy(original, model)
        hashes.append(hashlib.sha256(model.read_bytes()).hexdigest())
        args = ["--model", model, "--source", tmp_path / "parts", "--log", db, "--summary", tmp_path / "s.json"]
        result = CliRunner().invoke(main, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        assert json.loads((tmp_path / "s.json").read_text())["model_sha256"] == hashes[-1]
    assert hashes[0] != hashes[1]
    assert [r["model_sha256"] for r in rows(open_reader(db), Filter())] == [hashes[0]] * 2 + [hashes[1]] * 2
    result = CliRunner().invoke(edge_log, ["summary", str(db)])
    models = result.output.split("models seen:\n")[1].splitlines()
    assert len(models) == 2 and all(f"sha256 {h[:16]}" in line for line, h in zip(models, hashes, strict=True))
