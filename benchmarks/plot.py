"""The PNG plot: p50 latency by precision and batch size, one panel per thread count (drawn with OpenCV).

The y axis is logarithmic: the origin network in PyTorch is two orders of magnitude slower than INT8.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from benchmarks.config import Row, Section
from edge_runtime.errors import OutputError

FONT = cv2.FONT_HERSHEY_SIMPLEX
COLOURS = [  # BGR, one per series: a default run with torch has 6, each further model file adds 2
    (200, 90, 30), (40, 140, 230), (60, 170, 60), (50, 50, 200), (150, 60, 150), (30, 160, 160),
    (120, 120, 120), (0, 200, 255), (140, 20, 90), (90, 60, 20), (180, 180, 0), (200, 130, 230),
]  # fmt: skip
BLACK, GREY = (0, 0, 0), (190, 190, 190)


def series_name(r: Row, *, with_file: bool = False) -> str:
    """A bar series' label; ``with_file`` where two model files share model, precision and provider (they were
    drawn as one series, and the second file's bars were dropped)."""
    name = f"{r.model} {r.precision} {r.provider}"
    return f"{name} ({r.file})" if with_file and r.file else name


def _needs_files(rows: Sequence[Row]) -> bool:
    files: dict[str, set[str]] = {}
    for r in rows:
        files.setdefault(series_name(r), set()).add(r.file or "")
    return any(len(f) > 1 for f in files.values())


def _text(img: np.ndarray, text: str, xy: tuple[int, int], scale: float = 0.4, colour=BLACK) -> None:  # noqa: ANN001
    cv2.putText(img, text, xy, FONT, scale, colour, 1, cv2.LINE_AA)


def panel(
    rows: Sequence[Row], names: list[str], title: str, lo: float, hi: float, label: Callable[[Row], str] = series_name
) -> np.ndarray:
    """Grouped bars: one group per batch size, one bar per series, heights on a log10 axis."""
    w, left, right, top = 560, 60, 10, 30
    bottom = max(120, 45 + 14 * len(names))  # the legend below the bars: one line per series, all of it visible
    h = 260 + bottom
    img = np.full((h, w, 3), 255, np.uint8)
    _text(img, title, (left, 20), 0.5)
    plot_h = h - top - bottom

    def y_of(v: float) -> int:
        return int(h - bottom - (math.log10(v) - lo) / (hi - lo) * plot_h)

    for e in range(math.floor(lo), math.ceil(hi) + 1):
        if lo <= e <= hi:
            y = y_of(10.0**e)
            cv2.line(img, (left, y), (w - right, y), GREY, 1)
            _text(img, f"{10.0**e:g} ms", (2, y + 4), 0.35)
    batches = sorted({r.batch for r in rows})
    group_w = (w - left - right) / max(len(batches), 1)
    bar_w = max(4, int(group_w * 0.8 / max(len(names), 1)))
    for g, batch in enumerate(batches):
        x0 = int(left + g * group_w + group_w * 0.1)
        _text(img, f"batch {batch}", (x0, h - bottom + 15))
        for k, name in enumerate(names):
            r = next((r for r in rows if r.batch == batch and label(r) == name and r.p50_ms), None)
            if r is None:
                continue
            x = x0 + k * bar_w
            cv2.rectangle(img, (x, y_of(r.p50_ms)), (x + bar_w - 2, h - bottom), COLOURS[k % len(COLOURS)], -1)
    cv2.rectangle(img, (left, top), (w - right, h - bottom), BLACK, 1)
    for k, name in enumerate(names):
        y = h - bottom + 35 + 14 * k
        cv2.rectangle(img, (left, y - 8), (left + 10, y), COLOURS[k % len(COLOURS)], -1)
        _text(img, name, (left + 16, y))
    return img


def latency_png_bytes(rows: Sequence[Row], title: str) -> bytes:
    """p50 latency per batch of every inference row, one panel per thread count, PNG-encoded; ``title``: one line
    above the panels per line of it."""
    rows = [r for r in rows if r.section == Section.INFERENCE.value and r.p50_ms and r.p50_ms > 0]
    with_file = _needs_files(rows)

    def label(r: Row) -> str:
        return series_name(r, with_file=with_file)

    names = list(dict.fromkeys(label(r) for r in rows))
    if rows:
        values = [math.log10(r.p50_ms) for r in rows]
        lo, hi = math.floor(min(values)), math.ceil(max(values))
        hi = hi if hi > lo else lo + 1
        threads = sorted({r.threads for r in rows})
        panels = [
            panel([r for r in rows if r.threads == t], names, f"p50 latency, {t} thread(s)", lo, hi, label)
            for t in threads
        ]
    else:
        panels = [np.full((380, 560, 3), 255, np.uint8)]
    img = np.hstack(panels)
    lines = title.splitlines() or [""]  # a busy machine's warning goes on a line of its own, under the title
    banner = np.full((8 + 18 * len(lines), img.shape[1], 3), 255, np.uint8)
    for k, line in enumerate(lines):
        _text(banner, line, (10, 18 + 18 * k), 0.5)
    img = np.vstack([banner, img])
    ok, data = cv2.imencode(".png", img)
    if not ok:
        raise OutputError("cannot encode the PNG plot")
    return data.tobytes()
