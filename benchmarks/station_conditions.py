"""What a real inspection station's raw camera shows, rebuilt from the dataset's labelled images (OpenCV, numpy).

The dataset's 300x300 images were processed from 512x512 camera originals. At a station the raw camera sees:
a near-white background (grey 200-245 around the part) instead of medium grey; the part filling the frame with
its flange touching or crossing the border; sharp, high-contrast machining rings; specular highlights, some on
a darker background; 512 px sources. Each function below makes one of these from a dataset image, and
``STATION_CONDITIONS`` lists them with their combinations.

The part is located by its circular outline (a Hough transform on the edges, with the image centre as the
fallback), independently of the runtime's part finder, so that the benchmark does not grade the finder with
its own answer.

>>> [c.name for c in STATION_CONDITIONS][:2]
['station: background near white (215)', 'station: background near white (240)']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

Transform = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Circle:
    cx: float
    cy: float
    r: float


def part_circle(im: np.ndarray) -> Circle:
    """The flange's outer circle: the strongest large circle near the centre (Hough on a blurred copy)."""
    h, w = im.shape
    side = min(h, w)
    blurred = cv2.GaussianBlur(im, (0, 0), 2.0)
    found = cv2.HoughCircles(
        blurred, cv2.HOUGH_GRADIENT, dp=2, minDist=side, param1=80, param2=30,
        minRadius=int(0.34 * side), maxRadius=int(0.49 * side),
    )  # fmt: skip
    if found is None:
        return Circle(w / 2, h / 2, 0.4 * side)
    cx, cy, r = (float(v) for v in found[0][0])
    return Circle(cx, cy, r)


def _outside(im: np.ndarray, c: Circle, *, margin: float = 1.03, soft: float = 3.0) -> np.ndarray:
    """Weight 0 on the part, 1 on the background, with a soft edge of ``soft`` pixels."""
    h, w = im.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.sqrt((xx - c.cx) ** 2 + (yy - c.cy) ** 2) - c.r * margin
    return np.clip(d / soft + 0.5, 0.0, 1.0)


def relight_background(im: np.ndarray, *, level: float, seed: int = 0) -> np.ndarray:
    """Only what lies outside the part changes: its median moves to ``level``, keeping its own texture."""
    c = part_circle(im)
    out_w = _outside(im, c)
    f = im.astype(np.float32)
    bg = float(np.median(f[out_w > 0.99])) if (out_w > 0.99).any() else float(np.median(f))
    moved = level + (f - bg) * 0.6
    return np.clip(f + out_w * (moved - f), 0, 255).astype(np.uint8)


def fill_matrix(
    im: np.ndarray, *, half_side: float, size: int = 512, off_centre: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """The 2x3 affine matrix :func:`fill_frame` applies: ``im``'s pixels to the filled frame's."""
    c = part_circle(im)
    s = size / (2 * half_side * c.r)
    # the frame's centre lies off the part's by ``off_centre`` flange radii: the part sits up and to the left
    fx, fy = c.cx + off_centre[0] * c.r, c.cy + off_centre[1] * c.r
    return np.array([[s, 0, size / 2 - s * fx], [0, s, size / 2 - s * fy]], np.float32)


def fill_frame(
    im: np.ndarray, *, half_side: float, size: int = 512, off_centre: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """Zoom until the part fills the frame: a square of ``half_side`` flange radii about its centre, at
    ``size`` px (1.0: the flange touches the border; below 1.0 it crosses it). ``off_centre`` (flange radii, x
    and y) moves the frame off the part's centre, so that the flange crosses the border on two sides only."""
    m = fill_matrix(im, half_side=half_side, size=size, off_centre=off_centre)
    return cv2.warpAffine(im, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def sharpen(im: np.ndarray, *, amount: float = 1.5, sigma: float = 1.5, contrast: float = 1.3) -> np.ndarray:
    """Crisp, high-contrast machining rings: unsharp masking, then contrast stretched about the mean."""
    f = im.astype(np.float32)
    f = f + amount * (f - cv2.GaussianBlur(f, (0, 0), sigma))
    f = (f - f.mean()) * contrast + f.mean()
    return np.clip(f, 0, 255).astype(np.uint8)


def highlights(im: np.ndarray, *, gain: float = 120.0, seed: int = 0) -> np.ndarray:
    """Specular glints: two bright arcs on the flange, as a turned metal surface throws under a ring light."""
    c = part_circle(im)
    h, w = im.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt((xx - c.cx) ** 2 + (yy - c.cy) ** 2) / c.r
    theta = np.arctan2(yy - c.cy, xx - c.cx)
    rng = np.random.default_rng(seed)
    glint = np.zeros_like(r)
    for centre in rng.uniform(-np.pi, np.pi, 2):
        d = np.angle(np.exp(1j * (theta - centre)))
        glint += np.exp(-((r - 0.8) ** 2) / (2 * 0.06**2) - d**2 / (2 * 0.35**2))
    return np.clip(im + gain * glint, 0, 255).astype(np.uint8)


def upscale_matrix(im: np.ndarray, *, size: int = 512) -> np.ndarray:
    """The 2x3 affine matrix of :func:`upscale`'s resize (pixel centres onto pixel centres)."""
    kx, ky = size / im.shape[1], size / im.shape[0]
    return np.array([[kx, 0, 0.5 * kx - 0.5], [0, ky, 0.5 * ky - 0.5]], np.float32)


def upscale(im: np.ndarray, *, size: int = 512) -> np.ndarray:
    """A 512 px source: the image at the camera's resolution, with the detail a raw capture keeps."""
    big = cv2.resize(im, (size, size), interpolation=cv2.INTER_CUBIC)
    return sharpen(big, amount=0.8, sigma=2.0, contrast=1.0)


def raw_camera(im: np.ndarray, *, level: float = 230, half_side: float = 0.95, glints: bool = False) -> np.ndarray:
    """Everything at once, in the order a station produces it: light, framing, optics."""
    out = relight_background(im, level=level)
    if glints:
        out = highlights(out)
    return sharpen(fill_frame(out, half_side=half_side), amount=1.0, sigma=2.0, contrast=1.2)


@dataclass(frozen=True)
class Condition:
    """``moves``: the 2x3 affine matrix taking a dataset image's pixels to the conditioned image's (so that
    marked boxes follow the part); None where the condition changes only light and detail."""

    name: str
    apply: Transform
    moves: Callable[[np.ndarray], np.ndarray] | None = None


STATION_CONDITIONS: tuple[Condition, ...] = (
    Condition("station: background near white (215)", lambda im: relight_background(im, level=215)),
    Condition("station: background near white (240)", lambda im: relight_background(im, level=240)),
    Condition(
        "station: part fills the frame (flange touches)",
        lambda im: fill_frame(im, half_side=1.02),
        lambda im: fill_matrix(im, half_side=1.02),
    ),
    Condition(
        "station: flange crosses the border",
        lambda im: fill_frame(im, half_side=0.9),
        lambda im: fill_matrix(im, half_side=0.9),
    ),
    Condition(
        "station: part off-centre, flange cut on two sides",
        lambda im: fill_frame(im, half_side=1.0, off_centre=(0.2, 0.2)),
        lambda im: fill_matrix(im, half_side=1.0, off_centre=(0.2, 0.2)),
    ),
    Condition("station: sharp, high-contrast detail", sharpen),
    Condition("station: specular highlights", highlights),
    Condition("station: highlights on a darker background", lambda im: highlights(relight_background(im, level=90))),
    Condition("station: 512 px source", upscale, upscale_matrix),
    Condition(
        "station: white background + fills frame",
        lambda im: fill_frame(relight_background(im, level=230), half_side=1.0),
        lambda im: fill_matrix(relight_background(im, level=230), half_side=1.0),
    ),
    Condition(
        "station: raw camera (all of the above)",
        raw_camera,
        lambda im: fill_matrix(relight_background(im, level=230), half_side=0.95),
    ),
    Condition(
        "station: raw camera + highlights",
        lambda im: raw_camera(im, glints=True),
        lambda im: fill_matrix(highlights(relight_background(im, level=230)), half_side=0.95),
    ),
)


def moved_boxes(
    boxes: list[tuple[int, ...]], matrix: np.ndarray | None, shape: tuple[int, ...]
) -> list[tuple[int, int, int, int]]:
    """Marked boxes (x0, y0, x1, y1, pixel edges, x1/y1 exclusive) carried through a condition's ``moves``
    matrix (scale and shift only) and clipped to the conditioned image of ``shape``; boxes left outside it are
    dropped.

    >>> moved_boxes([(10, 10, 20, 20), (0, 0, 4, 4)], np.array([[2, 0, -10], [0, 2, -10]], np.float32), (50, 50))
    [(9, 9, 30, 30)]
    """
    h, w = shape[:2]
    out = []
    for x0, y0, x1, y1 in boxes:
        if matrix is None:
            a, b = (x0, y0), (x1, y1)
        else:  # edges: pixel-centre coordinates -0.5 and +0.5 around the box's first and last pixels
            a = matrix @ np.array([x0 - 0.5, y0 - 0.5, 1.0]) + 0.5
            b = matrix @ np.array([x1 - 0.5, y1 - 0.5, 1.0]) + 0.5
        nx0, ny0 = max(0, int(np.floor(a[0]))), max(0, int(np.floor(a[1])))
        nx1, ny1 = min(w, int(np.ceil(b[0]))), min(h, int(np.ceil(b[1])))
        if nx1 > nx0 and ny1 > ny0:
            out.append((nx0, ny0, nx1, ny1))
    return out
