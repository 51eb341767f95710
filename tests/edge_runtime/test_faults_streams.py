"""Faults of a live network camera met on a production line, on loopback (small HTTP MJPEG servers here, and
ffmpeg's): a camera that hangs in the middle of a frame and is reopened, one whose encoder sends no pictures, one
triggered by the parts (a frame per part, none while the line is idle), one that goes off the network while the
run is stopped, a URL onto a web page, a port nobody listens on, a host that is not found, a misspelt scheme.

The cameras' tests are skipped when ffmpeg is not installed, as tests/edge_runtime/test_streams.py is
(``apt-get install -y ffmpeg``).
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from pathlib import Path

import cv2
import pytest

from edge_runtime.errors import ExitCode
from tests.edge_runtime.test_streams import (
    FFMPEG,
    BrokenEncoderCamera,
    Camera,
    SlowCamera,
    edge_infer,
    free_port,
    lines_of,
    wait_for_records,
)

needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="needs ffmpeg (apt-get install -y ffmpeg)")


class StallingCamera(BrokenEncoderCamera):
    """An HTTP MJPEG camera sending real casting images at 10 FPS. On its first connection it sends ``good``
    frames, then half of the next one, and goes silent with the connection open (an encoder that hung mid-frame);
    every later connection streams whole frames."""

    def __init__(self, casting: Path, good: int = 4) -> None:
        names = sorted((casting / "test" / "ok_front").glob("*.jpeg"))[:4]
        self.jpegs = [cv2.imencode(".jpg", cv2.imread(str(p)))[1].tobytes() for p in names]
        self.good = good
        super().__init__()  # the server: each connection streams with _stream below

    def _stream(self, conn: socket.socket, first: bool) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=frame\r\n\r\n")
            n = 0
            while not self.closed.is_set():
                data = self.jpegs[n % len(self.jpegs)]
                head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data)
                if first and n == self.good:
                    conn.sendall(head + data[: len(data) // 2])
                    self.closed.wait()
                    return
                conn.sendall(head + data + b"\r\n")
                n += 1
                self.closed.wait(0.1)


@needs_ffmpeg
def test_a_frame_cut_off_by_a_stall_does_not_put_a_warning_on_the_good_frames_after_the_reconnect(
    casting_dir: Path, tmp_path: Path
):
    """FFmpeg's report of the cut-off packet ("Packet corrupt") came with the frame that was cut off, an item error
    of its own; the report was kept for the next picture, the first whole frame of the new connection, which got
    "the decoder found damaged data near this frame ...; its verdict may be wrong" and failed the gate: a good part
    rejected after every such reconnect."""
    camera = StallingCamera(casting_dir)
    out = tmp_path / "v.jsonl"
    proc = edge_infer(["--source", camera.url, "--max-frames", "10", "--read-timeout", "1", "--output", str(out),
                       "--quiet"])  # fmt: skip
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        camera.close()
    assert proc.returncode == 0, err
    assert "reconnected (attempt 1)" in err and camera.connections == 2 and "Traceback" not in err
    records = lines_of(out)
    assert len(records) == 10
    cut = [r for r in records if r["error"] or r["warning"]]
    assert [r["frame"] for r in cut] == [4], cut  # the frame cut off by the stall, and no other
    after = records[5:]  # the new connection's whole frames: nothing to warn about
    assert all(r["label"] is not None and r["warning"] is None and r["error"] is None for r in after), after


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("rtps://admin:s3cret@127.0.0.1:8554/line?password=s3cret",
         "rtps://admin:***@127.0.0.1:8554/line?password=***: rtps:// is not a stream this reads (rtsp://, "),
        ("htp://127.0.0.1:8080/feed.mjpg", "htp:// is not a stream this reads"),
        ("file:///line/3.avi", "a file is passed by its path, not as a file:// URL: --source /line/3.avi"),
    ],
)  # fmt: skip
def test_a_camera_url_with_a_misspelt_scheme_is_named_as_such_without_its_password(tiny_model: Path, url, said):
    """A typo in the scheme was "no such file or folder" (the URL read as a path), and one with a query "the
    pattern matches no image file" (its '?' read as a wildcard): both with the camera's password in clear."""
    proc = edge_infer(["--model", str(tiny_model), "--source", url])
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.BAD_DATA and said in err, err
    assert "s3cret" not in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@needs_ffmpeg
def test_a_drop_for_silence_names_the_read_timeout(tmp_path: Path):
    """A camera triggered by the parts, a frame every 1.5 s, read with --read-timeout 1: each gap was told as
    "source dropped after 1 frame; reconnecting" alone, again and again, and nothing named the option to raise."""
    camera = SlowCamera(period=1.5)
    try:
        proc = edge_infer(["--source", camera.url, "--max-frames", "3", "--read-timeout", "1", "--quiet"])
        _, err = proc.communicate(timeout=60)
    finally:
        camera.close()
    assert proc.returncode == 0, err
    said = ("(it sent nothing for 1 s; a camera that sends a frame per part needs --read-timeout above its longest "
            "gap); reconnecting")  # fmt: skip
    assert "source dropped after" in err and said in err and "Traceback" not in err, err


class WebPage:
    """A camera's web server answering every path with its HTML page (200 OK), as a camera does at its address
    without the stream's path."""

    def __init__(self, path: str = "admin:s3cret@{}/index.html") -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = "http://" + path.format(f"127.0.0.1:{self.sock.getsockname()[1]}")
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def answer(self) -> bytes:
        page = b"<html><body>" + b"Camera login " * 100 + b"</body></html>"
        return b"HTTP/1.0 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + page

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                conn.recv(65536)
                self.requests += 1
                conn.sendall(self.answer())

    def close(self) -> None:
        self.sock.close()


def test_a_stream_that_cannot_be_opened_says_why_when_the_camera_side_shows_it(tiny_model: Path):
    """A camera URL onto its web page, a port nobody listens on, and a host name that does not resolve were each
    "cannot open camera or stream (check the index/path/URL and that no other program holds it)"."""
    page = WebPage()
    port = free_port()  # nothing listens there
    cases = {
        page.url: "it answers with a web page (text/html; charset=utf-8), not a video stream: check the URL's path",
        f"rtsp://127.0.0.1:{port}/line": f"nothing listens at 127.0.0.1:{port} (the camera is off or still starting",
        "http://camera-3.invalid/feed.mjpg": "cannot find the host camera-3.invalid (",
        # rtsp://$CAMERA:8554/line with the variable unset: "cannot find the host  (Name or service not known)"
        "rtsp://:8554/line": "the URL names no host (an unset variable?): write it as rtsp://HOST[:PORT]/PATH",
    }
    try:
        for url, said in cases.items():
            proc = edge_infer(["--model", str(tiny_model), "--source", url])
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == ExitCode.SOURCE_UNAVAILABLE and said in err, err
            assert "s3cret" not in err and "Traceback" not in err
    finally:
        page.close()


@needs_ffmpeg
def test_a_run_stopped_while_its_camera_is_down_says_so_in_its_summary(tmp_path: Path):
    """ffmpeg's camera goes off the network and the run is stopped (SIGTERM) while it waits to reconnect: the
    summary, printed and in --summary, read as that of a run whose camera was there to the end (reconnects 0,
    source_error null); only the stderr warnings said otherwise."""
    from edge_runtime.demo import make_sample_video

    video = tmp_path / "line.avi"
    make_sample_video(video, frames_per_image=2)
    camera = Camera(video, free_port()).start()
    out, summary = tmp_path / "v.jsonl", tmp_path / "s.json"
    proc = edge_infer(["--source", camera.url, "--output", str(out), "--summary", str(summary), "--quiet"])
    try:
        wait_for_records(out, 3, proc)
        camera.kill()
        time.sleep(3.0)  # reconnect attempts 1 and 2 fail: nothing listens
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        camera.kill()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    said = json.loads(summary.read_text())
    assert said["items"] == len(lines_of(out)) >= 3 and said["interrupted"]
    assert "down when the run stopped: it dropped" in (said["source_error"] or ""), said
    assert "reconnect attempt" in said["source_error"] and "brought no frame" in said["source_error"]
    assert "source lost: " in err and "down when the run stopped" in err and "Traceback" not in err
    # each failed reopen says why (the general "check the index/path/URL" line had followed the first)
    assert err.count(f"nothing listens at 127.0.0.1:{camera.port} (the camera is off or still starting") >= 2, err


@needs_ffmpeg
def test_a_drop_for_undecodable_frames_says_so(tmp_path: Path):
    """A camera whose encoder broke, sending parts that are no JPEG: the drop read "source dropped after 5 frames"
    alone, as if the camera had gone, while it was still sending."""
    camera = BrokenEncoderCamera()
    try:
        proc = edge_infer(["--source", camera.url, "--max-reconnects", "0", "--quiet"])
        _, err = proc.communicate(timeout=60)
    finally:
        camera.close()
    assert proc.returncode == ExitCode.SOURCE_UNAVAILABLE, err
    said = "source dropped after 7 frames (3 undecodable frames in a row: the camera sends data, but no pictures)"
    assert said in err and "Traceback" not in err, err


class TriggeredCamera(SlowCamera):
    """An HTTP MJPEG camera triggered by the parts: it answers at once, and sends its first frame with the first
    part, ``wait`` seconds later."""

    def __init__(self, wait: float) -> None:
        self.wait = wait
        super().__init__(period=wait)

    def _stream(self, conn: socket.socket, good_first: bool) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=frame\r\n\r\n")
            if self.closed.wait(self.wait):
                return
            conn.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(self.jpeg))
            conn.sendall(self.jpeg + b"\r\n")
            self.closed.wait()


@needs_ffmpeg
def test_a_triggered_camera_that_sends_no_picture_while_it_is_opened_names_the_read_timeout(tiny_model: Path):
    """Started while the line is idle, a camera triggered by the parts answers but sends no picture: the run
    ended "cannot open camera or stream (check the index/path/URL and that no other program holds it)", though
    the URL was right and --read-timeout was the option to raise."""
    camera = TriggeredCamera(wait=7.0)
    try:
        proc = edge_infer(["--model", str(tiny_model), "--source", camera.url])
        _, err = proc.communicate(timeout=60)
    finally:
        camera.close()
    assert proc.returncode == ExitCode.SOURCE_UNAVAILABLE, err
    said = ("it answers with a stream (multipart/x-mixed-replace), but no picture came while it was opened: a camera "
            "that sends a frame per part needs --read-timeout above its longest wait for a part")  # fmt: skip
    assert said in err and "Traceback" not in err, err


class SnapshotServer(WebPage):
    """A camera's snapshot URL (or a picture on a web server): each GET answers one JPEG and closes."""

    def __init__(self, picture: bytes) -> None:
        self.picture = picture
        super().__init__("{}/snapshot.cgi")

    def answer(self) -> bytes:
        head = f"HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {len(self.picture)}\r\n\r\n"
        return head.encode() + self.picture


def test_a_snapshot_url_is_judged_once_and_said_to_be_no_stream(tiny_model: Path):
    """A URL answering one picture was taken for a stream that dropped after each frame: reopened again and again
    (backing off, "reconnecting" every time), the same part judged as a new item each time, for ever. Now it is
    judged once, the run ends with its summary, and a line says what to give to watch a camera."""
    import numpy as np

    ok, jpeg = cv2.imencode(".jpg", np.full((48, 48), 220, np.uint8))  # >= 128: defective with the tiny model
    server = SnapshotServer(jpeg.tobytes())
    try:
        proc = edge_infer(["--model", str(tiny_model), "--source", server.url, "--json", "--fail-on-defect"])
        out, err = proc.communicate(timeout=60)
    finally:
        server.close()
    assert proc.returncode == ExitCode.DEFECT_FOUND, err
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert record["defective"] is True and record["source"] == server.url
    assert "it answers with one picture (image/jpeg), not a video stream: judged once" in err, err
    assert "reconnect" not in err and "Traceback" not in err and "summary: 1 item, 1 defective" in err, err
    assert server.requests <= 3  # FFmpeg's open and the one look at what the URL answers: no reopening
