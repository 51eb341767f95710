"""Frames a video file's own index says are missing: a Matroska file's first blocks (its Cues list their key
frames), and a stretch cut out of a Motion-JPEG AVI (its idx1 lists every frame). Both renumbered the frames read
after them, and the frames lost were never told: a damaged first block of an MKV passed the gate with the
defective part in it unjudged (exit 0). Healthy videos must never get the warning: a false gate failure stops a
line.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.avi_index import AviIndex
from edge_runtime.container_length import EBML_SEGMENT, ebml_elements
from edge_runtime.errors import ExitCode
from tests.edge_runtime.faults_common import check, invoke

CLUSTER, SIMPLE_BLOCK = b"\x1f\x43\xb6\x75", b"\xa3"
FFMPEG = ["ffmpeg", "-loglevel", "error", "-y"]
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (apt-get install -y ffmpeg)")


def write(path: Path, frames: list[np.ndarray], fourcc: str = "MJPG", fps: float = 10.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, frames[0].shape[1::-1])
    if not writer.isOpened():
        pytest.skip(f"this OpenCV cannot write {fourcc} into {path.suffix}")
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def parts(levels: list[int]) -> list[np.ndarray]:
    """Flat parts (>= 128 scores defective with the tiny model) with a little noise, so no two frames are alike."""
    rng = np.random.default_rng(0)
    return [np.clip(level + rng.normal(0, 3, (48, 48, 3)), 0, 255).astype(np.uint8) for level in levels]


def first_blocks(mkv: bytes, count: int) -> list[int]:
    """Where the first ``count`` SimpleBlocks of the first Cluster lie (their payload: the track number first)."""
    segment = mkv.index(EBML_SEGMENT)
    for eid, a, b in ebml_elements(mkv, segment, len(mkv)):
        if eid == EBML_SEGMENT:
            for child, c, d in ebml_elements(mkv, a, b):
                if child == CLUSTER:
                    return [x for k, x, _ in ebml_elements(mkv, c, d) if k == SIMPLE_BLOCK][:count]
    raise AssertionError("no Cluster")


def test_an_mkv_whose_first_block_was_damaged_says_which_frames_it_lost(tmp_path: Path, tiny_model: Path):
    """One byte of the first block (its track number) changed: FFmpeg dropped the first Cluster's blocks without a
    failed read and started the stream at the next Cluster. The defective part in the first frame was never judged,
    the later frames came numbered from 0, and the gate passed (exit 0, a notice of a frame count "estimated")."""
    video = write(tmp_path / "line.mkv", parts([220] + [20 + i for i in range(39)]))
    data = bytearray(video.read_bytes())
    at = first_blocks(bytes(data), 1)[0]
    assert data[at] == 0x81  # track 1
    data[at] = 0x82  # a track the file does not have
    damaged = tmp_path / "damaged.mkv"
    damaged.write_bytes(bytes(data))
    r = invoke(["--model", str(tiny_model), "--source", str(damaged), "--fail-on-defect"])
    recs = check(r, ExitCode.DEFECT_FOUND, error_lines=0)
    first = recs[0]["frame"]  # the first frame of the second Cluster
    assert first > 0 and [rec["frame"] for rec in recs] == list(range(first, 40))  # each keeps its own number
    assert not any(rec["defective"] for rec in recs)  # the defective part was in a lost frame
    assert f"frames 0 to {first - 1} are missing (the file's index lists a frame at 0.000 s, and the first frame " \
        f"read is at {first / 10:.3f} s: frames lost in a damaged file)" in r.stderr  # fmt: skip
    assert "gate: not passed: part of the video could not be read" in r.stderr and "stopped at" not in r.stderr


@needs_ffmpeg
def test_an_mkv_that_lost_its_second_frame_says_so(tmp_path: Path, tiny_model: Path):
    """Key frames only (H.264, -g 1), the second block damaged: frames 0 and 2 came one after the other, which the
    frame times alone cannot tell from a change of rate, and the frames after them were numbered early (exit 0)."""
    frames = parts([20 + 3 * i for i in range(20)])
    for i, frame in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"s{i:02d}.png"), frame)
    video = tmp_path / "intra.mkv"
    subprocess.run([*FFMPEG, "-framerate", "10", "-i", str(tmp_path / "s%02d.png"), "-c:v", "libx264", "-g", "1",
                    "-pix_fmt", "yuv420p", str(video)], check=True)  # fmt: skip
    data = bytearray(video.read_bytes())
    data[first_blocks(bytes(data), 2)[1]] = 0x82
    damaged = tmp_path / "damaged.mkv"
    damaged.write_bytes(bytes(data))
    r = invoke(["--model", str(tiny_model), "--source", str(damaged), "--fail-on-defect"])
    recs = check(r, ExitCode.DEFECT_FOUND, error_lines=0)
    after = recs[1]["frame"]  # FFmpeg reads on at the next block it can find
    assert after > 1 and [rec["frame"] for rec in recs] == [0, *range(after, 20)]
    assert (f"frames 1 to {after - 1} are missing" if after > 2 else "frame 1 is missing") in r.stderr


def healthy_mkvs(folder: Path) -> list[Path]:
    """Healthy Matroska/WebM files: OpenCV's writer, and with ffmpeg: B-frames, a start at 10 s and at 0.1 s, a
    cut with -ss and -c copy, an open GOP, a long first frame (variable frame rate), audio first, VP9."""
    frames = parts([20 + 3 * i for i in range(30)])
    videos = [write(folder / "cv-mjpg.mkv", frames), write(folder / "cv-xvid.mkv", frames, "XVID")]
    if shutil.which("ffmpeg") is None:
        return videos
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"s{i:02d}.png"), frame)
    src = ["-framerate", "10", "-i", str(folder / "s%02d.png"), "-pix_fmt", "yuv420p"]
    x264 = ["-c:v", "libx264", "-bf", "3", "-g", "12"]
    runs = {
        "bf.mkv": [*src, *x264],
        "open-gop.mkv": [*src, *x264, "-x264-params", "open-gop=1"],
        "long-first.mkv": [*src, "-vf", "settb=1/1000,setpts='if(eq(N,0),0,(N+2)*100)'", "-fps_mode", "passthrough",
                           *x264],
        "audio-first.mkv": ["-f", "lavfi", "-i", "sine=d=3", *src, "-map", "0:a", "-map", "1:v", *x264],
        "vp9.webm": [*src, "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"],
    }  # fmt: skip
    for name, args in runs.items():
        if subprocess.run([*FFMPEG, *args, str(folder / name)], capture_output=True).returncode == 0:
            videos.append(folder / name)
    for name, args in {"at-10s.mkv": ["-output_ts_offset", "10"], "at-0.1s.mkv": ["-output_ts_offset", "0.1"],
                       "cut.mkv": ["-ss", "1.05"], "cut-open-gop.mkv": ["-ss", "1.05"]}.items():  # fmt: skip
        source = folder / ("open-gop.mkv" if "open" in name else "bf.mkv")
        cut = ["-ss", "1.05", "-i", str(source)] if "cut" in name else ["-i", str(source), *args]
        subprocess.run([*FFMPEG, *cut, "-c", "copy", str(folder / name)], check=True, capture_output=True)
        videos.append(folder / name)
    return videos


def test_healthy_matroska_videos_are_not_called_damaged(tmp_path: Path, tiny_model: Path):
    for video in healthy_mkvs(tmp_path):
        r = invoke(["--model", str(tiny_model), "--source", str(video), "--fail-on-defect"])
        recs = check(r, ExitCode.OK, error_lines=0)
        assert [rec["frame"] for rec in recs] == list(range(len(recs))) and len(recs) >= 19, video.name
        assert "missing" not in r.stderr and "could not be decoded" not in r.stderr, (video.name, r.stderr)


def movi_chunks(avi: bytes) -> list[int]:
    """Where the video chunks of an AVI's movi list start (their 8-byte headers)."""
    movi = avi.index(b"movi") + 4
    starts, at = [], movi
    while avi[at : at + 4] != b"idx1" and at + 8 <= len(avi):
        kind, size = struct.unpack("<4sI", avi[at : at + 8])
        if kind[2:] in (b"dc", b"db"):
            starts.append(at)
        at += 8 + size + (size & 1)
    return starts


@pytest.mark.parametrize(("sizes", "last"), [("as-left", 19), ("mended", 19), ("as-left", 15)])
def test_an_mjpeg_avi_with_a_stretch_cut_out_keeps_its_frame_numbers(
    tmp_path: Path, tiny_model: Path, sizes: str, last: int
):
    """The bytes of frames 15 to 19 cut out of the movi list, the index left as it was (the RIFF and movi sizes too,
    or mended): FFmpeg read on from frame 20 and handed it out as frame 15, so every later verdict carried the
    number of a part five frames earlier, the run ended "stopped at frame 35 of 40", and frames 15 to 19 were not
    named. One frame cut out is "frame 15 is missing (the file's index lists it ..." (it said "lists them")."""
    rng = np.random.default_rng(1)
    video = write(tmp_path / "v.avi", [(rng.random((64, 64, 3)) * 60 + 3 * i).astype(np.uint8) for i in range(40)])
    data = bytearray(video.read_bytes())
    chunks = movi_chunks(bytes(data))
    removed = chunks[last + 1] - chunks[15]
    del data[chunks[15] : chunks[last + 1]]
    if sizes == "mended":
        for at in (4, data.index(b"movi") - 4):
            data[at : at + 4] = struct.pack("<I", struct.unpack("<I", data[at : at + 4])[0] - removed)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(bytes(data))
    whole = invoke(["--model", str(tiny_model), "--source", str(video)])
    scores = {rec["frame"]: rec["score"] for rec in check(whole, ExitCode.OK, error_lines=0)}
    r = invoke(["--model", str(tiny_model), "--source", str(cut), "--fail-on-defect"])
    recs = check(r, ExitCode.DEFECT_FOUND, error_lines=0)
    assert [rec["frame"] for rec in recs] == [f for f in range(40) if not 15 <= f <= last]
    assert all(rec["score"] == scores[rec["frame"]] for rec in recs)  # each verdict on its own frame
    lost = "frame 15 is missing (the file's index lists it, and the frames after it" if last == 15 else \
        "frames 15 to 19 are missing (the file's index lists them, and the frames after them"  # fmt: skip
    assert f"{lost} lie {removed} bytes before where it says: a stretch cut out of the file)" in r.stderr
    assert "stopped at frame" not in r.stderr


def test_healthy_avis_show_no_stretch_cut_out(tmp_path: Path, tiny_model: Path):
    """OpenCV's MJPG and XVID writers; with ffmpeg: Motion-JPEG with a sound track, MPEG-4, and a frame-rate
    conversion's empty "repeat the last frame" chunks."""
    frames = parts([20 + 3 * i for i in range(20)])
    videos = [write(tmp_path / "mjpg.avi", frames), write(tmp_path / "xvid.avi", frames, "XVID")]
    if shutil.which("ffmpeg") is not None:
        sound = ["-f", "lavfi", "-i", "sine=d=2"]
        runs = {"sound.avi": [*sound, "-i", str(videos[0]), "-map", "1:v", "-map", "0:a", "-c:v", "mjpeg", "-c:a",
                              "pcm_s16le"],
                "mpeg4.avi": ["-i", str(videos[0]), "-c:v", "mpeg4"],
                "r30.avi": ["-i", str(videos[0]), "-c:v", "copy", "-r", "30"]}  # fmt: skip
        for name, args in runs.items():
            subprocess.run([*FFMPEG, *args, str(tmp_path / name)], check=True, capture_output=True)
            videos.append(tmp_path / name)
    for video in videos:
        index = AviIndex.read(video)
        assert index is not None and index.removed == 0, video.name
        r = invoke(["--model", str(tiny_model), "--source", str(video), "--fail-on-defect"])
        recs = check(r, ExitCode.OK, error_lines=0)
        assert [rec["frame"] for rec in recs] == list(range(20)) and "missing" not in r.stderr, video.name


@needs_ffmpeg
def test_an_avi_recorded_to_a_pipe_is_not_called_truncated(tmp_path: Path, tiny_model: Path):
    """``ffmpeg ... -f avi - > p.avi`` cannot go back to write the length: its header says 2^30 frames, and a healthy
    recording "stopped at frame 20 of 1073741824 (truncated or corrupt video)", failing the gate."""
    source = write(tmp_path / "v.avi", parts([20 + 3 * i for i in range(20)]))
    piped = tmp_path / "piped.avi"
    with open(piped, "wb") as out:
        subprocess.run([*FFMPEG, "-i", str(source), "-c:v", "mjpeg", "-f", "avi", "-"], check=True, stdout=out)
    assert cv2.VideoCapture(str(piped)).get(cv2.CAP_PROP_FRAME_COUNT) >= 1 << 30  # what OpenCV says of it
    r = invoke(["--model", str(tiny_model), "--source", str(piped), "--fail-on-defect"])
    recs = check(r, ExitCode.OK, error_lines=0)
    assert [rec["frame"] for rec in recs] == list(range(20)) and "stopped at frame" not in r.stderr
