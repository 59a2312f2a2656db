from __future__ import annotations

import math

import pytest
import torch

from fcdd.config import Config
from fcdd.data.noise.cutpaste import cutpaste, cutpaste_scar, shifted_copy
from fcdd.data.noise.shapes import rotated_rectangles
from fcdd.data.supervision import build_supervision


def textured(n=8, c=1, s=64):
    """Images whose every pixel value says where it came from: (row * s + column) / s^2."""
    ramp = (torch.arange(s * s, dtype=torch.float32) / (s * s)).view(1, 1, s, s)
    return ramp.expand(n, c, s, s).clone()


def test_rotated_rectangle_area_and_orientation():
    s = 101
    centre = torch.tensor([[50.3]])  # off the pixel grid: no ties at the borders
    # a 60 x 10 strip at 0 and at 90 degrees: same area, long side along x then along y
    flat = rotated_rectangles((s, s), centre, centre, torch.tensor([[30.0]]), torch.tensor([[5.0]]), torch.tensor([[0.0]]))
    upright = rotated_rectangles((s, s), centre, centre, torch.tensor([[30.0]]), torch.tensor([[5.0]]), torch.tensor([[math.pi / 2]]))
    assert flat.sum().item() == 600
    assert abs(flat.sum().item() - upright.sum().item()) <= 2
    assert flat[0, 0].any(0).sum() > 55 and flat[0, 0].any(1).sum() < 15
    assert upright[0, 0].any(1).sum() > 55 and upright[0, 0].any(0).sum() < 15
    inactive = rotated_rectangles((s, s), centre, centre, torch.tensor([[30.0]]), torch.tensor([[5.0]]), torch.tensor([[0.0]]), torch.tensor([[False]]))
    assert inactive.sum() == 0


def test_shifted_copy_moves_content_by_at_least_the_minimum():
    images = textured(6)
    moved = shifted_copy(images, torch.Generator().manual_seed(0), min_shift=0.15)
    for before, after in zip(images, moved, strict=True):
        assert torch.equal(before.flatten().sort().values, after.flatten().sort().values)  # same pixels
        # where did the top-left pixel's value go? it moved by >= 15 % of a side along both axes
        row, col = (after[0] == before[0, 0, 0]).nonzero()[0].tolist()
        assert min(row, 64 - row) >= int(0.15 * 64) and min(col, 64 - col) >= int(0.15 * 64)


def test_cutpaste_pastes_one_rectangle_of_the_stated_area_from_elsewhere():
    images = textured(32)
    content, where = cutpaste(images, torch.Generator().manual_seed(3))
    area = where.flatten(1).mean(1)
    assert ((area > 0.015) & (area < 0.17)).all()
    for i in range(len(images)):
        rows, cols = where[i, 0].any(1).nonzero(), where[i, 0].any(0).nonzero()
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert box == where[i].sum()  # a single axis-aligned rectangle
        inside = where[i, 0] > 0
        # the piece is not what was there (texture from another place), but still image-like values
        assert (content[i, 0][inside] - images[i, 0][inside]).abs().mean() > 0.05
        assert content[i].min() >= 0 and content[i].max() <= 1


def test_scars_are_thin_and_long():
    images = textured(32, c=3)
    content, where = cutpaste_scar(images, torch.Generator().manual_seed(4))
    assert content.shape == images.shape and where.shape == (32, 1, 64, 64)
    area = where.flatten(1).mean(1)
    assert (area > 0).all() and (area < 0.1).all()
    # thin: eroding the mask by one pixel in each direction removes most of it
    eroded = -torch.nn.functional.max_pool2d(-where, 3, 1, 1)
    assert eroded.sum() < 0.5 * where.sum()


@pytest.mark.parametrize("noise", ["cutpaste", "cutpaste_scar"])
def test_malformed_normal_with_cutpaste_changes_only_the_marked_pixels(noise):
    images = torch.rand(8, 3, 32, 32)
    config = Config(supervise_mode="malformed_normal_gt", noise_mode=noise, image_size=32, anomaly_fraction=0.5)
    out = build_supervision(config, None)(images.clone(), torch.zeros(8, 1, 32, 32), torch.Generator().manual_seed(0))
    assert out.labels.tolist() == [1] * 4 + [0] * 4 and out.use_maps
    changed = (out.images != images).any(1, keepdim=True)
    assert not (changed & (out.maps == 0)).any()
    assert changed[:4].sum() > 0.5 * out.maps[:4].sum()
    assert torch.equal(out.images[4:], images[4:])
