"""Where on a round part: how far each pixel departs from the part's own rotational symmetry.

The casting is turned and seen from above: rotated a few degrees about its centre, a sound part looks the same,
so a pinhole, a burr on the rim or a crack is what changes under that rotation. For a part-centred model
(``"crop": "part"``) the part's centre is known from the framing, and :func:`asymmetry` measures, at the source
image's own resolution, each pixel against the same place rotated by +-3 and +-6 degrees:

- **reference** the middle two of the four rotated values (a defect a few pixels wide is in none of them);
- **residual** ``|pixel - reference|``, blurred with a Gaussian of sigma 1 px;
- **per radius** divided by the mean residual of its ring (+ 2 grey levels), so rings whose sharp edges always
  leave a residual (the bore, the machining grooves) do not outshout a defect.

The result (float32, H x W, 0 outside the part's disc and where a rotated copy would leave the frame) is a
ratio: about 1 on a sound ring, 5-25 at a defect. Work is done on the part's square, shrunk (area) when its half
side exceeds 192 px (the casting dataset's parts are 140-175) and brought back with a bilinear resize.
:func:`edge_runtime.heatmap.point_and_box` adds it to the network's map to find the point and ``defect_box``. The
settings were chosen on synthetic defects pasted on OK *training* images, never on the test images.

Its peak is also a second opinion on the verdict (:func:`look`, the model's ``symmetry_look``): a decoding worker
cuts the part's square (:func:`part_patch`), and an item whose score lies just below the
threshold is lifted where the peak is clearly above a sound part's (:class:`edge_runtime.model_info.SymmetryLook`).

>>> import numpy as np, cv2
>>> img = np.full((300, 300), 120, np.uint8); _ = cv2.circle(img, (150, 150), 100, 200, -1)
>>> _ = cv2.circle(img, (150, 150), 40, 30, -1); _ = cv2.circle(img, (220, 110), 3, 40, -1)
>>> a = asymmetry(img, (0.0, 0.0, 300.0, 300.0))
>>> y, x = np.unravel_index(int(np.argmax(a)), a.shape); bool(abs(x - 220) <= 2 and abs(y - 110) <= 2)
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edge_runtime.metrics import logit

if TYPE_CHECKING:
    from edge_runtime.model_info import SymmetryLook

ANGLES = (3.0, 6.0)  # degrees each way
BLUR = 1.0  # Gaussian sigma of the residual, px at the working scale
FLOOR = 2.0  # grey levels added to each ring's mean residual
RIM = 0.98  # of the crop's half side: the part's disc (the framing puts the flange at 0.96)
WORK_HALF = 192.0  # largest half side worked on, px (the casting set's parts: 140-175)
KEEP_PIXELS = 1 << 20  # a part's square up to this size is kept as cut until it is measured (PartPatch)


@dataclass(frozen=True)
class PartPatch:
    """The part's square cut from a source image: all :func:`asymmetry` reads of it.

    A decoding worker cuts it beside the network input and the item carries it to its verdict (the model's
    symmetry look), so the frame need not be kept. It is kept at the source's scale, a plain copy; shrinking it to
    the working scale (area interpolation, 0.6 ms for a 512 px camera frame) waits until it is measured, which
    only a few items are. A square of more than :data:`KEEP_PIXELS` is shrunk at once, so that no item holds
    megabytes."""

    image: np.ndarray  # uint8, the square (source scale, or already shrunk when it was large)
    cx: float  # the part's centre, pixels of ``image``
    cy: float
    half: float  # the square's half side, pixels of ``image``
    where: tuple[int, int, int, int]  # (left, top, right, bottom): the source pixels the patch covers

    def working(self) -> tuple[np.ndarray, float, float, float]:
        """The square at the working scale (half side at most :data:`WORK_HALF`): image, centre x, y and the
        part's disc radius, in its pixels."""
        patch, s = self.image, min(1.0, WORK_HALF / self.half)
        if s < 1.0:
            h, w = patch.shape
            patch = cv2.resize(patch, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)
        sx, sy = patch.shape[1] / self.image.shape[1], patch.shape[0] / self.image.shape[0]
        return patch, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5, RIM * self.half * s


def part_patch(gray: np.ndarray, region: tuple[float, float, float, float]) -> PartPatch | None:
    """The part's square of an 8-bit gray image, ``region`` the part-centred square (source pixels,
    :func:`edge_runtime.framing.region_for` of a part that was found); None when it is too small to measure."""
    h, w = gray.shape[:2]
    x0, y0, x1, y1 = region
    # framing.region_for centres the square on the part's centre in pixel-centre coordinates
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if not (np.isfinite(cx) and np.isfinite(cy) and np.isfinite(half)):
        return None
    left, t = max(0, int(np.floor(cx - half))), max(0, int(np.floor(cy - half)))
    r, b = min(w, int(np.ceil(cx + half)) + 1), min(h, int(np.ceil(cy + half)) + 1)
    if r - left < 8 or b - t < 8 or half <= 4:
        return None
    part = PartPatch(
        np.ascontiguousarray(gray[t:b, left:r]), float(cx - left), float(cy - t), float(half), (left, t, r, b)
    )
    if part.image.size <= KEEP_PIXELS:
        return part
    patch, pcx, pcy, _ = part.working()
    return PartPatch(patch, float(pcx), float(pcy), float(half * min(1.0, WORK_HALF / half)), (left, t, r, b))


def ratio(part: PartPatch) -> np.ndarray:
    """The asymmetry on the patch itself (float32, the patch's shape): see the module's text."""
    patch, pcx, pcy, rim = part.working()
    ph, pw = patch.shape
    # A disc inside the frame turns into itself. Where it crosses the frame's border, the pixels whose widest
    # turns come from beyond the frame have no reference (uint8 throughout: a quarter of float32's traffic).
    crosses = pcx - rim < 0 or pcy - rim < 0 or pcx + rim > pw - 1 or pcy + rim > ph - 1
    turned = []
    valid = np.full((ph, pw), 255, np.uint8)
    for a in ANGLES:
        for sign in (1.0, -1.0):
            m = cv2.getRotationMatrix2D((pcx, pcy), sign * a, 1.0)
            turned.append(cv2.warpAffine(patch, m, (pw, ph), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
            if crosses and a == ANGLES[-1]:
                all_in = np.full((ph, pw), 255, np.uint8)
                valid = cv2.min(valid, cv2.warpAffine(all_in, m, (pw, ph), flags=cv2.INTER_NEAREST, borderValue=0))
    # the middle two of four: the larger of the two pairs' smaller values and the smaller of their larger ones;
    # summed in 16 bits, so the residual keeps half grey levels
    lo_a, hi_a = cv2.min(turned[0], turned[1]), cv2.max(turned[0], turned[1])
    lo_b, hi_b = cv2.min(turned[2], turned[3]), cv2.max(turned[2], turned[3])
    twice_ref = cv2.add(cv2.max(lo_a, lo_b), cv2.min(hi_a, hi_b), dtype=cv2.CV_16U)
    twice = cv2.add(patch, patch, dtype=cv2.CV_16U)
    residual = cv2.absdiff(twice, twice_ref).astype(np.float32)
    residual *= np.float32(0.5)
    dx = np.arange(pw, dtype=np.float32) - np.float32(pcx)
    dy = np.arange(ph, dtype=np.float32)[:, None] - np.float32(pcy)
    radius = np.sqrt(dx * dx + dy * dy)
    use = radius <= rim
    if crosses:
        # ... and the blur's reach beside them
        valid = cv2.erode(valid, np.ones((5, 5), np.uint8))
        residual[valid == 0] = 0.0
        use &= valid > 0
    residual = cv2.GaussianBlur(residual, (0, 0), BLUR)
    n = int(np.ceil(rim)) + 2
    ring2d = np.where(use, (radius + 0.5).astype(np.int32), n - 1)  # the last bin collects the rest
    ring = ring2d.ravel()
    # each ring's mean from every other row and column: a quarter of the work, the same means
    sample = ring2d[::2, ::2].ravel()
    counts = np.bincount(sample, minlength=n)[: n - 1]
    if not counts.any():
        return np.zeros((ph, pw), np.float32)
    means = np.bincount(sample, residual[::2, ::2].ravel(), minlength=n)[: n - 1] / np.maximum(counts, 1)
    means = cv2.GaussianBlur(means.astype(np.float32)[None], (0, 0), 2.0).ravel()
    return residual / (np.append(means, np.float32(np.inf))[ring].reshape(ph, pw) + np.float32(FLOOR))


def peak(part: PartPatch | None) -> float:
    """The highest asymmetry on the part (0 for no patch): the model's symmetry look reads it
    (:class:`edge_runtime.model_info.SymmetryLook`)."""
    return 0.0 if part is None else float(ratio(part).max(initial=0.0))


def asymmetry(gray: np.ndarray, region: tuple[float, float, float, float]) -> np.ndarray:
    """Rotational asymmetry of an 8-bit gray image about the centre of the part-centred ``region`` (source
    pixels, :func:`edge_runtime.framing.region_for` of a part that was found), float32 ``gray.shape``."""
    h, w = gray.shape[:2]
    out = np.zeros((h, w), np.float32)
    part = part_patch(gray, region)
    if part is None:
        return out
    z = ratio(part)
    left, t, r, b = part.where
    if z.shape != (b - t, r - left):
        z = cv2.resize(z, (r - left, b - t), interpolation=cv2.INTER_LINEAR)
    out[t:b, left:r] = z
    return out


def look(
    scores: np.ndarray, parts: Sequence[PartPatch | None], rule: SymmetryLook, threshold: float
) -> tuple[np.ndarray, list[float | None]]:
    """The symmetry look on a batch: each score (P(defective)) whose logit lies within ``rule.band_logit`` below
    the threshold's is lifted by ``rule.lift`` of its part's :func:`peak`; the new scores and each item's peak
    (None where not measured: outside the band, no part found, a threshold of 0 or 1)."""
    if len(parts) != len(scores):  # a shifted list would measure one item's part for another's verdict
        raise ValueError(f"symmetry look: {len(parts)} part squares for {len(scores)} scores; pass one per item")
    peaks: list[float | None] = [None] * len(scores)
    if not 0.0 < threshold < 1.0:
        return scores, peaks
    z, zt = logit(scores), float(logit(threshold))
    out = scores
    # NaN scores are never in the band; nor those beyond [0, 1], whose logit is clipped: they keep their ScoreError
    probability = (np.asarray(scores) >= 0.0) & (np.asarray(scores) <= 1.0)
    for i in np.flatnonzero(probability & (z < zt) & (z >= zt - rule.band_logit)):
        if parts[i] is None:
            continue
        peaks[i] = peak(parts[i])
        lift = rule.lift(peaks[i])
        if lift > 0.0:
            out = out.copy() if out is scores else out
            out[i] = 1.0 / (1.0 + math.exp(-(z[i] + lift)))
    return out, peaks
