"""attention-ae additions: attention in training, residual attention, explained targets."""

from __future__ import annotations

import pytest
import torch

from fcdd.commands.layers import layer_table
from fcdd.methods import build_method
from fcdd.methods.attention_ae import attention_loss
from fcdd.models.autoencoders import ENCODER_DECODERS, EncoderDecoder, Reconstruction
from fcdd.training import execute


def test_attention_loss_is_mean_minus_k_std():
    maps = torch.tensor([[[[0.0, 2.0], [0.0, 2.0]]]])
    assert attention_loss(maps).item() == pytest.approx(1.0)
    assert attention_loss(maps, k=1.0).item() == pytest.approx(1.0 - maps.flatten().std().item())


def test_attention_step_is_differentiable_in_the_weights(tiny_config):
    config = tiny_config.replace(objective="attention-ae", arch="vae", attention_training=True, supervise_mode="unsupervised")
    method = build_method(config, 3).train()
    images, labels = torch.rand(4, 3, 32, 32), torch.zeros(4)
    method.training_loss(images, labels, None, False)  # first batch: reconstruction
    loss = method.training_loss(images, labels, None, False)  # second: attention
    loss.mean().backward()
    grads = [p.grad for p in method.net.encoder.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("arch", ["vae", "unet"])
def test_attention_training_lowers_nominal_attention(tiny_config, arch):
    base = tiny_config.replace(objective="attention-ae", arch=arch, supervise_mode="unsupervised", batch_size=4,
                               precision="fp32", attention_weight=10.0)
    images = torch.rand(8, 3, 32, 32)
    levels = {}
    for flag in (False, True):
        run = execute(base.replace(attention_training=flag, out=f"{base.out}-{flag}"))
        _, maps = run.method.eval().raw_attention(images)
        levels[flag] = maps.mean().item()
    assert levels[True] < levels[False]


class HalfIdentity(EncoderDecoder):
    """Reconstructs the left half of an image exactly (identity), the right half from its code."""

    def __init__(self) -> None:
        super().__init__(3, 32, 1)
        self.encoder = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1))
        self.to_code = torch.nn.Identity()
        self.head = torch.nn.Conv2d(4, 3, 1)

    def forward(self, x):
        code = self.to_code(self.encoder(self.normalise(x)))
        left = torch.zeros_like(x, dtype=torch.bool)
        left[..., :16] = True
        return Reconstruction(torch.where(left, self.normalise(x), self.head(code)))


def test_residual_attention_is_zero_where_the_reconstruction_is_exact(tiny_config):
    config = tiny_config.replace(objective="attention-ae", arch="ae", layer="encoder.0", attention_input="residual",
                                 supervise_mode="unsupervised")
    method = build_method(config, 3)
    method.net = HalfIdentity()
    method.eval()
    scores, maps = method(torch.rand(3, 3, 32, 32))
    assert scores.shape == (3,) and maps.shape == (3, 1, 32, 32)
    assert torch.all(maps[..., :16] == 0)
    assert torch.all(maps[..., 16:].flatten(1).amax(1) > 0)


@pytest.mark.parametrize("target", ["latent_mean", "bottleneck", "reconstruction_error"])
def test_attention_targets(tiny_config, target):
    config = tiny_config.replace(objective="attention-ae", arch="vae", attention_target=target, supervise_mode="unsupervised")
    scores, maps = build_method(config, 3).eval()(torch.rand(2, 3, 32, 32))
    assert maps.shape == (2, 1, 32, 32) and torch.isfinite(maps).all()


def test_latent_mean_needs_a_vae(tiny_config):
    config = tiny_config.replace(objective="attention-ae", arch="unet", attention_target="latent_mean", supervise_mode="unsupervised")
    with pytest.raises(ValueError, match="latent"):
        build_method(config, 3)


@pytest.mark.parametrize("arch", ENCODER_DECODERS.names())
def test_every_listed_layer_gives_a_map_of_the_input_size(tiny_config, arch):
    base = tiny_config.replace(objective="attention-ae", arch=arch, supervise_mode="unsupervised")
    images = torch.rand(2, 3, 32, 32)
    method = build_method(base, 3).eval()
    for name, _, _ in layer_table(arch, 32):
        method.layer = name  # as --layer name would, without building the net again
        _, maps = method(images)
        assert maps.shape == (2, 1, 32, 32) and torch.isfinite(maps).all(), name


class Perturbed(EncoderDecoder):
    """Reconstructs the image plus ``beta`` times a fixed convolution of it: error ~ beta^2."""

    def __init__(self, beta: float) -> None:
        super().__init__(3, 32, 1)
        torch.manual_seed(0)
        self.encoder = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1))
        self.to_code = torch.nn.Identity()
        self.beta = beta

    def forward(self, x):
        h = self.normalise(x)
        return Reconstruction(h + self.beta * self.to_code(self.encoder(h)))


@pytest.mark.parametrize("cam", ["gradcam", "hirescam"])
def test_absolute_scale_keeps_a_well_reconstructed_image_low(tiny_config, cam):
    """--attention-scale absolute: the map follows the reconstruction error (a nominal image stays
    low); image: every map peaks at 1, however small the error."""
    images = torch.rand(2, 3, 32, 32)
    peaks = {}
    for scale in ("image", "absolute"):
        config = tiny_config.replace(objective="attention-ae", arch="ae", layer="encoder.0", attention_cam=cam,
                                     attention_scale=scale, supervise_mode="unsupervised")
        for beta in (1.0, 0.1):
            method = build_method(config, 3)
            method.net = Perturbed(beta)
            _, maps = method.eval()(images)
            peaks[scale, beta] = maps.flatten(1).amax(1)
    assert torch.allclose(peaks["image", 1.0], torch.ones(2)) and torch.allclose(peaks["image", 0.1], torch.ones(2))
    # the error, and with it the gradient at the layer, shrinks 100-fold
    assert torch.allclose(peaks["absolute", 0.1] / peaks["absolute", 1.0], torch.full((2,), 0.01), rtol=1e-3)
