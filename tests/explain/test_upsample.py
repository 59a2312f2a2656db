from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fcdd.explain import BilinearUpsample, GaussianUpsample, blur, gaussian_kernel
from fcdd.models import build_net
from fcdd.models.base import ReceptiveField


@pytest.mark.parametrize("name,channels,size", [("cnn28", 1, 28), ("cnn32", 3, 32), ("vgg11", 3, 128)])
def test_single_activation_is_centred_on_its_receptive_field(name, channels, size):
    net = build_net(name, channels, size, width=0.25, pretrained="none")
    field = net.receptive_field
    out = net.output_size()
    for i, j in [(out // 2, out // 2), (out // 2 - 1, out // 2 + 1)]:
        maps = torch.zeros(1, 1, out, out)
        maps[0, 0, i, j] = 1.0
        heat = GaussianUpsample(field)(maps, size)[0, 0]
        assert heat.shape == (size, size)
        ys = torch.arange(size, dtype=torch.float64)
        mass = heat.double()
        cy = (mass.sum(1) * ys).sum() / mass.sum()
        cx = (mass.sum(0) * ys).sum() / mass.sum()
        assert cy.item() == pytest.approx(field.centre(i), abs=0.51)
        assert cx.item() == pytest.approx(field.centre(j), abs=0.51)
        # the bulk of the mass lies within the receptive field
        half = field.size / 2
        inside = heat[int(field.centre(i) - half) + 1 : int(field.centre(i) + half) + 1,
                      int(field.centre(j) - half) + 1 : int(field.centre(j) + half) + 1].sum()
        assert inside / heat.sum() > 0.95


def test_gaussian_kernel_normalised_and_symmetric():
    k = gaussian_kernel(9, 2.0)
    assert k.sum().item() == pytest.approx(1.0)
    assert torch.allclose(k, k.flip(0)) and torch.allclose(k, k.T)
    assert k.argmax().item() == 4 * 9 + 4


def test_separable_passes_equal_one_dense_transposed_convolution():
    field = ReceptiveField(size=37, jump=8, start=-3.0)
    up = GaussianUpsample(field)
    maps = torch.rand(3, 1, 6, 5)
    dense = F.conv_transpose2d(maps, gaussian_kernel(field.size, up.std)[None, None], stride=field.jump)
    shift = round(up.offset)
    expected = F.pad(dense, (8, 8, 8, 8))[..., shift + 8 : shift + 8 + 40, shift + 8 : shift + 8 + 48]
    assert torch.allclose(up(maps, (40, 48)), expected, atol=1e-7)


def test_snapshot_with_the_old_dense_kernel_still_loads():
    field = ReceptiveField(size=11, jump=4, start=1.5)
    up = GaussianUpsample(field)
    assert "kernel" not in up.state_dict()  # derived from the field, not stored
    up.load_state_dict({"kernel": gaussian_kernel(11, up.std)[None, None]})
    assert up.kernel.shape == (11,)


def test_bilinear_and_blur_keep_shape_and_constant():
    maps = torch.full((2, 1, 4, 4), 3.0)
    assert torch.allclose(BilinearUpsample()(maps, 16), torch.full((2, 1, 16, 16), 3.0))
    assert torch.allclose(blur(torch.full((1, 1, 10, 10), 2.0), 1.5), torch.full((1, 1, 10, 10), 2.0), atol=1e-5)
