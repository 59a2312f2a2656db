"""Locally aware patch features from the project's ImageNet backbones (PatchCore's embedding).

PatchCore describes every location of an image by the activations of two intermediate
stages of a frozen ImageNet network -- mid-level features, generic enough to transfer and
still spatially fine (the paper takes layer2 and layer3 of a WideResNet-50: strides 8 and
16). Each stage's map is averaged over a 3x3 neighbourhood (so a patch feature sees its
surroundings without losing resolution), the deeper map is upsampled bilinearly to the
stride-8 grid, and the maps are concatenated on the channel axis, optionally reduced to a
fixed width by adaptive average pooling over channels.

Here the backbones are the project's own (``fcdd.models``), with their offline ImageNet
weights; only the blocks up to the deepest tapped one are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fcdd.models import efficientnet, mobilenet, vgg
from fcdd.models.base import IMAGENET_MEAN, IMAGENET_STD
from fcdd.models.pretrained import load_matching, strip_prefix

#: backbone -> tapped blocks (indices as the ImageNet checkpoint numbers them), shallow to deep.
#: Each pair is the end of the last stride-8 stage and the end of the last stride-16 stage
#: before the next downsampling, the counterparts of a ResNet's layer2 and layer3:
DEFAULT_LAYERS: dict[str, tuple[int, ...]] = {
    # ``_blocks.N``: block 4 ends the 40-channel stage (stride 8), block 10 the 112-channel
    # stage (stride 16, just before the stride-32 stage); 152 channels. The same two cuts as
    # the project's efficientnet_lite0_ms FCDD net.
    "efficientnet_lite0": (4, 10),
    # torchvision ``features.N``: 6 ends the 32-channel stage (stride 8), 13 the 96-channel
    # stage (stride 16, just before the stride-32 stage); 128 channels. The cuts of the
    # project's mobilenetv2 / mobilenetv2_s16 FCDD nets.
    "mobilenetv2": (6, 13),
    # torchvision ``vgg11_bn.features.N``: 20 is the ReLU after the fourth stage's second
    # convolution (512 channels, stride 8: the project's vgg11 FCDD cut), 27 the same in the
    # fifth stage (512 channels, stride 16, before the last pooling); 1024 channels.
    "vgg11": (20, 27),
}


class Trunk(nn.Module):
    """A backbone as ``stem`` (run first, never tapped) and ``blocks`` (tapped by index)."""

    def __init__(self, stem: nn.Module, blocks: nn.Sequential) -> None:
        super().__init__()
        self.stem, self.blocks = stem, blocks


@dataclass(frozen=True)
class BackboneSpec:
    """How to build a backbone's trunk, find its ImageNet weights and map their keys onto it."""

    build: Callable[[], Trunk]
    weights: Callable[[str | None], dict[str, Tensor] | None]
    key_map: Callable[[str], str | None]


def _efficientnet_trunk() -> Trunk:
    full = efficientnet.EfficientNetLite0()
    stem = nn.Sequential(full._conv_stem, full._bn0, nn.ReLU6(inplace=True))
    return Trunk(stem, nn.Sequential(*full._blocks))


def _efficientnet_key(key: str) -> str | None:
    for old, new in (("_conv_stem.", "stem.0."), ("_bn0.", "stem.1."), ("_blocks.", "blocks.")):
        if key.startswith(old):
            return new + key[len(old):]
    return None


def _mobilenet_trunk() -> Trunk:
    return Trunk(nn.Identity(), mobilenet.mobilenet_v2_features())


def _vgg11_trunk() -> Trunk:
    # not in place: a tapped batch-norm output must not be overwritten by the next ReLU
    layers, _ = vgg.vgg_bn_layers(vgg.VGG11_LAYOUT, 3, inplace=False)
    return Trunk(nn.Identity(), nn.Sequential(*layers))


def _features_key(key: str) -> str | None:
    inner = strip_prefix("features.")(key)
    return None if inner is None else "blocks." + inner


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_lite0": BackboneSpec(_efficientnet_trunk, efficientnet.imagenet_state_dict, _efficientnet_key),
    "mobilenetv2": BackboneSpec(_mobilenet_trunk, mobilenet.imagenet_state_dict, _features_key),
    "vgg11": BackboneSpec(_vgg11_trunk, vgg.imagenet_state_dict, _features_key),
}


def channel_pool(x: Tensor, channels: int) -> Tensor:
    """Adaptive average pooling over the channel axis of ``x`` (B, C, h, w) to ``channels``.

    Output channel ``j`` averages input channels ``floor(j C / channels)`` to
    ``ceil((j + 1) C / channels) - 1``; with ``channels > C`` channels are repeated.
    """
    b, _, h, w = x.shape
    return F.adaptive_avg_pool3d(x.unsqueeze(1), (channels, h, w)).view(b, channels, h, w)


class PatchFeatures(nn.Module):
    """Frozen ImageNet backbone -> locally aware patch features on its stride-8 grid.

    ``backbone``: one of ``DEFAULT_LAYERS``. ``pretrained``: passed to the project's weight
    loader ('auto' finds the offline ImageNet weights, a path loads a file, 'none' keeps the
    random initialisation, e.g. for tests). ``in_channels``: 1 (grey, repeated to RGB) or 3.
    ``layers``: tapped block indices (default ``DEFAULT_LAYERS[backbone]``); the output lies on
    the grid of the shallowest one. ``dim``: None keeps all concatenated channels; otherwise
    every layer's map is first pooled over channels to ``dim`` and the concatenation then to
    ``dim``, so each layer gets an equal share of the output (as in the paper's code).

    ``forward(images)``: [0, 1] images (B, in_channels, H, W) -> (B, out_dim, H / stride,
    W / stride) for sides that are multiples of the deepest tapped stride (16 by default).
    ImageNet normalisation happens inside; each map is averaged over its 3x3 neighbourhood
    (stride 1; border windows average only the positions inside the map), deeper maps are
    upsampled bilinearly. All parameters are frozen and the module stays in eval mode
    (``train()`` does not change it), but gradients still flow to the input.
    """

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        pretrained: str | None = "auto",
        in_channels: int = 3,
        layers: Sequence[int] | None = None,
        dim: int | None = None,
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise ValueError(f"dim must be an integer >= 1 or None, got {dim!r}")
        spec = BACKBONES[backbone]
        trunk = spec.build()
        layers = tuple(DEFAULT_LAYERS[backbone] if layers is None else layers)
        available = len(trunk.blocks)
        if not layers or len(set(layers)) != len(layers) or any(
            isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < available for i in layers
        ):
            raise ValueError(f"layers must be distinct block indices in [0, {available}), got {layers!r}")
        self.backbone, self.in_channels, self.dim = backbone, in_channels, dim
        self.layers = tuple(sorted(layers))
        # keep only the blocks up to the deepest tap, before loading: the rest of the checkpoint
        # is skipped by ``load_matching``
        trunk.blocks = trunk.blocks[: self.layers[-1] + 1]
        self.trunk = trunk
        self.pretrained_loaded = False
        state = spec.weights(pretrained)
        if state is not None:
            load_matching(trunk, state, spec.key_map, backbone)
            self.pretrained_loaded = True
        self.register_buffer("input_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("input_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.local_mean = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        super().train(False)
        self.layer_channels, self.layer_strides = self._probe()
        self.stride = self.layer_strides[0]
        self.out_dim = sum(self.layer_channels) if dim is None else dim

    def train(self, mode: bool = True) -> PatchFeatures:
        """Stays in eval mode: batch-norm statistics are ImageNet's and must not move."""
        return super().train(False)

    @torch.no_grad()
    def _probe(self, side: int = 64) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Channels and strides of the tapped maps, from one small forward pass."""
        maps = self.layer_maps(torch.zeros(1, self.in_channels, side, side))
        return tuple(m.shape[1] for m in maps), tuple(side // m.shape[-1] for m in maps)

    def layer_maps(self, images: Tensor) -> list[Tensor]:
        """The raw tapped maps (before local averaging), shallow to deep."""
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(f"expected images (B, {self.in_channels}, H, W), got {tuple(images.shape)}")
        x = images.to(self.input_mean.dtype)
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)
        x = self.trunk.stem((x - self.input_mean) / self.input_std)
        taps, maps = set(self.layers), []
        for index, block in enumerate(self.trunk.blocks):
            x = block(x)
            if index in taps:
                maps.append(x)
        return maps

    def forward(self, images: Tensor) -> Tensor:
        maps = self.layer_maps(images)
        grid = maps[0].shape[-2:]
        parts = []
        for feature in maps:
            feature = self.local_mean(feature)
            if feature.shape[-2:] != grid:
                feature = F.interpolate(feature, size=grid, mode="bilinear", align_corners=False)
            if self.dim is not None:
                feature = channel_pool(feature, self.dim)
            parts.append(feature)
        out = torch.cat(parts, dim=1)
        if self.dim is not None and len(parts) > 1:
            out = channel_pool(out, self.dim)
        return out

    def extra_repr(self) -> str:
        return f"backbone={self.backbone!r}, layers={self.layers}, stride={self.stride}, out_dim={self.out_dim}"
