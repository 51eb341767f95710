"""What a model says about one item: its :class:`Prediction`, how its score is recorded, and the
:class:`ScoreError` an item gets instead when the model's score is not a probability."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_runtime.errors import ModelError


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float  # P(defective)
    defective: bool
    latency_ms: float  # preprocessing + inference for this item (a batch's time is shared out)
    # Localisation (models exported with the map; see edge_runtime.heatmap): each cell's evidence for a defect
    # (logit units), float32 -- the network's (h, w) grid from predict_inputs(with_map=True), on the source image
    # (H, W) from predict(heatmap=True); defect_box (x0, y0, x1, y1) in source pixels, None for OK items.
    heatmap: np.ndarray | None = field(default=None, repr=False, compare=False)
    defect_box: tuple[int, int, int, int] | None = None
    heat_scale: float | None = field(default=None, repr=False, compare=False)  # map value drawn at full heat
    # The part's asymmetry peak where the model's symmetry look measured it (items just below the threshold;
    # edge_runtime.model_info.SymmetryLook), else None. ``score`` already includes its lift.
    asymmetry: float | None = None
    # How the score came about, for the summary's counts of the records actually written: scored a second time,
    # mirrored (second look), and turned defective by the symmetry look.
    second_look: bool = field(default=False, compare=False)
    lifted: bool = field(default=False, compare=False)
    # The station check's reasons where the item looks unlike the training images, or no part was found in it
    # (what edge-infer's records call unlike_training; a gate must not pass such an item), else None.
    unlike_training: tuple[str, ...] | None = None

    def to_dict(self) -> dict:
        """The verdict as ``edge-infer``'s record has it, ready for ``json.dumps`` (the map left out). It had only
        label, score, defective and latency_ms: a service logging it lost ``unlike_training``, which a gate must
        check before trusting "ok", and the defect's box.

        >>> Prediction("ok", 0.06, False, 0.4, unlike_training=("no part found",)).to_dict()["unlike_training"]
        ['no part found']
        """
        return {
            "label": self.label,
            "score": recorded_score(self.score),
            "defective": self.defective,
            "latency_ms": round(self.latency_ms, 3),
            "defect_box": None if self.defect_box is None else [int(v) for v in self.defect_box],
            "unlike_training": list(self.unlike_training) if self.unlike_training else None,
            "asymmetry": None if self.asymmetry is None else round(float(self.asymmetry), 2),
        }


def recorded_score(score: float) -> float:
    """A score to six decimals, never a flat 1 or 0 for one short of it (0.99999988 was written as 1.0, which
    reads as certainty).

    >>> recorded_score(0.99999988), recorded_score(0.0256831), recorded_score(1.0), recorded_score(2e-9)
    (0.999999, 0.025683, 1.0, 1e-06)
    """
    low, high = (1e-6 if score > 0 else 0.0), (0.999999 if score < 1 else 1.0)
    return min(max(round(score, 6), low), high)


class ScoreError(ModelError):
    """The model gave a score that is not a probability (NaN, infinite, outside [0, 1]): never a verdict."""
