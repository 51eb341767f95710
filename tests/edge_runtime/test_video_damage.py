"""Damage that FFmpeg's H.264 decoder hides: a broken frame filled in from the frames before it, and the frames of
a recording that does not begin on a key frame, dropped in silence. Both passed a defective part (exit 0)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_runtime.errors import ExitCode
from tests.conftest import REPO
from tests.edge_runtime.faults_common import check, invoke

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="needs ffmpeg and ffprobe (apt-get install -y ffmpeg)")  # fmt: skip
SAMPLES = REPO / "edge_runtime" / "samples" / "test"


@pytest.fixture(scope="module")
def h264(tmp_path_factory) -> Path:
    """Seven parts at 5 FPS, the fourth defective, H.264 without B-frames, one key frame at the start and one at
    frame 4."""
    folder = tmp_path_factory.mktemp("h264")
    ok = sorted((SAMPLES / "ok_front").glob("*.jpeg"))  # the package ships two
    bad = sorted((SAMPLES / "def_front").glob("*.jpeg"))[0]
    for i, src in enumerate([ok[0], ok[1], ok[0], bad, ok[1], ok[0], ok[1]]):
        shutil.copy(src, folder / f"s{i}.jpeg")
    video = folder / "clean.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-framerate", "5", "-i", str(folder / "s%d.jpeg"),
                    "-vf", "scale=300:300", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-bf", "0", "-g", "100",
                    "-sc_threshold", "0", "-force_key_frames", "expr:eq(n,4)", str(video)], check=True)  # fmt: skip
    return video


def packets(video: Path) -> list[dict]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_packets", "-show_entries",
                          "packet=pos,size,flags", "-of", "json", str(video)],
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    return [
        {"pos": int(p["pos"]), "size": int(p["size"]), "key": "K" in p["flags"]} for p in json.loads(out)["packets"]
    ]


def damage_fourth_frame(h264: Path, damaged: Path) -> Path:
    """A copy of ``h264`` with most of its fourth frame (the defective part's) zeroed: its slice is broken."""
    data = bytearray(h264.read_bytes())
    fourth = packets(h264)[3]
    assert not fourth["key"]
    start = fourth["pos"] + fourth["size"] // 4
    data[start : fourth["pos"] + fourth["size"] - 4] = bytes(fourth["pos"] + fourth["size"] - 4 - start)
    damaged.write_bytes(bytes(data))
    return damaged


def test_a_frame_the_decoder_patched_up_gets_a_warning_and_fails_the_gate(h264: Path, tmp_path: Path):
    clean = check(invoke(["--source", str(h264), "--fail-on-defect"]), ExitCode.DEFECT_FOUND, error_lines=0)
    assert len(clean) == 7 and clean[3]["defective"] and not any(r["warning"] for r in clean)
    damaged = damage_fourth_frame(h264, tmp_path / "damaged.mp4")
    recs = check(invoke(["--source", str(damaged), "--fail-on-defect"]), ExitCode.DEFECT_FOUND, error_lines=0)
    assert len(recs) == 7
    assert "the decoder found damaged data near this frame" in (recs[3]["warning"] or "")
    # the frame itself and the few after it (a decoder with B-frames hands a frame out after it decodes it), never
    # one before it
    assert [r["frame"] for r in recs if r["warning"]] == [3, 4, 5, 6]  # to the end of this 7-frame video
    # without the gate the run goes on and says it (it was "ok" with no word, exit 0)
    r = invoke(["--source", str(damaged)])
    assert r.exit_code == ExitCode.OK and "4 with warnings" in r.stderr  # frames 3 to 6


def test_a_recording_that_does_not_begin_on_a_key_frame_says_which_frames_it_lost(h264: Path, tmp_path: Path):
    """A stream copy cut mid-way: the decoder dropped the frames before the first key frame in silence, the ones after
    were numbered from 0, and the defective one was never seen (exit 0)."""
    cut = tmp_path / "cut.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(h264), "-c", "copy", "-bsf:v",
                    "noise=drop=eq(n\\,0)", str(cut)], check=True)  # fmt: skip
    r = invoke(["--source", str(cut), "--fail-on-defect"])
    recs = check(r, ExitCode.DEFECT_FOUND, error_lines=0)
    assert len(recs) == 3
    assert "the first 3 frames could not be decoded (the video does not begin on a key frame" in r.stderr
    assert "gate: not passed" in r.stderr


def test_a_video_that_starts_after_its_sound_is_not_called_cut(h264: Path, tmp_path: Path):
    """An AVI whose video begins 0.5 s after its sound track: complete, yet the first version of the check above
    called its first frames undecodable and failed the gate."""
    late = tmp_path / "late.avi"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono",
                    "-itsoffset", "0.5", "-i", str(h264), "-map", "1:v", "-map", "0:a", "-c:v", "copy", "-c:a",
                    "pcm_s16le", "-t", "1.9", str(late)], check=True)  # fmt: skip
    r = invoke(["--source", str(late)])
    recs = check(r, ExitCode.OK, error_lines=0)
    assert len(recs) == 7 and "could not be decoded" not in r.stderr and not any(rec["warning"] for rec in recs)


@pytest.mark.parametrize("container", ["mkv", "mp4", "avi", "ts"])
def test_a_video_with_a_second_camera_track_says_only_the_first_was_inspected(h264: Path, tmp_path: Path, container):
    """Two cameras in one recording: OpenCV reads the first video track, and the defective part the second one saw
    passed the gate (exit 0) without a word."""
    two = tmp_path / f"two.{container}"
    codec = ["-c:v", "mpeg4"] if container == "avi" else ["-c", "copy"]
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(h264), "-i", str(h264), "-map", "0:v", "-map",
                    "1:v", *codec, str(two)], check=True)  # fmt: skip
    r = invoke(["--source", str(two), "--fail-on-defect"])
    check(r, ExitCode.DEFECT_FOUND, error_lines=0)
    assert f"{two}: the file holds 2 video tracks and only the first was inspected" in r.stderr
    one = tmp_path / f"one.{container}"  # a video track and a sound track: one camera, no word
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=d=1", "-i", str(h264), "-map",
                    "1:v", "-map", "0:a", *codec, "-c:a", "mp3" if container == "avi" else "aac", str(one)],
                   check=True)  # fmt: skip
    r = invoke(["--source", str(one)])
    assert r.exit_code == ExitCode.OK and "video tracks" not in r.stderr, r.stderr


def test_a_patched_frame_of_a_live_h264_stream_gets_a_warning(h264: Path, tmp_path: Path):
    """The same damage in a camera's H.264 stream (MPEG-TS over HTTP, as a lost packet gives): the frame came back
    patched from the one before it, "ok", with no word. The stream loops the 7 frames; newest-frame mode may skip
    some, so the damaged ones seen are checked, each of them the fourth of its loop."""
    import socket
    import time

    damaged = damage_fourth_frame(h264, tmp_path / "damaged.mp4")
    ts = tmp_path / "damaged.ts"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(damaged), "-c", "copy", "-bsf:v",
                    "h264_mp4toannexb", str(ts)], check=True)  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/line.ts"
    server = subprocess.Popen(["ffmpeg", "-loglevel", "quiet", "-re", "-stream_loop", "-1", "-i", str(ts), "-c",
                               "copy", "-f", "mpegts", "-listen", "1", url])  # fmt: skip
    try:
        for _ in range(50):  # until the server listens
            r = invoke(["--source", url, "--fail-on-defect", "--max-frames", "30", "--max-reconnects", "0"])
            if "cannot open" not in r.stderr and "nothing listens" not in r.stderr:  # the second since aea85a0
                break
            time.sleep(0.1)
        recs = [json.loads(line) for line in r.stdout.splitlines()]
        assert r.exit_code == ExitCode.DEFECT_FOUND, r.stderr
        warned = [
            rec["frame"] for rec in recs if "the decoder found damaged data near this frame" in (rec["warning"] or "")
        ]
        assert warned and all(frame % 7 == 3 for frame in warned), recs  # the damaged frame itself, each time
        seen = [rec["frame"] for rec in recs]
        assert all(frame in warned for frame in seen if frame % 7 == 3), (seen, warned)
    finally:
        server.kill()
        server.wait()


def test_frames_the_demuxer_skips_in_silence_are_found_by_their_times(h264: Path, tmp_path: Path):
    """One byte of a Matroska block header (its track number) changed: FFmpeg dropped the block without a failed
    read, the defective part in it was never judged, every later frame came numbered one early, and the gate passed
    (exit 0)."""
    mkv = tmp_path / "clean.mkv"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(h264), "-c", "copy", str(mkv)], check=True)
    data = bytearray(mkv.read_bytes())
    data[packets(mkv)[3]["pos"]] = 0x82  # the block's track number: 1 -> 2, a track the file does not have
    damaged = tmp_path / "damaged.mkv"
    damaged.write_bytes(bytes(data))
    r = invoke(["--source", str(damaged), "--fail-on-defect"])
    recs = check(r, ExitCode.DEFECT_FOUND, error_lines=0)
    assert [rec["frame"] for rec in recs] == [0, 1, 2, 4, 5, 6]  # the frames after it keep their own numbers
    assert "frame 3 is missing (the frame times jump from 0.400 s to 0.800 s" in r.stderr
    assert "gate: not passed: part of the video could not be read" in r.stderr
    data = bytearray(mkv.read_bytes())  # the third frame: told once one frame time has been seen (it was not)
    data[packets(mkv)[2]["pos"]] = 0x82
    damaged.write_bytes(bytes(data))
    r = invoke(["--source", str(damaged), "--fail-on-defect"])
    recs = check(r, ExitCode.DEFECT_FOUND, error_lines=0)
    # the fourth frame refers to the third, and is not decoded either: both are told, the key frame after them kept
    assert [rec["frame"] for rec in recs] == [0, 1, 4, 5, 6] and "frames 2 to 3 are missing" in r.stderr


@pytest.mark.parametrize(("codec", "suffix"), [("libx265", "mp4"), ("libvpx-vp9", "webm")])
def test_damage_that_stops_an_hevc_or_vp9_video_fails_the_gate(tmp_path: Path, codec: str, suffix: str):
    """A zeroed packet in an HEVC MP4 or a VP9 WebM: FFmpeg read no further, and the 30 frames after it (4 defective
    parts) went unjudged with a warning that allowed for an estimated frame count; the gate passed (exit 0)."""
    encoders = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    if codec not in encoders:
        pytest.skip(f"this ffmpeg has no {codec} encoder")
    ok = sorted((SAMPLES / "ok_front").glob("*.jpeg"))
    for i in range(40):
        shutil.copy(ok[i % len(ok)], tmp_path / f"s{i:02d}.jpeg")
    clean = tmp_path / f"clean.{suffix}"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-framerate", "10", "-i", str(tmp_path / "s%02d.jpeg"),
                    "-vf", "scale=300:300", "-pix_fmt", "yuv420p", "-c:v", codec, *(["-x265-params",
                    "log-level=none"] if codec == "libx265" else []), str(clean)], check=True)  # fmt: skip
    data = bytearray(clean.read_bytes())
    tenth = packets(clean)[10]
    data[tenth["pos"] : tenth["pos"] + tenth["size"]] = bytes(tenth["size"])
    damaged = tmp_path / f"damaged.{suffix}"
    damaged.write_bytes(bytes(data))
    r = invoke(["--source", str(damaged), "--fail-on-defect"])
    recs = check(r, ExitCode.DEFECT_FOUND, error_lines=0)
    assert len(recs) < 40
    said = [line for line in r.stderr.splitlines() if line.startswith("source warning:")]
    # where the decoder stopped, or (HEVC's B-frames come out of order) which frames' times never came
    assert said and all("FFmpeg found damaged data" in line or "missing (the frame times jump" in line for line in said)
    assert "gate: not passed: part of the video could not be read" in r.stderr


def test_an_avi_cut_before_its_frames_gets_one_line_and_no_parser_output(tmp_path: Path):
    """An AVI cut to 5000 bytes: OpenCV's own AVI parser printed "Unexpected element. Expected: LIST. Got: JUNK."
    (bytes of the file itself) above edge-infer's one line."""
    import cv2
    import numpy as np

    whole = tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for i in range(20):
        writer.write(np.full((64, 64, 3), 10 * i, np.uint8))
    writer.release()
    for size in (300, 5000):
        cut = tmp_path / f"cut{size}.avi"
        cut.write_bytes(whole.read_bytes()[:size])
        r = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "--source", str(cut)], capture_output=True,
                           text=True, timeout=120)  # fmt: skip
        assert r.returncode == ExitCode.SOURCE_UNAVAILABLE, r.stderr
        lines = [line for line in r.stderr.splitlines() if not line.startswith("model defectnet")]  # the start line
        # the line names the cut (it said "corrupt, unsupported codec or not a video")
        assert lines == [f"error: {cut}: cannot open as a video: the file ends {whole.stat().st_size - size} bytes "
                         "before its container says it does (cut short: a copy that did not finish, or a recording "
                         "stopped before it was closed); copy it again"]  # fmt: skip


def test_a_change_of_frame_rate_is_not_taken_for_lost_frames(tmp_path: Path):
    """Healthy videos whose frame rate changes: two clips of 10 and 5 FPS joined, a phone that slows to 15 FPS for
    a while. A first version took each longer frame time for lost frames: "frames N to M are missing" many times,
    every later frame renumbered, and a failed gate on complete files."""
    ok = sorted((SAMPLES / "ok_front").glob("*.jpeg"))
    for i in range(60):
        shutil.copy(ok[i % len(ok)], tmp_path / f"s{i:02d}.jpeg")
    ff = ["ffmpeg", "-loglevel", "error", "-y"]
    enc = ["-vf", "scale=160:160", "-c:v", "libx264", "-pix_fmt", "yuv420p"]
    for n, rate, start in (("a", 10, 0), ("b", 5, 20)):
        subprocess.run([*ff, "-framerate", str(rate), "-start_number", str(start), "-i", str(tmp_path / "s%02d.jpeg"),
                        "-frames:v", "20", *enc, str(tmp_path / f"{n}.mkv")], check=True)  # fmt: skip
    (tmp_path / "list.txt").write_text("file a.mkv\nfile b.mkv\n")
    joined = tmp_path / "joined.mkv"
    subprocess.run([*ff, "-f", "concat", "-i", str(tmp_path / "list.txt"), "-c", "copy", str(joined)], check=True)
    slowed = tmp_path / "slowed.mp4"  # 30 FPS, frames 20 to 29 at 15 FPS, then 30 again
    times = "if(lt(N,20),N/30,if(lt(N,30),20/30+(N-20)/15,20/30+10/15+(N-30)/30))"
    subprocess.run([*ff, "-framerate", "30", "-i", str(tmp_path / "s%02d.jpeg"), "-frames:v", "60", "-vf",
                    f"settb=1/90000,setpts='{times}/TB',scale=160:160", "-fps_mode", "passthrough", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(slowed)], check=True)  # fmt: skip
    for video, n in ((joined, 40), (slowed, 60)):
        r = invoke(["--source", str(video), "--fail-on-defect"])
        recs = check(r, ExitCode.OK, error_lines=0)
        assert [rec["frame"] for rec in recs] == list(range(n)) and "missing" not in r.stderr, r.stderr
