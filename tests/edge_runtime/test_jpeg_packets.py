"""Damaged frames of a Motion-JPEG video or stream get a warning (or an item error), as damaged image files do.

OpenCV's FFmpeg backend conceals them: a frame with lost data comes back as a good picture, an undecodable one as
the previous frame again. The videos here are real MJPEG .avi files (OpenCV's own writer), damaged in place.
"""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime.capture import capture_factory
from edge_runtime.cli import main
from edge_runtime.decoding import decode
from edge_runtime.demo import make_sample_video
from edge_runtime.errors import ExitCode
from edge_runtime.jpeg_packets import JpegPackets, as_jpeg_packets

LOST, UNREADABLE = 2, 4  # frames damaged in the video below: data lost on the way; a header destroyed
GOOD = cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()  # a sound frame


def damaged_video(path: Path, *, lost: tuple[int, ...] = (LOST,), unreadable: tuple[int, ...] = (UNREADABLE,)) -> Path:
    """The sample video (one frame per sample image) with the data of the ``lost`` frames partly zeroed and the
    headers of the ``unreadable`` ones overwritten; same length, so the AVI index stays valid."""
    make_sample_video(path, frames_per_image=1)
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 3) if data[i : i + 3] == b"\xff\xd8\xff"]
    for k in lost:
        a, b = starts[k], starts[k + 1]
        data[(a + b) // 2 : (a + b) // 2 + 400] = bytes(400)
    for k in unreadable:
        data[starts[k] + 2 : starts[k] + 202] = b"\x01" * 200
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return damaged_video(tmp_path_factory.mktemp("mjpeg") / "line.avi")


def read_all(cap) -> list:  # noqa: ANN001 - a JpegPackets capture
    """(picture, warning, error) of every frame, to the end; the capture is released."""
    out = []
    while True:
        ok, picture = cap.read()
        if not ok:
            break
        out.append((picture, cap.warning, cap.error))
    cap.release()
    return out


def test_the_capture_says_which_frames_are_damaged(video: Path):
    cap = as_jpeg_packets(cv2.VideoCapture(str(video)), str(video))
    assert isinstance(cap, JpegPackets)
    seen = [(frame is not None and frame.ndim == 3, warning, error) for frame, warning, error in read_all(cap)]
    assert len(seen) == 17
    assert [i for i, (_, w, _) in enumerate(seen) if w] == [LOST] and "Corrupt JPEG" in seen[LOST][1]
    assert [i for i, (_, _, e) in enumerate(seen) if e] == [UNREADABLE] and not seen[UNREADABLE][0]
    assert all(colour for i, (colour, _, _) in enumerate(seen) if i != UNREADABLE)  # colour, as shown to people


def test_clean_frames_are_the_pictures_opencv_gives(tmp_path: Path):
    path = tmp_path / "clean.avi"
    make_sample_video(path, frames_per_image=1)
    plain, packets = cv2.VideoCapture(str(path)), as_jpeg_packets(cv2.VideoCapture(str(path)), str(path))
    for _ in range(17):
        (ok1, a), (ok2, b) = plain.read(), packets.read()
        assert ok1 and ok2 and packets.warning is None and packets.error is None
        assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).max() <= 2
    assert not packets.read()[0]


def test_edge_infer_flags_the_damaged_frames_of_a_video(video: Path, tiny_model: Path):
    result = CliRunner().invoke(main, ["--model", str(tiny_model), "--source", str(video), "--json"])
    assert result.exit_code == ExitCode.OK, result.stderr[-800:]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["frame"] for r in records] == list(range(17))
    warned = [r for r in records if r["warning"]]
    assert [r["frame"] for r in warned] == [LOST] and warned[0]["label"] is not None  # a verdict, but flagged
    failed = [r for r in records if r["error"]]
    assert [r["frame"] for r in failed] == [UNREADABLE] and failed[0]["label"] is None
    assert f"frame {UNREADABLE}: not a readable image" in failed[0]["error"]
    assert "1 error," in result.stderr and "1 with warnings" in result.stderr and "Traceback" not in result.stderr
    strict = CliRunner().invoke(main, ["--model", str(tiny_model), "--source", str(video), "--fail-on-defect"])
    assert strict.exit_code == ExitCode.DEFECT_FOUND  # no damaged frame passes a gate silently


class Packets:
    """A capture handing out the given packets (as the FFmpeg backend does in packet mode: a 1 x N uint8 row)."""

    def __init__(self, packets: list[bytes]) -> None:
        self.packets = list(packets)

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self.packets:
            return False, None
        return True, np.frombuffer(self.packets.pop(0), np.uint8).reshape(1, -1)


def test_a_source_that_sends_only_undecodable_frames_fails_its_read_so_reconnecting_takes_over():
    bad = b"\xff\xd8 no jpeg " * 20
    cap = JpegPackets(Packets([GOOD, bad, bad, GOOD, bad, bad, bad, GOOD]), "cam")
    got = [(ok, frame is not None, cap.error is not None) for ok, frame in iter(cap.read, (False, None))]
    # one or two undecodable frames are item errors; the third in a row is the source failing (a drop)
    assert got[:5] == [(True, True, False), (True, False, True), (True, False, True), (True, True, False),
                       (True, False, True)]  # fmt: skip
    assert len(got) == 6 and got[5] == (True, False, True)  # iter() stops at the failed read


STRESS = """
import sys, threading, time, cv2, numpy as np
from edge_runtime.decoding import decode
jpg = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8))[1].tobytes()
stop, warned = threading.Event(), []
def frames():
    while not stop.is_set():
        warned.extend(w for w in [decode(jpg).warning] if w)
t = threading.Thread(target=frames)
t.start()
time.sleep(0.05)
for i in range(200):
    print(f"warning: line {i}", file=sys.stderr, flush=True)
    time.sleep(0.002)
stop.set()
t.join()
print(len(warned))
"""


def test_the_tools_own_messages_are_not_taken_for_a_frames_damage():
    """Frames decode on the reader thread all the time; a warning this tool prints meanwhile from another thread
    used to fall into the decoder's capture window: gone from stderr, and pinned on a good frame as damage."""
    import subprocess
    import sys

    from tests.conftest import REPO

    done = subprocess.run([sys.executable, "-c", STRESS], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "0"  # no clean frame given a warning
    assert sum(line.startswith("warning: line") for line in done.stderr.splitlines()) == 200


# -- A network camera that ends each part with a line end (counted in Content-Length, or a blank line before the
# boundary): FFmpeg hands those bytes on with the JPEG; they are no damage, and must not warn every good frame.


def test_trailing_line_ends_after_the_end_marker_are_no_damage():
    cap = JpegPackets(
        Packets([GOOD + b"\r\n", GOOD + b"\r\n\r\n", GOOD + b"\0\0", GOOD[: len(GOOD) // 2] + b"\r\n"]), "cam"
    )
    warnings = [cap.read()[1] is not None and cap.warning for _ in range(3)]
    assert warnings == [None, None, None]
    assert decode(GOOD + b"\r\n").warning is None  # a file, likewise
    cap.read()
    assert cap.warning or cap.error  # a truncated frame is still flagged, CR/LF or not


def serve(mode: str) -> tuple[socketserver.TCPServer, str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace;boundary=frame")
            self.end_headers()
            body = GOOD + b"\r\n"
            try:
                for k in range(200):
                    if mode == "garbage-first":  # a camera's first parts undecodable, then good frames
                        body = (bytes(range(256)) * 8 if k < 2 else GOOD) + b"\r\n"
                    length = b"Content-Length: %d\r\n" % len(body) if mode == "length" else b""
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n" + length + b"\r\n" + body + b"\r\n")
                    self.wfile.flush()
                    # the second undecodable part stays the newest for 0.3 s: newest-frame mode reads it even on a
                    # busy machine (40 ms of them were passed over in 4 of 4 tries under load)
                    time.sleep(0.3 if mode == "garbage-first" and k == 1 else 0.02)
            except OSError:
                pass

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/feed.mjpg"


@pytest.mark.parametrize("mode", ["length", "no-length"])
def test_a_good_network_camera_that_ends_its_parts_with_a_line_end_gets_no_warnings(mode: str):
    server, url = serve(mode)
    try:
        cap = capture_factory(url)()
        assert isinstance(cap, JpegPackets)
        seen = []
        for _ in range(5):
            ok, frame = cap.read()
            assert ok and frame is not None and cap.error is None
            seen.append(cap.warning)
        cap.release()
    finally:
        server.shutdown()
    assert seen == [None] * 5


def interlaced_video(folder: Path) -> tuple[Path, list[np.ndarray]]:
    """An analog capture card's MJPEG .avi: each packet is two JPEG fields (even rows, then odd rows) of half the
    frame's height, with AVI1 markers; the container says 240 lines. Also the full frames it was made from."""
    import shutil
    import struct
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg to write the .avi (apt-get install -y ffmpeg)")
    samples = sorted((Path(__file__).parents[2] / "edge_runtime" / "samples").rglob("*.jpeg"))[:5]
    frames = [cv2.resize(cv2.imread(str(p)), (320, 240), interpolation=cv2.INTER_AREA) for p in samples]
    for i, frame in enumerate(frames):
        fields = b""
        for rows, polarity in ((frame[0::2], 1), (frame[1::2], 2)):
            jpg = cv2.imencode(".jpg", rows, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
            fields += jpg[:2] + b"\xff\xe0" + struct.pack(">H", 16) + b"AVI1" + bytes([polarity]) + bytes(9) + jpg[2:]
        (folder / f"f{i:04d}.jpg").write_bytes(fields)
    video = folder / "interlaced.avi"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-framerate", "5", "-i", str(folder / "f%04d.jpg"),
                    "-c:v", "copy", str(video)], check=True)  # fmt: skip
    data = bytearray(video.read_bytes())  # the frame height in both AVI headers: the full frame's
    at = data.find(b"avih")
    data[at + 44 : at + 48] = struct.pack("<I", 240)
    at = data.find(b"strf")
    data[at + 16 : at + 20] = struct.pack("<i", 240)
    video.write_bytes(bytes(data))
    return video, frames


def test_an_interlaced_frame_is_woven_from_its_two_fields_not_judged_at_half_height(tmp_path: Path):
    video, frames = interlaced_video(tmp_path)
    cap = as_jpeg_packets(cv2.VideoCapture(str(video)), str(video))
    for truth in frames:
        ok, frame = cap.read()
        assert ok and cap.error is None and cap.warning is None
        assert frame.shape == truth.shape  # was 120 x 320: the first field alone, the part squashed to half height
        assert np.abs(frame.astype(int) - truth).mean() < 1.5  # the rows in their right order (JPEG loss only)


def test_a_video_file_goes_on_past_a_run_of_undecodable_frames(tmp_path: Path, tiny_model: Path):
    path = damaged_video(tmp_path / "run.avi", lost=(), unreadable=(5, 6, 7, 8))  # four in a row, headers gone
    result = CliRunner().invoke(main, ["--model", str(tiny_model), "--source", str(path), "--json"])
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["frame"] for r in records] == list(range(17))  # was: the video ended at frame 7, the rest unjudged
    assert [r["frame"] for r in records if r["error"]] == [5, 6, 7, 8]
    assert all(r["label"] for r in records if not r["error"]) and "stopped at frame" not in result.stderr


def test_saved_video_keeps_a_frame_for_each_undecodable_frame(tmp_path: Path, tiny_model: Path):
    """--save writes one frame per record, so the saved video lines up with the records and keeps the line's
    timing; an undecodable frame is a dark frame naming the error (it used to be left out)."""
    path = damaged_video(tmp_path / "run.avi", lost=(), unreadable=(5, 6))
    saved = tmp_path / "annotated.avi"
    result = CliRunner().invoke(main, ["--model", str(tiny_model), "--source", str(path), "--save", str(saved)])
    assert result.exit_code == ExitCode.OK, result.stderr[-800:]
    cap = cv2.VideoCapture(str(saved))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 17
    inner = [float(f[20:-20, 20:-20].mean()) for f in frames]
    assert all(abs(inner[k] - 48) < 12 for k in (5, 6))  # the placeholders
    assert all(abs(inner[k] - 48) > 12 for k in (4, 7))  # real pictures on either side


def test_gray_frames_carry_the_same_picture_and_the_same_findings(video: Path):
    """A run that shows and saves no pictures decodes Motion-JPEG to gray only (the colour planes are skipped)."""
    colour = as_jpeg_packets(cv2.VideoCapture(str(video)), str(video))
    gray = as_jpeg_packets(cv2.VideoCapture(str(video)), str(video), colour=False)
    for _ in range(17):
        (ok1, a), (ok2, b) = colour.read(), gray.read()
        assert ok1 and ok2 and (colour.warning, colour.error) == (gray.warning, gray.error)
        if a is None:
            assert b is None
            continue
        assert b.ndim == 2 and b.shape == a.shape[:2]
        assert np.abs(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY).astype(int) - b).max() <= 2


def test_edge_infer_decodes_colour_only_when_it_keeps_pictures(
    video: Path, tiny_model: Path, tmp_path: Path, monkeypatch
):
    import edge_runtime.jpeg_packets as packets

    asked: list[bool] = []

    def spy(data: bytes, **kwargs):
        asked.append(kwargs["colour"])
        return decode(data, **kwargs)

    monkeypatch.setattr(packets, "decode", spy)
    plain = CliRunner().invoke(main, ["--model", str(tiny_model), "--source", str(video), "--json"])
    assert plain.exit_code == ExitCode.OK and asked and not any(asked)
    asked.clear()
    saved = tmp_path / "annotated.avi"
    args = ["--model", str(tiny_model), "--source", str(video), "--json", "--save", str(saved)]
    shown = CliRunner().invoke(main, args)
    # every frame in colour for the picture, and each one that decodes to gray as well, for the model
    assert shown.exit_code == ExitCode.OK and asked.count(True) == 17 and asked.count(False) == 16
    a, b = ([json.loads(line) for line in r.stdout.splitlines()] for r in (plain, shown))
    assert [(r["label"], r["warning"], r["error"]) for r in a] == [(r["label"], r["warning"], r["error"]) for r in b]
    assert all(abs(x["score"] - y["score"]) < 0.02 for x, y in zip(a, b, strict=True) if x["score"] is not None)


def test_a_network_camera_is_decoded_to_gray_when_no_picture_is_kept(tiny_model: Path, monkeypatch):
    import edge_runtime.jpeg_packets as packets

    asked: list[bool] = []
    monkeypatch.setattr(packets, "decode", lambda data, **kw: asked.append(kw["colour"]) or decode(data, **kw))
    server, url = serve("length")
    try:
        result = CliRunner().invoke(main, ["--model", str(tiny_model), "--source", url, "--json", "--max-frames", "3"])
    finally:
        server.shutdown()
    assert result.exit_code == ExitCode.OK, result.stderr[-800:]
    assert len(result.stdout.splitlines()) == 3 and asked and not any(asked)


def test_a_saved_video_keeps_a_frame_for_an_undecodable_first_frame(tmp_path: Path, tiny_model: Path):
    """The placeholder took the last drawn frame's size, and frame 0 has none: 20 records, 19 saved frames."""
    path = damaged_video(tmp_path / "run.avi", lost=(), unreadable=(0,))
    saved = tmp_path / "annotated.avi"
    result = CliRunner().invoke(main, ["--model", str(tiny_model), "--source", str(path), "--save", str(saved)])
    assert result.exit_code == ExitCode.OK, result.stderr[-800:]
    cap = cv2.VideoCapture(str(saved))
    ok, first = cap.read()
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert count == 17 and ok and abs(float(first[20:-20, 20:-20].mean()) - 48) < 12  # the placeholder, first


def test_a_video_with_pictures_kept_is_read_only_a_few_frames_ahead(tmp_path: Path, monkeypatch):
    """Each frame kept for --save is a full decoded picture: 64 read ahead took 3.3 GB on an 8K video."""
    from edge_runtime import video_file, video_open

    path = tmp_path / "long.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(60):
        writer.write(np.full((48, 64, 3), i * 4, np.uint8))
    writer.release()
    made: list[int] = []
    real = video_file.frame_item
    monkeypatch.setattr(video_file, "frame_item", lambda *a, **k: made.append(1) or real(*a, **k))
    frames = video_open.iter_video(str(path), lambda im, **k: im[:8, :8, 0], keep_original=True)
    next(frames)
    time.sleep(0.5)  # the reader runs ahead as far as it may
    assert len(made) <= 8
    assert sum(1 for _ in frames) == 59


def test_a_complete_avi_with_repeat_entries_is_not_called_truncated(tmp_path: Path, tiny_model: Path):
    """FFmpeg's frame-rate conversion to AVI indexes "repeat the last frame" entries that hold no picture: the
    header's count (58) is more than the frames (20), and a complete file was reported as cut at frame 20."""
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg to write the .avi (apt-get install -y ffmpeg)")
    for i in range(20):
        cv2.imwrite(str(tmp_path / f"f{i:03d}.jpg"), np.full((48, 64, 3), 10 + 10 * i, np.uint8))
    video, cut = tmp_path / "v30.avi", tmp_path / "cut.avi"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-framerate", "10", "-i", str(tmp_path / "f%03d.jpg"),
                    "-c:v", "mjpeg", "-r", "30", str(video)], check=True)  # fmt: skip
    data = video.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) > 20  # the case: more entries than pictures
    cap.release()
    whole = CliRunner().invoke(main, ["--model", str(tiny_model), "--source", str(video), "--json"])
    assert whole.exit_code == ExitCode.OK and len(whole.stdout.splitlines()) == 20
    assert "truncated" not in whole.stderr
    half = CliRunner().invoke(main, ["--model", str(tiny_model), "--source", str(cut), "--json"])
    assert "(truncated or corrupt video)" in half.stderr  # a cut file still is


def test_a_colour_video_gets_the_same_verdicts_with_or_without_saved_pictures(tmp_path: Path, tiny_model: Path):
    """With --save the model read gray made from the decoded colours, without it the decoder's own gray: a grey
    level apart here and there, enough to turn a station-check range or the symmetry look on (a frame scored
    0.302 without --save and 0.139 with it)."""
    rng = np.random.default_rng(3)
    path = tmp_path / "colour.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(8):
        frame = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)  # saturated colour blocks
        writer.write(cv2.resize(frame, (64, 48), interpolation=cv2.INTER_NEAREST))
    writer.release()
    plain = CliRunner().invoke(main, ["--model", str(tiny_model), "--source", str(path), "--json"])
    args = ["--model", str(tiny_model), "--source", str(path), "--json", "--save", str(tmp_path / "s.avi")]
    saved = CliRunner().invoke(main, args)
    assert plain.exit_code == saved.exit_code == ExitCode.OK
    a, b = ([json.loads(line)["score"] for line in r.stdout.splitlines()] for r in (plain, saved))
    assert len(a) == 8 and a == b


def test_a_saved_stream_keeps_a_frame_for_undecodable_parts_before_its_first_picture(tmp_path: Path, tiny_model):
    """A stream's first parts undecodable: no picture had given the placeholder a size, so --save had 5 frames
    for 6 records (and no video at all for a stream of garbage). Now a 640x480 placeholder, one frame per record."""
    for attempt in range(4):  # newest-frame mode may pass over the two bad parts (40 ms) before the run reads one
        server, url = serve("garbage-first")
        saved, out = tmp_path / f"s{attempt}.avi", tmp_path / f"o{attempt}.jsonl"
        try:
            args = ["--model", str(tiny_model), "--source", url, "--max-frames", "6", "--save", str(saved)]
            result = CliRunner().invoke(main, [*args, "--output", str(out), "--quiet"])
        finally:
            server.shutdown()
        assert result.exit_code == ExitCode.OK, result.stderr[-800:]
        records = [json.loads(x) for x in out.read_text().splitlines()]
        if records and records[0]["error"] is not None:
            break
    assert len(records) == 6 and records[0]["error"] is not None
    cap = cv2.VideoCapture(str(saved))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert count == 6


def tagged_mjpeg(folder: Path, frame: np.ndarray, degrees: int, frames: int = 3) -> Path:
    """A Motion-JPEG .mov of ``frames`` copies of ``frame`` tagged ``rotate=degrees``, as a phone writes it."""
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg to tag the video (apt-get install -y ffmpeg)")
    plain, tagged = folder / "plain.mov", folder / f"rot{degrees}.mov"
    h, w = frame.shape[:2]
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}",
                    "-r", "5", "-i", "-", "-c:v", "mjpeg", "-q:v", "2", str(plain)],
                   input=frame.tobytes() * frames, check=True)  # fmt: skip
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(plain), "-c", "copy", "-metadata:s:v:0",
                    f"rotate={degrees}", str(tagged)], check=True)  # fmt: skip
    return tagged


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_a_motion_jpeg_video_with_a_rotation_tag_is_read_and_turned_as_opencv_turns_it(tmp_path: Path, degrees: int):
    """A phone's Motion-JPEG .mov tagged 'rotate=180' (or 90): OpenCV turned the packets as if they were pictures, a
    reversed byte array is no JPEG, and every frame was "not a readable image", exit 3."""
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:16, :20] = 255  # a bright corner: a turn moves it
    tagged = tagged_mjpeg(tmp_path, frame, degrees)
    shown = cv2.VideoCapture(str(tagged))  # as OpenCV shows it, decoded and turned by FFmpeg
    ok, expected = shown.read()
    shown.release()
    assert ok and expected.shape[:2] == ((64, 48) if degrees != 180 else (48, 64))
    cap = as_jpeg_packets(cv2.VideoCapture(str(tagged)), tagged.name)
    assert isinstance(cap, JpegPackets)
    frames = read_all(cap)
    assert all(picture is not None and error is None for picture, _, error in frames), frames
    got = [picture for picture, _, _ in frames]
    assert len(got) == 3
    assert got[0].shape == expected.shape
    assert np.abs(got[0].astype(int) - expected.astype(int)).mean() < 3  # the same picture, the same way up


def test_a_portrait_video_whose_first_frame_is_undecodable_saves_a_portrait_video(tmp_path: Path, tiny_model: Path):
    """A phone's Motion-JPEG .mov tagged rotate=90 whose first frame is damaged: the placeholder frame took the
    container's stored (landscape) size, and the saved video letterboxed every upright picture into it."""
    tagged = tagged_mjpeg(tmp_path, np.full((48, 64, 3), 128, np.uint8), 90)
    data = bytearray(tagged.read_bytes())
    first = data.find(b"\xff\xd8\xff")
    data[first : first + 200] = bytes(200)  # the first frame's JPEG: undecodable
    tagged.write_bytes(bytes(data))
    saved = tmp_path / "saved.avi"
    r = CliRunner().invoke(main, ["--model", str(tiny_model), "--source", str(tagged), "--save", str(saved), "--json"])
    assert r.exit_code == 0, r.output
    cap = cv2.VideoCapture(str(saved))
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    assert h > w, (w, h)  # portrait, as the upright pictures
