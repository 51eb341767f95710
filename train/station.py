"""Station views (opt-in, ``train-model --station-views K``): each training image as a raw station camera would show it.

The crop-level augmentation (train/augment.py) changes what the network sees after the part has been found and
framed. A station camera changes the whole frame first, and the runtime's part finder and framing then see that:
a near-white or darker background right up to the flange, the part zoomed until it fills the frame or its
flange crosses the border (the runtime pads beyond it), a 512 px source, sharp high-contrast rings, glints. Each
training image gets ``k`` such views, drawn at random (seeded per image) and framed by the runtime's own
preprocessing, so training sees what ``edge-infer`` will feed the network. During training a share of each
batch is swapped for one of its views (train.engine.train_one_epoch).

Measured on the casting data (8 seeds each, one split, scored under the robustness benchmark's 11 station
conditions): mean 1 - AUROC on the test images fell from 0.00104 to 0.00052 with these views, and to 0.00018
with the views and the background relit from each part's own flange edge (:func:`flange_edges`).

>>> import numpy as np, cv2
>>> im = np.full((300, 300), 170, np.uint8)
>>> _ = cv2.circle(im, (150, 150), 120, 215, -1); _ = cv2.circle(im, (150, 150), 64, 25, -1)
>>> station_view(im, np.random.default_rng(0)).dtype
dtype('uint8')
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.decoding import read_image_checked
from edge_runtime.framing import find_part
from edge_runtime.preprocess import PreprocessSpec, resize_to_input

# The flange's outer edge lies at 1.91 dark-core radii as edge_runtime.framing measures the core (median of
# the casting training images; framing.FLANGE_RATIO rounds it to 2.0 for its own use).
FLANGE_PER_CORE = 1.91
CAMERA_SIZE = 512  # px: a station camera's frame


def flange_edges(crops: np.ndarray) -> np.ndarray:
    """The flange's outer edge in each part-centred crop, as a fraction of half the side.

    The strongest radial step between 0.62 and 0.97 of the half side on 96 rays, median over the rays (a ray
    through a glint or a defect does not move it). On the casting crops: 0.76-0.82, median 0.78.

    >>> im = np.full((1, 160, 160), 90, np.uint8); _ = cv2.circle(im[0], (80, 80), 64, 200, -1)
    >>> bool(0.78 <= flange_edges(im)[0] <= 0.81)  # the disc's edge: 64 / 80
    True
    """
    n, size = crops.shape[0], crops.shape[-1]
    half = size / 2
    lo, hi = int(0.62 * half), int(0.97 * half)
    out = np.empty(n, np.float32)
    for i in range(n):
        polar = cv2.warpPolar(
            crops[i].astype(np.float32), (int(half), 96), (half - 0.5, half - 0.5), half, cv2.WARP_POLAR_LINEAR
        )
        step = np.abs(np.diff(cv2.GaussianBlur(polar, (5, 1), 0), axis=1))[:, lo:hi]
        out[i] = float(np.median(lo + np.argmax(step, axis=1) + 0.5)) / half
    return out


def _radius_and_angle(shape: tuple[int, int], cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    xx = np.arange(w, dtype=np.float32) - np.float32(cx)
    yy = np.arange(h, dtype=np.float32)[:, None] - np.float32(cy)
    return cv2.cartToPolar(np.broadcast_to(xx, (h, w)).copy(), np.broadcast_to(yy, (h, w)).copy())


def station_view(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random station-camera version of an 8-bit gray dataset image (before framing)."""
    part = find_part(gray)
    cx, cy, flange = part.cx, part.cy, FLANGE_PER_CORE * part.radius
    f = gray.astype(np.float32)
    r, theta = _radius_and_angle(gray.shape, cx, cy)
    if rng.random() < 0.65:  # the background relit from the flange's edge on: mostly near white, else darker
        outside = np.clip((r - flange * rng.uniform(0.995, 1.05)) / rng.uniform(1.0, 4.0) + 0.5, 0.0, 1.0)
        far = outside > 0.99
        bg = float(np.median(f[far])) if far.any() else float(np.median(f))
        level = rng.uniform(195, 250) if rng.random() < 0.7 else rng.uniform(50, 150)
        f += outside * (level + (f - bg) * rng.uniform(0.4, 0.9) - f)
    if rng.random() < 0.45:  # one to three specular glints along the flange
        glint = np.zeros_like(f)
        for centre in rng.uniform(0.0, 2 * np.pi, rng.integers(1, 4)):
            d = np.remainder(theta - centre + np.pi, 2 * np.pi) - np.pi
            ring, width, span = rng.uniform(0.7, 0.9), rng.uniform(0.04, 0.08), rng.uniform(0.2, 0.5)
            glint += np.exp(-((r / flange - ring) ** 2) / (2 * width**2) - d**2 / (2 * span**2))
        f += rng.uniform(60, 150) * glint
    f = np.clip(f, 0, 255)
    if rng.random() < 0.5:  # the part fills the frame or crosses its border, at the camera's resolution
        s = CAMERA_SIZE / (2 * rng.uniform(0.86, 1.15) * flange)
        dx, dy = rng.uniform(-0.04, 0.04, 2) * CAMERA_SIZE
        m = np.array([[s, 0, CAMERA_SIZE / 2 - s * cx + dx], [0, s, CAMERA_SIZE / 2 - s * cy + dy]], np.float32)
        f = cv2.warpAffine(f, m, (CAMERA_SIZE, CAMERA_SIZE), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    elif rng.random() < 0.4:  # the whole frame at the camera's resolution
        f = cv2.resize(f, (CAMERA_SIZE, CAMERA_SIZE), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.6:  # sharp, high-contrast machining rings
        f += rng.uniform(0.4, 2.0) * (f - cv2.GaussianBlur(f, (0, 0), rng.uniform(1.0, 2.2)))
        mean = float(f.mean())
        f = (f - mean) * rng.uniform(1.0, 1.35) + mean
    return np.clip(f, 0, 255).astype(np.uint8)


def _views_of(path: Path, spec: PreprocessSpec, k: int, seed: int) -> np.ndarray:
    gray = read_image_checked(path).image  # no ImageWarning: training's reading of it reported any damage
    rng = np.random.default_rng(seed)
    return np.stack([resize_to_input(station_view(gray, rng), spec) for _ in range(k)])


def station_views(
    root: Path, files: list[str], spec: PreprocessSpec, *, k: int, seed: int, workers: int = 2
) -> np.ndarray:
    """``k`` framed station views of each image ``root/f``: (k, N, size, size) uint8, the same for a seed."""
    seeds = np.random.SeedSequence(seed).spawn(len(files))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        views = list(pool.map(lambda a: _views_of(root / a[0], spec, k, a[1]), zip(files, seeds, strict=True)))
    return np.stack(views, axis=1)
