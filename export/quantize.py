"""INT8 (static QDQ, per-channel weights) and FP16 conversion with onnxruntime's own tooling.

Calibration batches come from the runtime's preprocessing (the FP32 model's ``prepare``), so the activation
ranges are those of the images the device will see.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx

from edge_runtime.model_info import INPUT_NAME
from export.config import Int8Scheme

# The head (one 128->1 Gemm and the sigmoid) costs ~130 MACs but its output is the decision: quantizing
# P(defective) to 8 bits would put the low operating threshold (around 0.01) between two steps.
KEEP_FLOAT_OPS = frozenset({"Gemm", "Sigmoid", "Squeeze", "Flatten", "MatMul"})


def _calibration_reader(batch: np.ndarray, chunk: int):  # noqa: ANN202 - subclass defined lazily
    from onnxruntime.quantization import CalibrationDataReader

    class BatchReader(CalibrationDataReader):
        """Feeds preprocessed float32 images to the calibrator in chunks of ``chunk``."""

        def __init__(self) -> None:
            self._it: Iterator[dict[str, np.ndarray]] = iter(
                {INPUT_NAME: np.ascontiguousarray(batch[i : i + chunk])} for i in range(0, len(batch), chunk)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    return BatchReader()


def scheme_types(scheme: Int8Scheme) -> dict:
    """The ``quantize_static`` keyword arguments for a scheme.

    >>> scheme_types(Int8Scheme.S8S8)["reduce_range"]
    False
    """
    from onnxruntime.quantization import QuantType

    act = QuantType.QInt8 if scheme is Int8Scheme.S8S8 else QuantType.QUInt8
    return {
        "activation_type": act,
        "weight_type": QuantType.QInt8,
        "reduce_range": scheme is Int8Scheme.U8S8_REDUCE_RANGE,
    }


def float_nodes(model: onnx.ModelProto, *, standardize_in_float: bool, float_convs: int = 0) -> list[str]:
    """Names of the nodes left in float: the head, optionally the per-image standardisation before the first Conv
    (a few ops on one image plane, whose squared deviations lose precision in 8 bits), and the verdict network's
    first ``float_convs`` convolutions (in graph order, the map head's own ones not counted)."""
    names = [n.name for n in model.graph.node if n.op_type in KEEP_FLOAT_OPS]
    names += [n for n in map_only_nodes(model, last_only=True) if n not in names]
    if standardize_in_float:
        for node in model.graph.node:
            if node.op_type == "Conv":
                break
            names.append(node.name)
    return names + verdict_convs(model)[:float_convs]


def verdict_convs(model: onnx.ModelProto) -> list[str]:
    """The verdict network's convolutions in graph order (the localisation map head's own ones left out)."""
    map_only = set(map_only_nodes(model))
    return [n.name for n in model.graph.node if n.op_type == "Conv" and n.name not in map_only]


def check_float_convs(float_convs: int, count: int, arch: str) -> None:
    """``--float-convs`` must leave some of the network's ``count`` convolutions in INT8: with all of them in float
    the "INT8" file was as large and as slow as FP32 (a 5-convolution network exported with 5 had no QuantizeLinear
    at all), and its metadata claimed more float convolutions than the network has.

    >>> check_float_convs(2, 7, "defectnet"); check_float_convs(0, 0, "tiny")
    """
    from edge_runtime.errors import UsageError

    if float_convs and float_convs >= count:  # a negative count is refused by ExportConfig and the CLI
        most = "none can stay in float" if count <= 1 else f"keep at most {count - 1} in float"
        raise UsageError(
            f"--float-convs {float_convs}: {arch} has {count} convolution{'s' if count != 1 else ''}, so nothing of "
            f"it would run in INT8; {most}, or export FP32"
        )


def map_only_nodes(model: onnx.ModelProto, *, last_only: bool = False) -> list[str]:
    """Nodes that feed only the localisation map (``defect_map``); with ``last_only``, the one that writes it.

    The map's last node (the Grad-CAM's 1x1 conv, ~20k MACs at 160 px, or the Add that sums the trained head's
    two scales) is left in float so the map keeps its full range, at no measurable cost. The trained head's
    other layers (~2 M MACs at 40 x 40) are quantized like the verdict network: in float, with a dequantize
    and quantize around each, they added half to INT8 batch-1 latency.
    """
    from edge_runtime.model_info import MAP_OUTPUT_NAME

    outputs = {o.name for o in model.graph.output}
    if MAP_OUTPUT_NAME not in outputs:
        return []
    producer = {out: n for n in model.graph.node for out in n.output}

    def ancestors(name: str) -> set[str]:
        seen, todo = set(), [name]
        while todo:
            node = producer.get(todo.pop())
            if node is not None and node.name not in seen:
                seen.add(node.name)
                todo.extend(node.input)
        return seen

    if last_only:
        last = producer.get(MAP_OUTPUT_NAME)
        return [last.name] if last is not None else []
    shared = set().union(*(ancestors(o) for o in outputs - {MAP_OUTPUT_NAME}))
    return [n.name for n in model.graph.node if n.name in ancestors(MAP_OUTPUT_NAME) - shared]


def quantize_int8(
    fp32: Path,
    out: Path,
    calib: np.ndarray,
    *,
    scheme: Int8Scheme,
    work: Path,
    standardize_in_float: bool = True,
    float_convs: int = 0,
) -> Path:
    """Static QDQ INT8 with per-channel weights: ``quant_pre_process``, MinMax calibration, ``quantize_static``.
    The first ``float_convs`` convolutions stay in float (ExportConfig.float_convs).

    >>> quantize_int8(Path("m.onnx"), Path("m_int8.onnx"), batch, scheme=Int8Scheme.U8S8, work=tmp)  # doctest: +SKIP
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = work / "pre.onnx"
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    keep_float = float_nodes(onnx.load(str(pre)), standardize_in_float=standardize_in_float, float_convs=float_convs)
    # onnxruntime's quantizer logs at INFO/WARNING for routine choices; the summary table says what matters.
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        quantize_static(
            str(pre),
            str(out),
            _calibration_reader(calib, chunk=32),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            nodes_to_exclude=keep_float,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
            **scheme_types(scheme),
        )
    finally:
        logging.getLogger().setLevel(quiet)
    return out


def convert_fp16(fp32: Path, out: Path) -> Path:
    """Weights and activations in float16, inputs and outputs stay float32 (the runtime's contract).

    >>> convert_fp16(Path("m.onnx"), Path("m_fp16.onnx"))  # doctest: +SKIP
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
    topological_sort(model.graph)
    onnx.save_model(model, str(out))
    return out


def topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder nodes so each comes after its inputs' producers (the fp16 converter appends its input Casts
    at the end, which onnxruntime tolerates but ``onnx.checker`` rejects)."""
    ready = {""} | {i.name for i in graph.input} | {i.name for i in graph.initializer}
    pending, ordered = list(graph.node), []
    while pending:
        runnable = [n for n in pending if all(i in ready for i in n.input)]
        if not runnable:
            raise ValueError("graph has a cycle or an input nobody produces")
        for n in runnable:
            ordered.append(n)
            ready.update(n.output)
        pending = [n for n in pending if all(n is not r for r in runnable)]
    del graph.node[:]
    graph.node.extend(ordered)


def count_ops(path: Path, op_type: str) -> int:
    """How many nodes of ``op_type`` the graph holds (QuantizeLinear > 0 proves the INT8 model is quantized).

    >>> count_ops(Path("m_int8.onnx"), "QuantizeLinear")  # doctest: +SKIP
    23
    """
    return sum(1 for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type == op_type)
