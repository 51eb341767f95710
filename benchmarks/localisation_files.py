"""Where ``python -m benchmarks.localisation`` writes: ``--out``'s STEM.md, STEM.json and STEM.png, checked before
any work and written all or none."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.atomic import atomic_write_all
from edge_runtime.errors import OutputError


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
