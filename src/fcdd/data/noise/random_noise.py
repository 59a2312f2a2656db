"""Whole-image random noise as outliers: Gaussian or uniform, smoothed at a random scale.

Pure per-pixel noise is too easy to tell apart; blurring it with a random kernel makes blotches
of several sizes, closer to what a camera could show.
"""

from __future__ import annotations

import torch

from fcdd.data.noise.base import NOISE, NoiseSource
from fcdd.data.transforms import blur


class _RandomNoise(NoiseSource):
    full_frame = True

    def sample(self, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, nominal, generator):
        noise = self.sample(nominal.shape, generator)
        smoothed = []
        for image in noise:
            sigma = float(torch.rand(1, generator=generator)) * nominal.shape[-1] / 32
            smoothed.append(blur(image[None], sigma)[0] if sigma >= 0.5 else image)
        noise = torch.stack(smoothed)
        # stretch back to the full range after smoothing
        lo = noise.amin(dim=(1, 2, 3), keepdim=True)
        hi = noise.amax(dim=(1, 2, 3), keepdim=True)
        content = ((noise - lo) / (hi - lo).clamp_min(1e-6)).to(nominal.device)
        return content, torch.ones(len(nominal), 1, *nominal.shape[-2:], device=nominal.device)


@NOISE.register("gaussian")
class GaussianNoise(_RandomNoise):
    def sample(self, shape, generator):
        return torch.randn(shape, generator=generator)


@NOISE.register("uniform")
class UniformNoise(_RandomNoise):
    def sample(self, shape, generator):
        return torch.rand(shape, generator=generator)
