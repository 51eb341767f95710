"""``--output FILE.json`` is one JSON document (an array of records) that parses after every item; ``.jsonl``
stays JSON lines. It was JSON lines under a .json name, which ``json.load`` refuses after the first record."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_runtime.cli import main
from edge_runtime.errors import OutputError
from edge_runtime.run_outputs import open_file_sink
from tests.edge_runtime.conftest import write_parts


def test_edge_infer_output_json_is_one_array_with_the_records_of_jsonl(tmp_path: Path, tiny_model: Path) -> None:
    write_parts(tmp_path / "parts", [10, 220, 240])
    for name in ("v.json", "v.jsonl"):
        args = ["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--output", str(tmp_path / name)]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
    array = json.loads((tmp_path / "v.json").read_text())
    lines = [json.loads(x) for x in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert isinstance(array, list) and [r["defective"] for r in array] == [False, True, True]
    assert [r["source"] for r in array] == [r["source"] for r in lines]
    assert len((tmp_path / "v.json").read_text().splitlines()) == 3 + 2  # a record per line, between [ and ]


def test_json_array_parses_after_every_record_and_when_empty(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    sink = open_file_sink(path)
    assert json.loads(path.read_text()) == []  # a new file, before the source opened (a kill then left it empty)
    sink.begin()
    assert json.loads(path.read_text()) == []  # a run that inspected nothing yet
    written = []
    for i in range(4):
        rec = {"source": f"p{i}.png", "score": i / 4, "defective": i % 2 == 1}
        sink.write(rec)
        written.append(rec)
        assert json.loads(path.read_text()) == written  # as if the run were killed here
    sink.close()
    assert json.loads(path.read_text()) == written


def test_a_failed_write_leaves_the_array_closed_with_the_records_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.json"
    sink = open_file_sink(path)
    sink.write({"source": "a.png"})
    real_write = os.write

    def full_disk(fd: int, data: bytes | memoryview) -> int:
        if fd == sink.fd and bytes(data).startswith(b",\n"):
            real_write(fd, bytes(data)[:7])  # a torn record, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OutputError, match="free space"):
        sink.write({"source": "b.png"})
    monkeypatch.undo()
    sink.close()
    assert json.loads(path.read_text()) == [{"source": "a.png"}]


def test_json_array_onto_a_fifo_is_closed_at_the_end(tmp_path: Path) -> None:
    fifo = tmp_path / "feed.json"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader is there (else the open is refused: ENXIO)
    try:
        sink = open_file_sink(fifo)
        for i in range(3):
            sink.write({"i": i})
        sink.close()
        got = os.read(reader, 1 << 16)
    finally:
        os.close(reader)
    assert json.loads(got) == [{"i": 0}, {"i": 1}, {"i": 2}]


@pytest.mark.parametrize("name", ["r.json", "r.jsonl", "r.csv"])
def test_a_file_emptied_under_the_run_starts_again_without_a_hole(tmp_path: Path, name: str) -> None:
    """logrotate's copytruncate, or `: > r.json`: the .json run ended with exit 1 ("unexpected OSError"), and
    JSON lines went on after a hole of NUL bytes as long as what had been written."""
    path = tmp_path / name
    sink = open_file_sink(path)
    sink.write({"source": "a.png"})
    path.write_bytes(b"")  # emptied by another program
    sink.write({"source": "b.png"})
    sink.close()
    data = path.read_bytes()
    assert b"\0" not in data and b"b.png" in data and b"a.png" not in data
    if name.endswith(".json"):
        assert json.loads(data) == [{"source": "b.png"}]
    elif name.endswith(".jsonl"):
        assert [json.loads(x) for x in data.splitlines()] == [{"source": "b.png"}]
    else:  # the header first again: a reader took the first record for the header
        assert [r["source"] for r in csv.DictReader(io.StringIO(data.decode()))] == ["b.png"]


def test_a_json_file_emptied_between_the_size_check_and_the_write_gets_no_hole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race a copytruncate can hit: the record was written at the old offset after the file was emptied, and
    the file kept a hole of NUL bytes for good (the run still exited 0)."""
    path = tmp_path / "r.json"
    sink = open_file_sink(path)
    sink.write({"source": "a.png"})
    checked = sink._closing_at

    def truncated_right_after_the_check() -> int | None:
        at = checked()
        path.write_bytes(b"")  # another program empties the file now
        return at

    monkeypatch.setattr(sink, "_closing_at", truncated_right_after_the_check)
    sink.write({"source": "b.png"})
    monkeypatch.undo()
    sink.write({"source": "c.png"})
    sink.close()
    data = path.read_bytes()
    assert b"\0" not in data and json.loads(data) == [{"source": "b.png"}, {"source": "c.png"}]


def test_a_json_file_changed_under_the_run_is_one_error_line(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    sink = open_file_sink(path)
    sink.write({"source": "a.png"})
    with path.open("ab") as other:
        other.write(b'{"not": "ours"}\n')
    with pytest.raises(OutputError, match="changed by another program"):
        sink.write({"source": "b.png"})
    sink.close()


@pytest.mark.parametrize(
    ("err", "advice"),
    [
        (errno.ENOSPC, "free space"),
        (errno.EFBIG, r"file-size limit \(ulimit -f\): raise it"),  # it said "free space", which cannot help
        (errno.EPIPE, "the program reading it went away"),
    ],
)
def test_a_failed_output_write_advises_by_its_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int, advice: str
) -> None:
    sink = open_file_sink(tmp_path / "r.jsonl")
    real_write = os.write

    def failing(fd: int, data: bytes | memoryview) -> int:
        if fd == sink.fd:
            raise OSError(err, os.strerror(err))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing)
    with pytest.raises(OutputError, match=advice):
        sink.write({"source": "a.png"})
    monkeypatch.undo()
    sink.close()


def test_a_fifo_without_its_reader_says_to_start_the_reader(tmp_path: Path) -> None:
    fifo = tmp_path / "feed.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="no program is reading this FIFO: start its reader first"):
        open_file_sink(fifo)


def test_an_output_suffix_that_names_no_format_is_a_usage_error(tmp_path: Path, tiny_model: Path) -> None:
    """It was exit 7, "output cannot be written", for a file that could be written."""
    write_parts(tmp_path / "parts", [10])
    args = ["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--output", str(tmp_path / "r.txt")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and ".jsonl, .json or .csv" in result.stderr, result.output
    assert not (tmp_path / "r.txt").exists()


def test_a_csv_emptied_between_the_size_check_and_the_append_gets_its_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row landed at the start of the emptied file without the header, for good."""
    path = tmp_path / "r.csv"
    sink = open_file_sink(path)
    sink.write({"source": "a.png"})
    real_write = os.write

    def emptied_first(fd: int, data: bytes | memoryview) -> int:
        if fd == sink.fd and b"b.png" in bytes(data) and not bytes(data).startswith(b"source,"):
            os.truncate(path, 0)  # another program empties the file just before the append
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", emptied_first)
    sink.write({"source": "b.png"})
    monkeypatch.undo()
    sink.close()
    assert [r["source"] for r in csv.DictReader(io.StringIO(path.read_text()))] == ["b.png"]


def test_csv_cells_hold_lists_as_edge_logs_csv_does(tmp_path):
    """unlike_training and defect_box were written as Python's repr (['no part found ...'], quotes and brackets),
    unlike edge-log's CSV of the same records."""
    from edge_runtime.outputs import FileSink

    sink = FileSink(tmp_path / "r.csv", csv_format=True)
    sink.write({"source": "a.png", "defective": True, "score": 0.9, "defect_box": [1, 2, 30, 40],
                "unlike_training": ["no part found in the frame", "background brighter (240 > 214)"]})  # fmt: skip
    sink.close()
    (row,) = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))
    assert row["defect_box"] == "1; 2; 30; 40"
    assert row["unlike_training"] == "no part found in the frame; background brighter (240 > 214)"
    assert row["frame"] == "" and row["defective"] == "True"


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_kept_as_text(tmp_path, tiny_model, monkeypatch):
    """A station or a file named like a formula (=cmd|'/c calc'!A1, +1+2.png): edge-infer's --output and edge-log's
    --csv wrote it raw, and a spreadsheet opening the rejects file ran it."""
    import cv2
    import numpy as np

    from edge_runtime.station.log_cli import main as edge_log

    monkeypatch.chdir(tmp_path)
    cv2.imwrite("+1+2.png", np.full((64, 64), 30, np.uint8))
    args = ["--model", str(tiny_model), "--source", "+1+2.png", "--output", "r.csv", "--log", "s.db", "--quiet"]
    r = CliRunner().invoke(main, [*args, "--station", "=cmd|'/c calc'!A1"])
    assert r.exit_code == 0, r.output
    (row,) = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))
    assert row["source"] == "'+1+2.png" and float(row["score"]) >= 0
    q = CliRunner().invoke(edge_log, ["query", "s.db", "--csv"])
    (logged,) = list(csv.DictReader(io.StringIO(q.stdout)))
    assert logged["station"] == "'=cmd|'/c calc'!A1" and logged["source"] == "'+1+2.png"
