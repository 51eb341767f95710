"""Checks on a checkpoint's tensors that export-onnx and train-model --init both make before any work."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edge_runtime.errors import ModelError

if TYPE_CHECKING:
    from train.checkpoint import Checkpoint


def check_finite_weights(checkpoint: Path, ckpt: Checkpoint) -> None:
    """Weights that are not finite (a diverged training, an edited file) make a model that scores NaN: with
    --force it was written and reported "262/715 correct"; quantized, onnxruntime failed on "scale issue", exit 1.
    No gate to force: such a model gives no verdict at all."""
    import math

    import torch

    spec = ckpt.to_dict()["preprocess"]  # a NaN mean was "unexpected ValueError" after the export, exit 1
    odd = [k for k, v in spec.items() if isinstance(v, float) and not math.isfinite(v)]
    if odd:
        raise ModelError(
            f"{checkpoint}: its preprocessing holds {', '.join(f'{k}={spec[k]}' for k in odd)} (not a finite "
            "number): the file was edited or damaged; retrain or use another checkpoint"
        )
    tensors = dict(ckpt.state_dict)
    if ckpt.loc_head and isinstance(ckpt.loc_head.get("state_dict"), dict):  # NaN there moved the defect boxes
        tensors |= {f"loc_head.{k}": v for k, v in ckpt.loc_head["state_dict"].items()}
    bad = {}
    for name, t in tensors.items():
        if not (isinstance(t, torch.Tensor) and t.is_floating_point()):
            continue
        wrong = ~torch.isfinite(t)
        if name.endswith("running_var"):  # a negative variance is finite, and its square root is NaN
            wrong |= t < 0
        if bool(wrong.any()):
            bad[name] = int(wrong.sum())
    if bad:
        first = next(iter(bad))
        raise ModelError(
            f"{checkpoint}: {sum(bad.values())} weights are not finite (NaN or infinite, or a negative variance; "
            f"first in {first}): the training diverged or the file was edited; retrain (a lower --lr) or use "
            "another checkpoint"
        )
