"""stdout redirected to a file (``edge-infer --json > verdicts.jsonl``) that another program deletes or empties
during the run, as it may do to an ``--output`` file."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.errors import ExitCode
from edge_runtime.infer import InferConfig, run_inference
from tests.edge_runtime.conftest import write_parts


class AtSecondBatch:
    """A listener that does something to the file between the first batch's records and the second's."""

    def __init__(self, act: Callable[[], None]) -> None:
        self.act, self.batches = act, 0

    def on_records(self, records: Any, items: Any) -> None:
        self.batches += 1
        if self.batches == 2:
            self.act()


def run_into(path: Path, parts: Path, model: Path, act: Callable[[], None], monkeypatch: pytest.MonkeyPatch) -> tuple:
    """Run with stdout redirected to ``path`` as a shell's ``>`` does (not appending), in batches of 2."""
    lines: list[str] = []
    with path.open("w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        cfg = InferConfig(source=str(parts), model=model, json_stdout=True, batch_size=2, listener=AtSecondBatch(act))
        summary, code = run_inference(cfg, log=lines.append)
    return summary, code, lines


def test_a_file_stdout_goes_to_deleted_during_the_run_gets_its_records_back(tmp_path, tiny_model, monkeypatch):
    """`rm verdicts.jsonl` under `edge-infer --json > verdicts.jsonl`: every record went into the unlinked file and
    was gone at the end, exit 0, not a word (a deleted --output file is written back)."""
    write_parts(tmp_path / "parts", [10, 200, 20, 220, 30, 240])
    out = tmp_path / "verdicts.jsonl"
    summary, code, lines = run_into(out, tmp_path / "parts", tiny_model, lambda: os.unlink(out), monkeypatch)
    assert code == ExitCode.OUTPUT_ERROR and summary.items == 6
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["source"] for r in records] == sorted(str(p) for p in (tmp_path / "parts").iterdir())
    assert lines[-1] == (
        f"error: {out}: the file stdout is redirected to was deleted during the run; its records were written back "
        f"to {out}; keep it until the run has ended"
    )


def test_a_file_stdout_goes_to_emptied_during_the_run_has_no_hole(tmp_path, tiny_model, monkeypatch):
    """logrotate's copytruncate (or `: > verdicts.jsonl`) under `--json > verdicts.jsonl`: the records after it
    followed a hole of NUL bytes as long as the file had been, and no JSON reader could read the file, exit 0."""
    write_parts(tmp_path / "parts", [10, 200, 20, 220, 30, 240])
    out = tmp_path / "verdicts.jsonl"
    summary, code, _ = run_into(out, tmp_path / "parts", tiny_model, lambda: out.write_bytes(b""), monkeypatch)
    assert code == ExitCode.OK and summary.items == 6
    data = out.read_bytes()
    assert b"\0" not in data
    records = [json.loads(line) for line in data.decode().splitlines()]
    assert [Path(r["source"]).name for r in records] == [f"part_{i:02d}.png" for i in range(2, 6)]


def test_a_file_stdout_goes_to_renamed_during_the_run_is_left_where_it_went(tmp_path, tiny_model, monkeypatch):
    """A rotation that renames the file: the records follow it, and the run ends as it would (nothing is written
    back under the old name)."""
    write_parts(tmp_path / "parts", [10, 200, 20, 220])
    out, rotated = tmp_path / "verdicts.jsonl", tmp_path / "verdicts.jsonl.1"
    summary, code, _ = run_into(out, tmp_path / "parts", tiny_model, lambda: out.rename(rotated), monkeypatch)
    assert code == ExitCode.OK and not out.exists()
    assert len(rotated.read_text().splitlines()) == summary.items == 4
