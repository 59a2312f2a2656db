"""Batch-level preprocessing and online augmentation on tensors.

Preprocessing (as in the FCDD paper's per-size pipelines, simplified to one rule): every image is
resized once to ``image_size`` (bilinear; masks nearest) and scaled to [0, 1]. The network itself
normalises per channel (``FCDDNet.normalise``): ImageNet mean/std for pretrained backbones,
otherwise the mean/std of the nominal training images, estimated once per run and stored in the
snapshot. Training adds random flips, a random shift (reflection padding), brightness/contrast
jitter and optional pixel noise; evaluation uses the resized image only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) to float in [0, 1]."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


def channel_stats(images: torch.Tensor, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of a uint8 image set, in [0, 1] units, in bounded memory."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    count = 0
    for start in range(0, len(images), chunk):
        x = to_float(images[start : start + chunk]).double()
        total += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
        count += x.numel() // x.shape[1]
    mean = total / max(count, 1)
    std = (squares / max(count, 1) - mean**2).clamp_min(0).sqrt()
    return mean.float(), std.float()


@dataclass
class Augment:
    """Random geometric and photometric changes; geometric ones move the ground-truth maps too."""

    flip: str = "h"
    shift: float = 0.0625
    jitter: float = 0.1
    noise: float = 0.0

    @classmethod
    def from_config(cls, config) -> Augment:
        return cls(config.augment_flip, config.augment_shift, config.augment_jitter, config.augment_noise)

    def __call__(self, images: torch.Tensor, maps: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(images)
        if n == 0:
            return images, maps
        dev = images.device

        def rand(*shape):
            return torch.rand(*shape, generator=generator).to(dev)

        sx = torch.ones(n, device=dev)
        sy = torch.ones(n, device=dev)
        if "h" in self.flip:
            sx = torch.where(rand(n) < 0.5, -sx, sx)
        if "v" in self.flip:
            sy = torch.where(rand(n) < 0.5, -sy, sy)
        h, w = images.shape[-2:]
        # whole-pixel shifts keep images and maps exactly aligned (and images unblurred)
        tx = torch.round((rand(n) * 2 - 1) * self.shift * w) * 2 / w
        ty = torch.round((rand(n) * 2 - 1) * self.shift * h) * 2 / h
        if self.flip != "none" or self.shift > 0:
            theta = torch.zeros(n, 2, 3, device=dev)
            theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = sx, sy, tx, ty
            grid = F.affine_grid(theta, list(images.shape), align_corners=False)
            images = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
            maps = F.grid_sample(maps, grid, mode="nearest", padding_mode="reflection", align_corners=False)
        if self.jitter > 0:
            brightness = (rand(n, 1, 1, 1) * 2 - 1) * self.jitter
            contrast = 1 + (rand(n, 1, 1, 1) * 2 - 1) * self.jitter
            mean = images.mean(dim=(1, 2, 3), keepdim=True)
            images = (images - mean) * contrast + mean + brightness
        if self.noise > 0:
            images = images + torch.randn(images.shape, generator=generator).to(dev) * self.noise
        return images.clamp(0, 1), maps
