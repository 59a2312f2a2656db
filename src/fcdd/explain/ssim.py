"""Structural similarity (Wang et al., 2004) with a Gaussian window.

SSIM compares local means, variances and the covariance of two images in a sliding Gaussian
window: ``((2 mu_x mu_y + C1)(2 s_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))`` with
``C1 = (0.01 L)^2`` and ``C2 = (0.03 L)^2`` for data range ``L``. As a loss (1 - SSIM) it lets a
reconstruction model be judged on structure rather than on per-pixel intensity alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fcdd.explain.upsample import gaussian_kernel

K1, K2 = 0.01, 0.03


def ssim_map(
    x: torch.Tensor, y: torch.Tensor, window: int = 11, std: float = 1.5, data_range: float = 1.0, padding: str = "valid"
) -> torch.Tensor:
    """Per-pixel SSIM (B, C, H', W') of two (B, C, H, W) batches.

    ``padding='valid'`` (the reference definition) evaluates only windows inside the image;
    'same' pads by reflection to keep H x W (for heatmaps). The window shrinks to the image side
    when the image is smaller than it.
    """
    if x.shape != y.shape:
        raise ValueError(f"SSIM needs equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    window = min(window, x.shape[-1], x.shape[-2])
    channels = x.shape[1]
    kernel = gaussian_kernel(window, std).to(x)[None, None].expand(channels, 1, window, window)
    if padding == "same":
        lo, hi = (window - 1) // 2, window // 2
        x = F.pad(x, (lo, hi, lo, hi), mode="reflect")
        y = F.pad(y, (lo, hi, lo, hi), mode="reflect")
    elif padding != "valid":
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")

    def local_mean(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, groups=channels)

    mu_x, mu_y = local_mean(x), local_mean(y)
    # (co)variances from images centred on their global means: the same values, with less
    # float32 cancellation in E[x^2] - E[x]^2
    xc = x - x.mean(dim=(2, 3), keepdim=True)
    yc = y - y.mean(dim=(2, 3), keepdim=True)
    mu_xc, mu_yc = local_mean(xc), local_mean(yc)
    var_x = local_mean(xc * xc) - mu_xc**2
    var_y = local_mean(yc * yc) - mu_yc**2
    cov = local_mean(xc * yc) - mu_xc * mu_yc
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, std: float = 1.5, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM per sample (B,); 1 for identical images."""
    return ssim_map(x, y, window, std, data_range).flatten(1).mean(1)
