"""What an export checks before any work: options it would ignore, weights that are not finite, folders and an
output that cannot or must not be written. Each is one sentence and an exit code, before the FP32 export runs.

>>> check_before_work(checkpoint, ckpt, net, out, cfg, given)   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_runtime.errors import ModelError, UsageError
from edge_runtime.model_info import Precision
from edge_runtime.preprocess import CropMode
from export import cam, graph, images, quantize
from export.config import ExportConfig

if TYPE_CHECKING:
    from train.checkpoint import Checkpoint


def check_before_work(
    checkpoint: Path, ckpt: Checkpoint, net: Any, out: Path, cfg: ExportConfig, given: frozenset[str]
) -> None:
    """Options this export would ignore, and an output that cannot or must not be written: before any work."""
    has_eval = cfg.eval_data is not None or images.default_eval_folder(ckpt) is not None
    # a map without a trained head is a Grad-CAM made from the calibration images, whatever the precision
    gradcam = not ckpt.loc_head and cfg.with_map is not False and cam.supports_map(net)
    check_options_apply(cfg, given, has_eval=has_eval and not gradcam)
    check_finite_weights(checkpoint, ckpt)
    for option, folder in (("--calib-data", cfg.calib_data), ("--eval-data", cfg.eval_data)):
        if folder is not None:  # a missing --calib-data was found after the FP32 export and its evaluation
            images.check_data_folder(folder, option)
    if cfg.eval_data is not None:
        images.class_folders(cfg.eval_data, ckpt)  # a folder without class subfolders: now, not after the export
    if "--symmetry-look" in given and cfg.symmetry_look and ckpt.preprocess.crop is not CropMode.PART:  # was dropped
        raise UsageError(
            f"--symmetry-look: {checkpoint} is not part-centred (crop {ckpt.preprocess.crop.value}), so the runtime "
            "cannot measure the part's symmetry; leave the option out"
        )
    if cfg.precision is Precision.INT8:  # the verdict network's convolutions (a map head is not part of it)
        convs = sum(1 for m in net.modules() if type(m).__name__ == "Conv2d")
        quantize.check_float_convs(cfg.float_convs_for(ckpt.arch), convs, ckpt.arch)
    graph.ensure_writable(out, checkpoint=checkpoint)
    images.check_out_not_among_inputs(out, ckpt, calib_data=cfg.calib_data, eval_data=cfg.eval_data)


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


def check_options_apply(cfg: ExportConfig, given: frozenset[str], *, has_eval: bool) -> None:
    """Refuse options this export would ignore: without --quantize an FP32 model was written under the int8 name
    the user chose, with no word that --calib-data, --int8-scheme or --max-drop went unused."""
    unused = []
    if cfg.precision is not Precision.INT8:
        unused += ["--int8-scheme", "--float-convs"]
    if not cfg.quantized:
        unused.append("--max-drop")
    # calibration images only check parity without eval data (and make a Grad-CAM map: has_eval is False then)
    if cfg.precision is not Precision.INT8 and has_eval:
        unused += ["--calib-data", "--calib-count"]
    named = [opt for opt in unused if opt in given]
    if named:
        fp32 = cfg.precision is Precision.FP32
        raise UsageError(
            f"{', '.join(named)}: not used by an {cfg.precision.value} export (they apply to --quantize"
            f"{'' if fp32 else ' int8'}); {'add --quantize' if fp32 else 'use --quantize int8'}, or leave them out"
        )
