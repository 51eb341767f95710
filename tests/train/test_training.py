"""A short training on real casting images: what lands in the run folder, and determinism."""

import json
from pathlib import Path

import pytest
import torch

from edge_runtime.metrics import binary_metrics
from train.checkpoint import load_checkpoint, model_from_checkpoint
from train.config import TrainConfig
from train.engine import predict_scores
from train.main import main

pytestmark = pytest.mark.slow


def quick_cfg(data: Path, out: Path, **kw) -> TrainConfig:
    return TrainConfig(data=data, out=out, epochs=1, max_images_per_class=60, quiet=True, threads=2, **kw)


@pytest.fixture(scope="module")
def real_run(casting_dir: Path, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run") / "a"
    report = main(quick_cfg(casting_dir, out), log=lambda _m: None)
    return out, report


def test_run_folder_has_every_artefact(real_run):
    out, _ = real_run
    for name in (
        "best.pt",
        "last.pt",
        "report.json",
        "metrics.jsonl",
        "curves.png",
        "confusion.png",
        "augmentations.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_report_has_honest_test_metrics(real_run):
    out, report = real_run
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["test"]["accuracy"] == report["test"]["accuracy"]
    for split in ("validation", "test", "test_leakage_free"):
        for key in ("accuracy", "precision", "recall", "f1", "auroc"):
            assert 0.0 <= on_disk[split][key] <= 1.0, (split, key)
    assert on_disk["train_seconds"] > 0
    # 60 images per class of train and test: the leakage-free subset drops the test images also in train.
    n_dup = len(on_disk["leakage"]["test_duplicates"])
    assert on_disk["test"]["n"] == 120
    assert on_disk["test_leakage_free"]["n"] == 120 - n_dup
    assert on_disk["validation"]["recall"] == 1.0  # the threshold is chosen for full defect recall on validation


def test_misclassified_test_images_each_get_a_png(real_run):
    out, report = real_run
    pngs = list((out / "misclassified").glob("*.png")) if (out / "misclassified").exists() else []
    assert len(pngs) == len(report["test"]["errors"])


def test_checkpoint_rebuilds_its_model_alone_and_reproduces_the_report(real_run, casting_dir: Path):
    out, report = real_run
    ckpt = load_checkpoint(out / "best.pt")  # weights_only=True inside
    assert ckpt["class_names"] == ["ok", "defective"]
    assert set(ckpt["preprocess"]) >= {"size", "channels", "scale", "mean", "std", "resize", "version"}
    assert ckpt["data"]["train_files"] and ckpt["data_fingerprint"] == report["data"]["fingerprint"]
    model = model_from_checkpoint(ckpt)
    from edge_runtime.preprocess import PreprocessSpec
    from train.data import load_split, resolve_classes

    spec = PreprocessSpec.from_dict(ckpt["preprocess"])
    cm = resolve_classes(casting_dir / "train", None)
    test = load_split("test", casting_dir / "test", cm, spec, max_bad_fraction=0, limit_per_class=60)
    # Scored as the runtime scores it: with the second look, each image averaged with its mirror.
    scores = predict_scores(model, torch.from_numpy(test.images), spec=spec, mirror=ckpt.second_look is not None)
    assert binary_metrics(test.labels, scores, ckpt["threshold"])["accuracy"] == pytest.approx(
        report["test"]["accuracy"]
    )


def test_the_threshold_is_chosen_on_validation_with_the_second_look(real_run, casting_dir: Path, tmp_path: Path):
    import numpy as np

    from edge_runtime.metrics import recall_first_threshold
    from edge_runtime.preprocess import read_image, resize_to_input

    out, report = real_run
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.second_look == {"view": "mirror", "band_logit": 3.0}
    assert "mirrored" in report["threshold_rule"]
    files = [casting_dir / "train" / f for f in ckpt.data.val_files]
    labels = np.array([int(f.parent.name == ckpt.data.class_dirs[1]) for f in files])
    x = torch.from_numpy(np.stack([resize_to_input(read_image(f), ckpt.preprocess) for f in files]))
    model = model_from_checkpoint(ckpt)
    both = predict_scores(model, x, spec=ckpt.preprocess, mirror=True)
    assert ckpt.threshold == pytest.approx(recall_first_threshold(labels, both))
    # --no-second-look: one view, and no entry for the runtime.
    once = main(quick_cfg(casting_dir, tmp_path / "once", second_look=False, loc_head_epochs=0), log=lambda _m: None)
    single = load_checkpoint(tmp_path / "once" / "best.pt")
    assert single.second_look is None and "mirrored" not in once["threshold_rule"]
    one_view = predict_scores(model_from_checkpoint(single), x, spec=ckpt.preprocess)
    assert single.threshold == pytest.approx(recall_first_threshold(labels, one_view))


def test_same_seed_same_data_same_metrics(real_run, casting_dir: Path, tmp_path: Path):
    _, first = real_run
    second = main(quick_cfg(casting_dir, tmp_path / "b"), log=lambda _m: None)
    for split in ("validation", "test"):
        assert {k: v for k, v in second[split].items()} == {k: v for k, v in first[split].items()}
    assert second["threshold"] == first["threshold"]


def test_another_seed_gives_another_split(real_run, casting_dir: Path, tmp_path: Path):
    out, _ = real_run
    other = main(quick_cfg(casting_dir, tmp_path / "c", seed=1), log=lambda _m: None)
    a = load_checkpoint(out / "best.pt")["data"]["val_files"]
    b = load_checkpoint(tmp_path / "c" / "best.pt")["data"]["val_files"]
    assert a != b and other["data"]["fingerprint"] != load_checkpoint(out / "best.pt")["data_fingerprint"]
