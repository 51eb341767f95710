"""A tiny defect-edge ONNX model built with onnx.helper, so runtime tests do not depend on an exported model.

Its score is sigmoid(20 * (mean pixel - 0.5)): bright images are "defective", dark ones "ok".
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.model_info import INPUT_NAME, OUTPUT_NAME, ModelInfo, Precision
from edge_runtime.preprocess import PreprocessSpec

TINY_SIZE = 32


def tiny_info(threshold: float = 0.5) -> ModelInfo:
    return ModelInfo(
        preprocess=PreprocessSpec(size=TINY_SIZE),
        class_names=("ok", "defective"),
        threshold=threshold,
        precision=Precision.FP32,
        arch="tiny-test",
    )


def make_tiny_model(
    path: Path,
    *,
    metadata: str | None = None,
    threshold: float = 0.5,
    input_name: str = INPUT_NAME,
    size: int = TINY_SIZE,
) -> Path:
    """Write the tiny model; ``metadata`` overrides the ``defect_edge`` JSON ("" leaves it out)."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceMean", [input_name], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Sub", ["m", "half"], ["c"]),
        helper.make_node("Mul", ["c", "gain"], ["z"]),
        helper.make_node("Sigmoid", ["z"], [OUTPUT_NAME]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 1, size, size])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N"])],
        initializer=[
            helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
            helper.make_tensor("gain", TensorProto.FLOAT, [], [20.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    text = tiny_info(threshold).to_json() if metadata is None else metadata
    if text:
        helper.set_model_props(model, {"defect_edge": text})
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnx", reason="building the test model needs onnx (pip install '.[train]')")
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny.onnx")


def write_parts(folder: Path, levels: list[int], *, size: int = 48) -> list[Path]:
    """Flat gray images with the given pixel levels (>=128 scores defective with the tiny model)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, level in enumerate(levels):
        p = folder / f"part_{i:02d}.png"
        cv2.imwrite(str(p), np.full((size, size), level, np.uint8))
        paths.append(p)
    return paths
