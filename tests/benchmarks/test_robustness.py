"""The camera-change stress test: every perturbation is scored for every model, and it needs no torch."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from click.testing import CliRunner

from benchmarks.robustness import PERTURBATIONS, affine, main, wider_frame
from tests.conftest import make_dataset


def test_help():
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0 and "--data" in r.output and "Exit codes" in r.output


def test_geometry_changes_move_the_part_and_keep_the_background():
    im = np.full((100, 100), 180, np.uint8)
    cv2.circle(im, (50, 50), 30, 40, -1)
    smaller = affine(im, zoom=0.5)
    assert (smaller < 100).sum() < (im < 100).sum() / 3  # the dark disk shrank to about a quarter
    assert smaller[0, 0] == 180  # the new border is the background, not black
    wide = wider_frame(im)
    assert wide.shape[1] > wide.shape[0] > 100


def test_every_perturbation_is_scored_for_every_model(tiny_models, tmp_path: Path):
    data = make_dataset(tmp_path / "d", n_train=1, n_test=4)
    out = tmp_path / "rob.json"
    int8, fp32 = tiny_models
    r = CliRunner().invoke(main, ["--data", str(data), "--model", str(int8), "--model", str(fp32), "--json", str(out)])
    assert r.exit_code == 0, r.output
    rows = json.loads(out.read_text())
    assert len(rows) == 2 * len(PERTURBATIONS)
    assert {r["perturbation"] for r in rows} == {p.name for p in PERTURBATIONS}
    assert all(r["n"] == 8 and r["missed_defects"] + r["false_alarms"] <= 8 for r in rows)
    assert r.output.count("\n| tiny_") == 2 * len(PERTURBATIONS)


def test_data_without_two_class_folders_is_exit_3(tmp_path: Path, tiny_models):
    (tmp_path / "only").mkdir()
    r = CliRunner().invoke(main, ["--data", str(tmp_path), "--model", str(tiny_models[0])])
    assert r.exit_code == 3 and r.output.startswith("error: ")
