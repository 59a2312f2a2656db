"""Fully convolutional networks that know their receptive field.

FCDD's explanation is the network's output map; to put each output pixel back onto the input
we need, for every output location, where its receptive field is centred and how large it is.
``ReceptiveField`` is that bookkeeping, computed layer by layer from kernel, stride, padding and
dilation, so every network gets it for free.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from fcdd.data.transforms import to_float

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: input normalisations an ``FCDDNet`` can apply (``use_preprocessing``, the ``preprocessing`` option)
PREPROCESSING = ("channels", "lcn_minmax")
#: images per chunk when the min-max range of a training set is measured (bounded memory)
RANGE_CHUNK = 64


def local_contrast_normalise(x: torch.Tensor) -> torch.Tensor:
    """Each image minus its mean, divided by its mean absolute deviation (over all its pixels and
    channels), as the FCDD paper's MVTec pipeline does ("l1" LCN); a flat image is only centred.

    Exposure and contrast differences between photos vanish: the result is the same for ``a * x + b``
    with any ``a > 0``."""
    centred = x - x.mean(dim=(1, 2, 3), keepdim=True)
    spread = centred.abs().mean(dim=(1, 2, 3), keepdim=True)
    return centred / torch.where(spread > 0, spread, torch.ones_like(spread))


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one output pixel, in input pixel units.

    ``size``: side length of the field; ``jump``: input distance between neighbouring output
    pixels (the total stride); ``start``: input coordinate of the centre of output pixel 0
    (output pixel ``i`` is centred on ``start + i * jump``).
    """

    size: int = 1
    jump: int = 1
    start: float = 0.0

    def after(self, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> ReceptiveField:
        """The field after a sliding-window layer with these settings."""
        effective = dilation * (kernel - 1) + 1
        return ReceptiveField(
            size=self.size + (effective - 1) * self.jump,
            jump=self.jump * stride,
            start=self.start + ((effective - 1) / 2 - padding) * self.jump,
        )

    def centre(self, index: int) -> float:
        return self.start + index * self.jump

    @property
    def gaussian_std(self) -> float:
        """Spread of the Gaussian that carries an output unit back to the input: a quarter of
        the field, so the bulk of the mass lies in the field's central half."""
        return self.size / 4


def _pair(value) -> int:
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise ValueError(f"only square windows are tracked, got {value}")
        return int(value[0])
    return int(value)


def sliding_layers(module: nn.Module) -> Iterable[nn.Module]:
    """Convolution and pooling layers of ``module`` in definition order."""
    for sub in module.modules():
        if isinstance(sub, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            yield sub


def receptive_field_of(layers: Iterable[nn.Module], field: ReceptiveField | None = None) -> ReceptiveField:
    """Chain the receptive field through sliding-window layers applied one after another."""
    field = field or ReceptiveField()
    for layer in layers:
        dilation = getattr(layer, "dilation", 1)
        field = field.after(
            _pair(layer.kernel_size), _pair(layer.stride), _pair(layer.padding), _pair(dilation)
        )
    return field


class FCDDNet(nn.Module):
    """Base of the fully convolutional nets: ``features`` produce a one-channel output map.

    Subclasses set ``self.features`` (everything before the head) and ``self.head`` (a 1x1
    convolution to one channel) and may override ``receptive_field`` when their modules are not
    a simple chain (residual blocks). ``in_channels`` and ``input_size`` say what the net
    expects; ``normalisation`` names the input normalisation the weights assume ('imagenet'
    for pretrained backbones, else 'dataset').
    """

    normalisation: str = "dataset"
    #: whether the net ends in a spatial map (FCDD) or in a global vector (HSC)
    spatial: bool = True
    #: standardise every image on its own before the channel normalisation (see ``normalise``)
    standardise_inputs: bool = False
    #: the input normalisation, one of ``PREPROCESSING`` (set by ``use_preprocessing``)
    preprocessing: str = "channels"
    #: how far (px) a unit's true receptive centre may lie from ``receptive_field.centre``
    #: (nets that upsample a coarse branch alternate between neighbouring units)
    centre_tolerance: float = 0.0
    #: whether ``embed`` is standardised per channel, which gives ``--feature-noise`` its scale
    standardised_features: bool = False

    def __init__(self, in_channels: int, input_size: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.input_size = input_size
        channels = 3 if self.normalisation == "imagenet" else in_channels
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if self.normalisation == "imagenet" else ((0.5,) * channels, (0.25,) * channels)
        self.register_buffer("input_mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("input_std", torch.tensor(std).view(1, -1, 1, 1))

    def set_input_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Fix the per-channel normalisation (estimated on the training set for 'dataset' nets).

        It lives inside the net so that prediction, export and serving see [0, 1] images and
        normalise exactly as training did.
        """
        if self.standardise_inputs:  # standardised images have these statistics whatever the data set
            mean, std = torch.full_like(self.input_mean, 0.5), torch.full_like(self.input_std, 0.25)
        self.input_mean.copy_(torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.input_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-3).view(1, -1, 1, 1))

    def use_preprocessing(self, name: str) -> None:
        """Choose the input normalisation. ``lcn_minmax`` adds the buffers ``input_low`` and
        ``input_high`` (per channel, set by ``fit_input_range``), so they are part of the state
        dict and every snapshot, prediction and export normalises as training did."""
        if name not in PREPROCESSING:
            raise ValueError(f"preprocessing must be one of {', '.join(PREPROCESSING)}, got {name!r}")
        self.preprocessing = name
        if name == "lcn_minmax" and not hasattr(self, "input_low"):
            device = self.input_mean.device
            self.register_buffer("input_low", torch.zeros(1, self.in_channels, 1, 1, device=device))
            self.register_buffer("input_high", torch.ones(1, self.in_channels, 1, 1, device=device))

    @torch.no_grad()
    def fit_input_range(self, images: torch.Tensor, chunk: int = RANGE_CHUNK) -> None:
        """``lcn_minmax``: the per-channel minimum and maximum of the contrast-normalised training
        images (uint8 or [0, 1]; the paper hard-codes these per MVTec class), measured in chunks
        on the net's device; other preprocessing: nothing to measure."""
        if self.preprocessing != "lcn_minmax" or len(images) == 0:
            return
        low = torch.full((self.in_channels,), math.inf, device=self.input_low.device)
        high = torch.full((self.in_channels,), -math.inf, device=self.input_low.device)
        for start in range(0, len(images), chunk):
            lcn = local_contrast_normalise(to_float(images[start : start + chunk]).to(self.input_low.device))
            low = torch.minimum(low, lcn.amin(dim=(0, 2, 3)))
            high = torch.maximum(high, lcn.amax(dim=(0, 2, 3)))
        self.input_low.copy_(low.view(1, -1, 1, 1))
        self.input_high.copy_(torch.maximum(high, low + 1e-6).view(1, -1, 1, 1))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images to the net's input space; grey images are repeated for RGB backbones.

        With ``standardise_inputs`` each image is first shifted and scaled to mean 0.5 and
        standard deviation 0.25 over all its pixels and channels (colour balance is kept): photos
        of the same part taken at different exposures then look alike to the net, as the FCDD
        paper's per-image contrast normalisation intends. ``lcn_minmax`` replaces both that and
        the channel normalisation (LCN is unchanged by a per-image standardisation anyway): the
        paper's pipeline feeds its nets the min-max scaled LCN images, ImageNet weights included.
        """
        if self.preprocessing == "lcn_minmax":
            x = (local_contrast_normalise(x) - self.input_low) / (self.input_high - self.input_low)
            return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 and self.input_mean.shape[1] == 3 else x
        if self.standardise_inputs:
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            std = x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
            x = (x - mean) / std * 0.25 + 0.5
        if x.shape[1] == 1 and self.input_mean.shape[1] == 3:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.input_mean) / self.input_std

    @property
    def receptive_field(self) -> ReceptiveField:
        return receptive_field_of(sliding_layers(self))

    @property
    def heatmap_std(self) -> float:
        """Spread of the heatmap Gaussian; a net whose field overstates its detail overrides it."""
        return self.receptive_field.gaussian_std

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map before the 1x1 head, from [0, 1] images."""
        return self.features(self.normalise(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    def output_size(self, input_size: int | None = None) -> int:
        size = input_size or self.input_size
        with torch.no_grad():
            was_training = self.training
            self.eval()
            out = self(torch.zeros(1, self.in_channels, size, size, device=self.device))
            self.train(was_training)
        return int(out.shape[-1])

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def frozen_prefix(self) -> list[nn.Module]:
        """Modules kept fixed during training (pretrained early stages)."""
        return []


def conv_bn_act(c_in: int, c_out: int, kernel: int = 3, bn: bool = True, negative_slope: float = 0.1) -> list[nn.Module]:
    """A 'same' convolution, optional batch norm and leaky ReLU, as in the paper's nets."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(c_out, eps=1e-4, affine=False))
    layers.append(nn.LeakyReLU(negative_slope))
    return layers


def scaled(channels: int, width: float) -> int:
    return max(4, int(round(channels * width)))


@torch.no_grad()
def channel_statistics(embed, images: torch.Tensor, chunk: int, device: torch.device | str,
                       min_std: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per-channel mean and standard deviation of ``embed(images)`` over every location of every
    image (uint8 or [0, 1]), accumulated in float64 over chunks (bounded memory); None for no images.
    Shapes (1, C, 1, 1), float32; the deviation is at least ``min_std``, so it can divide."""
    total, squares, count = 0.0, 0.0, 0
    for start in range(0, len(images), chunk):
        f = embed(to_float(images[start : start + chunk]).to(device)).double()
        total = total + f.sum((0, 2, 3))
        squares = squares + f.pow(2).sum((0, 2, 3))
        count += f.shape[0] * f.shape[2] * f.shape[3]
    if not count:
        return None
    mean = total / count
    std = (squares / count - mean.pow(2)).clamp_min(0).sqrt()
    return mean.float().view(1, -1, 1, 1), std.float().clamp_min(min_std).view(1, -1, 1, 1)
