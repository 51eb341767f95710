"""train-model --init train/default_model/best.pt (the README's fine-tuning example) typed outside a checkout."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import train
from edge_runtime.errors import ExitCode
from tests.conftest import make_dataset
from train.cli import main


def test_the_committed_default_model_typed_elsewhere_names_the_installed_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    data = make_dataset(tmp_path / "data", n_train=10, seed=1)
    monkeypatch.chdir(tmp_path)
    args = ["--data", str(data), "--out", "run", "--epochs", "1", "--init", "train/default_model/best.pt", "--quiet"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == ExitCode.BAD_MODEL, r.output
    installed = Path(train.__file__).resolve().parent / "default_model" / "best.pt"
    assert r.output.strip().splitlines()[-1].endswith(f"(the copy installed with defect-edge is {installed})")
