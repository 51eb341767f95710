"""Recorded video files as a line's recorder or a phone makes them, built with FFmpeg from the real casting images:
every record is checked against the frames (count, order, numbers, verdicts). The same promises as
test_faults.py (faults_common.check)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from edge_runtime.errors import ExitCode
from tests.conftest import CASTING, CASTING_REASON
from tests.edge_runtime.faults_common import (
    check,
    invoke,
    no_hang,  # noqa: F401 - the autouse hang guard, for this module too
)

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="needs ffmpeg and ffprobe (apt-get install -y ffmpeg)")  # fmt: skip

# parts the bundled model judges far from its threshold (scores under 0.01 or of 1.0), so that a video's lossy
# frames keep their verdicts; True: defective
PARTS = [("ok", 1176), ("ok", 1031), ("def", 1211), ("ok", 1144), ("def", 1215), ("ok", 1019), ("def", 1238)]
DEFECTIVE = [kind == "def" for kind, _ in PARTS]


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The parts as numbered JPEGs (f00.jpeg ...) in a temporary folder, for FFmpeg's image sequence input."""
    folder = tmp_path_factory.mktemp("frames")
    for i, (kind, number) in enumerate(PARTS):
        src = CASTING / "test" / f"{kind}_front" / f"cast_{kind}_0_{number}.jpeg"
        if not src.is_file():
            pytest.skip(CASTING_REASON)
        shutil.copy(src, folder / f"f{i:02d}.jpeg")
    return folder


def frame_count(video: Path) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=nb_read_frames", "-of", "csv=p=0", str(video)],
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    return int(out.strip().splitlines()[0])


def assert_every_frame(recs: list[dict], count: int) -> None:
    """Frames 0..count-1 in order, each with the verdict its part has (the parts repeat in a loop)."""
    assert [r["frame"] for r in recs] == list(range(count))
    assert [r["defective"] for r in recs] == [DEFECTIVE[i % len(PARTS)] for i in range(count)]


# a live recorder's output that FFmpeg can read while it is written, each written out frame by frame (every 20 ms)
RECORDERS = {
    "ts": ["-flush_packets", "1", "-f", "mpegts"],
    "mkv": ["-flush_packets", "1", "-cluster_time_limit", "10"],
    "mp4": ["-flush_packets", "1", "-movflags", "frag_every_frame+empty_moov"],
}
# bytes recorded before the run reads the file (about a second): reading them takes a few writes' time
READ_AFTER = 300_000


@pytest.mark.parametrize("container", sorted(RECORDERS))
def test_a_recording_still_being_written_says_its_later_frames_were_not_inspected(
    frames: Path, tmp_path: Path, container: str
):
    """A file read while FFmpeg still records it (at 50 FPS): FFmpeg stops at its current end and reports a clean
    end there. The run judged the frames written so far as the whole video and said nothing; a gate passed with
    the later frames never seen. Read again once the recording has ended, the file is whole and not called so."""
    video = tmp_path / f"line3.{container}"
    recorder = subprocess.Popen(["ffmpeg", "-loglevel", "error", "-y", "-re", "-stream_loop", "-1", "-framerate",
                                 "50", "-i", str(frames / "f%02d.jpeg"), "-t", "30", "-c:v", "libx264", "-tune",
                                 "zerolatency", "-pix_fmt", "yuv420p", "-g", "5", *RECORDERS[container], str(video)],
                                stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while (not video.exists() or video.stat().st_size < READ_AFTER) and time.monotonic() < deadline:
            time.sleep(0.05)
        summary = tmp_path / "s.json"
        result = invoke(["--source", str(video), "--fail-on-defect", "--summary", str(summary)])
        assert recorder.poll() is None, "the recording ended before the run did: nothing to test"
    finally:
        recorder.terminate()  # FFmpeg closes the file properly on SIGTERM
        recorder.wait(20)
    recs = check(result, ExitCode.DEFECT_FOUND, error_lines=0)
    assert recs, result.stderr
    assert_every_frame(recs, len(recs))
    said = [ln for ln in result.stderr.splitlines() if "while it was read" in ln]
    assert len(said) == 1, result.stderr  # the old run ended as if the video were whole
    warning = said[0]
    assert warning.startswith(f"source warning: {video}: the file grew by ") and (
        f"(a recording still being written): stopped at frame {len(recs)}, and the frames recorded after it were "
        "not inspected; inspect it once the recording has ended" in warning
    ), warning
    assert json.loads(summary.read_text())["cut_short"] == 1
    assert "gate: not passed: part of the video could not be read or was not inspected" in result.stderr

    whole = invoke(["--source", str(video), "--summary", str(summary)])
    recs = check(whole, ExitCode.OK, error_lines=0)
    assert len(recs) == frame_count(video) > len(PARTS)
    assert_every_frame(recs, len(recs))
    assert "while it was read" not in whole.stderr and json.loads(summary.read_text())["cut_short"] == 0


def error_line(args: list[str]) -> str:
    """The one line of a run whose source does not open (exit 5)."""
    result = invoke(args)
    check(result, ExitCode.SOURCE_UNAVAILABLE, error_lines=1)
    return result.stderr.strip().splitlines()[-1]


def test_an_mp4_without_its_index_says_it_is_still_recording_or_was_cut_off(frames: Path, tmp_path: Path):
    """An MP4 gets its index ('moov') when its recorder stops. Read while it recorded, after the recorder was killed
    (a power loss), or cut before its index, it was "corrupt, unsupported codec or not a video": a good recording
    in progress was taken for a broken file."""
    video = tmp_path / "phone.mp4"
    recorder = subprocess.Popen(["ffmpeg", "-loglevel", "error", "-y", "-re", "-stream_loop", "-1", "-framerate",
                                 "50", "-i", str(frames / "f%02d.jpeg"), "-t", "30", "-c:v", "libx264",
                                 "-pix_fmt", "yuv420p", str(video)], stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while (not video.exists() or video.stat().st_size < 60_000) and time.monotonic() < deadline:
            time.sleep(0.05)
        said = {"recording": error_line(["--source", str(video)])}
        assert recorder.poll() is None, "the recording ended before the run did: nothing to test"
    finally:
        recorder.kill()  # no chance to write the index, as at a power loss
        recorder.wait(20)
    said["killed"] = error_line(["--source", str(video)])
    whole = tmp_path / "whole.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-framerate", "10", "-i", str(frames / "f%02d.jpeg"), "-c:v",
                    "libx264", "-pix_fmt", "yuv420p", str(whole)], check=True)  # fmt: skip
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.read_bytes().rindex(b"moov") - 4])
    said["cut"] = error_line(["--source", str(cut)])
    for case, line in said.items():
        name = cut if case == "cut" else video
        assert line == (f"error: {name}: cannot open as a video: the MP4/MOV file has no index ('moov' box), which "
                        "its recorder writes when it stops: it is still recording, or was cut off (power lost, "
                        "recorder killed); inspect it once the recording has ended, or have its index rebuilt with "
                        "an MP4 repair tool"), (case, line)  # fmt: skip
    recs = check(invoke(["--source", str(whole)]), ExitCode.OK, error_lines=0)
    assert_every_frame(recs, len(PARTS))


@pytest.mark.parametrize("faststart", [False, True], ids=["index-at-end", "faststart"])
def test_an_mp4_cut_inside_its_index_says_it_is_cut_short_and_to_copy_it_again(
    frames: Path, tmp_path: Path, faststart: bool
):
    """A copy that stopped inside the MP4's index ('moov', at the end, or at the start after -movflags faststart)
    said "corrupt, unsupported codec or not a video"; FFmpeg cannot copy such a file into a readable one either."""
    whole = tmp_path / "whole.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-framerate", "10", "-i", str(frames / "f%02d.jpeg"), "-c:v",
                    "libx264", "-pix_fmt", "yuv420p", *(["-movflags", "+faststart"] if faststart else []),
                    str(whole)], check=True)  # fmt: skip
    data = whole.read_bytes()
    moov = data.index(b"moov") - 4
    size = int.from_bytes(data[moov : moov + 4], "big")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: moov + size // 2])  # half the index
    assert error_line(["--source", str(cut)]) == (
        f"error: {cut}: cannot open as a video: the file is cut short inside its index ('moov' box; "
        f"{size - size // 2} bytes of it missing), without which no frame can be found: a copy that did not finish, "
        "or a recorder stopped while it wrote the index; copy it again (if no whole copy is left, have the index "
        "rebuilt with an MP4 repair tool)"
    )


def test_an_empty_or_cut_header_video_file_says_so(frames: Path, tmp_path: Path):
    """A zero-byte .avi (a copy that never got its data) and a Matroska file cut inside its header said "corrupt,
    unsupported codec or not a video"."""
    empty = tmp_path / "line3.avi"
    empty.touch()
    assert error_line(["--source", str(empty)]) == (
        f"error: {empty}: cannot open as a video: the file is empty (0 bytes): a copy or recording that never got "
        "its data; copy it again"
    )
    whole = tmp_path / "whole.mkv"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-framerate", "10", "-i", str(frames / "f%02d.jpeg"), "-c:v",
                    "libx264", "-pix_fmt", "yuv420p", str(whole)], check=True)  # fmt: skip
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[:300])
    assert error_line(["--source", str(cut)]) == (
        f"error: {cut}: cannot open as a video: the file ends {whole.stat().st_size - 300} bytes before its "
        "container says it does (cut short: a copy that did not finish, or a recording stopped before it was "
        "closed); copy it again"
    )
    header = tmp_path / "line3.mp4"  # the first 32 bytes of an MP4, its 'ftyp' box alone: it said "corrupt"
    header.write_bytes(b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41")
    assert error_line(["--source", str(header)]) == (
        f"error: {header}: cannot open as a video: the MP4/MOV file holds its header alone (32 bytes: no frame data, "
        "no index): a copy cut short, or a recording stopped before its first frame; copy it again"
    )


@pytest.mark.parametrize("suffix", ["mkv", "mp4"])
def test_a_video_cut_inside_its_first_frame_says_it_is_cut_short(frames: Path, tmp_path: Path, suffix: str):
    """A copy that stopped inside the first frame opens and yields none: it said "stopped at frame 0 of 7: the file
    ends ... (truncated video)" and then "no frame could be read (an empty, truncated or corrupt video); check the
    file". One line now says the file is cut short and to copy it again."""
    whole = tmp_path / f"whole.{suffix}"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-framerate", "10", "-i", str(frames / "f%02d.jpeg"), "-c:v",
                    "libx264", "-pix_fmt", "yuv420p", *(["-movflags", "+faststart"] if suffix == "mp4" else []),
                    str(whole)], check=True)  # fmt: skip
    data = whole.read_bytes()
    first = data.index(b"\x1f\x43\xb6\x75" if suffix == "mkv" else b"mdat") + 200  # 200 bytes into the frames
    cut = tmp_path / f"cut.{suffix}"
    cut.write_bytes(data[:first])
    result = invoke(["--source", str(cut), "--fail-on-defect"])
    assert check(result, ExitCode.SOURCE_UNAVAILABLE, error_lines=0) == []
    said = [line for line in result.stderr.splitlines() if line.startswith(("source", "error"))]
    assert said == [f"source lost: {cut}: no frame could be read: the file ends {len(data) - first} bytes before its "
                    "container says it does (cut short: a copy that did not finish, or a recording stopped before "
                    "it was closed); copy it again"], result.stderr  # fmt: skip


@pytest.mark.parametrize("suffix", ["m4a", "mp4", "mkv", "avi", "ts"])
def test_a_file_of_sound_alone_says_it_holds_no_video_track(tmp_path: Path, suffix: str):
    """A sound recording passed for the line's video: "corrupt, unsupported codec or not a video" had the user look
    for damage in a healthy file."""
    sound = tmp_path / f"line3.{suffix}"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=d=1", str(sound)], check=True)
    assert error_line(["--source", str(sound)]) == (
        f"error: {sound}: cannot open as a video: it holds no video track (sound or other data only); pass a video file"
    )


def test_a_pause_in_a_variable_frame_rate_recording_is_named_with_its_length(frames: Path, tmp_path: Path):
    """A recorder that paused for 3 s (a Matroska file of variable frame rate, frame times jumping from 0.9 s to
    3.9 s) was told as "frames lost in a damaged file, or dropped while recording" only. Its times alone cannot
    tell a pause from a block the demuxer dropped in silence (test_video_damage), so the line names both and the
    length of the stretch without frames; the parts that passed then were not seen, and the gate is not passed."""
    video = tmp_path / "line3.mkv"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-stream_loop", "2", "-framerate", "10", "-i",
                    str(frames / "f%02d.jpeg"), "-vf", "setpts='if(gte(N,10),PTS+3/TB,PTS)'", "-fps_mode",
                    "passthrough", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(video)], check=True)  # fmt: skip
    summary = tmp_path / "s.json"
    result = invoke(["--source", str(video), "--fail-on-defect", "--summary", str(summary)])
    recs = check(result, ExitCode.DEFECT_FOUND, error_lines=0)
    assert [r["frame"] for r in recs] == [*range(10), *range(40, 51)]  # numbered by their times
    assert [r["defective"] for r in recs] == [DEFECTIVE[i % len(PARTS)] for i in range(21)]
    assert (f"source warning: {video}: frames 10 to 39 are missing (the frame times jump from 0.900 s to 4.000 s, "
            "3.1 s without a frame: a pause in the recording, frames dropped while recording, or frames lost in a "
            "damaged file; parts that passed then were not inspected); the frames after it were inspected"
            ) in result.stderr.splitlines()  # fmt: skip
    assert json.loads(summary.read_text())["cut_short"] == 1


def test_an_interlaced_video_whose_frames_opencv_cannot_convert_gives_no_verdicts(frames: Path, tmp_path: Path):
    """An interlaced H.264 file (an analogue camera's encoder makes them): OpenCV's FFmpeg could not convert its
    frames ("Cannot convert interlaced to progressive frames") and handed over its buffer as it was, black or
    whatever it held; each was judged "ok" with "no part found", 4 defective parts among them, exit 0. Each is an
    item error now, and the command the error names makes a video that gets every verdict."""
    import cv2

    video = tmp_path / "line3.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-framerate", "10", "-i", str(frames / "f%02d.jpeg"), "-c:v",
                    "libx264", "-flags", "+ilme+ildct", "-pix_fmt", "yuv420p", str(video)], check=True)  # fmt: skip
    reference = tmp_path / "first.png"  # FFmpeg's own picture of the first frame
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(video), "-frames:v", "1", str(reference)], check=True)
    cap = cv2.VideoCapture(str(video))
    ok, first = cap.read()
    cap.release()
    if ok and abs(float(first.mean()) - float(cv2.imread(str(reference)).mean())) < 10:
        pytest.skip("this OpenCV converts interlaced frames: nothing to test")
    result = invoke(["--source", str(video)])
    recs = check(result, ExitCode.BAD_DATA, error_lines=1)
    assert len(recs) == len(PARTS) and all(r["label"] is None for r in recs)
    assert {r["error"].split(": ", 1)[1] for r in recs} == {
        "FFmpeg could not convert the decoded frame to a picture (Cannot convert interlaced to progressive frames or "
        "vice versa.), and OpenCV handed over a frame that is not the picture; convert the video first (an "
        "interlaced one: ffmpeg -i IN -vf bwdif=0 -c:v libx264 -pix_fmt yuv420p OUT.mp4)"
    }
    converted = tmp_path / "converted.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(video), "-vf", "bwdif=0", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(converted)], check=True)  # fmt: skip
    assert_every_frame(check(invoke(["--source", str(converted)]), ExitCode.OK, error_lines=0), len(PARTS))


def test_a_video_whose_codec_opencv_cannot_decode_says_so_and_how_to_convert_it(frames: Path, tmp_path: Path):
    """A healthy AV1 file (OpenCV's FFmpeg has no AV1 decoder without hardware): it opened, gave no frame, and said
    "no frame could be read (an empty, truncated or corrupt video); check the file"."""
    import cv2

    encoders = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    if "libaom-av1" not in encoders:
        pytest.skip("this ffmpeg has no AV1 encoder")
    video = tmp_path / "line3.mkv"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-framerate", "10", "-i", str(frames / "f%02d.jpeg"), "-c:v",
                    "libaom-av1", "-cpu-used", "8", str(video)], check=True)  # fmt: skip
    cap = cv2.VideoCapture(str(video))
    decodes = cap.read()[0]
    cap.release()
    if decodes:
        pytest.skip("this OpenCV decodes AV1: nothing to test")
    result = invoke(["--source", str(video)])
    assert check(result, ExitCode.SOURCE_UNAVAILABLE, error_lines=0) == []
    said = [line for line in result.stderr.splitlines() if line.startswith("source lost:")]
    assert len(said) == 1 and said[0].startswith(f"source lost: {video}: no frame could be read: FFmpeg could not "
                                                 "decode its AV01 video ("), result.stderr  # fmt: skip
    assert said[0].endswith("): a codec OpenCV's FFmpeg does not decode, or damaged data; convert it (ffmpeg -i IN "
                            "-c:v libx264 -pix_fmt yuv420p OUT.mp4), or check the file")  # fmt: skip
    converted = tmp_path / "converted.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(video), "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    str(converted)], check=True)  # fmt: skip
    assert_every_frame(check(invoke(["--source", str(converted)]), ExitCode.OK, error_lines=0), len(PARTS))
