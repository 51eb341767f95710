"""A real network camera on loopback: ffmpeg serves the sample video as HTTP MJPEG (as IP cameras do) and
``edge-infer --source http://...`` reads it through OpenCV's FFmpeg backend, with the bundled INT8 model.

The stream drops (ffmpeg killed) and comes back (a new ffmpeg on the same port): the run reconnects and goes on,
or, with ``--max-reconnects 0``, ends with exit 5 and a summary that counts every record already written.
Skipped when ffmpeg is not installed (``apt-get install -y ffmpeg``; ``.ci/run`` installs it).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_runtime.errors import ExitCode
from tests.conftest import REPO

FFMPEG = shutil.which("ffmpeg")
pytestmark = pytest.mark.skipif(FFMPEG is None, reason="needs ffmpeg (apt-get install -y ffmpeg)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port, read from /proc (a probe connection would use up ffmpeg's
    single ``-listen 1`` client)."""
    try:
        table = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    want = f"0100007F:{port:04X}"
    return any(row.split()[1] == want and row.split()[3] == "0A" for row in table)


class Camera:
    """ffmpeg playing ``video`` in a loop, in real time, as multipart JPEG over HTTP on ``port``; ``copy``: the
    video's own JPEG frames are sent as they are (damage included) instead of decoded and encoded again."""

    def __init__(self, video: Path, port: int, *, copy: bool = False) -> None:
        self.video, self.port, self.proc, self.copy = video, port, None, copy
        self.url = f"http://127.0.0.1:{port}/feed.mjpg"

    def start(self) -> Camera:
        codec = ["-c:v", "copy"] if self.copy else []
        cmd = [FFMPEG, "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(self.video), *codec,
               "-f", "mpjpeg", "-listen", "1", self.url]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while not listening(self.port):
            assert self.proc.poll() is None, self.proc.stderr.read().decode() if self.proc.stderr else ""
            assert time.monotonic() < deadline, "ffmpeg did not start listening"
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edge_runtime.demo import make_sample_video

    path = tmp_path_factory.mktemp("stream") / "line.avi"
    make_sample_video(path, frames_per_image=2)
    return path


@pytest.fixture
def camera(video: Path) -> Iterator[Camera]:
    cam = Camera(video, free_port())
    yield cam.start()
    cam.kill()


def edge_infer(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edge_runtime.cli", *args], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def lines_of(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.endswith("}")] if path.exists() else []


def wait_for_records(path: Path, n: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(lines_of(path)) < n:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"fewer than {n} records in {timeout:g} s"
        time.sleep(0.05)


def test_verdicts_from_a_real_mjpeg_stream(camera: Camera, tmp_path: Path):
    out, summary = tmp_path / "v.jsonl", tmp_path / "s.json"
    proc = edge_infer(["--source", camera.url, "--max-frames", "15", "--output", str(out), "--summary", str(summary),
                       "--quiet"])  # fmt: skip
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    records = lines_of(out)
    assert len(records) == 15 == json.loads(summary.read_text())["items"]
    assert {r["source"] for r in records} == {camera.url} and all(r["error"] is None for r in records)
    frames = [r["frame"] for r in records]
    assert frames == sorted(frames) and len(set(frames)) == 15  # newest-frame mode: increasing, gaps allowed
    assert {r["label"] for r in records} <= {"ok", "defective"} and all(0 <= r["score"] <= 1 for r in records)
    assert f"{camera.url}: opened" in err and "Traceback" not in err


def test_a_camera_url_with_a_password_and_an_upper_case_scheme(camera: Camera, tmp_path: Path):
    """The password of http://admin:secret@... reached every record, stderr and the summary (and from there the
    inspection log and the station page); HTTP:// was taken for a stream, then failed to open (exit 5)."""
    url = camera.url.replace("http://", "HTTP://admin:s3cret@") + "?user=admin&password=s3cret&fps=5"
    out, summary, db = tmp_path / "v.jsonl", tmp_path / "s.json", tmp_path / "station.db"
    proc = edge_infer(["--source", url, "--max-frames", "5", "--output", str(out), "--summary", str(summary),
                       "--log", str(db)])  # fmt: skip
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    # many IP cameras take the password in the query: it reached every record, the CSV, the summary and the log
    shown = camera.url.replace("http://", "HTTP://admin:***@") + "?user=admin&password=***&fps=5"
    assert {r["source"] for r in lines_of(out)} == {shown} and json.loads(summary.read_text())["source"] == shown
    assert "s3cret" not in err and f"{shown}: opened" in err
    assert not [f for f in tmp_path.glob("station.db*") if b"s3cret" in f.read_bytes()]  # nor the log (and WAL)
    twice = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "--source", url, "--source", url],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert twice.returncode == 2 and "s3cret" not in twice.stderr and "admin:***@" in twice.stderr


def test_a_stream_that_drops_and_comes_back_is_reopened(camera: Camera, tmp_path: Path):
    out, summary = tmp_path / "v.jsonl", tmp_path / "s.json"
    proc = edge_infer(["--source", camera.url, "--max-frames", "30", "--output", str(out), "--summary", str(summary),
                       "--quiet"])  # fmt: skip
    try:
        wait_for_records(out, 5, proc)
        camera.kill()  # the camera goes off the network ...
        time.sleep(1.0)
        camera.start()  # ... and comes back on the same address
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert len(lines_of(out)) == 30 and "Traceback" not in err
    assert "source dropped after" in err and "reconnected (attempt" in err, err  # both told on stderr
    assert json.loads(summary.read_text())["reconnects"] >= 1


def test_a_stream_lost_for_good_ends_with_exit_5_and_keeps_every_record(camera: Camera, tmp_path: Path):
    out, summary = tmp_path / "v.jsonl", tmp_path / "s.json"
    proc = edge_infer(["--source", camera.url, "--max-reconnects", "0", "--output", str(out), "--summary",
                       str(summary), "--quiet"])  # fmt: skip
    try:
        wait_for_records(out, 5, proc)
        camera.kill()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == ExitCode.SOURCE_UNAVAILABLE, err
    written = lines_of(out)
    assert len(written) >= 5 and json.loads(summary.read_text())["items"] == len(written)
    assert "source lost" in err and "Traceback" not in err


def test_damaged_frames_of_a_network_camera_get_a_warning_not_a_silent_verdict(tmp_path: Path):
    from tests.edge_runtime.test_jpeg_packets import damaged_video

    video = damaged_video(tmp_path / "damaged.avi")  # 17 frames, one with lost data, one undecodable
    cam = Camera(video, free_port(), copy=True).start()
    out = tmp_path / "v.jsonl"
    try:
        proc = edge_infer(["--source", cam.url, "--max-frames", "40", "--output", str(out), "--quiet"])
        _, err = proc.communicate(timeout=120)
    finally:
        cam.kill()
    assert proc.returncode == 0, err
    records = lines_of(out)
    assert len(records) == 40 and "Traceback" not in err
    warned = [r for r in records if r["warning"]]
    # At 6 fps every frame reaches the reader; the loop passes each damaged frame twice or more in 40 frames.
    assert len(warned) >= 2 and all("Corrupt JPEG" in r["warning"] and r["label"] for r in warned), warned
    assert [r for r in records if r["error"]] and all(r["label"] is None for r in records if r["error"])
    assert sum(1 for r in records if not r["warning"] and not r["error"]) >= 30


def test_an_interlaced_camera_stream_gives_no_verdicts_on_frames_opencv_cannot_convert(video: Path, tmp_path: Path):
    """An encoder sending interlaced H.264 (an analogue camera's): OpenCV's FFmpeg could not convert its frames
    ("Cannot convert interlaced to progressive frames") and handed over its buffer as it was; each was judged,
    "ok" with "no part found" (or anything), exit 0. Each is an item error now, naming the camera's setting."""
    interlaced = tmp_path / "interlaced.ts"
    subprocess.run([FFMPEG, "-loglevel", "error", "-i", str(video), "-c:v", "libx264", "-flags", "+ilme+ildct",
                    "-pix_fmt", "yuv420p", str(interlaced)], check=True)  # fmt: skip
    port = free_port()
    url = f"http://127.0.0.1:{port}/line.ts"
    server = subprocess.Popen([FFMPEG, "-loglevel", "quiet", "-re", "-stream_loop", "-1", "-i", str(interlaced), "-c",
                               "copy", "-f", "mpegts", "-listen", "1", url], stdin=subprocess.DEVNULL)  # fmt: skip
    out = tmp_path / "v.jsonl"
    try:
        deadline = time.monotonic() + 15
        while not listening(port):
            assert server.poll() is None and time.monotonic() < deadline, "ffmpeg did not start listening"
            time.sleep(0.05)
        proc = edge_infer(["--source", url, "--max-frames", "5", "--max-reconnects", "0", "--output", str(out),
                           "--quiet"])  # fmt: skip
        _, err = proc.communicate(timeout=120)
    finally:
        server.kill()
        server.wait(10)
    records = lines_of(out)
    assert proc.returncode == ExitCode.BAD_DATA, err
    assert len(records) == 5 and all(r["label"] is None for r in records), records
    assert {r["error"].split(": ", 1)[1] for r in records} == {
        "FFmpeg could not convert the decoded frame to a picture (Cannot convert interlaced to progressive frames or "
        "vice versa.), and OpenCV handed over a frame that is not the picture; set the camera's encoder to "
        "progressive (not interlaced) output"
    }


# -- RTSP (H.264), the usual IP camera: GStreamer's RTSP server under the system Python ---------------------------
SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER = Path(__file__).with_name("rtsp_camera.py")


def rtsp_available() -> bool:
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
        "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
        "assert Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('rtph264pay')"
    )
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_rtsp = pytest.mark.skipif(
    not rtsp_available(),
    reason="needs GStreamer's RTSP server for the system Python (apt-get install -y python3-gi "
    "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly)",
)


@pytest.fixture
def rtsp_camera(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """The camera's URL and its server process."""
    from edge_runtime.demo import make_sample_video

    video = tmp_path / "line.avi"
    make_sample_video(video, frames_per_image=6)  # 102 frames, 17 s at 6 fps
    proc = subprocess.Popen([SYSTEM_PYTHON, str(RTSP_SERVER), str(video), str(free_port())], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = proc.stdout.readline().strip() if proc.stdout else ""
        assert line.startswith("ready rtsp://"), (line, proc.stderr.read() if proc.stderr else "")
        yield line.split()[1], proc
    finally:
        proc.kill()
        proc.wait(10)


@needs_rtsp
def test_verdicts_from_a_real_rtsp_h264_stream(rtsp_camera: tuple, tmp_path: Path):
    url, _ = rtsp_camera
    out = tmp_path / "v.jsonl"
    proc = edge_infer(["--source", url, "--max-frames", "15", "--output", str(out), "--quiet"])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    records = lines_of(out)
    assert len(records) == 15 and all(r["error"] is None and r["source"] == url for r in records)
    assert {r["label"] for r in records} <= {"ok", "defective"} and "Traceback" not in err


@needs_rtsp
def test_an_rtsp_camera_that_dies_ends_with_exit_5_and_keeps_every_record(rtsp_camera: tuple, tmp_path: Path):
    url, server = rtsp_camera
    out, summary = tmp_path / "v.jsonl", tmp_path / "s.json"
    proc = edge_infer(["--source", url, "--max-reconnects", "0", "--output", str(out), "--summary",
                       str(summary), "--quiet"])  # fmt: skip
    try:
        wait_for_records(out, 5, proc)
        server.kill()  # the camera loses power
        server.wait(10)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == ExitCode.SOURCE_UNAVAILABLE, err
    assert json.loads(summary.read_text())["items"] == len(lines_of(out)) >= 5
    assert "source lost" in err and "Traceback" not in err


@needs_rtsp
def test_rtsp_over_udp_as_set_in_the_environment_and_a_mistyped_transport_named(rtsp_camera: tuple, tmp_path: Path):
    """RTSP over UDP (OPENCV_FFMPEG_CAPTURE_OPTIONS, as OpenCV documents it) gives verdicts as over TCP; a mistyped
    transport had been "cannot open camera or stream (check the index/path/URL ...)" with the URL right."""
    import os

    url, _ = rtsp_camera
    out = tmp_path / "v.jsonl"
    env = {**os.environ, "OPENCV_FFMPEG_CAPTURE_OPTIONS": "rtsp_transport;udp"}
    proc = edge_infer(["--source", url, "--max-frames", "5", "--output", str(out), "--quiet"], env=env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and len(lines_of(out)) == 5, err
    env["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "rtsp_transport;udpp"
    proc = edge_infer(["--source", url, "--max-reconnects", "0", "--quiet"], env=env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.SOURCE_UNAVAILABLE and err.strip().splitlines()[-1].startswith("error: "), err
    assert "OPENCV_FFMPEG_CAPTURE_OPTIONS (rtsp_transport=udpp)" in err and "Traceback" not in err, err


class BrokenEncoderCamera:
    """An HTTP MJPEG camera whose encoder breaks: 5 good frames on the first connection, then parts that are no
    JPEG, on that connection and on every later one (each reconnect "succeeds" but never gives a frame)."""

    def __init__(self) -> None:
        import cv2
        import numpy as np

        self.jpeg = cv2.imencode(".jpg", np.full((240, 320, 3), 128, np.uint8))[1].tobytes()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/feed.mjpg"
        self.connections = 0
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._stream, args=(conn, self.connections == 1), daemon=True).start()

    def _stream(self, conn: socket.socket, good_first: bool) -> None:
        def part(data: bytes) -> None:
            conn.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(data), data))

        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=frame\r\n\r\n")
            for _ in range(5 if good_first else 0):
                part(self.jpeg)
                time.sleep(0.1)
            while not self.closed.is_set():
                part(b"\xff\xd8 no jpeg " * 50)
                time.sleep(0.05)

    def close(self) -> None:
        self.closed.set()
        self.sock.close()


def test_a_stream_that_reconnects_but_sends_no_frame_uses_up_max_reconnects(tmp_path: Path):
    # Every reopen is accepted, yet no frame comes: --max-reconnects must still end the run (it used to start
    # counting again at each open and reconnect forever).
    camera = BrokenEncoderCamera()
    out, summary = tmp_path / "v.jsonl", tmp_path / "s.json"
    proc = edge_infer(["--source", camera.url, "--max-reconnects", "1", "--output", str(out), "--summary",
                       str(summary), "--quiet"])  # fmt: skip
    try:
        _, err = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        camera.close()
    assert proc.returncode == ExitCode.SOURCE_UNAVAILABLE, err
    assert json.loads(summary.read_text())["items"] == len(lines_of(out)) >= 1
    # the reopen is told, but it is no reconnect: no frame came (stderr and the summary said "reconnected")
    assert "reopened (attempt 1)" in err and "reconnected" not in err, err
    assert "not back after 1 reconnect attempt" in err and json.loads(summary.read_text())["reconnects"] == 0
    assert "Traceback" not in err and camera.connections == 2


class SlowCamera(BrokenEncoderCamera):
    """An HTTP MJPEG camera that sends a frame every ``period`` seconds, as a triggered camera sends one per part."""

    def __init__(self, period: float) -> None:
        self.period = period
        super().__init__()

    def _stream(self, conn: socket.socket, good_first: bool) -> None:
        head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(self.jpeg)
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=frame\r\n\r\n")
            while not self.closed.is_set():
                conn.sendall(head + self.jpeg + b"\r\n")
                if self.closed.wait(self.period):
                    return


def test_a_camera_sending_a_frame_per_part_is_not_reopened_between_parts_with_a_longer_read_timeout(tmp_path: Path):
    """A camera sending one frame every 5 s or more (triggered by the parts) was dropped and reopened after every
    frame, 5 s of silence being a drop: each reopen a moment when a part's frame can be missed."""
    camera = SlowCamera(period=1.5)
    try:
        runs = {}
        for timeout in ("1", "4"):
            summary = tmp_path / f"s{timeout}.json"
            proc = edge_infer(["--source", camera.url, "--max-frames", "3", "--read-timeout", timeout, "--summary",
                               str(summary), "--quiet", "--json"])  # fmt: skip
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            runs[timeout] = json.loads(summary.read_text())
    finally:
        camera.close()
    assert runs["4"]["items"] == 3 and runs["4"]["reconnects"] == 0
    assert runs["1"]["reconnects"] >= 1  # 1.5 s between frames is a drop at a 1 s read timeout
