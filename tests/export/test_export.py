"""What an exported file is: checked ONNX, dynamic batch, same scores as torch, self-describing, quantized."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from edge_runtime.model import EdgeModel, Provider, RuntimeConfig
from edge_runtime.model_info import INPUT_NAME, OUTPUT_NAME, Precision
from edge_runtime.preprocess import PreprocessSpec, read_image
from export.checks import torch_scores
from export.images import list_images
from export.quantize import count_ops
from tests.export.conftest import TINY_MAX_DROP, export_cli
from train.checkpoint import load_checkpoint, model_from_checkpoint


def prepared_test_images(model: EdgeModel, data: Path, n: int) -> np.ndarray:
    return model.prepare([read_image(p) for p in list_images(data / "test")[:n]])


def test_fp32_passes_the_full_checker_with_opset_17_and_a_dynamic_batch(tiny_fp32: Path):
    model = onnx.load(str(tiny_fp32))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,), (out, *_) = model.graph.input, model.graph.output  # the localisation map may follow (test_cam.py)
    assert (inp.name, out.name) == (INPUT_NAME, OUTPUT_NAME)
    assert inp.type.tensor_type.shape.dim[0].dim_param  # symbolic, not a fixed batch size
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]] == [1, 32, 32]
    assert len(out.type.tensor_type.shape.dim) == 1


def test_batch_of_1_and_7_give_the_same_per_image_scores(tiny_fp32: Path, tiny_data: Path):
    model = EdgeModel(tiny_fp32, RuntimeConfig(provider=Provider.CPU))
    batch = prepared_test_images(model, tiny_data, 7)
    together = model.scores(batch)
    alone = np.array([model.scores(batch[i : i + 1])[0] for i in range(7)])
    assert together.shape == (7,)
    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_fp32_matches_torch_on_80_images(tiny_fp32: Path, tiny_run: Path, tiny_data: Path):
    model = EdgeModel(tiny_fp32, RuntimeConfig(provider=Provider.CPU))
    batch = prepared_test_images(model, tiny_data, 80)
    assert len(batch) == 80
    net = model_from_checkpoint(load_checkpoint(tiny_run))
    diff = np.abs(model.network_scores(batch) - torch_scores(net, batch)).max()
    assert diff <= 1e-4
    scores = model.scores(batch)
    assert scores.min() >= 0.0 and scores.max() <= 1.0  # the sigmoid is in the graph


def test_metadata_round_trips_everything_the_runtime_needs(tiny_fp32: Path, tiny_run: Path):
    ckpt = load_checkpoint(tiny_run)
    info = EdgeModel(tiny_fp32, RuntimeConfig(provider=Provider.CPU)).info
    assert info.preprocess == PreprocessSpec.from_dict(ckpt["preprocess"])
    assert list(info.class_names) == ckpt["class_names"]
    assert info.positive_class == ckpt["positive_class"]
    assert info.threshold == pytest.approx(ckpt["threshold"])
    # The threshold was chosen with the second look; the file asks the runtime to take it.
    assert info.second_look is not None and info.second_look.to_dict() == ckpt.second_look
    assert info.precision is Precision.FP32
    assert info.arch == "defectnet" and info.model_version.startswith("defectnet-")
    assert info.data_fingerprint == ckpt["data_fingerprint"]
    assert info.metrics["validation"]["n"] == ckpt["metrics"]["validation"]["n"]
    assert info.metrics["onnx"]["official"]["n"] == 80
    # which images those figures are of: "official" alone had also named training images passed as --eval-data
    assert Path(info.metrics["onnx"]["eval_data"]).name == "test" and info.metrics["onnx"]["eval_leaked"] == 0
    assert info.metrics["onnx"]["max_abs_diff_vs_torch"] <= 1e-4
    assert {"defect_edge", "torch", "onnx", "onnxruntime"} <= set(info.producer)


def test_int8_is_qdq_quantized_and_self_describing(tiny_int8: Path, tiny_fp32: Path, tiny_data: Path):
    assert count_ops(tiny_int8, "QuantizeLinear") > 0
    assert count_ops(tiny_fp32, "QuantizeLinear") == 0
    onnx.checker.check_model(str(tiny_int8), full_check=True)
    int8 = EdgeModel(tiny_int8, RuntimeConfig(provider=Provider.CPU))
    assert int8.info.precision is Precision.INT8
    assert "per-channel" in int8.info.producer["quantization"]
    fp32 = EdgeModel(tiny_fp32, RuntimeConfig(provider=Provider.CPU))
    batch = prepared_test_images(fp32, tiny_data, 80)
    assert np.abs(int8.scores(batch) - fp32.scores(batch)).max() < 0.2


def test_fp16_keeps_float32_inputs_and_outputs(tiny_run: Path, tmp_path: Path):
    out = tmp_path / "m16.onnx"
    r = export_cli(tiny_run, "--quantize", "fp16", "--out", out, "--max-drop", TINY_MAX_DROP)
    assert r.exit_code == 0, r.output
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in model.graph.output)  # map too
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    assert EdgeModel(out, RuntimeConfig(provider=Provider.CPU)).info.precision is Precision.FP16
    assert "| fp16 |" in r.output and "meant for GPU providers" in r.output


def test_summary_table_shows_both_precisions(tiny_run: Path, tmp_path: Path):
    r = export_cli(tiny_run, "--quantize", "--out", tmp_path / "q.onnx", "--max-drop", TINY_MAX_DROP)
    assert r.exit_code == 0, r.output
    assert "| fp32 |" in r.output and "| int8 |" in r.output and "accuracy gate passed" in r.output
    assert "QuantizeLinear" in r.output and "batch-1 latency" in r.output


def float_weight_convs(path: Path) -> list[bool]:
    """For each Conv of the verdict network, in graph order: are its weights float (no DequantizeLinear)?"""
    from export.quantize import map_only_nodes

    model = onnx.load(str(path))
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    map_only = set(map_only_nodes(model))
    return [n.input[1] not in dequantized for n in model.graph.node if n.op_type == "Conv" and n.name not in map_only]


def test_int8_keeps_the_first_two_convolutions_in_float_and_says_so(tiny_int8: Path, tiny_fp32: Path):
    """Their 7-bit weights on the one-channel image were most of INT8's error (export/QUANTIZATION.md)."""
    kept = float_weight_convs(tiny_int8)
    assert kept[:2] == [True, True] and not any(kept[2:]) and len(kept) > 3
    assert "first 2 convolutions in float" in EdgeModel(tiny_int8).info.producer["quantization"]
    assert all(float_weight_convs(tiny_fp32))


def test_float_convs_0_quantizes_every_convolution(tiny_run: Path, tmp_path: Path):
    out = tmp_path / "all_int8.onnx"
    r = export_cli(tiny_run, "--quantize", "int8", "--float-convs", "0", "--out", out, "--max-drop", TINY_MAX_DROP)
    assert r.exit_code == 0, r.output
    assert not any(float_weight_convs(out))
    assert "in float" not in EdgeModel(out).info.producer["quantization"]
