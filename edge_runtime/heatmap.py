"""Where the defect is: the model's localisation map mapped back to the source image, a box, and a drawing.

A model exported with the map (``export-onnx``, default) has a second output ``defect_map`` float32
(N, 1, h, w), logits: positive is evidence for a defect in that cell. The default model's map comes from a
localisation head trained on synthetic defects (``train/loc_head.py``): 40 x 40 at 160 px, one cell per 4 input
pixels. A checkpoint without that head is exported with a gradient-weighted class activation map read one stage
before the last (``export/cam.py``), 20 x 20, each cell a first-order estimate of its contribution to the
image's logit. The runtime treats both alike.

- **Geometry.** Cell (i, j) is centred on input pixel (x ``stride*j``, y ``stride*i``), ``stride = size / h``:
  the centre of the receptive field of a chain of same-padded stride-2 convolutions. The input covers the
  source rectangle :func:`input_region` (the crop of the preprocessing spec), so every map coordinate goes
  back to source pixels through :func:`cell_to_source`, whatever the crop.
- **Point and box** (:func:`point_and_box`, what ``edge-infer --heatmap`` reports and the pointing game scores).
  For a part-centred model the map is coarse but the part's centre is known: the point is the hottest pixel of
  :func:`evidence`, the network's map (where positive) plus the part's rotational asymmetry at the source's own
  resolution (:mod:`edge_runtime.symmetry`), and the box the connected region around it at :data:`BOX_LEVEL` of
  the way from the evidence's median to its peak. Otherwise the map alone: :func:`defect_point` is the hottest
  cell, refined to a fraction of a cell by a parabola through its neighbours, and :func:`defect_box` the
  connected region around it where the map (bilinear between cell centres) reaches :data:`BOX_LEVEL` of the way
  from the map's median to its peak. Callers give no box (``None``) for OK items.
- **Drawing.** :func:`heat` scales the map to [0, 1] for display: 0 at or below 0 logits (no evidence for a
  defect), 1 at the map's peak, or at the model's ``map_full_scale`` (:data:`HEAT_FULL_SCALE` for a Grad-CAM
  map) when the peak is lower (an OK part's map stays pale).

>>> m = np.full((10, 10), -5.0, np.float32); m[2, 7] = 40.0
>>> spec = PreprocessSpec(size=160)
>>> defect_point(m, (300, 300), spec), defect_box(m, (300, 300), spec)
((210, 60), (196, 46, 226, 76))
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edge_runtime.framing import Part, find_part, region_for
from edge_runtime.preprocess import CropMode, PreprocessSpec

if TYPE_CHECKING:
    from edge_runtime.model import Prediction

Box = tuple[int, int, int, int]
Region = tuple[float, float, float, float]
BOX_LEVEL = 0.5  # fraction of the way from the map's median to its peak (see the module docstring)
DRAW_BAND_PIXELS = 1 << 18  # pixels drawn per band of rows (a few MB of temporaries, whatever the frame)
HEAT_FULL_SCALE = 150.0  # least peak drawn at full heat (casting test: defective parts peak at 80-250, OK 50-90)


def input_region(gray: np.ndarray | tuple[int, ...], spec: PreprocessSpec) -> Region:
    """The source-pixel rectangle (x0, y0, x1, y1), pixel edges, that the network input covers:
    ``edge_runtime.preprocess.input_region``, which knows every crop, the part-centred one included (that one
    needs the image itself; given only a shape, the part is looked for in a blank frame and not found).

    >>> input_region((300, 400), PreprocessSpec(size=160))
    (50.0, 0.0, 350.0, 300.0)
    """
    # Imported by name: ``edge_runtime.preprocess`` as an attribute of the package is the preprocess() function
    # (re-exported in edge_runtime/__init__.py), not the module, and has no input_region.
    from edge_runtime.preprocess import input_region as region_of

    image = gray if isinstance(gray, np.ndarray) else np.zeros(tuple(gray[:2]), np.uint8)
    x0, y0, x1, y1 = region_of(image, spec)
    return (float(x0), float(y0), float(x1), float(y1))


def _grid(cam: np.ndarray) -> np.ndarray:
    return _finite(np.asarray(cam, np.float32).reshape(np.shape(cam)[-2:]))


def _finite(m: np.ndarray) -> np.ndarray:
    """``m`` with NaN and -inf cells at its lowest finite value (no evidence) and +inf cells hotter than its highest
    (twice as far from 0): a map with a NaN cell (an overflow in a model) once crashed edge-infer (exit 1), and a
    map of NaN only boxed the frame's corner pixel."""
    if np.isfinite(m).all():
        return m
    finite = m[np.isfinite(m)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    top = min(hi + max(1.0, abs(hi)), float(np.finfo(np.float32).max) / 4)
    return np.nan_to_num(m, nan=lo, posinf=top, neginf=lo)


def cell_to_source(cell_xy: tuple[float, float], map_shape: tuple[int, int], region: Region, size: int) -> tuple:
    """A (fractional) map cell ``(col, row)`` -> source-pixel coordinates (x, y) of its centre.

    >>> cell_to_source((0, 0), (10, 10), (0.0, 0.0, 300.0, 300.0), 160)
    (0.4375, 0.4375)
    """
    h, w = map_shape
    x0, y0, x1, y1 = region
    u, v = cell_xy[0] * size / w, cell_xy[1] * size / h  # input pixel, pixel-centre coordinates
    return (x0 + (u + 0.5) * (x1 - x0) / size - 0.5, y0 + (v + 0.5) * (y1 - y0) / size - 0.5)


def _source_to_cells(map_shape: tuple[int, int], region: Region, size: int) -> np.ndarray:
    """The 2x3 affine matrix taking source pixel (x, y) to map cell (col, row): the inverse of cell_to_source."""
    h, w = map_shape
    x0, y0, x1, y1 = region
    sx, sy = size / (x1 - x0), size / (y1 - y0)
    return np.array(
        [
            [sx * w / size, 0.0, ((0.5 - x0) * sx - 0.5) * w / size],
            [0.0, sy * h / size, ((0.5 - y0) * sy - 0.5) * h / size],
        ]
    )


def upsample_to_source(
    cam: np.ndarray, source_shape: tuple[int, ...], spec: PreprocessSpec, *, region: Region | None = None
) -> np.ndarray:
    """The (h, w) map as float32 (H, W) over the source image: bilinear between cell centres, the nearest
    cell's value beyond the outer centres.

    >>> upsample_to_source(np.eye(10, dtype=np.float32), (300, 300), PreprocessSpec(size=160)).shape
    (300, 300)
    """
    m = _grid(cam)
    region = region or input_region(tuple(source_shape[:2]), spec)
    mat = _source_to_cells(m.shape, region, spec.size)
    h, w = source_shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(m, mat, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)


def peak_cell(cam: np.ndarray) -> tuple[float, float]:
    """The hottest cell ``(col, row)``, refined to a fraction of a cell by a parabola through its neighbours:
    a defect between two cells lights both, and the peak lies between them."""
    z = _grid(cam).astype(np.float64)
    r, c = np.unravel_index(int(np.argmax(z)), z.shape)

    def refine(a: float, b: float, cc: float) -> float:
        den = a - 2 * b + cc
        return 0.0 if den >= 0 else float(np.clip(0.5 * (a - cc) / den, -0.5, 0.5))

    dc = refine(z[r, c - 1], z[r, c], z[r, c + 1]) if 0 < c < z.shape[1] - 1 else 0.0
    dr = refine(z[r - 1, c], z[r, c], z[r + 1, c]) if 0 < r < z.shape[0] - 1 else 0.0
    return (c + dc, r + dr)


def defect_point(
    cam: np.ndarray, source_shape: tuple[int, ...], spec: PreprocessSpec, *, region: Region | None = None
) -> tuple[int, int]:
    """The map's hottest point in source pixels (x, y), clipped to the image (the pointing-game point)."""
    region = region or input_region(tuple(source_shape[:2]), spec)
    x, y = cell_to_source(peak_cell(cam), _grid(cam).shape, region, spec.size)
    h, w = source_shape[:2]
    return (int(np.clip(round(x), 0, w - 1)), int(np.clip(round(y), 0, h - 1)))


def defect_box(
    cam: np.ndarray, source_shape: tuple[int, ...], spec: PreprocessSpec, *, region: Region | None = None
) -> Box:
    """``(x0, y0, x1, y1)`` (x1/y1 exclusive) in source pixels, inside the image: the connected region around the
    hottest point where the map reaches :data:`BOX_LEVEL` of the way from its median to its peak."""
    m = _grid(cam)
    region = region or input_region(tuple(source_shape[:2]), spec)
    z = upsample_to_source(m, source_shape, spec, region=region)
    median = float(np.median(m))
    level = median + BOX_LEVEL * (float(m.max()) - median)
    return _box_around(z, defect_point(m, source_shape, spec, region=region), region, level)


def _box_around(source_map: np.ndarray, point: tuple[int, int], region: Region, level: float) -> Box:
    """Bounding box of the connected region around ``point`` where ``source_map`` >= ``level`` (or the point's
    own value, if lower), inside ``region``."""
    px, py = point
    # The map says nothing beyond the rectangle the input covers (a part-centred crop may leave out much of the
    # frame), so the box stays inside it: only that rectangle is looked at (grown to hold the point, which the
    # caller may have clipped to the image; what the growth adds is not hot). A window, not the frame: on an
    # 8000 x 6000 frame the frame-sized masks and labels took 0.4 GB.
    inner = _inside(region, source_map.shape)
    left, top = min(inner[0], px), min(inner[1], py)
    right, bottom = max(inner[2], px + 1), max(inner[3], py + 1)
    # numpy, not cv2.compare: OpenCV reads a 1-pixel-wide window and a scalar as two arrays of unequal size
    hot = (source_map[top:bottom, left:right] >= min(level, float(source_map[py, px]))).view(np.uint8)
    hot[:, : inner[0] - left] = 0
    hot[: inner[1] - top] = 0
    hot[:, max(0, inner[2] - left) :] = 0
    hot[max(0, inner[3] - top) :] = 0
    hot[py - top, px - left] = 1
    _, labels, stats, _ = cv2.connectedComponentsWithStats(hot, connectivity=8)
    x, y, w, h = (int(v) for v in stats[labels[py - top, px - left], :4])
    return (left + x, top + y, left + x + w, top + y + h)


def _inside(region: Region, shape: tuple[int, ...]) -> Box:
    """The pixels (left, top, right, bottom; right/bottom exclusive) of ``region`` inside an image of ``shape``."""
    h, w = shape[:2]
    left, top = min(max(int(np.floor(region[0])), 0), w), min(max(int(np.floor(region[1])), 0), h)
    right, bottom = min(max(int(np.ceil(region[2])), 0), w), min(max(int(np.ceil(region[3])), 0), h)
    return left, top, right, bottom


def heat(cam: np.ndarray, full_scale: float | None = None) -> np.ndarray:
    """The map scaled to [0, 1] for display: 0 at <= 0 logits, 1 at the peak or at ``full_scale`` when the peak
    is lower (the model's ``map_full_scale``; :data:`HEAT_FULL_SCALE` for a Grad-CAM map).

    >>> heat(np.array([[-3.0, 0.0, 75.0, 300.0]])).tolist()
    [[0.0, 0.0, 0.25, 1.0]]
    """
    z = _finite(np.asarray(cam, np.float32))
    return np.clip(z / _heat_scale(z, full_scale), 0.0, 1.0)


def _heat_scale(z: np.ndarray, full_scale: float | None) -> np.float32:
    """The map value drawn at full heat: its peak, or ``full_scale`` when the peak is lower (see :func:`heat`)."""
    return np.float32(max(float(z.max()), full_scale or HEAT_FULL_SCALE))


def overlay(
    canvas: np.ndarray,
    cam: np.ndarray,
    spec: PreprocessSpec,
    *,
    box: Box | None,
    region: Region | None = None,
    full_scale: float | None = None,
) -> np.ndarray:
    """Draw an (h, w) map on a BGR ``canvas`` of the source image (in place, and returned); see :func:`draw`."""
    return draw(canvas, upsample_to_source(_grid(cam), canvas.shape, spec, region=region), box, full_scale=full_scale)


def evidence(
    cam: np.ndarray,
    gray: np.ndarray,
    spec: PreprocessSpec,
    *,
    part: Part | None = None,
    network: np.ndarray | None = None,
) -> np.ndarray | None:
    """Where a part-centred model's evidence for a defect lies on the source image (float32, H x W): the
    network's map in logits, where positive, plus the part's rotational asymmetry
    (:func:`edge_runtime.symmetry.asymmetry`, about 1 on a sound ring, 5-25 at a defect). ``None`` for other
    crops, whose part is not known to be centred, and where the part was not found (the whole frame was used):
    their point and box come from the network's map alone. ``part`` (``framing.find_part``) and ``network``
    (:func:`upsample_to_source` of ``cam``) save finding them again.

    The network's map is coarse (one cell per 4 input pixels, 7.5 source pixels on the casting set), and a
    160 px input blurs a 3 px pinhole away; the asymmetry is measured at the source's own resolution."""
    if spec.crop is not CropMode.PART:
        return None
    from edge_runtime.symmetry import asymmetry

    part = part or find_part(gray, spec.part_scale)
    if not part.found:
        return None
    region = region_for(part, spec.part_scale)
    if network is None:
        network = upsample_to_source(cam, gray.shape, spec, region=region)
    located = asymmetry(gray, region)
    located += cv2.max(network, 0.0)
    return located


def part_region(gray: np.ndarray, spec: PreprocessSpec) -> tuple[Part | None, Region]:
    """The part (``framing.find_part``; None unless the crop is part-centred) and the source rectangle the
    network input covers (:func:`input_region`), with the part looked for once."""
    if spec.crop is not CropMode.PART:
        return None, input_region(gray, spec)
    part = find_part(gray, spec.part_scale)
    return part, region_for(part, spec.part_scale)


def point_and_box(
    cam: np.ndarray,
    gray: np.ndarray,
    spec: PreprocessSpec,
    *,
    network: np.ndarray | None = None,
    part: Part | None = None,
) -> tuple[tuple[int, int], Box]:
    """The defect's point (x, y) and box in source pixels: for a part-centred model the hottest pixel of
    :func:`evidence` inside the input region and the connected region around it that reaches :data:`BOX_LEVEL`
    of the way from the evidence's median to its peak; for other crops (or no part found, or no evidence)
    :func:`defect_point` and :func:`defect_box` on the network's map alone. ``network``:
    :func:`upsample_to_source` of ``cam``; ``part``: the part of :func:`part_region`, if the caller has it."""
    if part is None:
        part, region = part_region(gray, spec)
    else:
        region = region_for(part, spec.part_scale)
    located = evidence(cam, gray, spec, part=part, network=network) if part is not None else None
    # The point lies inside the input region: beyond it the network's map repeats its edge cells, and a hot edge
    # cell once put the point (and a 1-pixel box) on the frame's corner. No evidence there at all (a part too
    # small for the symmetry, a map <= 0): the network's map alone.
    left, top, right, bottom = _inside(region, gray.shape)
    window = located[top:bottom, left:right] if located is not None else None
    if window is None or window.size == 0 or float(window.max()) <= 0.0:
        return defect_point(cam, gray.shape, spec, region=region), defect_box(cam, gray.shape, spec, region=region)
    py, px = np.unravel_index(int(np.argmax(window)), window.shape)
    py, px = py + top, px + left
    median = float(np.median(located[::4, ::4]))  # a sample is enough for the level
    level = median + BOX_LEVEL * (float(located[py, px]) - median)
    return (int(px), int(py)), _box_around(located, (int(px), int(py)), region, level)


def locate(pred: Prediction, image: np.ndarray, spec: PreprocessSpec) -> Prediction:
    """``pred`` with its (h, w) map replaced by the map on ``image`` (float32, H x W, logit units) and, when the
    item is defective, ``defect_box`` in ``image``'s pixels (:func:`point_and_box`). A prediction without a map
    is returned unchanged."""
    if pred.heatmap is None:
        return pred
    from edge_runtime.preprocess import to_uint8_gray

    gray = to_uint8_gray(image)
    part, region = part_region(gray, spec)  # once per item: the box reuses it
    network = upsample_to_source(pred.heatmap, gray.shape, spec, region=region)
    box = point_and_box(pred.heatmap, gray, spec, network=network, part=part)[1] if pred.defective else None
    return replace(pred, heatmap=network, defect_box=box)


def visible(box: Box, shape: tuple[int, ...], min_side: int) -> Box:
    """``box`` as it is drawn: grown about its centre to at least ``min_side`` pixels each way (a pinhole's box
    of 5 x 5 pixels is lost on a screen or a thumbnail), inside an image of ``shape``. Records keep the box
    itself.

    >>> visible((100, 100, 104, 103), (300, 300), 18)
    (93, 92, 111, 110)
    >>> visible((0, 0, 40, 30), (300, 300), 18)
    (0, 0, 40, 30)
    """
    h, w = shape[:2]
    x0, y0, x1, y1 = box

    def grow(a: int, b: int, limit: int) -> tuple[int, int]:
        if b - a >= min_side:
            return a, b
        side = min(min_side, limit)
        start = int(round((a + b - side) / 2))
        start = min(max(0, start), limit - side)
        return start, start + side

    (x0, x1), (y0, y1) = grow(x0, x1, w), grow(y0, y1, h)
    return (x0, y0, x1, y1)


def draw(canvas: np.ndarray, source_map: np.ndarray, box: Box | None, *, full_scale: float | None = None) -> np.ndarray:
    """Draw a map already on the canvas's pixels (:func:`locate`) on a BGR ``canvas``, in place: a colour wash
    (blue cold .. red hot) whose opacity grows with the :func:`heat`, and ``box`` in white over black."""
    z = _finite(np.asarray(source_map, np.float32))
    scale = _heat_scale(z, full_scale)
    # OpenCV passes in 8 bits, a band of rows at a time: numpy's float copies of the 3-channel canvas took 4.5 s
    # and 1.7 GB on 8000 x 6000, and one frame-sized blend still 0.9 GB of temporaries.
    rows = max(1, DRAW_BAND_PIXELS // max(1, canvas.shape[1]))
    for r in range(0, canvas.shape[0], rows):
        h = np.clip(z[r : r + rows] / scale, 0.0, 1.0)
        colour = cv2.applyColorMap(np.clip(h * 255.0, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
        alpha = 0.1 + 0.5 * h
        band = canvas[r : r + rows]
        band[:] = cv2.blendLinear(band, colour, 1.0 - alpha, alpha)
    if box is not None:
        draw_box(canvas, box)
    return canvas


def draw_box(canvas: np.ndarray, box: Box) -> np.ndarray:
    """``box`` (the canvas's pixels) in white over black, grown to a visible size (:func:`visible`), in place."""
    x0, y0, x1, y1 = visible(box, canvas.shape, max(12, min(canvas.shape[:2]) // 16))
    t = max(1, min(canvas.shape[:2]) // 150)
    cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), (0, 0, 0), 3 * t)
    cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), (255, 255, 255), t)
    return canvas
