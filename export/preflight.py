"""What an export checks before any work: options it would ignore, weights that are not finite, folders and an
output that cannot or must not be written. Each is one sentence and an exit code, before the FP32 export runs.

>>> check_before_work(checkpoint, ckpt, net, out, cfg, given)   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_runtime.errors import DataError, UsageError
from edge_runtime.model_info import Precision
from edge_runtime.preprocess import CropMode
from export import cam, graph, images, quantize
from export.config import ExportConfig
from train.checkpoint import recorded_root
from train.weights_check import check_finite_weights

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
    check_data_reachable(ckpt, cfg, has_eval=has_eval, gradcam=gradcam)
    for option, folder in (("--calib-data", cfg.calib_data), ("--eval-data", cfg.eval_data)):
        if folder is not None:  # a missing --calib-data was found after the FP32 export and its evaluation
            images.check_data_folder(folder, option)
    if cfg.eval_data is not None:
        images.check_eval_folder(cfg.eval_data, ckpt)  # no class subfolders, or no image: now, not after the export
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


def check_data_reachable(ckpt: Checkpoint, cfg: ExportConfig, *, has_eval: bool, gradcam: bool) -> None:
    """The images the export needs from the checkpoint's dataset record, when that dataset is not here (moved, or
    another machine): both were found only after the map, the FP32 export and its evaluation."""
    if cfg.quantized and not cfg.force and not has_eval:
        if (root := recorded_root(ckpt)) is not None:  # here, but trained without a test split
            # it said "the test split is not here; set DEFECT_EDGE_DATA to the dataset folder", which it was
            raise DataError(
                f"no labelled images for the {cfg.precision.value} accuracy gate: {root} has no test/ folder; pass "
                "--eval-data DIR with DIR/<class>/ images the model was not trained on, or --force to export "
                "without the gate"
            )
        raise DataError(
            f"no labelled images for the {cfg.precision.value} accuracy gate (the checkpoint's test split is not "
            "here); set DEFECT_EDGE_DATA to the dataset folder, pass --eval-data DIR with DIR/<class>/ images, "
            "or --force to export without the gate"
        )
    # INT8 calibrates on them; without eval images they check parity; a Grad-CAM map is made from them
    if cfg.calib_data is None and (cfg.precision is Precision.INT8 or not has_eval or gradcam):
        images.calibration_pool(ckpt, None)


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


def unfinished_training(checkpoint: Path, ckpt: Checkpoint) -> str | None:
    """A warning for the best.pt of a training that has not finished: train-model writes report.json beside it
    last, and keeps last.pt to resume from. An export from a run stopped at epoch 3 of 40 wrote a 63%-accurate model
    without a word."""
    run = checkpoint.parent
    if not (run / "last.pt").is_file() or (run / "report.json").exists():
        return None
    return (
        f"{checkpoint}: its training has not finished (last.pt and no report.json beside it), so this is the best "
        f"epoch so far ({ckpt.epoch if ckpt.epoch is not None else 'unknown'}); finish it first (rerun its train-model "
        "command with --resume), or use this model knowing it is not the final one"
    )
