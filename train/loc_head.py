"""A trained localisation head: where on the part the defect is, learnt from synthetic defects.

Why. The verdict network learns *whether* a part is defective from image labels alone; nothing in that loss says
*where*. Its class-activation map (``export/cam.py``'s fixed-weight Grad-CAM) lands near the defect but rarely
on it (pointing game 23% on the hand-marked boxes of ``benchmarks/localisation.py``). A map trained as
multiple-instance learning on the real labels peaked one or two cells beside the defects: nothing in such a
loss fixes the position either.

What. The head (:class:`LocHead`) reads the frozen verdict network at 1/4 and 1/8 of the input and gives a
logit map of (size/4)^2 cells (40 x 40 at 160 px; about 3.4 M multiply-adds, a tenth of the network's). It is trained
after the verdict network, which it never changes (the verdict, threshold and model version stay as they are),
on:

- OK training images with **synthetic defects pasted at known places** (dark holes and pinholes of 1.5-7 px,
  bright burrs, scratches, rough patches, anywhere on the part), with the map's target at those cells;
- OK training images as they are: no cell may fire.

Real defective images are not used: their defects are not marked, and a "fire somewhere" loss taught the head
to fire on the same bright groove in every image. The head has to recognise real defects through the verdict
network's features, which were trained on them.

Cell ``(i, j)`` of the map is centred on input pixel ``(4i, 4j)``, as the stride-2, padding-1 convolutions put
it and as the runtime maps it back to the source (``edge_runtime/heatmap.py``).

>>> record = train_loc_head(net, ok_images_u8, spec, epochs=14, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

from edge_runtime.errors import require_extra

require_extra("torch", "train")

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_runtime.cli_support import Command, debug_option, friendly_errors, version_option
from edge_runtime.errors import DataError, ModelError, exit_codes_help
from edge_runtime.preprocess import PreprocessSpec

Log = Callable[[str], None]
HEAD_KIND = "synthetic-defects-v1"
WIDTH = 16
# The logit drawn at full heat (edge_runtime.heatmap.heat). Casting test images, shipped model: defective parts
# peak at 1-10, OK parts below 0.7.
FULL_SCALE = 4.0
DEFAULT_EPOCHS = 14  # passes over the OK training images (about 700 steps of 48 on the casting set)


def taps(net: nn.Module, size: int, channels: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The last layers of ``net.features`` at 1/4 and 1/8 of the input's side (indices), and their channels."""
    if not isinstance(getattr(net, "features", None), nn.Sequential) or not hasattr(net, "pool"):
        raise ModelError(
            f"{type(net).__name__} has no feature stages ending in a global-average-pool head; it cannot carry a "
            "localisation head"
        )
    last: dict[int, tuple[int, int]] = {}  # side -> (index, channels) of the last layer at that side
    x = torch.zeros(1, channels, size, size)
    with torch.no_grad():
        for i, layer in enumerate(net.features):
            x = layer(x)
            last[int(x.shape[-1])] = (i, int(x.shape[1]))
    wanted = [size // 4, size // 8]
    if size % 8 or any(w not in last for w in wanted):
        raise ModelError(f"{type(net).__name__} has no stages at 1/4 and 1/8 of {size} px; no localisation head")
    (i4, c4), (i8, c8) = last[size // 4], last[size // 8]
    return (i4, i8), (c4, c8)


class LocHead(nn.Module):
    """Two small per-cell classifiers, added: one on the 1/4 stage (fine position), one on the 1/8 stage with a
    3x3 neighbourhood (more context), its logits repeated 2x2. Output: logits ``(N, 1, S/4, S/4)``.

    Few nodes on purpose: at these sizes onnxruntime's time goes to each node's fixed cost, not to the
    multiply-adds. A 16-channel 3x3 convolution at 1/4 and a 16-channel upsampling before it, measured, cost
    23-35% of INT8 batch-1 latency; this head costs 11-15% (``benchmarks/results/map_cost.md``).
    """

    def __init__(self, channels: Sequence[int], width: int = WIDTH) -> None:
        super().__init__()
        c4, c8 = (int(c) for c in channels)
        self.fine = nn.Sequential(nn.Conv2d(c4, width, 1), nn.ReLU(), nn.Conv2d(width, 1, 1))
        self.coarse = nn.Sequential(nn.Conv2d(c8, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 1, 1))

    def forward(self, f4: torch.Tensor, f8: torch.Tensor) -> torch.Tensor:
        return self.fine(f4) + F.interpolate(self.coarse(f8), scale_factor=2.0, mode="nearest")


def features_and_logit(net: nn.Module, layers: Sequence[int], x: torch.Tensor) -> tuple[list[torch.Tensor], Any]:
    """The tapped stage outputs and the verdict logit, in one pass through ``net``."""
    found = []
    for i, layer in enumerate(net.features):
        x = layer(x)
        if i in layers:
            found.append(x)
    return found, net.head(net.pool(x).flatten(1)).squeeze(1)


@dataclass(frozen=True)
class HeadRecord:
    """What a checkpoint stores under ``loc_head``."""

    layers: tuple[int, int]
    channels: tuple[int, int]
    state_dict: dict[str, torch.Tensor]
    width: int
    epochs: int
    seed: int
    images: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": HEAD_KIND,
            "layers": list(self.layers),
            "channels": list(self.channels),
            "state_dict": {k: v.detach().clone() for k, v in self.state_dict.items()},
            "width": self.width,
            "epochs": self.epochs,
            "seed": self.seed,
            "images": self.images,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HeadRecord:
        if d.get("kind") != HEAD_KIND:
            raise ModelError(f"unknown localisation head {d.get('kind')!r}; retrain it with this defect-edge")
        return cls(
            layers=tuple(int(v) for v in d["layers"]),  # type: ignore[arg-type]
            channels=tuple(int(v) for v in d["channels"]),  # type: ignore[arg-type]
            state_dict=dict(d["state_dict"]),
            width=int(d["width"]),
            epochs=int(d["epochs"]),
            seed=int(d["seed"]),
            images=int(d["images"]),
        )

    @property
    def full_scale(self) -> float:
        return FULL_SCALE

    def module(self) -> LocHead:
        head = LocHead(self.channels, self.width)
        head.load_state_dict(self.state_dict)
        return head.eval()

    def describe(self) -> str:
        return (
            f"trained localisation head ({HEAD_KIND}) on features{list(self.layers)}, {self.epochs} epochs over "
            f"{self.images} OK training images with pasted synthetic defects"
        )


# -- synthetic defects -----------------------------------------------------------------------------------------
KINDS = ("hole", "hole", "bright", "scratch", "rough")


def paste_defect(img: np.ndarray, rng: np.random.Generator, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic defect on ``img`` (float32 (S, S), 0-255, a part-centred input): returns the image and the
    (cells, cells) target, 1 on the cells the defect covers and a Gaussian bump at its centre."""
    size = img.shape[0]
    c = size / 2
    # anywhere on the part, more often towards the flange (uniform over the disc's area)
    r = c * (0.12 + 0.72 * math.sqrt(rng.random()))
    theta = rng.random() * 2 * math.pi
    cx, cy = c + r * math.cos(theta), c + r * math.sin(theta)
    kind = KINDS[int(rng.integers(len(KINDS)))]
    up = 4  # drawn 4x larger, then shrunk: sub-pixel sizes and soft edges

    def at(v: float) -> int:
        return int(round(v * up))

    mask = np.zeros((size * up, size * up), np.uint8)
    if kind == "hole":
        a = rng.uniform(0.7, 3.5)
        b = a * rng.uniform(0.6, 1.0)
        cv2.ellipse(mask, (at(cx), at(cy)), (max(1, at(a)), max(1, at(b))), rng.uniform(0, 180), 0, 360, 255, -1)
    elif kind == "bright":
        for _ in range(int(rng.integers(1, 4))):
            centre = (at(cx + rng.normal(0, 2)), at(cy + rng.normal(0, 2)))
            cv2.circle(mask, centre, max(1, at(rng.uniform(1, 4))), 255, -1)
    elif kind == "scratch":
        length, d = rng.uniform(4, 14), rng.uniform(0, math.pi)
        dx, dy = length / 2 * math.cos(d), length / 2 * math.sin(d)
        cv2.line(mask, (at(cx - dx), at(cy - dy)), (at(cx + dx), at(cy + dy)), 255, max(1, at(rng.uniform(0.6, 1.5))))
    else:
        cv2.circle(mask, (at(cx), at(cy)), at(rng.uniform(3, 8)), 255, -1)
    alpha = cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    alpha = cv2.GaussianBlur(alpha, (0, 0), rng.uniform(0.3, 0.8))
    if kind in ("hole", "scratch"):
        new = img * rng.uniform(0.1, 0.6)
    elif kind == "bright":
        new = np.minimum(255.0, img + rng.uniform(40, 110))
    else:
        noise = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 1.0)
        new = img * rng.uniform(0.5, 0.8) + 35 * noise
    out = np.clip(img * (1 - alpha) + new * alpha, 0, 255)
    stride = size // cells
    covered = cv2.dilate(alpha, np.ones((stride + 1, stride + 1), np.uint8))[::stride, ::stride]
    yy, xx = np.mgrid[0:cells, 0:cells]
    gx, gy = (cx - 0.5) / stride, (cy - 0.5) / stride  # cell j is centred on input pixel stride * j
    bump = np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * 0.8**2))
    return out.astype(np.float32), np.maximum((covered > 0.25).astype(np.float32), bump).astype(np.float32)


def _turned(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    img = np.rot90(img, int(rng.integers(4)))
    return img[:, ::-1] if rng.random() < 0.5 else img


def _pasted_batch(
    ok_images: np.ndarray, rng: np.random.Generator, *, batch: int, n_paste: int, cells: int
) -> tuple[np.ndarray, np.ndarray]:
    """One training batch drawn from ``ok_images``, each turned at random, the first ``n_paste`` with one synthetic
    defect (sometimes two): float32 images (batch, S, S) and their targets (batch, cells, cells)."""
    imgs, targets = [], []
    for k, i in enumerate(rng.choice(len(ok_images), batch)):
        img = np.ascontiguousarray(_turned(ok_images[i], rng), dtype=np.float32)
        target = np.zeros((cells, cells), np.float32)
        if k < n_paste:
            img, target = paste_defect(img, rng, cells)
            if rng.random() < 0.3:
                img, second = paste_defect(img, rng, cells)
                target = np.maximum(target, second)
        imgs.append(img)
        targets.append(target)
    return np.stack(imgs), np.stack(targets)


# -- training ---------------------------------------------------------------------------------------------------
def train_loc_head(
    net: nn.Module,
    ok_images: np.ndarray,
    spec: PreprocessSpec,
    *,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    batch: int = 48,
    log: Log = print,
) -> HeadRecord:
    """Train a :class:`LocHead` on ``net`` (frozen, eval mode) from OK part-centred inputs ``ok_images``
    ((N, S, S) uint8, as the runtime crops them): two thirds of each batch get synthetic defects."""
    if len(ok_images) == 0:
        raise DataError("no OK training images for the localisation head")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    size = spec.size
    layers, chans = taps(net, size, spec.channels)
    head = LocHead(chans, WIDTH)
    cells = size // 4
    steps = max(1, epochs * len(ok_images) // batch)
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    scale, shift = spec.scale / spec.std, (spec.mean / spec.std if spec.mean else 0.0)
    n_paste = (2 * batch) // 3
    t0 = time.monotonic()
    for step in range(steps):
        imgs, targets = _pasted_batch(ok_images, rng, batch=batch, n_paste=n_paste, cells=cells)
        x = torch.from_numpy(imgs)[:, None] * scale - shift
        if spec.channels == 3:
            x = x.repeat(1, 3, 1, 1)
        with torch.no_grad():
            feats, _ = features_and_logit(net, layers, x)
        logits = head(*feats)
        target = torch.from_numpy(targets)[:, None]
        loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(20.0))
        peak = logits.flatten(1).max(1).values  # an OK part: no cell may fire
        loss = loss + 0.5 * F.binary_cross_entropy_with_logits(peak, (target.flatten(1).max(1).values > 0.5).float())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % max(1, steps // 4) == 0 or step == steps - 1:
            log(f"localisation head: step {step + 1}/{steps}, loss {loss.item():.4f}, {time.monotonic() - t0:.0f} s")
    return HeadRecord(
        layers=layers,
        channels=chans,
        state_dict={k: v.detach().clone() for k, v in head.state_dict().items()},
        width=WIDTH,
        epochs=epochs,
        seed=seed,
        images=len(ok_images),
    )


def ok_inputs(paths: Sequence[Path], spec: PreprocessSpec) -> np.ndarray:
    """The part-centred uint8 inputs of ``paths``, cropped exactly as the runtime crops them."""
    from edge_runtime.decoding import read_image_checked
    from edge_runtime.preprocess import resize_to_input, to_uint8_gray

    out = []
    for p in paths:
        try:
            out.append(resize_to_input(to_uint8_gray(read_image_checked(p).image), spec))  # damage: reported
        except (DataError, OSError, ValueError):
            continue  # unreadable images were reported by training already
    return np.stack(out) if out else np.zeros((0, spec.size, spec.size), np.uint8)


def drop_loc_head(ckpt_path: Path, *, log: Log = print) -> None:
    """Take a trained head out of the checkpoint (a run finished with --loc-head-epochs 0, whose report says so)."""
    from train.checkpoint import load_checkpoint
    from train.checkpoint_save import atomic_torch_save

    ckpt = load_checkpoint(ckpt_path)
    if ckpt.loc_head is None:
        return
    ckpt.loc_head = None
    atomic_torch_save(ckpt.to_dict(), ckpt_path)
    log("localisation head: removed (--loc-head-epochs 0); the exported map will be a Grad-CAM")


def add_loc_head(ckpt_path: Path, *, epochs: int = DEFAULT_EPOCHS, seed: int = 0, log: Log = print) -> HeadRecord:
    """Train the head for the checkpoint at ``ckpt_path`` on its recorded OK training images and store it there."""
    from train.checkpoint import load_checkpoint, model_from_checkpoint, recorded_root, recorded_train_files
    from train.checkpoint_save import atomic_torch_save

    ckpt = load_checkpoint(ckpt_path)
    ok_dir = ckpt.data.class_dirs[0] if ckpt.data.class_dirs else ""
    train_dir = (recorded_root(ckpt) or Path()) / "train"
    # the class is the first folder below train/: OK images in sub-folders of ok_front/ were trained on, and then
    # "not reachable" ended a whole default run with exit 3
    paths = [p for p in recorded_train_files(ckpt, with_val=False) if p.relative_to(train_dir).parts[0] == ok_dir]
    if not paths:
        raise DataError(f"{ckpt_path}: its OK training images are not reachable (under {ckpt.data.root or '?'})")
    log(f"localisation head: {len(paths)} OK training images")
    net = model_from_checkpoint(ckpt)
    record = train_loc_head(net, ok_inputs(paths, ckpt.preprocess), ckpt.preprocess, epochs=epochs, seed=seed, log=log)
    ckpt.loc_head = record.to_dict()
    atomic_torch_save(ckpt.to_dict(), ckpt_path)
    return record


@click.command(
    cls=Command,
    help="Train the localisation head of CHECKPOINT (a train-model best.pt) on its OK training images and store it "
    "there; the verdict network, threshold and model version do not change. Then re-export (export-onnx).\n\n"
    + exit_codes_help(0, 1, 2, 3, 4, 7, 8, 130),
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.argument("checkpoint", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--epochs", default=DEFAULT_EPOCHS, show_default=True, type=click.IntRange(min=1))
# numpy's and torch's seeds: a negative or larger one failed inside them with a traceback
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1))
@version_option
@debug_option
@friendly_errors
def main(checkpoint: Path, epochs: int, seed: int, *, debug: bool) -> None:
    from edge_runtime.errors import OutputError

    try:
        add_loc_head(checkpoint, epochs=epochs, seed=seed, log=click.echo)
    except OutputError as exc:  # it writes beside the checkpoint: train-model's "--out" is not an option here
        raise OutputError(str(exc).removesuffix(" or choose another --out")) from exc


if __name__ == "__main__":  # python -m train.loc_head runs/x/best.pt
    main()
