"""The run's report: the data it used (logged and recorded), each epoch's line, and at the end the chosen checkpoint
evaluated on validation and test, with figures and report.json."""

from __future__ import annotations

from edge_runtime.errors import require_extra

require_extra("torch", "train")  # one clear line instead of "No module named torch"

import contextlib
import hashlib
import json
import os
import shlex
import sys
from dataclasses import fields
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from edge_runtime.metrics import binary_metrics, json_safe
from edge_runtime.preprocess import PreprocessSpec
from train.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint
from train.checkpoint_save import atomic_torch_save
from train.config import TrainConfig
from train.data import label_counts
from train.engine import predict_scores
from train.finetune import FEW_VAL_DEFECTS
from train.plots import annotated_png, confusion_png
from train.run_dir import make_folder, write_run_text

if TYPE_CHECKING:
    from train.main import Dataset, Log, Trainer


def _errors(
    split_files: list[str], labels: np.ndarray, scores: np.ndarray, threshold: float, names: tuple[str, str]
) -> list[dict]:
    wrong = np.nonzero((scores >= threshold) != labels.astype(bool))[0]
    return [{"file": split_files[i], "true": names[int(labels[i])], "score": round(float(scores[i]), 6)} for i in wrong]


def misclassified_name(split_name: str, file: str) -> str:
    """The picture's name: the split and the image's path, / written as __. One over the file system's 255 bytes (a
    camera's long file name, sub-folders) keeps its first 200 bytes and a hash of the whole path: it stopped the run at
    its report, after every epoch, with "File name too long; free some space", and --resume failed the same way.

    >>> misclassified_name("test", "ok_front/a.png"), len(misclassified_name("test", "x" * 300))
    ('test__ok_front__a.png.png', 215)
    """
    name = f"{split_name}__{file.replace('/', '__')}.png"
    if len(os.fsencode(name)) <= 255:
        return name
    head = name[:200]
    while len(os.fsencode(head)) > 200:  # cut whole characters, not a UTF-8 sequence
        head = head[:-1]
    return f"{head}~{hashlib.sha256(os.fsencode(file)).hexdigest()[:10]}.png"


def _save_misclassified(
    run_dir: Path, split_name: str, ds_split: Any, errors: list[dict], scores: dict[str, float]
) -> None:
    """One PNG per wrong test image; PNGs of errors this report no longer lists (a resumed run's, an earlier
    run's in a reused folder) are removed, so the folder always shows what report.json says."""
    out = make_folder(run_dir / "misclassified")
    index = {f: i for i, f in enumerate(ds_split.files)} if ds_split is not None else {}
    wanted = set()
    for e in errors:
        image = ds_split.images[index[e["file"]]]
        name = misclassified_name(split_name, e["file"])
        colour = (0, 0, 200) if e["true"] == "defective" else (0, 140, 255)
        annotated_png(out / name, image, [f"true {e['true']}", f"P(def) {scores[e['file']]:.4f}"], colour)
        wanted.add(name)
    for stale in out.glob("*.png"):
        if stale.name not in wanted:
            with contextlib.suppress(OSError):
                stale.unlink()


def evaluate_split(
    model: torch.nn.Module,
    split: Any,
    spec: PreprocessSpec,
    threshold: float,
    names: tuple[str, str],
    keep: np.ndarray | None = None,
    *,
    mirror: bool = False,
) -> tuple[dict[str, Any], np.ndarray]:
    scores = predict_scores(model, torch.from_numpy(split.images), spec=spec, mirror=mirror)
    labels, files = split.labels, split.files
    if keep is not None:
        scores, labels, files = scores[keep], labels[keep], [files[i] for i in np.nonzero(keep)[0]]
    m = binary_metrics(labels, scores, threshold)
    m["errors"] = _errors(files, labels, scores, threshold, names)
    return m, scores


def reproduce_command(cfg: TrainConfig | None = None) -> str:
    """The command that trains this run again: from ``cfg``, every option that is not its default (after a
    resume, the command line was only ``--resume`` and the options typed with it, a different recipe when run
    anew); the command line itself without ``cfg``."""
    if cfg is None:
        return "train-model " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    default = TrainConfig(data=cfg.data, out=cfg.out)
    args = ["--data", str(cfg.data), "--out", str(cfg.out)]
    for f in fields(TrainConfig):
        value = getattr(cfg, f.name)
        if f.name in ("data", "out", "resume", "weight_decay") or value == getattr(default, f.name) or value is None:
            continue
        option = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            args.append(option if value else f"--no-{f.name.replace('_', '-')}")
        else:
            args += [option, str(value.value if isinstance(value, Enum) else value)]
    return "train-model " + " ".join(shlex.quote(a) for a in args)


def _report_header(
    cfg: TrainConfig, ds: Dataset, spec: PreprocessSpec, trainer: Trainer, ckpt: Checkpoint, *, flops: int
) -> dict[str, Any]:
    """What was trained on what, how, and with which threshold: everything in report.json but the metrics."""
    threshold, names = ckpt.threshold, ckpt.class_names
    return {
        "model": {
            "arch": cfg.arch.value,
            "model_args": ckpt.model_args,
            "input": [spec.channels, spec.size, spec.size],
            "parameters": sum(
                v.numel() for k, v in ckpt.state_dict.items() if "running" not in k and "num_batches" not in k
            ),
            "flops": flops,
            "best_epoch": trainer.best_epoch,
        },
        "threshold": threshold,
        "threshold_rule": "100% defect recall on validation, best specificity, midpoint in logit space"
        + ("; scores averaged with the mirrored image (the runtime's second look)" if ckpt.second_look else "")
        + (
            f"; at most the --init model's {cap:.6g} (few validation defects)" if (cap := trainer.threshold_cap) else ""
        ),
        "class_names": list(names),
        "data": {
            "root": str(Path(cfg.data).resolve()),
            "fingerprint": ds.fingerprint,
            "counts": {s.name: len(s) for s in (ds.train, ds.val, ds.test) if s is not None},
            "unreadable": [{"file": f, "reason": r} for s in (ds.train, ds.test) if s for f, r in s.bad],
            "used_with_warnings": [
                {"split": "test" if s is ds.test else "train", "file": f, "warning": w}
                for s in (ds.train, ds.test)
                if s
                for f, w in s.warned
            ],
            "ignored_non_images": len(ds.train.ignored) + (len(ds.test.ignored) if ds.test else 0),
            "links_not_followed": [{"split": s.name, "link": f} for s in (ds.train, ds.test) if s for f in s.links],
        },
        "leakage": ds.leakage,
        "train_seconds": round(trainer.elapsed, 1),
        "epochs": len(trainer.history),
        "config": cfg.to_dict(),
        "bf16": trainer.bf16,
        "threads": torch.get_num_threads(),
        "versions": {"torch": str(torch.__version__), "numpy": np.__version__},
        "command": reproduce_command(cfg),
    }


def write_final_report(
    cfg: TrainConfig,
    ds: Dataset,
    spec: PreprocessSpec,
    trainer: Trainer,
    run_dir: Path,
    *,
    flops: int,
    log: Log,
) -> dict[str, Any]:
    """Score the best checkpoint on validation and test (official and leakage-free) and write report.json."""
    ckpt = load_checkpoint(run_dir / "best.pt")
    model = model_from_checkpoint(ckpt)
    threshold, names = ckpt.threshold, ckpt.class_names
    report = _report_header(cfg, ds, spec, trainer, ckpt, flops=flops)
    look = {"mirror": ckpt.second_look is not None}  # score as the runtime will
    report["validation"], val_scores = evaluate_split(model, ds.val, spec, threshold, names, **look)
    cm_source = ("validation", report["validation"])
    if ds.test is not None:
        report["test"], scores = evaluate_split(model, ds.test, spec, threshold, names, **look)
        dup = set(ds.leakage["test_duplicates"])
        keep = np.array([f not in dup for f in ds.test.files])
        report["test_leakage_free"], _ = evaluate_split(model, ds.test, spec, threshold, names, keep, **look)
        _save_misclassified(
            run_dir,
            "test",
            ds.test,
            report["test"]["errors"],
            dict(zip(ds.test.files, scores.tolist(), strict=True)),
        )
        cm_source = ("test", report["test"])
    else:
        _save_misclassified(run_dir, "test", None, [], {})
    confusion_png(run_dir / "confusion.png", cm_source[1], names, f"{cm_source[0]} (threshold {threshold:.4f})")
    ckpt.metrics = {k: _without_errors(report[k]) for k in ("validation", "test", "test_leakage_free") if k in report}
    atomic_torch_save(ckpt, run_dir / "best.pt")
    report["warnings"] = report_warnings(report, val_scores)  # in the file too, not only on the console
    # strict JSON: an AUROC or accuracy of no image (a leakage-free test of 0) is null, not a bare NaN
    write_run_text(run_dir / "report.json", json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n")
    _log_summary(report, log)
    return report


def _without_errors(m: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in m.items() if k != "errors"}


def _log_summary(report: dict[str, Any], log: Log) -> None:
    def line(name: str, m: dict[str, Any]) -> str:
        right = m["tp"] + m["tn"]
        return (
            f"{name:<18} {right}/{m['n']} correct  acc {m['accuracy']:.4f}  recall {m['recall']:.4f}  "
            f"precision {m['precision']:.4f}  auroc {m['auroc']:.4f}  missed defects {m['fn']}  false alarms {m['fp']}"
        )

    log(f"threshold {report['threshold']:.6f} (best epoch {report['model']['best_epoch']})")
    for key in ("validation", "test", "test_leakage_free"):
        if key in report:
            log(line(key, report[key]))
    log(f"train time {report['train_seconds']:.0f}s")
    for warning in report.get("warnings", []):
        log(f"warning: {warning}")


MIN_SCORE_SPREAD = 0.05  # a trained model's validation scores span most of 0..1; a collapsed one's 1e-4


def report_warnings(report: dict[str, Any], val_scores: np.ndarray | None = None) -> list[str]:
    """What a reader of the figures above must not miss: they had passed with exit 0 and no word.

    >>> report_warnings({"validation": {"fn": 0, "specificity": 0.0, "n": 10}})[0][:40]
    'every validation OK image is flagged at '
    >>> report_warnings({"validation": {"fn": 0, "n": 2}}, np.array([0.52230, 0.52235]))[0][:60]
    'every validation image scores nearly the same (0.5223 to 0.5'
    """
    out, val = [], report["validation"]
    if val_scores is not None and len(val_scores) > 1 and float(np.ptp(val_scores)) < MIN_SCORE_SPREAD:
        out.append(f"every validation image scores nearly the same ({float(np.min(val_scores)):.4f} to "
                   f"{float(np.max(val_scores)):.4f}): the model has not learnt to tell the classes apart; train "
                   "longer (--epochs) or on more images")  # fmt: skip
    if "tp" in val and (n_defects := val["tp"] + val["fn"]) < FEW_VAL_DEFECTS:
        capped = ", so it was kept at most the --init model's" if "--init" in report.get("threshold_rule", "") else ""
        out.append(f"the threshold rests on {n_defects} defective validation image(s), too few to trust (a defect "
                   f"unlike them may score below it){capped}; add defective images or raise --val-fraction, for at "
                   f"least {FEW_VAL_DEFECTS} in validation")  # fmt: skip
    if val["fn"]:
        out.append(f"the threshold misses {val['fn']} validation defect(s) when the chosen model is scored "
                   "again; the recall-first rule could not be kept (train longer, or with more validation "
                   "defects)")  # fmt: skip
    if val.get("specificity") == 0.0:
        out.append("every validation OK image is flagged at this threshold (specificity 0): the model does not "
                   "separate the classes yet; train longer or check the data")  # fmt: skip
    if "test" in report and report["test"]["n"] and not report.get("test_leakage_free", {}).get("n", 1):
        out.append(f"all {report['test']['n']} test images are copies of training or validation images: the test "
                   "figures say nothing about new parts; use a test folder of images the model never saw")  # fmt: skip
    return out


def data_record(ds: Dataset) -> dict[str, Any]:
    """Where the images were and which went where: export uses it to find calibration and eval images."""
    rec: dict[str, Any] = {
        "root": str(Path(ds.train.root).parent.resolve()),
        "root_as_given": str(Path(ds.train.root).parent),
        "class_dirs": [ds.classes.negative_dir, ds.classes.positive_dir],
        "train_files": ds.train.files,
        "val_files": ds.val.files,
    }
    if ds.test is not None:
        rec["test_duplicates"] = ds.leakage["test_duplicates"]
    return rec


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {row['epoch']:>3}/{epochs}  loss {row['train_loss']:.4f}  acc {row['train_accuracy']:.4f}  |  "
        f"val loss {row['val_loss']:.4f}  acc {row['val_accuracy']:.4f}  auroc {row['val_auroc']:.4f}  "
        f"spec@100%recall {row['val_specificity_at_full_recall']:.4f}  |  {row['seconds']:.1f}s"
    )


def log_dataset(ds: Dataset, log: Log) -> None:
    names = ds.classes.class_names
    parts = [f"train {label_counts(ds.train, names)}", f"val {label_counts(ds.val, names)}"]
    if ds.test is not None:
        parts.append(f"test {label_counts(ds.test, names)}")
    log("data: " + ", ".join(parts) + f" (positive class: {names[1]} = folder {ds.classes.positive_dir})")
    lk = ds.leakage
    msg = f"leakage check (identical bytes): train/val {lk['train_val']}"
    if "test_train" in lk:
        msg += f", test/train {lk['test_train']}, test/val {lk['test_val']}"
        if lk["test_duplicates"]:
            msg += f" -> test metrics are also reported without these {len(lk['test_duplicates'])} images"
    log(msg)
