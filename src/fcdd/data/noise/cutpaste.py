"""CutPaste synthetic anomalies (Li et al., CVPR 2021): a piece of the image moved elsewhere.

Unlike confetti's flat colours, the pasted piece keeps the image's own texture, so the only cue
is a local break in structure: the kind of defect a surface inspection looks for. Two shapes:

- ``cutpaste``: one rectangle covering 2-15 % of the image, aspect ratio between 0.3 and 3.3;
- ``cutpaste_scar``: one to three long thin rotated strips (scratch or crack like).

The piece is the image translated by a random offset (so it comes from another place of the
same image), placed inside the shape, with a small random brightness/contrast change, as in the
paper's colour jitter.
"""

from __future__ import annotations

import math

import torch

from fcdd.data.noise.base import NOISE, NoiseSource
from fcdd.data.noise.shapes import rotated_rectangles
from fcdd.data.transforms import brightness_contrast


def _uniform(low: float, high: float, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(*shape, generator=generator)


def shifted_copy(images: torch.Tensor, generator: torch.Generator, min_shift: float = 0.15) -> torch.Tensor:
    """Each image translated (wrapping round) by a random offset of at least ``min_shift`` of a side."""
    b, _, h, w = images.shape
    out = torch.empty_like(images)
    for i in range(b):
        sign = torch.where(torch.rand(2, generator=generator) < 0.5, -1.0, 1.0)
        frac = _uniform(min_shift, 0.5, (2,), generator) * sign
        out[i] = images[i].roll((int(frac[0] * h), int(frac[1] * w)), dims=(-2, -1))
    return out


def cutpaste(images: torch.Tensor, generator: torch.Generator, area: tuple[float, float] = (0.02, 0.15), aspect: tuple[float, float] = (0.3, 3.3)) -> tuple[torch.Tensor, torch.Tensor]:
    """One axis-aligned rectangle per image, filled with a piece from elsewhere in the image."""
    b, _, h, w = images.shape
    shape = (b, 1)
    part = _uniform(*area, shape, generator)
    # aspect ratio drawn log-uniformly so tall and wide pieces are equally likely
    ratio = torch.exp(_uniform(math.log(aspect[0]), math.log(aspect[1]), shape, generator))
    ph = (part * h * w * ratio).sqrt().clamp(max=h)
    pw = (part * h * w / ratio).sqrt().clamp(max=w)
    cy = ph / 2 + torch.rand(shape, generator=generator) * (h - ph)
    cx = pw / 2 + torch.rand(shape, generator=generator) * (w - pw)
    where = rotated_rectangles((h, w), cy, cx, pw / 2, ph / 2, torch.zeros(shape)).to(images.device)
    return brightness_contrast(shifted_copy(images, generator), 0.1, generator), where


def cutpaste_scar(images: torch.Tensor, generator: torch.Generator, max_scars: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """One to ``max_scars`` thin strips per image, 1-6 % of the side wide and 10-40 % long, any angle."""
    b, _, h, w = images.shape
    side = min(h, w)
    shape = (b, max_scars)
    active = torch.arange(max_scars)[None] < torch.randint(1, max_scars + 1, (b, 1), generator=generator)
    half_long = _uniform(0.05, 0.2, shape, generator) * side
    half_short = (_uniform(0.005, 0.03, shape, generator) * side).clamp(min=0.5)
    cy = torch.rand(shape, generator=generator) * h
    cx = torch.rand(shape, generator=generator) * w
    angle = torch.rand(shape, generator=generator) * math.pi
    where = rotated_rectangles((h, w), cy, cx, half_long, half_short, angle, active).to(images.device)
    return brightness_contrast(shifted_copy(images, generator), 0.1, generator), where


@NOISE.register("cutpaste")
class CutPaste(NoiseSource):
    def __call__(self, nominal, generator):
        return cutpaste(nominal, generator)


@NOISE.register("cutpaste_scar")
class CutPasteScar(NoiseSource):
    def __call__(self, nominal, generator):
        return cutpaste_scar(nominal, generator)
