"""Checkpoints: ``best.pt`` (the model, self-describing, ``weights_only`` loadable) and ``last.pt`` (resume)."""

from __future__ import annotations

from edge_runtime.errors import require_extra

require_extra("torch", "train")  # one clear line instead of "No module named torch"

import hashlib
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edge_runtime.errors import ModelError, OutputError
from edge_runtime.preprocess import PreprocessSpec
from train.config import Arch
from train.model import build_model

CHECKPOINT_FORMAT = 1
HASH_KEY = "sha256"  # content hash of everything else in a model checkpoint, checked before export


def _digest(h: Any, value: Any) -> None:
    """Feed ``value`` to ``h`` unambiguously (type tag, length, content), tensors by dtype, shape and bytes."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, dict):
        h.update(f"D{len(value)}".encode())
        for k in sorted(value, key=str):
            _digest(h, str(k))
            _digest(h, value[k])
    elif isinstance(value, list | tuple):
        h.update(f"L{len(value)}".encode())
        for v in value:
            _digest(h, v)
    else:
        text = repr(value).encode()
        h.update(f"{type(value).__name__}{len(text)}:".encode() + text)


def checkpoint_digest(ckpt: dict[str, Any]) -> str:
    """SHA-256 of a model checkpoint's content (weights, settings, records), without its own hash entry."""
    h = hashlib.sha256()
    _digest(h, {k: v for k, v in ckpt.items() if k != HASH_KEY})
    return h.hexdigest()


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write to a temporary file, then rename: a crash never leaves a half-written checkpoint.

    A model checkpoint (``format`` set) is stamped with :func:`checkpoint_digest` first, so a damaged file is
    refused by :func:`load_checkpoint` instead of exported.
    """
    from edge_runtime.atomic import atomic_path

    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT and "state_dict" in obj:
        obj = {**obj, HASH_KEY: checkpoint_digest(obj)}
    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
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
    verify_checkpoint(ckpt, path)
    return ckpt


def verify_checkpoint(ckpt: dict[str, Any], path: Path) -> bool:
    """Check the stored content hash (:class:`ModelError`, exit 4, on a mismatch); False when there is none."""
    recorded = ckpt.get(HASH_KEY)
    if recorded is None:
        print(
            f"warning: {path} has no content hash (written before train-model stored one); its integrity is not "
            "checked",
            file=sys.stderr,
        )
        return False
    if recorded != checkpoint_digest(ckpt):
        raise ModelError(
            f"{path}: checkpoint content hash mismatch (the file was modified or damaged); retrain or restore it"
        )
    return True


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
