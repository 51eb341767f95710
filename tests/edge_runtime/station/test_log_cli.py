"""edge-log as a quality engineer uses it: summary, query (table, JSON, CSV), show; one-line errors."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner

from edge_runtime.errors import ExitCode
from edge_runtime.station.log import InspectionLog, LogConfig
from edge_runtime.station.log_cli import main
from tests.conftest import REPO
from tests.edge_runtime.station.conftest import RUN, record, write_items


def edge_log(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_help_of_every_command():
    for cmd in ([], ["summary"], ["query"], ["show"]):
        result = edge_log(*cmd, "--help")
        assert result.exit_code == 0, result.output
    assert "7 output not writable" in " ".join(edge_log("--help").output.split())  # as wrapped to any width
    assert "--defective" in edge_log("query", "--help").output


def test_summary_answers_what_the_station_rejected(station_log, log_path: Path):
    write_items(station_log, 40, t0=time.time() - 600)
    station_log.write([record(99, defective=False, t=time.time(), error="parts/bad.png: cannot decode")], [None])
    station_log.write([record(98, defective=False, t=time.time(), unlike_training="background brighter")], [None])
    result = edge_log("summary", log_path, "--since", "8h")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "42 items" in out and "defective 10 (24.4%)" in out and "errors 1" in out and "line-3" in out
    assert "station check: 1 item looked unlike the training images" in out
    assert RUN.model_version in out and "defectnet_int8.onnx" in out and "latency p50" in out
    data = json.loads(edge_log("summary", log_path, "--json").output)
    assert (
        data["items"] == 42
        and data["unlike_training"] == 1
        and data["per_hour"]
        and data["models"][0]["precision"] == "int8"
    )
    assert json.loads(edge_log("summary", log_path, "--json", "--until", "1h").output)["items"] == 0


def test_query_filters_and_formats(station_log, log_path: Path):
    write_items(station_log, 40, t0=time.time() - 600)
    result = edge_log("query", log_path, "--defective", "--json")
    lines = [json.loads(x) for x in result.output.splitlines()]
    assert len(lines) == 10 and all(r["defective"] for r in lines)
    rows = list(csv.DictReader(io.StringIO(edge_log("query", log_path, "--ok", "--csv").output)))
    assert len(rows) == 30 and rows[0]["label"] == "ok" and rows[0]["model_version"] == RUN.model_version
    table = edge_log("query", log_path, "--source", "p00004", "--limit", "5").output
    assert table.count("\n") == 1 and "defective" in table and "parts/p00004.png" in table
    assert edge_log("query", log_path, "--since", "yesterday-ish").exit_code == ExitCode.USAGE


def test_show_writes_the_stored_image_with_its_verdict(station_log, log_path: Path, tmp_path: Path):
    write_items(station_log, 8)
    result = edge_log("show", log_path, "1", "--out", tmp_path / "part.png")
    assert result.exit_code == 0, result.output
    img = cv2.imread(str(tmp_path / "part.png"), cv2.IMREAD_COLOR)
    assert img.shape[:2] == (384, 384)
    assert tuple(int(v) for v in img[0, 0]) == (0, 0, 255)  # the red frame of a defective verdict
    assert "defective" in result.output
    no_image = edge_log("show", log_path, "2", "--out", tmp_path / "ok.png")
    assert no_image.exit_code == ExitCode.BAD_DATA and "only defective items keep one" in no_image.output
    assert edge_log("show", log_path, "999", "--out", tmp_path / "x.png").exit_code == ExitCode.BAD_DATA


def test_a_missing_or_foreign_file_is_one_line_and_exit_3(tmp_path: Path):
    """The log is edge-log's input: bad data (exit 3). It was exit 7, "output cannot be written", and advised
    "use another --log", an option edge-log does not have."""
    result = edge_log("summary", tmp_path / "nope.db")
    assert result.exit_code == ExitCode.BAD_DATA
    assert result.output.startswith("error:") and "Traceback" not in result.output and "--log wrote" in result.output
    (tmp_path / "junk.db").write_bytes(b"junk" * 1000)
    result = edge_log("query", tmp_path / "junk.db")
    assert result.exit_code == ExitCode.BAD_DATA and "another --log" not in result.output, result.output
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.commit()
    result = edge_log("summary", tmp_path / "other.db")
    assert result.exit_code == ExitCode.BAD_DATA and "not a defect-edge inspection log" in result.output


def test_query_refuses_filters_or_formats_that_exclude_each_other(station_log, log_path: Path):
    """click kept the last: --defective --ok listed only OK items, --json --csv printed CSV, both exit 0."""
    write_items(station_log, 8)
    for pair in (["--defective", "--ok"], ["--json", "--csv"]):
        result = edge_log("query", log_path, *pair)
        assert result.exit_code == ExitCode.USAGE and all(p in result.output for p in pair), result.output


def test_query_csv_has_the_warning_column(station_log, log_path: Path):
    """--json had "warning", the CSV export left it out."""
    write_items(station_log, 4)
    header = edge_log("query", log_path, "--csv").output.splitlines()[0].split(",")
    assert "warning" in header and header.index("warning") == header.index("error") + 1
    assert {"unlike_training", "defect_box", "asymmetry", "has_image"} <= set(header)  # --json has them too
    rows = [json.loads(x) for x in edge_log("query", log_path, "--json").output.splitlines()]
    assert len({tuple(r) for r in rows}) == 1 and "defect_box" in rows[0]  # the same keys on every row


def test_times_and_numbers_that_are_no_answer_are_usage_errors(station_log, log_path: Path):
    write_items(station_log, 4)
    # nan matched no row and inf every row or none: an empty answer that looked like a real one
    for args in (["--since", "nan"], ["--until", "nan"], ["--since", "inf"], ["--since", "1e400"]):
        result = edge_log("query", log_path, *args)
        assert result.exit_code == ExitCode.USAGE and "is not a time" in result.output, args
    # beyond SQLite's integers: was "unexpected OverflowError", exit 1
    huge = str(10**23)
    for args in (["query", log_path, "--limit", huge], ["show", log_path, huge, "--out", log_path.with_suffix(".png")]):
        result = edge_log(*args)
        assert result.exit_code == ExitCode.USAGE and "Overflow" not in result.output, args


def test_show_into_a_folder_that_cannot_be_made_is_one_line_and_exit_7(station_log, log_path: Path, tmp_path: Path):
    write_items(station_log, 4)
    (tmp_path / "a_file").write_text("x")
    result = edge_log("show", log_path, "1", "--out", tmp_path / "a_file" / "part.png")
    assert result.exit_code == ExitCode.OUTPUT_ERROR, result.output
    assert result.output.startswith("error:") and result.output.count("\n") == 1 and "cannot create" in result.output


def _edge_log_process(*args: object, stdout: object) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "edge_runtime.station.log_cli", *map(str, args)]
    return subprocess.Popen(cmd, cwd=REPO, stdout=stdout, stderr=subprocess.PIPE, text=True)


def test_a_closed_stdout_ends_quietly_and_a_full_one_is_exit_7(station_log, log_path: Path):
    write_items(station_log, 3000)  # far more than a pipe holds
    proc = _edge_log_process("query", log_path, "--json", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["id"] == 1
    proc.stdout.close()  # like `| head -1`
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.OK and err == "", err
    if not Path("/dev/full").exists():
        return
    for args in (["query", log_path, "--csv"], ["summary", log_path]):
        with open("/dev/full", "w") as full:
            proc = _edge_log_process(*args, stdout=full)
            _, err = proc.communicate(timeout=60)
        assert proc.returncode == ExitCode.OUTPUT_ERROR, err
        assert err.startswith("error: stdout: cannot write") and err.count("\n") == 1, err


def test_show_into_a_folder_without_write_permission_is_one_line(station_log, log_path: Path, tmp_path: Path):
    write_items(station_log, 4)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root writes anywhere but where the kernel says no: sysfs makes no plain files
        locked = Path("/sys")
        try:
            (locked / "part.png").open("wb").close()
            pytest.skip("no folder this user cannot write to")
        except OSError:
            pass
    proc = _edge_log_process("show", log_path, "1", "--out", locked / "part.png", stdout=subprocess.PIPE)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.OUTPUT_ERROR
    assert err.startswith("error:") and err.count("\n") == 1, err  # was OpenCV's "[ WARN:0@...] imwrite_" first


def _as_another_user(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """What SQLite does for a user who cannot write ``folder`` (root writes everywhere, so it is imitated): a
    read-only connection to a WAL log there fails (it cannot make the log's ``-shm`` index beside it)."""
    real_connect, real_access = sqlite3.connect, os.access

    def connect(target: object, *args: object, **kwargs: object) -> sqlite3.Connection:
        if isinstance(target, str) and target.endswith("?mode=ro"):
            exc = sqlite3.OperationalError("attempt to write a readonly database")
            exc.sqlite_errorcode = 1032  # SQLITE_READONLY_DIRECTORY, what SQLite 3.40 says as another user
            raise exc
        return real_connect(target, *args, **kwargs)

    def access(path: object, mode: int, **kwargs: object) -> bool:
        if Path(path).resolve() == folder.resolve() and mode & os.W_OK:
            return False
        return real_access(path, mode, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    monkeypatch.setattr(os, "access", access)


def test_a_log_in_a_folder_the_reader_cannot_write_is_still_read(station_log, log_path: Path, monkeypatch):
    write_items(station_log, 8)
    station_log.close()  # the station stopped: everything is in the log file itself
    _as_another_user(monkeypatch, log_path.parent)
    result = edge_log("summary", log_path, "--json")
    assert result.exit_code == 0, result.output  # was exit 7, "inspection log is read-only"
    assert json.loads(result.output)["items"] == 8
    assert len(edge_log("query", log_path, "--json").output.splitlines()) == 8


def test_items_left_in_a_write_ahead_file_the_reader_cannot_open_are_an_error_not_left_out(
    station_log, log_path: Path, monkeypatch
):
    write_items(station_log, 8)
    station_log.close()
    Path(f"{log_path}-wal").write_bytes(b"\0" * 4096)  # what a killed writer leaves: items not yet in the log
    _as_another_user(monkeypatch, log_path.parent)
    result = edge_log("summary", log_path)
    assert result.exit_code == ExitCode.OUTPUT_ERROR
    assert result.output.startswith("error:") and result.output.count("\n") == 1
    # it says why and what to do; it advised "use another --log", an option edge-log does not have
    assert "write-ahead file" in result.output and "copy both files" in result.output
    assert "--log" not in result.output


def test_reading_a_closed_log_leaves_nothing_beside_it_and_changes_nothing(station_log, log_path: Path):
    write_items(station_log, 8)
    station_log.close()
    before = log_path.read_bytes()
    assert sorted(p.name for p in log_path.parent.iterdir()) == ["station.db"]
    assert edge_log("summary", log_path).exit_code == 0
    assert edge_log("query", log_path, "--json").exit_code == 0
    # a mode=ro reader left an empty station.db-wal and a 32 KiB station.db-shm in the station's folder
    assert sorted(p.name for p in log_path.parent.iterdir()) == ["station.db"]
    assert log_path.read_bytes() == before


def test_a_reader_cannot_change_the_log_even_opened_read_write(station_log, log_path: Path):
    from edge_runtime.station.query import open_reader

    write_items(station_log, 3)
    con = open_reader(log_path)
    with pytest.raises(sqlite3.OperationalError):
        con.execute("DELETE FROM inspections")
    con.close()
    assert edge_log("summary", log_path, "--json").exit_code == 0
    assert json.loads(edge_log("summary", log_path, "--json").output)["items"] == 3


def test_show_never_writes_through_a_link_onto_the_log_a_device_or_a_file_that_is_no_picture(
    station_log, log_path: Path, tmp_path: Path
):
    """`--out x.png`, a link to the log, replaced the log with a picture (the next summary: "not a defect-edge
    inspection log"); a link to /dev/full replaced the device with a regular file, for the whole machine as root."""
    write_items(station_log, 8)
    station_log.close()
    before = log_path.read_bytes()
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    notes = tmp_path / "notes.txt"
    notes.write_text("a file of the user's own")
    for name, target in (("log.png", log_path), ("fifo.png", fifo), ("notes.png", notes)):
        (tmp_path / name).symlink_to(target)
        result = edge_log("show", log_path, "1", "--out", tmp_path / name)
        assert result.exit_code == ExitCode.OUTPUT_ERROR, (name, result.output)
        assert result.output.startswith("error:") and result.output.count("\n") == 1
    assert log_path.read_bytes() == before and notes.read_text() == "a file of the user's own"
    assert fifo.is_fifo()
    assert edge_log("show", log_path, "1", "--out", tmp_path / "part.png").exit_code == 0
    assert edge_log("show", log_path, "1", "--out", tmp_path / "part.png").exit_code == 0  # a picture: replaced


def test_a_log_that_cannot_be_read_is_bad_data_with_a_readers_advice(station_log, log_path: Path, tmp_path: Path):
    """Read by edge-log, the log is the input: a damaged record was "unexpected JSONDecodeError" (exit 1) for query
    and show, and a garbled "inspection log: inspection log is not ... use another --log" (exit 7) for summary; a
    locked log advised "use another --log", an option edge-log does not have; a newer schema was exit 7."""
    write_items(station_log, 4)
    station_log.close()
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(log_path.read_bytes())
    con = sqlite3.connect(damaged)
    con.execute("UPDATE runs SET providers = 'not json'")
    con.commit()
    con.close()
    shape = tmp_path / "shape.db"  # valid JSON of the wrong shape: "unexpected AttributeError", exit 1
    shape.write_bytes(log_path.read_bytes())
    con = sqlite3.connect(shape)
    con.execute("UPDATE inspections SET extra = '[1]'")
    con.commit()
    con.close()
    result = edge_log("query", shape)
    assert result.exit_code == ExitCode.BAD_DATA and "is not a JSON object" in result.output, result.output
    assert result.output.startswith(f"error: {shape}: inspection log holds a damaged record")
    # text where a number or a name list belongs, and a stored picture that is no JPEG: each was exit 1
    updates = [
        "UPDATE runs SET providers = '[1]'", "UPDATE inspections SET time = 'abc'",
        "UPDATE inspections SET score = 'abc'", "UPDATE inspections SET latency_ms = 'abc'",
        "UPDATE thumbnails SET jpeg = x'00112233'", "UPDATE thumbnails SET jpeg = 'hello'",
        "UPDATE inspections SET label = x'ff00'", "UPDATE runs SET model_version = x'ff'",
        "UPDATE inspections SET defective = 'yes'", "UPDATE inspections SET defective = 2",
        # a verdict wiped: a NULL label was "unexpected TypeError" (exit 1), a NULL verdict was counted as ok
        "UPDATE inspections SET label = NULL", "UPDATE inspections SET defective = NULL WHERE error IS NULL",
        # an item of no run: counted by the summary, never listed by query, "no item with id 1" for show
        "UPDATE inspections SET run_id = 99 WHERE id = 1",
        # an error of no words with no verdict: query and show were "unexpected TypeError", exit 1
        "UPDATE inspections SET label = NULL, score = NULL, defective = NULL, error = ' ' WHERE id = 1",
    ]  # fmt: skip
    for n, update in enumerate(updates):
        odd = tmp_path / f"odd{n}.db"
        odd.write_bytes(log_path.read_bytes())
        con = sqlite3.connect(odd)
        con.execute(update)
        con.commit()
        con.close()
        for args in (["summary"], ["summary", "--json"], ["query"], ["query", "--csv"], ["query", "--json"],
                     ["show", "1", "--out", str(tmp_path / "p.png")]):  # fmt: skip
            result = edge_log(args[0], odd, *args[1:])
            assert result.exit_code in (0, ExitCode.BAD_DATA), (update, args, result.output)
            assert "unexpected" not in result.output and "Traceback" not in result.output
        if "defective" in update or "NULL" in update:  # miscounted, not read: 'yes' summed as 0.0, 2 as two items
            assert edge_log("summary", odd).exit_code == ExitCode.BAD_DATA, update
        if "NULL" in update:
            result = edge_log("query", odd)
            said = "the error of item 1 is empty" if "error = ' '" in update else "has neither a verdict nor an error"
            assert result.exit_code == ExitCode.BAD_DATA and said in result.output, result.output
        if "run_id" in update:
            for args in (["summary"], ["query"], ["show", "1", "--out", str(tmp_path / "p.png")]):
                result = edge_log(args[0], odd, *args[1:])
                assert result.exit_code == ExitCode.BAD_DATA and "item 1 belongs to no run" in result.output, args
    for args in (["summary"], ["query"], ["query", "--json"], ["show"]):
        extra = ["1", "--out", str(tmp_path / "p.png")] if args == ["show"] else []
        result = edge_log(args[0], damaged, *args[1:], *extra)
        assert result.exit_code == ExitCode.BAD_DATA, (args, result.output)
        line = result.output.strip().splitlines()[-1]
        assert line.startswith("error:") and "damaged" in line and "--log" not in line, line
        assert "inspection log: inspection log" not in line
    newer = tmp_path / "newer.db"
    newer.write_bytes(log_path.read_bytes())
    con = sqlite3.connect(newer)
    con.execute("PRAGMA user_version = 99")
    con.close()
    result = edge_log("summary", newer)
    assert result.exit_code == ExitCode.BAD_DATA and "newer than this defect-edge" in result.output
    holder = sqlite3.connect(log_path, isolation_level=None, timeout=0.1)
    holder.execute("PRAGMA journal_mode=DELETE")
    holder.execute("BEGIN EXCLUSIVE")  # another program holding the log, in rollback-journal mode
    try:
        result = edge_log("summary", log_path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == ExitCode.BAD_DATA, result.output
    assert "locked by another program" in result.output and "--log" not in result.output


def test_summary_and_query_take_a_station(station_log, log_path: Path):
    """Stations may share one log: edge-log could only read them all together."""
    from edge_runtime.station.log import InspectionLog, LogConfig

    write_items(station_log, 8)
    other = InspectionLog(LogConfig(log_path, station="line-4"))
    other.start_run(RUN)
    write_items(other, 5)
    other.close()
    assert json.loads(edge_log("summary", log_path, "--json").output)["items"] == 13
    assert json.loads(edge_log("summary", log_path, "--json", "--station", "line-4").output)["items"] == 5
    lines = edge_log("query", log_path, "--json", "--station", "line-3").output.splitlines()
    assert len(lines) == 8 and {json.loads(ln)["station"] for ln in lines} == {"line-3"}
    nowhere = edge_log("summary", log_path, "--json", "--station", "nowhere")
    assert json.loads(nowhere.stdout)["items"] == 0  # a typo was "0 items" and nothing else
    assert "warning: no run of station 'nowhere'" in nowhere.stderr and "line-3, line-4" in nowhere.stderr
    nowhere = edge_log("query", log_path, "--station", "nowhere")
    assert nowhere.stdout == "" and "warning: no run of station 'nowhere'" in nowhere.stderr


@pytest.mark.parametrize("fmt", ["--json", "--csv"])
def test_query_onto_a_file_that_fills_up_keeps_whole_lines_and_onto_a_closed_stdout_is_refused(
    station_log, log_path: Path, tmp_path: Path, fmt: str
):
    """`edge-log query DB --json > q.jsonl` on a full disk ended mid-record; `edge-log query DB --json >&-` printed
    its rows to nowhere with exit 0."""
    import resource

    write_items(station_log, 300)
    command = [sys.executable, "-m", "edge_runtime.station.log_cli", "query", str(log_path), fmt, "--limit", "1000"]

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))

    target = tmp_path / "q.out"
    with open(target, "w") as out:
        r = subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.PIPE, text=True, timeout=120,
                           preexec_fn=small_files)  # fmt: skip
    assert r.returncode == ExitCode.OUTPUT_ERROR, r.stderr
    text = target.read_text()
    assert text.endswith("\n") and 0 < len(text) <= 6000
    if fmt == "--json":
        assert all(json.loads(line)["id"] for line in text.splitlines())
    closed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120,
                            preexec_fn=lambda: os.close(1))  # fmt: skip
    assert closed.returncode == ExitCode.OUTPUT_ERROR, closed.stderr
    assert closed.stderr.strip() == (
        "error: stdout is closed (>&-), and this command's result is written there; send it to a file"
    )


def test_an_item_judged_without_a_part_is_marked_in_the_query_table_and_counted(station_log, log_path: Path):
    """edge-infer's line says "(no part found: the whole frame was judged)" (and the gate never passes it); the log's
    table showed the same item as a plain "ok", and its summary said "warnings 0" and nothing of it."""
    t = time.time()
    station_log.write([record(1, defective=False, t=t)], [None])
    station_log.write([record(2, defective=False, t=t, unlike_training=["no part found in the frame (the whole "
                                                                        "frame was used)"])], [None])  # fmt: skip
    station_log.write([record(3, defective=False, t=t, warning="Corrupt JPEG data: premature end")], [None])
    rows = edge_log("query", log_path).output.splitlines()
    assert len(rows) == 3
    marks = {row.split()[-1] if "(" not in row else row[row.index("(") :] for row in rows}
    assert "(no part found: the whole frame was judged)" in marks
    assert "(warning: Corrupt JPEG data: premature end)" in marks and "parts/p00001.png" in marks
    out = edge_log("summary", log_path).output
    assert "station check: 1 item looked unlike the training images (1 with no part found" in out
    assert json.loads(edge_log("summary", log_path, "--json").output)["no_part"] == 1


def test_a_time_range_that_cannot_match_is_refused_and_an_empty_table_says_so(station_log, log_path):
    """--since after --until, or an epoch in milliseconds, printed nothing and exited 0: read as "no rejects"."""
    write_items(station_log, 8, t0=time.time() - 60)
    r = edge_log("query", log_path, "--since", "5h", "--until", "10h")
    assert r.exit_code == 2 and "--since is not before --until" in r.output
    assert edge_log("summary", log_path, "--since", "1h", "--until", "2h").exit_code == 2
    # the same relative time twice: each read its own clock, a window microseconds wide, "no item matches"
    r = edge_log("query", log_path, "--since", "1h", "--until", "1h")
    assert r.exit_code == 2 and "--since is not before --until" in r.output
    r = edge_log("query", log_path, "--since", str(int(time.time() * 1000)))
    assert r.exit_code == 2 and "seconds, not milliseconds" in r.output
    r = edge_log("query", log_path, "--source", "no-such-camera")
    assert r.exit_code == 0 and r.stdout == "" and "no item matches" in r.stderr
    # a CSV of its header alone, or no JSON line, said nothing either; nor did a --since a year ahead (a typo)
    r = edge_log("query", log_path, "--since", "2099-11-28", "--csv")
    assert r.exit_code == 0 and r.stdout.count("\n") == 1 and "no item matches" in r.stderr
    assert "warning: --since 2099-11-28T00:00:00.000Z lies in the future" in r.stderr
    r = edge_log("query", log_path, "--source", "no-such-camera", "--json")
    assert r.exit_code == 0 and r.stdout == "" and "no item matches" in r.stderr


def test_a_carriage_return_in_a_file_name_keeps_its_csv_row_whole(station_log, log_path):
    """A file named "\\rr.png": edge-log's CSV (lines ended by \\n alone) left the cell unquoted, a reader split the
    row in two, and the columns after it shifted ("defective" under station)."""
    recs = [record(0, defective=True) | {"source": "parts/\rr.png"}, record(1, defective=False)]
    station_log.write(recs, [None, None])
    station_log.flush()
    out = edge_log("query", log_path, "--csv").stdout
    rows = list(csv.DictReader(io.StringIO(out, newline="")))
    assert [r["source"] for r in rows] == ["parts/\rr.png", "parts/p00001.png"]
    assert [r["station"] for r in rows] == ["line-3", "line-3"]


def test_a_summary_reads_one_moment_of_a_log_that_retention_trims_meanwhile(station_log, log_path, monkeypatch):
    """A station's retention deleting items while edge-log summarised its log: the counts came from one moment and
    the latency percentiles from a later one without those items, `unexpected TypeError`, exit 1."""
    from edge_runtime.station import query

    write_items(station_log, 40)
    ranked = query.percentile_sql

    def retention_meanwhile(*args: object, **kwargs: object) -> float | None:
        station_log.con.execute("DELETE FROM inspections WHERE id > 20")  # --log-max, by the station meanwhile
        return ranked(*args, **kwargs)

    monkeypatch.setattr(query, "percentile_sql", retention_meanwhile)
    result = edge_log("summary", log_path)
    assert result.exit_code == 0, result.output
    assert "40 items" in result.output and "latency p50 " in result.output


def test_a_date_without_dashes_or_beyond_the_year_9999_is_one_line_not_a_misread(station_log, log_path: Path):
    """`--since 20261129` was read as epoch seconds, a day in August 1970: every item was listed "since" the 29th of
    November, exit 0. `--since 9999-12-31T23:00-05:00` (the year 10000 in UTC) was `unexpected ValueError`, exit 1."""
    write_items(station_log, 4, t0=time.time() - 60)
    r = edge_log("query", log_path, "--since", "20261129")
    assert r.exit_code == ExitCode.USAGE
    assert "reads as epoch seconds (1970-08-23), not as the date 2026-11-29; write 2026-11-29" in r.output
    assert edge_log("summary", log_path, "--until", "20261129").exit_code == ExitCode.USAGE
    assert edge_log("query", log_path, "--since", "20261129.0").exit_code == 0  # epoch seconds, said so
    r = edge_log("query", log_path, "--since", "9999-12-31T23:00-05:00")
    assert r.exit_code == ExitCode.USAGE and "lies outside the years 1 to 9999" in r.output, r.output


def test_a_source_or_station_filter_that_is_not_utf8_finds_the_items_of_that_name(station_log, log_path: Path):
    """A name with a byte that is not UTF-8, as the shell passes it (--source "$(ls parts)"), was "unexpected
    UnicodeEncodeError", exit 1: it is looked for as the log stores such a name."""
    station_log.write([record(1, defective=True, source="parts/caf\udce9.png"), record(2, defective=False)])
    result = edge_log("query", log_path, "--source", "caf\udce9", "--json")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["source"] for line in result.stdout.splitlines()] == ["parts/caf\\xe9.png"]
    result = edge_log("summary", log_path, "--station", "line\udce9")
    assert result.exit_code == 0, result.output
    assert "0 items" in result.stdout and "no run of station" in result.stderr


def test_a_paused_query_does_not_keep_the_stations_write_ahead_file_from_starting_over(station_log, log_path: Path):
    """`edge-log query station.db | less`, left open: the query's one statement held its snapshot for as long as
    the pager waited, so the station's write-ahead file could never start over and grew by every item it wrote
    (72 MB in 15 s against --log-max 4MB, 5.6 MB without the reader), bounded by the disk alone. It is read a page
    at a time now."""
    write_items(station_log, 2000)  # far more than a pipe holds: the query waits on its stdout
    proc = _edge_log_process("query", log_path, "--json", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        assert json.loads(proc.stdout.readline())["id"] == 1
        wal = Path(f"{log_path}-wal")
        deadline, busy = time.monotonic() + 30, 1
        while busy and time.monotonic() < deadline:  # once the query waits on the full pipe, holding no snapshot
            write_items(station_log, 10, t0=time.time())  # the station goes on
            busy = station_log.con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        assert busy == 0 and wal.stat().st_size == 0
        rest = proc.stdout.read().splitlines()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == ExitCode.OK and err == "", err
    assert [json.loads(line)["id"] for line in rest] == list(range(2, 2001))  # the items there when it began


def test_show_of_an_item_retention_deleted_says_so(station_log, log_path: Path, tmp_path: Path):
    """An id from an earlier export whose item --log-keep deleted since: "no item with id 3 in the inspection
    log" read as if the log had lost it."""
    write_items(station_log, 10, t0=time.time() - 7200)
    write_items(station_log, 10, t0=time.time())
    InspectionLog(LogConfig(log_path, station="line-3", keep_s=3600)).close()  # --log-keep 1h, started again
    result = edge_log("show", log_path, "3", "--out", tmp_path / "p.png")
    assert result.exit_code == ExitCode.BAD_DATA
    assert "no item with id 3" in result.output and "oldest item now is 11" in result.output
    assert "--log-keep" in result.output and not (tmp_path / "p.png").exists()
    result = edge_log("show", log_path, "99", "--out", tmp_path / "p.png")
    assert result.exit_code == ExitCode.BAD_DATA and "newest item is 20" in result.output
