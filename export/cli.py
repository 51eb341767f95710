"""``export-onnx``: turn a training checkpoint into a checked, self-describing ONNX model (FP32, INT8, FP16)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from edge_runtime.cli_support import (
    Command,
    FiniteFloatRange,
    GivenPath,
    StdoutLog,
    debug_option,
    friendly_errors,
    require_cwd,
    typed_params,
    version_option,
)
from edge_runtime.errors import exit_codes_help, require_extra
from export.config import DEFAULT_OPSET, MIN_CALIB_IMAGES, MIN_OPSET

QUANTIZE_CHOICES = ["int8", "fp16"]
SCHEME_CHOICES = ["u8s8", "u8s8-reduce-range", "s8s8"]


@click.command(
    cls=Command,
    help="Export CHECKPOINT (default: the committed default model) to ONNX and check it: onnx.checker, dynamic "
    "batch, torch vs onnxruntime on real images and, with --quantize, FP32 vs INT8/FP16 accuracy on labelled "
    "images (the gate). Prints a summary table.\n\n" + exit_codes_help(0, 1, 2, 3, 4, 6, 7, 8, 130),
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.argument("checkpoint", required=False, type=GivenPath(path_type=Path, what="a checkpoint file"))
@click.option(
    "--out",
    type=GivenPath(path_type=Path, what="a file"),
    default=None,
    help="ONNX file to write [default: beside the checkpoint, e.g. best_int8.onnx; the current folder for the "
    "default model of a non-editable install].",
)
@click.option(
    "--quantize",
    type=click.Choice(QUANTIZE_CHOICES),
    default=None,
    is_flag=False,
    flag_value="int8",
    help="int8: static QDQ for CPUs (--quantize alone); fp16: for GPU providers. Default: fp32.",
)
@click.option(
    "--calib-data",
    type=GivenPath(path_type=Path),
    default=None,
    help="Folder of calibration images, also the parity images when there is no eval data "
    "[default: the training images recorded in the checkpoint].",
)
@click.option(
    "--calib-count",
    type=click.IntRange(min=MIN_CALIB_IMAGES),
    default=300,
    show_default=True,
    help=f"Calibration images (at least {MIN_CALIB_IMAGES}).",
)
@click.option(
    "--eval-data",
    type=GivenPath(path_type=Path),
    default=None,
    help="Labelled images DIR/<class>/ or DIR/test/<class>/ for the accuracy gate [default: the test split].",
)
@click.option(
    "--max-drop",
    type=FiniteFloatRange(min=0),
    default=0.3,
    show_default=True,
    help="Largest accuracy loss vs FP32 in percentage points.",
)
@click.option(
    "--opset",
    type=click.IntRange(min=MIN_OPSET),
    default=DEFAULT_OPSET,
    show_default=True,
    help=f"ONNX opset ({MIN_OPSET}+).",
)
@click.option(
    "--int8-scheme",
    type=click.Choice(SCHEME_CHOICES),
    default="u8s8-reduce-range",
    show_default=True,
    help="INT8 activation/weight types; reduce-range (7-bit weights) cannot saturate on CPUs without VNNI "
    "(see export/QUANTIZATION.md).",
)
@click.option(
    "--float-convs",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="INT8: keep the network's first N convolutions in float; defectnet's on its one-channel image cause most "
    "of INT8's error (see export/QUANTIZATION.md) [default: 2 for defectnet, 0 for other architectures].",
)
@click.option(
    "--map/--no-map",
    "with_map",
    default=None,
    help="Add the localisation map output defect_map (N, 1, h, w) for edge-infer --heatmap [default: on when the "
    "architecture has a global-average-pool head, as defectnet has].",
)
@click.option(
    "--symmetry-look/--no-symmetry-look",
    default=True,
    show_default=True,
    help="Part-centred models: the runtime measures the part's own symmetry for the items just below the threshold "
    "and lets a clear asymmetry (a pinhole the 160 px input blurred) call them defective.",
)
@click.option("--force", is_flag=True, help="Write the model even when the accuracy gate or parity check fails.")
@version_option
@debug_option
@friendly_errors
def main(*, debug: bool, **opts: object) -> None:
    from edge_runtime.stopping import command_signals

    with command_signals():  # taken over before the imports: an early Ctrl-C or kill is "interrupted", exit 130
        _export(opts)


def _export(opts: dict) -> None:
    require_cwd()
    require_extra("torch")
    require_extra("onnx")
    from edge_runtime.model_info import Precision
    from export.config import ExportConfig, Int8Scheme
    from export.main import export_onnx

    cfg = ExportConfig(
        precision=Precision(opts["quantize"] or "fp32"),
        calib_data=opts["calib_data"],
        calib_count=opts["calib_count"],
        eval_data=opts["eval_data"],
        max_drop_pp=opts["max_drop"],
        opset=opts["opset"],
        force=opts["force"],
        scheme=Int8Scheme(opts["int8_scheme"]),
        float_convs=opts["float_convs"],
        with_map=opts["with_map"],
        symmetry_look=opts["symmetry_look"],
    )
    given = frozenset(p.opts[0] for p in typed_params() if isinstance(p, click.Option))
    say = StdoutLog()
    given_out = opts["out"]
    # an INT8 file became FP32 with "wrote ..." alone; os.path.isfile, as Path.is_file raised for a name over 255
    # bytes ("unexpected OSError: File name too long", exit 1): export_onnx names that, exit 7
    replacing = given_out is not None and os.path.isfile(given_out)
    out = export_onnx(opts["checkpoint"], given_out, cfg, log=say, given=given)
    say(f"wrote {out}" + (" (it replaced the file that was there)" if replacing else ""))
    say.tell_lost()


if __name__ == "__main__":
    main()
