"""The fault suite's --save and videos: a save that would go wrong or collide, saved pictures and videos (numbering,
frame rate, shapes, torn files, folders left behind); videos that are truncated, damaged or without a frame.
The same promises as test_faults.py (faults_common.check).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edge_runtime.errors import ExitCode
from tests.edge_runtime.conftest import write_parts
from tests.edge_runtime.faults_common import (
    GOOD_LEVELS,
    check,
    invoke,
    no_hang,  # noqa: F401 - the autouse hang guard, for this module too
)


@pytest.mark.parametrize("case", ["mov", "jpg", "gif", "onnx", "folder-named-mp4", "source-folder"])
def test_save_that_would_go_wrong_is_refused_before_any_work(tmp_path, tiny_model, case):
    """``--save out.mov`` (or ``out.gif``) silently became a folder named out.mov; ``--save DIR.mp4`` (an existing
    folder) failed after the first item; ``--save`` onto the source folder mixed annotated pictures into the inputs."""
    write_parts(tmp_path / "parts", [10, 200])
    target = {"mov": tmp_path / "out.mov", "jpg": tmp_path / "out.jpg", "gif": tmp_path / "out.gif",
              "onnx": tmp_path / "out.onnx", "folder-named-mp4": tmp_path / "d.mp4",
              "source-folder": tmp_path / "parts"}[case]  # fmt: skip
    if case == "folder-named-mp4":
        target.mkdir()
    result = invoke(["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--save", str(target)])
    usage = case in ("mov", "jpg", "gif", "onnx")
    recs = check(result, ExitCode.USAGE if usage else ExitCode.OUTPUT_ERROR, error_lines=1)
    assert recs == [] and "summary:" not in result.stderr
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["part_00.png", "part_01.png"]
    assert target.is_dir() if case in ("folder-named-mp4", "source-folder") else not target.exists()


def test_a_saved_video_that_came_out_short_is_an_output_error(tmp_path):
    """OpenCV's writer reports no write error (full disk): the frame count is read back at the end."""
    import numpy as np

    from edge_runtime.errors import OutputError
    from edge_runtime.run_outputs import check_saved_video
    from tests.edge_runtime.test_cli import write_video

    video = write_video(tmp_path / "v.avi", [np.full((32, 32), 9 * i, np.uint8) for i in range(3)])

    class Saver:
        target, is_video = video, True

    Saver.count = 3
    check_saved_video(Saver())
    Saver.count = 5  # five frames handed to the writer, three on disk
    with pytest.raises(OutputError, match="holds 3 of 5 frames"):
        check_saved_video(Saver())


def test_a_saved_video_of_one_frame_that_came_out_empty_reads_well(tmp_path):
    """ "the saved video holds 0 of 1 frames": the count is told with the plural helper."""
    from edge_runtime.errors import OutputError
    from edge_runtime.run_outputs import check_saved_video

    video = tmp_path / "v.avi"
    video.write_bytes(b"RIFF" + bytes(60))  # a header begun, nothing readable after it

    class Saver:
        target, is_video, count = video, True, 1

    with pytest.raises(OutputError) as caught:
        check_saved_video(Saver())
    assert str(caught.value) == (f"{video}: the saved video holds 0 of 1 frame (a full disk, a file-size limit "
                                 "(ulimit -f) or a folder not writable)")  # fmt: skip


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_a_saved_video_emptied_by_log_rotation_says_so_not_a_full_disk(tmp_path, suffix):
    """logrotate's copytruncate emptied the --save video while the run wrote it: the writer wrote on at its own
    offset, the header was gone, and the run blamed "a full disk, a file-size limit (ulimit -f) or a folder not
    writable" (an AVI: "holds -192153584101141 of 40 frames")."""
    import numpy as np

    from edge_runtime.annotate import Saver
    from edge_runtime.errors import OutputError
    from edge_runtime.run_outputs import check_saved_video

    target = tmp_path / f"line3{suffix}"
    saver = Saver(target)
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)  # large frames: written soon
    while target.stat().st_size == 0 and saver.count < 200:
        saver.write(noise, name="part.png")
    assert target.stat().st_size > 0, "the writer wrote nothing to the disk: nothing to truncate"
    os.truncate(target, 0)  # what copytruncate does after its copy
    for _ in range(5):
        saver.write(noise, name="part.png")
    saver.close()
    with pytest.raises(OutputError) as caught:
        check_saved_video(saver)
    assert str(caught.value) == (f"{target}: the saved video was emptied by another program while edge-infer wrote "
                                 "it (logrotate's copytruncate, or `> FILE`): its header is gone and it does not "
                                 "play; keep --save videos out of log rotation, or --save to a folder")  # fmt: skip


def test_truncated_video_says_where_it_stopped(tmp_path, tiny_model):
    import cv2
    import numpy as np

    from tests.edge_runtime.test_cli import write_video

    video = write_video(tmp_path / "v.avi", [np.full((64, 64), 40 + 5 * i, np.uint8) for i in range(30)])
    data = video.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    cap = cv2.VideoCapture(str(cut))
    declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    result = invoke(["--model", str(tiny_model), "--source", str(cut)])
    recs = check(result, ExitCode.OK, error_lines=0)
    if declared <= len(recs):  # this container keeps no frame count once cut: nothing to compare with
        pytest.skip(f"truncated AVI declares {declared} frames")
    assert f"stopped at frame {len(recs)} of {declared}" in result.stderr
    # A gate passed it (exit 0): the frames after the break, never inspected, may hold the defective parts.
    summary = tmp_path / "s.json"
    gated = invoke(["--model", str(tiny_model), "--source", str(cut), "--fail-on-defect", "--summary", str(summary)])
    assert gated.exit_code == ExitCode.DEFECT_FOUND and json.loads(summary.read_text())["cut_short"] == 1
    assert "gate: not passed: part of the video could not be read" in gated.stderr
    whole = invoke(["--model", str(tiny_model), "--source", str(video), "--fail-on-defect", "--summary", str(summary)])
    assert json.loads(summary.read_text())["cut_short"] == 0 and "could not be read" not in whole.stderr
    # a run that stops before the break (--max-frames) is not told of it, and its gate is not failed by it
    three = ["--max-frames", "3", "--batch-size", "1", "--summary", str(summary)]  # batches of 1: no frame read ahead
    first = invoke(["--model", str(tiny_model), "--source", str(cut), *three])
    assert json.loads(summary.read_text())["cut_short"] == 0 and "stopped at frame" not in first.stderr


def test_a_matroska_video_cut_short_fails_the_gate(tmp_path, tiny_model):
    """A Matroska copy cut in half (30 OK frames, then 5 defective ones) was read to the cut, then "stopped at frame
    17 of 35 (... or a frame count the container estimated ...)" as a notice: the gate passed, exit 0, with the
    defective frames never judged. Its Segment says how long the file should be."""
    import cv2
    import numpy as np

    whole = tmp_path / "line.mkv"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    if not writer.isOpened():
        pytest.skip("this OpenCV writes no Matroska")
    for level in [10] * 30 + [220] * 5:  # the tiny model: OK, then defective
        writer.write(np.full((64, 64, 3), level, np.uint8))
    writer.release()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    result = invoke(["--model", str(tiny_model), "--source", str(cut), "--fail-on-defect"])
    recs = check(result, ExitCode.DEFECT_FOUND, error_lines=0)
    assert recs and not any(r["defective"] for r in recs)  # every frame judged before the cut was OK
    assert f"stopped at frame {len(recs)} of 35: the file ends" in result.stderr
    assert "before its container says it does (truncated video)" in result.stderr
    assert "gate: not passed: part of the video could not be read" in result.stderr
    complete = invoke(["--model", str(tiny_model), "--source", str(whole), "--fail-on-defect"])
    assert len(check(complete, ExitCode.DEFECT_FOUND, error_lines=0)) == 35 and "truncated" not in complete.stderr


def test_a_damaged_stretch_of_a_video_is_read_over_and_fails_the_gate(tmp_path, tiny_model):
    """An MPEG-4 video zeroed in its middle stopped at frame 12 of 40 and passed the gate (exit 0), though the
    decoder finds 21 readable frames after the damage. They are now inspected, numbered as in the file, and the
    gate fails: the frames in the damaged stretch were never seen."""
    import cv2
    import numpy as np

    video = tmp_path / "v.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    for i in range(40):
        writer.write(np.full((64, 64, 3), 40 + 4 * i, np.uint8))
    writer.release()
    data = bytearray(video.read_bytes())
    n = len(data)
    data[n // 3 : n // 2] = bytes(n // 2 - n // 3)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    summary = tmp_path / "s.json"
    gated = ["--fail-on-defect", "--summary", str(summary)]
    result = invoke(["--model", str(tiny_model), "--source", str(broken), *gated])
    recs = [json.loads(line) for line in result.stdout.splitlines()]
    frames = [r["frame"] for r in recs]
    assert result.exit_code == ExitCode.DEFECT_FOUND and json.loads(summary.read_text())["cut_short"] == 1
    assert len(recs) > 30 and frames[-1] == 39 and frames == sorted(frames)  # the frames after the damage, in place
    gap = [f for f in range(40) if f not in frames]
    assert gap == list(range(gap[0], gap[-1] + 1))  # one stretch, and the warning names it
    assert f"frames {gap[0]} to {gap[-1]} could not be decoded" in result.stderr
    whole = invoke(["--model", str(tiny_model), "--source", str(video), "--summary", str(summary)])
    assert len(whole.stdout.splitlines()) == 40 and json.loads(summary.read_text())["cut_short"] == 0
    # --max-frames before the damage: the run's batch does not read ahead into it (its gate failed by batch size)
    five = invoke(["--model", str(tiny_model), "--source", str(broken), "--max-frames", "5", "--summary", str(summary)])
    assert len(five.stdout.splitlines()) == 5 and json.loads(summary.read_text())["cut_short"] == 0
    assert "could not be decoded" not in five.stderr


def test_a_motion_jpeg_avi_that_lost_chunk_headers_keeps_its_frame_numbers(tmp_path, tiny_model):
    """Zeroed bytes that wipe the chunk headers of frames 11 and 12 of an MJPEG AVI: FFmpeg resynced on frame 13's
    header and handed it out as frame 11, so every later verdict carried the number of a frame two parts earlier,
    and the run ended "stopped at frame 38 of 40" though it had read the file to its end."""
    import cv2
    import numpy as np

    from edge_runtime.avi_index import AviIndex

    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    rng = np.random.default_rng(0)
    for i in range(40):  # every frame's JPEG bytes differ, as a camera's do
        writer.write((rng.random((64, 64, 3)) * 60 + 3 * i).astype(np.uint8))
    writer.release()
    assert AviIndex.read(video) is not None and len(AviIndex.read(video)) == 40
    data = bytearray(video.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i : i + 3] == b"\xff\xd8\xff"]
    data[starts[10] : starts[13] - 8] = bytes(starts[13] - 8 - starts[10])  # frame 10's data, 11 and 12 whole
    broken = tmp_path / "broken.avi"
    broken.write_bytes(bytes(data))
    summary = tmp_path / "s.json"
    whole = invoke(["--model", str(tiny_model), "--source", str(video), "--json"])
    scores = {r["frame"]: r["score"] for r in map(json.loads, whole.stdout.splitlines())}
    result = invoke(["--model", str(tiny_model), "--source", str(broken), "--json", "--fail-on-defect",
                     "--summary", str(summary)])  # fmt: skip
    recs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["frame"] for r in recs] == [f for f in range(40) if f not in (11, 12)]
    assert recs[10]["error"] is not None  # frame 10's header survived, its data did not
    assert all(r["score"] == scores[r["frame"]] for r in recs if r["error"] is None)  # each verdict on its frame
    assert "frames 11 to 12 could not be decoded" in result.stderr and "stopped at frame" not in result.stderr
    assert result.exit_code == ExitCode.DEFECT_FOUND and json.loads(summary.read_text())["cut_short"] == 1


def test_an_intact_motion_jpeg_avi_with_repeat_entries_is_not_called_damaged(tmp_path, tiny_model):
    """FFmpeg's frame-rate conversion writes empty index entries ("repeat the last frame"): matched against the
    index, each was taken for a lost frame, and an intact file failed its gate as damaged."""
    import shutil
    import subprocess

    import cv2
    import numpy as np

    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg to write an AVI with repeat entries")
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    rng = np.random.default_rng(1)
    for _ in range(3):
        writer.write((rng.random((64, 64, 3)) * 40).astype(np.uint8))
    writer.release()
    gaps = tmp_path / "gaps.avi"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(video), "-c:v", "copy", "-bsf:v", "setts=ts=TS*2",
                    str(gaps)], check=True, timeout=60)  # fmt: skip
    result = invoke(["--model", str(tiny_model), "--source", str(gaps), "--fail-on-defect"])
    recs = check(result, ExitCode.OK, error_lines=0)
    assert [r["frame"] for r in recs] == [0, 1, 2] and "could not be decoded" not in result.stderr
    # converted to 30 FPS: repeat entries after the last frame too, which OpenCV's frame count takes in ("stopped
    # at frame 3 of 9", exit 10); the same for a re-encoded (MPEG-4) AVI
    for codec in ("copy", "mpeg4"):
        faster = tmp_path / f"r30-{codec}.avi"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(video), "-c:v", codec, "-r", "30", str(faster)],
                       check=True, timeout=60)  # fmt: skip
        result = invoke(["--model", str(tiny_model), "--source", str(faster), "--fail-on-defect"])
        assert len(check(result, ExitCode.OK, error_lines=0)) == 3 and "stopped at frame" not in result.stderr


def test_an_avi_index_that_does_not_fit_its_file_is_not_used(tmp_path):
    from edge_runtime.avi_index import AviIndex

    (tmp_path / "x.avi").write_bytes(b"RIFF\x10\x00\x00\x00AVI idx1\x10\x00\x00\x0000dc" + bytes(12))
    (tmp_path / "y.avi").write_bytes(b"not a riff file at all")
    assert AviIndex.read(tmp_path / "x.avi") is None and AviIndex.read(tmp_path / "y.avi") is None


def test_a_complete_video_whose_container_counts_more_frames_does_not_fail_the_gate(tmp_path, tiny_model):
    """An MKV whose audio runs 0.25 s past its 40 frames declares 43: a complete file failed the gate (exit 10)."""
    import shutil
    import subprocess

    import cv2
    import numpy as np

    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg (apt-get install -y ffmpeg)")
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for _ in range(40):
        writer.write(np.full((64, 64, 3), 30, np.uint8))
    writer.release()
    mkv = tmp_path / "with_audio.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(video), "-f", "lavfi", "-i", "sine=d=4.25", "-c:v", "copy",
                    "-c:a", "pcm_s16le", str(mkv)], check=True, timeout=60)  # fmt: skip
    summary = tmp_path / "s.json"
    result = invoke(["--model", str(tiny_model), "--source", str(mkv), "--fail-on-defect", "--summary", str(summary)])
    assert len(result.stdout.splitlines()) == 40 and json.loads(summary.read_text())["cut_short"] == 0
    assert "gate: not passed: part of the video" not in result.stderr


def test_a_healthy_variable_rate_video_is_not_taken_for_a_damaged_one(tmp_path, tiny_model):
    """A camera triggered by the parts records frames 0.8-2.5 s apart. A check for holes in the timestamps (tried
    and reverted) took each pause for damage: 20 warnings and a failed gate on a complete MKV."""
    import random
    import shutil
    import subprocess

    import cv2
    import numpy as np

    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg (apt-get install -y ffmpeg)")
    cv2.imwrite(str(tmp_path / "part.png"), np.full((64, 64), 30, np.uint8))
    rng = random.Random(3)
    listing = "".join(f"file 'part.png'\nduration {rng.uniform(0.8, 2.5):.2f}\n" for _ in range(12))
    (tmp_path / "list.txt").write_text(listing + "file 'part.png'\n")
    mkv = tmp_path / "triggered.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "concat", "-safe", "0", "-i", str(tmp_path / "list.txt"),
                    "-fps_mode", "vfr", "-c:v", "mjpeg", str(mkv)], check=True, timeout=60)  # fmt: skip
    summary = tmp_path / "s.json"
    result = invoke(["--model", str(tiny_model), "--source", str(mkv), "--summary", str(summary)])
    frames = [json.loads(line)["frame"] for line in result.stdout.splitlines()]
    assert frames == list(range(len(frames))) and len(frames) >= 12, frames
    assert json.loads(summary.read_text())["cut_short"] == 0 and "source warning" not in result.stderr


def test_a_video_without_one_frame_is_a_lost_source_not_a_clean_run(tmp_path, tiny_model):
    import cv2

    video = tmp_path / "v.avi"  # a valid container that holds no frame: it opens, then ends at once
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    writer.release()
    result = invoke(["--model", str(tiny_model), "--source", str(video), "--fail-on-defect"])
    assert check(result, ExitCode.SOURCE_UNAVAILABLE, error_lines=0) == []  # was exit 0: a gate passed
    assert "v.avi: no frame could be read" in result.stderr and "summary: 0 items" in result.stderr


def test_a_video_without_one_frame_keeps_the_last_runs_output_and_summary(tmp_path, tiny_model):
    """It opened, so the --output was emptied and a "0 items" --summary written over the last run's: a source that
    gives nothing now leaves both as they were, as one that does not open does."""
    import cv2

    write_parts(tmp_path / "parts", GOOD_LEVELS)
    out, summary = tmp_path / "line3.jsonl", tmp_path / "s.json"
    kept = ["--output", str(out), "--summary", str(summary)]
    check(invoke(["--model", str(tiny_model), "--source", str(tmp_path / "parts"), *kept]), ExitCode.OK, error_lines=0)
    before = out.read_bytes(), summary.read_bytes()
    video = tmp_path / "v.avi"
    cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64)).release()
    result = invoke(["--model", str(tiny_model), "--source", str(video), *kept])
    assert check(result, ExitCode.SOURCE_UNAVAILABLE, error_lines=0) == []
    assert (out.read_bytes(), summary.read_bytes()) == before and len(before[0].splitlines()) == 2
    assert f"{out}: left as it was" in result.stderr


def test_save_inside_the_folder_being_inspected_is_refused(tmp_path, tiny_model):
    """The annotated pictures landed among the parts: the next run on the folder judged them as parts."""
    write_parts(tmp_path / "parts", GOOD_LEVELS)
    result = invoke(["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--save",
                     str(tmp_path / "parts" / "annotated")])  # fmt: skip
    assert check(result, ExitCode.OUTPUT_ERROR, error_lines=1) == []
    assert "inside the folder being inspected" in result.stderr and not (tmp_path / "parts" / "annotated").exists()


def test_saved_pictures_are_numbered_by_their_record(tmp_path, tiny_model):
    """Files were numbered by the count of pictures saved: after an unreadable item, 000002_c.png was record 3."""
    folder = tmp_path / "parts"
    write_parts(folder, GOOD_LEVELS)
    (folder / "part_005.png").write_bytes(b"not a picture")
    result = invoke(["--model", str(tiny_model), "--source", str(folder), "--save", str(tmp_path / "out")])
    recs = check(result, ExitCode.OK, error_lines=0)
    numbered = {int(p.name[:6]): p.name[7:] for p in (tmp_path / "out").glob("*.jpg")}
    by_record = {i + 1: Path(r["source"]).stem + ".jpg" for i, r in enumerate(recs) if r["error"] is None}
    assert numbered == by_record and len(numbered) == 2


def test_saving_into_a_folder_an_earlier_run_saved_into_says_so(tmp_path, tiny_model):
    """A second run into the same --save folder put its pictures beside the first run's, under the same numbers, and
    replaced those of the same name, without a word."""
    write_parts(tmp_path / "parts", GOOD_LEVELS)
    run = ["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--save", str(tmp_path / "out")]
    first = invoke(run)
    check(first, ExitCode.OK, error_lines=0)
    assert "earlier run" not in first.stderr
    (tmp_path / "out" / "notes.txt").write_text("a file of the user's own is no picture of a run")
    second = invoke(run)
    check(second, ExitCode.OK, error_lines=0)
    assert f"warning: {tmp_path / 'out'}: already holds 2 annotated pictures of an earlier run" in second.stderr


def test_saving_among_images_of_parts_is_refused_before_any_work(tmp_path, tiny_model):
    """``--source line/part_00.png --save ok_parts/`` put the annotated picture among the good parts, exit 0, and
    the next run over ok_parts judged that red-framed picture as a part; pictures an earlier run saved may stay."""
    (part,) = write_parts(tmp_path / "line", [220])
    write_parts(tmp_path / "ok_parts", [10])
    result = invoke(["--model", str(tiny_model), "--source", str(part), "--save", str(tmp_path / "ok_parts")])
    check(result, ExitCode.OUTPUT_ERROR, error_lines=1)
    assert "summary:" not in result.stderr
    assert "holds images of parts (part_00.png)" in result.stderr
    assert [p.name for p in (tmp_path / "ok_parts").iterdir()] == ["part_00.png"]
    saved = tmp_path / "saved"
    for _ in range(2):  # the second run finds only the first run's pictures there, and saves beside them
        again = invoke(["--model", str(tiny_model), "--source", str(part), "--save", str(saved)])
        check(again, ExitCode.OK, error_lines=0)
    assert [p.name for p in saved.iterdir()] == ["000001_part_00.jpg"]


def test_a_saved_video_keeps_the_frame_rate_of_its_source(tmp_path, tiny_model):
    """Every saved video was written at 10 frames a second: a 25 fps line played back 2.5 times too slow."""
    import cv2
    import numpy as np

    from tests.edge_runtime.test_cli import write_video

    video = write_video(tmp_path / "line3.avi", [np.full((48, 48), v, np.uint8) for v in (10, 220) * 3], fps=25.0)
    saved = tmp_path / "annotated.avi"
    result = invoke(["--model", str(tiny_model), "--source", str(video), "--save", str(saved)])
    assert len(check(result, ExitCode.OK, error_lines=0)) == 6
    cap = cv2.VideoCapture(str(saved))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(25.0) and cap.get(cv2.CAP_PROP_FRAME_COUNT) == 6
    cap.release()


def test_a_picture_that_cannot_be_written_whole_leaves_no_torn_file(tmp_path, tiny_model, monkeypatch):
    """--save on a full disk left a truncated JPEG under the picture's final name."""
    import builtins

    folder = tmp_path / "parts"
    write_parts(folder, GOOD_LEVELS)
    saved = tmp_path / "saved"

    def half_then_full(path: Path, data: bytes) -> None:  # what a full disk does: part of it, then ENOSPC
        with real_open(path, "wb") as f:
            f.write(bytes(data)[: len(data) // 2])
        raise OSError(28, "No space left on device")

    real_open, real_write_bytes = builtins.open, Path.write_bytes

    def opener(file, mode="r", *args, **kwargs):
        if "w" in mode and str(file).startswith(str(saved)) and not str(file).endswith(".probe"):
            return _Failing(file, real_open)
        return real_open(file, mode, *args, **kwargs)

    def write_bytes(self, data):
        if str(self).startswith(str(saved)) and not str(self).endswith(".probe"):
            return half_then_full(self, data)
        return real_write_bytes(self, data)

    import edge_runtime.atomic

    real_write_all = edge_runtime.atomic.write_all

    def write_all(fd: int, data: bytes) -> None:  # pictures go through the held folder's descriptor
        real_write_all(fd, bytes(data)[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(builtins, "open", opener)
    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    monkeypatch.setattr(edge_runtime.atomic, "write_all", write_all)
    result = invoke(["--model", str(tiny_model), "--source", str(folder), "--save", str(saved)])
    check(result, ExitCode.OUTPUT_ERROR, error_lines=1)
    assert "No space left" in result.stderr and list(saved.iterdir()) == []


class _Failing:
    """A file opened for writing on a full disk: the first write stores half and fails."""

    def __init__(self, path, real_open) -> None:
        self.f = real_open(path, "wb")

    def write(self, data) -> None:
        self.f.write(bytes(data)[: len(data) // 2])
        raise OSError(28, "No space left on device")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


def test_save_inside_the_folder_a_pattern_lists_is_refused(tmp_path, tiny_model):
    write_parts(tmp_path / "parts", GOOD_LEVELS)
    result = invoke(["--model", str(tiny_model), "--source", f"{tmp_path}/parts/**", "--save",
                     str(tmp_path / "parts" / "annotated")])  # fmt: skip
    assert check(result, ExitCode.OUTPUT_ERROR, error_lines=1) == []
    assert "inside the folder being inspected" in result.stderr


def test_a_saved_picture_with_a_name_near_the_limit_is_written(tmp_path, tiny_model):
    """The temporary name beside a 251-byte picture name was over the 255-byte limit: exit 7, the rest unjudged."""
    folder = tmp_path / "parts"
    write_parts(folder, GOOD_LEVELS)
    (folder / "part_00.png").rename(folder / ("p" * 244 + ".png"))
    result = invoke(["--model", str(tiny_model), "--source", str(folder), "--save", str(tmp_path / "saved")])
    assert len(check(result, ExitCode.OK, error_lines=0)) == 2
    assert sorted(len(p.name) for p in (tmp_path / "saved").iterdir()) == [18, 255]


@pytest.mark.parametrize("target", ["same.avi", "pictures"])
def test_a_second_run_saving_to_the_same_video_or_folder_is_refused(tmp_path, target: str):
    """Two runs --save'd to one video: a header of 2000 frames over 1288 decodable ones, both exit 0; into one
    folder, pictures under the same numbers. The second is now refused as a second --output is (exit 7)."""
    from edge_runtime.annotate import Saver
    from tests.conftest import REPO

    sample = REPO / "edge_runtime/samples/test/def_front/cast_def_0_3446.jpeg"
    save = tmp_path / target
    if not save.suffix:
        save.mkdir()
    first = Saver(save)
    try:
        result = invoke(["--source", str(sample), "--save", str(save)])
        check(result, ExitCode.OUTPUT_ERROR, error_lines=1)
        assert "another process is saving to it" in result.stderr
    finally:
        first.close()
    assert not save.exists() if save.suffix else save.is_dir()  # the first saved nothing: no empty video is left


def test_a_first_picture_that_is_a_line_of_pixels_gives_a_playable_video(tmp_path):
    """A 5000 x 1 first image made a video header of 20352 x 240 over frames of 1200000 x 240 (3.2 GB, unplayable);
    a 3 x 9000 one stopped an .mp4 run after one item with "cannot write a video there"."""
    import cv2
    import numpy as np

    from tests.conftest import REPO

    part = cv2.imread(str(REPO / "edge_runtime/samples/test/def_front/cast_def_0_3446.jpeg"))
    for first, name in ((np.zeros((1, 5000), np.uint8), "x.avi"), (np.zeros((9000, 3), np.uint8), "y.mp4")):
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        cv2.imwrite(str(folder / "a_line.png"), first)
        cv2.imwrite(str(folder / "b_part.png"), part)
        check(invoke(["--source", str(folder), "--save", str(tmp_path / name)]), ExitCode.OK, error_lines=0)
        cap = cv2.VideoCapture(str(tmp_path / name))
        frames = []
        while (got := cap.read())[0]:
            frames.append(got[1])
        cap.release()
        assert len(frames) == 2 and frames[1].shape[:2] == (480, 640), name


def test_a_saved_video_keeps_each_pictures_shape_and_a_tiny_first_picture_does_not_shrink_it(tmp_path):
    """--save out.avi took the first picture's size for every frame: a 1x1 first image made a 1x1 video (every
    annotation lost), and pictures of another shape were stretched."""
    import cv2
    import numpy as np

    from tests.conftest import REPO

    part = cv2.imread(str(REPO / "edge_runtime/samples/test/def_front/cast_def_0_3446.jpeg"))
    folder = tmp_path / "mixed"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_tiny.png"), np.zeros((1, 1), np.uint8))
    cv2.imwrite(str(folder / "b_part.png"), part)
    cv2.imwrite(str(folder / "c_wide.png"), cv2.resize(part, (600, 150)))  # a wide frame of the same part
    video = tmp_path / "out.avi"
    check(invoke(["--source", str(folder), "--save", str(video)]), ExitCode.OK, error_lines=0)
    cap = cv2.VideoCapture(str(video))
    frames = []
    while (got := cap.read())[0]:
        frames.append(got[1])
    cap.release()
    assert len(frames) == 3 and min(frames[0].shape[:2]) >= 240
    wide = frames[2]  # letterboxed: black bands above and below, the picture between them
    h = wide.shape[0]
    assert wide[: h // 4 - 10].max() < 40 and wide[h // 2 - 5 : h // 2 + 5].mean() > 60


def test_a_tiny_picture_is_saved_large_enough_to_read_its_verdict(tmp_path, tiny_model):
    """A 17x9 or 1x1 part picture was saved as a 17x9 or 1x1 JPEG: a coloured blot, the label and score cut off.
    It is grown, pixels kept sharp, to 120 pixels its least side, the label drawn on top in white."""
    import cv2
    import numpy as np

    folder = tmp_path / "parts"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_strip.png"), np.full((9, 17), 10, np.uint8))
    cv2.imwrite(str(folder / "b_dot.png"), np.full((1, 1), 140, np.uint8))  # defective, darker than the letters
    recs = check(invoke(["--model", str(tiny_model), "--source", str(folder), "--save", str(tmp_path / "out"),
                         "--json"]), ExitCode.OK, error_lines=0)  # fmt: skip
    assert [r["label"] for r in recs] == ["ok", "defective"]
    saved = [cv2.imread(str(p)) for p in sorted((tmp_path / "out").glob("*.jpg"))]
    assert [s.shape for s in saved] == [(120, 227, 3), (120, 120, 3)]
    for picture in saved:
        label = picture[:30, :100]  # its box of colour, filled: the part does not show through it
        assert (label.min(axis=2) > 150).sum() > 20  # the label's white letters are there to read


def test_a_run_that_saves_nothing_leaves_no_save_folder_it_made(tmp_path):
    """A video without a frame (exit 5) with ``--save newdir`` left an empty newdir; ``--save a/b/new.avi`` a/b."""
    import cv2

    video = tmp_path / "in" / "empty.avi"
    video.parent.mkdir()
    cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64)).release()
    for save in (tmp_path / "newdir", tmp_path / "a" / "b" / "new.avi"):
        result = invoke(["--source", str(video), "--save", str(save)])
        assert result.exit_code == ExitCode.SOURCE_UNAVAILABLE, result.output
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    (tmp_path / "kept").mkdir()  # a folder that was there before the run stays
    invoke(["--source", str(video), "--save", str(tmp_path / "kept")])
    assert (tmp_path / "kept").is_dir()


def test_a_folder_saved_as_a_video_keeps_one_frame_per_record(tmp_path, tiny_model):
    """An unreadable file got a record but no frame: a folder of 19 items made a 14-frame video, so the frames no
    longer lined up with the records (a video source already got a grey frame naming the error)."""
    import cv2

    folder = tmp_path / "parts"
    write_parts(folder, GOOD_LEVELS)
    (folder / "part_01b.png").write_bytes(b"not a picture")
    result = invoke(["--model", str(tiny_model), "--source", str(folder), "--save", str(tmp_path / "out.avi")])
    recs = check(result, ExitCode.OK, error_lines=0)
    cap = cv2.VideoCapture(str(tmp_path / "out.avi"))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert len(recs) == 3 and sum(r["error"] is not None for r in recs) == 1 and frames == 3
    saved = invoke(["--model", str(tiny_model), "--source", str(folder), "--save", str(tmp_path / "pics")])
    check(saved, ExitCode.OK, error_lines=0)
    assert len(list((tmp_path / "pics").glob("*.jpg"))) == 2  # a folder of pictures keeps one per readable item
    # an unreadable first file: its grey frame is drawn at the first picture's size (its 640x480 frame had set
    # the video's size, and every part after it was letterboxed into that)
    (folder / "part_01b.png").rename(folder / "a_first.png")
    result = invoke(["--model", str(tiny_model), "--source", str(folder), "--save", str(tmp_path / "first.avi")])
    check(result, ExitCode.OK, error_lines=0)
    cap = cv2.VideoCapture(str(tmp_path / "first.avi"))
    frames, first = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.read()[1]
    cap.release()
    assert frames == 3 and first.shape[:2] == (240, 240)  # the parts' 48 px, grown to the 240 px least side
    # no picture at all (every file unreadable, or --max-frames 1 on an unreadable first file): the grey frames
    # still make the video, at 640x480 (no video was made, and an old one of that name looked like this run's)
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("a.png", "b.png"):
        (bad / name).write_bytes(b"not a picture")
    for source, extra, count in ((bad, [], 2), (folder, ["--max-frames", "1"], 1)):
        out = tmp_path / f"none-{count}.avi"
        result = invoke(["--model", str(tiny_model), "--source", str(source), "--save", str(out), *extra])
        assert result.exit_code in (ExitCode.OK, ExitCode.BAD_DATA), result.output
        cap = cv2.VideoCapture(str(out))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == count and cap.read()[1].shape[:2] == (480, 640)
        cap.release()


@pytest.mark.parametrize("target", ["sv", "a.avi"])
def test_a_save_folder_or_video_deleted_during_the_run_is_told(tmp_path, target):
    """`rm -rf sv` under a run: the folder was made again in silence for the pictures after it (2448 of 3000
    there, exit 0); `rm a.mp4`: "the saved video holds 0 of 3000 frames (a full disk ...)"."""
    import shutil

    import cv2
    import numpy as np

    from edge_runtime.annotate import Saver
    from edge_runtime.errors import OutputError

    path = tmp_path / target
    saver = Saver(path, fps=10)
    picture = np.full((64, 64, 3), 128, np.uint8)
    for i in range(3):
        saver.write(picture, name=f"p{i}.png")
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    for i in range(3, 5):
        saver.write(picture, name=f"p{i}.png")
    if path.suffix:
        with pytest.raises(OutputError, match="deleted during the run; the saved video was written back"):
            saver.close()
        cap = cv2.VideoCapture(str(path))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
        cap.release()
    else:
        # the 2 there are those saved after the deletion (it said "with the pictures saved before that (2 of 5
        # are there now)", which read as the first two kept)
        with pytest.raises(OutputError, match=r"deleted during the run, and with it the first 3 of the 5 annotated "
                                              r"pictures saved \(the 2 saved after it are there now"):  # fmt: skip
            saver.close()
    kept = Saver(tmp_path / f"kept{path.suffix}", fps=10)  # one left alone closes as before
    kept.write(picture, name="p.png")
    kept.close()


def test_container_lengths_of_live_recordings_and_padded_files(tmp_path):
    """A live-recorded Matroska/WebM (Segment of unknown size) cut in half passed the gate with no word: its
    Clusters' own sizes tell the cut, or where those are unknown too, their blocks'. A complete file with a few bytes
    of padding, or text, after its last box or Cluster was called truncated."""
    from edge_runtime.container_length import missing_bytes

    def element(eid: bytes, payload: bytes) -> bytes:
        return eid + bytes([0x80 | len(payload)]) + payload  # a one-byte size: payloads under 127 bytes

    header = element(b"\x1a\x45\xdf\xa3", element(b"\x42\x82", b"matroska"))
    live = header + b"\x18\x53\x80\x67" + b"\x01\xff\xff\xff\xff\xff\xff\xff"  # a Segment of unknown size
    live += element(b"\x1f\x43\xb6\x75", bytes(100)) + element(b"\x1f\x43\xb6\x75", bytes(100))  # two Clusters
    cases = {"live.mkv": (live, 0), "cut.mkv": (live[:-60], 60), "cut_early.mkv": (live[:-85], 85),
             "padded.mkv": (live + bytes(5), 0)}  # fmt: skip
    # a browser's recorder leaves the Clusters' size unknown too: their blocks (SimpleBlock, A3) have sizes
    unknown_cluster = b"\x1f\x43\xb6\x75\x01\xff\xff\xff\xff\xff\xff\xff" + element(b"\xa3", bytes(100))
    browser = live[: len(header) + 12] + unknown_cluster * 2
    cases |= {"browser.webm": (browser, 0), "cut_browser.webm": (browser[:-50], 50)}
    box = (24).to_bytes(4, "big") + b"ftyp" + b"isom" + bytes(12)
    mdat = (40).to_bytes(4, "big") + b"mdat" + bytes(32)
    cases |= {"ok.mp4": (box + mdat, 0), "pad4.mp4": (box + mdat + bytes(4), 0), "cut.mp4": (box + mdat[:-10], 10),
              "signed.mp4": (box + mdat + b"END OF RECORDING", None)}  # text after the last box: not a box  # fmt: skip
    # an AVI's RIFF chunks (OpenDML: 'AVIX' after the first); FFmpeg writing to a pipe leaves the size 0xFFFFFFFF
    riff = b"RIFF" + (36).to_bytes(4, "little") + b"AVI " + bytes(32)
    avix = b"RIFF" + (20).to_bytes(4, "little") + b"AVIX" + bytes(16)
    piped = b"RIFF" + b"\xff" * 4 + b"AVI " + bytes(32)
    cases |= {"ok.avi": (riff + avix, 0), "cut.avi": (riff + avix[:-7], 7), "cut_first.avi": (riff[:20], 24),
              "piped.avi": (piped, None)}  # fmt: skip
    for name, (data, missing) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert missing_bytes(tmp_path / name) == missing, name


def test_a_saved_video_renamed_during_the_run_is_left_where_it_went(tmp_path):
    """`mv s.mp4 s_ren.mp4` under a run: s_ren.mp4 held all 100 frames, yet the run ended exit 7 with "s.mp4: the
    saved video holds 0 of 100 frames (a full disk ...)", reading the frame count back under the old name."""
    import cv2
    import numpy as np

    from edge_runtime.annotate import Saver
    from edge_runtime.run_outputs import check_saved_video

    path = tmp_path / "s.avi"
    saver = Saver(path, fps=10)
    for i in range(6):
        saver.write(np.full((64, 64, 3), 40 * i, np.uint8), name=f"p{i}.png")
        if i == 2:
            path.rename(tmp_path / "s_ren.avi")
    saver.close()
    check_saved_video(saver)  # no error: nothing was lost
    cap = cv2.VideoCapture(str(tmp_path / "s_ren.avi"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6 and not path.exists()
    cap.release()


def test_a_saved_video_deleted_while_another_run_takes_its_name_is_written_back_beside_it(tmp_path):
    """`rm sv.mp4` and a second run saving a new sv.mp4: the first run's 8610 frames were lost ("could not be
    written back (File exists)")."""
    import cv2
    import numpy as np

    from edge_runtime.annotate import Saver
    from edge_runtime.errors import OutputError
    from edge_runtime.run_outputs import check_saved_video

    path = tmp_path / "sv.avi"
    saver = Saver(path, fps=10)
    for i in range(5):
        saver.write(np.full((64, 64, 3), 40 * i, np.uint8), name=f"p{i}.png")
        if i == 1:
            path.unlink()
            path.write_bytes(b"another run's video")
    with pytest.raises(OutputError, match=r"written back to .*sv\.recovered-\d+\.avi"):
        saver.close()
    check_saved_video(saver)  # counted where the frames went, not under the taken name
    (back,) = tmp_path.glob("sv.recovered-*.avi")
    cap = cv2.VideoCapture(str(back))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5 and path.read_bytes() == b"another run's video"
    cap.release()


def test_pictures_deleted_from_a_save_folder_that_survives_are_told(tmp_path):
    """`rm -rf sv` racing a run failed on the folder ("Directory not empty") but took 1125 of 1435 pictures: exit 0,
    no word."""
    import numpy as np

    from edge_runtime.annotate import Saver
    from edge_runtime.errors import OutputError

    saver = Saver(tmp_path / "sv", fps=10)
    for i in range(5):
        saver.write(np.full((64, 64, 3), 128, np.uint8), name=f"p{i}.png")
    for picture in sorted((tmp_path / "sv").glob("*.jpg"))[:3]:
        picture.unlink()
    with pytest.raises(OutputError, match="3 of the 5 annotated pictures saved were deleted during the run"):
        saver.close()


def test_a_save_folder_renamed_during_the_run_keeps_every_picture(tmp_path):
    """`mv pics pics_old` under a run: the pictures before the rename stayed in pics_old, the later ones went to a new
    pics made under the old name (3256 and 3377 of 6633 pictures), exit 0 without a word. The held folder gets them
    all, wherever it went."""
    import numpy as np

    from edge_runtime.annotate import Saver

    path = tmp_path / "pics"
    saver = Saver(path, fps=10)
    for i in range(6):
        saver.write(np.full((64, 64, 3), 40 * i, np.uint8), name=f"p{i}.png", number=i + 1)
        if i == 2:
            path.rename(tmp_path / "pics_old")
    saver.close()  # no error: nothing was lost
    assert sorted(p.name for p in (tmp_path / "pics_old").iterdir()) == [f"{i + 1:06d}_p{i}.jpg" for i in range(6)]
    assert not path.exists()


def test_a_legal_long_file_name_is_saved_under_a_shortened_name(tmp_path):
    """A 245-byte file name (legal) with `--save DIR`: `000001_<name>.jpg` passed the 255-byte limit, the run stopped
    there with exit 7 and the items after it were never judged."""
    import numpy as np

    from edge_runtime.annotate import Saver

    saver = Saver(tmp_path / "sv", fps=10)
    long_ascii, long_utf8 = "a" * 245 + ".jpeg", "é" * 125 + ".png"  # 245 and 250 bytes
    picture = np.full((32, 32, 3), 90, np.uint8)
    for number, name in enumerate((long_ascii, long_utf8, "a" * 246 + ".jpeg", "short.png"), start=1):
        saver.write(picture, name=name, number=number)
    saver.close()
    names = sorted(p.name for p in (tmp_path / "sv").iterdir())
    assert len(names) == 4 and names[-1] == "000004_short.jpg"
    assert all(len(os.fsencode(n)) <= 255 and n.endswith(".jpg") for n in names)
    assert names[0].startswith("000001_aaaa") and names[1].startswith("000002_éé")
    assert all(os.fsencode(n).decode("utf-8") for n in names)  # cut between characters (half an 'é' was left)
    assert saver.earlier_pictures() == 4  # counted as this run's pictures


def test_a_saved_video_on_a_full_disk_stops_the_run_at_once(tmp_path, monkeypatch):
    """OpenCV's video writer fails in silence: a --save video on a full disk ran on for the whole run (13 s on a
    live camera), said "holds 0 of 300 frames" only at its end, and the MP4 was unreadable. A folder's save had
    stopped at once."""
    import os
    from types import SimpleNamespace

    import numpy as np

    from edge_runtime import annotate
    from edge_runtime.errors import OutputError

    saver = annotate.Saver(tmp_path / "run.avi")
    picture = np.full((64, 64, 3), 90, np.uint8)
    saver.write(picture, name="a.png")  # room enough: saved
    full = SimpleNamespace(f_bavail=0, f_bfree=0, f_frsize=4096)
    monkeypatch.setattr(annotate.os, "statvfs", lambda path: full)
    with pytest.raises(OutputError, match=r"the disk is full \(0 bytes left\), so the saved video stops at frame 31"):
        for _ in range(annotate.FULL_DISK_EVERY):
            saver.write(picture, name="a.png")
    monkeypatch.setattr(annotate.os, "statvfs", os.statvfs)
    saver.close()


@pytest.mark.parametrize("suffix", [".avi", ".mp4", ".mkv"])
def test_a_saved_video_stops_while_the_disk_still_holds_it_whole(tmp_path, monkeypatch, suffix):
    """A disk that fills during a --save video: checked every 30 frames with 64 KiB to spare, the frames the writer
    held in memory (256 KiB at a time) filled it first. The run said "the saved video stops at frame 31", and the
    AVI held 7 frames, the MP4 none it could play. Here the disk holds 700 KB: the video, finished, must fit in it
    and hold every frame the run counted."""
    from types import SimpleNamespace

    import cv2

    from edge_runtime import annotate
    from edge_runtime.errors import OutputError
    from edge_runtime.opencv_paths import video_frame_count

    target, disk = tmp_path / f"run{suffix}", 700_000
    parts = sorted((Path(annotate.__file__).parent / "samples").rglob("*.jpeg"))
    pictures = [cv2.resize(cv2.imread(str(p)), (300, 300)) for p in parts]
    real_statvfs = os.statvfs

    def this_disk(path):  # the room a disk of `disk` bytes has left, with the video the only file on it
        size = target.stat().st_size if target.exists() else 0
        return SimpleNamespace(f_bavail=max(0, disk - size) // 4096, f_bfree=max(0, disk - size) // 4096, f_frsize=4096)

    saver = annotate.Saver(target)
    monkeypatch.setattr(annotate.os, "statvfs", this_disk)
    with pytest.raises(OutputError, match=r"the disk is (nearly )?full \(\d+ bytes left\), so the saved video stops"):
        for i in range(1000):
            saver.write(pictures[i % len(pictures)], name="a.png")
    monkeypatch.setattr(annotate.os, "statvfs", real_statvfs)
    saver.close()
    assert target.stat().st_size <= disk, "the finished video did not fit on the disk"
    assert video_frame_count(target) == saver.count > 10
