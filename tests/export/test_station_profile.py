"""The station profile an export records is that of the images the model was trained on: after fine-tuning on a
station's own images, edge-infer compares that station with them, not with the dataset the model started from."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("torch", reason="export needs the [train] extra (torch)")

from edge_runtime.cli import main as edge_main  # noqa: E402
from edge_runtime.errors import ExitCode  # noqa: E402
from edge_runtime.station_check import StationProfile, reasons  # noqa: E402
from tests.conftest import synthetic_part  # noqa: E402
from tests.export.conftest import export_cli  # noqa: E402


def close_up(gray: np.ndarray) -> np.ndarray:
    """The part seen by a camera twice as close: its flange runs past the frame's border (cut ~0.27-0.36)."""
    s = gray.shape[0]
    return cv2.resize(gray[s // 4 : 3 * s // 4, s // 4 : 3 * s // 4], (s, s), interpolation=cv2.INTER_LINEAR)


def test_a_model_trained_on_cut_flanges_does_not_flag_its_own_stations_cut_flanges(
    tiny_run: Path, tiny_data: Path, tiny_fp32: Path, tmp_path: Path
):
    """Fine-tuned on a station whose camera cuts the flange, the exported model flagged 88% of that station's own
    images "unlike the training images: flange cut by the frame's border" and advised fine-tuning on them (edge-infer
    --check-station, exit 6): the cut was held to a fixed limit, not to what the model was trained on."""
    import torch

    from train.checkpoint_save import atomic_torch_save

    station = tmp_path / "station3"  # the checkpoint's training images, as its station shows them
    for src in (tiny_data / "train").rglob("*.png"):
        dst = station / "train" / src.relative_to(tiny_data / "train")
        dst.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dst), close_up(cv2.imread(str(src), cv2.IMREAD_GRAYSCALE)))
    shutil.copytree(tiny_data / "test", station / "test")
    ckpt = torch.load(tiny_run, weights_only=True)
    ckpt["data"]["root"] = ckpt["data"]["root_as_given"] = str(station)
    atomic_torch_save(ckpt, tmp_path / "run" / "best.pt")
    model = tmp_path / "s3.onnx"
    r = export_cli(tmp_path / "run" / "best.pt", "--out", model)
    assert r.exit_code == 0, r.output

    new = tmp_path / "new_parts"  # more parts from the same station
    new.mkdir()
    rng = np.random.default_rng(7)
    for i in range(30):
        cv2.imwrite(str(new / f"p{i:02d}.png"), close_up(synthetic_part(rng, defective=i % 2 == 0)))
    r = CliRunner().invoke(edge_main, ["--model", str(model), "--check-station", str(new)])
    assert r.exit_code == 0 and "flange cut" not in r.output, r.output
    assert "look like the training images" in r.output
    # the model trained on whole parts still flags them: its training images show no cut
    r = CliRunner().invoke(edge_main, ["--model", str(tiny_fp32), "--check-station", str(new)])
    assert r.exit_code == ExitCode.GATE_FAILED and "flange cut by the frame's border" in r.output, r.output


def test_a_cut_past_the_training_images_is_still_flagged_and_an_old_profile_keeps_the_fixed_limit():
    trained = StationProfile.from_dict({"version": 1, "images": 9, "ranges": {}, "flange_cut_max": 0.3})
    assert StationProfile.from_dict(trained.to_dict()) == trained  # the metadata round trip keeps it
    assert reasons({"flange_cut": 0.32}, trained) == []
    assert reasons({"flange_cut": 0.5}, trained) == [
        "flange cut by the frame's border (50% of its radius outside the picture, the training images' up to 33%)"
    ]
    old = StationProfile.from_dict({"version": 1, "images": 9, "ranges": {}})  # exported before it was recorded
    assert reasons({"flange_cut": 0.2}, old) == ["flange cut by the frame's border (20% of its radius outside the "
                                                 "picture)"]  # fmt: skip
    with pytest.raises(ValueError, match="flange_cut_max"):
        StationProfile.from_dict({"version": 1, "images": 9, "ranges": {}, "flange_cut_max": "lots"})


def test_the_calibration_and_profile_lines_name_the_training_images_folder(
    tiny_run: Path, tiny_data: Path, tmp_path: Path
):
    """After train-model --init they said only "the checkpoint's training images": whether INT8 was calibrated and the
    profile made on the station's images or on those of the model it started from went unsaid."""
    from tests.export.conftest import TINY_MAX_DROP

    r = export_cli(tiny_run, "--quantize", "--out", tmp_path / "m.onnx", "--max-drop", TINY_MAX_DROP)
    assert r.exit_code == 0, r.output
    train = tiny_data.resolve() / "train"
    assert f"images from the checkpoint's training images in {train}\n" in r.output, r.output
    assert f"station check: input statistics of 120 training images in {train} recorded" in r.output, r.output


def test_a_moved_dataset_is_told_where_it_was_and_how_to_point_at_it(
    tiny_run: Path, tiny_data: Path, tmp_path: Path, monkeypatch
):
    """Exported with --eval-data after the station folder moved, the model went out without its
    station profile, told only to "export where the training images are": not where that was, nor DEFECT_EDGE_DATA,
    with which the same command makes the profile."""
    import torch

    from train.checkpoint_save import atomic_torch_save

    monkeypatch.delenv("DEFECT_EDGE_DATA", raising=False)
    ckpt = torch.load(tiny_run, weights_only=True)
    moved = Path(shutil.copytree(tiny_data, tmp_path / "moved"))  # the checkpoint names tmp_path/gone
    ckpt["data"]["root"] = ckpt["data"]["root_as_given"] = str(tmp_path / "gone")
    atomic_torch_save(ckpt, tmp_path / "run" / "best.pt")
    args = [tmp_path / "run" / "best.pt", "--out", tmp_path / "m.onnx", "--eval-data", moved / "test"]
    r = export_cli(*args)
    assert r.exit_code == 0, r.output
    said = [ln for ln in r.output.splitlines() if ln.startswith("warning: station check")]
    assert said and f"recorded under {tmp_path / 'gone'}" in said[0] and "DEFECT_EDGE_DATA" in said[0], r.output
    monkeypatch.setenv("DEFECT_EDGE_DATA", str(moved))
    r = export_cli(*args)
    assert r.exit_code == 0 and "warning: station check" not in r.output, r.output
    assert f"input statistics of 120 training images in {moved / 'train'}" in r.output
