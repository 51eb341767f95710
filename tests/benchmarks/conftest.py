"""Tiny defect-edge ONNX models for the benchmark tests: the committed files of tests/models (no onnx needed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge_runtime.model_info import Precision

MODELS = Path(__file__).resolve().parents[1] / "models"
SIZE = 32


def write_tiny_model(path: Path, precision: Precision) -> Path:
    """A valid defect-edge model file of a few hundred bytes, labelled with ``precision`` (INT8 or FP32)."""
    name = "tiny_int8_label.onnx" if precision is Precision.INT8 else "tiny.onnx"
    shutil.copy(MODELS / name, path)
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(an "int8"-labelled and an fp32-labelled tiny model); the graphs are the same, only the labels differ."""
    d = tmp_path_factory.mktemp("models")
    int8 = write_tiny_model(d / "tiny_int8.onnx", Precision.INT8)
    return int8, write_tiny_model(d / "tiny_fp32.onnx", Precision.FP32)
