"""How long a live source may keep failing: a camera that sends a frame or a burst and hangs on every connection,
and one that comes back and stays up, on loopback servers as in tests/edge_runtime/test_faults_streams.py.

The cameras' tests are skipped when ffmpeg is not installed (``apt-get install -y ffmpeg``).
"""

from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path

import pytest

from edge_runtime.errors import ExitCode
from tests.edge_runtime.test_streams import (
    FFMPEG,
    BrokenEncoderCamera,
    edge_infer,
    lines_of,
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


@needs_ffmpeg
@pytest.mark.parametrize("frames", [2, 8])
def test_a_camera_that_hangs_soon_after_every_reopen_uses_up_max_reconnects(frames: int, tmp_path: Path):
    """Each reopen brought a frame or two (or a short burst), which started the reconnect count afresh: with
    --max-reconnects 2 the station reopened the camera forever and never ended for systemd to restart it."""
    camera = HangingCamera(frames)
    out, summary = tmp_path / "v.jsonl", tmp_path / "s.json"
    proc = edge_infer(["--source", camera.url, "--max-reconnects", "2", "--read-timeout", "1", "--output", str(out),
                       "--summary", str(summary), "--quiet"])  # fmt: skip
    try:
        _, err = proc.communicate(timeout=45)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        camera.close()
    assert proc.returncode == ExitCode.SOURCE_UNAVAILABLE, err
    said = json.loads(summary.read_text())
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
    out, summary = tmp_path / "v.jsonl", tmp_path / "s.json"
    proc = edge_infer(["--source", camera.url, "--max-reconnects", "1", "--read-timeout", "1", "--output", str(out),
                       "--summary", str(summary), "--quiet"])  # fmt: skip
    try:
        _, err = proc.communicate(timeout=55)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        camera.close()
    assert proc.returncode == ExitCode.SOURCE_UNAVAILABLE, err
    said = json.loads(summary.read_text())
    assert camera.connections == 3 and said["reconnects"] == 2, (camera.connections, err)
    assert said["items"] == len(lines_of(out)) and err.count("reconnected (attempt 1)") == 2, err
    assert "not back after 1 reconnect attempt (1 of them brought frames" in err and "Traceback" not in err
