"""Gradient explanations: Grad-CAM finds a planted feature, input gradients, layer lookup."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fcdd.explain.gradients import attention_maps, find_layer, grad_cam, input_gradient_map, layer_names


class PlantedNet(nn.Module):
    """Channel 0 detects isolated bright spots, channel 1 overall brightness; only channel 0 counts."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        spot = -torch.ones(3, 3)
        spot[1, 1] = 8
        with torch.no_grad():
            self.conv.weight[0, 0] = spot
            self.conv.weight[1, 0] = torch.full((3, 3), 1 / 9)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        score = self.act(self.conv(x))[:, 0].flatten(1).sum(1)
        return score, score


def test_grad_cam_peaks_on_planted_feature():
    net = PlantedNet()
    images = torch.zeros(2, 1, 32, 32)
    images[:, :, 18:30, 2:14] = 1.0  # a large bright square: strong brightness, weak spot response
    images[0, 0, 6, 25] = 1.0
    images[1, 0, 9, 12] = 1.0
    scores, maps = attention_maps(net, net.conv, images, "relu")
    assert maps.shape == (2, 1, 32, 32)
    assert scores.shape == (2,)
    for b, (r, c) in enumerate([(6, 25), (9, 12)]):
        peak = divmod(int(maps[b, 0].argmax()), 32)
        assert abs(peak[0] - r) <= 1 and abs(peak[1] - c) <= 1, (peak, (r, c))


def test_grad_cam_weights_and_activation():
    acts = torch.zeros(1, 2, 2, 2)
    acts[0, 0] = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    acts[0, 1] = 5.0
    grads = torch.zeros(1, 2, 2, 2)
    grads[0, 0] = -1.0  # channel 0 counts against, channel 1 not at all
    relu = grad_cam(acts, grads, "relu")
    absolute = grad_cam(acts, grads, "abs")
    assert torch.all(relu == 0)
    # RMS of the gradients is sqrt(4 / 8); weight of channel 0 = -1 / sqrt(0.5)
    expected = acts[0, 0] / 0.5**0.5
    assert torch.allclose(absolute[0, 0], expected, atol=1e-5)
    with pytest.raises(ValueError, match="relu, abs"):
        grad_cam(acts, grads, "sigmoid")


def test_input_gradient_map_marks_the_used_pixel():
    images = torch.rand(3, 3, 16, 16)
    scores, maps = input_gradient_map(lambda x: (x[:, :, 5, 7] ** 2).sum(1), images)
    assert maps.shape == (3, 1, 16, 16)
    assert torch.allclose(scores, (images[:, :, 5, 7] ** 2).sum(1))
    for b in range(3):
        assert divmod(int(maps[b, 0].argmax()), 16) == (5, 7)
        assert maps[b, 0].flatten().topk(2).values[1] == 0


def test_find_layer_rejects_unknown_names_with_the_valid_ones():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.ReLU(), nn.Conv2d(2, 2, 1)))
    assert find_layer(net, "1.1") is net[1][1]
    assert layer_names(net) == ["0", "1", "1.0", "1.1"]
    with pytest.raises(ValueError) as err:
        find_layer(net, "encoder.9")
    assert "encoder.9" in str(err.value) and "0, 1, 1.0, 1.1" in str(err.value)


def test_hirescam_keeps_a_local_gradient_local():
    """A scalar read from one location: HiResCAM's map is zero everywhere else, while Grad-CAM's
    channel weights light up every location with similar activations."""
    activations = torch.rand(1, 4, 8, 8) + 0.5
    gradients = torch.zeros(1, 4, 8, 8)
    gradients[0, :, 3, 5] = torch.tensor([1.0, -0.5, 0.25, 2.0])
    local = grad_cam(activations, gradients, "abs", cam="hirescam")[0, 0]
    spread = grad_cam(activations, gradients, "abs", cam="gradcam")[0, 0]
    assert local[3, 5] > 0 and torch.count_nonzero(local) == 1
    assert torch.count_nonzero(spread) == 64
    with pytest.raises(ValueError, match="hirescam"):
        grad_cam(activations, gradients, "abs", cam="other")
