"""Fixtures shared by the train tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def one_epoch(tmp_path: Path, synthetic_data: Path) -> Path:
    """The folder of a tiny run trained for one epoch: where the run and checkpoint fault tests start."""
    from tests.train.test_faults_train import TINY, run

    out = tmp_path / "run"
    r = run("--data", synthetic_data, "--out", out, "--epochs", "1", *TINY)
    assert r.exit_code == 0, r.output
    return out
