"""The training stage's one config object, built by the CLI and passed explicitly."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path


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
        if self.init is not None:  # absolute and normalised: the same file when a run is resumed from elsewhere
            object.__setattr__(self, "init", Path(os.path.abspath(self.init)))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["data"], d["out"], d["arch"] = str(self.data), str(self.out), self.arch.value
        d["init"] = None if self.init is None else str(self.init)
        return d
