"""The training stage's one config object, built by the CLI and passed explicitly."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from enum import Enum
from numbers import Integral, Real
from pathlib import Path

from edge_runtime.errors import UsageError
from edge_runtime.model_file import check_threads


class Arch(str, Enum):
    DEFECTNET = "defectnet"  # our compact grayscale CNN (default)
    SEED = "seed"  # the origin notebook's network, for comparison


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; stored in the checkpoint and the report."""

    data: Path
    out: Path
    epochs: int = 40
    arch: Arch = Arch.DEFECTNET
    img_size: int | None = None  # None: the architecture's own default
    seed: int = 0
    val_fraction: float = 0.15
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    # Extra loss weight on defective images the model still scores low: weight 1 + w * (1 - p)^2. The operating
    # threshold catches every validation defect, so the weakest defects, not the average, set the false alarms.
    hard_defect_weight: float = 4.0
    # Station training (train/station.py), off by default: this many random station-camera versions of each
    # training image, made once before training, ``station_share`` of every batch swapped for one of them, and
    # the background relit from each part's own flange edge. 0: the default recipe, draw for draw.
    station_views: int = 0
    station_share: float = 0.5
    # Passes of the localisation head's training over the OK training images, after the verdict network's
    # (train/loc_head.py); 0: no head, the exported map is then a Grad-CAM.
    loc_head_epochs: int = 14
    # Choose the threshold on validation scores that average each image with its mirror, and have the runtime take
    # that second look at the items near the threshold (edge_runtime.model_info.SecondLook). False: one view.
    second_look: bool = True
    positive_class: str | None = None
    max_bad_fraction: float = 0.05
    max_images_per_class: int | None = None  # for quick runs and tests on a subset
    threads: int | None = None
    bf16: bool | None = None  # bfloat16 autocast for training steps; None: on where the CPU computes bf16 natively
    resume: bool = False
    quiet: bool = False
    # Fine-tuning: start from this checkpoint's weights (a best.pt train-model wrote), its architecture and input
    # size, instead of a random initialisation (train/finetune.py). None: from scratch.
    init: Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.arch, Arch):  # arch="seed" from a Python caller: every `is Arch.X` test was False
            if self.arch not in {a.value for a in Arch}:
                raise UsageError(f"arch={self.arch!r}: use one of {', '.join(a.value for a in Arch)}")
            object.__setattr__(self, "arch", Arch(self.arch))
        if self.init is not None:  # absolute and normalised: the same file when a run is resumed from elsewhere
            object.__setattr__(self, "init", Path(os.path.abspath(self.init)))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["data"], d["out"], d["arch"] = str(self.data), str(self.out), self.arch.value
        d["init"] = None if self.init is None else str(self.init)
        return d


# (low, high, low excluded, high excluded): the ranges train-model's options take (train/cli.py)
_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "epochs": (1, math.inf, False, False),
    "batch_size": (2, math.inf, False, False),  # BatchNorm needs two images a step: 1 trained nothing, exit 0
    "seed": (0, 2**32 - 1, False, False),  # numpy and torch take no more
    "val_fraction": (0, 0.9, True, True),
    "lr": (0, math.inf, True, True),
    "hard_defect_weight": (0, math.inf, False, True),
    "station_views": (0, 8, False, False),
    "station_share": (0, 1, False, False),
    "loc_head_epochs": (0, math.inf, False, False),
    "max_bad_fraction": (0, 1, False, False),  # NaN never aborted
    "img_size": (16, 1024, False, False),
    "max_images_per_class": (1, math.inf, False, False),
}
_WHOLE = {"epochs", "batch_size", "seed", "station_views", "loc_head_epochs", "img_size", "max_images_per_class"}


def check_values(cfg: TrainConfig) -> None:
    """Refuse what train-model's options refuse, for a Python caller too (:class:`UsageError`, exit 2), before any
    work: ``batch_size=1`` trained nothing and wrote a model, ``seed=-1`` or ``lr=nan`` failed inside numpy or torch
    after every image was decoded, and ``second_look="no"`` counted as on."""
    for name, (low, high, low_open, high_open) in _RANGES.items():
        value = getattr(cfg, name)
        if value is None and name in ("img_size", "max_images_per_class"):
            continue
        whole = name in _WHOLE
        kind = Integral if whole else Real
        if isinstance(value, bool) or not isinstance(value, kind):
            raise UsageError(f"{name}={value!r}: not a {'whole number' if whole else 'number'}")
        if not ((low < value if low_open else low <= value) and (value < high if high_open else value <= high)):
            shown = f"{'above' if low_open else 'at least'} {low:g}" + (
                f" and {'below' if high_open else 'at most'} {int(high) if whole else high}" if high != math.inf else ""
            )
            raise UsageError(f"{name}={value!r} is out of range; use a value {shown}")
    check_threads(cfg.threads, what="threads")  # 100000 crashed torch (a segmentation fault), 0 took every core
    for name in ("second_look", "resume", "quiet", "bf16"):
        if getattr(cfg, name) not in (True, False) and not (name == "bf16" and cfg.bf16 is None):
            raise UsageError(f"{name}={getattr(cfg, name)!r}: pass True or False")
    size = cfg.img_size
    if not cfg.resume and size is not None:  # on resume the run's own size is checked against it (train.resume)
        if cfg.arch is Arch.DEFECTNET and size % 16:
            raise UsageError(
                f"img_size={size}: defectnet takes a multiple of 16, such as {max(16, round(size / 16) * 16)}"
            )
        if cfg.arch is Arch.SEED and size != 224 and cfg.init is None:
            raise UsageError(f"img_size={size}: arch seed takes 224 px only")
