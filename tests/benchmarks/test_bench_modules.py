"""``python -m benchmarks.robustness`` and ``benchmarks.localisation`` as a user runs them: the bundled models by
their short names, as edge-infer and edge-bench take them."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from benchmarks.localisation import main as localisation_main
from benchmarks.robustness import main as robustness_main
from tests.benchmarks.test_localisation import marked_images
from tests.conftest import make_dataset


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
