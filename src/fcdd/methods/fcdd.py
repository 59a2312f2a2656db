"""Fully Convolutional Data Description (Liznerski et al., ICLR 2021).

The net's output map phi(x) becomes A(x) = sqrt(phi(x)^2 + 1) - 1 per output pixel (pseudo-Huber).
Nominal samples minimise mean A; anomalous ones enter through -log(1 - exp(-mean A)), which
pushes their mean A up. With ground-truth maps (semi-supervision) the same two terms apply per
output pixel. The score is mean A; the heatmap is A upsampled with the receptive-field Gaussian.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fcdd.data.shape import Size
from fcdd.explain.upsample import make_upsampler
from fcdd.methods.base import METHODS, Method
from fcdd.models import build_net


def pseudo_huber(phi: torch.Tensor) -> torch.Tensor:
    """sqrt(phi^2 + 1) - 1, in fp32 and written as phi^2 / (sqrt(phi^2 + 1) + 1): the same value
    without the cancellation that rounds small phi to 0 (under bf16 autocast the direct form
    made every nominal output exactly 0)."""
    phi = phi.float()
    square = phi * phi
    return square / (torch.sqrt(square + 1) + 1)


def neg_log_one_minus_exp(a: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """-log(1 - exp(-a)), computed stably; large when ``a`` is near zero."""
    return -torch.log(-torch.expm1(-a.clamp_min(eps)))


def fcdd_loss(anomaly_map: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample FCDD loss from the anomaly map A (B, 1, h, w) and labels (B,)."""
    mean_a = anomaly_map.flatten(1).mean(1)
    anomalous = labels.bool()
    return torch.where(anomalous, neg_log_one_minus_exp(mean_a), mean_a)


def fcdd_pixel_loss(anomaly_map: torch.Tensor, maps: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """Per-sample semi-supervised loss with ground-truth maps (B, 1, H, W) in [0, 1].

    Maps are area-averaged to the output resolution, so an output pixel whose receptive centre
    covers part of a defect is weighted by that part. ``mean`` (the paper) averages both terms
    over the image; ``balanced`` averages the anomalous term over the defect's own area, which
    matters with few real defects: measured on kolektorsdd (cracks of 0.5 % of the image, one
    training defect) the mean loss left the defect to the nominal term and lost to no
    supervision at all, the balanced one beat it (``--pixel-loss``).
    """
    target = F.adaptive_avg_pool2d(maps.float(), anomaly_map.shape[-2:]).flatten(1)
    a = anomaly_map.flatten(1)
    nominal, anomalous = (1 - target) * a, target * neg_log_one_minus_exp(a)
    if how == "mean":
        return (nominal + anomalous).mean(1)
    area = target.sum(1)
    defect_term = anomalous.sum(1) / area.clamp_min(1e-6)
    if how == "balanced":
        return nominal.mean(1) + defect_term
    if how == "defect":  # a defective image teaches only its defect; nominal images keep their loss
        return torch.where(area > 0, defect_term, nominal.mean(1))
    raise ValueError(f"unknown pixel loss {how!r}; use mean, balanced or defect")


@METHODS.register("fcdd")
class FCDD(Method):
    def __init__(self, config, in_channels: int, image_shape: Size | None = None) -> None:
        super().__init__(config, in_channels, image_shape)
        self.net = build_net(config.net, in_channels, config.image_size, width=config.width, pretrained=config.pretrained,
                             standardise=config.standardise_images, preprocessing=config.preprocessing)
        self.upsampler = make_upsampler(config.upsample, self.net.receptive_field, config.gauss_std or self.net.heatmap_std)
        self.image_score = config.image_score
        self.pixel_loss = config.pixel_loss
        self.feature_noise = config.feature_noise
        self.feature_noise_min = config.feature_noise if config.feature_noise_min is None else config.feature_noise_min
        if self.feature_noise and not self.net.standardised_features:
            raise ValueError(f"--feature-noise needs a net with standardised features (e.g. efficientnet_lite0_frozen); "
                             f"{config.net} has none, so a noise std has no fixed scale there")

    def anomaly_map(self, images: torch.Tensor) -> torch.Tensor:
        return pseudo_huber(self.net(images))

    def training_loss(self, images, labels, maps, use_maps):
        if not self.feature_noise:
            return self.image_losses(self.anomaly_map(images), labels, maps, use_maps)
        features = self.net.embed(images)
        losses = self.image_losses(pseudo_huber(self.net.head(features)), labels, maps, use_maps)
        nominal = labels == 0
        noisy = features[nominal]
        std: float | torch.Tensor = self.feature_noise
        if self.feature_noise_min < self.feature_noise:  # one std per twin, from near to far
            std = torch.empty(len(noisy), 1, 1, 1, device=noisy.device).uniform_(self.feature_noise_min, self.feature_noise).to(noisy.dtype)
        noisy = noisy + std * torch.randn_like(noisy)
        # every location of a noisy copy is anomalous; its loss joins its nominal original's
        twin = neg_log_one_minus_exp(pseudo_huber(self.net.head(noisy))).flatten(1).mean(1)
        return losses.index_add(0, nominal.nonzero().flatten(), twin.to(losses.dtype))

    def image_losses(self, a: torch.Tensor, labels: torch.Tensor, maps: torch.Tensor, use_maps: bool) -> torch.Tensor:
        if use_maps:
            # nominal images have all-zero maps, so this is the image loss for them too
            return fcdd_pixel_loss(a, maps, self.pixel_loss)
        return fcdd_loss(a, labels)

    def forward(self, images):
        a = self.anomaly_map(images)
        heatmaps = self.upsampler(a, images.shape[-2:])
        return reduce_score(a, heatmaps, self.image_score), heatmaps


def reduce_score(anomaly_map: torch.Tensor, heatmaps: torch.Tensor, how: str) -> torch.Tensor:
    """The image score: the paper's mean of A, or, for small defects on large images, the
    heatmap's maximum or the mean of its top 1 % (a defect covering little of the image barely
    moves the mean)."""
    if how == "mean":
        return anomaly_map.flatten(1).mean(1)
    flat = heatmaps.flatten(1)
    if how == "max":
        return flat.amax(1)
    k = max(1, flat.shape[1] // 100)
    return flat.topk(k, dim=1).values.mean(1)
