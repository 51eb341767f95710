"""The fault suite: bad images, special files, bad models and metadata, bad sources and options.

For every case edge-infer must give a documented exit code, no traceback, at most one ``error:`` line, and --
when it runs -- exactly one record per entry that looks like an image. Run in-process (click's CliRunner);
signals and closed/full stdout are in test_faults_process.py.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edge_runtime.cli import main
from edge_runtime.errors import ExitCode
from tests.edge_runtime import fault_cases as fc
from tests.edge_runtime.conftest import MODELS, model_bytes, with_metadata, write_parts

GOOD_LEVELS = [10, 220]  # one ok, one defective with the tiny model
HANG_LIMIT_S = 60


@pytest.fixture(autouse=True)
def no_hang():
    """Fail a case that takes longer than HANG_LIMIT_S instead of hanging the suite (a blocked read included)."""

    def expired(signum, frame):
        raise TimeoutError(f"fault case still running after {HANG_LIMIT_S} s: a hang")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, HANG_LIMIT_S)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def invoke(args: list[str], *, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, [*args, "--json"], env=env)


def check(result: Result, code: int, *, error_lines: int) -> list[dict]:
    """The common promises; returns the records (stdout must be pure JSON lines)."""
    text = result.stdout + result.stderr
    assert result.exit_code == code, (result.exit_code, result.stderr[-800:])
    assert "Traceback" not in text, text[-2000:]
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == error_lines, result.stderr
    if error_lines and code not in (ExitCode.OUTPUT_ERROR,):
        assert result.stderr.strip().splitlines()[-1] == errors[0]
        # no summary after a setup error; every item unreadable (exit 3) ends its summary with the line
        assert "summary:" not in result.stderr or errors[0].startswith("error: no verdict:")
    return [json.loads(line) for line in result.stdout.splitlines()]


def image_case(tmp_path: Path, name: str, writer: fc.Writer, tiny_model: Path) -> None:
    """One bad entry among two good images: three records, the run goes on, exit 0."""
    folder = tmp_path / "parts"
    write_parts(folder, GOOD_LEVELS)
    writer(folder / f"bad_{name}")
    recs = check(invoke(["--model", str(tiny_model), "--source", str(folder)]), ExitCode.OK, error_lines=0)
    assert len(recs) == 3
    bad = next(r for r in recs if Path(r["source"]).name.startswith("bad_"))
    assert bad["error"] is None or (bad["label"] is None and bad["score"] is None and bad["source"] in bad["error"])
    if bad["error"] is None:
        assert 0.0 <= bad["score"] <= 1.0 and bad["label"] in ("ok", "defective")
    good = sorted((r for r in recs if r is not bad), key=lambda r: r["source"])
    assert [r["defective"] for r in good] == [False, True]


def _ids(cases: list[tuple]) -> list[str]:
    return [c[0] for c in cases]


HUGE = fc.huge_header_cases()
TRUNCATED = fc.truncated_cases()
BITFLIPS = fc.bitflip_cases()
JUNK = fc.junk_cases()
ODD = fc.odd_but_valid_cases()


@pytest.mark.parametrize(("case", "name", "writer"), HUGE, ids=_ids(HUGE))
def test_huge_or_nonsense_header_is_an_item_error(tmp_path, tiny_model, case, name, writer):
    folder = tmp_path / "parts"
    write_parts(folder, GOOD_LEVELS)
    writer(folder / f"bad_{name}")
    recs = check(invoke(["--model", str(tiny_model), "--source", str(folder)]), ExitCode.OK, error_lines=0)
    bad = next(r for r in recs if Path(r["source"]).name.startswith("bad_"))
    assert len(recs) == 3 and bad["error"] and bad["score"] is None


@pytest.mark.parametrize(("case", "name", "writer"), TRUNCATED + BITFLIPS + JUNK, ids=_ids(TRUNCATED + BITFLIPS + JUNK))
def test_damaged_image_never_stops_the_run(tmp_path, tiny_model, case, name, writer):
    image_case(tmp_path, name, writer, tiny_model)


@pytest.mark.parametrize(("case", "name", "writer"), ODD, ids=_ids(ODD))
def test_odd_but_valid_image_gets_a_verdict(tmp_path, tiny_model, case, name, writer):
    folder = tmp_path / "parts"
    folder.mkdir()
    writer(folder / name)
    recs = check(invoke(["--model", str(tiny_model), "--source", str(folder)]), ExitCode.OK, error_lines=0)
    assert len(recs) == 1 and recs[0]["error"] is None


SPECIAL = fc.special_entry_cases(Path("/tmp"))


@pytest.mark.parametrize(("case", "name", "writer"), SPECIAL, ids=_ids(SPECIAL))
def test_special_entry_gets_an_error_record_and_never_blocks(tmp_path, tiny_model, case, name, writer):
    folder = tmp_path / "parts"
    write_parts(folder, GOOD_LEVELS)
    writer(folder / f"bad_{name}")
    recs = check(invoke(["--model", str(tiny_model), "--source", str(folder)]), ExitCode.OK, error_lines=0)
    bad = [r for r in recs if Path(r["source"]).name.startswith("bad_")]
    assert len(recs) == 3 and len(bad) == 1 and bad[0]["error"]
    # the same entry given alone, as the whole source, is one error record and exit 3 (nothing readable)
    recs = check(
        invoke(["--model", str(tiny_model), "--source", str(folder / f"bad_{name}")]), 3, error_lines=1
    )  # exit 3 says so in one line
    assert len(recs) == 1 and recs[0]["error"]


def test_directory_link_loops_are_not_followed(tmp_path, tiny_model):
    folder = tmp_path / "parts"
    write_parts(folder, [10])
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to(folder)
    (folder / "sub" / "self").symlink_to(folder / "sub")
    (folder / "sub" / "loop.png").symlink_to(folder / "sub" / "loop.png")
    result = invoke(["--model", str(tiny_model), "--source", str(folder)])
    recs = check(result, ExitCode.OK, error_lines=0)
    assert sorted(Path(r["source"]).name for r in recs) == ["loop.png", "part_00.png"]
    assert "2 links to folders not followed" in result.stderr
    glob_recs = check(invoke(["--model", str(tiny_model), "--source", f"{folder}/**/*.png"]), 0, error_lines=0)
    assert sorted(Path(r["source"]).name for r in glob_recs) == ["loop.png", "part_00.png"]


# ---------------------------------------------------------------------------------------------------- models

BAD_MODEL_FILES = sorted(p.name for p in MODELS.glob("bad_*.onnx"))


@pytest.mark.parametrize("name", BAD_MODEL_FILES)
def test_model_that_breaks_the_contract_is_refused_at_load(tmp_path, name):
    write_parts(tmp_path / "parts", GOOD_LEVELS)
    result = invoke(["--model", str(MODELS / name), "--source", str(tmp_path / "parts")])
    assert check(result, ExitCode.BAD_MODEL, error_lines=1) == []
    assert name in result.stderr


@pytest.mark.parametrize(("case", "text"), fc.bad_metadata_cases(), ids=_ids(fc.bad_metadata_cases()))
def test_bad_metadata_is_exit_4(tmp_path, case, text):
    write_parts(tmp_path / "parts", GOOD_LEVELS)
    model = tmp_path / "m.onnx"
    model.write_bytes(with_metadata(model_bytes(), text))
    result = invoke(["--model", str(model), "--source", str(tmp_path / "parts")])
    assert check(result, ExitCode.BAD_MODEL, error_lines=1) == []
    assert len(result.stderr) < 600


@pytest.mark.parametrize(("case", "data"), fc.damaged_model_cases(), ids=_ids(fc.damaged_model_cases()))
def test_damaged_model_file_is_exit_4(tmp_path, case, data):
    write_parts(tmp_path / "parts", GOOD_LEVELS)
    model = tmp_path / "m.onnx"
    model.write_bytes(data)
    check(invoke(["--model", str(model), "--source", str(tmp_path / "parts")]), ExitCode.BAD_MODEL, error_lines=1)


@pytest.mark.parametrize("kind", ["folder", "fifo", "dev-zero", "missing", "dangling"])
def test_model_path_that_is_not_a_file_is_exit_4(tmp_path, kind):
    write_parts(tmp_path / "parts", GOOD_LEVELS)
    model = tmp_path / "m.onnx"
    {
        "folder": lambda: model.mkdir(),
        "fifo": lambda: __import__("os").mkfifo(model),
        "dev-zero": lambda: model.symlink_to("/dev/zero"),
        "missing": lambda: None,
        "dangling": lambda: model.symlink_to(tmp_path / "gone.onnx"),
    }[kind]()
    check(invoke(["--model", str(model), "--source", str(tmp_path / "parts")]), ExitCode.BAD_MODEL, error_lines=1)


def test_nan_scores_are_item_errors_and_a_gate_never_passes_them(tmp_path):
    write_parts(tmp_path / "parts", [10, 200, 250])
    args = ["--model", str(MODELS / "nan_scores.onnx"), "--source", str(tmp_path / "parts")]
    recs = check(invoke(args), ExitCode.BAD_DATA, error_lines=1)  # every item unreadable -> 3, one error line
    assert len(recs) == 3 and all(r["error"] and "not a probability" in r["error"] for r in recs)
    assert all(r["label"] is None and r["defective"] is None for r in recs)
    check(invoke([*args, "--fail-on-defect"]), ExitCode.DEFECT_FOUND, error_lines=0)


def test_fixed_batch_1_model_runs_item_by_item(tmp_path):
    write_parts(tmp_path / "parts", [10, 200, 30, 240, 50])
    args = ["--model", str(MODELS / "tiny_batch1.onnx"), "--source", str(tmp_path / "parts")]
    recs = check(invoke(args), ExitCode.OK, error_lines=0)
    assert [r["defective"] for r in recs] == [False, True, False, True, False]


def test_two_output_model_declared_in_metadata_runs(tmp_path):
    write_parts(tmp_path / "parts", [10, 200])
    recs = check(
        invoke(["--model", str(MODELS / "tiny_map.onnx"), "--source", str(tmp_path / "parts")]), 0, error_lines=0
    )
    assert [r["defective"] for r in recs] == [False, True]


# ------------------------------------------------------------------------------------------ sources, options


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("missing-path", ExitCode.BAD_DATA),
        ("empty-folder", ExitCode.BAD_DATA),
        ("only-notes", ExitCode.BAD_DATA),
        ("glob-no-match", ExitCode.BAD_DATA),
        ("fifo-video", ExitCode.SOURCE_UNAVAILABLE),
        ("dev-zero-video", ExitCode.SOURCE_UNAVAILABLE),
        ("random-video", ExitCode.SOURCE_UNAVAILABLE),
        ("empty-video", ExitCode.SOURCE_UNAVAILABLE),
    ],
)
def test_bad_source_is_one_line_with_its_code(tmp_path, tiny_model, case, code):
    import os

    p = tmp_path / "src"
    if case == "empty-folder":
        p.mkdir()
    elif case == "only-notes":
        p.mkdir()
        (p / "notes.txt").write_text("x")
    elif case == "glob-no-match":
        p = tmp_path / "*.nothing"
    elif case == "fifo-video":
        p = tmp_path / "v.mp4"
        os.mkfifo(p)
    elif case == "dev-zero-video":
        p = tmp_path / "v.mp4"
        p.symlink_to("/dev/zero")
    elif case == "random-video":
        p = tmp_path / "v.mp4"
        p.write_bytes(os.urandom(4000))
    elif case == "empty-video":
        p = tmp_path / "v.avi"
        p.write_bytes(b"")
    check(invoke(["--model", str(tiny_model), "--source", str(p)]), code, error_lines=1)


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--threads", "0"], None),
        (["--threads", "512"], None),
        (["--threads", "abc"], None),
        ([], {"DEFECT_EDGE_THREADS": "abc"}),
        ([], {"DEFECT_EDGE_THREADS": "0"}),
        ([], {"DEFECT_EDGE_THREADS": "-3"}),
        ([], {"DEFECT_EDGE_THREADS": "100000"}),
        ([], {"DEFECT_EDGE_THREADS": "1.5"}),
        (["--batch-size", "0"], None),
        (["--batch-size", "100000"], None),
        (["--workers", "0"], None),
        (["--max-frames", "0"], None),
        (["--max-reconnects", "-1"], None),
        (["--read-timeout", "nan"], None),  # exit 5 at the stream's open: "cannot convert float NaN to integer"
        (["--read-timeout", "0.1"], None),
        (["--provider", "npu"], None),
        (["--nonsense"], None),
    ],
)
def test_bad_setting_is_exit_2(tmp_path, tiny_model, args, env):
    write_parts(tmp_path / "parts", [10])
    result = invoke(["--model", str(tiny_model), "--source", str(tmp_path / "parts"), *args], env=env)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "Traceback" not in result.output
    if env:
        assert "DEFECT_EDGE_THREADS" in result.stderr and "use 1.." in result.stderr


@pytest.mark.parametrize("case", ["is-folder", "in-proc", "locked"])  # a .txt suffix: exit 2 (test_output_json)
def test_output_that_cannot_be_written_is_exit_7(tmp_path, tiny_model, case):
    import fcntl

    write_parts(tmp_path / "parts", [10])
    out = {
        "is-folder": tmp_path / "dir.jsonl",
        "in-proc": Path("/proc/defect-edge/v.jsonl"),
        "locked": tmp_path / "v.jsonl",
    }[case]
    if case == "is-folder":
        out.mkdir()
    holder = None
    if case == "locked":
        holder = open(out, "w")  # noqa: SIM115 - held for the test
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        holder.write('{"earlier": "line"}\n')
        holder.flush()
    try:
        result = invoke(["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--output", str(out)])
        if case == "is-folder":  # click refuses it as a bad option value
            assert result.exit_code == ExitCode.USAGE and "is a directory" in result.stderr
            return
        check(result, ExitCode.OUTPUT_ERROR, error_lines=1)
        if case == "locked":
            assert "another process" in result.stderr and out.read_text() == '{"earlier": "line"}\n'
    finally:
        if holder:
            holder.close()


def test_output_on_a_full_disk_is_exit_7_with_the_summary(tmp_path, tiny_model):
    write_parts(tmp_path / "parts", [10, 200])
    out = tmp_path / "v.jsonl"
    out.symlink_to("/dev/full")
    result = invoke(["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--output", str(out)])
    check(result, ExitCode.OUTPUT_ERROR, error_lines=1)
    assert "summary: 0 items" in result.stderr and "No space left" in result.stderr


@pytest.mark.parametrize("what", ["summary", "save-to-device"])
def test_summary_or_video_that_cannot_be_written_is_exit_7(tmp_path, tiny_model, what):
    write_parts(tmp_path / "parts", [10, 200])
    if what == "summary":  # a folder that cannot be made: found before the run (it was found after all the work)
        target = Path("/proc/defect-edge/s.json")
    else:  # a device (or FIFO) would block or swallow the video writer: refused before anything runs
        target = tmp_path / "v.avi"
        target.symlink_to("/dev/full")
    flag = "--summary" if what == "summary" else "--save"
    result = invoke(["--model", str(tiny_model), "--source", str(tmp_path / "parts"), flag, str(target)])
    recs = check(result, ExitCode.OUTPUT_ERROR, error_lines=1)
    if what == "summary":
        assert recs == [] and "cannot write the summary here" in result.stderr
    else:
        assert recs == [] and "FIFO or device" in result.stderr


@pytest.mark.parametrize(
    ("case", "flag"),
    [("video", "--save"), ("video", "--summary"), ("image", "--summary"), ("folder-image", "--summary"),
     ("not-a-video", "--output")],
)  # fmt: skip
def test_an_output_never_overwrites_an_input(tmp_path, tiny_model, case, flag):
    """``--save line3.avi --source line3.avi`` replaced the video being inspected with its annotated copy."""
    import numpy as np

    from tests.edge_runtime.test_cli import write_video

    parts = write_parts(tmp_path / "parts", [10, 200])
    if case == "video":
        source = target = write_video(tmp_path / "v.avi", [np.full((32, 32), 9 * i, np.uint8) for i in range(3)])
    elif case == "image":
        source = target = parts[0]
    elif case == "folder-image":
        source, target = tmp_path / "parts", parts[1]
    else:  # any existing file is tried as a video: the --output sink truncated it before the video failed
        source = target = tmp_path / "notes.jsonl"
        source.write_text('{"keep": 1}\n')
    before = target.read_bytes()
    result = invoke(["--model", str(tiny_model), "--source", str(source), flag, str(target)])
    recs = check(result, ExitCode.OUTPUT_ERROR, error_lines=1)
    assert recs == [] and f"{flag} names an input of this run" in result.stderr
    assert target.read_bytes() == before


@pytest.mark.parametrize(
    "pair", [("--output", "--summary"), ("--log", "--output"), ("--log", "--summary"), ("--output", "--save")]
)
def test_two_outputs_on_one_file_are_refused_before_any_work(tmp_path, tiny_model, pair):
    """``--output r.jsonl --summary r.jsonl``: the summary replaced every record; ``--log`` and ``--output`` on
    one file interleaved SQLite pages and records."""
    write_parts(tmp_path / "parts", [10, 200])
    target = tmp_path / "r.csv"
    args = ["--model", str(tiny_model), "--source", str(tmp_path / "parts")]
    result = invoke([*args, pair[0], str(target), pair[1], f"{tmp_path}/./r.csv"])
    recs = check(result, ExitCode.OUTPUT_ERROR, error_lines=1)
    assert recs == [] and f"{pair[0]} and {pair[1]} name the same file" in result.stderr
    assert not target.exists()


@pytest.mark.parametrize("case", ["mov", "jpg", "folder-named-mp4", "source-folder"])
def test_save_that_would_go_wrong_is_refused_before_any_work(tmp_path, tiny_model, case):
    """``--save out.mov`` silently became a folder named out.mov; ``--save DIR.mp4`` (an existing folder) failed
    after the first item; ``--save`` onto the source folder mixed annotated pictures into the inputs."""
    write_parts(tmp_path / "parts", [10, 200])
    target = {"mov": tmp_path / "out.mov", "jpg": tmp_path / "out.jpg", "folder-named-mp4": tmp_path / "d.mp4",
              "source-folder": tmp_path / "parts"}[case]  # fmt: skip
    if case == "folder-named-mp4":
        target.mkdir()
    result = invoke(["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--save", str(target)])
    usage = case in ("mov", "jpg")
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


def test_non_utf8_file_names_reach_every_output(tmp_path, tiny_model):
    import csv
    import os

    folder = tmp_path / "parts"
    write_parts(folder, [10, 200])
    raw = os.fsencode(folder) + b"/caf\xe9_\xff.png"
    os.rename(folder / "part_00.png", raw)
    for out in ("v.csv", "v.jsonl"):
        result = invoke(["--model", str(tiny_model), "--source", str(folder), "--output", str(tmp_path / out)])
        recs = check(result, ExitCode.OK, error_lines=0)
        assert len(recs) == 2 and all(r["error"] is None for r in recs)
    assert b"caf\xe9_\xff.png" in (tmp_path / "v.csv").read_bytes()  # the name's own bytes
    rows = list(csv.reader((tmp_path / "v.csv").open(encoding="utf-8", errors="surrogateescape", newline="")))
    assert len(rows) == 3
    lines = [json.loads(x) for x in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert os.fsencode(lines[0]["source"]) == raw
    human = CliRunner().invoke(main, ["--model", str(tiny_model), "--source", str(folder)])
    assert human.exit_code == 0 and "caf" in human.stdout


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
    assert json.loads(summary.read_text())["cut_short"] == 0 and "gate: not passed" not in whole.stderr
    # a run that stops before the break (--max-frames) is not told of it, and its gate is not failed by it
    three = ["--max-frames", "3", "--batch-size", "1", "--summary", str(summary)]  # batches of 1: no frame read ahead
    first = invoke(["--model", str(tiny_model), "--source", str(cut), *three])
    assert json.loads(summary.read_text())["cut_short"] == 0 and "stopped at frame" not in first.stderr


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


def test_check_station_refuses_the_options_of_a_run(tmp_path, tiny_model):
    write_parts(tmp_path / "parts", GOOD_LEVELS)
    for extra in (["--log", str(tmp_path / "s.db")], ["--source", str(tmp_path / "parts")], ["--heatmap"]):
        result = CliRunner().invoke(main, ["--model", str(tiny_model), "--check-station", str(tmp_path), *extra])
        assert result.exit_code == ExitCode.USAGE and extra[0] in result.output, (extra, result.output)
    assert not (tmp_path / "s.db").exists()  # was: exit 0 with no log, the user believing there was one


def test_corrupt_jpeg_is_flagged_and_counted(tmp_path, tiny_model):
    from tests.conftest import REPO

    folder = tmp_path / "parts"
    write_parts(folder, [10])
    data = bytearray((REPO / "edge_runtime/samples/test/def_front/cast_def_0_3446.jpeg").read_bytes())
    data[1388] ^= 0x10  # one flipped bit: libjpeg conceals it ("Corrupt JPEG data") and decodes the rest
    (folder / "flipped.jpg").write_bytes(bytes(data))
    result = invoke(["--model", str(tiny_model), "--source", str(folder)])
    recs = check(result, ExitCode.OK, error_lines=0)
    flagged = [r for r in recs if r["warning"]]
    assert len(flagged) == 1 and flagged[0]["source"].endswith("flipped.jpg") and flagged[0]["label"] is not None
    assert "Corrupt JPEG" in flagged[0]["warning"] and "Corrupt JPEG" not in result.stderr.replace("warning", "")
    assert "1 with warnings" in result.stderr
    check(invoke(["--model", str(tiny_model), "--source", str(folder), "--fail-on-defect"]), 10, error_lines=0)


def test_decoder_warnings_belong_to_their_own_image_when_decoding_in_parallel():
    from concurrent.futures import ThreadPoolExecutor

    from edge_runtime.decoding import decode
    from tests.conftest import REPO

    samples = sorted((REPO / "edge_runtime" / "samples").rglob("*.jpeg"))
    good = [p.read_bytes() for p in samples]
    bad = bytearray((REPO / "edge_runtime/samples/test/def_front/cast_def_0_3446.jpeg").read_bytes())
    bad[1388] ^= 0x10
    items = [(bytes(bad), True) if i % 5 == 0 else (good[i % len(good)], False) for i in range(300)]
    with ThreadPoolExecutor(4) as pool:
        flagged = list(pool.map(lambda x: decode(x[0]).warning is not None, items))
    assert flagged == [damaged for _, damaged in items]


def test_summary_onto_a_fifo_or_device_is_refused_and_left_as_it_is(tmp_path, tiny_model):
    """The summary is renamed onto its name: a FIFO or device there became a regular file (as root, /dev/full
    itself, for the whole machine)."""
    import os
    import stat

    write_parts(tmp_path / "parts", GOOD_LEVELS)
    fifo = tmp_path / "summary.fifo"
    os.mkfifo(fifo)
    for target in (fifo, Path("/dev/null")):
        result = invoke(["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--summary", str(target)])
        assert check(result, ExitCode.OUTPUT_ERROR, error_lines=1) == []  # before any work
        assert "not a regular file" in result.stderr and str(target) in result.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_summary_under_an_image_name_is_a_usage_error(tmp_path, tiny_model):
    """``--summary parts/sum.png`` wrote JSON under an image name in the folder inspected: the next run over the
    folder judged it as a part (an unreadable item; exit 10 under a gate)."""
    write_parts(tmp_path / "parts", GOOD_LEVELS)
    result = invoke(["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--summary",
                     str(tmp_path / "parts" / "sum.png")])  # fmt: skip
    assert check(result, ExitCode.USAGE, error_lines=1) == [] and "name it .json" in result.stderr
    assert not (tmp_path / "parts" / "sum.png").exists()


def test_summary_through_a_link_writes_the_links_target(tmp_path, tiny_model):
    write_parts(tmp_path / "parts", GOOD_LEVELS)
    link = tmp_path / "latest.json"
    link.symlink_to("run-7.json")
    result = invoke(["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--summary", str(link)])
    assert len(check(result, ExitCode.OK, error_lines=0)) == 2
    assert link.is_symlink() and json.loads((tmp_path / "run-7.json").read_text())["items"] == 2


def test_an_output_on_the_model_file_is_refused_before_any_work(tmp_path, tiny_model):
    model = tmp_path / "station.onnx"
    model.write_bytes(tiny_model.read_bytes())
    (tmp_path / "latest.csv").symlink_to(model)
    write_parts(tmp_path / "parts", GOOD_LEVELS)
    for opt, target in (("--summary", model), ("--output", tmp_path / "latest.csv")):
        result = invoke(["--model", str(model), "--source", str(tmp_path / "parts"), opt, str(target)])
        assert check(result, ExitCode.OUTPUT_ERROR, error_lines=1) == []
        assert f"{opt} names the model of this run" in result.stderr
    assert model.read_bytes() == tiny_model.read_bytes()  # was: the summary's JSON, and the next run exit 4


def test_a_folder_that_cannot_be_listed_is_an_item_error_not_a_silent_skip(tmp_path, tiny_model, monkeypatch):
    """A subfolder without read permission was passed over in silence: its defective parts never judged, and
    ``--fail-on-defect`` passed (root reads any folder, so the refusal is made here by hand)."""
    import os

    write_parts(tmp_path / "lot" / "a", [10])
    write_parts(tmp_path / "lot" / "b", [220])
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith(os.sep + "b"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    for source in (tmp_path / "lot", f"{tmp_path}/lot/**/*.png"):
        result = invoke(["--model", str(tiny_model), "--source", str(source), "--fail-on-defect"])
        recs = check(result, ExitCode.DEFECT_FOUND, error_lines=0)
        assert [Path(r["source"]).name for r in recs] == ["part_00.png", "b"]
        assert recs[1]["error"].endswith(
            "b: cannot list the folder (Permission denied); the images in it were not inspected"
        )
    result = invoke(["--model", str(tiny_model), "--source", str(tmp_path / "lot" / "b")])
    assert check(result, ExitCode.BAD_DATA, error_lines=1) == [] and "cannot read (Permission denied)" in result.stderr


def test_a_folder_nested_a_thousand_deep_is_listed(tmp_path, tiny_model):
    deep = tmp_path / "lot"
    write_parts(deep, [220])
    levels = [deep]
    for _ in range(1100):  # was: "unexpected RecursionError", exit 1 (pathlib's own mkdir recurses too)
        levels.append(levels[-1] / "d")
        levels[-1].mkdir()
    write_parts(tmp_path / "ok", [10])
    (tmp_path / "ok" / "part_00.png").rename(levels[-1] / "part.png")
    try:
        recs = check(invoke(["--model", str(tiny_model), "--source", str(deep)]), ExitCode.OK, error_lines=0)
        assert sorted(r["defective"] for r in recs) == [False, True]
    finally:  # shutil.rmtree (pytest's clean-up) recurses too: take the levels down from the bottom
        (levels[-1] / "part.png").unlink()
        for level in reversed(levels[1:]):
            level.rmdir()


def test_an_empty_source_is_no_input_not_the_current_folder(tmp_path, tiny_model, monkeypatch):
    write_parts(tmp_path, GOOD_LEVELS)
    monkeypatch.chdir(tmp_path)
    result = invoke(["--model", str(tiny_model), "--source", ""])  # an unset shell variable
    assert check(result, ExitCode.BAD_DATA, error_lines=1) == [] and "--source is empty" in result.stderr


@pytest.mark.parametrize(
    "twice",
    [
        ["--source", "PARTS", "--source", "x.png"],
        ["--camera", "0", "--camera", "1"],
        ["--model", "TINY", "--model", "TINY"],
    ],
)
def test_an_input_option_given_twice_is_a_usage_error(tmp_path, tiny_model, twice):
    """Click kept the last and dropped the first: ``--source bad.jpg --source ok.jpg --fail-on-defect`` passed."""
    write_parts(tmp_path / "parts", GOOD_LEVELS)
    named = {"PARTS": str(tmp_path / "parts"), "TINY": str(tiny_model)}
    args = [named.get(a, a) for a in twice]
    base = [] if "--model" in twice else ["--model", str(tiny_model)]
    base += [] if "--source" in twice or "--camera" in twice else ["--source", str(tmp_path / "parts")]
    result = invoke([*base, *args])
    assert result.exit_code == ExitCode.USAGE and f"'{twice[0]}': given 2 times" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("source", ["video", "camera"])
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_run_that_cannot_open_its_source_leaves_the_last_output_as_it_was(tmp_path, tiny_model, source, suffix):
    """The --output file was emptied before the source was opened: a failed start wiped the last run's records
    (and left its --summary beside an empty file)."""
    write_parts(tmp_path / "parts", GOOD_LEVELS)
    out = tmp_path / f"line3{suffix}"
    first = invoke(["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--output", str(out)])
    check(first, ExitCode.OK, error_lines=0)
    before = out.read_bytes()
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    where = ["--source", str(tmp_path / "broken.mp4")] if source == "video" else ["--camera", "/dev/video97"]
    result = invoke(["--model", str(tiny_model), *where, "--output", str(out)])
    assert check(result, ExitCode.SOURCE_UNAVAILABLE, error_lines=1) == []
    assert out.read_bytes() == before and len(before.splitlines()) == 2 + (suffix == ".csv")


@pytest.mark.parametrize(
    "case",
    ["video-file", "file-url", "file-url-relative", "file-url-missing", "sequence", "file-sequence", "huge-index",
     "empty"],
)  # fmt: skip
def test_a_camera_that_cannot_be_one_is_a_usage_error(tmp_path, tiny_model, case, monkeypatch):
    """A video file given as --camera replayed forever (every "reconnect" opened it again: 258 records for 20
    frames), also as file:///x.avi or file:x.avi, and an image sequence img_%03d.jpg (12 verdicts from 5 images);
    an index beyond a C int gave a page of OpenCV overloads."""
    import numpy as np

    from tests.edge_runtime.test_cli import write_video

    monkeypatch.chdir(tmp_path)
    video = write_video(tmp_path / "line3.avi", [np.full((48, 48), v, np.uint8) for v in (10, 220)])
    write_parts(tmp_path / "seq", [10, 220])
    for i, part in enumerate(sorted((tmp_path / "seq").iterdir())):
        part.rename(tmp_path / "seq" / f"img_{i:03d}{part.suffix}")
    suffix = next((tmp_path / "seq").iterdir()).suffix
    camera = {
        "video-file": str(video),
        "file-url": f"file://{video}",
        "file-url-relative": "file:line3.avi",
        "file-url-missing": "file:///nonexistent/line3.avi",  # exit 5, "cannot open camera"
        "sequence": f"seq/img_%03d{suffix}",
        "file-sequence": f"file:seq/img_%03d{suffix}",  # judged as a live camera, the images again on "reconnect"
        "huge-index": "99999999999999999999",
        "empty": "",
    }[case]
    result = invoke(["--model", str(tiny_model), "--camera", camera])
    assert check(result, ExitCode.USAGE, error_lines=1) == []
    assert {
        "video-file": "is a file, not a camera",
        "file-url": "names a file, not a camera",
        "file-url-relative": "names a file, not a camera",
        "file-url-missing": "names a file, not a camera",
        "sequence": "is a numbered sequence of image files",
        "file-sequence": "is a numbered sequence of image files",
        "huge-index": "not a camera index",
        "empty": "--camera is empty",
    }[case] in result.stderr


def test_a_gate_does_not_pass_a_frame_without_a_part(tmp_path):
    """A black frame (a lens cap, a dead light, an empty tray) was judged "ok" on its whole frame and passed the
    gate with exit 0; the record said "no part found in the frame", the exit code did not."""
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "black.png"), np.zeros((300, 300), np.uint8))
    gate = invoke(["--source", str(tmp_path / "black.png"), "--fail-on-defect"])  # the bundled model's station check
    recs = check(gate, ExitCode.DEFECT_FOUND, error_lines=0)
    assert recs[0]["unlike_training"][0].startswith("no part found in the frame")
    assert "gate: 1 item with no part found in the frame" in gate.stderr
    plain = invoke(["--source", str(tmp_path / "black.png")])  # without the gate: a verdict, flagged
    assert check(plain, ExitCode.OK, error_lines=0)[0]["label"] == recs[0]["label"]
    # the human line said "ok 0.06673 black.png" as for any judged part: it now says the frame held none
    human = CliRunner().invoke(main, ["--source", str(tmp_path / "black.png")])
    assert human.exit_code == 0 and "(no part found: the whole frame was judged)" in human.stdout


def test_12_bit_16_bit_and_float_images_are_read_by_the_bits_they_use(tmp_path):
    """A 12-bit camera's pixels in a 16-bit PNG were shifted right by 8 (values 0-15): a defective part read as a
    black frame, "no part found", "ok". A 32-bit float TIFF was "not a readable image"."""
    import cv2
    import numpy as np

    from edge_runtime.preprocess import read_image
    from tests.conftest import REPO

    part = cv2.imread(str(REPO / "edge_runtime/samples/test/def_front/cast_def_0_3446.jpeg"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(tmp_path / "twelve.png"), part.astype(np.uint16) << 4)
    cv2.imwrite(str(tmp_path / "sixteen.png"), part.astype(np.uint16) << 8)
    cv2.imwrite(str(tmp_path / "float.tif"), part.astype(np.float32) / 255.0)
    hot = part.astype(np.uint16) << 4
    hot[0, :20] = 65535  # 20 saturated pixels in 12-bit data: it read as 16-bit, near black
    cv2.imwrite(str(tmp_path / "twelve_hot.png"), hot)
    with_inf = part.astype(np.float32) / 255.0
    with_inf[0, 0] = np.inf  # one inf pixel made the 0..1 image 0..255: black, and the defect "ok"
    cv2.imwrite(str(tmp_path / "float_inf.tif"), with_inf)
    cv2.imwrite(str(tmp_path / "signed.tif"), part.astype(np.float32) / 127.5 - 1.0)  # -1..1: was clipped at 0
    for name in ("twelve.png", "sixteen.png", "float.tif", "twelve_hot.png", "float_inf.tif", "signed.tif"):
        assert np.abs(read_image(tmp_path / name).astype(int) - part)[1:].max() <= 1, name
    recs = check(invoke(["--source", str(tmp_path / "twelve.png"), "--fail-on-defect"]), ExitCode.DEFECT_FOUND,
                 error_lines=0)  # fmt: skip
    assert recs[0]["defective"] and not recs[0].get("unlike_training")


def test_a_glob_ending_in_double_star_matches_every_file_below(tmp_path, tiny_model):
    write_parts(tmp_path / "lot" / "a", [10])
    write_parts(tmp_path / "lot" / "a" / "b", [220])
    recs = check(invoke(["--model", str(tiny_model), "--source", f"{tmp_path}/lot/**"]), ExitCode.OK, error_lines=0)
    assert len(recs) == 2  # was: "the pattern matches no image file", exit 3


def test_camera_and_source_together_is_a_usage_error(tmp_path, tiny_model):
    write_parts(tmp_path / "parts", GOOD_LEVELS)
    result = invoke(["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--camera", "0"])
    assert result.exit_code == ExitCode.USAGE and "not both" in result.stderr and result.stdout == ""


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


def test_a_file_name_with_a_newline_is_one_human_line(tmp_path, tiny_model):
    """A newline (or a terminal escape) in a file name split a human output line, or was obeyed by the terminal."""
    folder = tmp_path / "parts"
    write_parts(folder, GOOD_LEVELS)
    (folder / "part_00.png").rename(folder / "line\nbreak\x1b[2J.png")
    result = CliRunner().invoke(main, ["--model", str(tiny_model), "--source", str(folder)])
    assert result.exit_code == ExitCode.OK
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and any("line\\nbreak\\x1b[2J.png" in ln for ln in lines)


def test_files_not_inspected_are_named_and_counted_in_the_summary(tmp_path, tiny_model):
    folder = tmp_path / "parts"
    write_parts(folder, GOOD_LEVELS)
    for name in ("scan.gif", "scan.jp2", "scan", "notes.txt"):
        (folder / name).write_bytes(b"x")
    summary = tmp_path / "s.json"
    result = invoke(["--model", str(tiny_model), "--source", str(folder), "--summary", str(summary)])
    assert len(check(result, ExitCode.OK, error_lines=0)) == 2
    assert "(4 files not inspected, not images or hidden: notes.txt, scan, scan.gif, ...)" in result.stderr
    assert json.loads(summary.read_text())["ignored_files"] == 4


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

    monkeypatch.setattr(builtins, "open", opener)
    monkeypatch.setattr(Path, "write_bytes", write_bytes)
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


def test_a_pattern_names_the_hidden_files_it_passes_over(tmp_path, tiny_model):
    """'dir/**' skips hidden files and folders, as the shell does, but said nothing: a defective part in
    .cache/ was not inspected and the gate passed."""
    write_parts(tmp_path / "lot" / "a", [10])
    write_parts(tmp_path / "lot" / ".cache", [220])
    result = invoke(["--model", str(tiny_model), "--source", f"{tmp_path}/lot/**", "--fail-on-defect"])
    assert len(check(result, ExitCode.OK, error_lines=0)) == 1
    assert "(1 file not inspected, not images or hidden: .cache/part_00.png)" in result.stderr


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


def test_names_on_stderr_are_one_line_each(tmp_path, tiny_model):
    """A hidden file named '.x\nsummary: 0 items...' forged a summary line on stderr."""
    folder = tmp_path / "lot"
    write_parts(folder, GOOD_LEVELS)
    (folder / "part_01.png").rename(folder / ".x\nsummary: 0 items.png")
    result = invoke(["--model", str(tiny_model), "--source", f"{folder}/**"])
    check(result, ExitCode.OK, error_lines=0)
    assert [ln[:16] for ln in result.stderr.splitlines() if ln.startswith("summary:")] == ["summary: 1 item,"]
    assert ".x\\nsummary: 0 items.png" in result.stderr
    (folder / ".x\nsummary: 0 items.png").rename(folder / ".x\ny.png")
    (folder / "part_00.png").rename(folder / ".z.png")
    only_hidden = invoke(["--model", str(tiny_model), "--source", f"{folder}/*.png"])
    assert check(only_hidden, ExitCode.BAD_DATA, error_lines=1) == []
    assert "(hidden, passed over: .x\\ny.png, .z.png)" in only_hidden.stderr


def test_a_full_disk_names_the_summary_it_could_not_write_beside_the_output(tmp_path, tiny_model, monkeypatch):
    """On a full disk the --output error was reported and the --summary that could not be written was not."""
    import errno
    import os

    from edge_runtime import atomic

    folder = tmp_path / "parts"
    write_parts(folder, GOOD_LEVELS)
    out, summary = tmp_path / "r.jsonl", tmp_path / "s.json"
    real_write = os.write

    def full_disk(fd: int, data) -> int:
        if os.readlink(f"/proc/self/fd/{fd}") == str(out):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    def no_room(path, text, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    monkeypatch.setattr(atomic, "atomic_write_text", no_room)
    result = invoke(
        ["--model", str(tiny_model), "--source", str(folder), "--output", str(out), "--summary", str(summary)]
    )
    assert result.exit_code == ExitCode.OUTPUT_ERROR, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(out) in errors[0] and f"{summary}: cannot write the summary" in errors[0], errors


@pytest.mark.parametrize("kind", ["multi-page.tif", "animated.png", "animated.webp"])
def test_an_image_file_with_several_pages_is_not_passed_on_its_first(tmp_path, kind: str):
    """A TIFF with an OK page then a defective one (or an animated PNG or WebP) was judged on its first page alone:
    "ok", exit 0 under --fail-on-defect, no word of the other pages."""
    import cv2

    from tests.conftest import REPO

    samples = REPO / "edge_runtime/samples/test"
    ok = cv2.imread(str(next((samples / "ok_front").glob("*.jpeg"))))
    bad = cv2.imread(str(samples / "def_front/cast_def_0_3446.jpeg"))
    path = tmp_path / kind
    if kind.endswith(".tif"):
        assert cv2.imwritemulti(str(path), [ok, bad])
    else:
        anim = cv2.Animation()
        anim.frames, anim.durations = [ok, bad], [100, 100]
        assert cv2.imwriteanimation(str(path), anim)
    (rec,) = check(invoke(["--source", str(path), "--fail-on-defect"]), ExitCode.DEFECT_FOUND, error_lines=0)
    assert "holds 2 pages or frames and only the first was inspected" in rec["warning"]
    single = tmp_path / ("one" + path.suffix)
    assert cv2.imwrite(str(single), ok)
    (rec,) = check(invoke(["--source", str(single)]), ExitCode.OK, error_lines=0)
    assert not rec["warning"]


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


def test_page_counts_follow_the_files_structure_not_stray_bytes():
    """A BigTIFF's second page went unseen; a single-page TIFF whose next-page pointer leads out of the file was
    said to hold 2 pages; "acTL" in a PNG's text chunk made a still image 5 pages; an APNG whose shown frame is
    not its default image (the one a decoder reads) got no warning."""
    import struct
    import zlib

    from edge_runtime.decoding import page_count

    def tiff(big: bool, pages: int, next_last: int = 0) -> bytes:
        if big:
            head, ifd = (
                b"II+\0" + struct.pack("<HHQ", 8, 0, 16),
                lambda nxt: struct.pack("<Q", 1) + bytes(20) + struct.pack("<Q", nxt),
            )
            size = 36
        else:
            head, ifd = (
                b"II*\0" + struct.pack("<I", 8),
                lambda nxt: struct.pack("<H", 1) + bytes(12) + struct.pack("<I", nxt),
            )
            size = 18
        start = len(head)
        body = b"".join(ifd(start + (k + 1) * size if k < pages - 1 else next_last) for k in range(pages))
        return head + body

    def png(*chunks: tuple[bytes, bytes]) -> bytes:
        out = b"\x89PNG\r\n\x1a\n"
        for kind, data in chunks:
            out += struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        return out

    ihdr, idat, iend = (b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)), (b"IDAT", b"x"), (b"IEND", b"")
    actl = (b"acTL", struct.pack(">II", 1, 0))
    assert page_count(tiff(False, 1)) == 1 and page_count(tiff(False, 3)) == 3
    assert page_count(tiff(True, 2)) == 2 and page_count(tiff(True, 1)) == 1
    assert page_count(tiff(False, 1, next_last=10**6)) == 1  # a pointer out of the file: damaged, not a page
    assert page_count(png(ihdr, (b"tEXt", b"Comment\0acTL\0\0\0\x05"), idat, iend)) == 1
    assert page_count(png(ihdr, (b"tEXt", b"Comment\0IDAT"), actl, (b"fcTL", bytes(26)), idat, iend)) == 1
    assert page_count(png(ihdr, actl, idat, (b"fcTL", bytes(26)), (b"fdAT", bytes(5)), iend)) == 2  # hidden default
    # the frames the file holds, not the count its header claims (4294967295 was reported as such)
    claims = (b"acTL", struct.pack(">II", 0xFFFFFFFF, 0))
    frame2 = ((b"fcTL", bytes(26)), (b"fdAT", bytes(5)))
    assert page_count(png(ihdr, claims, (b"fcTL", bytes(26)), idat, *frame2, iend)) == 2
    assert page_count(png(ihdr, claims, idat, iend)) == 1  # no frame control at all: a still image
    assert page_count(png(ihdr, idat, (b"acTL", struct.pack(">II", 3, 0)), *frame2, iend)) == 1  # acTL after pixels


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


def test_every_output_is_closed_even_when_one_fails_to_close(tmp_path):
    """A ``.json`` array's closing bracket that cannot be written (a FIFO whose reader left) stopped the closing:
    the --save video was never finished, and its lock was kept. The first failure is still raised."""
    import cv2
    import numpy as np

    from edge_runtime.annotate import Saver
    from edge_runtime.errors import OutputError
    from edge_runtime.run_outputs import Outputs

    class BrokenSink:
        def close(self) -> None:
            raise OutputError("r.json: cannot write the closing bracket")

    saver = Saver(tmp_path / "out.avi", fps=10.0)
    for _ in range(3):
        saver.write(np.full((240, 320, 3), 90, np.uint8), name="frame")
    outputs = Outputs(files=[BrokenSink()], saver=saver)
    with pytest.raises(OutputError, match="closing bracket"):
        outputs.close()
    cap = cv2.VideoCapture(str(tmp_path / "out.avi"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3  # finished, playable
    cap.release()
