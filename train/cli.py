"""``train-model``: train a defect classifier on a folder of labelled images."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

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
from edge_runtime.errors import exit_codes_help

if TYPE_CHECKING:
    from edge_runtime.stopping import StopSignals
    from train.config import TrainConfig

ARCH_CHOICES = ["defectnet", "seed"]
MAX_SEED = 2**32 - 1  # numpy and torch take it; a negative or larger seed failed inside them (exit 1)


@click.command(
    cls=Command,
    help="Train a defect classifier on DIR/train/<class>/ images (DIR/test/<class>/ is evaluated if present). "
    "Writes best.pt, report.json, metrics.jsonl and figures to --out.\n\n" + exit_codes_help(0, 1, 2, 3, 4, 7, 8, 130),
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--data",
    "data",
    required=True,
    type=GivenPath(path_type=Path),
    help="Dataset folder with train/ (and test/).",
)
@click.option("--out", "out", required=True, type=GivenPath(path_type=Path), help="Run folder to write.")
@click.option("--epochs", default=40, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--arch",
    default="defectnet",
    show_default=True,
    type=click.Choice(ARCH_CHOICES),
    help="defectnet: compact grayscale CNN; seed: the origin notebook's network (for comparison).",
)
@click.option(
    "--img-size",
    type=click.IntRange(16, 1024),
    default=None,
    help="Input size in pixels [default: 160 defectnet, 224 seed].",
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, MAX_SEED))
@click.option(
    "--val-fraction",
    default=0.15,
    show_default=True,
    type=FiniteFloatRange(0, 0.9, min_open=True, max_open=True),
    help="Share of train held out for validation.",
)
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=2))
@click.option("--lr", default=3e-3, show_default=True, type=FiniteFloatRange(min=0, min_open=True))
@click.option(
    "--hard-defect-weight",
    default=4.0,
    show_default=True,
    type=FiniteFloatRange(min=0),
    help="Extra loss weight on defective images still scored low: 1 + W * (1 - p)^2 (0: plain cross-entropy).",
)
@click.option(
    "--station-views",
    default=0,
    show_default=True,
    type=click.IntRange(0, 8),
    help="Station training: K random station-camera versions of each training image (relit background, part "
    "filling the frame, 512 px, sharp rings, glints), framed as the runtime frames them, and the background "
    "relit from each part's own flange edge (0: the default recipe). Part-centred models only.",
)
@click.option(
    "--station-share",
    default=0.5,
    show_default=True,
    type=FiniteFloatRange(0, 1),
    help="With --station-views: the share of each training batch swapped for one of its images' station views.",
)
@click.option(
    "--init",
    type=click.Path(path_type=Path),
    default=None,
    help="Start from the weights of a best.pt that train-model wrote (the committed default model: "
    "train/default_model/best.pt) and train them further on --data: fine-tuning, e.g. on a station's own labelled "
    "images. The network and input size are the checkpoint's; a new threshold is chosen on this run's validation.",
)
@click.option(
    "--loc-head-epochs",
    default=14,
    show_default=True,
    type=click.IntRange(min=0),
    help="Then train the localisation head (where the defect is) for N passes over the OK training images, on "
    "pasted synthetic defects; the verdict network is not changed (0: no head, the map is a Grad-CAM).",
)
@click.option(
    "--second-look/--no-second-look",
    default=True,
    show_default=True,
    help="Choose the threshold on validation scores averaged with each image's mirror, and have the runtime look "
    "twice (mirrored) at the items near it; fewer missed defects under new camera conditions.",
)
@click.option(
    "--positive-class",
    default=None,
    help="Folder name of the defective class (def_front/ok_front are known).",
)
@click.option(
    "--max-images-per-class",
    type=click.IntRange(min=1),
    default=None,
    help="Use at most N images per class and split (quick runs).",
)
@click.option(
    "--max-bad-fraction",
    default=0.05,
    show_default=True,
    type=FiniteFloatRange(0, 1),
    help="Abort if more images than this are unreadable.",
)
@click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="Torch CPU threads, 1..CPU cores [default: all cores]."
)
@click.option(
    "--bf16/--no-bf16",
    default=None,
    help="Train in bfloat16 autocast (about 1.5x faster where the CPU has native bf16) [default: auto].",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt.")
@click.option("--quiet", is_flag=True, help="No progress bars: one log line per epoch.")
@version_option
@debug_option
@friendly_errors
def main(*, debug: bool, **opts: object) -> None:
    from edge_runtime.stopping import StopSignals

    # SIGTERM and SIGHUP end the run like Ctrl-C ("error: interrupted", exit 130, resumable with --resume): a
    # `kill` or a closed terminal gave exit 143 or 129 without a word. Run as train-model, the signals are taken
    # over before its imports (edge_runtime.stopping.install_early); once done, a signal no longer changes the exit.
    stop = StopSignals.for_command()
    try:
        _train(opts, stop)
    finally:
        stop.finish()


def _train(opts: dict, stop: StopSignals) -> None:
    require_cwd()  # before torch's import
    from train.main import main as run_training
    from train.resume import RunFinished

    if stop.requested:  # a signal while torch was imported: counted then, acted on now
        raise KeyboardInterrupt

    _check_arch_options(opts)
    cfg = _config(opts)

    log = StdoutLog()
    bars = None if cfg.quiet or not sys.stderr.isatty() else _progress
    try:
        given = frozenset(p.name for p in typed_params())
        report = run_training(cfg, log=log, progress_factory=bars, given=given, stop=stop)
    except RunFinished as finished:  # a --resume with nothing to do: said, exit 0
        log(str(finished))
        return
    finally:
        stop.closing = True
    log(f"wrote {cfg.out / 'best.pt'} and {cfg.out / 'report.json'}")
    log.tell_lost()
    if "test" in report and report["test"]["fn"]:
        fn = report["test"]["fn"]
        click.echo(f"warning: {fn} defective test image{' was' if fn == 1 else 's were'} called OK", err=True)


def _check_arch_options(opts: dict) -> None:
    """Usage errors for options the chosen ``--arch`` cannot take, before any image is read."""
    from train.config import Arch

    if opts["station_views"] > 0 and Arch(opts["arch"]) is not Arch.DEFECTNET:
        raise click.BadOptionUsage(
            "station_views", f"--station-views: --arch {opts['arch']} does not crop the part; use --arch defectnet"
        )
    size = opts["img_size"]
    if Arch(opts["arch"]) is Arch.DEFECTNET and size is not None and size % 16:
        # trained, then no localisation head, and export-onnx failed ("export with --no-map", exit 4)
        raise click.BadOptionUsage(
            "img_size",
            f"--img-size {size}: defectnet takes a multiple of 16 (its stages halve the input four "
            f"times; the defect map reads them), such as {max(16, round(size / 16) * 16)}",
        )
    if Arch(opts["arch"]) is Arch.SEED and opts["img_size"] not in (None, 224) and not opts["resume"]:
        # the origin network's classifier is sized for 224 px: any other size failed after the images were decoded
        raise click.BadOptionUsage("img_size", f"--img-size {opts['img_size']}: --arch seed takes 224 px only")


def _config(opts: dict) -> TrainConfig:
    """The training config the options ask for."""
    from edge_runtime.model_file import check_threads
    from train.config import Arch, TrainConfig

    return TrainConfig(
        data=opts["data"],
        out=opts["out"],
        epochs=opts["epochs"],
        arch=Arch(opts["arch"]),
        img_size=opts["img_size"],
        seed=opts["seed"],
        val_fraction=opts["val_fraction"],
        batch_size=opts["batch_size"],
        lr=opts["lr"],
        hard_defect_weight=opts["hard_defect_weight"],
        station_views=opts["station_views"],
        station_share=opts["station_share"],
        loc_head_epochs=opts["loc_head_epochs"],
        second_look=opts["second_look"],
        positive_class=opts["positive_class"],
        max_images_per_class=opts["max_images_per_class"],
        max_bad_fraction=opts["max_bad_fraction"],
        threads=check_threads(opts["threads"]),  # more than the cores crashed torch (segfault)
        bf16=opts["bf16"],
        resume=opts["resume"],
        quiet=opts["quiet"],
        init=opts["init"],  # made absolute and normalised by TrainConfig
    )


def _progress(n: int, label: str):  # noqa: ANN202 - click's ProgressBar
    return click.progressbar(
        length=n,
        label=label,
        file=sys.stderr,
        show_eta=True,
        width=30,
        item_show_func=lambda loss: f"loss {loss:.4f}" if loss is not None else "",
    )


if __name__ == "__main__":
    main()
