"""Build the tiny ONNX models the tests use, once, with the onnx package; the .onnx files are committed.

The runtime-only install (no onnx, no torch) runs the runtime tests on these files; variants of the metadata
are made at test time from the raw bytes (``edge_runtime.integrity.with_metadata``), without onnx.

    python -m tests.models.build      # rewrites tests/models/*.onnx

Every model scores sigmoid(gain * (mean pixel - 0.5)) on a (N, 1, 32, 32) input unless its name says otherwise:
bright images are "defective", dark ones "ok".
"""

from __future__ import annotations

from pathlib import Path

from edge_runtime import integrity
from edge_runtime.model_info import (
    INPUT_NAME,
    MAP_OUTPUT_NAME,
    METADATA_KEY,
    OUTPUT_NAME,
    ModelInfo,
    Precision,
    SecondLook,
)
from edge_runtime.preprocess import PreprocessSpec

HERE = Path(__file__).resolve().parent
SIZE = 32


def info(
    *,
    precision: Precision = Precision.FP32,
    outputs: tuple[str, ...] = (OUTPUT_NAME,),
    second_look: SecondLook | None = None,
) -> ModelInfo:
    return ModelInfo(
        preprocess=PreprocessSpec(size=SIZE),
        class_names=("ok", "defective"),
        threshold=0.5,
        precision=precision,
        arch="tiny-test",
        model_version="tiny-test-000000000000",
        outputs=outputs,
        second_look=second_look,
    )


def build(name: str, **kw: object) -> Path:
    import onnx
    from onnx import TensorProto, helper

    input_name = str(kw.get("input_name", INPUT_NAME))
    in_type = kw.get("in_type", TensorProto.FLOAT)
    batch = kw.get("batch", "N")
    size = int(kw.get("size", SIZE))
    out_shape = kw.get("out_shape", [batch])
    x = input_name
    nodes = []
    if in_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [input_name], ["xf"], to=TensorProto.FLOAT))
        x = "xf"
    inits = []
    if kw.get("left"):  # only the left half of the image counts: the mirrored image scores differently
        nodes.append(helper.make_node("Slice", [x, "lo", "hi", "ax3"], ["left"]))
        inits += [
            helper.make_tensor("lo", TensorProto.INT64, [1], [0]),
            helper.make_tensor("hi", TensorProto.INT64, [1], [size // 2]),
            helper.make_tensor("ax3", TensorProto.INT64, [1], [3]),
        ]
        x = "left"
    nodes += [
        helper.make_node("ReduceMean", [x], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Sub", ["m", "half"], ["c"]),
        helper.make_node("Mul", ["c", "gain"], ["z"]),
    ]
    inits += [
        helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
        helper.make_tensor("gain", TensorProto.FLOAT, [], [20.0]),
    ]
    kind = kw.get("kind", "sigmoid")
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, out_shape)]
    if kind == "sigmoid":
        nodes.append(helper.make_node("Sigmoid", ["z"], [OUTPUT_NAME]))
    elif kind == "nan":  # log(-1) = NaN for every item
        nodes += [helper.make_node("Mul", ["z", "zero"], ["z0"]), helper.make_node("Sub", ["z0", "one"], ["neg"])]
        nodes.append(helper.make_node("Log", ["neg"], [OUTPUT_NAME]))
        inits += [
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        ]
    elif kind == "two" or kind == "lies":  # (N, 2): two columns
        nodes += [helper.make_node("Sigmoid", ["z"], ["s"]), helper.make_node("Unsqueeze", ["s", "ax"], ["s1"])]
        nodes.append(helper.make_node("Concat", ["s1", "s1"], [OUTPUT_NAME], axis=1))
        inits.append(helper.make_tensor("ax", TensorProto.INT64, [1], [1]))
    elif kind == "map":  # plus a (N, 1, 4, 4) map: the input pooled 8x8
        nodes.append(helper.make_node("Sigmoid", ["z"], [OUTPUT_NAME]))
        nodes.append(helper.make_node("AveragePool", [x], [MAP_OUTPUT_NAME], kernel_shape=[8, 8], strides=[8, 8]))
        outputs.append(helper.make_tensor_value_info(MAP_OUTPUT_NAME, TensorProto.FLOAT, [batch, 1, 4, 4]))
    elif kind == "double_out":
        nodes.append(helper.make_node("Sigmoid", ["z"], ["s"]))
        nodes.append(helper.make_node("Cast", ["s"], [OUTPUT_NAME], to=TensorProto.DOUBLE))
        outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.DOUBLE, out_shape)]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(input_name, in_type, [batch, 1, size, size])],
        outputs,
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    meta = info(**kw.get("info", {}))  # type: ignore[arg-type]
    helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.checker.check_model(model)
    path = HERE / name
    path.write_bytes(integrity.stamp(model.SerializeToString(), METADATA_KEY))
    return path


def build_left() -> Path:
    """Scores the left half only, and asks for the runtime's second look (mirrored) near its threshold."""
    return build("tiny_left.onnx", left=True, info={"second_look": SecondLook()})


def main() -> None:
    from onnx import TensorProto

    build("tiny.onnx")
    build("tiny_int8_label.onnx", info={"precision": Precision.INT8})
    build("tiny_map.onnx", kind="map", info={"outputs": (OUTPUT_NAME, MAP_OUTPUT_NAME)})
    build("tiny_batch1.onnx", batch=1)
    build_left()
    # Contract breakers: each must be refused at load with exit 4.
    build("bad_input_name.onnx", input_name="pixels")
    build("bad_input_size.onnx", size=64)
    build("bad_batch4.onnx", batch=4)
    build("bad_input_fp16.onnx", in_type=TensorProto.FLOAT16)
    build("bad_input_uint8.onnx", in_type=TensorProto.UINT8)
    build("bad_input_double.onnx", in_type=TensorProto.DOUBLE)
    build("bad_output_n2.onnx", kind="two", out_shape=["N", 2])
    build("bad_output_1.onnx", out_shape=[1])
    build("bad_output_lies.onnx", kind="lies")
    build("bad_output_double.onnx", kind="double_out")
    build("bad_map_undeclared.onnx", kind="map")  # two outputs, metadata says one
    build("bad_map_missing.onnx", info={"outputs": (OUTPUT_NAME, MAP_OUTPUT_NAME)})  # one output, metadata says two
    # Loads fine; every score is NaN: every item must be an error, never a verdict.
    build("nan_scores.onnx", kind="nan")
    print("\n".join(sorted(p.name for p in HERE.glob("*.onnx"))))


if __name__ == "__main__":
    main()
