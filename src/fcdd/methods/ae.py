"""Reconstruction baseline: a convolutional autoencoder trained on nominal images only.

The score is the reconstruction error, the heatmap the per-pixel squared error (summed over
channels, optionally blurred with ``--blur-heatmaps``). Defects that the autoencoder never saw
are reconstructed poorly, so they light up. ``--arch`` picks the encoder-decoder (default
``ae``: depth from the image size; ``ae28`` / ``ae32`` / ``ae224`` are the fixed-depth ones).
"""

from __future__ import annotations

import torch

from fcdd.explain.ssim import ssim
from fcdd.explain.upsample import blur
from fcdd.methods.base import METHODS, Method
from fcdd.models.autoencoders import EncoderDecoder, Reconstruction, build_autoencoder


def reduce_pixels(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """(B, ...) -> (B,) by mean or sum over everything but the batch."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"loss must be 'mean' or 'sum', got {reduction!r}")
    return values.flatten(1).mean(1) if reduction == "mean" else values.flatten(1).sum(1)


def reconstruction_score(net: EncoderDecoder, images: torch.Tensor, rec: Reconstruction, reduction: str = "mean", with_ssim: bool = False) -> torch.Tensor:
    """Per-sample reconstruction loss: squared error in the net's normalised space (+ 1 - SSIM).

    SSIM is computed on the [0, 1] scale (de-normalised reconstruction). With ``sum`` it is
    multiplied by the number of pixels, so both terms keep their ratio under either reduction.
    """
    target = net.normalise(images)
    loss = reduce_pixels((rec.output - target) ** 2, reduction)
    if with_ssim:
        dissimilarity = 1 - ssim(net.denormalise(rec.output), images)
        loss = loss + dissimilarity * (images.shape[-1] * images.shape[-2] if reduction == "sum" else 1)
    return loss


def kl_divergence(rec: Reconstruction, images: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per sample; zero for non-variational nets.

    With the mean reduction the squared error is a per-pixel mean, so the KL term is divided by
    the number of input values as well: the ratio of the two ELBO terms stays that of the sums.
    """
    if rec.mu is None or rec.logvar is None:
        return torch.zeros(len(images), device=images.device)
    kl = -0.5 * (1 + rec.logvar - rec.mu**2 - rec.logvar.exp()).sum(1)
    return kl / images[0].numel() if reduction == "mean" else kl


@METHODS.register("ae")
class AE(Method):
    uses_anomalies = False

    def __init__(self, config, in_channels: int) -> None:
        super().__init__(config, in_channels)
        self.arch = config.arch or "ae"
        self.net = build_autoencoder(self.arch, in_channels, config.image_size, width=config.width, pretrained=config.pretrained)
        self.reduction = config.loss
        self.with_ssim = config.ssim
        self.blur_std = config.blur_heatmaps or 0.0

    def training_loss(self, images, labels, maps, use_maps):
        rec = self.net(images)
        return reconstruction_score(self.net, images, rec, self.reduction, self.with_ssim) + kl_divergence(rec, images, self.reduction)

    def forward(self, images):
        rec = self.net(images)
        scores = reconstruction_score(self.net, images, rec, self.reduction, self.with_ssim)
        error = ((rec.output - self.net.normalise(images)) ** 2).sum(1, keepdim=True)
        return scores, blur(error, self.blur_std)
