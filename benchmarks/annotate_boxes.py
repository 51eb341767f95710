"""Hand-marking of defect boxes for the localisation benchmark (a person looks, this script only shows).

``python -m benchmarks.annotate_boxes pick --data ../shared/data/casting`` chooses the images (seeded, so the
choice is reproducible) and ``render`` writes each one enlarged to 600x600 with a labelled 10% grid (every 30
source pixels) under ``/tmp/defect-boxes/``. A person looks at each PNG and writes the box(es) around every
visible defect, in 300x300 source-pixel coordinates ``[x0, y0, x1, y1]`` (x to the right, y down, x1/y1
exclusive), into ``benchmarks/data/defect_boxes.json``. ``show`` draws the committed boxes back onto the
enlarged images to check them. Nothing here looks at a model: the boxes must not come from the map.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import click
import cv2
import numpy as np

from edge_runtime.cli_support import Group, debug_option, friendly_errors, version_option
from edge_runtime.errors import DataError

BOXES_FILE = Path(__file__).resolve().parent / "data" / "defect_boxes.json"
DEFAULT_OUT = Path("/tmp/defect-boxes")
SCALE = 2  # 300 px source -> 600 px view
GRID = 30  # source pixels between grid lines (10% of 300)


def pick(data: Path, *, count: int = 60, seed: int = 10) -> list[str]:
    """``count`` defective test images, seeded, as paths relative to ``data``."""
    files = sorted((data / "test" / "def_front").glob("*.jpeg"))
    if len(files) < count:
        raise DataError(f"{data}: {len(files)} defective test images in test/def_front/, {count} needed; pass --data")
    chosen = random.Random(seed).sample(files, count)
    return sorted(p.relative_to(data).as_posix() for p in chosen)


def render(image: np.ndarray, boxes: list[list[int]] | None = None) -> np.ndarray:
    """The enlarged BGR view with a labelled grid (labels are source pixels) and optional boxes in green."""
    h, w = image.shape[:2]
    big = cv2.resize(image, (w * SCALE, h * SCALE), interpolation=cv2.INTER_CUBIC)
    big = cv2.cvtColor(big, cv2.COLOR_GRAY2BGR) if big.ndim == 2 else big
    pad = 28
    canvas = np.full((h * SCALE + pad, w * SCALE + pad, 3), 255, np.uint8)
    canvas[pad:, pad:] = big
    for v in range(0, max(h, w) + 1, GRID):
        p = pad + v * SCALE
        if v <= w:
            cv2.line(canvas, (p, pad), (p, pad + h * SCALE), (255, 160, 0), 1)
            cv2.putText(canvas, str(v), (p - 10, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (200, 0, 0), 1, cv2.LINE_AA)
        if v <= h:
            cv2.line(canvas, (pad, p), (pad + w * SCALE, p), (255, 160, 0), 1)
            cv2.putText(canvas, str(v), (1, p + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (200, 0, 0), 1, cv2.LINE_AA)
    for x0, y0, x1, y1 in boxes or []:
        cv2.rectangle(
            canvas, (pad + x0 * SCALE, pad + y0 * SCALE), (pad + x1 * SCALE, pad + y1 * SCALE), (0, 200, 0), 2
        )
    return canvas


@click.group(cls=Group)
@version_option
def main() -> None:
    """Pick, render and check the hand-marked defect boxes."""


@main.command("render")
@click.option("--data", type=click.Path(path_type=Path, file_okay=False), default=Path("../shared/data/casting"))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=DEFAULT_OUT)
@click.option("--show-boxes", is_flag=True, help="Draw the committed boxes (to check them).")
@debug_option
@friendly_errors
def render_cmd(*, debug: bool, data: Path, out: Path, show_boxes: bool) -> None:
    """Write one enlarged, gridded PNG per chosen image (numbered in the order of the JSON file)."""
    chosen = pick(data)
    out.mkdir(parents=True, exist_ok=True)
    marked = json.loads(BOXES_FILE.read_text())["images"] if show_boxes and BOXES_FILE.exists() else {}
    for i, rel in enumerate(chosen):
        image = cv2.imread(str(data / rel), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise DataError(f"{data / rel}: not a readable image")
        boxes = marked.get(rel, {}).get("boxes") if show_boxes else None
        cv2.imwrite(str(out / f"{i:02d}_{Path(rel).stem}.png"), render(image, boxes))
    click.echo(f"wrote {len(chosen)} views to {out}")


if __name__ == "__main__":
    main()
