"""The Python API and decoding, third campaign: a JPEG cut off in its last bytes, a model closed by a service that
swaps models, and the two-step path (``preprocess`` then ``scores``) against ``predict``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import edge_runtime
from edge_runtime.cli import main
from edge_runtime.errors import ImageWarning
from edge_runtime.model import EdgeModel, load_model
from edge_runtime.preprocess import read_image

SAMPLES = Path(edge_runtime.__file__).parent / "samples" / "test"


@pytest.fixture(scope="module")
def model() -> EdgeModel:
    return load_model()


def _records(folder: Path, *extra: str) -> dict[str, dict]:
    r = CliRunner().invoke(main, ["--source", str(folder), "--json", "--workers", "1", *extra])
    assert "Traceback" not in r.output, r.output
    return {Path(rec["source"]).name: rec for rec in map(json.loads, r.stdout.splitlines())}


def test_a_jpeg_cut_off_in_its_last_bytes_is_judged_with_a_warning(tmp_path: Path):
    """OpenCV 5 refuses a JPEG whose end-of-image marker (FF D9) is missing: a camera or a copy cut off in its last
    bytes was "not a readable image" (exit 3 alone, an item error in a folder), where OpenCV 4 decoded it with a
    warning. Every byte that came is decoded again, with the record's warning (and so --fail-on-defect's failure);
    where only the marker is missing the picture, and so the verdict, is the whole file's."""
    intact = (SAMPLES / "def_front" / "cast_def_0_3446.jpeg").read_bytes()
    assert intact.endswith(b"\xff\xd9") and 0 < intact.find(b"\xff\xda") < len(intact) // 2  # the scan: 2nd half
    folder = tmp_path / "parts"
    folder.mkdir()
    half = intact[: len(intact) // 2]
    cuts = {"intact.jpeg": intact, "no_eoi.jpeg": intact[:-2], "few.jpeg": intact[:-8], "mid.jpeg": half}
    for name, data in cuts.items():
        (folder / name).write_bytes(data)
    recs = _records(folder)
    assert recs["intact.jpeg"]["warning"] is None and recs["intact.jpeg"]["defective"] is True
    for name in ("no_eoi.jpeg", "few.jpeg", "mid.jpeg"):
        assert recs[name]["error"] is None and recs[name]["label"] in ("ok", "defective"), recs[name]
    assert recs["no_eoi.jpeg"]["warning"] == "JPEG has no end marker (truncated file); the verdict may be wrong"
    assert (recs["no_eoi.jpeg"]["label"], recs["no_eoi.jpeg"]["score"]) == (
        recs["intact.jpeg"]["label"], recs["intact.jpeg"]["score"],
    )  # fmt: skip
    for name in ("few.jpeg", "mid.jpeg"):  # cut in the scan: the decoder says what it concealed
        assert recs[name]["warning"].startswith("decoder reported damage: Corrupt JPEG data"), recs[name]

    with pytest.warns(ImageWarning, match=r"no_eoi\.jpeg: JPEG has no end marker"):
        cut = read_image(folder / "no_eoi.jpeg")
    assert np.array_equal(cut, read_image(folder / "intact.jpeg"))

    gate = CliRunner().invoke(main, ["--source", str(folder / "no_eoi.jpeg"), "--json", "--fail-on-defect"])
    assert gate.exit_code == 10, gate.stderr  # a warned item never passes a gate


def test_a_jpeg_cut_in_its_headers_is_still_unreadable(tmp_path: Path):
    """Putting the end marker back decodes what came of the picture; a file cut before its scan has none."""
    intact = (SAMPLES / "ok_front" / "cast_ok_0_8189.jpeg").read_bytes()
    (tmp_path / "head.jpeg").write_bytes(intact[: intact.find(b"\xff\xda")])  # up to its scan
    rec = _records(tmp_path)["head.jpeg"]
    assert rec["label"] is None and "not a readable image" in rec["error"]
