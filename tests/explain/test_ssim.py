"""SSIM: identity, a hand-computed constant case and a single-window case."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fcdd.explain.ssim import ssim, ssim_map


def test_identical_images_have_ssim_one():
    x = torch.rand(3, 3, 24, 24)
    assert torch.allclose(ssim(x, x), torch.ones(3), atol=1e-5)
    assert torch.allclose(ssim_map(x, x, padding="same"), torch.ones(3, 3, 24, 24), atol=1e-4)
    assert ssim(x, torch.rand(3, 3, 24, 24)).max() < 0.5


def test_constant_images_match_the_luminance_formula():
    a, b = 0.2, 0.7
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)  # variances and covariance are zero
    value = ssim(torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b))
    assert value.item() == pytest.approx(expected, rel=1e-4)


def test_single_window_matches_hand_computation():
    rng = np.random.default_rng(0)
    x = rng.random((5, 5))
    y = np.clip(x + rng.normal(0, 0.1, (5, 5)), 0, 1)
    coords = np.arange(5) - 2
    g = np.exp(-(coords**2) / (2 * 1.5**2))
    w = np.outer(g, g)
    w /= w.sum()
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * x * x).sum() - mx**2, (w * y * y).sum() - my**2
    cov = (w * x * y).sum() - mx * my
    c1, c2 = 0.01**2, 0.03**2
    expected = (2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    value = ssim(torch.tensor(x)[None, None].float(), torch.tensor(y)[None, None].float(), window=5)
    assert value.item() == pytest.approx(expected, rel=1e-3)
    assert not math.isclose(expected, 1.0, rel_tol=1e-3)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="equal shapes"):
        ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))
