"""The frozen-feature FCDD net: standardised features, a convex norm head, feature-space anomalies."""

from __future__ import annotations

import pytest
import torch

from fcdd.config import Config
from fcdd.methods import build_method
from fcdd.methods.fcdd import pseudo_huber
from fcdd.models import build_net


def test_features_are_standardised_on_the_training_images():
    torch.manual_seed(0)
    net = build_net("efficientnet_lite0_frozen", 3, 64, pretrained="none")
    images = (torch.rand(12, 3, 64, 64) * 255).to(torch.uint8)
    net.fit_input_range(images, chunk=5)  # chunks that do not divide the set
    net.eval()
    with torch.no_grad():
        f = net.embed(images.float() / 255)
    assert f.shape[1] == 152
    assert f.mean((0, 2, 3)).abs().max() < 1e-3
    # a channel constant over the whole set (a dead unit) keeps the floor of the std
    varying = net.feature_std.flatten() > 1e-6
    assert varying.sum() > 100
    assert (f.std((0, 2, 3), unbiased=False)[varying] - 1).abs().max() < 1e-3
    # the statistics are buffers, so a snapshot carries them
    assert {"feature_mean", "feature_std"} <= set(net.state_dict())


def test_the_head_scores_the_norm_of_a_linear_map():
    net = build_net("efficientnet_lite0_frozen", 3, 64, pretrained="none")
    features = torch.randn(2, 152, 8, 8)
    expected = net.head.project(features).norm(dim=1, keepdim=True)
    assert torch.allclose(net.head(features), expected, atol=1e-5)
    # convex: a feature pushed further along any direction scores at least as high on that line
    direction = torch.randn(1, 152, 1, 1)
    scores = [float(net.head(t * direction).mean()) for t in (0.0, 1.0, 2.0, 4.0)]
    assert scores[1] - scores[0] <= scores[2] - scores[1] + 1e-5 <= scores[3] - scores[2] + 2e-5


def test_whole_trunk_is_frozen_when_the_weights_load():
    net = build_net("efficientnet_lite0_frozen", 3, 64, pretrained="auto")
    if not net.pretrained_loaded:
        pytest.skip("offline weights not installed")
    frozen = {id(p) for m in net.frozen_prefix() for p in m.parameters()}
    assert frozen | {id(p) for p in net.head.parameters()} == {id(p) for p in net.parameters()}
    assert frozen.isdisjoint(id(p) for p in net.head.parameters())


def tiny_config(**changes) -> Config:
    options = {"net": "efficientnet_lite0_frozen", "pretrained": "none", "image_size": 32, "supervise_mode": "unsupervised",
               "feature_noise": 1.0}
    return Config(**{**options, **changes})


def test_feature_noise_adds_each_nominal_images_noisy_twin_to_its_loss():
    torch.manual_seed(0)
    method = build_method(tiny_config(), 3)
    images = torch.rand(4, 3, 32, 32)
    labels = torch.tensor([0, 0, 1, 0])
    maps = torch.zeros(4, 1, 32, 32)
    losses = method.training_loss(images, labels, maps, use_maps=False)
    assert losses.shape == (4,)
    with torch.no_grad():
        clean = pseudo_huber(method.net(images)).flatten(1).mean(1)
    # nominal rows hold their own mean A plus the noisy twin's term (> 0); the anomalous row has no twin
    assert torch.all(losses[[0, 1, 3]] > clean[[0, 1, 3]])
    assert torch.isclose(losses[2], -torch.log(-torch.expm1(-clean[2])), rtol=1e-4)


def test_feature_noise_training_separates_noisy_features_from_nominal_ones():
    torch.manual_seed(0)
    method = build_method(tiny_config(), 3)
    images = torch.rand(16, 3, 32, 32)
    method.fit_input_range((images * 255).to(torch.uint8))
    optimiser = torch.optim.Adam(method.trainable_parameters(), lr=1e-2)

    def gap() -> float:
        with torch.no_grad():
            features = method.net.embed(images)
            clean = pseudo_huber(method.net.head(features)).mean()
            noisy = pseudo_huber(method.net.head(features + torch.randn_like(features))).mean()
        return float(noisy - clean)

    method.eval()  # the trunk's batch norms keep their statistics, as the trainer keeps frozen stages
    before = gap()
    for _ in range(30):
        loss = method.training_loss(images, torch.zeros(16, dtype=torch.long), torch.zeros(16, 1, 32, 32), False).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert gap() > before + 0.5


def test_feature_noise_refuses_a_net_without_standardised_features():
    with pytest.raises(ValueError, match="standardised features"):
        build_method(tiny_config(net="efficientnet_lite0"), 3)


def test_feature_noise_min_draws_one_std_per_twin_within_the_range():
    torch.manual_seed(0)
    method = build_method(tiny_config(feature_noise=2.0, feature_noise_min=0.5), 3)
    images = torch.rand(64, 3, 32, 32)
    seen = []
    handle = method.net.head.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].detach()))
    method.training_loss(images, torch.zeros(64, dtype=torch.long), torch.zeros(64, 1, 32, 32), False)
    handle.remove()
    clean, noisy = seen  # the batch's features, then its noisy twins
    stds = (noisy - clean).flatten(1).std(1)
    assert stds.min() > 0.45 and stds.max() < 2.1
    assert stds.max() - stds.min() > 1.0  # spread over the range, not one value


def test_feature_noise_min_above_feature_noise_is_refused():
    with pytest.raises(ValueError, match="feature_noise_min"):
        tiny_config(feature_noise=1.0, feature_noise_min=1.5)
