"""Encoder-decoders that reconstruct frozen ImageNet patch features, not pixels.

``feature_ae`` and ``feature_vae`` (and their MobileNetV2 / VGG11 twins, ``*_mobilenetv2``,
``*_vgg11``) run a frozen ImageNet backbone (``PatchFeatures``: the stride-8 and stride-16
stages, each averaged over 3x3 neighbours, joined on the stride-8 grid), standardise every
channel by statistics of the nominal training images, and reconstruct that map through a
narrow per-location code (1x1 convolutions; the VAE samples the code). What is reconstructed is
``Reconstruction.target``, so the reconstruction losses, the AE's error map and Grad-CAM work
on it unchanged.

Why: a pixel encoder-decoder small enough for a CPU budget, trained on a few hundred images,
reconstructs blurrily everywhere, and its attention is spread over the whole image (0.72 mean
pixel AUROC on the shared sets, ``configs/attention-cpu.yaml`` before). ImageNet features
already tell local structures apart; a code that only nominal feature vectors fit through
reconstructs a defect's features poorly, at the defect's own location: with ``feature_vae``
``configs/attention-cpu.yaml`` reaches 0.937 (``benchmarks/results/attention_cpu.json``). Reconstructing
pretrained features was proposed by Shi et al. (2021, "Unsupervised anomaly segmentation via
deep feature reconstruction").

Layers for ``--layer`` (``fcdd layers --arch feature_vae``): ``embedding`` (the standardised
features, the default), the backbone's blocks (``features.trunk.blocks.N``), ``encoder.0`` and
``to_code``. The backbone stays in eval mode with frozen weights, but gradients reach its
blocks, so every block can be explained.
"""

from __future__ import annotations

import torch
from torch import nn

from fcdd.models.autoencoders import ENCODER_DECODERS, EncoderDecoder, Reconstruction, sample_gaussian, split_gaussian
from fcdd.models.base import channel_statistics, scaled
from fcdd.models.patch_features import BACKBONES, PatchFeatures

#: images per chunk when the feature statistics are measured (bounded memory)
STATISTICS_CHUNK = 32
#: the deepest stride the backbones are tapped at: input sides must be multiples of it
TAPPED_STRIDE = 16


class Standardise(nn.Module):
    """Per-channel standardisation by fixed statistics (buffers, so they are in the snapshot)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(1, channels, 1, 1))
        self.register_buffer("std", torch.ones(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class FeatureAutoencoder(EncoderDecoder):
    """Frozen backbone -> standardised patch features -> per-location code -> the features again."""

    # PatchFeatures applies the ImageNet normalisation itself; the dataset statistics are unused
    normalisation = "imagenet"
    bottleneck_layer = "to_code"
    default_attention_layer = "embedding"
    # the code is one vector per location: the sum of its means says nothing about anomalies
    # (pixel AUROC 0.34 on hazelnut_toy against 0.96 for the reconstruction error,
    # benchmarks/results/attention.json)
    default_attention_target = "reconstruction_error"
    reconstructs_images = False

    def __init__(
        self, in_channels: int, input_size: int, width: float = 1.0, pretrained: str | None = "auto",
        backbone: str = "efficientnet_lite0", variational: bool = False, hidden: int = 128, latent: int = 32,
    ) -> None:
        super().__init__(in_channels, input_size, depth=TAPPED_STRIDE.bit_length() - 1)
        self.variational = variational
        self.features = PatchFeatures(backbone, pretrained, in_channels)
        channels = self.features.out_dim
        hidden, self.latent = scaled(hidden, width), scaled(latent, width)
        self.embedding = Standardise(channels)
        self.encoder = nn.Sequential(nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.LeakyReLU(0.1)))
        self.to_code = nn.Conv2d(hidden, self.latent * (2 if variational else 1), 1)
        self.decoder = nn.Sequential(nn.Conv2d(self.latent, hidden, 1), nn.LeakyReLU(0.1), nn.Conv2d(hidden, channels, 1))

    def frozen_prefix(self) -> list[nn.Module]:
        """The backbone keeps its weights (ImageNet's, or the random ones of ``--pretrained none``)."""
        return [self.features]

    def fit_input_range(self, images: torch.Tensor, chunk: int = STATISTICS_CHUNK) -> None:
        """Per-channel mean and standard deviation of the features over every location of the
        nominal training images (uint8 or [0, 1]), measured in chunks."""
        statistics = channel_statistics(self.features, images, chunk, self.embedding.mean.device)
        if statistics is not None:
            self.embedding.mean.copy_(statistics[0])
            self.embedding.std.copy_(statistics[1])

    def forward(self, x: torch.Tensor) -> Reconstruction:
        self.check_input(x)
        target = self.embedding(self.features(x))
        code = self.to_code(self.encoder(target))
        mu, logvar = split_gaussian(code) if self.variational else (code, None)
        z = sample_gaussian(mu, logvar, self.training)
        return Reconstruction(self.decoder(z), mu if self.variational else None, logvar, target=target)


def _register(name: str, backbone: str, variational: bool) -> None:
    def build(in_channels: int, input_size: int, width: float = 1.0, pretrained: str | None = None) -> FeatureAutoencoder:
        return FeatureAutoencoder(in_channels, input_size, width=width, pretrained=pretrained, backbone=backbone,
                                  variational=variational)

    ENCODER_DECODERS.register(name)(build)


for _backbone in BACKBONES:
    _suffix = "" if _backbone == "efficientnet_lite0" else f"_{_backbone}"
    _register(f"feature_ae{_suffix}", _backbone, variational=False)
    _register(f"feature_vae{_suffix}", _backbone, variational=True)
