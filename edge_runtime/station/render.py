"""The image ``edge-log show`` writes: a stored thumbnail, enlarged, with its verdict drawn as ``--show`` draws it."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edge_runtime.annotate import annotate
from edge_runtime.errors import DataError
from edge_runtime.model import Prediction


def verdict_image(jpeg: bytes, rec: dict[str, Any], *, size: int = 384) -> np.ndarray:
    """Decode ``jpeg``, enlarge it to ``size`` on its longest side and draw ``rec``'s label and score (BGR)."""
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) if jpeg else None
    if img is None:  # a damaged stored picture was "unexpected AttributeError", exit 1
        raise DataError("the inspection log holds a damaged picture for this item; restore the log from a backup")
    h, w = img.shape[:2]
    s = size / max(h, w)
    img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC)
    pred = None
    if rec.get("score") is not None:
        pred = Prediction(str(rec["label"]), float(rec["score"]), bool(rec["defective"]), float(rec["latency_ms"] or 0))
    return annotate(img, pred, error=str(rec.get("error") or ""))
