"""The one class-folder reader: the rules training, export and the benchmarks share."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_runtime import datasets
from edge_runtime.errors import DataError
from tests.conftest import make_dataset


def test_split_or_test_folder_labels_and_stray_files(tmp_path: Path):
    root = make_dataset(tmp_path / "d", n_train=3, n_test=2)
    (root / "test" / "notes.txt").write_text("beside the class folders: ignored")
    (root / "test" / "ok_front" / "readme.md").write_text("inside a class folder: ignored and reported")
    (root / "test" / "ok_front" / ".hidden.png").write_bytes(b"x")
    classes = datasets.find_class_folders(root)  # finds test/
    assert (classes.root, classes.negative, classes.positive) == (root / "test", "ok_front", "def_front")
    assert classes.class_names == ("ok", "defective")
    listing = datasets.list_labelled(classes)
    assert listing.labels == [0, 0, 1, 1]
    assert [p.name for p in listing.ignored] == ["readme.md"]
    train = datasets.find_class_folders(root / "train")
    assert len(datasets.list_labelled(train, limit_per_class=2).files) == 4


def test_positive_class_rules(tmp_path: Path):
    root = make_dataset(tmp_path / "d", classes=("scratched", "good"), n_train=1, n_test=1)
    with pytest.raises(DataError, match="--positive-class"):
        datasets.find_class_folders(root)
    assert datasets.find_class_folders(root, positive="scratched").class_names == ("good", "scratched")
    assert datasets.find_class_folders(root, candidates=[("good", "scratched")]).positive == "scratched"
    (root / "test" / "third").mkdir()
    with pytest.raises(DataError, match="3 class folders"):
        datasets.find_class_folders(root, positive="scratched")
    with pytest.raises(DataError, match="not found"):
        datasets.find_class_folders(tmp_path / "missing")


def test_links_to_folders_are_not_followed(tmp_path: Path):
    root = make_dataset(tmp_path / "d", n_train=1, n_test=2)
    ok = root / "test" / "ok_front"
    (ok / "loop").symlink_to(ok)
    assert len(datasets.list_images(ok)) == 2


def test_a_class_folder_nested_deeper_than_pythons_recursion_limit_is_listed(tmp_path: Path):
    """A folder nested 1,100 deep inside a class folder ended train-model with "unexpected RecursionError", exit 1."""
    folder = tmp_path / "ok_front"
    deep = folder
    folder.mkdir()
    for _ in range(1100):  # os.makedirs recurses too
        deep = deep / "d"
        deep.mkdir()
    (deep / "part.jpeg").write_bytes(b"jpeg")
    (folder / "top.jpeg").write_bytes(b"jpeg")
    try:
        assert [p.name for p in datasets.list_images(folder)] == ["part.jpeg", "top.jpeg"]
    finally:  # removed here, deepest first: pytest's clean-up of old temporary folders recurses, and failed on it
        (deep / "part.jpeg").unlink()
        while deep != folder:
            deep.rmdir()
            deep = deep.parent
