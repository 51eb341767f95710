"""Dataset layouts and bad input, through the same functions train-model uses."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.errors import DataError
from edge_runtime.preprocess import PreprocessSpec
from tests.conftest import make_dataset
from train import data as D

SPEC = PreprocessSpec(size=32)


def test_kaggle_folder_names_are_understood(synthetic_data: Path):
    cm = D.resolve_classes(synthetic_data / "train", None)
    assert (cm.positive_dir, cm.negative_dir) == ("def_front", "ok_front")
    assert cm.class_names == ("ok", "defective")


def test_other_class_names_need_and_accept_positive_class(tmp_path: Path):
    root = make_dataset(tmp_path / "d", classes=("scratched", "good"))
    with pytest.raises(DataError, match="--positive-class"):
        D.resolve_classes(root / "train", None)
    cm = D.resolve_classes(root / "train", "scratched")
    assert cm.class_names == ("good", "scratched")
    with pytest.raises(DataError, match="not one of the class folders"):
        D.resolve_classes(root / "train", "dented")


def test_positive_class_naming_the_ok_folder_is_refused(synthetic_data: Path):
    """--positive-class ok_front trained a model that called the OK parts defective; the runtime then printed
    "label": "ok", "defective": true, and a gate stopped the good parts."""
    with pytest.raises(DataError, match="names the OK parts' folder; the defective class is 'def_front'"):
        D.resolve_classes(synthetic_data / "train", "ok_front")
    assert D.resolve_classes(synthetic_data / "train", "def_front").positive_dir == "def_front"
    (synthetic_data / "train" / "def_front").rename(synthetic_data / "train" / "bad")  # whatever the other is named
    with pytest.raises(DataError, match="names the OK parts' folder; the defective class is 'bad'"):
        D.resolve_classes(synthetic_data / "train", "ok_front")


def test_a_class_with_one_image_is_refused_whatever_the_validation_share():
    """One defective image: "add images or raise --val-fraction"; raised to 0.6, a model that had never seen a
    defect was trained, exit 0."""
    labels = np.array([0] * 20 + [1])
    hashes = [f"h{i}" for i in range(21)]
    for fraction in (0.15, 0.6, 0.85):
        with pytest.raises(DataError, match="the defective class has fewer than two different images"):
            D.stratified_group_split(labels, hashes, fraction, seed=0)
    twins = np.array([0] * 20 + [1, 1])  # two byte-identical defect images are one image to the split
    with pytest.raises(DataError, match="defective class has fewer than two"):
        D.stratified_group_split(twins, [*hashes[:20], "same", "same"], 0.5, seed=0)


def test_single_class_missing_and_empty_folders_are_refused(tmp_path: Path):
    with pytest.raises(DataError, match="folder not found"):
        D.resolve_classes(tmp_path / "nowhere", None)
    (tmp_path / "one" / "def_front").mkdir(parents=True)
    with pytest.raises(DataError, match="only one class folder"):
        D.resolve_classes(tmp_path / "one", None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        D.resolve_classes(tmp_path / "empty", None)
    root = tmp_path / "noimg" / "train"
    (root / "def_front").mkdir(parents=True)
    (root / "ok_front").mkdir()
    cm = D.resolve_classes(root, None)
    with pytest.raises(DataError, match="no images"):
        D.load_split("train", root, cm, SPEC, max_bad_fraction=0.05)


def test_corrupt_images_are_skipped_counted_and_listed(synthetic_data: Path):
    train = synthetic_data / "train"
    (train / "ok_front" / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (train / "ok_front" / "notes.txt").write_text("not an image")
    cm = D.resolve_classes(train, None)
    split = D.load_split("train", train, cm, SPEC, max_bad_fraction=0.05)
    assert len(split) == 48
    assert [f for f, _ in split.bad] == ["ok_front/zz_broken.jpg"]
    assert split.ignored == ["ok_front/notes.txt"]
    assert split.images.shape == (48, 32, 32) and split.images.dtype == np.uint8


def test_too_many_corrupt_images_abort_with_a_count(synthetic_data: Path):
    train = synthetic_data / "train"
    for i in range(5):
        (train / "def_front" / f"bad{i}.png").write_bytes(b"garbage")
    cm = D.resolve_classes(train, None)
    with pytest.raises(DataError, match="5 of 53 images are unreadable"):
        D.load_split("train", train, cm, SPEC, max_bad_fraction=0.05)


def test_gray_rgb_rgba_and_16bit_images_all_load(tmp_path: Path):
    root = make_dataset(tmp_path / "d", n_train=4, n_test=0)
    src = cv2.imread(str(next((root / "train" / "ok_front").glob("*.png"))), cv2.IMREAD_GRAYSCALE)
    d = root / "train" / "ok_front"
    cv2.imwrite(str(d / "rgb.png"), cv2.cvtColor(src, cv2.COLOR_GRAY2BGR))
    cv2.imwrite(str(d / "rgba.png"), cv2.cvtColor(src, cv2.COLOR_GRAY2BGRA))
    cv2.imwrite(str(d / "deep.png"), src.astype(np.uint16) * 257)
    cv2.imwrite(str(d / "photo.jpg"), src)
    cm = D.resolve_classes(root / "train", None)
    split = D.load_split("train", root / "train", cm, SPEC, max_bad_fraction=0.0)
    assert not split.bad and len(split) == 12
    ref = split.images[split.files.index("ok_front/rgb.png")].astype(int)
    for name in ("rgba.png", "deep.png"):
        assert np.abs(split.images[split.files.index(f"ok_front/{name}")].astype(int) - ref).max() <= 1


def test_split_is_stratified_seeded_and_keeps_duplicates_together():
    labels = np.array([0] * 40 + [1] * 60)
    hashes = [f"h{i}" for i in range(100)]
    hashes[5] = hashes[6] = hashes[7] = "same"  # three identical OK images
    tr, va = D.stratified_group_split(labels, hashes, 0.2, seed=3)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(100))
    assert abs(int((labels[va] == 0).sum()) - 8) <= 2 and abs(int((labels[va] == 1).sum()) - 12) <= 2
    side = {i: (i in set(va.tolist())) for i in (5, 6, 7)}
    assert len(set(side.values())) == 1
    tr2, va2 = D.stratified_group_split(labels, hashes, 0.2, seed=3)
    assert np.array_equal(va, va2)
    _, va3 = D.stratified_group_split(labels, hashes, 0.2, seed=4)
    assert not np.array_equal(va, va3)


def test_exact_duplicates_between_splits_are_found(tmp_path: Path):
    root = make_dataset(tmp_path / "d", n_train=6, n_test=3)
    src = root / "train" / "ok_front" / "ok_front_000.png"
    (root / "test" / "ok_front" / "copy.png").write_bytes(src.read_bytes())
    cm = D.resolve_classes(root / "train", None)
    train = D.load_split("train", root / "train", cm, SPEC, max_bad_fraction=0)
    test = D.load_split("test", root / "test", cm, SPEC, max_bad_fraction=0)
    assert D.duplicates_between(train, test) == [("ok_front/copy.png", "ok_front/ok_front_000.png")]


def _load_within(seconds: float, *args, **kwargs) -> D.Split:
    """load_split in a thread: a test of a file that used to block forever fails instead of hanging the suite."""
    import threading

    out: dict = {}
    worker = threading.Thread(target=lambda: out.update(split=D.load_split(*args, **kwargs)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "load_split blocked (a FIFO read to the end?)"
    return out["split"]


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="no FIFOs here")
def test_a_fifo_or_a_link_loop_named_like_an_image_is_skipped_not_a_hang_or_a_crash(synthetic_data: Path):
    """A FIFO hung training for good (deaf to Ctrl-C and SIGTERM); a link loop stopped it with exit 1."""
    import os

    ok = synthetic_data / "train" / "ok_front"
    os.mkfifo(ok / "zz_fifo.jpeg")
    (ok / "zz_loop1.jpeg").symlink_to("zz_loop2.jpeg")
    (ok / "zz_loop2.jpeg").symlink_to("zz_loop1.jpeg")
    cm = D.resolve_classes(synthetic_data / "train", None)
    split = _load_within(20, "train", synthetic_data / "train", cm, SPEC, max_bad_fraction=0.1)
    assert sorted(f for f, _ in split.bad) == [
        "ok_front/zz_fifo.jpeg",
        "ok_front/zz_loop1.jpeg",
        "ok_front/zz_loop2.jpeg",
    ]
    assert len(split) == 48


def test_damaged_and_tiny_images_are_trained_on_but_named(synthetic_data: Path):
    from tests.conftest import REPO

    ok = synthetic_data / "train" / "ok_front"
    data = bytearray((REPO / "edge_runtime/samples/test/def_front/cast_def_0_3446.jpeg").read_bytes())
    data[1388] ^= 0x10  # one flipped bit: libjpeg conceals it and decodes the rest
    (ok / "zz_flipped.jpeg").write_bytes(bytes(data))
    cv2.imwrite(str(ok / "zz_line.png"), np.full((1, 300), 128, np.uint8))
    cm = D.resolve_classes(synthetic_data / "train", None)
    split = D.load_split("train", synthetic_data / "train", cm, SPEC, max_bad_fraction=0.1)
    warned = dict(split.warned)
    assert len(split) == 50 and set(warned) == {"ok_front/zz_flipped.jpeg", "ok_front/zz_line.png"}
    assert "Corrupt JPEG" in warned["ok_front/zz_flipped.jpeg"]  # trained on without a word before
    assert "only 300x1 px" in warned["ok_front/zz_line.png"]


def test_class_folders_given_directly_are_told_where_to_go(tmp_path: Path):
    root = make_dataset(tmp_path / "d")
    flat = tmp_path / "flat"
    (root / "train").rename(flat)
    with pytest.raises(DataError, match=r"holds class folders directly \(def_front, ok_front\).*flat/train"):
        D.check_train_folder(flat)


def test_the_train_folder_advice_fits_the_layout_given(tmp_path: Path):
    root = make_dataset(tmp_path / "d")
    with pytest.raises(DataError, match=r"no train/ folder here; pass --data .*/d \("):
        D.check_train_folder(root / "train")  # --data d/train: "move them to d/train/train/<class>/" was wrong
    (root / "train").rename(root / "Train")
    with pytest.raises(DataError, match="rename Train to train"):
        D.check_train_folder(root)
    (root / "Train").rename(root / "ok_and_def")
    with pytest.raises(DataError, match=r"holds class folders directly \(ok_and_def\)"):
        D.check_train_folder(root)  # test/ is not named as a class folder


def test_the_same_image_under_both_classes_is_refused(tmp_path: Path):
    """Byte-identical copies in def_front/ and ok_front/ trained silently: validation held the same picture labelled
    both ways, and the recall-first threshold was forced into false alarms."""
    import shutil

    root = make_dataset(tmp_path / "d")
    ok = sorted((root / "train" / "ok_front").glob("*.png"))
    for f in ok[:2]:
        shutil.copy(f, root / "train" / "def_front" / f"copy_{f.name}")
    cm = D.resolve_classes(root / "train", None)
    full = D.load_split("train", root / "train", cm, SPEC, max_bad_fraction=0.05)
    with pytest.raises(DataError, match=r"2 image\(s\) are byte-identical copies under both classes \(.*copy_"):
        D.check_label_conflicts(full)
    D.check_label_conflicts(D.load_split("train", make_dataset(tmp_path / "clean") / "train", cm, SPEC,
                                         max_bad_fraction=0.05))  # fmt: skip


def test_a_third_class_folder_in_test_is_named_not_dropped_in_silence(tmp_path: Path):
    """test/unknown/ beside the two classes: its images were left out of the test figures without a word."""
    import shutil

    from train.config import TrainConfig
    from train.main import load_data, spec_for

    root = make_dataset(tmp_path / "d")
    shutil.copytree(root / "test" / "ok_front", root / "test" / "unknown")
    logs: list[str] = []
    cfg = TrainConfig(data=root, out=tmp_path / "run", img_size=32)
    ds = load_data(cfg, spec_for(cfg), logs.append)
    assert len(ds.test) == 16
    assert (
        f"warning: {root / 'test' / 'unknown'}: not a class of train/ (def_front, ok_front); its images are not tested"
        in logs
    )
