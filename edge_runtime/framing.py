"""Part-centred framing: find the impeller in any frame and crop it to a fixed scale, with OpenCV only.

Why: a station camera frames the part unlike the dataset (part filling the frame, flange crossing the border,
near-white background). Finding the part and cropping it at a fixed scale makes the network input look the
same whatever the framing; the network then blanks everything outside the part circle (``mask_radius`` in the
model), so the background's brightness no longer reaches the verdict.

The anchor is the part's dark core (the hollow between hub and flange): it is the darkest large round region
whatever the background (grey, near white, or dark: a dark background touches the frame border, the core does
not), and its radius fixes the scale. On the casting images the flange's outer edge lies at about 2.0 core
radii (as this module measures the core).

>>> import numpy as np, cv2
>>> im = np.full((300, 300), 170, np.uint8)
>>> _ = cv2.circle(im, (150, 150), 120, 215, -1); _ = cv2.circle(im, (150, 150), 64, 25, -1)
>>> part = find_part(im)
>>> part.found, round(part.cx), round(part.cy), 55 < part.radius < 66
(True, 150, 150, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from edge_runtime.detail import sharpness
from edge_runtime.part_profile import like_the_part, looks_like_a_part, radial_profile

WORK_SIZE = 128  # the part is searched for on a copy this many pixels on its longer side
FLANGE_RATIO = 2.0  # flange outer radius / dark-core radius as found here, measured on the casting images
# A core smaller than this (working-copy pixels; about 25 on the dataset's frames) is found again on its own square
REFINE_BELOW = 16.0
REFINE_HALF = 2.6  # that square's half side, in core radii as first found: the flange and some background
ALTERNATIVES = 4  # dark regions tried in turn where the darkest is no part (two labels, a label and a coin)
OTHER_CORE_PX = 12.0  # other parts are looked for on a copy where a core has this radius (see _other_parts)
_CLOSE = np.ones((5, 5), np.uint8)
_OPEN = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class Part:
    """Where the part is, in source pixels: the dark core's centre and radius."""

    cx: float
    cy: float
    radius: float
    found: bool = True
    others: int = 0  # other parts' cores the frame shows: only this part is judged

    @property
    def flange_radius(self) -> float:
        return FLANGE_RATIO * self.radius


@dataclass(frozen=True)
class Framed:
    """A framed network input (size x size, uint8), where it came from, and the image statistics."""

    image: np.ndarray
    part: Part
    region: tuple[float, float, float, float]  # source-pixel square the input covers (may pass the border)
    stats: dict[str, float]


def _working_copy(gray: np.ndarray) -> tuple[np.ndarray, float]:
    h, w = gray.shape
    s = min(1.0, WORK_SIZE / max(h, w))
    if s < 1.0:
        # Linear, not area: 7x cheaper at these ratios, and the blur below removes the aliasing either way.
        gray = cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(gray, (5, 5), 0), s


def _percentiles(small: np.ndarray, qs: tuple[float, ...], mask: np.ndarray | None = None) -> list[float]:
    # Cumulative histogram: the same figures as np.percentile on uint8 data at a fraction of the cost.
    cdf = np.cumsum(cv2.calcHist([small], [0], mask, [256], [0, 256]).ravel())
    return [float(np.searchsorted(cdf, q / 100.0 * cdf[-1])) for q in qs]


def _dark_contours(small: np.ndarray, p2: float, p50: float) -> tuple:
    dark = (small <= p2 + 0.2 * (p50 - p2)).astype(np.uint8)
    dark = cv2.morphologyEx(cv2.morphologyEx(dark, cv2.MORPH_CLOSE, _CLOSE), cv2.MORPH_OPEN, _OPEN)
    contours, _ = cv2.findContours(dark, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return contours


def _inside_frame(contour: np.ndarray, hh: int, ww: int) -> bool:
    """Whether ``contour`` stays clear of the frame's border (a dark background reaches the border; the core not)."""
    x, y, bw, bh = cv2.boundingRect(contour)
    return x > 0 and y > 0 and x + bw < ww and y + bh < hh


def _cut_core(c: np.ndarray, hh: int, ww: int) -> tuple[float, float, float] | None:
    """A dark region the frame's border cuts, taken for the core when it is most of a round region: a part so
    far off-centre and so close that its core reaches the border (its flange well beyond it). A dark background
    reaching the border is not: it runs along the border, or is no circle's visible part."""
    x, y, bw, bh = cv2.boundingRect(c)
    if bw >= 0.8 * ww or bh >= 0.8 * hh:
        return None
    (cx, cy), r = cv2.minEnclosingCircle(c)
    if min(cx, cy, ww - cx, hh - cy) < 0.6 * r:  # cut by more than 40% of its radius: too little left to measure
        return None
    disc = np.zeros((hh, ww), np.uint8)
    cv2.circle(disc, (round(cx), round(cy)), max(1, round(r)), 255, -1)
    visible = cv2.countNonZero(disc)  # the enclosing circle's part inside the frame
    area = cv2.contourArea(c)
    if visible < 0.7 * np.pi * r * r or area < 0.75 * visible:
        return None
    return cx, cy, float(r)


def _first_core(small: np.ndarray) -> tuple[tuple[float, float, float] | None, int]:
    """The core (centre and radius in ``small``'s pixels), and how many other round dark regions could have been it."""
    p2, p50 = _percentiles(small, (2.0, 50.0))
    if p50 - p2 < 20:  # no dark region stands out: nothing that looks like the part's core
        return None, 0
    hh, ww = small.shape
    best, best_score, cut, rounds = None, 0.0, [], 0
    for c in _dark_contours(small, p2, p50):
        area = cv2.contourArea(c)
        if not 0.01 * hh * ww <= area <= 0.5 * hh * ww:
            continue
        if not _inside_frame(c, hh, ww):
            cut.append(c)
            continue
        (_, _), enclosing = cv2.minEnclosingCircle(c)
        roundness = area / (np.pi * enclosing * enclosing + 1e-6)
        m = cv2.moments(c)
        cx, cy = m["m10"] / m["m00"], m["m01"] / m["m00"]
        off_centre = np.hypot(cx - ww / 2, cy - hh / 2) / max(hh, ww)
        # The core is round and near the middle.
        score = area * roundness * max(0.05, 1.0 - off_centre)
        rounds += roundness >= 0.4
        if roundness >= 0.4 and score > best_score:
            best, best_score = (cx, cy, float(np.sqrt(area / np.pi))), score
    if best is None:  # no core clear of the border: one the border cuts, if one is most of a round region
        found = [core for core in (_cut_core(c, hh, ww) for c in cut) if core is not None]
        return max(found, key=lambda core: core[2], default=None), len(found) - 1
    return best, rounds - 1


def _best_core(small: np.ndarray) -> tuple[tuple[float, float, float] | None, float, int]:
    """The dark core, found twice: first with the whole frame's grey levels, then with those of the part alone.

    The first pass's darkness level depends on the background (a near-white one raises the frame's median and
    the core grows by 2-6%); the second takes the levels inside the flange only, so the core, and with it the
    crop's scale, is the same on any background. Also: the first pass's radius, and its other candidates' count.
    """
    first, rivals = _first_core(small)
    if first is None:
        return None, 0.0, 0
    cx, cy, r = first
    part = np.zeros_like(small)
    cv2.circle(part, (round(cx), round(cy)), max(1, round(0.95 * FLANGE_RATIO * r)), 255, -1)
    p2, p50 = _percentiles(small, (2.0, 50.0), part)
    hh, ww = small.shape
    for c in _dark_contours(small, p2, p50):
        # The refined core is the dark region around the first one's centre, closed inside the frame.
        if not _inside_frame(c, hh, ww) or cv2.pointPolygonTest(c, (cx, cy), False) < 0:
            continue
        m = cv2.moments(c)
        mx, my = m["m10"] / m["m00"], m["m01"] / m["m00"]
        if np.hypot(mx - cx, my - cy) < 0.5 * r:
            return (mx, my, float(np.sqrt(cv2.contourArea(c) / np.pi))), r, rivals
    return first, r, rivals


def _locate(gray: np.ndarray, small: np.ndarray, s: float, part_scale: float) -> Part:
    h, w = gray.shape
    part, rivals = _core_part(gray, small, s)
    # Only where another dark region could have been the core (a label, a disc beside the part): on a frame with one
    # candidate nothing else would be found, and the profile (0.1 ms) is left unmeasured.
    if part is not None and rivals > 0 and not looks_like_a_part(radial_profile(gray, part.cx, part.cy, part.radius)):
        part = _next_part(gray, small, s, part)
    if part is None:  # no part found: the whole frame, centred, is the input (and the station check says so)
        return Part(cx=(w - 1) / 2, cy=(h - 1) / 2, radius=min(h, w) / (2 * part_scale), found=False)
    return replace(part, others=_other_parts(gray, small, s, part))


def _next_part(gray: np.ndarray, small: np.ndarray, s: float, first: Part) -> Part:
    """The darkest round region ``first`` is no part (a dark label, a washer or a disc beside the part: it was
    judged and the part never was): the next ones, each hidden in turn, until one is a part; else ``first``."""
    hidden, level, tried = small.copy(), int(np.median(small)), first
    for _ in range(ALTERNATIVES):
        centre, reach = (round(tried.cx * s), round(tried.cy * s)), max(1, round(1.6 * tried.radius * s))
        cv2.circle(hidden, centre, reach, level, -1)
        tried, _ = _core_part(gray, hidden, s)
        if tried is None:
            break
        if looks_like_a_part(radial_profile(gray, tried.cx, tried.cy, tried.radius)):
            return tried
    return first


def _core_part(gray: np.ndarray, small: np.ndarray, s: float) -> tuple[Part | None, int]:
    """The part whose core the working copy ``small`` (scale ``s``) shows, in source pixels (None if none), and how
    many other dark regions could have been its core."""
    core, first_r, rivals = _best_core(small)
    if core is None:
        return None, 0
    cx, cy, r = core
    part = Part(cx=(cx + 0.5) / s - 0.5, cy=(cy + 0.5) / s - 0.5, radius=r / s)
    if r < REFINE_BELOW and s < 1.0:
        part = _refined(gray, part, max(r, first_r) / s)
        # once more, on a square of the size now measured: the core then spans as many working pixels as on the
        # dataset's frames (on the larger square, radii came out up to 4% small in a 1400 px frame)
        part = _refined(gray, part, part.radius)
    return part, rivals


def _other_parts(gray: np.ndarray, small: np.ndarray, s0: float, part: Part) -> int:
    """How many other parts the frame shows. Two parts in one frame were judged as one, the part nearer the middle
    alone: a defective one beside it passed the gate unseen.

    Candidates are dark regions of about the core's size, clear of the frame's border and of this part's flange,
    found on a copy where a core is ``OTHER_CORE_PX`` pixels across (the working copy ``small`` at scale ``s0``
    shrunk further, or the frame itself where that copy is too coarse). Each is measured again on its own square
    (as a small part is) and counted where its radial profile is this part's (``part_profile``): a nut, a coin, a
    shadow or a conveyor's holes of the core's size are not parts."""
    if part.radius * s0 >= OTHER_CORE_PX:
        t = OTHER_CORE_PX / (part.radius * s0)
        size = (max(1, round(small.shape[1] * t)), max(1, round(small.shape[0] * t)))
        s, small = s0 * t, cv2.resize(small, size, interpolation=cv2.INTER_AREA)
    else:  # a part small in a large frame
        h, w = gray.shape
        s = min(1.0, OTHER_CORE_PX / part.radius)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        small = cv2.GaussianBlur(gray if s >= 1.0 else cv2.resize(gray, size, interpolation=cv2.INTER_AREA), (3, 3), 0)
    p2, p50 = _percentiles(small, (2.0, 50.0))
    dark = (small <= p2 + 0.35 * (p50 - p2)).astype(np.uint8)
    dark = cv2.morphologyEx(cv2.morphologyEx(dark, cv2.MORPH_CLOSE, _CLOSE), cv2.MORPH_OPEN, _OPEN)
    contours, _ = cv2.findContours(dark, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hh, ww = small.shape
    r, cx, cy = part.radius * s, (part.cx + 0.5) * s - 0.5, (part.cy + 0.5) * s - 0.5
    found, own = [], r  # own: this part's core as measured here, the scale of the others' sizes
    for c in contours:
        m = cv2.moments(c)
        if m["m00"] == 0 or not _inside_frame(c, hh, ww):
            continue
        area = cv2.contourArea(c)
        (_, _), enclosing = cv2.minEnclosingCircle(c)
        size, mx, my = np.sqrt(area / np.pi), m["m10"] / m["m00"], m["m01"] / m["m00"]
        away = np.hypot(mx - cx, my - cy)
        if away < 0.5 * r:
            own = size
        # merged with the groove beside it, another part's core is less round (0.5) than a lone one (0.8)
        elif area >= 0.4 * np.pi * enclosing**2 and 0.5 * r <= size <= 1.8 * r and away >= 1.5 * FLANGE_RATIO * r:
            found.append(((mx + 0.5) / s - 0.5, (my + 0.5) / s - 0.5, size))
    if not found:
        return 0
    ref = radial_profile(gray, part.cx, part.cy, part.radius)
    count = 0
    for x, y, size in found:
        other = _refined(gray, Part(cx=x, cy=y, radius=part.radius * size / own), part.radius * size / own)
        count += like_the_part(radial_profile(gray, other.cx, other.cy, other.radius), ref)
    return count


def _refined(gray: np.ndarray, part: Part, first_r: float) -> Part:
    """A part small in a large frame, found again on a working copy of its own square (``REFINE_HALF`` core radii
    each way), at the scale a part that fills the frame is found at. On the whole frame's 128 px copy its core was
    a few pixels across, merged with the groove around it: the crop came out up to 1.5 times too large and 17 px
    off (a 300 px part in a 1000 px frame: 12 of 25 defective parts scored lower, 2 passed as OK)."""
    h, w = gray.shape
    # The larger of the two passes' radii: on a near-white background the second one can take the darkest patch of
    # the core for all of it (a third of its radius), and a square that size would hold the core alone.
    big = max(part.radius, first_r)
    half = REFINE_HALF * big
    x0, y0 = max(0, round(part.cx - half)), max(0, round(part.cy - half))
    x1, y1 = min(w, round(part.cx + half) + 1), min(h, round(part.cy + half) + 1)
    small, s = _working_copy(gray[y0:y1, x0:x1])
    core, _, _ = _best_core(small)
    if core is None:
        return part
    cx, cy, r = core
    again = Part(cx=x0 + (cx + 0.5) / s - 0.5, cy=y0 + (cy + 0.5) / s - 0.5, radius=r / s)
    # The same part, better measured: near where the whole frame put it, and of a like size.
    near = np.hypot(again.cx - part.cx, again.cy - part.cy) <= big
    return again if near and 0.5 * part.radius <= again.radius <= 1.5 * big else part


def find_part(gray: np.ndarray, part_scale: float = 2.4) -> Part:
    """Locate the part in an 8-bit gray image; ``found`` is False (and the whole frame used) when it is not."""
    small, s = _working_copy(gray)
    return _locate(gray, small, s, part_scale)


def region_for(part: Part, part_scale: float) -> tuple[float, float, float, float]:
    """The source-pixel square (x0, y0, x1, y1) a network input covers: ``part_scale`` core radii each way."""
    half = part_scale * part.radius
    return (part.cx - half, part.cy - half, part.cx + half, part.cy + half)


def crop_square(gray: np.ndarray, region: tuple[float, float, float, float], size: int, fill: int) -> np.ndarray:
    """Resample ``region`` of ``gray`` to size x size (area interpolation); outside the frame = ``fill``."""
    x0, y0, x1, y1 = region
    s = size / (x1 - x0)
    h, w = gray.shape
    if round(w * s) * round(h * s) > 4 * max(h * w, size * size):
        # Enlarged whole, a degenerate frame took gigabytes (1 x 100,000 px, no part found: its 1 px square is
        # enlarged 160 times, 2.6 GB): only the pixels the square covers, with a margin for the interpolation.
        # Never on a frame the square shrinks or barely enlarges: those stay as they were, to the byte.
        left, top = max(0, math.floor(x0) - 2), max(0, math.floor(y0) - 2)
        gray = gray[top : max(top, math.ceil(y1) + 2), left : max(left, math.ceil(x1) + 2)]
        x0, y0, (h, w) = x0 - left, y0 - top, gray.shape
        if gray.size == 0:  # the square lies wholly outside the frame
            return np.full((size, size), fill, np.uint8)
    # Shrink the whole frame first (INTER_AREA, no aliasing of fine texture), then place it on the canvas.
    sw, sh = max(1, round(w * s)), max(1, round(h * s))
    flag = cv2.INTER_AREA if s < 1.0 else cv2.INTER_LINEAR
    scaled = cv2.resize(gray, (sw, sh), interpolation=flag) if (sw, sh) != (w, h) else gray
    ox, oy = round(-x0 * s), round(-y0 * s)
    canvas = np.full((size, size), fill, np.uint8)
    cx0, cy0 = max(0, ox), max(0, oy)
    cx1, cy1 = min(size, ox + sw), min(size, oy + sh)
    if cx1 > cx0 and cy1 > cy0:
        canvas[cy0:cy1, cx0:cx1] = scaled[cy0 - oy : cy1 - oy, cx0 - ox : cx1 - ox]
    return canvas


def image_stats(gray: np.ndarray, small: np.ndarray, scale: float, part: Part, framed: np.ndarray) -> dict[str, float]:
    """What the station check compares with the training images: light, background, framing, detail."""
    h, w = gray.shape
    hh, ww = small.shape
    # OpenCV throughout (a drawn mask, histograms): this runs on every item, beside decoding.
    outside = np.full((hh, ww), 255, np.uint8)
    centre = (round(part.cx * scale), round(part.cy * scale))
    cv2.circle(outside, centre, round(1.15 * part.flange_radius * scale), 0, -1)
    hist = cv2.calcHist([small], [0], outside, [256], [0, 256]).ravel()
    n_out = float(hist.sum())
    background = float(np.searchsorted(np.cumsum(hist), 0.5 * n_out)) if n_out >= 0.03 * hh * ww else float("nan")
    # How far the flange reaches past the frame's nearest border, as a share of its radius (0: inside the frame)
    flange, x, y = part.flange_radius, part.cx + 0.5, part.cy + 0.5
    cut = max(0.0, flange - x, flange - y, x + flange - w, y + flange - h) / flange
    return {
        "brightness": float(cv2.mean(small)[0]),
        "background": background,
        "part_size": float(2 * part.flange_radius / min(h, w)),
        "part_offset": float(np.hypot(part.cx - w / 2, part.cy - h / 2) / min(h, w)),
        "flange_cut": float(cut),  # a limit, not a range: see station_check.FLANGE_CUT
        "sharpness": sharpness(framed),
        "highlights": float(np.count_nonzero(framed >= 250) / framed.size),
        "part_found": 1.0 if part.found else 0.0,
        "other_parts": float(part.others),  # and where the one judged lies, to name it (not compared)
        "part_x": float(part.cx),
        "part_y": float(part.cy),
        "source_size": float(max(h, w)),
    }


def frame_part(gray: np.ndarray, size: int, part_scale: float, *, with_stats: bool = False) -> Framed:
    """Find the part and crop it to ``size`` px at a fixed scale (``part_scale`` core radii from the centre).

    >>> import numpy as np
    >>> frame_part(np.full((512, 512), 200, np.uint8), 160, 2.4).image.shape
    (160, 160)
    """
    small, s = _working_copy(gray)
    part = _locate(gray, small, s, part_scale)
    region = region_for(part, part_scale)
    # Beyond the frame: the level of the frame's own edge (background, or flange where the part crosses it),
    # so that padding adds no edge of its own.
    ring = np.concatenate([small[:2].ravel(), small[-2:].ravel(), small[:, :2].ravel(), small[:, -2:].ravel()])
    fill = int(np.median(ring))
    image = crop_square(gray, region, size, fill)
    stats = image_stats(gray, small, s, part, image) if with_stats else {}
    return Framed(image=image, part=part, region=region, stats=stats)
