"""Gradient-attention reconstruction baseline (Liu et al., 2020; the FCDD paper's "VAE attention").

An encoder-decoder (``--arch unet`` or ``vae``; ``feature_ae`` / ``feature_vae`` reconstruct
frozen ImageNet features instead of pixels) learns to reconstruct nominal images (squared
error with ``--loss mean|sum``, optional ``--ssim``, plus the KL term for the VAE). At test time
the score is the reconstruction loss and the explanation is a Grad-CAM map at an encoder layer
(``--layer``, any named module; ``fcdd layers --arch ...`` lists them), or with ``--attention-cam
hirescam`` its per-location variant. The explained scalar is the sum of the latent mean for the
VAE, as in Liu et al., and the reconstruction score for nets without a latent distribution and
for the feature autoencoders. ``--attention-difference`` subtracts the mean attention of the
nominal training images, computed once after training and kept in a buffer (so in the snapshot),
which removes what the encoder attends to on every image (borders, texture) and keeps what is
particular to the test image.

Three additions aim at maps that localise rather than one blob per image:

- ``--attention-training`` alternates reconstruction steps with steps on the attention itself
  (Grad-CAM with ``create_graph``, so the map is differentiable in the weights): they lower the
  mean (or mean - k std) attention of nominal batches, so that attention is spent on what the
  net did not see in training;
- ``--attention-input residual`` explains the image minus its reconstruction, fed through the
  net again, and weighs the map by the residual's size: exactly reconstructed pixels get none;
- ``--attention-target`` picks the explained scalar (latent mean, bottleneck, reconstruction
  error);
- ``--attention-scale absolute`` keeps each map's size instead of rescaling it to a peak of 1,
  so maps compare across images (a nominal image's stays low) and one pixel threshold fits all.
"""

from __future__ import annotations

import torch

from fcdd.data.shape import Size
from fcdd.data.transforms import to_float
from fcdd.explain.gradients import attention_maps, capture_output, find_layer
from fcdd.explain.upsample import blur
from fcdd.methods.ae import check_reconstruction_options, kl_divergence, reconstruction_score
from fcdd.methods.base import METHODS, Method, square_side
from fcdd.models.autoencoders import EncoderDecoder, build_autoencoder

TARGETS = ("latent_mean", "bottleneck", "reconstruction_error")


def normalise_maps(maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Divide each map by its own maximum absolute value: maps in [0, 1] (or [-1, 1])."""
    peak = maps.abs().flatten(1).amax(1).view(-1, 1, 1, 1)
    return maps / (peak + eps)


def resolve_target(target: str, net: EncoderDecoder) -> str:
    """The explained scalar for ``--attention-target`` (auto: the net's own choice, else the latent
    mean where there is one)."""
    variational = bool(getattr(net, "variational", False))
    if target == "auto":
        return net.default_attention_target or ("latent_mean" if variational else "reconstruction_error")
    if target not in TARGETS:
        raise ValueError(f"attention target must be auto or one of {', '.join(TARGETS)}, got {target!r}")
    if target == "latent_mean" and not variational:
        raise ValueError(f"--attention-target latent_mean needs a net with a latent distribution (vae), not {type(net).__name__}")
    return target


def attention_loss(maps: torch.Tensor, k: float = 0.0) -> torch.Tensor:
    """Per-sample mean of the raw attention map minus ``k`` times its spread over pixels."""
    flat = maps.flatten(1)
    loss = flat.mean(1)
    if k:
        loss = loss - k * flat.std(1)
    return loss


@METHODS.register("attention-ae")
class AttentionAE(Method):
    uses_anomalies = False
    heatmaps_need_grad = True

    def __init__(self, config, in_channels: int, image_shape: Size | None = None) -> None:
        super().__init__(config, in_channels, image_shape)
        self.arch = config.arch or "vae"
        self.net = build_autoencoder(self.arch, in_channels, square_side(self.image_shape, config.objective), width=config.width, pretrained=config.pretrained)
        self.layer = config.layer or default_layer(self.net)
        find_layer(self.net, self.layer)  # an unknown name fails here, listing the valid ones
        self.reduction = config.loss
        self.with_ssim = config.ssim
        check_reconstruction_options(self.net, self.with_ssim)
        self.activation = config.attention_activation
        self.cam = config.attention_cam
        self.per_image_scale = config.attention_scale == "image"
        self.difference = config.attention_difference
        self.blur_std = config.blur_heatmaps or 0.0
        self.target = resolve_target(config.attention_target, self.net)
        self.attention_input = config.attention_input
        if self.attention_input == "residual" and not self.net.reconstructs_images:
            raise ValueError(f"--attention-input residual subtracts the reconstruction from the image, but --arch {self.arch} "
                             "reconstructs features; use --attention-input image")
        self.attention_training = config.attention_training
        self.attention_weight = config.attention_weight
        self.attention_k = config.attention_k
        self._batches = 0  # counts training batches, for alternating the two kinds of step
        self.register_buffer("nominal_attention", torch.zeros(1, 1, *self.image_shape))

    def training_loss(self, images, labels, maps, use_maps):
        self._batches += 1
        if self.attention_training and self._batches % 2 == 0:
            return self.attention_step_loss(images, labels)
        rec = self.net(images)
        return reconstruction_score(self.net, images, rec, self.reduction, self.with_ssim) + kl_divergence(rec, images, self.reduction)

    def attention_step_loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Weighted attention loss of the nominal images of a batch (anomalous ones count zero).

        Always on the image itself: ``--attention-input`` only changes what is explained at test
        time, so one trained model serves both inputs (as benchmarks/attention.py measures them).
        """
        _, maps = self._attention_maps(images, create_graph=True)
        nominal = (labels == 0).to(maps.dtype)
        return self.attention_weight * attention_loss(maps, self.attention_k) * nominal

    def _score_and_explained(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with capture_output(find_layer(self.net, self.net.bottleneck_layer)) as code:
            rec = self.net(images)
        scores = reconstruction_score(self.net, images, rec, self.reduction, self.with_ssim)
        if self.target == "latent_mean":
            explained = rec.mu.flatten(1).sum(1)
        elif self.target == "bottleneck":
            explained = code["output"].flatten(1).sum(1)
        else:
            explained = scores
        return scores, explained

    def _attention_maps(self, inputs: torch.Tensor, create_graph: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Grad-CAM / HiResCAM of ``inputs`` at ``--layer`` with the method's options."""
        return attention_maps(self._score_and_explained, find_layer(self.net, self.layer), inputs, self.activation,
                              create_graph, self.cam, rms_normalise=self.per_image_scale)

    def raw_attention(self, images: torch.Tensor, create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores (B,) and un-normalised attention maps (B, 1, H, W) of ``--attention-input``."""
        if self.attention_input == "image":
            return self._attention_maps(images, create_graph)
        with torch.no_grad():
            rec = self.net(images)
            scores = reconstruction_score(self.net, images, rec, self.reduction, self.with_ssim)
            residual = images - self.net.denormalise(rec.output)
        _, maps = self._attention_maps(residual, create_graph)
        return scores, maps * residual.abs().sum(1, keepdim=True)

    def attention(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores (B,) and attention maps (B, 1, H, W) at ``--attention-scale``, before the nominal difference."""
        scores, maps = self.raw_attention(images)
        return scores, normalise_maps(maps) if self.per_image_scale else maps

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
    """The net's own choice, else the second-deepest encoder stage: deep enough to be semantic,
    fine enough to localise."""
    if net.default_attention_layer:
        return net.default_attention_layer
    stages = len(net.encoder)
    return f"encoder.{max(stages - 2, 0)}"
