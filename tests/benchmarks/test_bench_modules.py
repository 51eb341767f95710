"""``python -m benchmarks.robustness`` and ``benchmarks.localisation`` as a user runs them: the bundled models by
their short names, as edge-infer and edge-bench take them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmarks.localisation import main as localisation_main
from benchmarks.robustness import main as robustness_main
from edge_runtime.errors import ExitCode
from tests.benchmarks.test_localisation import TINY_MAP, marked_images
from tests.conftest import REPO, make_dataset

TINY = REPO / "tests" / "models" / "tiny.onnx"


def test_robustness_takes_the_bundled_models_by_their_short_names(tmp_path: Path, monkeypatch):
    """--model fp32 was "fp32: model file not found; pass --model PATH ... (or the bare name fp32, without a path,
    for the bundled models)", exit 4: the bare name it had been given."""
    data = make_dataset(tmp_path / "d", n_train=0, n_test=2)
    monkeypatch.chdir(tmp_path)  # no file named fp32 here: the name is the bundled model's
    args = ["--data", str(data), "--model", "fp32", "--only", "zoom 0.7", "--json", str(tmp_path / "r.json")]
    r = CliRunner().invoke(robustness_main, args)
    assert r.exit_code == 0, r.output
    assert {row["model"] for row in json.loads((tmp_path / "r.json").read_text())} == {"defectnet_fp32.onnx"}


def test_localisation_takes_the_bundled_models_by_their_short_names(tmp_path: Path, monkeypatch):
    data, boxes = marked_images(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "loc"
    args = ["--data", str(data), "--boxes", str(boxes), "--model", "int8", "--no-station", "--out", str(out)]
    r = CliRunner().invoke(localisation_main, args)
    assert r.exit_code == 0, r.output
    summary = json.loads(out.with_suffix(".json").read_text())["summary"]
    assert {s["model"] for s in summary} == {"defectnet_int8.onnx"}


STOPPED_IN_THE_MIDDLE = """
import os, signal, sys, time
import benchmarks.{module} as module

def stopped(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)  # `kill PID` in the middle of the run
    time.sleep(30)

module.{step} = stopped
module.main(sys.argv[1:], prog_name="{module}")
"""


@pytest.mark.parametrize(("module", "step"), [("robustness", "run"), ("localisation", "evaluate")])
def test_sigterm_is_an_interruption_with_its_line_and_exit_code(tmp_path: Path, module: str, step: str):
    """SIGTERM (a scheduler's stop, `kill`) ended the run by the signal: exit 143 in a shell, not a word."""
    data, boxes = marked_images(tmp_path)
    if module == "robustness":
        args = ["--data", str(make_dataset(tmp_path / "d", n_train=0, n_test=2)), "--model", str(TINY)]
    else:
        args = ["--data", str(data), "--boxes", str(boxes), "--model", str(TINY_MAP), "--out", str(tmp_path / "o")]
    code = STOPPED_IN_THE_MIDDLE.format(module=module, step=step)
    r = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == ExitCode.INTERRUPTED, (r.returncode, r.stderr)
    assert r.stderr.strip().splitlines() == ["error: interrupted"]


def localisation(tmp_path: Path, out: Path):  # noqa: ANN201 - click's Result
    data, boxes = (
        (tmp_path / "data", tmp_path / "boxes.json") if (tmp_path / "data").is_dir() else marked_images(tmp_path)
    )
    args = ["--data", str(data), "--boxes", str(boxes), "--model", str(TINY_MAP), "--no-station", "--out", str(out)]
    return CliRunner().invoke(localisation_main, args)


def test_localisation_keeps_a_dotted_out_stem(tmp_path: Path):
    """--out res/loc.v2 wrote res/loc.md, .json and .png: over the files of a run with --out res/loc.v1."""
    r = localisation(tmp_path, tmp_path / "res" / "loc.v2")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == ["loc.v2.json", "loc.v2.md", "loc.v2.png"]
    r = localisation(tmp_path, tmp_path / "res" / "loc.json")  # a file name of the set: its stem, as before
    assert r.exit_code == 0 and (tmp_path / "res" / "loc.png").is_file(), r.output


def test_localisation_writes_its_three_files_all_or_none(tmp_path: Path):
    """A grid that could not be written left the new .md and .json beside the last run's grid."""
    out = tmp_path / "res" / "loc"
    out.parent.mkdir()
    for suffix in (".md", ".json"):
        out.with_suffix(suffix).write_text(f"the last complete run's {suffix}\n")
    out.with_suffix(".png").mkdir()  # where the grid goes, a folder: it cannot be written
    r = localisation(tmp_path, out)
    assert r.exit_code == ExitCode.OUTPUT_ERROR and r.stderr.startswith("error: "), r.output
    assert "pointing hit rate" in r.stdout  # the results themselves are not lost
    for suffix in (".md", ".json"):
        assert out.with_suffix(suffix).read_text() == f"the last complete run's {suffix}\n"


def test_localisation_out_never_replaces_its_boxes_or_lands_among_the_images(tmp_path: Path):
    """--boxes marks.json --out marks wrote the results JSON over the hand-marked boxes (exit 0; the next run
    failed "not a readable defect-box file"); an --out inside --data put the grid among the test images."""
    data, boxes = marked_images(tmp_path)
    marks = boxes.read_bytes()
    for out in (boxes.with_suffix(""), data / "d" / "loc"):
        args = ["--data", str(data), "--boxes", str(boxes), "--model", str(TINY_MAP), "--out", str(out)]
        r = CliRunner().invoke(localisation_main, args)
        assert r.exit_code == ExitCode.OUTPUT_ERROR and r.output.startswith("error: "), r.output
        assert r.output.count("\n") == 1  # before any work: no table
    assert boxes.read_bytes() == marks and sorted(p.name for p in (data / "d").iterdir()) == ["0.png", "1.png", "2.png"]


def test_second_look_and_soak_take_the_bundled_models_by_their_short_names(tmp_path: Path, monkeypatch):
    """As robustness and localisation: `--model fp32` was refused as a missing file named fp32 (exit 4)."""
    from benchmarks.second_look import main as second_look_main
    from benchmarks.soak import main as soak_main

    data = make_dataset(tmp_path / "d", n_train=0, n_test=2)
    monkeypatch.chdir(tmp_path)  # no file named fp32 here: the name is the bundled model's
    args = ["--data", str(data), "--model", "fp32", "--rounds", "2", "--json", str(tmp_path / "s.json")]
    r = CliRunner().invoke(second_look_main, args)
    assert r.exit_code == 0, r.output
    assert "defectnet_fp32.onnx" in r.output  # the table names the model it timed
    args = ["--model", "fp32", "--frames", "1000", "--window", "100", "--out", str(tmp_path / "soak")]
    r = CliRunner().invoke(soak_main, args)
    assert r.exit_code == 0, r.output
    assert "defectnet_fp32.onnx" in (tmp_path / "soak" / "soak.json").read_text()
