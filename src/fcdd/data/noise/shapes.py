"""Rotated shapes on the pixel grid, shared by the synthetic anomaly sources."""

from __future__ import annotations

import torch


def rotated_offsets(size: tuple[int, int], centre_y: torch.Tensor, centre_x: torch.Tensor, angle: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pixel centre's offset from K centres per image, along and across each shape's axis.

    Inputs are (B, K); outputs (B, K, H, W). ``angle`` turns the shape's long axis away from x.
    """
    h, w = size
    b, k = centre_y.shape
    dev = centre_y.device
    ys = torch.arange(h, dtype=torch.float32, device=dev).view(1, 1, h, 1) + 0.5
    xs = torch.arange(w, dtype=torch.float32, device=dev).view(1, 1, 1, w) + 0.5
    dy = ys - centre_y.view(b, k, 1, 1)
    dx = xs - centre_x.view(b, k, 1, 1)
    cos, sin = angle.cos().view(b, k, 1, 1), angle.sin().view(b, k, 1, 1)
    return dx * cos + dy * sin, dy * cos - dx * sin


def rotated_rectangles(
    size: tuple[int, int],
    centre_y: torch.Tensor,
    centre_x: torch.Tensor,
    half_long: torch.Tensor,
    half_short: torch.Tensor,
    angle: torch.Tensor,
    active: torch.Tensor | None = None,
) -> torch.Tensor:
    """Masks (B, 1, H, W) of the union over K rotated rectangles per image (inputs B, K).

    ``active`` (B, K, bool) says which of the K rectangles exist; default all.
    """
    b, k = centre_y.shape
    along, across = rotated_offsets(size, centre_y, centre_x, angle)
    inside = (along.abs() <= half_long.view(b, k, 1, 1)) & (across.abs() <= half_short.view(b, k, 1, 1))
    if active is not None:
        inside &= active.view(b, k, 1, 1)
    return inside.any(dim=1, keepdim=True).float()


def random_patch(shape: torch.Size, generator: torch.Generator, device) -> torch.Tensor:
    """Masks (B, 1, H, W) of one random rectangle each, a quarter to a half of each side."""
    b, _, h, w = shape
    ph = (0.25 + 0.25 * torch.rand(b, generator=generator)) * h
    pw = (0.25 + 0.25 * torch.rand(b, generator=generator)) * w
    top = torch.rand(b, generator=generator) * (h - ph)
    left = torch.rand(b, generator=generator) * (w - pw)
    ys = torch.arange(h).view(1, h, 1)
    xs = torch.arange(w).view(1, 1, w)
    inside = (ys >= top.view(b, 1, 1)) & (ys < (top + ph).view(b, 1, 1)) & (xs >= left.view(b, 1, 1)) & (xs < (left + pw).view(b, 1, 1))
    return inside[:, None].float().to(device)
