"""One epoch of training, and evaluation: the loop bodies, nothing else."""

from __future__ import annotations

from edge_runtime.errors import require_extra

require_extra("torch", "train")  # one clear line instead of "No module named torch"

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_runtime.errors import UsageError
from edge_runtime.preprocess import PreprocessSpec
from train.augment import AugmentConfig, augment
from train.config import TrainConfig


def to_input(batch_u8: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """(N, H, W) uint8 or (N, 1, H, W) float in [0, 1] -> network input, as the runtime's ``normalize``."""
    x = batch_u8.float() / 255.0 if batch_u8.dtype == torch.uint8 else batch_u8
    if x.dim() == 3:
        x = x.unsqueeze(1)
    x = x * (255.0 * spec.scale / spec.std) - spec.mean / spec.std
    if spec.channels == 3:
        x = x.expand(-1, 3, -1, -1)
    return x.contiguous(memory_format=torch.channels_last)


def training_loss(logits: torch.Tensor, y: torch.Tensor, *, hard_defect_weight: float = 0.0) -> torch.Tensor:
    """Binary cross-entropy; with ``hard_defect_weight`` w a defective image scored p weighs 1 + w * (1 - p)^2.

    >>> training_loss(torch.tensor([-2.0, 2.0]), torch.tensor([1.0, 0.0])).item() > 0
    True
    """
    if hard_defect_weight <= 0:
        return F.binary_cross_entropy_with_logits(logits, y)
    miss = (1.0 - torch.sigmoid(logits.detach())) * y
    return F.binary_cross_entropy_with_logits(logits, y, weight=1.0 + hard_defect_weight * miss * miss)


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    spec: PreprocessSpec,
    batch_size: int,
    gen: torch.Generator,
    aug: AugmentConfig,
    on_batch: Callable[[int, float], None] | None = None,
    ema: torch.optim.swa_utils.AveragedModel | None = None,
    bf16: bool = False,
    hard_defect_weight: float = 0.0,
    edges: torch.Tensor | None = None,
    views: torch.Tensor | None = None,
    view_share: float = 0.0,
) -> dict[str, float]:
    """Train on every image once, in a seeded random order, with seeded augmentation.

    ``hard_defect_weight`` w: a defective image scored p weighs 1 + w * (1 - p)^2 in the loss (OK images 1).
    ``edges``: each image's flange edge, where the background relight starts (train.augment.relight_from_edges).
    ``views`` (k, N, H, W): station views of the images (train.station); each image of a batch is swapped for a
    random one of its views with probability ``view_share``.
    """
    model.train()
    order = torch.randperm(len(images), generator=gen)
    total_loss, correct, seen = 0.0, 0, 0
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        if len(idx) < 2:  # BatchNorm needs two samples; a single straggler is skipped
            continue
        batch = images[idx]
        if views is not None and view_share > 0:
            swap = torch.rand(len(idx), generator=gen) < view_share
            which = torch.randint(0, views.shape[0], (len(idx),), generator=gen)
            batch = torch.where(swap.view(-1, 1, 1), views[which, idx], batch)
        x01 = augment(batch.float().unsqueeze(1) / 255.0, aug, gen, None if edges is None else edges[idx])
        x, y = to_input(x01, spec), labels[idx].float()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x).float()
        loss = training_loss(logits, y, hard_defect_weight=hard_defect_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        total_loss += loss.item() * len(idx)
        correct += int(((logits > 0).float() == y).sum())
        seen += len(idx)
        if on_batch is not None:
            on_batch(len(idx), loss.item())
    return {"loss": total_loss / max(seen, 1), "accuracy": correct / max(seen, 1)}


@torch.no_grad()
def predict_scores(
    model: nn.Module, images: torch.Tensor, *, spec: PreprocessSpec, batch_size: int = 256, mirror: bool = False
) -> np.ndarray:
    """P(defective) for every image of a cached (N, H, W) uint8 tensor.

    ``mirror``: the mean of the logits of each image and its left-right mirror, the score the runtime gives a
    model with a second look (edge_runtime.model_info.SecondLook) wherever the verdict could depend on it.
    """
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = to_input(images[start : start + batch_size], spec)
        logits = model(x)
        if mirror:
            logits = (logits + model(x.flip(-1))) / 2.0
        out.append(torch.sigmoid(logits))
    return torch.cat(out).double().numpy() if out else np.zeros(0)


def evaluate(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, spec: PreprocessSpec
) -> tuple[float, np.ndarray]:
    """Mean BCE loss and the scores, on un-augmented images."""
    scores = predict_scores(model, images, spec=spec)
    p = torch.from_numpy(scores).clamp(1e-7, 1 - 1e-7)
    finite = len(p) and bool(torch.isfinite(p).all())  # NaN scores (a diverged run) are check_not_diverged's to tell
    loss = F.binary_cross_entropy(p, labels.double()).item() if finite else float("nan")
    return loss, scores


def check_not_diverged(loss: float, scores: np.ndarray, epoch: int, cfg: TrainConfig, best: tuple[Path, int]) -> None:
    """A :class:`UsageError` once an epoch's training loss or its validation scores are not finite (a too high
    ``--lr``): the validation loss of NaN scores stopped the run with "unexpected RuntimeError: all elements of input
    should be between 0 and 1", exit 1. Called before the epoch is saved; ``best``: the run's best.pt and its epoch
    (0: none yet)."""
    if math.isfinite(loss) and bool(np.isfinite(scores).all()):
        return
    why = f"training loss {loss}" if not math.isfinite(loss) else "validation scores not finite"
    path, kept = best
    again = f"another --out ({path} keeps epoch {kept}, the best before it)" if kept else "(no epoch was kept)"
    raise UsageError(f"training diverged in epoch {epoch} ({why}): lower --lr (now {cfg.lr:g}) or "
                     f"--hard-defect-weight (now {cfg.hard_defect_weight:g}) and train again {again}")  # fmt: skip
