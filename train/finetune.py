"""Fine-tuning (``train-model --init best.pt``): a run that starts from a checkpoint's weights instead of a random
initialisation, such as the committed default model trained further on a station's own labelled images.

The checkpoint decides the network: its architecture, constructor arguments and input size. An ``--arch`` or
``--img-size`` typed against it is refused before any image is read; left out, they are the checkpoint's. Everything
else is the run's own: data and split, recipe, epoch selection and threshold (chosen on this run's validation
images), report and localisation head.
"""

from __future__ import annotations

from edge_runtime.errors import require_extra

require_extra("torch", "train")  # one clear line instead of "No module named torch"

from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from edge_runtime.errors import ModelError, UsageError
from edge_runtime.preprocess import PreprocessSpec
from train.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint
from train.config import Arch, TrainConfig
from train.model import ARCHS
from train.weights_check import check_finite_weights


def load_init(
    cfg: TrainConfig, given: frozenset[str] | None, spec_for: Callable[[TrainConfig], PreprocessSpec]
) -> tuple[TrainConfig, Checkpoint | None]:
    """``cfg`` with the architecture and input size of its ``--init`` checkpoint, and that checkpoint (verified, its
    weights known to fit); ``cfg`` and None without ``--init``. ``given``: the options typed (None: all)."""
    if cfg.init is None:
        return cfg, None
    try:
        ckpt = load_checkpoint(cfg.init)  # a missing, damaged or foreign file: one line, exit 4
        _check_fits(cfg.init, ckpt)  # weights that do not fit their own architecture: refused now, not after decoding
        check_finite_weights(cfg.init, ckpt)  # a diverged run's NaN: the first batch failed, exit 1
    except ModelError as exc:
        # on --resume the file is the run's own --init, typed or not: say so (it read as a stray file name)
        again = "; the run started from it: restore that file to resume, or train anew in another --out"
        raise ModelError(f"--init {exc.for_cli()}{again if cfg.resume else ''}", exit_code=exc.exit_code) from exc
    arch = Arch(ckpt.arch)  # an unknown one did not build in _check_fits
    size = ckpt.preprocess.size
    if cfg.resume:
        _check_runs_own(cfg, arch, size)
    # The Python API passes no ``given``: a field left at its default is then not typed (a seed checkpoint had
    # needed arch=Arch.SEED spelled out, since the default DEFECTNET counted as typed and was refused).
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    typed = (lambda k: getattr(cfg, k) != defaults[k]) if given is None else (lambda k: k in given)
    if arch is not cfg.arch:
        if typed("arch"):
            raise UsageError(f"--arch {cfg.arch.value}: --init {cfg.init} holds a {arch.value} network; leave --arch "
                             "out to fine-tune it, or drop --init to train a new one")  # fmt: skip
        cfg = replace(cfg, arch=arch)
    if (cfg.img_size or ARCHS[cfg.arch][1]) != size:
        if cfg.img_size is not None and typed("img_size"):
            raise UsageError(f"--img-size {cfg.img_size}: --init {cfg.init} takes {size} px images; leave --img-size "
                             "out to fine-tune it, or drop --init to train a new one")  # fmt: skip
        cfg = replace(cfg, img_size=size)
    if spec_for(cfg) != ckpt.preprocess:  # a checkpoint of an older train-model, preprocessed otherwise
        raise ModelError(f"--init {cfg.init}: its images were preprocessed otherwise than train-model does now "
                         f"({ckpt.preprocess.to_json()}); train anew without --init")  # fmt: skip
    return cfg, ckpt


# With fewer validation defects than this, the threshold rule's midpoint between the weakest of them and the OK
# score below it is a guess: a station's defect unlike those few scores lower. Fine-tuned on 24 station images
# (2 defective held out), the threshold came out at 0.92 against the default model's 0.42 (chosen on 562), and 12
# of the 453 official test defects passed; on 200 + 200 simulated station images (30 held out), 0.66 and 7 passed.
FEW_VAL_DEFECTS = 50


def threshold_cap(val_labels: np.ndarray, init: Checkpoint | None) -> float | None:
    """The highest threshold a run may choose: a fine-tuning run whose validation holds fewer than
    :data:`FEW_VAL_DEFECTS` defects keeps at most its ``--init`` checkpoint's threshold (chosen on many more), so
    that the few do not raise it; None (no cap) otherwise. Lowering it only adds false alarms, never misses."""
    if init is None or int(np.count_nonzero(val_labels)) >= FEW_VAL_DEFECTS:
        return None
    return float(init.threshold)


def _check_fits(path: Path, ckpt: Checkpoint) -> None:
    """The weights fit their own architecture; the line names the file (it read "--init checkpoint weights ...")."""
    try:
        model_from_checkpoint(ckpt)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc.for_cli()}") from exc


def _check_runs_own(cfg: TrainConfig, arch: Arch, size: int) -> None:
    """On --resume the network and input size are the run's own (from its last.pt): an --init file replaced since
    by another network failed after decoding (exit 1), and one of another input size trained the remaining epochs
    at that size, exit 0, the report describing a network that the first epochs were not."""
    run_size = cfg.img_size or ARCHS[cfg.arch][1]
    if arch is not cfg.arch or size != run_size:
        raise ModelError(f"--init {cfg.init}: holds a {arch.value} network for {size} px images, but the run in "
                         f"{cfg.out} started from a {cfg.arch.value} one for {run_size} px: the file was replaced; "
                         "restore the one the run started from to resume, or train anew in another --out")  # fmt: skip
