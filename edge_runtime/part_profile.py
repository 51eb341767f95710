"""A part's radial profile, to tell another part in the frame from a dark object of its size.

Seen from above, the casting's radial profile is its signature: a mid-grey hub, the dark hollow around it, then
the bright flange out to about two core radii. A second part in the frame has the same profile as the part found
(same part, same light); a nut, a washer, a coin, a shadow, a conveyor's hole or a dark label do not. OpenCV and numpy.

>>> import numpy as np
>>> yy, xx = np.mgrid[:200, :200]
>>> d = np.hypot(xx - 100, yy - 100) / 40
>>> part = np.where(d < 0.6, 110, np.where(d < 1.0, 20, np.where(d < 2.0, 180, 150))).astype(np.uint8)
>>> coin = np.where(d < 1.0, 20, 150).astype(np.uint8)
>>> ref = radial_profile(part, 100, 100, 40)
>>> like_the_part(radial_profile(part, 100, 100, 40), ref), like_the_part(radial_profile(coin, 100, 100, 40), ref)
(True, False)
"""

from __future__ import annotations

import math

import cv2
import numpy as np

EDGES = np.arange(0.0, 2.0, 0.15)  # the profile's rings, in core radii: hub, hollow, flange
CORE_PX = 12.0  # the profile is measured where a core radius is this many pixels
_EDGES_SQUARED = EDGES**2
# with the part found: second parts mostly 0.94-0.99, a defective one beside an OK one down to 0.87; dark objects up
# to 0.97, which the hub tells apart
MIN_CORRELATION = 0.85
MIN_HUB = 0.3  # of the part found's hub contrasts: a nut's hole (the background's level) has none, a coin no hub


def radial_profile(gray: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    """The mean grey level in each ring of ``EDGES`` (core radii ``r``) around (cx, cy); NaN outside the frame.

    Measured on the part's square shrunk (area interpolation) to ``CORE_PX`` pixels a core radius: a few hundredths
    of a millisecond whatever the frame's size (on the frame itself it took 2-5 ms)."""
    h, w = gray.shape
    reach = EDGES[-1] * r
    x0, x1 = max(0, int(cx - reach)), min(w, int(np.ceil(cx + reach)) + 1)
    y0, y1 = max(0, int(cy - reach)), min(h, int(np.ceil(cy + reach)) + 1)
    if x1 <= x0 or y1 <= y0 or r <= 0:
        return np.full(len(EDGES) - 1, np.nan)
    k = min(1.0, CORE_PX / r)  # shrink factor
    size = (max(1, round((x1 - x0) * k)), max(1, round((y1 - y0) * k)))
    roi = gray[y0:y1, x0:x1]
    win = roi if size == (x1 - x0, y1 - y0) else cv2.resize(roi, size, interpolation=cv2.INTER_AREA)
    kx, ky = size[0] / (x1 - x0), size[1] / (y1 - y0)
    # squared distances from 1-D offsets (no full grids of coordinates): this runs on every item
    dx = (((np.arange(size[0]) + 0.5) / kx + x0 - 0.5 - cx) / r) ** 2
    dy = (((np.arange(size[1]) + 0.5) / ky + y0 - 0.5 - cy) / r) ** 2
    ring = np.searchsorted(_EDGES_SQUARED, (dy[:, None] + dx[None, :]).ravel(), side="right") - 1
    inside = ring < len(EDGES) - 1
    sums = np.bincount(ring[inside], win.ravel()[inside], minlength=len(EDGES) - 1)
    counts = np.bincount(ring[inside], minlength=len(EDGES) - 1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _levels(p: np.ndarray) -> tuple[float, float, float]:
    """Mean hub, hollow and flange levels of a profile (NaN rings, beyond the frame, left out)."""

    def mean(values: list[float]) -> float:
        kept = [v for v in values if v == v]  # not NaN
        return sum(kept) / len(kept) if kept else float("nan")

    values = p.tolist()
    return mean(values[0:3]), mean(values[4:7]), mean(values[8:11])


def _hub_contrast(p: np.ndarray) -> float:
    """(flange - hub) / (flange - hollow): a part's hub is darker than its flange, a nut's hole is the background."""
    hub, hollow, flange = _levels(p)
    return (flange - hub) / max(flange - hollow, 1.0)


def _hub_lift(p: np.ndarray) -> float:
    """(hub - hollow) / (flange - hollow): a part's hub is brighter than its hollow (0.37 or more in every dataset
    image); a dark disc, a coin or a rubber foot has no hub (0)."""
    hub, hollow, flange = _levels(p)
    return (hub - hollow) / max(flange - hollow, 1.0)


# The casting's profile, standardised: the mean over every fifth training image (each correlates 0.92 or more with
# it, the test images 0.89 or more)
CASTING = np.array([0.11, -0.15, -0.18, -0.07, -1.69, -1.65, -1.5, 0.51, 0.75, 1.14, 1.1, 1.05, 0.59])


def looks_like_a_part(p: np.ndarray) -> bool:
    """Whether a profile is the casting's at all: its shape (correlation 0.76 with ``CASTING``) and a hub. The part
    found in every dataset image, and under every condition of the robustness benchmark but one glint, passes; a
    dark label, a washer or a plain dark disc (no hub: "dark inside, bright outside" alone correlates 0.8) does not."""
    return _correlation(p, CASTING) >= 0.76 and _hub_contrast(p) >= 0.05 and _hub_lift(p) >= 0.2


def _correlation(p: np.ndarray, ref: np.ndarray) -> float:
    pairs = [(a, b) for a, b in zip(p.tolist(), ref.tolist(), strict=True) if a == a and b == b]  # no NaN
    if len(pairs) < 8:  # most of it beyond the frame: too little to tell
        return -1.0
    ma, mb = sum(a for a, _ in pairs) / len(pairs), sum(b for _, b in pairs) / len(pairs)
    cov = sum((a - ma) * (b - mb) for a, b in pairs)
    var = sum((a - ma) ** 2 for a, _ in pairs) * sum((b - mb) ** 2 for _, b in pairs)
    return cov / (math.sqrt(var) + 1e-9)


def like_the_part(p: np.ndarray, ref: np.ndarray) -> bool:
    """Whether profile ``p`` is another part's, ``ref`` being the part found in the same frame."""
    hubs = _hub_contrast(p) >= MIN_HUB * max(_hub_contrast(ref), 1e-3) and _hub_lift(p) >= MIN_HUB * _hub_lift(ref)
    return _correlation(p, ref) >= MIN_CORRELATION and hubs
