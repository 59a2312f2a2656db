"""Confetti noise (FCDD paper): coloured blobs of random size, shape and colour on the image."""

from __future__ import annotations

import torch

from fcdd.data.noise.base import NOISE, NoiseSource
from fcdd.data.noise.shapes import rotated_offsets


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

    content = nominal.clone()
    where = torch.zeros(b, 1, h, w, device=dev)
    for j in range(k):  # later blobs are painted over earlier ones
        along, across = rotated_offsets((h, w), cy[:, j : j + 1], cx[:, j : j + 1], angle[:, j : j + 1])
        u = along / half_a[:, j].view(b, 1, 1, 1)
        v = across / half_b[:, j].view(b, 1, 1, 1)
        inside = torch.where(ellipse[:, j].view(b, 1, 1, 1), u * u + v * v <= 1, torch.maximum(u.abs(), v.abs()) <= 1)
        inside = inside & active[:, j].view(b, 1, 1, 1)
        content = torch.where(inside, colour[:, j].view(b, c, 1, 1), content)
        where = torch.where(inside, 1.0, where)
    return content, where


@NOISE.register("confetti")
class Confetti(NoiseSource):
    def __call__(self, nominal, generator):
        return confetti(nominal, generator)
