"""The export's self-checks: dynamic batch, torch vs onnxruntime parity, accuracy, size and latency."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_runtime.cpu import cpu_name  # noqa: F401 - re-exported: export's latency line
from edge_runtime.errors import ModelError
from edge_runtime.metrics import binary_metrics
from edge_runtime.model import EdgeModel
from edge_runtime.model_info import Precision
from export.images import LabelledImages
from export.quantize import count_ops

CHUNK = 64


@dataclass
class Measured:
    """One row of the summary table."""

    precision: Precision
    size_bytes: int
    max_diff: float  # max |P_torch - P_onnx| on the parity images
    n_parity: int
    quantize_nodes: int
    latency_ms: float  # batch 1, median
    official: dict[str, Any] | None = None
    leakage_free: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def accuracy(self, subset: str) -> float | None:
        m = getattr(self, subset)
        return None if m is None else float(m["accuracy"])


def torch_scores(net: nn.Module, batch: np.ndarray) -> np.ndarray:
    """P(defective) from the torch model, in eval mode, in float64 for comparison."""
    net.eval()
    with torch.no_grad():
        parts = [torch.sigmoid(net(torch.from_numpy(batch[i : i + CHUNK]))) for i in range(0, len(batch), CHUNK)]
    return torch.cat(parts).double().numpy()


def onnx_scores(model: EdgeModel, batch: np.ndarray, *, network_only: bool = False) -> np.ndarray:
    """P(defective) from onnxruntime, in chunks of ``CHUNK`` images; ``network_only``: without the runtime's
    second look (what the torch network alone gives, for parity)."""
    score = model.network_scores if network_only else model.scores
    return np.concatenate([score(batch[i : i + CHUNK]) for i in range(0, len(batch), CHUNK)])


def check_dynamic_batch(model: EdgeModel, batch: np.ndarray, *, tol: float) -> float:
    """Scores of 7 images in one batch and one by one must agree: the batch axis really is dynamic."""
    sample = batch[:7]
    together = model.network_scores(sample)
    alone = np.array([model.network_scores(sample[i : i + 1])[0] for i in range(len(sample))])
    diff = float(np.abs(together - alone).max())
    if together.shape != (len(sample),) or diff > tol:
        raise ModelError(
            f"{model.path.name}: batch of {len(sample)} differs from one-by-one by {diff:.2g} (> {tol}); report this"
        )
    return diff


def accuracy_on(labels: np.ndarray, scores: np.ndarray, threshold: float, keep: np.ndarray | None) -> dict[str, Any]:
    """Binary metrics at the model's threshold, on all images or on those where ``keep`` is True."""
    if keep is not None:
        labels, scores = labels[keep], scores[keep]
    return binary_metrics(labels, scores, threshold)


def latency_ms(model: EdgeModel, batch: np.ndarray, *, runs: int) -> float:
    """Median batch-1 inference time after a warm-up (inference only, preprocessing excluded)."""
    one = np.ascontiguousarray(batch[:1])
    for _ in range(max(5, runs // 10)):
        model.network_scores(one)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model.network_scores(one)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000.0)


def measure(
    model: EdgeModel,
    *,
    parity_batch: np.ndarray,
    torch_ref: np.ndarray,
    evals: LabelledImages | None,
    eval_batch: np.ndarray | None,
    latency_runs: int,
    eval_parts: list | None = None,
) -> Measured:
    """Every figure of one summary row for one ONNX file; the accuracy scored as the runtime scores (with the
    second look, and the symmetry look where ``eval_parts`` holds each image's part square)."""
    diff = float(np.abs(onnx_scores(model, parity_batch, network_only=True) - torch_ref).max())
    row = Measured(
        precision=model.info.precision,
        size_bytes=Path(model.path).stat().st_size,
        max_diff=diff,
        n_parity=len(parity_batch),
        quantize_nodes=count_ops(model.path, "QuantizeLinear"),
        latency_ms=latency_ms(model, parity_batch, runs=latency_runs),
    )
    if evals is not None and eval_batch is not None:
        scores, _ = model.symmetry_look(onnx_scores(model, eval_batch), eval_parts)
        row.official = accuracy_on(evals.labels, scores, model.info.threshold, None)
        if evals.leaked is not None:
            row.leakage_free = accuracy_on(evals.labels, scores, model.info.threshold, ~evals.leaked)
    return row
