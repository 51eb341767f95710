"""train-model on the datasets quality engineers bring: copies under the wrong class, tiny classes, other layouts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime.errors import ExitCode
from tests.conftest import make_dataset
from train import data as D
from train.cli import main

TINY = ["--epochs", "1", "--quiet", "--img-size", "32", "--batch-size", "16", "--loc-head-epochs", "0"]


def run(data: Path, out: Path, *args: object):
    return CliRunner().invoke(main, [str(a) for a in ("--data", data, "--out", out, *TINY, *args)])


def test_a_class_of_two_or_three_images_gets_one_in_validation(tmp_path: Path):
    """Three defect pictures: 15% of 3 rounds to none, and the run was refused with "validation split has fewer
    than two classes" although one image could go each way."""
    root = make_dataset(tmp_path / "d", n_train=20, n_test=4)
    for f in sorted((root / "train" / "def_front").glob("*.png"))[3:]:
        f.unlink()
    out = tmp_path / "run"
    r = run(root, out)
    assert r.exit_code == 0, r.output
    val = json.loads((out / "report.json").read_text())["validation"]
    assert val["tp"] + val["fn"] == 1  # the one defect picture held out
    labels = np.array([0] * 20 + [1] * 2)
    train, val = D.stratified_group_split(labels, [f"h{i}" for i in range(22)], 0.15, seed=0)
    assert labels[val].tolist().count(1) == 1 and labels[train].tolist().count(1) == 1


def test_byte_identical_copies_under_both_test_classes_are_refused(tmp_path: Path, synthetic_data: Path):
    """The same file in test/def_front/ and test/ok_front/: the test figures counted one copy wrong whatever the
    model said, exit 0 and no word (train/ was already checked)."""
    test = synthetic_data / "test"
    shutil.copy(test / "def_front" / "def_front_002.png", test / "ok_front" / "copy.png")
    r = run(synthetic_data, tmp_path / "run")
    assert r.exit_code == ExitCode.BAD_DATA, r.output
    assert r.output.strip().splitlines()[-1] == (
        f"error: {test}: 1 image(s) are byte-identical copies under both classes "
        "(ok_front/copy.png = def_front/def_front_002.png); remove or relabel them"
    )


@pytest.mark.parametrize("name", ["valid", "val", "Test"])
def test_a_held_out_folder_not_named_test_is_named_not_passed_over(tmp_path: Path, name: str):
    """train/ + valid/ (a Roboflow export), val/, or Test/: its images were never read, and the run's "val" figures
    (a share of train/) looked like theirs."""
    root = make_dataset(tmp_path / "d", n_train=16, n_test=4)
    (root / "test").rename(root / name)
    r = run(root, tmp_path / "run")
    assert r.exit_code == 0, r.output
    assert (
        f"warning: {root / name}: holds class folders (def_front, ok_front) but is not read: train-model validates "
        f"on a share of train/ and tests {root / 'test'}/<class>/; rename {name} to test to have its images tested"
    ) in r.output.splitlines(), r.output


def test_a_held_out_folder_beside_train_and_test_is_named(tmp_path: Path):
    """train/, valid/ and test/: valid/'s images were left out without a word."""
    root = make_dataset(tmp_path / "d", n_train=16, n_test=4)
    shutil.copytree(root / "test", root / "valid")
    (root / "runs").mkdir()  # a folder without class folders (run folders kept beside) is no one's business
    r = run(root, tmp_path / "run")
    assert r.exit_code == 0, r.output
    said = [x for x in r.output.splitlines() if "is not read" in x]
    assert said == [
        f"warning: {root / 'valid'}: holds class folders (def_front, ok_front) but is not read: train-model "
        f"validates on a share of train/ and tests {root / 'test'}/<class>/; move its images into those folders "
        "to use them"
    ]
