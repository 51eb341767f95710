"""train-model on the datasets quality engineers bring: copies under the wrong class, tiny classes, other layouts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime.errors import ExitCode
from edge_runtime.preprocess import PreprocessSpec
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


def test_a_re_encoded_copy_under_the_other_class_is_named(tmp_path: Path, synthetic_data: Path):
    """A defect picture saved again as JPEG (or as BMP) into ok_front/: its bytes differ, so the byte check let it
    through, and the run trained and validated on the same picture labelled both ways without a word."""
    src = synthetic_data / "train" / "def_front" / "def_front_003.png"
    picture = cv2.imread(str(src))
    ok = synthetic_data / "train" / "ok_front"
    cv2.imwrite(str(ok / "export_1.jpg"), picture, [cv2.IMWRITE_JPEG_QUALITY, 85])
    cv2.imwrite(str(ok / "export_2.bmp"), picture)
    out = tmp_path / "run"
    r = run(synthetic_data, out)
    assert r.exit_code == 0, r.output
    said = [x for x in r.output.splitlines() if "nearly the same picture" in x]
    for copy in ("ok_front/export_1.jpg", "ok_front/export_2.bmp"):
        assert (
            f"warning: trained on {synthetic_data / 'train' / 'def_front' / 'def_front_003.png'}: nearly the same "
            f"picture as {copy} in the other class folder (a re-encoded copy?); one of the two labels is wrong: "
            "remove or relabel one"
        ) in said, r.output
    assert len(said) == 2, said  # the other synthetic parts of both classes are told apart
    used = json.loads((out / "report.json").read_text())["data"]["used_with_warnings"]
    assert [w["file"] for w in used] == ["def_front/def_front_003.png"] * 2


def test_distinct_real_parts_of_the_two_classes_are_not_called_copies(casting_dir: Path):
    """The closest defective / OK pair of the casting images is far from a re-encoded copy: no false warning."""
    cm = D.resolve_classes(casting_dir / "train", None)
    split = D.load_split("train", casting_dir / "train", cm, PreprocessSpec(size=32), max_bad_fraction=0,
                         limit_per_class=300)  # fmt: skip
    assert not [w for _, w in split.warned if "nearly the same picture" in w]
