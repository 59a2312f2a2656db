"""Encoder-decoders for the reconstruction baselines (AE) and gradient attention (UNet, VAE).

They are kept apart from ``NETS`` (which holds fully convolutional nets with a receptive field)
in their own registry, ``ENCODER_DECODERS``. All of them:

- take [0, 1] images and normalise inside (buffers ``input_mean`` / ``input_std``, set from the
  training set like ``FCDDNet``), and reconstruct the *normalised* image, so the reconstruction
  error weighs every channel alike;
- return ``Reconstruction(output, mu, logvar)`` (``mu`` / ``logvar`` only for the VAE);
- name their encoder stages ``encoder.0``, ``encoder.1``, ... (a stage ends before each
  down-sampling), so attention layers can be picked by name (``fcdd layers --arch ...``).

Depth: ``ae28`` (stride 4), ``ae32`` (stride 8) and ``ae224`` (stride 32) are the fixed
autoencoders of the FCDD paper's input sizes and accept any size divisible by their stride;
``ae``, ``unet`` and ``vae`` choose their depth from the input size (a 4-8 pixel bottleneck).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from fcdd.models.base import scaled
from fcdd.registry import Registry


@dataclass
class Reconstruction:
    """What an encoder-decoder returns. ``target`` is what ``output`` reconstructs when that is
    not the normalised input image (the feature autoencoders' standardised features)."""

    output: torch.Tensor
    mu: torch.Tensor | None = None
    logvar: torch.Tensor | None = None
    target: torch.Tensor | None = None


def conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution, batch norm, leaky ReLU; never in place, so hooks can take gradients."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.1),
    )


def up_block(c_in: int, c_out: int) -> nn.Sequential:
    """Nearest-neighbour up-sampling then a conv block (no checkerboard artefacts)."""
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv_block(c_in, c_out))


def encode_stages(stages, h: torch.Tensor) -> list[torch.Tensor]:
    """Run ``h`` through the encoder ``stages`` in turn, keeping every stage's output (a UNet's skips)."""
    outputs = []
    for stage in stages:
        h = stage(h)
        outputs.append(h)
    return outputs


def split_gaussian(code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A VAE code (channels 2k) -> its mean and log-variance (k each), the latter clamped to keep
    the sampling and the KL term finite."""
    mu, logvar = code.chunk(2, dim=1)
    return mu, logvar.clamp(-10, 10)


def sample_gaussian(mu: torch.Tensor, logvar: torch.Tensor | None, training: bool) -> torch.Tensor:
    """The reparameterised sample in training, the mean otherwise (and for codes with no variance)."""
    if logvar is None or not training:
        return mu
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def auto_depth(size: int, max_depth: int = 5, min_side: int = 4) -> int:
    """Most halvings (up to ``max_depth``) that keep the side an integer of at least ``min_side``."""
    depth = 0
    while depth < max_depth and size % (2 ** (depth + 1)) == 0 and size // 2 ** (depth + 1) >= min_side:
        depth += 1
    if depth == 0:
        raise ValueError(f"image size {size} cannot be halved even once; use an even size of at least {2 * min_side}")
    return depth


class EncoderDecoder(nn.Module):
    """Base: input normalisation and the size check shared by all encoder-decoders."""

    normalisation: str = "dataset"
    #: total down-sampling factor of the encoder
    stride: int = 1
    #: the module whose output is the code, for ``--attention-target bottleneck``
    bottleneck_layer: str = "encoder"
    #: the attention layer when ``--layer`` is not given (None: the second-deepest encoder stage)
    default_attention_layer: str | None = None
    #: the explained scalar of ``--attention-target auto`` (None: the latent mean of a VAE, else
    #: the reconstruction error)
    default_attention_target: str | None = None
    #: False for nets that reconstruct something else (``Reconstruction.target``): no SSIM and
    #: no image residual for them
    reconstructs_images: bool = True

    def __init__(self, in_channels: int, input_size: int, depth: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.input_size = input_size
        self.depth = depth
        self.stride = 2**depth
        if input_size % self.stride:
            raise ValueError(
                f"{type(self).__name__} down-samples by {self.stride}; image size {input_size} is not divisible by it"
            )
        self.bottleneck_side = input_size // self.stride
        self.register_buffer("input_mean", torch.full((1, in_channels, 1, 1), 0.5))
        self.register_buffer("input_std", torch.full((1, in_channels, 1, 1), 0.25))

    def set_input_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.input_mean.copy_(torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.input_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-3).view(1, -1, 1, 1))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) / self.input_std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.input_std + self.input_mean

    def check_input(self, x: torch.Tensor) -> None:
        if x.shape[1] != self.in_channels or x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            raise ValueError(
                f"{type(self).__name__} expects (B, {self.in_channels}, {self.input_size}, {self.input_size}) "
                f"images, got {tuple(x.shape)}"
            )


def _encoder(in_channels: int, channels: list[int]) -> nn.Sequential:
    """Stage i: a conv block at its resolution, then a stride-2 conv block (each stage halves the side)."""
    stages: list[nn.Module] = []
    c_prev = in_channels
    for c in channels:
        stages.append(nn.Sequential(conv_block(c_prev, c), conv_block(c, c, stride=2)))
        c_prev = c
    return nn.Sequential(*stages)


class ConvAE(EncoderDecoder):
    """Convolutional autoencoder with a dense bottleneck.

    Without a narrow bottleneck a convolutional AE learns the identity and reconstructs defects
    as well as the rest; the dense ``latent``-dimensional code is what makes defects stand out.
    """

    bottleneck_layer = "to_code"

    def __init__(
        self, in_channels: int, input_size: int, depth: int | None = None, width: float = 1.0,
        base: int = 32, latent: int | None = None, variational: bool = False,
    ) -> None:
        super().__init__(in_channels, input_size, depth or auto_depth(input_size))
        channels = [scaled(min(base * 2**i, 256), width) for i in range(self.depth)]
        self.latent = latent or scaled(min(32 * 2**self.depth, 256), width)
        self.variational = variational
        self.encoder = _encoder(in_channels, channels)
        side = self.bottleneck_side
        flat = channels[-1] * side * side
        self.to_code = nn.Linear(flat, self.latent * (2 if variational else 1))
        self.from_code = nn.Sequential(nn.Linear(self.latent, flat), nn.LeakyReLU(0.1))
        self._code_shape = (channels[-1], side, side)
        ups: list[nn.Module] = []
        for i in range(self.depth - 1, 0, -1):
            ups.append(up_block(channels[i], channels[i - 1]))
        ups.append(up_block(channels[0], channels[0]))
        self.decoder = nn.Sequential(*ups)
        self.output = nn.Conv2d(channels[0], in_channels, 3, padding=1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        code = self.to_code(self.encoder(self.normalise(x)).flatten(1))
        return split_gaussian(code) if self.variational else (code, None)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.from_code(z).view(-1, *self._code_shape)
        return self.output(self.decoder(h))

    def forward(self, x: torch.Tensor) -> Reconstruction:
        self.check_input(x)
        mu, logvar = self.encode(x)
        out = self.decode(sample_gaussian(mu, logvar, self.training))
        return Reconstruction(out, mu if self.variational else None, logvar)


class UNet(EncoderDecoder):
    """U-Net: encoder stages, a bottleneck, decoder stages joined to encoder stages by skips.

    Skips at full resolution let the decoder copy the input, defects included, so by default
    only the deeper ``skip_levels`` stages are joined (``skip_levels=depth-1`` joins all of them).
    """

    bottleneck_layer = "bottleneck"

    def __init__(self, in_channels: int, input_size: int, depth: int | None = None, width: float = 1.0,
                 base: int = 32, skip_levels: int | None = None) -> None:
        super().__init__(in_channels, input_size, depth or auto_depth(input_size))
        channels = [scaled(min(base * 2**i, 256), width) for i in range(self.depth)]
        self.skip_levels = self.depth - 2 if skip_levels is None else skip_levels
        self.encoder = _encoder(in_channels, channels)
        bottom = channels[-1]
        self.bottleneck = nn.Sequential(conv_block(bottom, bottom), nn.Conv2d(bottom, max(4, bottom // 4), 1),
                                        nn.LeakyReLU(0.1), conv_block(max(4, bottom // 4), bottom))
        decoder: list[nn.Module] = []
        # decoder stage j brings resolution 1/2^(depth-j) to 1/2^(depth-j-1); it joins encoder
        # stage depth-j-2's output (same resolution) when that level keeps its skip
        for j in range(self.depth):
            level = self.depth - 1 - j
            c_in = channels[level]
            c_out = channels[level - 1] if level > 0 else channels[0]
            skip = channels[level - 1] if level > 0 and self._has_skip(level - 1) else 0
            decoder.append(nn.ModuleDict({"up": nn.Upsample(scale_factor=2, mode="nearest"),
                                          "conv": nn.Sequential(conv_block(c_in + skip, c_out), conv_block(c_out, c_out))}))
        self.decoder = nn.ModuleList(decoder)
        self.output = nn.Conv2d(channels[0], in_channels, 1)

    def _has_skip(self, level: int) -> bool:
        """Encoder stage ``level`` output is joined when it is among the deepest ``skip_levels``."""
        return level >= self.depth - 1 - self.skip_levels

    def forward(self, x: torch.Tensor) -> Reconstruction:
        self.check_input(x)
        outputs = encode_stages(self.encoder, self.normalise(x))
        h = self.bottleneck(outputs[-1])
        for j, stage in enumerate(self.decoder):
            level = self.depth - 1 - j
            h = stage["up"](h)
            if level > 0 and self._has_skip(level - 1):
                h = torch.cat([h, outputs[level - 1]], dim=1)
            h = stage["conv"](h)
        return Reconstruction(self.output(h))


ENCODER_DECODERS: Registry[Callable[..., EncoderDecoder]] = Registry("encoder-decoder")


def _fixed(depth: int) -> Callable[..., EncoderDecoder]:
    def build(in_channels: int, input_size: int, width: float = 1.0, pretrained: str | None = None) -> EncoderDecoder:
        return ConvAE(in_channels, input_size, depth=depth, width=width)

    return build


ENCODER_DECODERS.register("ae28")(_fixed(2))
ENCODER_DECODERS.register("ae32")(_fixed(3))
ENCODER_DECODERS.register("ae224")(_fixed(5))
ENCODER_DECODERS.register("ae")(lambda in_channels, input_size, width=1.0, pretrained=None: ConvAE(in_channels, input_size, width=width))
ENCODER_DECODERS.register("vae")(
    lambda in_channels, input_size, width=1.0, pretrained=None: ConvAE(in_channels, input_size, width=width, variational=True)
)
ENCODER_DECODERS.register("unet")(lambda in_channels, input_size, width=1.0, pretrained=None: UNet(in_channels, input_size, width=width))


def build_autoencoder(name: str, in_channels: int, input_size: int, width: float = 1.0, pretrained: str | None = None) -> EncoderDecoder:
    """A registered encoder-decoder; ``pretrained`` (``--pretrained``) reaches the ones with an
    ImageNet encoder and is ignored by the randomly initialised ones, as ``build_net`` does."""
    return ENCODER_DECODERS.get(name)(in_channels=in_channels, input_size=input_size, width=width, pretrained=pretrained)
