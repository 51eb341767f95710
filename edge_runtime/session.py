"""An onnxruntime session for a defect-edge model, and the checks that it keeps the graph contract its metadata
declares (edge_runtime.model_info): inputs, outputs, dtypes and shapes, then a zero batch run once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import ModelError, ResourceError
from edge_runtime.model_info import INPUT_NAME, MAP_OUTPUT_NAME, OUTPUT_NAME, ModelInfo


def open_session(data: bytes, path: Path, providers: list[str], *, threads: int | None, spin: bool | None) -> Any:
    """An ``onnxruntime.InferenceSession`` over the model's bytes; a file it cannot load is a :class:`ModelError`.
    ``spin`` False: idle threads sleep instead of spinning (a live source waits between frames)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if spin is False:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    # fatal only: a failure is raised too, and said in one line; onnxruntime's own coloured line with its source
    # path (an allocation failing under ulimit -v) came above it
    opts.log_severity_level = 4
    try:
        return ort.InferenceSession(data, sess_options=opts, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several types for a bad file
        first = ort_message(exc)[:200]
        if "pthread_create" in str(exc) or "Failed to allocate" in str(exc):  # the machine's limit, not the file
            raise ResourceError(f"onnxruntime cannot start ({first}): the thread limit (ulimit -u, systemd "
                                "TasksMax, a container's pids limit) or memory is exhausted; raise it, or pass "
                                "--threads 1 --workers 1") from exc  # fmt: skip
        raise too_new(str(exc), path, ort.__version__) or ModelError(
            f"{path}: onnxruntime cannot load it ({first}); re-export with export-onnx"
        ) from exc


def ort_message(exc: BaseException) -> str:
    """onnxruntime's first line without its C++ source location and function signature: for an opset or IR version
    too new, the 200 characters kept had held only ``/onnxruntime_src/.../model_load_utils.h:46 void
    onnxruntime::model_load_utils::ValidateOpsetForDomain(const std::unordered_map<...`` and never the reason.

    >>> ort_message(RuntimeError("[ONNXRuntimeError] : 1 : FAIL : /src/model.cc:256 f(int (*)(), x) Bad model."))
    '[ONNXRuntimeError] : 1 : FAIL : Bad model.'
    """
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0]
    where = re.search(r"\S+\.(?:h|cc|cpp|hpp):\d+ ", line)
    if where is None:
        return line
    depth, i = 0, line.find("(", where.end())
    while 0 <= i < len(line):  # past the signature's closing parenthesis (it holds nested ones)
        depth += {"(": 1, ")": -1}.get(line[i], 0)
        i += 1
        if depth == 0:
            break
    rest = line[i:].lstrip() if i > 0 and depth == 0 else ""
    return (line[: where.start()] + rest).strip() or line


def too_new(text: str, path: Path, version: str) -> ModelError | None:
    """The refusal of a model made for a newer onnxruntime (an ONNX opset or IR version it does not know), naming
    what the file needs, what this onnxruntime reads and what to do; None for any other failure."""
    ir = re.search(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)", text)
    if ir:
        return ModelError(f"{path}: is ONNX IR version {ir[1]}, newer than onnxruntime {version} here reads (up to "
                          f"{ir[2]}); upgrade onnxruntime (pip install -U onnxruntime), or re-export it with the "
                          "torch and onnx versions pinned in constraints.txt")  # fmt: skip
    opset = re.search(r"Opset (\d+) is under development.*?support for domain (\S+) is till opset (\d+)", text, re.S)
    if opset:
        return ModelError(f"{path}: needs ONNX opset {opset[1]} ({opset[2]}), newer than onnxruntime {version} here "
                          f"runs (up to opset {opset[3]}); upgrade onnxruntime, or re-export it with a lower "
                          "export-onnx --opset (the default is 17)")  # fmt: skip
    return None


def check_io(session: Any, info: ModelInfo, path: Path) -> int | None:
    """Inputs, outputs, dtypes and shapes against the metadata (the graph contract in model_info); returns the
    largest batch the model takes (1 for a fixed batch of one, None for a dynamic batch)."""
    max_batch = None
    ins, outs = session.get_inputs(), session.get_outputs()
    names = tuple(o.name for o in outs)
    if [i.name for i in ins] != [INPUT_NAME] or names != tuple(info.outputs):
        raise ModelError(
            f"{path}: inputs {[i.name for i in ins]} / outputs {list(names)} are not a defect-edge "
            f"model's as its metadata declares ({INPUT_NAME} -> {', '.join(info.outputs)})"
            "; export it with export-onnx"
        )
    spec, shape = info.preprocess, ins[0].shape
    if ins[0].type != "tensor(float)":
        raise ModelError(f"{path}: input {INPUT_NAME} is {ins[0].type}, not float32; re-export it")
    if len(shape) != 4 or shape[1] != spec.channels or shape[2] != spec.size or shape[3] != spec.size:
        raise ModelError(f"{path}: input shape {shape} disagrees with its preprocessing spec; re-export it")
    if isinstance(shape[0], int):
        if shape[0] != 1:
            raise ModelError(f"{path}: input has a fixed batch of {shape[0]}; export a dynamic batch (or 1)")
        max_batch = 1
    for out in outs:
        rank = 1 if out.name == OUTPUT_NAME else 4
        if out.type != "tensor(float)" or (out.shape is not None and len(out.shape) != rank):
            raise ModelError(f"{path}: output {out.name} is {out.type} {out.shape}; expected float32 of rank {rank}")
    probability = outs[0].shape
    if probability and isinstance(probability[0], int) and probability[0] != (max_batch or -1):
        raise ModelError(f"{path}: output {OUTPUT_NAME} has fixed shape {probability}; expected (N,)")
    return max_batch


def probe(session: Any, info: ModelInfo, path: Path, max_batch: int | None) -> None:
    """Run zero batches once: the real output shapes must be (N,) (and (N, 1, h, w) for the map)."""
    spec = info.preprocess
    # TensorRT builds an engine per input shape: probe it with one shape only.
    tensorrt = session.get_providers()[0] == "TensorrtExecutionProvider"
    for n in (1,) if max_batch == 1 or tensorrt else (1, 2):
        x = np.zeros((n, spec.channels, spec.size, spec.size), np.float32)
        try:
            outs = session.run(None, {INPUT_NAME: x})
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several types
            first = ort_message(exc)[:160]
            raise ModelError(f"{path}: the model fails on a batch of {n} ({first}); re-export it") from exc
        for name, out in zip(info.outputs, outs, strict=True):
            out = np.asarray(out)
            want_map = name == MAP_OUTPUT_NAME
            ok = out.dtype == np.float32 and (
                (out.ndim == 4 and out.shape[0] == n and out.shape[1] == 1) if want_map else out.shape == (n,)
            )
            if not ok:
                raise ModelError(
                    f"{path}: output {name} is {out.dtype} {list(out.shape)} for a batch of {n}; expected "
                    f"float32 {'(N, 1, h, w)' if want_map else '(N,)'}; re-export it"
                )
