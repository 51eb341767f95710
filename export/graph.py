"""torch -> ONNX graph with the sigmoid inside, metadata in ``metadata_props``, full checks, atomic writes."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from edge_runtime.errors import ModelError, OutputError, UsageError
from edge_runtime.model_info import INPUT_NAME, MAP_OUTPUT_NAME, METADATA_KEY, OUTPUT_NAME, ModelInfo
from edge_runtime.output_checks import same_file
from edge_runtime.preprocess import IMAGE_SUFFIXES, PreprocessSpec
from export.cam import MapHead, map_wrapper
from train.loc_head import HeadRecord

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")  # --out never replaces one of these with an ONNX file


class ProbabilityHead(nn.Module):
    """The trained network plus the sigmoid, so the graph's output is P(defective) as the runtime expects."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


def weights_version(ckpt: Any) -> str:
    """``<arch>-<12 hex>``: a hash of a :class:`train.checkpoint.Checkpoint`'s weights, stable when only its
    report fields change."""
    h = hashlib.sha256()
    for name in sorted(ckpt.state_dict):
        h.update(name.encode())
        h.update(ckpt.state_dict[name].detach().cpu().contiguous().numpy().tobytes())
    return f"{ckpt.arch}-{h.hexdigest()[:12]}"


def check_opset(opset: int) -> None:
    """Refuse, before any work, an opset this torch cannot export (torch raised RuntimeError or TypeError: exit 1)."""
    from torch.onnx import _constants  # private, but the one place torch names the highest opset it exports

    highest = int(getattr(_constants, "ONNX_MAX_OPSET", opset))
    if opset > highest:
        raise UsageError(
            f"--opset {opset}: torch {torch.__version__} exports opsets up to {highest}; pass --opset 17..{highest}"
        )


def export_graph(
    net: nn.Module, spec: PreprocessSpec, path: Path, *, opset: int, map_head: MapHead | HeadRecord | None = None
) -> None:
    """Trace ``net`` (in eval mode) to ONNX at ``path``: input ``image`` (N, C, S, S), output ``p_defective`` (N,)
    and, with a ``map_head``, the localisation map ``defect_map`` (N, 1, h, w) (see :mod:`export.cam`).

    >>> export_graph(model, PreprocessSpec(), Path("/tmp/m.onnx"), opset=17, map_head=head)  # doctest: +SKIP
    """
    wrapper = (ProbabilityHead(net) if map_head is None else map_wrapper(net, map_head)).eval()
    outputs = [OUTPUT_NAME] if map_head is None else [OUTPUT_NAME, MAP_OUTPUT_NAME]
    dummy = torch.zeros(2, spec.channels, spec.size, spec.size)
    # The TorchScript exporter needs no extra dependency (the dynamo one needs onnxscript); its
    # deprecation warning is not actionable for the user, so it is silenced here.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (dummy,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=outputs,
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
            do_constant_folding=True,
        )
    net.eval()  # export restores the wrapper's training flag onto net; keep the caller's model in eval mode


def set_metadata(proto: onnx.ModelProto, info: ModelInfo) -> onnx.ModelProto:
    """Replace the defect-edge metadata entry (one versioned JSON string) and name the producer."""
    keep = [p for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    proto.metadata_props.append(onnx.StringStringEntryProto(key=METADATA_KEY, value=info.to_json()))
    proto.producer_name = "defect-edge"
    proto.producer_version = info.producer.get("defect_edge", "")
    proto.doc_string = (
        f"defect-edge {info.arch} {info.precision.value}: input {INPUT_NAME} float32 (N, "
        f"{info.preprocess.channels}, {info.preprocess.size}, {info.preprocess.size}) preprocessed as in the "
        f"'{METADATA_KEY}' metadata entry; output {OUTPUT_NAME} float32 (N,) = P({info.positive_class})"
    )
    return proto


def check_model(path: Path) -> None:
    """``onnx.checker`` with full checking (shape inference included); a failure is an export bug."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise ModelError(f"{path.name}: the exported model fails onnx.checker ({first}); report this") from exc


def write_with_metadata(src: Path, dst: Path, info: ModelInfo) -> None:
    """Load ``src``, set metadata, stamp the content hash, check and write ``dst`` atomically.

    The hash (:mod:`edge_runtime.integrity`) covers the whole file but itself; the runtime refuses a file whose
    bytes no longer match it (exit 4).
    """
    from edge_runtime import integrity
    from edge_runtime.atomic import atomic_path

    proto = set_metadata(onnx.load(str(src)), info)
    data = integrity.stamp(proto.SerializeToString(), METADATA_KEY)
    try:
        with atomic_path(dst) as tmp:
            onnx.save_model(data, str(tmp))
            check_model(tmp)
    except OSError as exc:
        raise OutputError(f"{dst}: cannot write the model ({exc.strerror or exc}); check the folder") from exc


def temp_path_for(dst: Path) -> Path:
    """A temporary name beside ``dst`` (same file system, so the final rename is atomic)."""
    from edge_runtime.atomic import temp_path_for as beside

    return beside(dst)


def ensure_writable(dst: Path, *, checkpoint: Path | None = None) -> None:
    """Fail early, before minutes of work, when ``dst`` cannot be written or must not be replaced.

    The model is renamed onto ``dst``: a device (``/dev/full``), FIFO or socket there would be replaced by a
    regular file, and the checkpoint itself (or any ``.pt``) by an ONNX file, losing the trained weights.
    """
    try:
        is_dir = dst.is_dir()  # raises for a name over the file system's limit (unexpected OSError, exit 1)
    except OSError as exc:
        raise OutputError(f"{dst}: cannot write here ({exc.strerror or exc}); pass --out a shorter path") from exc
    if is_dir:
        raise OutputError(f"{dst}: is a folder; pass --out FILE.onnx")
    if dst.exists() and not dst.is_file():
        raise OutputError(f"{dst}: is not a regular file (a device, FIFO or socket); pass --out FILE.onnx")
    if checkpoint is not None and same_file(dst, checkpoint):
        raise OutputError(f"{dst}: is the checkpoint being exported; pass --out FILE.onnx")
    if dst.suffix.lower() in CHECKPOINT_SUFFIXES:
        raise OutputError(f"{dst}: is named like a checkpoint ({dst.suffix}), not a model; pass --out FILE.onnx")
    if dst.suffix.lower() in IMAGE_SUFFIXES:  # an eval or calibration image would be replaced by a model
        raise OutputError(f"{dst}: is named like an image ({dst.suffix}), not a model; pass --out FILE.onnx")
    if dst.suffix.lower() != ".onnx":  # the run's own report.json (or metrics.jsonl, notes) became ONNX bytes
        kind = f"named {dst.suffix}" if dst.suffix else "without the .onnx suffix"
        raise OutputError(f"{dst}: is {kind}, not a model file; pass --out FILE.onnx")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        probe = temp_path_for(dst)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"{dst}: cannot write here ({exc.strerror or exc}); pass --out to a writable path") from exc
