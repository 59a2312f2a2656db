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
