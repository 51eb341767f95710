"""The second look: items scored near the threshold are scored again mirrored, and the two logits averaged.

``tiny_left.onnx`` scores sigmoid(20 * (mean of the left half - 0.5)) and asks for a second look (band 3
logits about its threshold 0.5), so a part bright on one side only scores differently when mirrored.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.errors import ModelError
from edge_runtime.model import MODELS_DIR, EdgeModel, Provider, RuntimeConfig, load_model
from edge_runtime.model_info import SecondLook, View
from tests.edge_runtime.conftest import MODELS, make_tiny_model, model_bytes, tiny_info, with_metadata

LEFT = MODELS / "tiny_left.onnx"


def halves(left: float, right: float) -> np.ndarray:
    x = np.empty((1, 1, 32, 32), np.float32)
    x[..., :16], x[..., 16:] = left, right
    return x


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def test_an_item_near_the_threshold_is_judged_on_both_views():
    model = load_model(LEFT, provider=Provider.CPU)
    # Left half 0.55 (logit +1, "defective" alone), right half 0.36 (logit -2.8 once mirrored): mean -0.9.
    near = halves(0.55, 0.36)
    assert model.network_scores(near)[0] == pytest.approx(sigmoid(1.0), abs=1e-5)
    assert model.scores(near)[0] == pytest.approx(sigmoid(-0.9), abs=1e-5)
    # The verdict follows: a part bright on its left only is "defective" to one view, OK to both.
    part = np.full((1, 32, 32), 92, np.uint8)
    part[..., :16] = 140
    assert not model.predict_inputs(part)[0].defective
    once = EdgeModel(LEFT, RuntimeConfig(provider=Provider.CPU, second_look=False))
    assert once.predict_inputs(part)[0].defective
    # The same part seen mirrored gets the same score: the verdict no longer depends on which way it lies.
    assert model.scores(near[..., ::-1].copy())[0] == pytest.approx(model.scores(near)[0], abs=1e-6)


def test_items_far_from_the_threshold_keep_their_one_view_score():
    model = load_model(LEFT, provider=Provider.CPU)
    # Logit +8 alone (outside the band of 3), -8 mirrored: one view decides, as the band promises.
    far = halves(0.9, 0.1)
    assert model.scores(far)[0] == pytest.approx(sigmoid(8.0), abs=1e-5)
    batch = np.concatenate([far, halves(0.55, 0.36), halves(0.05, 0.95)])
    expected = [sigmoid(8.0), sigmoid(-0.9), sigmoid(-9.0)]
    assert model.scores(batch) == pytest.approx(expected, abs=1e-5)


def test_the_second_look_can_be_switched_off_and_absent_models_look_once():
    off = EdgeModel(LEFT, RuntimeConfig(provider=Provider.CPU, second_look=False))
    near = halves(0.55, 0.36)
    assert off.scores(near)[0] == pytest.approx(sigmoid(1.0), abs=1e-5)
    assert "second look off" in off.describe()
    assert "second look near it" in load_model(LEFT).describe()


def test_a_model_without_the_entry_looks_once(tmp_path: Path):
    meta = json.loads(tiny_info().to_json())  # no second_look key
    path = tmp_path / "left_once.onnx"
    path.write_bytes(with_metadata(model_bytes("tiny_left.onnx"), json.dumps(meta), stamp=True))
    model = load_model(path)
    assert model.info.second_look is None
    assert model.scores(halves(0.55, 0.36))[0] == pytest.approx(sigmoid(1.0), abs=1e-5)


def test_the_entry_round_trips_through_the_metadata():
    info = load_model(LEFT).info
    assert info.second_look == SecondLook(view=View.MIRROR, band_logit=3.0)
    assert json.loads(info.to_json())["second_look"] == {"view": "mirror", "band_logit": 3.0}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"view": "rotate", "band_logit": 3.0}, "second_look view 'rotate' is not known"),
        ({"view": "mirror", "band_logit": -1}, "band_logit -1 is not a number in"),
        ({"view": "mirror", "band_logit": "4"}, "band_logit 4 is not a number in"),
        ({"view": "mirror"}, "band_logit None is not a number in"),
        ({"band_logit": 3.0}, "second_look has no view; re-export"),  # was: "upgrade defect-edge"
        ({"view": None, "band_logit": 3.0}, "second_look has no view; re-export"),
        ([1, 2], "second_look is not a JSON object"),
    ],
)
def test_a_bad_entry_is_refused_at_load(tmp_path: Path, entry: object, message: str):
    text = json.dumps(tiny_info().to_dict() | {"second_look": entry})
    with pytest.raises(ModelError, match=message) as err:
        load_model(make_tiny_model(tmp_path / "bad.onnx", metadata=text))
    assert err.value.exit_code == 4


def test_the_shipped_models_take_the_second_look():
    """The bundled models' threshold was chosen on validation with both views; they must ask for the look."""
    for name in ("defectnet_int8.onnx", "defectnet_fp32.onnx"):
        info = load_model(MODELS_DIR / name).info
        assert info.second_look is not None, name


def test_edge_infer_counts_the_second_looks_in_its_summary(tmp_path: Path):
    import cv2
    from click.testing import CliRunner

    from edge_runtime.cli import main

    folder = tmp_path / "parts"
    folder.mkdir()
    for i, (left, right) in enumerate([(140, 92), (140, 92), (30, 30), (250, 250)]):
        im = np.full((64, 64), right, np.uint8)
        im[:, :32] = left
        cv2.imwrite(str(folder / f"p{i}.png"), im)
    summary = tmp_path / "summary.json"
    r = CliRunner().invoke(main, ["--source", str(folder), "--model", str(LEFT), "--json", "--summary", str(summary)])
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert [rec["defective"] for rec in records] == [False, False, False, True]  # lopsided parts: OK with both views
    assert json.loads(summary.read_text())["second_looks"] == 2  # the two lopsided parts; the others are far out
    assert "second look: 2 items (50%) lay near the threshold" in r.stderr
