"""An onnxruntime session for a defect-edge model, and the checks that it keeps the graph contract its metadata
declares (edge_runtime.model_info): inputs, outputs, dtypes and shapes, then a zero batch run once."""

from __future__ import annotations

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
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        if "pthread_create" in str(exc) or "Failed to allocate" in str(exc):  # the machine's limit, not the file
            raise ResourceError(f"onnxruntime cannot start ({first}): the thread limit (ulimit -u, systemd "
                                "TasksMax, a container's pids limit) or memory is exhausted; raise it, or pass "
                                "--threads 1 --workers 1") from exc  # fmt: skip
        raise ModelError(f"{path}: onnxruntime cannot load it ({first}); re-export with export-onnx") from exc


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
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
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
