"""Reading ``last.pt`` for ``--resume`` and deciding whether this command may continue that run.

The state is read and the options compared before any image is decoded: a resume that would change the model or
its data is refused at once, naming the option, instead of training on and mixing two recipes in one model.
"""

from __future__ import annotations

from edge_runtime.errors import require_extra

require_extra("torch", "train")  # one clear line instead of "No module named torch"

from pathlib import Path
from typing import Any

import torch

from edge_runtime.errors import ModelError, OutputError, UsageError
from train.config import Arch, TrainConfig
from train.model import ARCHS

# What Trainer.state() writes to last.pt; a file without them (a best.pt copied over it) is refused, not a KeyError.
# "torch_rng" (the global generator dropout draws from) is not among them: a last.pt written before it was saved
# still resumes, only not bit for bit.
RESUME_KEYS = (
    "model",
    "ema",
    "optimizer",
    "scheduler",
    "gen",
    "history",
    "best_key",
    "best_epoch",
    "elapsed",
    "fingerprint",
    "config",
)

# Options that decide the model, its data or its training recipe: a resumed run must use the run's own values, or
# epochs 1..k and k+1..n would come from two recipes (and --img-size failed with a tensor size error, exit 1).
# Options left out may change on resume: --epochs (the schedule is re-planned), --loc-head-epochs (the head is
# trained whole after the last epoch, by the command that finishes the run), --threads, --bf16/--no-bf16 (how
# fast, not what), --max-bad-fraction (a limit; other images change the data fingerprint), --quiet, --data and
# --out as paths (the data's content is checked by its fingerprint).
FIXED_ON_RESUME = {
    "arch": "--arch",
    "img_size": "--img-size",
    "seed": "--seed",
    "val_fraction": "--val-fraction",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "weight_decay": "weight decay",
    "hard_defect_weight": "--hard-defect-weight",
    "station_views": "--station-views",
    "station_share": "--station-share",
    "second_look": "--second-look",
    "positive_class": "--positive-class",
    "max_images_per_class": "--max-images-per-class",
}


def _as_given(key: str, value: Any, arch: str) -> str:
    """A config value as the user would type it (the resolved size for a default --img-size)."""
    if key == "second_look":
        return "--second-look" if value else "--no-second-look"
    if key == "img_size" and value is None:
        value = ARCHS[Arch(arch)][1]
    option = FIXED_ON_RESUME[key]
    return f"{option} {value}" if value is not None else f"no {option}"


def changed_options(stored: dict[str, Any], cfg: TrainConfig) -> list[tuple[str, str]]:
    """(this command's value, the run's value) for every option that may not change on resume."""
    now = cfg.to_dict()
    old_arch, new_arch = str(stored.get("arch", now["arch"])), now["arch"]
    out = []
    for key in FIXED_ON_RESUME:
        if key not in stored:  # a last.pt of an older train-model: nothing to compare with
            continue
        old, new = _as_given(key, stored[key], old_arch), _as_given(key, now[key], new_arch)
        if old != new:
            out.append((new, old))
    return out


def load_resume_state(run_dir: Path, cfg: TrainConfig) -> dict[str, Any]:
    """``run_dir/last.pt``, checked: readable, a resume state, and written with this command's options."""
    path = run_dir / "last.pt"
    if not path.exists():
        if (run_dir / "best.pt").exists():
            raise OutputError(
                f"{path}: not there, so the model in {run_dir} (best.pt) cannot be trained further; choose another "
                "--out to train anew"
            )
        raise OutputError(f"{path}: nothing to resume; run without --resume to start a new training")
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise ModelError(
            f"{path}: cannot read resume state ({type(exc).__name__}); restore the run's own last.pt, or choose "
            "another --out to train anew"
        ) from exc
    missing = [k for k in RESUME_KEYS if not isinstance(st, dict) or k not in st]
    if missing:
        raise ModelError(
            f"{path}: not a resume state written by train-model (no {missing[0]}); use a new --out, or restore "
            "the run's own last.pt"
        )
    changed = changed_options(st["config"] if isinstance(st["config"], dict) else {}, cfg)
    if changed:
        given = ", ".join(new for new, _ in changed)
        had = ", ".join(old for _, old in changed)
        raise UsageError(
            f"{given}: the run in {run_dir} was trained with {had}; resume with the run's own values, or train "
            "anew in another --out"
        )
    return st
