"""The fault suite's outputs and videos: --output, --summary and --save that cannot be written, would replace an
input or collide, full disks, saved videos and pictures; videos that are truncated, damaged or without a frame.
The same promises as test_faults.py (faults_common.check).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_runtime.cli import main
from edge_runtime.errors import ExitCode
from tests.edge_runtime.conftest import write_parts
from tests.edge_runtime.faults_common import (
    GOOD_LEVELS,
    check,
    invoke,
    no_hang,  # noqa: F401 - the autouse hang guard, for this module too
)


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


@pytest.mark.parametrize("source", ["video", "camera"])
@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_a_run_that_cannot_open_its_source_leaves_no_new_output_behind(tmp_path, tiny_model, source, suffix):
    """A new --output was left empty (or an empty array) beside a run that judged nothing: read later, it said
    the run had found no part at all."""
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    where = ["--source", str(tmp_path / "broken.mp4")] if source == "video" else ["--camera", "/dev/video97"]
    out = tmp_path / f"line3{suffix}"
    result = invoke(["--model", str(tiny_model), *where, "--output", str(out)])
    assert check(result, ExitCode.SOURCE_UNAVAILABLE, error_lines=1) == []
    assert not out.exists()


def test_a_summary_never_replaces_a_file_another_run_is_writing(tmp_path, tiny_model):
    """--summary onto the --output another edge-infer was writing renamed the summary over it: that run went on
    writing 6633 records into a file no longer in any folder and exited 0; both runs said nothing."""
    import fcntl

    from edge_runtime.errors import OutputError
    from edge_runtime.run_end import write_summary
    from edge_runtime.summary import Summary

    write_parts(tmp_path / "parts", GOOD_LEVELS)
    busy = tmp_path / "line3.json"
    busy.write_text('[\n{"source": "a"}\n]\n')
    with open(busy, "rb+") as other_run:
        fcntl.flock(other_run, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as FileSink holds its --output
        result = invoke(["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--summary", str(busy)])
        assert check(result, ExitCode.OUTPUT_ERROR, error_lines=1) == []  # refused before any work
        assert "another process is writing this file" in result.stderr
        with pytest.raises(OutputError, match="another process is writing this file"):
            write_summary(busy, Summary(source="parts"))  # locked after the run's start: found again at the end
        assert busy.read_text() == '[\n{"source": "a"}\n]\n'
    with pytest.raises(OutputError, match="holds something that is not an edge-infer summary"):
        write_summary(busy, Summary(source="parts"))  # unlocked, it still holds that run's records
    old = tmp_path / "s.json"
    old.write_text('\ufeff{"source": "parts", "items": 5}\n')  # an earlier run's summary (a BOM too): replaced
    write_summary(old, Summary(source="parts"))
    assert json.loads(old.read_text())["items"] == 0


def test_a_summary_never_replaces_a_stations_log_or_other_data(tmp_path, tiny_model):
    """A running station's --log is SQLite, which holds no flock: --summary was renamed over it, and the station's
    records went with it."""
    import sqlite3

    write_parts(tmp_path / "parts", GOOD_LEVELS)
    log = tmp_path / "station.db"
    con = sqlite3.connect(log)
    con.execute("CREATE TABLE inspections (id INTEGER)")
    con.commit()
    before = log.read_bytes()
    records = tmp_path / "verdicts.jsonl"  # a finished --output, or --json > verdicts.jsonl: lines of records
    records.write_text('{"source": "a.png", "score": 0.1}\n{"source": "b.png", "score": 0.9}\n')
    notes = tmp_path / "notes.txt"
    notes.write_text("line 3 notes")
    for target, what in ((log, "an SQLite database"), (notes, "not an edge-infer summary"),
                         (records, "not an edge-infer summary")):  # fmt: skip
        result = invoke(["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--summary", str(target)])
        assert check(result, ExitCode.OUTPUT_ERROR, error_lines=1) == [] and what in result.stderr
    con.close()
    assert log.read_bytes() == before


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


@pytest.mark.parametrize("name", ["v.jsonl", "v.json", "v.csv"])
def test_an_output_deleted_during_the_run_is_written_back(tmp_path, name):
    """`rm verdicts.jsonl` under a run: the records went on into the unlinked file, and at the end all 2000 were
    gone, exit 0, no word."""
    import os

    from edge_runtime.errors import OutputError
    from edge_runtime.run_outputs import open_file_sink

    path = tmp_path / name
    sink = open_file_sink(path)
    recs = [{"source": f"p{i}.png", "frame": None, "label": "ok", "score": 0.1, "defective": False} for i in range(5)]
    for rec in recs[:2]:
        sink.write(rec)
    os.unlink(path)
    for rec in recs[2:]:
        sink.write(rec)
    with pytest.raises(OutputError, match="deleted during the run; its records were written back to"):
        sink.close()
    text = path.read_text()
    if name.endswith(".json"):
        assert [r["source"] for r in json.loads(text)] == [r["source"] for r in recs]
    else:
        assert all(r["source"] in text for r in recs) and len(text.splitlines()) == 5 + name.endswith(".csv")
    kept = open_file_sink(tmp_path / "kept.jsonl")  # a file left alone closes as before
    kept.write(recs[0])
    kept.close()


@pytest.mark.parametrize("name", ["v.jsonl", "v.json", "v.csv"])
def test_an_output_whose_folder_was_deleted_during_the_run_is_written_back(tmp_path, name):
    """`rm -rf out/` under a run writing out/v.jsonl: the write-back failed with "No such file or directory", exit 7,
    and every record was lost; the folder is made again for them, as for a --save folder or a --summary."""
    import shutil

    from edge_runtime.errors import OutputError
    from edge_runtime.run_outputs import open_file_sink

    path = tmp_path / "out" / name
    sink = open_file_sink(path)
    recs = [{"source": f"p{i}.png", "frame": None, "label": "ok", "score": 0.1, "defective": False} for i in range(4)]
    sink.write(recs[0])
    shutil.rmtree(tmp_path / "out")
    for rec in recs[1:]:
        sink.write(rec)
    with pytest.raises(OutputError, match=f"deleted during the run; its records were written back to {path}"):
        sink.close()
    text = path.read_text()
    header_and_brackets = {".jsonl": 0, ".csv": 1, ".json": 2}[path.suffix]
    assert all(r["source"] in text for r in recs) and len(text.splitlines()) == 4 + header_and_brackets


def test_an_output_and_a_log_that_both_fail_at_the_end_are_both_named(tmp_path, tiny_model, monkeypatch):
    """An --output and a --log both deleted under one run were both written back, but only the --output was
    named: the log's line was dropped."""
    from edge_runtime.errors import OutputError
    from edge_runtime.outputs import FileSink
    from edge_runtime.station.log import InspectionLog

    def output_gone(self):
        raise OutputError(f"{self.path}: deleted during the run; its records were written back to it")

    def log_gone(self):
        raise OutputError(f"{self.path}: inspection log deleted during the run; its records were written back to it")

    monkeypatch.setattr(FileSink, "_check_still_there", output_gone)
    monkeypatch.setattr(InspectionLog, "check_still_there", log_gone)
    write_parts(tmp_path / "parts", [10, 220])
    out, log = tmp_path / "v.jsonl", tmp_path / "l.db"
    result = invoke(["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--output", str(out),
                     "--log", str(log)])  # fmt: skip
    assert result.exit_code == ExitCode.OUTPUT_ERROR
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"{out}: deleted during the run" in last and f"{log}: inspection log" in last


def test_records_of_an_output_that_could_not_be_written_back_are_not_said_to_be_kept():
    """The current folder deleted under a run: "... could not be written back (No such file or directory); they are
    lost; the 8610 records counted were written" -- the line contradicted itself."""
    from edge_runtime.summary import Summary

    summary = Summary(source="parts/")
    summary.items = 8610
    summary.output_error = "o.jsonl: deleted during the run, and its records could not be written back (No such file)"
    assert "the 8610 records counted were written to a file no longer there" in summary.text()
    summary.output_error = "o.jsonl: cannot write (No space left on device)"
    assert summary.text().endswith("the 8610 records counted were written")


@pytest.mark.parametrize(("stream", "option", "name"), [(1, "--output", "v.csv"), (2, "--output", "r.jsonl"),
                                                        (1, "--log", "x.db"), (1, "--summary", "s.json")])  # fmt: skip
def test_an_output_that_stdout_or_stderr_is_redirected_to_is_refused(tmp_path, stream, option, name):
    """`edge-infer --output v.csv > v.csv`: the human lines were written over the CSV's header and the defective
    part's record (a CSV reader took what was left of it as the header); `2> r.jsonl` spliced the summary into the
    records; `--log x.db > x.db` lost every --json record. All exit 0."""
    import subprocess
    import sys

    from tests.conftest import REPO
    from tests.edge_runtime.conftest import MODELS

    write_parts(tmp_path / "parts", [10, 220])
    target = tmp_path / name
    cmd = [sys.executable, "-m", "edge_runtime.cli", "--model", str(MODELS / "tiny.onnx"), "--source",
           str(tmp_path / "parts"), option, str(target)]  # fmt: skip
    with open(target, "w") as redirected:
        streams = {"stdout": redirected} if stream == 1 else {"stderr": redirected, "stdout": subprocess.DEVNULL}
        r = subprocess.run(cmd, cwd=REPO, timeout=120, **streams, stdin=subprocess.DEVNULL,
                           **({} if stream == 2 else {"stderr": subprocess.PIPE}))  # fmt: skip
    told = target.read_text() if stream == 2 else r.stderr.decode()
    assert r.returncode == ExitCode.OUTPUT_ERROR, told
    which = "stdout" if stream == 1 else "stderr"
    assert f"{option} names the file {which} is redirected to" in told.strip().splitlines()[-1]
    assert "Traceback" not in told and not (tmp_path / "x.db-wal").exists()
    # the same options with the stream elsewhere run as before
    ok = subprocess.run(cmd, cwd=REPO, timeout=120, capture_output=True)
    assert ok.returncode == 0, ok.stderr.decode()[-500:]


def test_a_score_just_below_1_is_not_shown_as_a_flat_1(monkeypatch):
    """A saved picture's label said "defective 1" for a score of 0.9996, and a human line "1" for 0.99996: a
    probability shown as certainty."""
    import numpy as np

    from edge_runtime import annotate
    from edge_runtime.model import Prediction
    from edge_runtime.outputs import JsonLinesSink
    from edge_runtime.summary import score_text

    assert [score_text(s) for s in (0.99996, 0.025583, 1.0)] == ["0.99996", "0.02558", "1"]
    drawn = []
    monkeypatch.setattr(annotate.cv2, "putText", lambda img, text, *a, **k: drawn.append(text) or img)
    pred = Prediction(label="defective", score=0.9996, defective=True, latency_ms=1.0)
    annotate.annotate(np.zeros((240, 320), np.uint8), pred)
    assert any(t.startswith("defective 0.9996") for t in drawn), drawn
    rec = {"source": "a.png", "frame": None, "error": None, "label": "defective", "score": 0.99996}
    assert JsonLinesSink.human_line(rec).split()[:2] == ["defective", "0.99996"]
    # a record's score is rounded to six decimals: 0.99999988 was written as 1.0, and shown "1" everywhere after
    from edge_runtime.model import recorded_score

    near_one = Prediction(label="defective", score=0.99999988, defective=True, latency_ms=1.0)
    assert near_one.to_dict()["score"] == 0.999999
    assert recorded_score(1.0) == 1.0 and recorded_score(3e-9) == 1e-6 and recorded_score(0.0) == 0.0


def sources(path: Path) -> list[str]:
    """The ``source`` of each record of an --output file, and (CSV) the number of header rows."""
    if path.suffix == ".csv":
        import csv

        rows = list(csv.reader(path.read_text().splitlines()))
        assert sum(row[0] == "source" for row in rows) == 1 and rows[0][0] == "source", rows  # one header, first
        return [row[0] for row in rows[1:]]
    return [json.loads(line)["source"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_append_keeps_the_records_of_the_runs_before(tmp_path, tiny_model, suffix):
    """A station that systemd restarts after a lost camera (exit 5) replaced its --output at every start: the records
    of the run before were gone. With --append they stay, and this run's follow them (a CSV keeps one header)."""
    parts = write_parts(tmp_path / "parts", GOOD_LEVELS)
    out = tmp_path / f"line3{suffix}"
    args = ["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--output", str(out)]
    check(invoke(args), ExitCode.OK, error_lines=0)
    first = out.read_bytes()
    check(invoke([*args, "--append"]), ExitCode.OK, error_lines=0)
    assert out.read_bytes().startswith(first)
    assert sources(out) == [str(p) for p in parts] * 2
    check(invoke(args), ExitCode.OK, error_lines=0)  # without it, replaced as before
    assert sources(out) == [str(p) for p in parts]
    new = tmp_path / f"new{suffix}"  # a file that is not there yet is made, a CSV with its header
    check(invoke([*args[:-1], str(new), "--append"]), ExitCode.OK, error_lines=0)
    assert sources(new) == [str(p) for p in parts]


def test_append_is_refused_where_it_cannot_add(tmp_path, tiny_model):
    """--append without --output was ignored without a word; onto a .json array (one document) it cannot add; onto a
    CSV of other columns its rows would be read into the wrong ones."""
    write_parts(tmp_path / "parts", GOOD_LEVELS)
    base = ["--model", str(tiny_model), "--source", str(tmp_path / "parts")]
    r = invoke([*base, "--append"])
    check(r, ExitCode.USAGE, error_lines=1)
    assert "error: --append adds to an --output file" in r.stderr
    r = invoke([*base, "--append", "--output", str(tmp_path / "v.json")])
    check(r, ExitCode.USAGE, error_lines=1)
    assert "use FILE.jsonl" in r.stderr and not (tmp_path / "v.json").exists()
    other = tmp_path / "other.csv"
    other.write_text("part,result\nA1,ok\n")
    r = invoke([*base, "--append", "--output", str(other)])
    check(r, ExitCode.OUTPUT_ERROR, error_lines=1)
    assert "not the CSV header edge-infer writes" in r.stderr
    assert other.read_text() == "part,result\nA1,ok\n"
