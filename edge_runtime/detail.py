"""How much fine detail a network input shows, and softening an input sharper than the training images.

A station camera's crisp machining rings make the part-centred input sharper than any training image; the
runtime blurs such an input, mildly, to the training images' detail before the network sees it
(``EdgeModel.sharpness_limit``). OpenCV only, on the 160 px input: a few hundredths of a millisecond.
"""

from __future__ import annotations

import cv2
import numpy as np


def sharpness(framed: np.ndarray) -> float:
    """Fine detail of a network input: the spread of its Laplacian over the spread of its grey levels."""
    _, lap_std = cv2.meanStdDev(cv2.Laplacian(framed, cv2.CV_16S))
    _, f_std = cv2.meanStdDev(framed)
    return float(lap_std[0, 0] / (f_std[0, 0] + 1e-3))


# Gaussian blurs tried, mildest first, on an input sharper than any training image (:func:`softened`).
SOFTEN_SIGMAS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2)


def softened(framed: np.ndarray, limit: float, measured: float | None = None) -> np.ndarray:
    """``framed`` with its detail brought within ``limit`` (the sharpest training image's :func:`sharpness`): a
    camera sharper than any training image (crisp machining rings) is blurred by the mildest of
    :data:`SOFTEN_SIGMAS` that brings it there (the strongest where none does); an input within it is returned as
    it is. ``measured``: its sharpness, where the station check has it already.

    >>> import numpy as np
    >>> rings = 128 + 60 * np.sin(0.3 * np.hypot(*(np.indices((160, 160)) - 80)))
    >>> grain = np.random.default_rng(0).normal(0, 12, (160, 160))
    >>> x = np.clip(rings + grain, 0, 255).astype(np.uint8)
    >>> round(sharpness(x), 2), round(sharpness(softened(x, 0.6)), 2), softened(x, 2.0) is x
    (1.22, 0.4, True)
    """
    if (sharpness(framed) if measured is None else measured) <= limit:
        return framed
    for sigma in SOFTEN_SIGMAS:
        out = cv2.GaussianBlur(framed, (0, 0), sigma)
        if sharpness(out) <= limit:
            break
    return out
