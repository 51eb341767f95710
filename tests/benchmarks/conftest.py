"""Tiny defect-edge ONNX models for the benchmark tests (built with onnx.helper; no torch needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_runtime.model_info import INPUT_NAME, METADATA_KEY, OUTPUT_NAME, ModelInfo, Precision
from edge_runtime.preprocess import PreprocessSpec

SIZE = 32


def write_tiny_model(path: Path, precision: Precision) -> Path:
    """conv 3x3 -> global average pool -> sigmoid: a valid defect-edge model file of a few hundred bytes."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((2, 1, 3, 3), 0.1, np.float32), "w")
    shape = numpy_helper.from_array(np.array([-1], np.int64), "shape")
    nodes = [
        helper.make_node("Conv", [INPUT_NAME, "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c"], ["g"]),
        helper.make_node("ReduceMean", ["g"], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Sigmoid", ["m"], ["s"]),
        helper.make_node("Reshape", ["s", "shape"], [OUTPUT_NAME]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["n", 1, SIZE, SIZE])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["n"])],
        [w, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    info = ModelInfo(
        preprocess=PreprocessSpec(size=SIZE),
        class_names=("ok", "defective"),
        threshold=0.5,
        precision=precision,
        arch="tiny",
    )
    helper.set_model_props(model, {METADATA_KEY: info.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(an "int8"-labelled and an fp32-labelled tiny model); the graphs are the same, only the labels differ."""
    d = tmp_path_factory.mktemp("models")
    int8 = write_tiny_model(d / "tiny_int8.onnx", Precision.INT8)
    return int8, write_tiny_model(d / "tiny_fp32.onnx", Precision.FP32)
