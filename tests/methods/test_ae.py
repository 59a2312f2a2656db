"""Autoencoder baseline: architectures per size, reconstruction-error scores and heatmaps."""

from __future__ import annotations

import pytest
import torch

from fcdd.methods import build_method
from fcdd.models.autoencoders import build_autoencoder
from fcdd.training import execute


@pytest.mark.parametrize(("arch", "size"), [("ae28", 28), ("ae28", 56), ("ae32", 32), ("ae32", 64), ("ae224", 64), ("ae", 48), ("unet", 32), ("vae", 28)])
def test_encoder_decoders_reconstruct_their_input_shape(arch, size):
    net = build_autoencoder(arch, 1, size, width=0.25).eval()
    assert net(torch.rand(2, 1, size, size)).output.shape == (2, 1, size, size)


def test_size_not_divisible_by_stride_is_an_error():
    with pytest.raises(ValueError, match="not divisible"):
        build_autoencoder("ae32", 3, 28)


def test_ae_trains_and_lowers_its_loss(tiny_config):
    config = tiny_config.replace(objective="ae", supervise_mode="unsupervised", batch_size=4)
    run = execute(config)
    assert run.history.loss[1] < run.history.loss[0]
    assert run.evaluation.heatmaps.shape[-2:] == (32, 32)


def test_ae_needs_unsupervised_mode(tiny_config):
    with pytest.raises(ValueError, match="unsupervised"):
        execute(tiny_config.replace(objective="ae"))


def test_ae_heatmap_is_the_reconstruction_error(tiny_config):
    method = build_method(tiny_config.replace(objective="ae", supervise_mode="unsupervised"), 3).eval()
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        scores, heatmaps = method(images)
        rec = method.net(images).output
    error = (rec - method.net.normalise(images)) ** 2
    assert torch.allclose(heatmaps, error.sum(1, keepdim=True), atol=1e-5)
    assert torch.allclose(scores, error.flatten(1).mean(1), atol=1e-5)
