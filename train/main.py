"""Training split like torchvision's reference scripts: ``load_data``, ``train_one_epoch``, ``evaluate``, ``main``.

``main(cfg)`` runs one training from a :class:`TrainConfig` and returns the report it wrote.
"""

from __future__ import annotations

from edge_runtime.errors import require_extra

require_extra("torch", "train")  # one clear line instead of "No module named torch"

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_runtime.errors import DataError
from edge_runtime.metrics import binary_metrics, recall_first_threshold
from edge_runtime.model_info import SecondLook
from edge_runtime.preprocess import CropMode, PreprocessSpec
from edge_runtime.stopping import StopSignals
from train import data as D
from train.augment import STATION_VALIDATION, AugmentConfig, augment
from train.checkpoint import Checkpoint, model_checkpoint, weights_digest
from train.checkpoint_save import atomic_torch_save, staged_torch_save
from train.config import Arch, TrainConfig, check_values
from train.engine import check_not_diverged, evaluate, predict_scores, train_one_epoch
from train.epochs import train_and_finish
from train.finetune import load_init, threshold_cap
from train.model import ARCHS, build_model, default_model_args
from train.report import data_record, log_dataset
from train.resume import load_resume_state, other_data
from train.run_dir import release_run_dir, removed_if_refused, rerun_advice, setup_run_dir, write_run_text
from train.station import flange_edges, station_views

Log = Callable[[str], None]
SAVE_STALL_S = 60.0  # an epoch's checkpoint normally takes under a second to write
EMA_DECAY = 0.995  # per optimiser step: about two epochs of memory on the casting data


def ema_decay(steps: int) -> float:
    """The weight average's decay for a run of ``steps`` optimiser steps: EMA_DECAY, or less in a run too short
    to forget its first steps with it (a memory of at most a fifth of the run).

    >>> ema_decay(3520), ema_decay(20)
    (0.995, 0.75)
    """
    return min(EMA_DECAY, 1.0 - 5.0 / max(steps, 10))


@dataclass
class Dataset:
    classes: D.ClassMap
    train: D.Split
    val: D.Split
    test: D.Split | None
    leakage: dict[str, Any]
    fingerprint: str
    # Station training: each train / validation image's flange edge, and the training images' station views.
    train_edges: np.ndarray | None = None
    val_edges: np.ndarray | None = None
    station_views: np.ndarray | None = None


def spec_for(cfg: TrainConfig) -> PreprocessSpec:
    _, default_size, channels = ARCHS[cfg.arch]
    # DefectNet sees the part cropped at a fixed scale wherever the camera puts it; the origin network keeps
    # the notebook's whole-frame input.
    crop = CropMode.PART if cfg.arch is Arch.DEFECTNET else CropMode.CENTER
    return PreprocessSpec(size=cfg.img_size or default_size, channels=channels, crop=crop)


def load_data(cfg: TrainConfig, spec: PreprocessSpec, log: Log) -> Dataset:
    """Find the classes, decode every image once, split train/validation, and look for leakage."""
    root = Path(cfg.data)
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "data folder not found"  # a file was "not found"
        raise DataError(f"{root}: {what}; pass --data DIR with DIR/train/<class>/ inside")
    D.check_train_folder(root)
    classes = D.resolve_classes(root / "train", cfg.positive_class)
    D.tell_unread_folders(root, classes, log)
    common = {"max_bad_fraction": cfg.max_bad_fraction, "limit_per_class": cfg.max_images_per_class}
    t0 = time.perf_counter()
    full = D.load_split("train", root / "train", classes, spec, **common)
    test = D.load_split("test", root / "test", classes, spec, **common) if (root / "test").is_dir() else None
    D.check_label_conflicts(full, test)
    if test is not None:  # a third class folder in test/ was left out of the test figures without a word
        known = {classes.negative_dir, classes.positive_dir}
        for other in sorted(d.name for d in (root / "test").iterdir() if d.is_dir() and not d.name.startswith(".")):
            if other not in known:
                log(f"warning: {root / 'test' / other}: not a class of train/ ({', '.join(sorted(known))}); its "
                    "images are not tested")  # fmt: skip
    n_loaded = len(full) + (len(test) if test else 0)
    log(f"decoded and resized {n_loaded} images once in {time.perf_counter() - t0:.1f}s ({spec.size}px)")
    for split in (full, test):
        if split is not None:
            D.tell_listing(split, log)
    train_idx, val_idx = D.stratified_group_split(full.labels, full.hashes, cfg.val_fraction, cfg.seed)
    train, val = full.subset("train", train_idx), full.subset("val", val_idx)
    train.bad, train.ignored, train.warned, train.links = full.bad, full.ignored, full.warned, full.links
    leakage = D.leakage_report(train, val, test)
    splits = [s for s in (train, val, test) if s is not None]
    ds = Dataset(classes, train, val, test, leakage, D.fingerprint(splits))
    if cfg.station_views > 0:
        t0 = time.perf_counter()
        ds.train_edges, ds.val_edges = flange_edges(train.images), flange_edges(val.images)
        ds.station_views = station_views(train.root, train.files, spec, k=cfg.station_views, seed=cfg.seed)
        log(
            f"made {cfg.station_views} station views of each training image in {time.perf_counter() - t0:.1f}s "
            f"(flange edge at {np.median(ds.train_edges):.3f} of the half side, median)"
        )
    return ds


def _selection_key(val_metrics: dict[str, Any], val_loss: float) -> tuple[float, float]:
    # Best = highest specificity at 100% defect recall on validation, then the lowest validation loss.
    return (val_metrics["specificity_at_full_recall"], -val_loss)


class Trainer:
    """Holds the model, optimiser and history of one run so that it can be saved and resumed."""

    def __init__(
        self,
        cfg: TrainConfig,
        ds: Dataset,
        spec: PreprocessSpec,
        run_dir: Path,
        log: Log,
        init: Checkpoint | None = None,
    ) -> None:
        self.cfg, self.ds, self.spec, self.run_dir, self.log = cfg, ds, spec, run_dir, log
        torch.manual_seed(cfg.seed)
        # init: the --init checkpoint (train.finetune), whose network and weights the run starts from
        self.model_args = dict(init.model_args) if init is not None else default_model_args(cfg.arch, spec.size)
        self.model = build_model(cfg.arch, self.model_args)
        if init is not None:
            self.model.load_state_dict(init.state_dict)
            log(f"fine-tuning: starting from the weights of {cfg.init} (epoch {init.epoch} of its run)")
        self.threshold_cap = threshold_cap(ds.val.labels, init)
        self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps = cfg.epochs * max(1, len(ds.train) // cfg.batch_size + 1)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer, max_lr=cfg.lr, total_steps=steps, pct_start=0.15
        )
        # The weights we evaluate and ship are an exponential moving average of the trained ones: steadier
        # from epoch to epoch than the raw weights, so validation picks a model, not a lucky step.
        # Its memory (1 / (1 - decay) steps) is at most a fifth of the run: a quick run of 20 steps kept 90% of its
        # first step's near-random weights and scored every image the same. The default run keeps EMA_DECAY.
        self.ema = torch.optim.swa_utils.AveragedModel(
            self.model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(ema_decay(steps)), use_buffers=True
        )
        self.bf16 = cfg.bf16 if cfg.bf16 is not None else bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.history: list[dict[str, Any]] = []
        self.best_key: tuple[float, float] | None = None
        self.best_epoch = 0
        self.best_weights: str | None = None
        self.elapsed = 0.0
        self.saving: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext  # main(stop=...)
        self.x_train = torch.from_numpy(ds.train.images)
        self.y_train = torch.from_numpy(ds.train.labels)
        self.x_val, self.y_val = torch.from_numpy(ds.val.images), torch.from_numpy(ds.val.labels)
        # The validation images once more, as a station camera would show them (one seeded draw, fixed for the
        # whole run): their AUROC is reported every epoch. The threshold is set on the clean images only: a few
        # station draws hide the defect itself (a glint over a pinhole), and catching those cost 15% false alarms.
        station_gen = torch.Generator().manual_seed(cfg.seed + 20_000)
        station = self.x_val.float().unsqueeze(1) / 255.0
        edges = None if ds.val_edges is None else torch.from_numpy(ds.val_edges)
        self.x_val_station = (
            augment(station, STATION_VALIDATION, station_gen, edges) if spec.crop is CropMode.PART else None
        )
        self.edges = None if ds.train_edges is None else torch.from_numpy(ds.train_edges)
        self.views = None if ds.station_views is None else torch.from_numpy(ds.station_views)

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "gen": self.gen.get_state(),
            "history": self.history,
            "best_key": list(self.best_key) if self.best_key else None,
            "best_epoch": self.best_epoch,
            "best_weights": self.best_weights,  # best.pt's weights, so that --resume knows the run's own best.pt
            "elapsed": self.elapsed,
            "fingerprint": self.ds.fingerprint,
            # the image names as listed, compared on --resume before any image is decoded (train.resume)
            "listing": {"train": D.split_names(self.ds.train, self.ds.val)}
            | ({"test": D.split_names(self.ds.test)} if self.ds.test is not None else {}),
            "content": D.content_digest(self.ds.train, self.ds.val, self.ds.test),  # the images' bytes, ditto
            "config": self.cfg.to_dict(),
            # The global generator dropout draws from: without it a resumed run drew other masks than the
            # uninterrupted one and drifted from epoch k+1 on.
            "torch_rng": torch.get_rng_state(),
        }

    def resume(self, st: dict[str, Any]) -> None:
        """Continue from a state read and checked by :func:`train.resume.load_resume_state`, on this data only."""
        path = self.run_dir / "last.pt"
        if st["fingerprint"] != self.ds.fingerprint:
            raise other_data(self.run_dir, self.ds.train.files + self.ds.val.files)
        self.model.load_state_dict(st["model"])
        self.ema.load_state_dict(st["ema"])
        self.optimizer.load_state_dict(st["optimizer"])
        planned, phases = self.scheduler.total_steps, self.scheduler._schedule_phases
        self.scheduler.load_state_dict(st["scheduler"])
        if planned != self.scheduler.total_steps:
            # Another --epochs than the interrupted run planned: continue on the schedule of the new length
            # (OneCycleLR keeps its phase boundaries in a private list; there is no public way to re-plan).
            if self.cfg.epochs > len(st["history"]):  # said only when an epoch is left to train on it
                planned_epochs = st["config"]["epochs"]
                self.log(f"re-planning the learning-rate schedule from {planned_epochs} to {self.cfg.epochs} epochs")
            self.scheduler.total_steps, self.scheduler._schedule_phases = planned, phases
        self.gen.set_state(st["gen"])
        if "torch_rng" in st:
            torch.set_rng_state(st["torch_rng"])
        else:
            self.log(f"warning: {path} holds no random state (older train-model): the resumed epochs draw other "
                     "dropout masks than an uninterrupted run would")  # fmt: skip
        self.history, self.best_epoch, self.elapsed = st["history"], st["best_epoch"], st["elapsed"]
        self.best_weights = st.get("best_weights")
        self.best_key = tuple(st["best_key"]) if st["best_key"] else None
        self.log(f"resumed from {path} after epoch {len(self.history)}")

    def run_epoch(self, epoch: int, progress: Callable[[int, float], None] | None) -> dict[str, Any]:
        t0 = time.perf_counter()
        tr = train_one_epoch(
            self.model,
            self.optimizer,
            self.scheduler,
            self.x_train,
            self.y_train,
            spec=self.spec,
            batch_size=self.cfg.batch_size,
            gen=self.gen,
            aug=AugmentConfig(),
            on_batch=progress,
            ema=self.ema,
            bf16=self.bf16,
            hard_defect_weight=self.cfg.hard_defect_weight,
            edges=self.edges,
            views=self.views,
            view_share=self.cfg.station_share,
        )
        val_loss, scores = evaluate(self.ema.module, self.x_val, self.y_val, spec=self.spec)
        check_not_diverged(tr["loss"], scores, epoch, self.cfg, (self.run_dir / "best.pt", self.best_epoch))
        m = binary_metrics(self.ds.val.labels, scores, 0.5)
        t, station_auroc = self.threshold(scores)
        m["specificity_at_full_recall"] = binary_metrics(self.ds.val.labels, scores, t)["specificity"]
        self.elapsed += time.perf_counter() - t0
        row = {
            "epoch": epoch,
            "train_loss": tr["loss"],
            "train_accuracy": tr["accuracy"],
            "val_loss": val_loss,
            "val_accuracy": m["accuracy"],
            "val_auroc": m["auroc"],
            "val_specificity_at_full_recall": m["specificity_at_full_recall"],
            "val_station_auroc": station_auroc,
            "lr": self.scheduler.get_last_lr()[0],
            "seconds": round(time.perf_counter() - t0, 2),
        }
        self.history.append(row)
        key = _selection_key(m, val_loss)
        best = None
        if self.best_key is None or key > self.best_key:
            self.best_key, self.best_epoch = key, epoch
            best = self.best_checkpoint(scores, t)
            self.best_weights = weights_digest(best["state_dict"])
        # best.pt is replaced only once last.pt is written: a full disk between the two left a best.pt without
        # its last.pt, a model that neither the same command nor --resume could continue. A stop waits for the
        # three files (self.saving): it cut the write, and the epoch just trained was lost.
        with self.saving():
            with staged_torch_save(best, self.run_dir / "best.pt") if best is not None else contextlib.nullcontext():
                atomic_torch_save(self.state(), self.run_dir / "last.pt")
            write_run_text(self.run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))
        return row

    def threshold(self, val_scores: np.ndarray) -> tuple[float, float | None]:
        """The operating threshold (every clean validation defect caught) and, for part-centred models, the AUROC
        of the validation images under station conditions."""
        labels = self.ds.val.labels
        t = recall_first_threshold(labels, val_scores)
        if self.x_val_station is None:
            return t, None
        _, station = evaluate(self.ema.module, self.x_val_station, self.y_val, spec=self.spec)
        return t, binary_metrics(labels, station, t)["auroc"]

    def best_checkpoint(self, val_scores: np.ndarray, threshold: float) -> dict[str, Any]:
        # The epoch is chosen on one view; its threshold, on the scores the runtime gives with the second look.
        look = SecondLook().to_dict() if self.cfg.second_look else None
        if look is not None:
            val_scores = predict_scores(self.ema.module, self.x_val, spec=self.spec, mirror=True)
            threshold = recall_first_threshold(self.ds.val.labels, val_scores)
        threshold = min(threshold, self.threshold_cap or threshold)  # few validation defects (train.finetune)
        val = binary_metrics(self.ds.val.labels, val_scores, threshold)
        return model_checkpoint(
            self.ema.module,
            arch=self.cfg.arch,
            model_args=self.model_args,
            spec=self.spec,
            class_names=self.ds.classes.class_names,
            threshold=threshold,
            fingerprint=self.ds.fingerprint,
            metrics={"validation": val},
            data=data_record(self.ds),
            epoch=len(self.history),
            second_look=look,
        )


def main(
    cfg: TrainConfig,
    *,
    log: Log = print,
    progress_factory: Callable | None = None,
    given: frozenset[str] | None = None,
    stop: StopSignals | None = None,
) -> dict[str, Any]:
    """Train, select the best epoch on validation, pick the threshold, evaluate on test, write the run dir.
    ``given``: the options typed on the command line; on resume the others are the run's own (None: all typed).
    ``stop``: the command's stop signals; one that comes while an epoch's checkpoint is written waits for it.
    Raises :class:`train.resume.RunFinished` for a resume of a run that had finished: nothing to do.

    >>> main(TrainConfig(data=Path("../shared/data/casting"), out=Path("runs/x"), epochs=1))  # doctest: +SKIP
    """
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    check_values(cfg)
    if cfg.station_views > 0 and spec_for(cfg).crop is not CropMode.PART:
        raise DataError(f"--station-views: --arch {cfg.arch.value} does not crop the part; use --arch defectnet")
    run_dir, made = setup_run_dir(cfg)
    try:
        with removed_if_refused(made):
            state = None
            if cfg.resume:  # before minutes of decoding; the run's own options replace those not typed
                state, cfg = load_resume_state(run_dir, cfg, given=given, log=log)
                torch.set_num_threads(cfg.threads or os.cpu_count() or 1)  # the run's own, unless typed
            cfg, init = load_init(cfg, given, spec_for)  # before the images too: a wrong --init is one line
            if cfg.station_views > 0 and spec_for(cfg).crop is not CropMode.PART:  # an --init of another network
                raise DataError(f"--station-views: --init {cfg.init} is a {cfg.arch.value} network, which does not "
                                "crop the part; leave --station-views out")  # fmt: skip
            spec = spec_for(cfg)
            ds = load_data(cfg, spec, log)
            log_dataset(ds, log)
            trainer = Trainer(cfg, ds, spec, run_dir, log, init)
            if stop is not None:  # a stuck disk still gives way to a stop after SAVE_STALL_S
                trainer.saving = lambda: stop.atomic(stall_s=SAVE_STALL_S)
            if state is not None:
                trainer.resume(state)
        with rerun_advice(run_dir):
            return train_and_finish(cfg, ds, spec, trainer, log, progress_factory)
    finally:
        release_run_dir(run_dir)
