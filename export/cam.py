"""The localisation map inside the graph: a class-activation map (CAM) as a second output, ``defect_map``.

DefectNet ends in global average pooling and one linear layer, so its logit is the spatial mean of a per-cell
logit map: ``logit = mean_ij(sum_c w_c f_c[i, j]) + b = mean_ij(cam[i, j])`` with
``cam[i, j] = sum_c w_c f_c[i, j] + b``. The graph computes ``cam`` with a 1x1 convolution carrying the head's
weights (about 10k multiply-adds at 160 px) and outputs it as it is, float32 (N, 1, h, w): each cell's
contribution to the logit, in logit units (positive: evidence for "defective"), and ``sigmoid(mean(cam))`` is
``p_defective``. No sigmoid per cell: the cells of a defective part reach +100 logits, where float32 sigmoids
are all exactly 1.0 and the hottest cell could no longer be told apart. The runtime
(``edge_runtime/heatmap.py``) thresholds it relative to its own median and peak.

>>> supports_map(build_model("defectnet")), supports_map(build_model("seed"))  # doctest: +SKIP
(True, False)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edge_runtime.errors import GateError, ModelError

# max |map_torch - map_onnx| for FP32 relative to the map's largest |cell| (cells reach +-100 logits, so float32
# sums of 96 products differ in their fifth digit)
MAP_PARITY_TOLERANCE = 1e-4


def supports_map(net: nn.Module) -> bool:
    """Whether ``net`` has the GAP head a CAM needs: ``features`` -> ``pool`` (global average) -> ``head`` (C->1)."""
    head, pool = getattr(net, "head", None), getattr(net, "pool", None)
    return (
        isinstance(getattr(net, "features", None), nn.Module)
        and isinstance(head, nn.Linear)
        and head.out_features == 1
        and isinstance(pool, nn.AdaptiveAvgPool2d)
        and pool.output_size in (1, (1, 1))
    )


class ProbabilityAndMap(nn.Module):
    """``net`` split at its GAP head: returns P(defective) (N,) and the CAM (N, 1, h, w) in logit units."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        if not supports_map(net):
            raise ModelError(
                f"{type(net).__name__} has no global-average-pool head, so it has no localisation map; "
                "export it with --no-map"
            )
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.net.features(x)
        head: nn.Linear = self.net.head
        logit = head(self.net.pool(f).flatten(1)).squeeze(1)  # dropout is the identity in eval mode
        cam = F.conv2d(f, head.weight[:, :, None, None], head.bias)
        return torch.sigmoid(logit), cam


def torch_maps(net: nn.Module, batch: np.ndarray, *, chunk: int = 64) -> np.ndarray:
    """The reference maps from torch (eval mode), float64, (N, 1, h, w)."""
    wrapper = ProbabilityAndMap(net).eval()
    with torch.no_grad():
        parts = [wrapper(torch.from_numpy(batch[i : i + chunk]))[1] for i in range(0, len(batch), chunk)]
    return torch.cat(parts).double().numpy()


def check_map_parity(onnx_maps: np.ndarray, ref: np.ndarray, *, force: bool, log) -> float:  # noqa: ANN001
    """The FP32 map must match torch's to ``MAP_PARITY_TOLERANCE`` of its scale (shape included); returns the
    max difference relative to that scale."""
    if onnx_maps.shape != ref.shape:
        raise ModelError(f"defect_map has shape {onnx_maps.shape}, torch gives {ref.shape}; report this")
    diff = float(np.abs(onnx_maps - ref).max()) / max(1.0, float(np.abs(ref).max()))
    if diff > MAP_PARITY_TOLERANCE:
        msg = f"fp32 defect_map differs from torch by {diff:.2e} of its scale (limit {MAP_PARITY_TOLERANCE})"
        if not force:
            raise GateError(f"{msg}; report this, or pass --force to write it anyway")
        log(f"warning: {msg}; written anyway because of --force")
    return diff


def wants_map(net: nn.Module, asked: bool | None, *, arch: str, log) -> bool:  # noqa: ANN001
    """Whether to export the map: ``--map`` (True) needs a GAP head; ``--no-map`` (False) never; None (the
    default) when the architecture has one, saying so when it has not."""
    if asked is False:
        return False
    if supports_map(net):
        return True
    if asked:
        raise ModelError(f"arch {arch} has no global-average-pool head, so no localisation map; use --no-map")
    log(f"localisation map: not available for arch {arch} (no global-average-pool head); exporting P(defective) only")
    return False


def outputs_for(*, with_map: bool) -> tuple[str, ...]:
    """The graph's output names, as recorded in the metadata's ``outputs``."""
    from edge_runtime.model_info import MAP_OUTPUT_NAME, OUTPUT_NAME

    return (OUTPUT_NAME, MAP_OUTPUT_NAME) if with_map else (OUTPUT_NAME,)


def onnx_maps(model, batch: np.ndarray, *, chunk: int = 64) -> np.ndarray:  # noqa: ANN001 - an EdgeModel
    """``defect_map`` from onnxruntime for a preprocessed batch, float64, in chunks."""
    from edge_runtime.model_info import INPUT_NAME, MAP_OUTPUT_NAME

    run = model.session.run
    parts = [
        run([MAP_OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch[i : i + chunk])})[0]
        for i in range(0, len(batch), chunk)
    ]
    return np.concatenate(parts).astype(np.float64)
