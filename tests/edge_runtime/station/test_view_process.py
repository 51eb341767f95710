"""The web view's own process: it ends with the run, ends when the run's process is SIGKILLed, a failed start is
one line (exit 7), and a view process that dies does not stop the inspection."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_runtime.cli import main
from edge_runtime.errors import ExitCode
from edge_runtime.station.feed import LiveFeed
from tests.conftest import REPO
from tests.edge_runtime.conftest import write_parts
from tests.edge_runtime.station.conftest import RUN, record
from tests.edge_runtime.station.test_infer_station import write_video

pytest.importorskip("starlette", reason="the web view needs the [station] extra")
pytest.importorskip("uvicorn", reason="the web view needs the [station] extra")

from edge_runtime.station.server import Bind, StationServer  # noqa: E402

URL = re.compile(r"live view at (http://\S+/)")


def views(pid: int) -> set[int]:
    """Living (not zombie) processes spawned by ``pid`` with multiprocessing (not its resource tracker, which
    multiprocessing keeps for the parent's lifetime)."""
    found = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                spawned = b"spawn_main" in f.read()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z" and spawned:
            found.add(int(entry))
    return found


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def refused(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "api/status", timeout=2).read()
    except (urllib.error.URLError, ConnectionError) as exc:
        return isinstance(getattr(exc, "reason", exc), ConnectionRefusedError)
    return False


def test_the_view_process_ends_with_the_run(tmp_path: Path, tiny_model: Path):
    write_parts(tmp_path / "parts", [10, 220, 30, 240])
    before = views(os.getpid())
    args = ["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--serve", "127.0.0.1:0", "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 4
    url = URL.search(result.stderr).group(1)  # type: ignore[union-attr]
    assert views(os.getpid()) - before == set()  # no web view process left behind
    assert refused(url)


def test_the_view_process_ends_when_the_run_is_killed(tmp_path: Path, tiny_model: Path):
    video = write_video(tmp_path / "line.avi", 30000)
    cmd = [sys.executable, "-m", "edge_runtime.cli", "--model", str(tiny_model), "--source", str(video)]
    proc = subprocess.Popen(
        [*cmd, "--serve", "127.0.0.1:0", "--quiet"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        url = None
        while url is None:
            line = proc.stderr.readline().decode()  # type: ignore[union-attr]
            assert line, "edge-infer ended before serving"
            url = URL.search(line).group(1) if URL.search(line) else None
        spawned = views(proc.pid)
        assert len(spawned) == 1
        assert urllib.request.urlopen(url + "api/status", timeout=5).status == 200
        assert proc.poll() is None, "the run ended before it could be killed; make the video longer"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        (view,) = spawned
        deadline = time.monotonic() + 15
        while running(view) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(view), "the web view outlived the killed run"
        assert refused(url)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_view_process_that_cannot_start_is_one_line_and_exit_7(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
):
    # A Starlette that fails to import, first on the path the spawned process gets from this one (here it is
    # imported already, so only the view process meets it).
    broken = tmp_path / "broken" / "starlette"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('starlette is broken for this test')\n")
    monkeypatch.syspath_prepend(str(broken.parent))
    write_parts(tmp_path / "parts", [10])
    args = ["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--serve", "127.0.0.1:0"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == ExitCode.OUTPUT_ERROR, result.output
    assert "the web view did not start (ImportError: starlette is broken" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_inspection_goes_on_when_the_view_process_dies():
    said: list[str] = []
    feed = LiveFeed(station="line-3")
    server = StationServer(feed, bind=Bind("127.0.0.1", 0), say=said.append)
    server.start()
    try:
        feed.start(RUN, live_source=True)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.join(10)
        t0 = time.monotonic()
        for i in range(3000):
            feed.add([record(i, defective=i % 2 == 0)], [None])
        assert time.monotonic() - t0 < 5  # appends only: the dead view never makes the run wait
        deadline = time.monotonic() + 10
        while not feed.broken and time.monotonic() < deadline:
            time.sleep(0.05)
        assert feed.broken and said and "inspection goes on" in said[0]
        feed.add([record(0, defective=True)], [None])
        assert len(feed.pending) == 0  # nothing piles up for a view that is gone
    finally:
        server.stop()


def test_a_stop_ends_even_when_the_view_process_hangs():
    """A hung view process (SIGSTOP) filled its pipe: the feed's send blocked, and SIGTERM, Ctrl-C and a second
    SIGTERM never ended edge-infer (only SIGKILL did). The stop now gives the last send 2 s, then ends the view."""
    import numpy as np

    feed = LiveFeed(station="line-3")
    server = StationServer(feed, bind=Bind("127.0.0.1", 0))
    server.start()
    feed.start(RUN, live_source=True)
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        big = np.full((400, 400), 200, np.uint8)  # defective items' pictures travel without a log: the pipe fills
        for i in range(200):
            feed.add([record(i, defective=True)], [big])
            time.sleep(0.002)
        time.sleep(1.0)  # the sender is now blocked in its send
        import threading

        stopping = threading.Thread(target=server.stop, daemon=True)  # a hang fails the test, not the suite
        t0 = time.monotonic()
        stopping.start()
        stopping.join(30)
        assert not stopping.is_alive() and time.monotonic() - t0 < 20
        assert not server.process.is_alive()
    finally:
        if server.process.is_alive():
            os.kill(server.process.pid, signal.SIGKILL)


def test_updates_a_stalled_view_missed_are_told_and_the_end_is_never_dropped(monkeypatch):
    """Past the backlog limit, updates were dropped without a word, the run's end among them: the page's counters
    stayed short for good and it never showed that the run had ended."""
    from edge_runtime.station import feed as feed_module
    from edge_runtime.station.listener import StationListener
    from edge_runtime.summary import Summary

    monkeypatch.setattr(feed_module, "MAX_BACKLOG", 10)
    feed = LiveFeed(station="line-3")
    for i in range(15):
        feed.add([record(i, defective=False)], [None])
    summary = Summary(source="camera")
    StationListener(live=feed).on_close(summary)
    assert feed.dropped == 5 and feed.pending[-1][0] is feed_module.Kind.FINISH
    assert "station page: 5 updates dropped while the live view did not read them" in summary.text()


def test_a_run_that_stopped_on_a_failed_log_shows_an_error_not_finished():
    """A camera gate stopped on a locked log (exit 7): the page showed "finished · view closed", and nothing on it
    said there had been an error."""
    from edge_runtime.errors import OutputError
    from edge_runtime.station.listener import StationListener
    from edge_runtime.station.live import LiveState
    from edge_runtime.station.view_process import apply
    from edge_runtime.summary import Summary

    feed = LiveFeed(station="line-3")
    summary = Summary(source="camera")
    summary.output_error = "station.db: the inspection log is locked by another program"
    StationListener(live=feed).on_close(summary)
    live = LiveState(station="line-3")
    for message in feed.pending:  # as the view process receives them
        apply(live, message)
    st = live.status()
    assert st["source_state"] == "error" and st["error"] == summary.output_error
    live.finish(interrupted=True)  # an interrupted run without an error says so, with no error
    assert live.status()["source_state"] == "stopped" and live.status()["error"] is None

    class EmptiedLog:  # the log fails again at the end (emptied in place): the page was never told
        def flush(self) -> None:
            raise OutputError("station.db: inspection log emptied during the run by another program")

    feed = LiveFeed(station="line-3")
    with pytest.raises(OutputError):
        StationListener(log=EmptiedLog(), live=feed).on_close(Summary(source="camera"))
    live = LiveState(station="line-3")
    for message in feed.pending:
        apply(live, message)
    assert live.status()["source_state"] == "error" and "emptied during the run" in live.status()["error"]


def test_a_log_failure_met_again_at_the_end_is_said_once():
    """The emptied log stopped the run at a write, and its end met it again: the error line held the whole message
    twice, joined by '; '."""
    from types import SimpleNamespace

    from edge_runtime.errors import OutputError
    from edge_runtime.run_end import finish_run
    from edge_runtime.summary import Summary

    message = "station.db: inspection log emptied during the run by another program"

    class Failing:
        def on_close(self, summary: Summary) -> None:
            raise OutputError(message)

    cfg = SimpleNamespace(listener=Failing(), fail_on_defect=False, summary_path=None, output=None)
    summary, lines = Summary(source="camera"), []
    summary.output_error = message
    finish_run(cfg, summary, None, lines.append)
    assert summary.output_error == message and lines[-1] == f"error: {message}"


def test_a_stop_sent_to_the_whole_process_group_prints_no_live_view_fault(tiny_model: Path):
    """SIGTERM to the process group (systemd's stop, `kill -- -PGID`, the station demo stopped so) killed the view
    process at once, and after its summary the run printed "station: the live view stopped (BrokenPipeError);
    inspection goes on": a fault line, for a clean stop. The view now ends with the run, as on Ctrl-C."""
    cmd = [sys.executable, "-m", "tests.edge_runtime.live_cli", "--model", str(tiny_model), "--serve", "127.0.0.1:0"]
    proc = subprocess.Popen(
        [*cmd, "--quiet"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        said = []
        while not any(URL.search(line) for line in said):
            said.append(proc.stderr.readline().decode())  # type: ignore[union-attr]
            assert said[-1], f"edge-infer ended before serving: {said}"
        time.sleep(1.5)  # items flow to the view
        (view,) = views(proc.pid)
        # the group's signal, taken by the view before the run acts on it (as in the demo; otherwise a race)
        os.kill(proc.pid, signal.SIGSTOP)
        os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 2
        while running(view) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGCONT)
        err = "".join(said) + proc.communicate(timeout=60)[1].decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert "live view stopped" not in err and "Traceback" not in err, err
    assert "summary:" in err and proc.returncode == ExitCode.INTERRUPTED and not running(view), err
