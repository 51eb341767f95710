"""Checkpoints: ``best.pt`` (the model, self-describing, ``weights_only`` loadable) and ``last.pt`` (resume)."""

from __future__ import annotations

import errno

from edge_runtime.errors import require_extra

require_extra("torch", "train")  # one clear line instead of "No module named torch"

import contextlib
import hashlib
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edge_runtime.errors import ModelError, installed_copy_hint
from edge_runtime.preprocess import PreprocessSpec
from train.config import Arch
from train.model import build_model

CHECKPOINT_FORMAT = 1
HASH_KEY = "sha256"  # content hash of everything else in a model checkpoint, checked before export
CUT_SHORT = "cut short ({} bytes, its end missing: a copy or download that did not finish, or a full disk)"


@dataclass
class DataRecord:
    """Where a model's images were and which went where (export finds calibration and eval images with it)."""

    root: str = ""  # absolute path at training time
    root_as_given: str = ""  # as passed to train-model
    class_dirs: list[str] = field(default_factory=list)  # [negative, positive] folder names
    train_files: list[str] = field(default_factory=list)  # relative to root/train
    val_files: list[str] = field(default_factory=list)
    test_duplicates: list[str] | None = None  # test files byte-identical to a training image
    extra: dict[str, Any] = field(default_factory=dict)  # keys a newer train-model wrote, kept as they are

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> DataRecord:
        d = d or {}
        if not isinstance(d, dict):
            raise TypeError(f"data is a {type(d).__name__}, not a record")
        known = {f.name for f in fields(cls)} - {"extra"}
        record = cls(**{k: v for k, v in d.items() if k in known}, extra={k: v for k, v in d.items() if k not in known})
        # an edited (unhashed) checkpoint's train_files of 5 or root of 5 was "unexpected TypeError", exit 1, mid-export
        for name in ("root", "root_as_given"):
            if not isinstance(getattr(record, name), str):
                raise TypeError(f"data.{name} is not text")
        for name in ("class_dirs", "train_files", "val_files", "test_duplicates"):
            value = getattr(record, name)
            if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise TypeError(f"data.{name} is not a list of names")
        return record

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "extra"} | self.extra
        if self.test_duplicates is None:
            del d["test_duplicates"]
        return d


@dataclass
class Checkpoint:
    """A model checkpoint (``best.pt``) as a typed record, beside the runtime's :class:`ModelInfo`.

    On disk it stays a plain dict of ``weights_only``-loadable types (:meth:`to_dict`); :func:`load_checkpoint`
    returns this record. Item access (``ckpt["arch"]``) still works for callers not yet moved to attributes.
    """

    arch: str
    model_args: dict[str, Any]
    state_dict: dict[str, Any]
    preprocess: PreprocessSpec
    class_names: tuple[str, str]
    threshold: float
    positive_class: str = ""
    data_fingerprint: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    data: DataRecord = field(default_factory=DataRecord)
    epoch: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    sha256: str | None = None
    format: int = CHECKPOINT_FORMAT
    loc_head: dict[str, Any] | None = None  # a trained localisation head (train/loc_head.py), when there is one
    # The runtime's second look near the threshold (edge_runtime.model_info.SecondLook.to_dict()); the threshold
    # was then chosen on validation scores with both views. None: one view.
    second_look: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.positive_class = self.positive_class or self.class_names[1]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Checkpoint:
        return cls(
            arch=str(d["arch"]),
            model_args=dict(d["model_args"]),
            state_dict=dict(d["state_dict"]),
            preprocess=PreprocessSpec.from_dict(d["preprocess"]),
            class_names=(str(d["class_names"][0]), str(d["class_names"][1])),
            threshold=float(d["threshold"]),
            positive_class=str(d.get("positive_class", "")),
            data_fingerprint=str(d.get("data_fingerprint", "")),
            metrics=dict(d.get("metrics") or {}),
            data=DataRecord.from_dict(d.get("data")),
            epoch=d.get("epoch"),
            versions=dict(d.get("versions") or {}),
            sha256=d.get(HASH_KEY),
            loc_head=dict(d["loc_head"]) if d.get("loc_head") else None,
            second_look=dict(d["second_look"]) if d.get("second_look") else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The dict ``torch.save`` writes (the content hash is added by :func:`atomic_torch_save`)."""
        return (
            {
                "format": self.format,
                "arch": self.arch,
                "model_args": self.model_args,
                "state_dict": self.state_dict,
                "preprocess": self.preprocess.to_dict(),
                "class_names": list(self.class_names),
                "positive_class": self.positive_class,
                "threshold": float(self.threshold),
                "data_fingerprint": self.data_fingerprint,
                "metrics": self.metrics,
                "data": self.data.to_dict(),
                "epoch": self.epoch,
                "versions": self.versions,
            }
            | ({"loc_head": self.loc_head} if self.loc_head else {})
            | ({"second_look": self.second_look} if self.second_look else {})
        )

    # Item access for callers not yet moved to attributes.
    def __getitem__(self, key: str) -> Any:
        if key == HASH_KEY:
            return self.sha256
        return self.to_dict()[key] if key in ("preprocess", "data", "class_names") else getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            value = self[key]
        except (KeyError, AttributeError):
            return default
        return default if value is None else value

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)


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


def weights_digest(state_dict: dict[str, Any]) -> str:
    """SHA-256 of a model's weights alone (names, shapes, dtypes and values): what a resumed run checks its best.pt by.

    >>> zeros, ones = weights_digest({"w": torch.zeros(2)}), weights_digest({"w": torch.ones(2)})
    >>> zeros == weights_digest({"w": torch.zeros(2)}) != ones
    True
    """
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous().reshape(-1)  # a 0-dim tensor cannot be viewed as bytes
        h.update(f"{name}:{tuple(state_dict[name].shape)}:{t.dtype}:".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def checkpoint_digest(ckpt: dict[str, Any]) -> str:
    """SHA-256 of a model checkpoint's content (weights, settings, records), without its own hash entry."""
    h = hashlib.sha256()
    _digest(h, {k: v for k, v in ckpt.items() if k != HASH_KEY})
    return h.hexdigest()


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
    second_look: dict[str, Any] | None = None,
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
    } | ({"second_look": second_look} if second_look else {})


def _is_onnx(path: Path) -> bool:
    """An ONNX file (a protobuf ModelProto: field 1, ir_version, a varint, comes first) rather than a zip."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError:
        return False
    return path.suffix.lower() == ".onnx" or (len(head) == 2 and head[0] == 0x08 and head[1] < 0x20)


def _torch_load(path: Path) -> Any:
    """``torch.load`` of a checkpoint; a file it cannot read is a :class:`ModelError` that says why and what to do."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        # each of these was "not a readable defect-edge checkpoint (PermissionError/EOFError); retrain or
        # re-download it": advice for a damaged file, to a user who could not read it, or whose copy had stopped
        if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM):
            raise ModelError(f"{path}: cannot be read ({exc.strerror}); check its permissions") from exc
        # emptiness first: an empty file named .onnx was "an exported ONNX model", which it is not (yet)
        with contextlib.suppress(OSError):
            if path.stat().st_size == 0:
                raise ModelError(f"{path}: is empty (0 bytes): a copy or download that did not finish; copy it "
                                 "again, or retrain") from exc  # fmt: skip
        if _is_onnx(path):  # "UnpicklingError; retrain or re-download it", for a model exported already
            raise ModelError(f"{path}: is an exported ONNX model, not a checkpoint; pass the best.pt written by "
                             "train-model (edge-infer --model runs the ONNX file)") from exc  # fmt: skip
        size = cut_short_size(path)
        if size is not None:  # it said "not a readable defect-edge checkpoint (RuntimeError)", of a copy cut off
            raise ModelError(f"{path}: {CUT_SHORT.format(size)}; copy it again from where it was made, or "
                             "retrain") from exc  # fmt: skip
        raise ModelError(
            f"{path}: not a readable defect-edge checkpoint ({type(exc).__name__}); retrain or re-download it"
        ) from exc


def cut_short_size(path: Path) -> int | None:
    """The size of ``path`` when it is a checkpoint cut short, None for any other file. torch writes a zip: a copy
    interrupted or made onto a full disk keeps the zip's first bytes and loses the directory that closes it."""
    import zipfile

    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04" or zipfile.is_zipfile(f):
                return None
        return path.stat().st_size
    except OSError:
        return None


def load_checkpoint(path: Path) -> Checkpoint:
    """Load, verify (content hash) and validate a model checkpoint; errors say what is wrong with which file."""
    path = Path(path)
    try:
        is_dir = path.is_dir()  # raises for a name over the file system's limit (unexpected OSError, exit 1)
    except OSError as exc:
        raise ModelError(
            f"{path}: cannot be read ({exc.strerror or exc}); pass the best.pt written by train-model"
        ) from exc
    if is_dir:
        raise ModelError(f"{path}: is a folder; pass the best.pt in it, written by train-model")
    if not path.is_file():  # a FIFO, a device or a socket exists, and had read "checkpoint not found"
        what = "not a regular file (a FIFO, device or socket)" if path.exists() else "checkpoint not found"
        raise ModelError(f"{path}: {what}; pass the best.pt written by train-model{installed_copy_hint(path)}")
    ckpt = _torch_load(path)
    if isinstance(ckpt, dict) and {"optimizer", "ema", "history"} <= ckpt.keys() and "format" not in ckpt:
        # train-model's last.pt: what --resume continues from, not a model (it said "retrain with train-model")
        best = path.with_name("best.pt")
        use = str(best) if best.is_file() and best != path else "the best.pt of its run"
        raise ModelError(f"{path}: a training run's resume state (last.pt), not a model; use {use}")
    newer = ckpt.get("format") if isinstance(ckpt, dict) else None
    if isinstance(newer, int) and not isinstance(newer, bool) and newer > CHECKPOINT_FORMAT:
        # a good model: "retrain with train-model" had cost a training run instead of an upgrade
        raise ModelError(f"{path}: written by a newer defect-edge (checkpoint format {newer}; this one reads "
                         f"format {CHECKPOINT_FORMAT}); upgrade defect-edge (pip install -U 'defect-edge[train]'), "
                         "then export it")  # fmt: skip
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
    names = ckpt["class_names"]
    listed = isinstance(names, (list, tuple))
    # '', 'ok ', 0 and 1, 'defective\0' passed
    named = listed and all(isinstance(n, str) and n.strip() == n and n and n.isprintable() for n in names)
    if not listed or len(names) != 2 or not named or len(set(names)) != 2:
        # a third name was dropped in silence, and export then said "class_names[1] is 'b'; re-export the model"
        shown = ", ".join(map(repr, names)) if listed else repr(names)
        count = f"{len(names)} class{'es' if len(names) != 1 else ''}" if listed else "no list of classes"
        raise ModelError(
            f"{path}: checkpoint names {count} ({shown[:120]}); a defect-edge model has exactly two distinct names "
            "(defective and OK, non-empty text): retrain with two class folders"
        )
    positive = str(ckpt.get("positive_class") or "")
    if positive and positive not in {str(n) for n in names}:  # said "model metadata ...; re-export the model"
        raise ModelError(
            f"{path}: checkpoint's positive class {positive!r} is not one of its classes ({names[0]!r}, "
            f"{names[1]!r}); retrain, or restore the checkpoint"
        )
    try:
        record = Checkpoint.from_dict(ckpt)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:  # preprocess: [1]
        raise ModelError(f"{path}: checkpoint fields are invalid ({exc!r}); retrain with train-model") from exc
    built = record.model_args.get("size")
    if isinstance(built, int) and built != record.preprocess.size:  # "unexpected RuntimeError: The size of tensor"
        raise ModelError(f"{path}: checkpoint's input size ({record.preprocess.size} px) is not the size its model "
                         f"was built for ({built} px); retrain, or restore the checkpoint")  # fmt: skip
    return record


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


def model_from_checkpoint(ckpt: Checkpoint) -> nn.Module:
    """Rebuild the network from the checkpoint alone, in eval mode."""
    try:
        model = build_model(ckpt.arch, ckpt.model_args)
        model.load_state_dict(ckpt.state_dict)
    except (ValueError, TypeError, RuntimeError, KeyError) as exc:
        # torch's first line is only "Error(s) in loading state_dict for DefectNet:": the next one says what
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        lines = [ln for ln in lines if not ln.startswith("Error(s) in loading state_dict")] or lines
        first = lines[0] if lines else type(exc).__name__
        raise ModelError(
            f"checkpoint weights do not fit architecture {ckpt.arch!r} ({first[:240]}); the file is not this "
            "architecture's checkpoint (or was edited): pass the best.pt that train-model wrote"
        ) from exc
    return model.eval()


def recorded_root(ckpt: Checkpoint) -> Path | None:
    """Where the checkpoint's dataset is on this machine: the absolute path recorded at training time, else the
    path as it was given to train-model (relative to the current folder), else ``$DEFECT_EDGE_DATA``."""
    for candidate in (ckpt.data.root, ckpt.data.root_as_given, os.environ.get("DEFECT_EDGE_DATA")):
        if candidate and (Path(candidate) / "train").is_dir():
            return Path(candidate)
    return None


def recorded_train_files(ckpt: Checkpoint, *, with_val: bool = True) -> list[Path]:
    """Training (and validation) images named in the checkpoint that exist on this machine."""
    root = recorded_root(ckpt)
    if root is None:
        return []
    train_dir = root / "train"
    rel = list(ckpt.data.train_files) + (list(ckpt.data.val_files) if with_val else [])
    return [train_dir / f for f in rel if (train_dir / f).is_file()]
