"""Feature autoencoders: standardised frozen features as the target, a frozen backbone, and the
options that only make sense for image reconstructions refused with a clear message."""

from __future__ import annotations

import pytest
import torch

from fcdd.methods.base import build_method
from fcdd.models.autoencoders import ENCODER_DECODERS, build_autoencoder
from fcdd.models.feature_autoencoder import FeatureAutoencoder

FEATURE_ARCHS = [name for name in ENCODER_DECODERS.names() if isinstance(build_autoencoder(name, 3, 32), FeatureAutoencoder)]


def test_every_backbone_has_an_ae_and_a_vae():
    assert {"feature_ae", "feature_vae", "feature_ae_mobilenetv2", "feature_vae_vgg11"} <= set(FEATURE_ARCHS)


@pytest.mark.parametrize("arch", FEATURE_ARCHS)
def test_target_is_standardised_on_the_training_images(arch):
    net = build_autoencoder(arch, 3, 32)
    images = (torch.rand(6, 3, 32, 32) * 255).to(torch.uint8)
    net.fit_input_range(images)
    net.eval()
    with torch.no_grad():
        target = net(images.float() / 255).target
        raw = net.features(images.float() / 255)
    assert target.mean((0, 2, 3)).abs().max() < 1e-3
    # channels that vary (not the near-constant ones of a random backbone) get unit spread
    varying = raw.std((0, 2, 3), unbiased=False) > 1e-4
    assert varying.sum() > 10
    spread = target.std((0, 2, 3), unbiased=False)[varying]
    assert torch.allclose(spread, torch.ones(()), atol=1e-3)


def test_training_moves_the_code_and_leaves_the_backbone(tiny_config):
    config = tiny_config.replace(objective="ae", arch="feature_vae", supervise_mode="unsupervised")
    method = build_method(config, 3)
    backbone = {k: v.clone() for k, v in method.net.features.state_dict().items()}
    trainable = method.trainable_parameters()
    assert trainable and not any(p is q for p in trainable for q in method.net.features.parameters())
    before = [p.clone() for p in trainable]
    optimiser = torch.optim.Adam(trainable, 1e-2)
    images = torch.rand(4, 3, 32, 32)
    method.train()
    for _ in range(3):
        loss = method.training_loss(images, torch.zeros(4), None, False).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert any(not torch.equal(p, q) for p, q in zip(before, trainable, strict=True))
    after = method.net.features.state_dict()
    assert all(torch.equal(backbone[k], after[k]) for k in backbone), "frozen backbone weights and statistics"


def test_ae_error_map_has_the_input_size_and_peaks_where_features_change(tiny_config):
    config = tiny_config.replace(objective="ae", arch="feature_ae", supervise_mode="unsupervised")
    method = build_method(config, 3).eval()
    scores, maps = method(torch.rand(2, 3, 32, 32))
    assert scores.shape == (2,) and maps.shape == (2, 1, 32, 32) and torch.isfinite(maps).all()


@pytest.mark.parametrize("objective", ["ae", "attention-ae"])
def test_ssim_is_refused_for_features(tiny_config, objective):
    config = tiny_config.replace(objective=objective, arch="feature_ae", ssim=True, supervise_mode="unsupervised")
    with pytest.raises(ValueError, match="--ssim compares images"):
        build_method(config, 3)


def test_residual_attention_is_refused_for_features(tiny_config):
    config = tiny_config.replace(objective="attention-ae", arch="feature_vae", attention_input="residual",
                                 supervise_mode="unsupervised")
    with pytest.raises(ValueError, match="--attention-input image"):
        build_method(config, 3)


def test_attention_defaults_to_the_embedding_and_the_reconstruction_error(tiny_config):
    config = tiny_config.replace(objective="attention-ae", arch="feature_vae", supervise_mode="unsupervised",
                                 attention_cam="hirescam")
    method = build_method(config, 3).eval()
    assert method.layer == "embedding" and method.target == "reconstruction_error"
    scores, maps = method(torch.rand(2, 3, 32, 32))
    assert maps.shape == (2, 1, 32, 32) and float(maps.amax()) == pytest.approx(1.0)
