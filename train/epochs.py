"""The epochs a run still has to train (and, after the first, when they will end), then its report and its
localisation head: the part of :func:`train.main.main` that runs once the data is loaded and the run resumed."""

from __future__ import annotations

from edge_runtime.errors import require_extra

require_extra("torch", "train")  # one clear line instead of "No module named torch"

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from edge_runtime.errors import ModelError
from edge_runtime.preprocess import PreprocessSpec
from train.augment import AugmentConfig, augment
from train.config import TrainConfig
from train.model import count_flops, count_params
from train.plots import curves_png, grid_png
from train.report import epoch_line, write_final_report
from train.run_dir import remove_stale_temp_files

if TYPE_CHECKING:
    from train.main import Dataset, Trainer

Log = Callable[[str], None]


def _duration(seconds: float) -> str:
    """
    >>> _duration(40), _duration(5400), _duration(30 * 3600), _duration(2_100_000), _duration(1e9)
    ('40 s', '90 min', '30 h', '24 days', '32 years')
    """
    day = 86400
    for unit, size, upto in (("s", 1, 90), ("min", 60, 120 * 60), ("h", 3600, 2 * day), ("days", day, 730 * day)):
        if seconds < upto:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds / (365.25 * day):.0f} years"


def projection_line(epoch: int, seconds: float, epochs: int, now: datetime) -> str:
    """What the first epoch a command trains tells of the run's length: an --epochs 100000 typo was found the next
    morning. ``seconds``: that epoch's wall time, its checkpoint included.

    >>> projection_line(1, 21.0, 100000, datetime(2026, 11, 29, 14, 5)).split("; ")[:2]
    ['epoch 1 took 21 s', '100000 epochs end in about 24 days (2026-12-23 21:24)']
    """
    left = (epochs - epoch) * seconds
    took = f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    try:
        end = (now + timedelta(seconds=left)).strftime("%Y-%m-%d %H:%M")
    except OverflowError:  # --epochs 10**12: a date past the year 9999 ended the run with a traceback
        end = "after the year 9999"
    return (f"epoch {epoch} took {took}; {epochs} epochs end in about {_duration(left)} ({end}); stop with Ctrl-C, "
            "go on later with --resume")  # fmt: skip


def augment_preview(run_dir: Path, ds: Dataset, seed: int) -> None:
    """augmentations.png: 24 training images as the training sees them."""
    gen = torch.Generator().manual_seed(seed + 10_000)
    idx = torch.randperm(len(ds.train), generator=gen)[:24]
    images = ds.train.images[idx.numpy()]
    if ds.station_views is not None:  # every other tile from a station view, as training may swap them in
        images[1::2] = ds.station_views[0, idx.numpy()[1::2]]
    edges = None if ds.train_edges is None else torch.from_numpy(ds.train_edges[idx.numpy()])
    x = augment(torch.from_numpy(images).float().unsqueeze(1) / 255.0, AugmentConfig(), gen, edges)
    names = [ds.classes.class_names[int(ds.train.labels[i])] for i in idx]
    grid_png(run_dir / "augmentations.png", (x[:, 0].numpy() * 255).round().astype(np.uint8), names)


def train_and_finish(
    cfg: TrainConfig, ds: Dataset, spec: PreprocessSpec, trainer: Trainer, log: Log, progress_factory: Callable | None
) -> dict[str, Any]:
    """The epochs still to train, then the report and the localisation head."""
    run_dir = trainer.run_dir
    remove_stale_temp_files(run_dir, log)  # the run goes ahead: what a killed run left is nobody's now
    augment_preview(run_dir, ds, cfg.seed)  # after resume(): a refused resume leaves the other run's files alone
    flops = count_flops(trainer.model, (spec.channels, spec.size, spec.size))
    log(
        f"model {cfg.arch.value}: {count_params(trainer.model):,} parameters, {flops / 1e6:.1f} MFLOP per image; "
        f"training in {'bfloat16 autocast' if trainer.bf16 else 'float32'} on {torch.get_num_threads()} threads"
    )
    first = len(trainer.history) + 1
    for epoch in range(first, cfg.epochs + 1):
        n_batches = (len(ds.train) + cfg.batch_size - 1) // cfg.batch_size
        t0 = time.monotonic()
        if progress_factory is not None:
            with progress_factory(n_batches, f"epoch {epoch}/{cfg.epochs}") as bar:
                row = trainer.run_epoch(epoch, lambda n, loss, bar=bar: bar.update(1, loss))
        else:
            row = trainer.run_epoch(epoch, None)
        log(epoch_line(row, cfg.epochs))
        if epoch == first and epoch < cfg.epochs and not cfg.quiet:
            log(projection_line(epoch, time.monotonic() - t0, cfg.epochs, datetime.now()))
    curves_png(run_dir / "curves.png", trainer.history)
    report = write_final_report(cfg, ds, spec, trainer, run_dir, flops=flops, log=log)
    if cfg.loc_head_epochs > 0:
        from train.loc_head import add_loc_head

        try:
            add_loc_head(run_dir / "best.pt", epochs=cfg.loc_head_epochs, seed=cfg.seed, log=log)
        except ModelError as exc:  # an architecture without the stages it reads: the map stays a Grad-CAM
            log(f"localisation head: not trained ({exc})")
    else:  # a resumed run finished with --loc-head-epochs 0 kept the head of its first finish
        from train.loc_head import drop_loc_head

        drop_loc_head(run_dir / "best.pt", log=log)
    return report
