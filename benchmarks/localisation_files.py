"""What ``python -m benchmarks.localisation`` reads and writes: the marked boxes (``--boxes``), and ``--out``'s
STEM.md, STEM.json and STEM.png, checked before any work and written all or none."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.atomic import atomic_write_all
from edge_runtime.errors import DataError, OutputError


def output_files(out: Path) -> tuple[Path, Path, Path]:
    """``--out``'s STEM.md, STEM.json and STEM.png. A dot in the stem is its own (``loc.v2`` wrote ``loc.md``, over
    another run's files); a name ending in one of the three suffixes gives its stem, as before.

    >>> [p.name for p in output_files(Path("res/loc.v2"))], output_files(Path("loc.json"))[0].name
    (['loc.v2.md', 'loc.v2.json', 'loc.v2.png'], 'loc.md')
    """
    stem = out.stem if out.suffix.lower() in (".md", ".json", ".png") else out.name
    md, js, png = (out.with_name(stem + suffix) for suffix in (".md", ".json", ".png"))
    return md, js, png


def check_out(out: Path, inputs: dict[str, Path], data: Path) -> None:
    """Before any work: no file of ``--out`` may replace an input of the run (``--boxes marks.json --out marks`` wrote
    the results over the hand-marked boxes) or land among the ``--data`` images (the grid became a test image)."""
    from benchmarks.preflight import inside_data
    from edge_runtime.output_checks import same_file

    for path in output_files(out):
        for option, source in inputs.items():
            if same_file(path, source):
                raise OutputError(f"{path}: --out would replace {option}, an input of this run; choose another --out")
        if inside_data(path, data):
            raise OutputError(f"{path}: --out is inside --data {data}, among its images; choose another --out")


def write_results(out: Path, text: str, doc: dict, picture: np.ndarray) -> Path:
    """The table, the JSON and the grid, all three or none (a grid that could not be written left the new table
    and JSON beside the last run's grid); returns the table's path. Raises :class:`OutputError`."""
    md, js, png = output_files(out)
    ok, encoded = cv2.imencode(".png", picture, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise OutputError(f"{png}: OpenCV could not encode the grid; the results are on stdout")
    files = {md: text.encode("utf-8"), js: (json.dumps(doc, indent=1) + "\n").encode("utf-8"), png: encoded.tobytes()}
    try:
        atomic_write_all(files)
    except OSError as exc:
        raise OutputError(f"{out}: cannot write the results ({exc}); choose another --out") from exc
    return md


BOXES = Path(__file__).resolve().parent / "data" / "defect_boxes.json"  # the committed marks
MAX_BOX_PX = 100_000  # box coordinates beyond any camera image, when the file gives no image_size


def _pixels(box: list) -> tuple[int, ...]:
    """A marked box in whole pixels that still covers it: x0, y0 down, x1, y1 up (a marking tool may write
    fractions; truncating them cut up to a pixel off the far edges). Not a number: ValueError."""
    if not isinstance(box, list) or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in box):
        raise ValueError(f"box {str(box)[:60]} is not a list of numbers")
    if not all(math.isfinite(c) for c in box):
        raise ValueError(f"box {str(box)[:60]} has a coordinate that is not finite")
    return tuple(math.floor(c) if i < 2 else math.ceil(c) for i, c in enumerate(box))


def load_boxes(path: Path = BOXES) -> dict[str, list[tuple[int, int, int, int]]]:
    """``{relative image path: [boxes]}`` from the committed JSON; an unreadable file is a :class:`DataError`."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        boxes = {str(k): [_pixels(b) for b in v["boxes"]] for k, v in doc["images"].items()}
        w, h = (int(v) for v in doc.get("image_size") or (MAX_BOX_PX, MAX_BOX_PX))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: not a readable defect-box file ({exc}); see benchmarks/data/README.md") from exc
    if not boxes or not all(v and all(len(b) == 4 for b in v) for v in boxes.values()):
        raise DataError(f"{path}: every image needs at least one [x0, y0, x1, y1] box")
    for name, marked in boxes.items():
        # An inverted box scores as a miss without a word; a huge one breaks the drawing (OpenCV's int32).
        bad = [b for b in marked if not (0 <= b[0] < b[2] <= w and 0 <= b[1] < b[3] <= h)]
        if bad:
            raise DataError(
                f"{path}: {name} has box {list(bad[0])}, not 0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h}; "
                "fix the file (see benchmarks/data/README.md)"
            )
    return boxes
