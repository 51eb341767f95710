"""Tiny defect-edge ONNX models, committed under tests/models (built once by ``python -m tests.models.build``),
so the runtime tests need neither onnx nor torch. Metadata variants are written from the raw bytes.

Their score is sigmoid(20 * (mean pixel - 0.5)): bright images are "defective", dark ones "ok".
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime import integrity
from edge_runtime.model_info import INPUT_NAME, METADATA_KEY, ModelInfo, Precision
from edge_runtime.preprocess import PreprocessSpec

TINY_SIZE = 32
MODELS = Path(__file__).resolve().parents[1] / "models"


def tiny_info(threshold: float = 0.5) -> ModelInfo:
    return ModelInfo(
        preprocess=PreprocessSpec(size=TINY_SIZE),
        class_names=("ok", "defective"),
        threshold=threshold,
        precision=Precision.FP32,
        arch="tiny-test",
    )


def model_bytes(name: str = "tiny.onnx") -> bytes:
    return (MODELS / name).read_bytes()


def with_metadata(data: bytes, text: str | None, *, stamp: bool = False) -> bytes:
    """``data`` with the defect-edge metadata entry replaced by ``text`` (None: removed), optionally re-hashed."""
    out = integrity.with_metadata(data, METADATA_KEY, text)
    return integrity.stamp(out, METADATA_KEY) if stamp else out


def make_tiny_model(
    path: Path,
    *,
    metadata: str | None = None,
    threshold: float = 0.5,
    input_name: str = INPUT_NAME,
    size: int = TINY_SIZE,
) -> Path:
    """Write the tiny model; ``metadata`` overrides the ``defect_edge`` JSON ("" leaves it out)."""
    base = "bad_input_name.onnx" if input_name != INPUT_NAME else "bad_input_size.onnx" if size != TINY_SIZE else None
    data = model_bytes(base or "tiny.onnx")
    if metadata is None:
        data = with_metadata(data, tiny_info(threshold).to_json(), stamp=True) if base is None else data
    else:
        data = with_metadata(data, metadata or None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny.onnx"
    shutil.copy(MODELS / "tiny.onnx", path)
    return path


def write_parts(folder: Path, levels: list[int], *, size: int = 48) -> list[Path]:
    """Flat gray images with the given pixel levels (>=128 scores defective with the tiny model)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, level in enumerate(levels):
        p = folder / f"part_{i:02d}.png"
        cv2.imwrite(str(p), np.full((size, size), level, np.uint8))
        paths.append(p)
    return paths
