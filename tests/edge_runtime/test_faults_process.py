"""Faults that need a real process: SIGTERM at any moment (once or twice), a closed or full stdout.

Records and summary must always agree: every line in --output is counted in the --summary JSON.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_runtime.errors import ExitCode
from tests.conftest import REPO
from tests.edge_runtime.conftest import MODELS, write_parts

TINY = str(MODELS / "tiny.onnx")


def catches_sigterm(pid: int) -> bool:
    """True once the process has installed its own SIGTERM handler (Linux: SigCgt in /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next((int(ln.split()[1], 16) for ln in status.splitlines() if ln.startswith("SigCgt:")), 0)
    return bool(mask & (1 << (signal.SIGTERM - 1)))


def _default_signals() -> None:
    # A test run started in the background (`cmd &`, nohup, some CI runners) hands its children SIGINT/SIGHUP
    # ignored, and edge-infer rightly keeps an inherited "ignore"; these tests are about the default case.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def start(args: list[str], **kw: object) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", *args], cwd=REPO, stdout=kw.pop("stdout", subprocess.DEVNULL),
        stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals, **kw,
    )  # fmt: skip


def wait_for_handler(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not catches_sigterm(proc.pid):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "no SIGTERM handler installed"
        time.sleep(0.002)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.3, 1.0])
@pytest.mark.parametrize("times", [1, 2])
def test_sigterm_at_any_moment_ends_with_a_summary_that_matches_the_output(tmp_path, delay, times):
    out, summary = tmp_path / "v.jsonl", tmp_path / "s.json"
    args = ["tests.edge_runtime.live_cli", "--model", TINY, "--quiet", "--output", str(out), "--summary", str(summary)]
    proc = start(args)
    wait_for_handler(proc)
    time.sleep(delay)
    for _ in range(times):
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.01)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert "Traceback" not in err and "summary:" in err and "interrupted" in err
    if summary.exists():  # a signal before the outputs were opened ends with the printed summary only
        counted = json.loads(summary.read_text())["items"]
        lines = out.read_text().splitlines() if out.exists() else []
        assert len(lines) == counted, (len(lines), counted)
        assert all(json.loads(x)["frame"] is not None for x in lines)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_ctrl_c_and_hangup_stop_cleanly_too(tmp_path, sig):
    out, summary = tmp_path / "v.jsonl", tmp_path / "s.json"
    args = ["tests.edge_runtime.live_cli", "--model", TINY, "--quiet", "--output", str(out), "--summary", str(summary)]
    proc = start(args)
    wait_for_handler(proc)
    # mid-run, once records flow: a fixed 0.5 s could land before the outputs were opened on a busy machine (the
    # run then rightly leaves no new --output behind, and the test read a missing file)
    deadline = time.monotonic() + 60
    while not (out.exists() and out.stat().st_size) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.INTERRUPTED and "summary:" in err and "Traceback" not in err
    assert len(out.read_text().splitlines()) == json.loads(summary.read_text())["items"] > 0


def test_closed_stdout_ends_the_run_quietly(tmp_path):
    write_parts(tmp_path / "parts", [10, 200] * 200)
    proc = start(["edge_runtime.cli", "--model", TINY, "--source", str(tmp_path / "parts"), "--json",
                  "--batch-size", "1"], stdout=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    _, err = proc.communicate(timeout=60)
    assert json.loads(first)["error"] is None
    assert proc.returncode == ExitCode.OK, err
    assert "Traceback" not in err and "Exception ignored" not in err and "error:" not in err
    assert "stdout was closed" in err


def test_closed_stdout_fails_the_gate(tmp_path):
    """`--fail-on-defect | head -1` exited 0 after 2 of 35 items: the 5 defective parts after them were never
    judged (the log held some of them, the summary counted none)."""
    write_parts(tmp_path / "parts", [10] * 40 + [200] * 400)  # OK parts first (the tiny model), defects after
    proc = start(["edge_runtime.cli", "--model", TINY, "--source", str(tmp_path / "parts"), "--json",
                  "--batch-size", "1", "--fail-on-defect"], stdout=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["defective"] is False
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.DEFECT_FOUND, err
    assert "stopped early: stdout was closed" in err and "Traceback" not in err
    assert "gate: not passed: stdout's reader went away before the source ended" in err  # it said nothing of why


def test_json_onto_a_stdout_closed_from_the_start_is_refused(tmp_path):
    """`edge-infer --json >&-`: the records went to /dev/null (stdout reopened there), "summary: 60 items", exit 0,
    and --summary said stdout_closed: false."""
    write_parts(tmp_path / "parts", [10, 200])
    command = [sys.executable, "-m", "edge_runtime.cli", "--model", TINY, "--source", str(tmp_path / "parts")]
    closed = subprocess.run([*command, "--json"], cwd=REPO, capture_output=True, text=True, timeout=60,
                            preexec_fn=lambda: os.close(1))  # fmt: skip
    assert closed.returncode == ExitCode.OUTPUT_ERROR, closed.stderr
    assert closed.stderr.strip().splitlines()[-1].startswith("error: stdout is closed (>&-), and --json writes")
    assert "summary:" not in closed.stderr and "Traceback" not in closed.stderr
    kept = subprocess.run([*command, "--output", str(tmp_path / "v.jsonl")], cwd=REPO, stderr=subprocess.PIPE,
                          text=True, timeout=60, preexec_fn=lambda: os.close(1))  # fmt: skip
    assert kept.returncode == ExitCode.OK, kept.stderr  # human lines only: the records are in --output
    assert len((tmp_path / "v.jsonl").read_text().splitlines()) == 2


def test_closed_stdout_over_unreadable_items_ends_quietly_too(tmp_path):
    """Exit 3 and "error: no verdict: the one item could not be read" when the reader left after an unreadable
    first item: 1499 items were never tried."""
    (tmp_path / "bad").mkdir()
    for i in range(1500):
        (tmp_path / "bad" / f"b{i:04}.jpg").write_bytes(b"not a picture")
    proc = start(["edge_runtime.cli", "--model", TINY, "--source", str(tmp_path / "bad"), "--json",
                  "--batch-size", "1"], stdout=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.OK and "error:" not in err and "stdout was closed" in err, err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_stdout_on_a_full_disk_is_exit_7_with_the_summary(tmp_path):
    write_parts(tmp_path / "parts", [10, 200])
    with open("/dev/full", "w") as full:
        proc = start(["edge_runtime.cli", "--model", TINY, "--source", str(tmp_path / "parts"), "--json"], stdout=full)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.OUTPUT_ERROR, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert "summary:" in err and len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1


@pytest.mark.parametrize("json_lines", [True, False])
def test_stdout_onto_a_file_that_fills_up_keeps_whole_lines_only(tmp_path, json_lines):
    """`--json > v.jsonl` on a full disk ended with a torn line, and the summary counted that record as written
    ("the 135 records counted were written" over 134 whole lines)."""
    import resource

    write_parts(tmp_path / "parts", [10, 200] * 30)
    target = tmp_path / "v.out"

    def small_files() -> None:  # a file-size limit: the write that crosses it is cut short, then EFBIG
        _default_signals()
        resource.setrlimit(resource.RLIMIT_FSIZE, (5000, 5000))

    with open(target, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "--model", TINY, "--source",
                                 str(tmp_path / "parts"), *(["--json"] if json_lines else [])], cwd=REPO,
                                stdout=out, stderr=subprocess.PIPE, text=True, preexec_fn=small_files)  # fmt: skip
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.OUTPUT_ERROR, err
    text = target.read_text()
    assert text.endswith("\n") and 0 < len(text) <= 5000
    lines = text.splitlines()
    if json_lines:
        assert all(json.loads(x)["source"] for x in lines)
        assert f"the {len(lines)} records counted were written" in err, err
    else:
        assert all(x.split()[-1].endswith(".png") for x in lines)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_check_station_report_on_a_full_disk_is_exit_7(tmp_path):
    write_parts(tmp_path / "parts", [10, 200])
    with open("/dev/full", "w") as full:
        proc = start(["edge_runtime.cli", "--check-station", str(tmp_path / "parts")], stdout=full)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.OUTPUT_ERROR, err  # was 1, "unexpected OSError"
    assert err.startswith("error: stdout: cannot write") and err.count("\n") == 1, err


def test_two_writers_of_one_output_file_never_interleave(tmp_path):
    out = tmp_path / "v.jsonl"
    args = ["tests.edge_runtime.live_cli", "--model", TINY, "--quiet", "--output", str(out)]
    first = start(args)
    wait_for_handler(first)
    deadline = time.monotonic() + 60
    while not (out.exists() and out.stat().st_size):
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.01)
    second = start(args)
    _, err2 = second.communicate(timeout=60)
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=60)
    assert second.returncode == ExitCode.OUTPUT_ERROR and "another process" in err2
    assert all(json.loads(x)["frame"] is not None for x in out.read_text().splitlines())


def _close_stderr() -> None:
    _default_signals()
    os.close(2)  # as `edge-infer ... 2>&-`, or a service manager that starts programs without stderr


def test_closed_stderr_leaves_stdout_pure_json_and_the_output_file_clean(tmp_path):
    write_parts(tmp_path / "parts", [10, 200, 10])
    (tmp_path / "parts" / "damaged.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)  # libjpeg complains
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "edge_runtime.cli", "--model", TINY, "--source", str(tmp_path / "parts"), "--json",
           "--output", str(out)]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True, preexec_fn=_close_stderr, timeout=120)
    assert done.returncode == ExitCode.OK
    # were the summary lines, printed on stdout among the records (Python had no sys.stderr)
    assert [json.loads(line)["source"] for line in done.stdout.splitlines()]
    assert len(done.stdout.splitlines()) == 4
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        json.loads(line) for line in done.stdout.splitlines()
    ]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_stderr_that_cannot_be_written_loses_messages_not_the_run(tmp_path):
    write_parts(tmp_path / "parts", [10, 200])
    with open("/dev/full", "w") as full:
        cmd = [sys.executable, "-m", "edge_runtime.cli", "--model", TINY, "--source", str(tmp_path / "parts"), "--json"]
        done = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=full, text=True, timeout=120)
    assert done.returncode == ExitCode.OK  # was 1: the first message on stderr failed the run
    assert len([json.loads(line) for line in done.stdout.splitlines()]) == 2


def test_the_summary_counts_the_looks_of_the_records_written_only(tmp_path):
    """The second look's count came from the model's batches: with an --output that fails on its first record
    the summary said "0 items ... second look: 4 items" (and "1 items ... 400%" after `| head -1`)."""
    samples = REPO / "edge_runtime" / "samples"
    summary, full = tmp_path / "s.json", tmp_path / "full.jsonl"
    full.symlink_to("/dev/full")
    args = ["edge_runtime.cli", "--source", str(samples), "--quiet", "--summary", str(summary)]
    done = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and json.loads(summary.read_text())["second_looks"] >= 2  # the case is exercised
    failed = subprocess.run([sys.executable, "-m", *args, "--output", str(full)], cwd=REPO, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    s = json.loads(summary.read_text())
    assert failed.returncode == ExitCode.OUTPUT_ERROR and s["items"] == 0
    assert s["second_looks"] == s["symmetry_looks"] == s["symmetry_lifts"] == 0


SLOW_DRAWING = """
import os, signal, sys, threading, time
import edge_runtime.annotate as annotate
real, calls = annotate.annotate, []
def slow(*args, **kwargs):  # a big frame: the third takes long to draw, and Ctrl-C comes meanwhile
    calls.append(1)
    if len(calls) == 3:
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
        time.sleep(0.4)
    return real(*args, **kwargs)
annotate.annotate = slow
from edge_runtime.cli import main
sys.argv = ["edge-infer", *sys.argv[1:]]
main()
"""


def test_ctrl_c_while_a_frame_is_drawn_keeps_one_saved_frame_per_record(tmp_path):
    """The frame was saved after its record was written and counted, outside the block a signal waits for: a
    stop in between left 3 records and 2 saved frames."""
    import cv2
    import numpy as np

    from tests.edge_runtime.test_cli import write_video

    video = write_video(tmp_path / "line3.avi", [np.full((48, 48), v, np.uint8) for v in (10, 220) * 5])
    out, saved = tmp_path / "r.jsonl", tmp_path / "annotated.avi"
    args = ["--model", TINY, "--source", str(video), "--output", str(out), "--save", str(saved), "--batch-size", "1"]
    proc = subprocess.run([sys.executable, "-c", SLOW_DRAWING, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, preexec_fn=_default_signals)  # fmt: skip
    assert proc.returncode == ExitCode.INTERRUPTED, proc.stderr[-800:]
    cap = cv2.VideoCapture(str(saved))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert 2 <= len(out.read_text().splitlines()) == frames < 10


def opencv_loaded(pid: int) -> bool:
    try:
        return "cv2" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return True


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_during_the_console_scripts_imports_is_a_clean_stop(tmp_path, sig):
    """edge-infer's imports (OpenCV, numpy, click: about 0.15 s) ran before main() took the signals over: Ctrl-C
    there gave a KeyboardInterrupt traceback or click's "Aborted!" (exit 1), SIGTERM killed it without a summary.
    ``import edge_runtime`` now takes them over first, for the edge-infer console script only."""
    script = Path(sys.executable).with_name("edge-infer")
    if not script.exists():
        pytest.skip("edge-infer is not installed beside this Python")
    write_parts(tmp_path / "parts", [10, 220])
    args = [str(script), "--model", TINY, "--source", str(tmp_path / "parts"), "--summary", str(tmp_path / "s.json")]
    during_imports = 0
    for _ in range(5):
        proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_default_signals)  # fmt: skip
        wait_for_handler(proc)
        during_imports += not opencv_loaded(proc.pid)  # the handler came before OpenCV: still importing
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == ExitCode.INTERRUPTED, err[-800:]
        assert "Traceback" not in err and "Aborted" not in err and "stopped early (interrupted)" in err
        # no summary was there before: none is made, and none is said to be "left as it was" (it was, for a file
        # that never existed)
        assert "left as it was" not in err and not (tmp_path / "s.json").exists()
    assert during_imports  # was 0: the handler came only after every import


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("command", ["export-onnx", "edge-bench", "edge-log"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_during_the_other_commands_imports_is_interrupted_exit_130(tmp_path, command, sig):
    """The same for export-onnx, edge-bench and edge-log: Ctrl-C in their imports was a traceback from inside
    OpenCV's import or "unexpected ImportError: initialization failed" (exit 1); a kill a silent exit 143 or 129."""
    script = Path(sys.executable).with_name(command)
    if not script.exists():
        pytest.skip(f"{command} is not installed beside this Python")
    args = {
        "export-onnx": [str(tmp_path / "best.pt"), "--out", str(tmp_path / "m.onnx")],
        "edge-bench": ["--quick", "--no-torch", "--no-live", "--model", TINY, "--json", str(tmp_path / "r.json")],
        "edge-log": ["summary", str(tmp_path / "station.db")],
    }[command]
    proc = subprocess.Popen([str(script), *args], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_default_signals)  # fmt: skip
    wait_for_handler(proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.INTERRUPTED, err[-800:]
    assert err == "error: interrupted\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="needs POSIX signal masks")
def test_a_stop_signal_while_the_handlers_go_in_is_counted_not_a_traceback():
    """The handlers go in one after another. A Ctrl-C once SIGTERM's was in and before SIGINT's met Python's
    default: a KeyboardInterrupt traceback out of the import and death by the signal (exit -2; CI saw it once, from
    `export-onnx`); a SIGTERM or SIGHUP before its own was a silent kill. Here the two not yet taken over are sent
    just after the first handler goes in, in a console script's imports."""
    code = """if True:
        import os, signal, sys
        real, sent = signal.signal, []
        def signal_then_ctrl_c(sig, handler):
            previous = real(sig, handler)
            if len(sent) == 0:  # the first of the three went in
                sent.extend(s for s in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM) if s != sig)
                for other in sent:
                    os.kill(os.getpid(), other)
            return previous
        signal.signal = signal_then_ctrl_c
        sys.argv[0] = "export-onnx"  # the console script's imports: edge_runtime takes the signals over first
        import edge_runtime
        signal.signal = real
        for _ in range(1000):  # a pending signal's Python handler runs at the next bytecode check
            pass
        print("stops counted:", edge_runtime.stopping._early.count)
    """
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                          preexec_fn=_default_signals)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-800:]
    assert proc.stdout == "stops counted: 2\n" and "Traceback" not in proc.stderr


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_stop_during_make_models_imports_is_interrupted_exit_130(tmp_path):
    """`python -m export.ship` (make models): a SIGTERM while it imported torch was a silent exit 143."""
    pytest.importorskip("torch", reason="export.ship needs the train extra")
    proc = subprocess.Popen([sys.executable, "-m", "export.ship", "--checkpoint", str(tmp_path / "best.pt"),
                             "--out-dir", str(tmp_path / "models")], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals)  # fmt: skip
    wait_for_handler(proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.INTERRUPTED, err[-800:]
    assert err == "error: interrupted\n" and sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("opt_in", [False, True])
def test_onnxruntime_telemetry_is_off_unless_the_user_turns_it_on(tmp_path, opt_in):
    """onnxruntime 1.32 wrote a device id and an upload cache under ~/.cache/Microsoft at every start, and printed a
    coloured warning on every run of a service account whose home cannot be written."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"} | {"HOME": str(home)}
    if opt_in:
        env["ORT_DISABLE_TELEMETRY"] = "0"  # the user's own choice is kept
    sample = next((REPO / "edge_runtime" / "samples").rglob("*.jpeg"))
    code = "import sys; sys.argv[0] = 'edge-infer'; from edge_runtime.cli import main; main()"
    proc = subprocess.run([sys.executable, "-c", code, "--model", TINY, "--source", str(sample), "--json"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "telemetry" not in proc.stderr
    made = sorted(p.relative_to(home).as_posix() for p in home.rglob("*"))
    if opt_in:
        if not made:
            pytest.skip("this onnxruntime keeps no telemetry files")
    else:
        assert made == []


def test_importing_the_runtime_as_a_library_leaves_the_signals_alone():
    code = "import signal, edge_runtime; assert signal.getsignal(signal.SIGINT) is signal.default_int_handler"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_a_stop_before_the_source_opens_leaves_the_last_runs_files_alone(tmp_path):
    """Ctrl-C while a stream was opening wrote a "0 items" --summary beside the last run's --output records."""
    import socket

    write_parts(tmp_path / "parts", [10, 220])
    out, summary = tmp_path / "r.jsonl", tmp_path / "s.json"
    first = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "--model", TINY, "--source",
                            str(tmp_path / "parts"), "--output", str(out), "--summary", str(summary)],
                           cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert first.returncode == 0
    before = (out.read_bytes(), summary.read_bytes())
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # accepts, never answers: the open waits
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/feed.mjpg"
    try:
        proc = start(["edge_runtime.cli", "--model", TINY, "--source", url, "--output", str(out), "--summary",
                      str(summary)])  # fmt: skip
        wait_for_handler(proc)
        time.sleep(1.5)  # the model is loaded, the stream is opening
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        silent.close()
    assert proc.returncode == ExitCode.INTERRUPTED, err[-800:]
    assert (out.read_bytes(), summary.read_bytes()) == before and "left as it was" in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_just_after_the_summary_leaves_the_exit_code(tmp_path, sig):
    """After the summary the default actions were back: a Ctrl-C or SIGTERM then killed the process by the signal
    (exit -2 or -15 in most tries instead of the run's own 0)."""
    script = Path(sys.executable).with_name("edge-infer")
    if not script.exists():
        pytest.skip("edge-infer is not installed beside this Python")
    write_parts(tmp_path / "parts", [10, 220])
    args = [str(script), "--model", TINY, "--source", str(tmp_path / "parts"), "--quiet"]
    for delay in (0.005, 0.01, 0.02, 0.03, 0.05):  # while the interpreter shuts down
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_default_signals)
        assert proc.stderr is not None
        seen = b""
        while b"summary:" not in seen and (chunk := os.read(proc.stderr.fileno(), 4096)):
            seen += chunk
        time.sleep(delay)
        proc.send_signal(sig)
        proc.communicate(timeout=60)
        assert proc.returncode == 0


def test_a_stop_ends_a_run_whose_stdout_reader_stalled(tmp_path):
    """A record's write to a pipe nobody reads blocks, inside the block a stop waits for: SIGTERM, Ctrl-C and
    SIGHUP were each only counted, and only SIGKILL ended the run (summary lost)."""
    write_parts(tmp_path / "parts", [10, 220] * 300)  # 600 records: more than a pipe holds
    out, summary = tmp_path / "r.jsonl", tmp_path / "s.json"
    proc = start(["edge_runtime.cli", "--model", TINY, "--source", str(tmp_path / "parts"), "--json", "--output",
                  str(out), "--summary", str(summary)], stdout=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 60
    while not out.exists() or len(out.read_bytes().splitlines()) < 100:  # writing, until the pipe is full
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == ExitCode.INTERRUPTED and time.monotonic() - sent < 15
    assert json.loads(summary.read_text())["items"] == len(out.read_bytes().splitlines()) < 600


def test_a_stop_after_a_batch_went_to_the_log_lets_all_of_its_records_out(tmp_path):
    """A stop signal that came while a batch of verdicts went to the station log ended the run there: the log held
    the batch's 8 items, the summary and --output none of them (16 against 9 in a live run). The batch's records
    now all go out, and the run ends interrupted."""
    from edge_runtime.infer import InferConfig, run_inference

    class StoppedWhileLogging:
        def __init__(self) -> None:
            self.logged = 0

        def on_start(self, model, spec) -> None:  # noqa: ANN001
            pass

        def on_event(self, message: str) -> None:
            pass

        def on_records(self, records, batch) -> None:  # noqa: ANN001
            self.logged += len(records)
            if self.logged == len(records):
                os.kill(os.getpid(), signal.SIGTERM)  # as a station's SIGTERM would, while the log writes

        def on_close(self, summary) -> None:  # noqa: ANN001
            pass

    write_parts(tmp_path / "parts", [10, 220] * 10)
    listener = StoppedWhileLogging()
    cfg = InferConfig(source=str(tmp_path / "parts"), model=MODELS / "tiny.onnx", quiet=True, batch_size=8,
                      workers=1, output=tmp_path / "o.jsonl", listener=listener)  # fmt: skip
    summary, code = run_inference(cfg, log=lambda m: None)
    written = (tmp_path / "o.jsonl").read_text().splitlines()
    assert code == ExitCode.INTERRUPTED and summary.interrupted
    assert listener.logged == 8 and summary.items == 8 and len(written) == 8, (listener.logged, summary.items)
