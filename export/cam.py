"""The localisation map inside the graph: ``defect_map`` (N, 1, h, w).

A checkpoint with a trained localisation head (``train/loc_head.py``, what ``train-model`` writes by default)
exports that head's logit map (:class:`ProbabilityAndLearnedMap`). Without one, the map is a fixed-weight
Grad-CAM, as follows.

Which layer. The last feature map (10 x 10 at 160 px, 30 source pixels a cell, each cell seeing most of the
part) gives a class-activation map (CAM) that does not point at the defects: on the hand-marked benchmark
(``benchmarks/localisation.py``) its hottest point was no better than chance. The map is therefore taken one
stage earlier, at the last layer with twice the final resolution (``features[5]`` of DefectNet: 20 x 20, 48
channels, 15 source pixels a cell), where small defects still have cells of their own.

How. Grad-CAM weights each channel of that layer by the mean gradient of the logit with respect to it. Those
gradients depend on the image only through the later ReLUs, so the exporter averages them once, over the
calibration images (the training images recorded in the checkpoint, or ``--calib-data``), and bakes them into
a 1x1 convolution: ``map[i, j] = sum_c alpha_c * f_c[i, j]`` with ``alpha_c = h * w * mean(d logit / d f_c)``.
That costs about 20k multiply-adds, needs no backward pass on the device, and is a deterministic statistic of
the trained network (like the INT8 calibration), not a new model. Units: the first-order estimate of each
cell's contribution to the logit, scaled so that a cell's value is comparable with the image's logit;
larger is more defect-like, 0 or below is no evidence for a defect. The runtime (``edge_runtime/heatmap.py``)
thresholds it relative to its own median and peak.

>>> supports_map(build_model("defectnet")), supports_map(build_model("seed"))  # doctest: +SKIP
(True, False)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edge_runtime.errors import DataError, GateError, ModelError
from train.loc_head import HeadRecord

# max |map_torch - map_onnx| for FP32, relative to the map's largest |cell| (cells reach a few hundred, so
# float32 sums of 48 products differ in their fifth digit)
MAP_PARITY_TOLERANCE = 1e-4
Log = Callable[[str], None]


def supports_map(net: nn.Module) -> bool:
    """Whether ``net`` has what the map needs: ``features`` (a Sequential) -> ``pool`` (global average) ->
    ``head`` (C -> 1)."""
    head, pool = getattr(net, "head", None), getattr(net, "pool", None)
    return (
        isinstance(getattr(net, "features", None), nn.Sequential)
        and isinstance(head, nn.Linear)
        and head.out_features == 1
        and isinstance(pool, nn.AdaptiveAvgPool2d)
        and pool.output_size in (1, (1, 1))
    )


def _require_map(net: nn.Module) -> None:
    if not supports_map(net):
        raise ModelError(
            f"{type(net).__name__} has no global-average-pool head, so it has no localisation map; "
            "export it with --no-map"
        )


def map_layer(net: nn.Module, *, channels: int, size: int) -> int:
    """Index in ``net.features`` of the last module whose output has twice the final resolution.

    >>> map_layer(build_model("defectnet"), channels=1, size=160)  # doctest: +SKIP
    5
    """
    _require_map(net)
    x = torch.zeros(1, channels, size, size)
    sides = []
    with torch.no_grad():
        for module in net.features:
            x = module(x)
            sides.append(x.shape[-1] if x.dim() == 4 else -1)
    found = [i for i, s in enumerate(sides) if s == 2 * sides[-1]]
    if not found:
        raise ModelError(f"no layer of {type(net).__name__} has twice the final resolution; export with --no-map")
    return found[-1]


@dataclass(frozen=True)
class MapHead:
    """Where the map is read (``features[layer]``) and its per-channel weights."""

    layer: int
    weights: torch.Tensor  # (C,)
    images: int  # how many images the weights were averaged over

    def describe(self) -> str:
        return (
            f"fixed-weight Grad-CAM at features[{self.layer}] ({self.weights.numel()} channels), weights averaged "
            f"over {self.images} calibration images"
        )


def gradient_weights(net: nn.Module, layer: int, batch: np.ndarray, *, chunk: int = 64) -> torch.Tensor:
    """``alpha_c = h * w * mean(d logit / d f_c)`` over the images of ``batch`` (preprocessed, float32 NCHW)."""
    net.eval()
    head, tail = net.features[: layer + 1], net.features[layer + 1 :]
    total, count = None, 0
    for i in range(0, len(batch), chunk):
        with torch.no_grad():
            f = head(torch.from_numpy(np.ascontiguousarray(batch[i : i + chunk])))
        f.requires_grad_(True)
        logit = net.head(net.pool(tail(f)).flatten(1)).sum()
        (g,) = torch.autograd.grad(logit, f)
        part = g.sum(dim=(0, 2, 3))  # h * w * (mean over positions), summed over the images
        total, count = (part if total is None else total + part), count + len(f)
    return (total / count).detach()


def build_map_head(net: nn.Module, batch: np.ndarray, *, channels: int, size: int) -> MapHead:
    """The map's layer and weights from preprocessed calibration images (at least one)."""
    if len(batch) == 0:
        raise DataError("no calibration images for the localisation map's weights; pass --calib-data DIR or --no-map")
    layer = map_layer(net, channels=channels, size=size)
    return MapHead(layer=layer, weights=gradient_weights(net, layer, batch), images=len(batch))


class ProbabilityAndMap(nn.Module):
    """``net`` read at ``features[layer]`` too: returns P(defective) (N,) and the map (N, 1, h, w)."""

    def __init__(self, net: nn.Module, map_head: MapHead) -> None:
        super().__init__()
        _require_map(net)
        self.net, self.layer = net, map_head.layer
        self.register_buffer("weights", map_head.weights.detach().clone().float().view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.net.features[: self.layer + 1](x)
        last = self.net.features[self.layer + 1 :](f)
        logit = self.net.head(self.net.pool(last).flatten(1)).squeeze(1)  # dropout is the identity in eval mode
        return torch.sigmoid(logit), F.conv2d(f, self.weights)


class ProbabilityAndLearnedMap(nn.Module):
    """``net`` plus its trained localisation head (``train/loc_head.py``): P(defective) (N,) and the head's logit
    map (N, 1, S/4, S/4), from one pass through ``net``."""

    def __init__(self, net: nn.Module, record: HeadRecord) -> None:
        super().__init__()
        self.net, self.layers, self.head = net, record.layers, record.module()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from train.loc_head import features_and_logit

        feats, logit = features_and_logit(self.net, self.layers, x)
        return torch.sigmoid(logit), self.head(*feats)


def map_wrapper(net: nn.Module, map_head: MapHead | HeadRecord) -> nn.Module:
    """The module whose second output is the graph's ``defect_map``, in eval mode."""
    if isinstance(map_head, MapHead):
        return ProbabilityAndMap(net, map_head).eval()
    return ProbabilityAndLearnedMap(net, map_head).eval()


def torch_maps(wrapper: nn.Module, batch: np.ndarray, *, chunk: int = 64) -> np.ndarray:
    """The reference maps from torch (eval mode), float64, (N, 1, h, w)."""
    wrapper.eval()
    with torch.no_grad():
        parts = [wrapper(torch.from_numpy(batch[i : i + chunk]))[1] for i in range(0, len(batch), chunk)]
    return torch.cat(parts).double().numpy()


def check_map_parity(onnx_maps: np.ndarray, ref: np.ndarray, *, force: bool, log: Log) -> float:
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


def wants_map(net: nn.Module, asked: bool | None, *, arch: str, log: Log) -> bool:
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


def map_head_for(net: nn.Module, ckpt, cfg, spec, log: Log) -> MapHead | HeadRecord:  # noqa: ANN001 - Checkpoint, ExportConfig, PreprocessSpec
    """The checkpoint's trained localisation head when it has one; else the Grad-CAM weights from the calibration
    images (``--calib-data``, else the checkpoint's training images), decoded and preprocessed as on the device."""
    if ckpt.loc_head:
        record = HeadRecord.from_dict(ckpt.loc_head)
        log(f"localisation map: {record.describe()}")
        return record
    from edge_runtime.preprocess import preprocess
    from export import images

    _, decoded = images.calibration_images(ckpt, cfg.calib_data, count=cfg.calib_count, seed=cfg.seed, log=log)
    head = build_map_head(
        net, preprocess(decoded, spec) if decoded else np.zeros((0,)), channels=spec.channels, size=spec.size
    )
    log(f"localisation map: {head.describe()}")
    return head
