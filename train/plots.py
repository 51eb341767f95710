"""Small PNG figures drawn with OpenCV (no plotting library needed)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_runtime.atomic import atomic_write_bytes
from edge_runtime.errors import OutputError
from train.run_dir import write_failure

FONT = cv2.FONT_HERSHEY_SIMPLEX
COLOURS = [(200, 90, 30), (40, 140, 230), (60, 170, 60), (50, 50, 200)]  # BGR


def write_png(path: Path, image: np.ndarray) -> Path:
    """Encode in memory, then write atomically: a full disk is exit 7 naming the file and its cause (OpenCV's
    ``imwrite`` only said False, and libpng printed "Write Error"), and no torn PNG is left."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise OutputError(f"{path}: cannot encode the picture as PNG; report this")
    try:
        atomic_write_bytes(path, buf.tobytes())
    except OSError as exc:
        why, advice = write_failure(exc)
        raise OutputError(f"{path}: cannot write ({why}); {advice}") from exc
    return path


def _panel(title: str, series: dict[str, list[float]], w: int = 420, h: int = 300) -> np.ndarray:
    img = np.full((h, w, 3), 255, np.uint8)
    left, right, top, bottom = 50, 10, 30, 40
    cv2.putText(img, title, (left, 20), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    values = [v for s in series.values() for v in s if np.isfinite(v)]
    if not values:
        return img
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    n = max(len(s) for s in series.values())
    cv2.rectangle(img, (left, top), (w - right, h - bottom), (0, 0, 0), 1)
    for frac in (0.0, 0.5, 1.0):
        y = int(h - bottom - frac * (h - top - bottom))
        cv2.putText(img, f"{lo + frac * (hi - lo):.3g}", (2, y + 4), FONT, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"epoch 1..{n}", (left, h - 12), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for k, (name, ys) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        pts = [
            (
                int(left + (i / max(n - 1, 1)) * (w - left - right)),
                int(h - bottom - (y - lo) / (hi - lo) * (h - top - bottom)),
            )
            for i, y in enumerate(ys)
            if np.isfinite(y)
        ]
        if len(pts) > 1:
            cv2.polylines(img, [np.array(pts, np.int32)], False, colour, 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, p, 2, colour, -1)
        cv2.putText(img, name, (w - right - 110, top + 15 + 15 * k), FONT, 0.4, colour, 1, cv2.LINE_AA)
    return img


def curves_png(path: Path, history: list[dict]) -> Path:
    """Loss and accuracy per epoch, train vs validation."""
    loss = _panel("loss", {"train": [r["train_loss"] for r in history], "val": [r["val_loss"] for r in history]})
    acc = _panel(
        "accuracy",
        {"train": [r["train_accuracy"] for r in history], "val": [r["val_accuracy"] for r in history]},
    )
    return write_png(path, np.hstack([loss, acc]))


def confusion_png(path: Path, metrics: dict, class_names: tuple[str, str], title: str) -> Path:
    """A 2x2 confusion matrix, rows = truth, columns = prediction."""
    cells = [[metrics["tn"], metrics["fp"]], [metrics["fn"], metrics["tp"]]]
    size, margin = 110, 120
    img = np.full((2 * size + margin + 20, 2 * size + margin + 20, 3), 255, np.uint8)
    cv2.putText(img, title, (10, 20), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    peak = max(max(r) for r in cells) or 1
    for r in range(2):
        for c in range(2):
            x0, y0 = margin + c * size, margin + r * size
            shade = int(255 - 160 * cells[r][c] / peak)
            colour = (shade, shade, 255) if r != c and cells[r][c] else (255, shade, shade)
            cv2.rectangle(img, (x0, y0), (x0 + size, y0 + size), colour, -1)
            cv2.rectangle(img, (x0, y0), (x0 + size, y0 + size), (0, 0, 0), 1)
            cv2.putText(img, str(cells[r][c]), (x0 + 30, y0 + 62), FONT, 0.8, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.putText(img, f"true {class_names[r]}", (5, margin + r * size + 60), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(
            img,
            f"pred {class_names[r]}",
            (margin + r * size + 10, margin - 10),
            FONT,
            0.4,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return write_png(path, img)


def grid_png(path: Path, images: np.ndarray, captions: list[str] | None = None, cols: int = 8) -> Path:
    """Tile (N, H, W) uint8 images into one PNG, with optional captions."""
    n, h, w = images.shape
    rows = (n + cols - 1) // cols
    pad = 18 if captions else 2
    canvas = np.full((rows * (h + pad), cols * (w + 2), 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = r * (h + pad), c * (w + 2)
        canvas[y : y + h, x : x + w] = images[i][:, :, None]
        if captions:
            cv2.putText(canvas, captions[i][:24], (x + 2, y + h + 13), FONT, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    return write_png(path, canvas)


def annotated_png(path: Path, image: np.ndarray, lines: list[str], colour: tuple[int, int, int]) -> Path:
    """One image (gray uint8) with a coloured frame and a caption: used for every misclassified item."""
    img = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    img = cv2.copyMakeBorder(img, 4, 4 + 16 * len(lines), 4, 4, cv2.BORDER_CONSTANT, value=colour)
    for k, text in enumerate(lines):
        y = image.shape[0] + 18 + 16 * k
        cv2.putText(img, text, (6, y), FONT, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return write_png(path, img)
