"""Gradient-attention reconstruction (UNet / VAE): training, layers, attention difference."""

from __future__ import annotations

import pytest
import torch

from fcdd.detector import Detector
from fcdd.methods import build_method
from fcdd.training import execute


@pytest.mark.parametrize("arch", ["unet", "vae"])
def test_attention_ae_trains_and_lowers_its_loss(tiny_config, arch):
    config = tiny_config.replace(objective="attention-ae", arch=arch, supervise_mode="unsupervised", batch_size=4, ssim=arch == "vae")
    run = execute(config)
    assert run.history.loss[1] < run.history.loss[0]
    heatmaps = run.evaluation.heatmaps.float()
    assert heatmaps.shape[-2:] == (32, 32)
    assert torch.all(heatmaps >= 0) and heatmaps.amax() <= 1.0 + 1e-3  # maps normalised per image


def test_unknown_layer_lists_valid_layers(tiny_config):
    config = tiny_config.replace(objective="attention-ae", arch="vae", layer="encoder.7", supervise_mode="unsupervised")
    with pytest.raises(ValueError) as err:
        build_method(config, 3)
    assert "encoder.7" in str(err.value) and "encoder.0" in str(err.value)


def test_any_named_layer_and_abs_activation(tiny_config):
    config = tiny_config.replace(objective="attention-ae", arch="unet", layer="encoder.0.1.0", attention_activation="abs",
                                 supervise_mode="unsupervised")
    method = build_method(config, 3).eval()
    scores, maps = method(torch.rand(2, 3, 32, 32))
    assert scores.shape == (2,) and maps.shape == (2, 1, 32, 32)
    assert torch.allclose(maps.flatten(1).amax(1), torch.ones(2), atol=1e-4)


def test_attention_difference_is_stored_in_the_snapshot(tiny_config):
    config = tiny_config.replace(objective="attention-ae", arch="vae", attention_difference=True, supervise_mode="unsupervised", epochs=1)
    run = execute(config)
    stored = run.method.nominal_attention
    assert stored.abs().sum() > 0
    detector = Detector.load(config.out)
    assert torch.allclose(detector.method.nominal_attention, stored)
    images = torch.rand(2, 3, 32, 32)
    _, before = run.method.attention(images)
    _, after = run.method.eval()(images)
    assert torch.allclose(after, before - stored, atol=1e-5)
