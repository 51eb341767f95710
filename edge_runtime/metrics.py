"""Binary classification metrics in plain numpy (positive class = defective).

Shared by training reports, the export accuracy gate and the benchmark's accuracy column.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def nearest_rank(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile by nearest rank (the smallest value with at least q% of the values at or below it):
    what edge-infer's summary, the station page and ``edge-log`` report, so one run's figures agree wherever they
    are read. None when there are no values.

    >>> nearest_rank([4.0, 1.0, 3.0, 2.0], 50), nearest_rank([4.0, 1.0, 3.0, 2.0], 99)
    (2.0, 4.0)
    """
    if not values:
        return None
    ordered = sorted(values)
    return ordered[nearest_rank_index(len(ordered), q)]


def nearest_rank_index(count: int, q: float) -> int:
    """Where the ``q``-th percentile of ``count`` sorted values lies (0-based): the one formula of
    :func:`nearest_rank`, also for the inspection log's SQL (``edge-log``), so their figures agree.

    >>> nearest_rank_index(4, 50), nearest_rank_index(4, 99), nearest_rank_index(1, 0)
    (1, 3, 0)
    """
    return min(count - 1, max(0, math.ceil(q / 100 * count) - 1))


def logit(p: np.ndarray | float) -> np.ndarray:
    """log(p / (1 - p)), with p clipped to [1e-12, 1 - 1e-12] so that 0 and 1 stay finite (NaN stays NaN).

    >>> logit(np.array([0.5, 0.0])).round(1).tolist()
    [0.0, -27.6]
    """
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def auroc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN when one class is missing.

    >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_metrics(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, threshold: float) -> dict:
    """Accuracy, precision, recall, specificity, F1, AUROC and the confusion counts at ``threshold``.

    A score at or above the threshold is called defective. A score that is not a number is no verdict (edge-infer
    makes it an item error), so it counts as wrong either way: a missed defect, a false alarm. It counted as OK
    (``nan >= t`` is False): an export forced through with NaN weights reported "262/715 correct".

    >>> m = binary_metrics([1, 0, 1], [0.9, 0.2, 0.4], threshold=0.5)
    >>> (m["tp"], m["fn"], m["accuracy"])
    (1, 1, 0.6666666666666666)
    >>> m = binary_metrics([1, 0], [float("nan"), float("nan")], threshold=0.5)
    >>> (m["fn"], m["fp"], m["accuracy"])
    (1, 1, 0.0)
    """
    y = np.asarray(labels, dtype=bool)
    values = np.asarray(scores, dtype=np.float64)
    pred = np.where(np.isfinite(values), values >= threshold, ~y)
    tp = int((pred & y).sum())
    tn = int((~pred & ~y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    n = tp + tn + fp + fn

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else float("nan")
    return {
        "n": n,
        "accuracy": ratio(tp + tn, n),
        "precision": precision,
        "recall": recall,
        "specificity": ratio(tn, tn + fp),
        "f1": f1,
        "auroc": auroc(y, scores),
        "tp": tp,
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "threshold": float(threshold),
    }


ALONE_MARGIN = 0.05  # logits below the weakest defect, where no OK image scores lower (about 1% of P near 0.5)


def recall_first_threshold(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """The operating threshold that keeps 100% defect recall with the best specificity reachable.

    Every positive must score at or above it. Among thresholds with that property the specificity is the
    same anywhere between the highest negative below the weakest positive and that positive, so we take the
    midpoint in logit space: the largest margin on both sides.

    >>> round(recall_first_threshold([1, 1, 0, 0], [0.9, 0.6, 0.1, 0.4]), 3)
    0.5
    """
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if not y.any():
        raise ValueError("cannot choose a recall-first threshold without any positive (defective) sample")
    weakest_pos = float(s[y].min())
    below = s[~y][s[~y] < weakest_pos]
    if below.size == 0:
        # No negative sits below the weakest positive: every negative is a false alarm anyway, so a margin costs
        # nothing. Just below the weakest positive (the next float) it was missed when scored again: ONNX, or the
        # report's second pass, differ in the last digits.
        below_weakest = 1.0 / (1.0 + math.exp(-(float(logit(weakest_pos)) - ALONE_MARGIN)))
        return float(min(below_weakest, weakest_pos))  # a weakest score of 0 (clipped in logit): 0
    lo, hi = logit(np.array([below.max(), weakest_pos]))
    t = 1.0 / (1.0 + math.exp(-(lo + hi) / 2.0))
    # Guard against float rounding putting the threshold above the weakest positive.
    return float(min(t, weakest_pos))


def json_safe(value: Any) -> Any:
    """Replace NaN/inf (an AUROC on one class) by None: the metadata JSON is strict.

    >>> json_safe({"auroc": float("nan"), "n": 3})
    {'auroc': None, 'n': 3}
    """
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
