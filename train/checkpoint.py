"""Checkpoints: ``best.pt`` (the model, self-describing, ``weights_only`` loadable) and ``last.pt`` (resume)."""

from __future__ import annotations

from edge_runtime.errors import require_extra

require_extra("torch", "train")  # one clear line instead of "No module named torch"

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edge_runtime.errors import ModelError, OutputError
from edge_runtime.preprocess import PreprocessSpec
from train.config import Arch
from train.model import build_model

CHECKPOINT_FORMAT = 1


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write to a temporary file, then rename: a crash never leaves a half-written checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write checkpoint ({exc.strerror or exc}); check the folder") from exc


def model_checkpoint(
    model: nn.Module,
    *,
    arch: Arch,
    model_args: dict[str, Any],
    spec: PreprocessSpec,
    class_names: tuple[str, str],
    threshold: float,
    fingerprint: str,
    metrics: dict[str, Any],
    data: dict[str, Any],
    epoch: int,
) -> dict[str, Any]:
    """Everything export and the runtime need, in types ``torch.load(weights_only=True)`` accepts."""
    return {
        "format": CHECKPOINT_FORMAT,
        "arch": arch.value,
        "model_args": {k: list(v) if isinstance(v, tuple) else v for k, v in model_args.items()},
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "preprocess": spec.to_dict(),
        "class_names": list(class_names),
        "positive_class": class_names[1],
        "threshold": float(threshold),
        "data_fingerprint": fingerprint,
        "metrics": metrics,
        "data": data,
        "epoch": epoch,
        "versions": {"torch": str(torch.__version__)},
    }


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load and validate a model checkpoint; errors say what is wrong with which file."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found; pass the best.pt written by train-model")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise ModelError(
            f"{path}: not a readable defect-edge checkpoint ({type(exc).__name__}); retrain or re-download it"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(
            f"{path}: not a defect-edge checkpoint of format {CHECKPOINT_FORMAT}; retrain with train-model"
        )
    missing = [
        k for k in ("arch", "model_args", "state_dict", "preprocess", "class_names", "threshold") if k not in ckpt
    ]
    if missing:
        raise ModelError(f"{path}: checkpoint lacks {', '.join(missing)}; retrain with train-model")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """Rebuild the network from the checkpoint alone, in eval mode."""
    try:
        model = build_model(ckpt["arch"], ckpt["model_args"])
        model.load_state_dict(ckpt["state_dict"])
    except (ValueError, TypeError, RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"checkpoint weights do not fit architecture {ckpt.get('arch')!r} ({first[:160]}); retrain or re-export"
        ) from exc
    return model.eval()
