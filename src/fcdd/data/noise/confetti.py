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

    ys = torch.arange(h, device=dev, dtype=torch.float32).view(1, 1, h, 1) + 0.5
    xs = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, 1, w) + 0.5
    dy, dx = ys - cy[..., None, None], xs - cx[..., None, None]
    cos, sin = angle.cos()[..., None, None], angle.sin()[..., None, None]
    u = (dx * cos + dy * sin) / half_a[..., None, None]
    v = (-dx * sin + dy * cos) / half_b[..., None, None]
    inside = torch.where(ellipse[..., None, None], u * u + v * v <= 1, (u.abs() <= 1) & (v.abs() <= 1))
    inside = inside & active[..., None, None]  # (b, k, h, w)

    # later blobs lie on top of earlier ones
    order = torch.arange(1, k + 1, device=dev).view(1, k, 1, 1)
    top = (inside * order).argmax(dim=1)  # (b, h, w)
    where = inside.any(dim=1, keepdim=True).float()
    picked = torch.gather(colour, 1, top.view(b, -1, 1).expand(-1, -1, c))  # (b, h*w, c)
    content = picked.permute(0, 2, 1).reshape(b, c, h, w)
    content = torch.where(where.bool(), content, nominal)
    return content, where


@NOISE.register("confetti")
class Confetti(NoiseSource):
    def __call__(self, nominal, generator):
        return confetti(nominal, generator)
