"""Reconstruction baseline: a convolutional autoencoder trained on nominal images only.

The score is the reconstruction error, the heatmap the per-pixel squared error (summed over
channels, optionally blurred with ``--blur-heatmaps``). Defects that the autoencoder never saw
are reconstructed poorly, so they light up. ``--arch`` picks the encoder-decoder (default
``ae``: depth from the image size; ``ae28`` / ``ae32`` / ``ae224`` are the fixed-depth ones).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fcdd.data.shape import Size
from fcdd.explain.ssim import ssim
from fcdd.explain.upsample import blur
from fcdd.methods.base import METHODS, Method, square_side
from fcdd.models.autoencoders import EncoderDecoder, Reconstruction, build_autoencoder


def reduce_pixels(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """(B, ...) -> (B,) by mean or sum over everything but the batch."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"loss must be 'mean' or 'sum', got {reduction!r}")
    return values.flatten(1).mean(1) if reduction == "mean" else values.flatten(1).sum(1)


def check_reconstruction_options(net: EncoderDecoder, with_ssim: bool) -> None:
    """SSIM compares images: refuse it for nets that reconstruct features."""
    if with_ssim and not net.reconstructs_images:
        raise ValueError(f"--ssim compares images, but {type(net).__name__} reconstructs features; leave --ssim off")


def reconstruction_target(net: EncoderDecoder, images: torch.Tensor, rec: Reconstruction) -> torch.Tensor:
    """What ``rec.output`` should equal: the net's own target, else the normalised image."""
    return rec.target if rec.target is not None else net.normalise(images)


def reconstruction_score(net: EncoderDecoder, images: torch.Tensor, rec: Reconstruction, reduction: str = "mean", with_ssim: bool = False) -> torch.Tensor:
    """Per-sample reconstruction loss: squared error in the net's normalised space (+ 1 - SSIM).

    SSIM is computed on the [0, 1] scale (de-normalised reconstruction). With ``sum`` it is
    multiplied by the number of pixels, so both terms keep their ratio under either reduction.
    """
    loss = reduce_pixels((rec.output - reconstruction_target(net, images, rec)) ** 2, reduction)
    if with_ssim:
        dissimilarity = 1 - ssim(net.denormalise(rec.output), images)
        loss = loss + dissimilarity * (images.shape[-1] * images.shape[-2] if reduction == "sum" else 1)
    return loss


def error_map(net: EncoderDecoder, images: torch.Tensor, rec: Reconstruction) -> torch.Tensor:
    """Squared error summed over channels (B, 1, H, W), up-sampled (bilinear) from a feature grid."""
    error = ((rec.output - reconstruction_target(net, images, rec)) ** 2).sum(1, keepdim=True)
    if error.shape[-2:] != images.shape[-2:]:
        error = F.interpolate(error, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return error


def kl_divergence(rec: Reconstruction, images: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per sample; zero for non-variational nets.

    With the mean reduction the squared error is a mean over the reconstructed values, so the
    KL term is divided by their number as well: the ratio of the two ELBO terms stays that of
    the sums. A spatial code (one per location) is summed over all its entries.
    """
    if rec.mu is None or rec.logvar is None:
        return torch.zeros(len(images), device=images.device)
    kl = -0.5 * (1 + rec.logvar - rec.mu**2 - rec.logvar.exp()).flatten(1).sum(1)
    return kl / rec.output[0].numel() if reduction == "mean" else kl


@METHODS.register("ae")
class AE(Method):
    uses_anomalies = False

    def __init__(self, config, in_channels: int, image_shape: Size | None = None) -> None:
        super().__init__(config, in_channels, image_shape)
        self.arch = config.arch or "ae"
        self.net = build_autoencoder(self.arch, in_channels, square_side(self.image_shape, config.objective), width=config.width, pretrained=config.pretrained)
        self.reduction = config.loss
        self.with_ssim = config.ssim
        self.blur_std = config.blur_heatmaps or 0.0
        check_reconstruction_options(self.net, self.with_ssim)

    def training_loss(self, images, labels, maps, use_maps):
        rec = self.net(images)
        return reconstruction_score(self.net, images, rec, self.reduction, self.with_ssim) + kl_divergence(rec, images, self.reduction)

    def forward(self, images):
        rec = self.net(images)
        scores = reconstruction_score(self.net, images, rec, self.reduction, self.with_ssim)
        return scores, blur(error_map(self.net, images, rec), self.blur_std)
