"""FCDD on frozen ImageNet features with a learnt description of what nominal looks like.

The whole EfficientNet-Lite0 trunk stays fixed at its ImageNet weights. Its stride-8 map
(block 4, averaged over 3x3 neighbours) and stride-16 map (block 10, upsampled) are joined as
in ``efficientnet_lite0_ms``, then standardised per channel by statistics of the training
images' features (buffers measured once before training, so predict, serve and export see the
same scale). The head is a linear map of those 152 channels to 64, and the output map is its
Euclidean norm per location: FCDD's pseudo-Huber of it is the hypersphere distance of HSC,
taken at every location.

Why: a linear map scored by its norm is convex in the features, so a feature that leaves the
nominal cloud in any direction the head weighs scores high. Trained against synthetic
anomalies in feature space (``--feature-noise``: Gaussian noise on the standardised features
of nominal images) it learns which directions nominal features vary little in, and nothing of
how one data set's defects look; with image-space anomalies alone the net learnt their look.
Measured on the five shared categories at 224 px with ``configs/cpu-fast.yaml`` (mean image /
pixel AUROC, ``benchmarks/results/generalise.json``): 0.840 / 0.937 (0.825 / 0.936 with a fixed
noise std 1) against 0.818 / 0.891 for the fine-tuned ``efficientnet_lite0`` with image-space
anomalies. In a feature-level probe a two-layer norm head lost tire's pixel AUROC (0.80 against
0.96 for the linear one).
"""

from __future__ import annotations

import torch
from torch import nn

from fcdd.models.base import channel_statistics
from fcdd.models.efficientnet import EfficientNetLite0MultiScaleFCDD
from fcdd.models.registry import NETS

#: images per chunk when the feature statistics are measured (bounded memory)
STATISTICS_CHUNK = 32


class NormHead(nn.Module):
    """1x1 linear map to ``dim`` channels, then the Euclidean norm over them: (B, 1, h, w)."""

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.project = nn.Conv2d(channels, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(x).float()
        return torch.sqrt(y.pow(2).sum(1, keepdim=True) + 1e-12)


@NETS.register("efficientnet_lite0_frozen")
class FrozenFeaturesFCDD(EfficientNetLite0MultiScaleFCDD):
    """EfficientNet-Lite0, frozen whole, standardised multi-scale features, a norm head."""

    #: the embedding is standardised per channel, so ``--feature-noise`` has a meaning
    standardised_features = True
    head_dim = 64

    def __init__(self, in_channels: int = 3, input_size: int = 224, width: float = 1.0, pretrained: str | None = "auto") -> None:
        super().__init__(in_channels, input_size, width, pretrained)
        channels = self.cuts[8][1] + self.cuts[16][1]
        self.head = NormHead(channels, self.head_dim)
        self.register_buffer("feature_mean", torch.zeros(1, channels, 1, 1))
        self.register_buffer("feature_std", torch.ones(1, channels, 1, 1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        features = super().embed(x)
        return (features - self.feature_mean.to(features.dtype)) / self.feature_std.to(features.dtype)

    @torch.no_grad()
    def fit_input_range(self, images: torch.Tensor, chunk: int = STATISTICS_CHUNK) -> None:
        """Also measure the per-channel mean and standard deviation of the joined features over
        every location of the nominal training images (uint8 or [0, 1]), in chunks."""
        super().fit_input_range(images, chunk)
        was_training = self.training
        self.eval()
        self.feature_mean.zero_()
        self.feature_std.fill_(1.0)
        statistics = channel_statistics(self.embed, images, chunk, self.feature_mean.device)
        if statistics is not None:
            self.feature_mean.copy_(statistics[0])
            self.feature_std.copy_(statistics[1])
        self.train(was_training)

    def frozen_modules(self) -> list[nn.Module]:
        stem, blocks = self.features
        return [stem, *blocks]

    def frozen_prefix(self) -> list[nn.Module]:
        """The trunk stays fixed even without ImageNet weights: a trunk that learns can scale its
        features up until any fixed noise std is negligible, which defeats ``--feature-noise``."""
        return self.frozen_modules()
