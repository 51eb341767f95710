"""A tiny trained checkpoint (synthetic parts, 32 px) shared by the export tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from export.cli import main as export_main
from tests.conftest import make_dataset
from train.config import TrainConfig
from train.main import main as train_main


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """``best.pt`` of a 20-epoch training (32 px) on 60+60 synthetic train images; its test split has 40+40 images."""
    root = tmp_path_factory.mktemp("export_data")
    data = make_dataset(root / "data", n_train=60, n_test=40, seed=1)
    out = root / "run"
    cfg = TrainConfig(data=data, out=out, epochs=20, img_size=32, batch_size=8, quiet=True, threads=2)
    train_main(cfg, log=lambda _m: None)
    return out / "best.pt"


@pytest.fixture(scope="session")
def tiny_data(tiny_run: Path) -> Path:
    return tiny_run.parents[1] / "data"


# The tiny model's scores crowd around its threshold, so on 80 images one flipped verdict is 1.25 points;
# tests that are not about the gate allow a few flips, the gate test shows a bad calibration exceeds this.
TINY_MAX_DROP = "5"


def export_cli(*args: str):
    """Run export-onnx in-process the way a user runs it."""
    return CliRunner().invoke(export_main, [str(a) for a in args])


@pytest.fixture(scope="session")
def tiny_fp32(tiny_run: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fp32") / "tiny_fp32.onnx"
    r = export_cli(tiny_run, "--out", out)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="session")
def tiny_int8(tiny_run: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "tiny_int8.onnx"
    r = export_cli(tiny_run, "--quantize", "int8", "--out", out, "--max-drop", TINY_MAX_DROP)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="session")
def gradcam_run(tiny_run: Path, tmp_path_factory) -> Path:
    """``tiny_run``'s checkpoint without its localisation head (as ``train-model --loc-head-epochs 0`` writes)."""
    import torch

    from train.checkpoint_save import atomic_torch_save

    d = torch.load(tiny_run, map_location="cpu", weights_only=True)
    assert "loc_head" in d, "train-model trains the localisation head by default"
    out = tmp_path_factory.mktemp("gradcam") / "best.pt"
    atomic_torch_save({k: v for k, v in d.items() if k != "loc_head"}, out)
    return out
