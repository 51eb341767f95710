"""Faults found in the symmetry look (and the validation images it was chosen on): each test names the failure it
guards, seen on the code before its fix."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks.robustness import main as robustness
from edge_runtime.model import load_model
from edge_runtime.model_info import SymmetryLook
from tests.edge_runtime.test_symmetry_look import drawn_part, logit, network_score, part_model

DEFAULT_CKPT = Path(__file__).resolve().parents[2] / "train" / "default_model" / "best.pt"


def test_part_squares_not_one_per_item_are_refused(tmp_path: Path):
    # Was: one square short -> a bare IndexError from inside the look (only when an item was in the band), and one
    # too many -> accepted silently, so a shifted list measured one item's part for another item's verdict.
    score = network_score(tmp_path, drawn_part(pinhole=True))
    model = load_model(part_model(tmp_path, threshold=1.0 / (1.0 + math.exp(-(logit(score) + 0.5)))))
    x, _, part = model.input_for_verdict(drawn_part(pinhole=True))
    assert part is not None
    for batch, parts in ((np.stack([x, x]), [part]), (x[None], [part, None])):
        with pytest.raises(ValueError, match="part squares for"):
            model.predict_inputs(batch, parts=parts)
    assert model.symmetry_looks == 0


def _checkpoint_with(tmp_path: Path, name: str, change) -> Path:  # noqa: ANN001
    """The default checkpoint with its data record changed by ``change`` and the content hash redone."""
    torch = pytest.importorskip("torch", reason="reading a checkpoint needs the train extra")
    from train.checkpoint import HASH_KEY, checkpoint_digest

    ckpt = torch.load(DEFAULT_CKPT, map_location="cpu", weights_only=True)
    ckpt = change(ckpt)
    ckpt[HASH_KEY] = checkpoint_digest(ckpt)
    torch.save(ckpt, tmp_path / name)
    return tmp_path / name


def test_a_checkpoint_listing_no_validation_images_is_a_model_error(tmp_path: Path):
    # Was: a checkpoint without a data record (or an empty list) -> exit 3 "0 of the 0 validation images ... are not
    # there; pass --data ...", which no --data can fix; and non-text entries -> exit 1 "unexpected TypeError".
    # Non-text entries are refused since when the checkpoint is read (its fields' types checked), naming the field.
    changes = {
        "no_record.pt": (lambda c: {k: v for k, v in c.items() if k != "data"}, "lists no validation images"),
        "no_files.pt": (lambda c: c | {"data": c["data"] | {"val_files": []}}, "lists no validation images"),
        "numbers.pt": (lambda c: c | {"data": c["data"] | {"val_files": [1, 2]}}, "val_files is not a list of names"),
    }
    for name, (change, words) in changes.items():
        path = _checkpoint_with(tmp_path, name, change)
        r = CliRunner().invoke(robustness, ["--data", str(tmp_path), "--validation-of", str(path), "--set", "station"])
        assert r.exit_code == 4, (name, r.output)
        assert words in r.output and "Traceback" not in r.output
        assert len(r.output.strip().splitlines()) == 1


def test_a_score_that_is_not_a_probability_keeps_its_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # Was: a negative score's logit is clipped to logit(1e-12) = -27.6, which a wide band (metadata allows up to 50)
    # or a threshold under 5e-12 reaches, so the look measured it and turned it into a probability: a verdict for an
    # item the model gave no valid score (ScoreError), silently.
    model = load_model(part_model(tmp_path, threshold=0.4, look=SymmetryLook(band_logit=50.0)))
    x, _, part = model.input_for_verdict(drawn_part(pinhole=True))
    monkeypatch.setattr(model, "network_scores", lambda batch: np.array([-1e-9, 1.0 + 1e-9, 1e-13])[: len(batch)])
    out = model.verdicts_or_errors(np.stack([x, x, x]), parts=[part, part, part])
    assert [type(p).__name__ for p in out] == ["ScoreError", "ScoreError", "Prediction"]
    assert out[2].asymmetry is not None and model.symmetry_looks == 1  # a true (tiny) probability is still measured
