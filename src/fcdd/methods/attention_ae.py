"""Gradient-attention reconstruction baseline (Liu et al., 2020; the FCDD paper's "VAE attention").

An encoder-decoder (``--arch unet`` or ``vae``) learns to reconstruct nominal images (squared
error with ``--loss mean|sum``, optional ``--ssim``, plus the KL term for the VAE). At test time
the score is the reconstruction loss and the explanation is a Grad-CAM map at an encoder layer
(``--layer``, any named module; ``fcdd layers --arch ...`` lists them). The explained scalar is
the sum of the latent mean for the VAE, as in Liu et al., and the reconstruction score for nets
without a latent distribution. ``--attention-difference`` subtracts the mean attention of the
nominal training images, computed once after training and kept in a buffer (so in the snapshot),
which removes what the encoder attends to on every image (borders, texture) and keeps what is
particular to the test image.
"""

from __future__ import annotations

import torch

from fcdd.data.transforms import to_float
from fcdd.explain.gradients import attention_maps, find_layer
from fcdd.explain.upsample import blur
from fcdd.methods.ae import kl_divergence, reconstruction_score
from fcdd.methods.base import METHODS, Method
from fcdd.models.autoencoders import build_autoencoder


def normalise_maps(maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Divide each map by its own maximum absolute value: maps in [0, 1] (or [-1, 1])."""
    peak = maps.abs().flatten(1).amax(1).view(-1, 1, 1, 1)
    return maps / (peak + eps)


@METHODS.register("attention-ae")
class AttentionAE(Method):
    uses_anomalies = False
    heatmaps_need_grad = True

    def __init__(self, config, in_channels: int) -> None:
        super().__init__(config, in_channels)
        self.arch = config.arch or "vae"
        self.net = build_autoencoder(self.arch, in_channels, config.image_size, width=config.width)
        self.layer = config.layer or default_layer(self.net)
        find_layer(self.net, self.layer)  # an unknown name fails here, listing the valid ones
        self.reduction = config.loss
        self.with_ssim = config.ssim
        self.activation = config.attention_activation
        self.difference = config.attention_difference
        self.blur_std = config.blur_heatmaps or 0.0
        size = config.image_size
        self.register_buffer("nominal_attention", torch.zeros(1, 1, size, size))

    def training_loss(self, images, labels, maps, use_maps):
        rec = self.net(images)
        return reconstruction_score(self.net, images, rec, self.reduction, self.with_ssim) + kl_divergence(rec, images, self.reduction)

    def _score_and_explained(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rec = self.net(images)
        scores = reconstruction_score(self.net, images, rec, self.reduction, self.with_ssim)
        explained = rec.mu.sum(1) if rec.mu is not None else scores
        return scores, explained

    def attention(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores (B,) and normalised attention maps (B, 1, H, W), before the nominal difference."""
        scores, maps = attention_maps(self._score_and_explained, find_layer(self.net, self.layer), images, self.activation)
        return scores, normalise_maps(maps)

    def forward(self, images):
        scores, maps = self.attention(images)
        if self.difference:
            maps = maps - self.nominal_attention
        return scores, blur(maps, self.blur_std)

    @torch.no_grad()
    def after_training(self, train_images, batch_size, device):
        """Mean attention of the nominal training images, for ``--attention-difference``."""
        if not self.difference or len(train_images) == 0:
            return
        was_training = self.training
        self.eval()
        total = torch.zeros_like(self.nominal_attention)
        for start in range(0, len(train_images), batch_size):
            batch = to_float(train_images[start : start + batch_size]).to(device)
            total += self.attention(batch)[1].sum(0, keepdim=True)
        self.nominal_attention.copy_(total / len(train_images))
        self.train(was_training)


def default_layer(net) -> str:
    """The second-deepest encoder stage: deep enough to be semantic, fine enough to localise."""
    stages = len(net.encoder)
    return f"encoder.{max(stages - 2, 0)}"
