"""The symmetry look: an item just below the threshold is measured against the part's own rotational symmetry,
and a clear asymmetry (a pinhole the small network input blurred) lifts it to defective.

The tiny model scores sigmoid(gain * (mean pixel - 0.5)) of its part-centred 32 px input, so a drawn part's score
barely moves with a pinhole; the threshold is set just above it (or far above) to place the part in the band.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime.cli import main as edge_infer
from edge_runtime.errors import ModelError
from edge_runtime.model import EdgeModel, Precision, Provider, RuntimeConfig, default_model_path, load_model
from edge_runtime.model_info import ModelInfo, SymmetryLook
from edge_runtime.preprocess import CropMode, PreprocessSpec
from edge_runtime.station_check import item_stats, profile
from tests.edge_runtime.conftest import model_bytes, tiny_info, with_metadata

PART = PreprocessSpec(size=32, crop=CropMode.PART, part_scale=2.4)
LOOK = SymmetryLook()


def drawn_part(*, pinhole: bool) -> np.ndarray:
    """A round casting seen from above (grey background, sharp flange, dark core), optionally with one 6 px
    dark pinhole on the flange."""
    img = np.full((300, 300), 170, np.uint8)
    cv2.circle(img, (150, 150), 120, 215, -1)
    cv2.circle(img, (150, 150), 64, 25, -1)
    if pinhole:
        cv2.circle(img, (150 + 95, 150 - 20), 3, 70, -1)
    return img


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def part_model(
    tmp_path: Path, *, threshold: float, look: SymmetryLook | None = LOOK, station: dict | None = None
) -> Path:
    info = ModelInfo(
        preprocess=PART,
        class_names=("ok", "defective"),
        threshold=threshold,
        arch="tiny-test",
        symmetry_look=look,
        station=station or {},
    )
    path = tmp_path / f"part_{threshold:.6f}_{look is not None}_{station is not None}.onnx"
    path.write_bytes(with_metadata(model_bytes("tiny.onnx"), info.to_json(), stamp=True))
    return path


def network_score(tmp_path: Path, image: np.ndarray) -> float:
    plain = EdgeModel(part_model(tmp_path, threshold=0.5, look=None), RuntimeConfig(provider=Provider.CPU))
    return plain.predict(image).score


@pytest.fixture
def just_below(tmp_path: Path) -> Path:
    """A model whose threshold lies 0.5 logits above the sound part's score: both drawn parts are in the band."""
    sound, holed = (network_score(tmp_path, drawn_part(pinhole=p)) for p in (False, True))
    t = 1.0 / (1.0 + math.exp(-(logit(sound) + 0.5)))
    assert holed < t and logit(t) - logit(holed) < SymmetryLook().band_logit  # the network alone: OK
    return part_model(tmp_path, threshold=t)


def test_a_pinhole_just_below_the_threshold_is_called_defective(just_below: Path):
    model = load_model(just_below, provider=Provider.CPU)
    holed = model.predict(drawn_part(pinhole=True))
    sound = model.predict(drawn_part(pinhole=False))
    assert holed.defective and holed.score >= model.info.threshold
    assert holed.asymmetry is not None and holed.asymmetry > 2 * SymmetryLook().from_peak
    # The sound part is measured too (it is in the band) and stays OK with its own score.
    assert not sound.defective and sound.asymmetry is not None and sound.asymmetry < SymmetryLook().from_peak
    assert sound.score == pytest.approx(network_score(just_below.parent, drawn_part(pinhole=False)), abs=1e-6)
    assert (model.symmetry_looks, model.symmetry_lifts) == (2, 1)


def test_only_items_unlike_the_training_images_are_measured(just_below: Path):
    # A station profile made from the drawn parts themselves: they look like the training images.
    t = load_model(just_below).info.threshold
    trained = profile([item_stats(drawn_part(pinhole=p), PART) for p in (False, True)]).to_dict()
    model = load_model(part_model(just_below.parent, threshold=t, station=trained))
    holed = model.predict(drawn_part(pinhole=True))
    # Like the training images: the network alone decides (its threshold was chosen on such images).
    assert not holed.defective and holed.asymmetry is None and model.symmetry_looks == 0
    # The same part from a camera of twice the resolution is flagged, so it is measured and lifted.
    sharp = cv2.resize(drawn_part(pinhole=True), (600, 600), interpolation=cv2.INTER_CUBIC)
    x, why, part = model.input_for_verdict(sharp)
    assert why and part is not None
    lifted = model.predict_inputs(x[None], parts=[part])[0]
    assert lifted.asymmetry is not None and lifted.asymmetry > 2 * LOOK.from_peak
    assert lifted.score > model.network_scores(model.prepare([sharp]))[0]


def test_the_look_can_be_switched_off(just_below: Path):
    off = EdgeModel(just_below, RuntimeConfig(provider=Provider.CPU, symmetry_look=False))
    holed = off.predict(drawn_part(pinhole=True))
    assert not holed.defective and holed.asymmetry is None and off.symmetry_looks == 0


def test_items_outside_the_band_are_not_measured(tmp_path: Path):
    holed_image = drawn_part(pinhole=True)
    score = network_score(tmp_path, holed_image)
    far = load_model(part_model(tmp_path, threshold=1.0 / (1.0 + math.exp(-(logit(score) + 3.0)))))
    above = load_model(part_model(tmp_path, threshold=1.0 / (1.0 + math.exp(-(logit(score) - 1.0)))))
    p_far, p_above = far.predict(holed_image), above.predict(holed_image)
    # Far below the threshold: the network decides, nothing is measured (no cost).
    assert not p_far.defective and p_far.asymmetry is None and far.symmetry_looks == 0
    # Already defective: nothing to lift, nothing is measured, and the look never lowers a score.
    assert p_above.defective and p_above.asymmetry is None and p_above.score == pytest.approx(score, abs=1e-6)


def test_a_frame_without_a_part_is_left_to_the_network(just_below: Path):
    model = load_model(just_below)
    flat = np.full((300, 300), 120, np.uint8)
    pred = model.predict(flat)
    assert pred.asymmetry is None and model.symmetry_looks == 0


def test_the_entry_round_trips_and_bad_entries_are_model_errors():
    info = ModelInfo(preprocess=PART, class_names=("ok", "defective"), threshold=0.4, symmetry_look=SymmetryLook())
    d = json.loads(info.to_json())["symmetry_look"]
    assert d == {"band_logit": 1.5, "from_peak": 8.0, "weight": 2.0}
    assert ModelInfo.from_json(info.to_json()).symmetry_look == SymmetryLook()
    assert json.loads(tiny_info().to_json()).get("symmetry_look") is None
    for bad in ({"band_logit": "x", "from_peak": 8, "weight": 2}, {"band_logit": 1.5, "from_peak": 0, "weight": 2},
                {"band_logit": 1.5, "from_peak": 8}, [1, 2]):  # fmt: skip
        with pytest.raises(ModelError, match="symmetry_look"):
            ModelInfo.from_json(json.dumps(json.loads(info.to_json()) | {"symmetry_look": bad}))
    # The look needs the part's centre: a centre-cropped model cannot ask for it.
    centred = json.loads(tiny_info().to_json()) | {"symmetry_look": SymmetryLook().to_dict()}
    with pytest.raises(ModelError, match="not 'part'"):
        ModelInfo.from_json(json.dumps(centred))


def test_the_shipped_models_look_at_the_symmetry():
    for precision in (Precision.FP32, Precision.INT8):
        model = load_model(default_model_path(precision))
        assert model.info.symmetry_look == SymmetryLook() and model.looks_at_symmetry


def test_edge_infer_reports_each_measured_item_and_the_lifts(just_below: Path, tmp_path: Path):
    folder = tmp_path / "parts"
    folder.mkdir()
    cv2.imwrite(str(folder / "holed.png"), drawn_part(pinhole=True))
    cv2.imwrite(str(folder / "sound.png"), drawn_part(pinhole=False))
    result = CliRunner().invoke(edge_infer, ["--source", str(folder), "--model", str(just_below), "--json"])
    assert result.exit_code == 0, result.output
    recs = {Path(r["source"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert recs["holed.png"]["defective"] is True and recs["holed.png"]["asymmetry"] > 16
    assert recs["sound.png"]["defective"] is False and recs["sound.png"]["asymmetry"] < 8
    assert "symmetry look: 2 items just below the threshold" in result.stderr
    assert "1 of them called defective" in result.stderr


def test_the_cut_square_is_a_plain_copy_and_a_large_one_is_shrunk_at_once():
    from edge_runtime import symmetry
    from edge_runtime.framing import find_part, region_for

    for side in (512, 3000):
        gray = cv2.resize(drawn_part(pinhole=True), (side, side), interpolation=cv2.INTER_LINEAR)
        part = symmetry.part_patch(gray, region_for(find_part(gray), 2.4))
        assert part is not None and part.image.size <= symmetry.KEEP_PIXELS  # no item holds megabytes
        left, top, right, bottom = part.where
        if side == 512:  # the workers only copy a camera frame's square (the shrink waits for the measured items)
            assert np.array_equal(part.image, gray[top:bottom, left:right])
        else:
            assert part.half <= symmetry.WORK_HALF + 1e-6 and part.image.shape[0] < bottom - top
        assert symmetry.peak(part) > 2 * LOOK.from_peak  # the pinhole is seen at either size
