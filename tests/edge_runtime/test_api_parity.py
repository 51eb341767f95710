"""The Python API against edge-infer and against the arrays and paths a service's own code hands it: the same picture
gets the same verdict whichever way it comes in, and what cannot be read is named in one line. Found by a second
campaign on the API."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime.cli import main
from edge_runtime.model import EdgeModel, load_model
from edge_runtime.prediction import recorded_score
from edge_runtime.preprocess import read_image, to_uint8_gray


@pytest.fixture(scope="module")
def model() -> EdgeModel:
    return load_model()


def _record(path: Path) -> dict:
    r = CliRunner().invoke(main, ["--source", str(path), "--json", "--workers", "1"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_a_colour_png_scores_in_edge_infer_as_its_pixels_do_in_predict(model, tmp_path, casting_dir: Path):
    """edge-infer made a colour PNG gray by libpng's conversion, which truncates (half the pixels a level darker than
    predict makes the same BGR pixels): a tinted copy of an OK part scored 0.494, defective, in edge-infer and 0.301,
    ok, in model.predict(cv2.imread(path))."""
    part = cv2.imread(str(casting_dir / "test" / "ok_front" / "cast_ok_0_1368.jpeg"))
    tinted = np.clip(part * np.array([0.8, 1.0, 1.15]), 0, 255).astype(np.uint8)
    pictures = {
        "tinted.png": tinted,
        "tinted_alpha.png": cv2.cvtColor(tinted, cv2.COLOR_BGR2BGRA),
        "tinted_16.png": tinted.astype(np.uint16) * 257,
    }
    for name, pixels in pictures.items():
        cv2.imwrite(str(tmp_path / name), pixels)
        as_read = cv2.imread(str(tmp_path / name), cv2.IMREAD_UNCHANGED)
        want, record = model.predict(as_read), _record(tmp_path / name)
        assert (record["label"], record["score"]) == (want.label, recorded_score(want.score)), name
        assert np.array_equal(read_image(tmp_path / name), to_uint8_gray(as_read)), name
    assert model.predict(tinted).label == "ok"
