"""Confetti noise (FCDD paper): coloured blobs of random size, shape and colour on the image."""

from __future__ import annotations

import torch

from fcdd.data.noise.base import NOISE, NoiseSource


def confetti(
    nominal: torch.Tensor,
    generator: torch.Generator,
    max_blobs: int = 6,
    min_side: float = 1 / 32,
    max_side: float = 1 / 6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blobs (rotated rectangles or ellipses) with a random flat colour each.

    Sides are fractions of the image side; every image gets between one and ``max_blobs``.
    """
    b, c, h, w = nominal.shape
    k = max_blobs
    dev = nominal.device

    def rand(*shape):
        return torch.rand(*shape, generator=generator).to(dev)

    active = torch.arange(k, device=dev)[None] < torch.randint(1, k + 1, (b, 1), generator=generator).to(dev)
    cy, cx = rand(b, k) * h, rand(b, k) * w
    side = min(h, w)
    half_a = (min_side + rand(b, k) * (max_side - min_side)) * side / 2 + 0.5
    half_b = (min_side + rand(b, k) * (max_side - min_side)) * side / 2 + 0.5
    angle = rand(b, k) * torch.pi
    ellipse = rand(b, k) < 0.5
    colour = rand(b, k, c)

    ys = torch.arange(h, device=dev, dtype=torch.float32).view(1, h, 1) + 0.5
    xs = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, w) + 0.5
    content = nominal.clone()
    where = torch.zeros(b, 1, h, w, device=dev)
    cos, sin = angle.cos(), angle.sin()
    for j in range(k):  # later blobs are painted over earlier ones
        dy = ys - cy[:, j].view(b, 1, 1)
        dx = xs - cx[:, j].view(b, 1, 1)
        cj, sj = cos[:, j].view(b, 1, 1), sin[:, j].view(b, 1, 1)
        u = (dx * cj + dy * sj) / half_a[:, j].view(b, 1, 1)
        v = (dy * cj - dx * sj) / half_b[:, j].view(b, 1, 1)
        inside = torch.where(ellipse[:, j].view(b, 1, 1), u * u + v * v <= 1, torch.maximum(u.abs(), v.abs()) <= 1)
        inside = (inside & active[:, j].view(b, 1, 1)).unsqueeze(1)
        content = torch.where(inside, colour[:, j].view(b, c, 1, 1), content)
        where = torch.where(inside, 1.0, where)
    return content, where


@NOISE.register("confetti")
class Confetti(NoiseSource):
    def __call__(self, nominal, generator):
        return confetti(nominal, generator)
