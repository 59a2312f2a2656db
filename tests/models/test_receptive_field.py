"""Receptive fields from bookkeeping equal those found by a brute-force gradient probe."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fcdd.models import NETS, build_net
from fcdd.models.base import ReceptiveField


def probe(net, size: int, index: int) -> tuple[int, float]:
    """Extent and centre (in input pixels, along x) of output pixel (index, index)'s input gradient.

    Max pools route the gradient to one input only, so they are swapped for average pools with
    the same window; positive weights and identity activations / normalisations keep
    contributions from cancelling or being cut off (ReLU6 would zero paths).
    """
    net = net.eval()
    for module in list(net.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.MaxPool2d):
                setattr(module, child_name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
            if isinstance(child, (nn.LeakyReLU, nn.ReLU, nn.ReLU6, nn.BatchNorm2d)):
                setattr(module, child_name, nn.Identity())
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(0.01)
    net.input_mean.zero_()
    net.input_std.fill_(1.0)
    x = torch.rand(1, net.in_channels, size, size, dtype=torch.float64, requires_grad=True)
    out = net.double()(x)
    out[0, 0, index, index].backward()
    cols = (x.grad[0].abs().sum(0).sum(0) > 0).nonzero().squeeze(1)
    lo, hi = int(cols.min()), int(cols.max())
    return hi - lo + 1, (lo + hi) / 2


def probe_size(name: str) -> int:
    """An input large enough that the middle unit's whole field lies inside it."""
    field = build_net(name, 3, 64, width=0.25, pretrained="none").receptive_field
    return 32 * math.ceil((field.size + 4 * field.jump) / 32)


@pytest.mark.parametrize("name", NETS.names())
def test_receptive_field_matches_gradient_probe(name):
    """Every registered net (random init; the weights do not change the field)."""
    size = probe_size(name)
    net = build_net(name, 3, size, width=0.25, pretrained="none")
    field = net.receptive_field
    index = net.output_size() // 2
    # an interior unit whose field lies inside the image
    assert field.centre(index) - field.size / 2 >= 0 and field.centre(index) + field.size / 2 <= size
    extent, centre = probe(net, size, index)
    assert extent == field.size
    assert centre == pytest.approx(field.centre(index), abs=net.centre_tolerance or 1e-6)


def test_receptive_field_arithmetic():
    field = ReceptiveField().after(3, 1, 1).after(2, 2, 0).after(3, 1, 1)
    assert (field.size, field.jump, field.start) == (8, 2, 0.5)


def test_multi_scale_field_matches_gradient_probe_within_a_quarter_coarse_step():
    # the twofold bilinear upsampling of the stride-16 branch makes the centre alternate
    # between even and odd units; the extent is exact
    net = build_net("efficientnet_lite0_ms", 3, 480, pretrained="none")
    field = net.receptive_field
    middle = net.output_size() // 2
    for index in (middle, middle + 1):
        assert field.centre(index) - field.size / 2 >= 0 and field.centre(index) + field.size / 2 <= 480
        extent, centre = probe(build_net("efficientnet_lite0_ms", 3, 480, pretrained="none"), 480, index)
        assert extent == field.size
        assert abs(centre - field.centre(index)) <= 16 / 4
    assert net.heatmap_std == net.fine_field().size / 4 < field.size / 4
