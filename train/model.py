"""The networks: our compact DefectNet and the origin notebook's network ("seed") for comparison.

Both output one logit per image (defective vs OK). A checkpoint stores ``arch`` and ``model_args`` so that
:func:`build_model` rebuilds the network from the checkpoint alone.
"""

from __future__ import annotations

from edge_runtime.errors import require_extra

require_extra("torch", "train")  # one clear line instead of "No module named torch"

from typing import Any

import torch
from torch import nn

from train.config import Arch


class InputStandardize(nn.Module):
    """Per-image zero-mean, unit-variance: a relit or differently exposed camera gives the same input.

    With ``mask_radius`` (a fraction of half the input side) the statistics come from the disc where the
    part-centred crop puts the part, and everything outside it becomes 0: the background's brightness and
    whatever lies beyond the frame border no longer reach the features.
    """

    def __init__(self, eps: float = 1e-6, *, mask_radius: float | None = None, size: int = 160) -> None:
        super().__init__()
        self.eps = eps
        self.mask_radius = mask_radius
        if mask_radius is not None:
            coords = (torch.arange(size, dtype=torch.float32) + 0.5) / (size / 2) - 1.0
            disc = (coords.view(-1, 1) ** 2 + coords.view(1, -1) ** 2) <= mask_radius**2
            self.register_buffer("mask", disc.float().view(1, 1, size, size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mask_radius is None:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            centred = x - mean
            var = (centred * centred).mean(dim=(1, 2, 3), keepdim=True)
            return centred / torch.sqrt(var + self.eps)
        m = self.mask
        count = m.sum() * x.shape[1]
        mean = (x * m).sum(dim=(1, 2, 3), keepdim=True) / count
        centred = (x - mean) * m
        var = (centred * centred).sum(dim=(1, 2, 3), keepdim=True) / count
        return centred / torch.sqrt(var + self.eps)


def conv_bn_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class DefectNet(nn.Module):
    """Compact grayscale CNN: a stride-2 stem, stages of (stride-2 conv, conv), global average pool, linear.

    The global-average-pool head keeps class activation maps possible: ``features`` gives the last
    feature map and ``head`` its per-channel weights.

    >>> DefectNet()(torch.zeros(2, 1, 160, 160)).shape
    torch.Size([2])
    """

    def __init__(
        self,
        in_channels: int = 1,
        widths: tuple[int, ...] = (16, 24, 48, 96),
        dropout: float = 0.2,
        mask_radius: float | None = None,
        size: int = 160,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        stem = InputStandardize(mask_radius=mask_radius, size=size)
        layers: list[nn.Module] = [stem, conv_bn_relu(in_channels, widths[0], 2)]
        c = widths[0]
        for w in widths[1:]:
            layers += [conv_bn_relu(c, w, 2), conv_bn_relu(w, w, 1)]
            c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.pool(self.features(x)).flatten(1)
        return self.head(self.dropout(f)).squeeze(1)


class SeedNet(nn.Module):
    """The origin notebook's network: 3x224x224 input, five 3x3 conv + 2x2 max-pool blocks, two linears.

    About 1.85 GFLOP and 5.2 M parameters. The notebook ends in a sigmoid; we return the logit and apply the
    sigmoid where probabilities are needed, as for DefectNet.
    """

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        chans = [(in_channels, 64, 2), (64, 64, 1), (64, 128, 1), (128, 128, 1), (128, 64, 1)]
        layers: list[nn.Module] = []
        for c_in, c_out, pad in chans:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=pad), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(3136, 1568), nn.Linear(1568, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x)).squeeze(1)


# Per architecture: class, default input size, input channels.
ARCHS: dict[Arch, tuple[type[nn.Module], int, int]] = {
    # 160 px keeps the casting's 2-3 px pinholes visible (at 128 px they blur into one pixel); the thinner
    # widths pay for the larger input: 79 MFLOP, 1/23 of the origin network.
    Arch.DEFECTNET: (DefectNet, 160, 1),
    Arch.SEED: (SeedNet, 224, 3),
}


def default_model_args(arch: Arch, size: int | None = None) -> dict[str, Any]:
    """Every constructor argument, spelled out, so a checkpoint does not depend on today's defaults."""
    _, default_size, channels = ARCHS[arch]
    if arch is Arch.DEFECTNET:
        # The part-centred crop puts the flange edge at about 0.85 of half the side (2.0 / 2.4 core radii);
        # the disc keeps a margin of background around it so that defects on the very rim stay in view.
        return {
            "in_channels": channels,
            "widths": [16, 24, 48, 96],
            "dropout": 0.2,
            "mask_radius": 0.96,
            "size": size or default_size,
        }
    return {"in_channels": channels}


def build_model(arch: Arch | str, model_args: dict[str, Any] | None = None) -> nn.Module:
    """Build a network from its architecture name and constructor arguments (as stored in a checkpoint).

    >>> build_model("seed").__class__.__name__
    'SeedNet'
    """
    arch = Arch(arch)
    cls, _, _ = ARCHS[arch]
    args = dict(default_model_args(arch) if model_args is None else model_args)
    if "widths" in args:
        args["widths"] = tuple(args["widths"])
    return cls(**args)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Forward FLOPs (2 x multiply-accumulates) of conv and linear layers for one image."""
    macs = 0

    def conv_hook(m: nn.Conv2d, _inp: Any, out: torch.Tensor) -> None:
        nonlocal macs
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        macs += out.shape[1] * out.shape[2] * out.shape[3] * k

    def linear_hook(m: nn.Linear, _inp: Any, _out: torch.Tensor) -> None:
        nonlocal macs
        macs += m.in_features * m.out_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return 2 * macs
