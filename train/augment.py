"""Seeded batch augmentation with torch ops (no torchvision): what a second camera station would change.

Geometry: any rotation (the part is round and seen from the top), flips, zoom and shift.
Photometry: brightness, contrast and gamma (the origin notebook's colour jitter), and a little sensor noise.
All random draws come from the generator passed in, so a seed fixes every augmented batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    rotation_deg: float = 180.0
    flip: bool = True
    scale: tuple[float, float] = (0.8, 1.2)
    translate: float = 0.08  # fraction of the image size
    brightness: float = 0.25  # additive, in [0, 1] pixel units
    contrast: tuple[float, float] = (0.6, 1.4)
    gamma: tuple[float, float] = (0.7, 1.4)
    noise_std: float = 0.02


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) * (hi - lo) + lo


def random_affine(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Rotate, flip, zoom and shift every image of a (N, C, H, W) batch by its own random amount."""
    n = x.shape[0]
    angle = _uniform(n, -cfg.rotation_deg, cfg.rotation_deg, gen) * (math.pi / 180.0)
    # Log-uniform zoom so that zooming in and out are equally likely.
    zoom = torch.exp(_uniform(n, math.log(cfg.scale[0]), math.log(cfg.scale[1]), gen))
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if cfg.flip else torch.ones(n)
    shift = _uniform(2 * n, -cfg.translate, cfg.translate, gen).view(n, 2) * 2.0
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Fill what the camera would not have seen with the plain background level (the mean of the image's
    # outer ring) rather than mirrored copies of the part, which no real camera produces.
    ring = torch.cat(
        [x[:, :, :2].flatten(1), x[:, :, -2:].flatten(1), x[..., :2].flatten(1), x[..., -2:].flatten(1)], 1
    )
    fill = ring.mean(dim=1).view(n, 1, 1, 1)
    moved = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return moved + fill


def random_photometric(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, gamma and noise on images scaled to [0, 1]."""
    n = x.shape[0]
    shape = (n, 1, 1, 1)
    gamma = torch.exp(_uniform(n, math.log(cfg.gamma[0]), math.log(cfg.gamma[1]), gen)).view(shape)
    x = x.clamp(0.0, 1.0) ** gamma
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = _uniform(n, *cfg.contrast, gen).view(shape)
    brightness = _uniform(n, -cfg.brightness, cfg.brightness, gen).view(shape)
    x = (x - mean) * contrast + mean + brightness
    if cfg.noise_std > 0:
        x = x + torch.randn(x.shape, generator=gen) * cfg.noise_std
    return x.clamp(0.0, 1.0)


def augment(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Augment a batch of images in [0, 1]; the result stays in [0, 1].

    >>> g = torch.Generator().manual_seed(0)
    >>> augment(torch.rand(4, 1, 32, 32), AugmentConfig(), g).shape
    torch.Size([4, 1, 32, 32])
    """
    return random_photometric(random_affine(x, cfg, gen), cfg, gen)
