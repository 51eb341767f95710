"""Items to verdicts: batches of items as the run takes them, and the model's verdicts for a batch (with the map
and box on each picture for --heatmap). Unreadable items and scores that are not probabilities get no verdict
and an error; the run goes on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from itertools import islice

import numpy as np

from edge_runtime.items import Item, with_warning
from edge_runtime.model import EdgeModel, Prediction, ScoreError


def batches(items: Iterator[Item], size: int, left: Callable[[], int | None] = lambda: None) -> Iterator[list[Item]]:
    """Lists of up to ``size`` items, never taking more than ``left()`` (--max-frames) from ``items``: a video's
    reader is not advanced past the run's last frame (its warnings about later frames are not the run's)."""
    while True:
        n = left()
        take = size if n is None else min(size, n)
        batch: list[Item] = []
        try:
            batch.extend(islice(items, take))
        except Exception:
            # The source failed mid-batch (a video reader that died, no file descriptor left): the items read
            # before it are judged and written first; they were dropped with the batch.
            if batch:
                yield batch
            raise
        if take <= 0 or not batch:
            return
        yield batch


def predict_items(model: EdgeModel, batch: list[Item], *, with_map: bool = False) -> list[Prediction | None]:
    """Verdicts for a batch in order; unreadable items, and items whose score is not a probability, get
    ``None`` (their ``error`` is set). ``with_map``: each verdict carries its map on the source image and
    ``defect_box`` (:func:`edge_runtime.heatmap.locate`)."""
    good = [it for it in batch if it.model_input is not None]
    inputs = np.stack([it.model_input for it in good]) if good else None
    parts = [it.part for it in good]
    results = iter(
        model.verdicts_or_errors(inputs, prep_ms=[it.prep_ms for it in good], with_map=with_map, parts=parts)
        if good
        else []
    )
    preds: list[Prediction | None] = []
    for it in batch:
        r = next(results) if it.model_input is not None else None
        if isinstance(r, ScoreError):
            where = it.source if it.frame is None else f"{it.source} frame {it.frame}"
            it.error, r = f"{where}: {r}", None
        if with_map and r is not None and it.original is not None:
            r = _located(r, it, model)
        preds.append(r)
    return preds


def _located(pred: Prediction, it: Item, model: EdgeModel) -> Prediction:
    """``pred`` with its map on the item's picture and its box; where that fails (an odd picture, OpenCV), the
    verdict stands without a box or map, and the item gets a warning: the run goes on."""
    from edge_runtime.heatmap import locate

    try:
        return locate(pred, it.original, model.info.preprocess)
    except Exception as exc:  # noqa: BLE001 - the verdict is sound; only its picture failed
        note = f"no heatmap or defect box for this item ({_first_line(exc)})"
        it.warning = with_warning(it.warning, note)
        return replace(pred, heatmap=None, defect_box=None)


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:160]
