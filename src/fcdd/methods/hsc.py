"""Hypersphere classifier (HSC; Ruff et al., 2021), the FCDD paper's gradient-explained baseline.

The same convolutional features as FCDD, but the net ends in one global feature vector f(x)
instead of a map. The score is mean_i sqrt(f_i^2 + 1) - 1 (pseudo-Huber distance to the centre);
nominal samples minimise it, anomalous ones enter through -log(1 - exp(-score)): FCDD's loss on
the global output. Having no spatial output, HSC is explained by the gradient of the score with
respect to the input pixels (absolute values, optionally blurred with ``--blur-heatmaps``).
"""

from __future__ import annotations

import torch
from torch import nn

from fcdd.data.shape import Size
from fcdd.explain.gradients import input_gradient_map
from fcdd.methods.base import METHODS, Method
from fcdd.methods.fcdd import fcdd_loss, pseudo_huber
from fcdd.models import build_net


class GlobalHead(nn.Module):
    """Feature map (B, C, h, w) to a vector (B, dim): 1x1 channel reduction, then a dense layer.

    The dense layer sees every location (no pooling), so the input gradient stays spatially
    specific. No bias: a bias would let the net reach the centre without looking at the input.
    """

    def __init__(self, channels: int, side: int, dim: int = 64, reduced: int = 32) -> None:
        super().__init__()
        reduced = min(channels, reduced)
        self.reduce = nn.Sequential(nn.Conv2d(channels, reduced, 1, bias=False), nn.LeakyReLU(0.1))
        self.fc = nn.Linear(reduced * side * side, dim, bias=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.reduce(features).flatten(1))


@METHODS.register("hsc")
class HSC(Method):
    heatmaps_need_grad = True

    def __init__(self, config, in_channels: int, image_shape: Size | None = None) -> None:
        super().__init__(config, in_channels, image_shape)
        self.net = build_net(config.net, in_channels, config.image_size, width=config.width, pretrained=config.pretrained,
                             standardise=config.standardise_images, preprocessing=config.preprocessing)
        self.net.head = nn.Identity()  # the spatial 1x1 head is replaced by the global one
        self.net.spatial = False
        with torch.no_grad():
            self.net.eval()
            features = self.net.embed(torch.zeros(1, in_channels, *self.image_shape))
            self.net.train()
        self.global_head = GlobalHead(features.shape[1], features.shape[-1])
        self.blur_std = config.blur_heatmaps or 0.0

    def feature(self, images: torch.Tensor) -> torch.Tensor:
        return self.global_head(self.net.embed(images))

    def score(self, images: torch.Tensor) -> torch.Tensor:
        return pseudo_huber(self.feature(images)).mean(1)

    def training_loss(self, images, labels, maps, use_maps):
        # ground-truth maps cannot steer a global output: only the image labels are used
        return fcdd_loss(pseudo_huber(self.feature(images)), labels)

    def forward(self, images):
        return input_gradient_map(self.score, images, self.blur_std)
