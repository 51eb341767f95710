"""The size a picture is shown and saved at: tiny ones grown until their verdict can be read, others fitted into a
saved video's frame without distortion."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["letterbox", "readable"]

MIN_LABEL_SIDE = 120  # pixels: the least side on which the verdict's label can be read
MAX_GROWN_SIDE = 4096  # a tiny picture is grown no larger than this


def readable(canvas: np.ndarray) -> np.ndarray:
    """``canvas`` grown (pixels kept sharp) to at least ``MIN_LABEL_SIDE`` a side, so the verdict drawn on it can be
    read: a 17x9 or 1x1 part picture was saved as a coloured blot, the label cut off and the score nowhere.

    >>> readable(np.zeros((9, 17, 3), np.uint8)).shape, readable(np.zeros((300, 300, 3), np.uint8)).shape
    ((120, 227, 3), (300, 300, 3))
    """
    h, w = canvas.shape[:2]
    grow = min(MIN_LABEL_SIDE / min(h, w), MAX_GROWN_SIDE / max(h, w))
    if grow <= 1:
        return canvas
    size = (max(1, round(w * grow)), max(1, round(h * grow)))
    return cv2.resize(canvas, size, interpolation=cv2.INTER_NEAREST)


def letterbox(canvas: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``canvas`` scaled to fit ``size`` (width, height) without distortion, centred on black.

    >>> letterbox(np.full((100, 200, 3), 255, np.uint8), (100, 100))[[0, 50], 50, 0].tolist()
    [0, 255]
    """
    w, h = size
    ch, cw = canvas.shape[:2]
    s = min(w / cw, h / ch)
    nw, nh = max(1, min(w, round(cw * s))), max(1, min(h, round(ch * s)))
    out = np.zeros((h, w, 3), np.uint8)
    x0, y0 = (w - nw) // 2, (h - nh) // 2
    flag = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    out[y0 : y0 + nh, x0 : x0 + nw] = cv2.resize(canvas, (nw, nh), interpolation=flag)
    return out
