"""How long a live source may keep failing, and how much it says meanwhile: a camera that sends a frame or a burst
and hangs on every connection, one that comes back and stays up, and a long outage, on loopback servers as in
tests/edge_runtime/test_faults_streams.py; the reader's thinned-out messages with a fake camera, in fractions of a
second.

The cameras' tests are skipped when ffmpeg is not installed (``apt-get install -y ffmpeg``).
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.errors import ExitCode, SourceError
from edge_runtime.sources import LatestFrameReader
from tests.edge_runtime.test_streams import (
    FFMPEG,
    BrokenEncoderCamera,
    Camera,
    edge_infer,
    free_port,
    lines_of,
    wait_for_records,
)

needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="needs ffmpeg (apt-get install -y ffmpeg)")


class HangingCamera(BrokenEncoderCamera):
    """An HTTP MJPEG camera that sends ``frames`` pictures 0.1 s apart on every connection, then nothing with the
    connection open (an encoder that hangs soon after each restart). Two is the fewest OpenCV opens a stream with:
    with one, the open itself fails (no picture came while it was opened), and a failed reopen counted already."""

    def __init__(self, frames: int) -> None:
        self.frames = frames
        super().__init__()  # the server: each connection streams with _stream below

    def _stream(self, conn: socket.socket, first: bool) -> None:
        head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(self.jpeg)
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=frame\r\n\r\n")
            for _ in range(self.frames):
                conn.sendall(head + self.jpeg + b"\r\n")
                if self.closed.wait(0.1):
                    return
            self.closed.wait()


def run_until_lost(camera: BrokenEncoderCamera, max_reconnects: int, tmp_path: Path, *, timeout: float):
    """edge-infer on ``camera`` with ``--max-reconnects``, to its end: asserted lost (exit 5); the --output file, the
    --summary as read back, and stderr."""
    out, summary = tmp_path / "v.jsonl", tmp_path / "s.json"
    proc = edge_infer(["--source", camera.url, "--max-reconnects", str(max_reconnects), "--read-timeout", "1",
                       "--output", str(out), "--summary", str(summary), "--quiet"])  # fmt: skip
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        camera.close()
    assert proc.returncode == ExitCode.SOURCE_UNAVAILABLE, err
    return out, json.loads(summary.read_text()), err


@needs_ffmpeg
@pytest.mark.parametrize("frames", [2, 8])
def test_a_camera_that_hangs_soon_after_every_reopen_uses_up_max_reconnects(frames: int, tmp_path: Path):
    """Each reopen brought a frame or two (or a short burst), which started the reconnect count afresh: with
    --max-reconnects 2 the station reopened the camera forever and never ended for systemd to restart it."""
    camera = HangingCamera(frames)
    out, said, err = run_until_lost(camera, 2, tmp_path, timeout=45)
    assert said["items"] == len(lines_of(out)) >= 3 and camera.connections == 3, (said, camera.connections)
    assert said["reconnects"] == 2  # each reopen did bring pictures: reconnects, but no recovery
    assert "source lost: " in err and "not back after 2 reconnect attempts" in err, err
    assert "2 of them brought frames, but it dropped again before it had been up 10 s" in err, err
    assert "Traceback" not in err


class RecoveringCamera(BrokenEncoderCamera):
    """An HTTP MJPEG camera at 10 FPS that hangs with the connection open: on its first connection after 3 frames,
    on the second after ``up_s`` seconds, on later ones after 5 frames."""

    def __init__(self, up_s: float) -> None:
        self.up_s = up_s
        super().__init__()

    def _stream(self, conn: socket.socket, first: bool) -> None:
        head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(self.jpeg)
        which = self.connections
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=frame\r\n\r\n")
            frames = {1: 3, 2: round(self.up_s * 10)}.get(which, 5)
            for _ in range(frames):
                conn.sendall(head + self.jpeg + b"\r\n")
                if self.closed.wait(0.1):
                    return
            self.closed.wait()


@needs_ffmpeg
def test_a_camera_that_comes_back_and_stays_up_gets_its_reconnects_again(tmp_path: Path):
    """The other side of the rule above: a reopened camera that has stayed up long enough is back, and a later
    drop has the whole --max-reconnects again (here 1, used twice: the run ends when the third connection, too short
    to be back, has hung)."""
    camera = RecoveringCamera(up_s=12.0)
    out, said, err = run_until_lost(camera, 1, tmp_path, timeout=55)
    assert camera.connections == 3 and said["reconnects"] == 2, (camera.connections, err)
    assert said["items"] == len(lines_of(out)) and err.count("reconnected (attempt 1)") == 2, err
    assert "not back after 1 reconnect attempt (1 of them brought frames" in err and "Traceback" not in err


@needs_ffmpeg
def test_a_long_outage_is_told_less_and_less_often_and_its_end_once(tmp_path: Path):
    """A camera off the network printed two lines at every attempt, every 8 s once the wait had reached its cap,
    for as long as it stayed off (a weekend's outage flooded the log). Now each attempt is told while the wait
    doubles, with why it failed, the first one at the cap says so, and the next ones are not (the outage is told
    again once a minute); the camera's return is said once."""
    from edge_runtime.demo import make_sample_video

    video = tmp_path / "line.avi"
    make_sample_video(video, frames_per_image=2)
    camera = Camera(video, free_port()).start()
    out, summary = tmp_path / "v.jsonl", tmp_path / "s.json"
    proc = edge_infer(["--source", camera.url, "--output", str(out), "--summary", str(summary), "--quiet"])
    try:
        wait_for_records(out, 3, proc)
        camera.kill()
        time.sleep(26.0)  # attempts 1 to 5 (0.5 s doubling to 8 s) and 6, 8 s after 5
        camera.start()
        wait_for_records(out, len(lines_of(out)) + 5, proc)
        time.sleep(11.0)  # up 10 s and 5 frames: back
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        camera.kill()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "reconnect attempt 5 in 8.0 s (from now on every 8 s, told once a minute)" in err, err
    assert "reconnect attempt 6" not in err and "reopened (attempt 6)" not in err, err
    # each failed reopen that is told says why
    assert err.count(f"nothing listens at 127.0.0.1:{camera.port}") == 5, err
    back = [line for line in err.splitlines() if "reconnected (attempt" in line]
    assert len(back) == 1 and " s down" in back[0], err
    assert json.loads(summary.read_text())["reconnects"] == 1 and "Traceback" not in err


class FakeCamera:
    """``frames`` frames (None: endless) at 200 FPS, then the read fails."""

    def __init__(self, frames: int | None) -> None:
        self.left = frames

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.left is not None:
            if self.left <= 0:
                return False, None
            self.left -= 1
        time.sleep(0.005)
        return True, np.zeros((4, 4), np.uint8)

    def release(self) -> None:
        pass


def test_an_outage_at_the_capped_wait_is_told_once_a_while_with_the_count_and_the_reason():
    """The reader's side of the long outage, in fractions of a second: the wait doubles from 0.01 to 0.04 s, and
    the outage is told every 0.3 s once the wait is at its cap; the source comes back, up 0.1 s: said once."""
    calls = {"n": 0}
    events: list[str] = []

    def factory() -> FakeCamera:
        calls["n"] += 1
        if calls["n"] == 1:
            return FakeCamera(3)
        if calls["n"] < 60:
            raise SourceError("fake: nothing listens at 10.0.0.9:80 (the camera is off or still starting)")
        return FakeCamera(None)

    reader = LatestFrameReader(factory, name="fake", backoff_s=(0.01, 0.04), on_event=events.append,
                               steady_after=(5, 0.1), still_down_every_s=0.3)  # fmt: skip
    with reader:
        deadline = time.monotonic() + 20
        while not any("reconnected" in e for e in events) and time.monotonic() < deadline:
            reader.read(timeout=0.1)
    said_attempts = [e for e in events if "reconnect attempt " in e and " in " in e]
    assert [e.split(" in ")[0] for e in said_attempts] == [f"fake: reconnect attempt {k}" for k in (1, 2, 3)]
    assert "(from now on every 0.04 s, told every 0.3 s)" in said_attempts[-1], events
    still = [e for e in events if "still down after" in e]
    # about 58 attempts of 0.04 s: 2.3 s, told every 0.3 s
    assert 3 <= len(still) <= 15 and all("(nothing listens at 10.0.0.9:80" in e for e in still), events
    counts = [int(e.split("still down after ")[1].split()[0]) for e in still]
    assert counts == sorted(counts) and counts[-1] > 40, still
    assert sum("nothing listens" in e for e in events) == 3 + len(still), events
    back = [e for e in events if "reconnected" in e]
    assert back == [back[0]] and back[0].startswith("fake: reconnected (attempt 59), after "), events
    assert len(events) < 25, events  # each attempt told: over 110
