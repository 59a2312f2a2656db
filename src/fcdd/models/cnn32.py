"""The 32x32 net for CIFAR-sized images (FCDD paper, Appendix)."""

from __future__ import annotations

from torch import nn

from fcdd.models.base import FCDDNet, conv_bn_act, scaled
from fcdd.models.registry import NETS


class CNN32(FCDDNet):
    """Three conv stages, two poolings: an 8x8 output map for a 32x32 input."""

    def __init__(self, in_channels: int = 3, input_size: int = 32, width: float = 1.0, pretrained: str | None = None) -> None:
        super().__init__(in_channels, input_size)
        c1, c2, c3 = scaled(128, width), scaled(256, width), scaled(128, width)
        self.features = nn.Sequential(
            *conv_bn_act(in_channels, c1),
            nn.MaxPool2d(2, 2),
            *conv_bn_act(c1, c2),
            *conv_bn_act(c2, c2),
            nn.MaxPool2d(2, 2),
            *conv_bn_act(c2, c3),
        )
        self.head = nn.Conv2d(c3, 1, 1)


NETS.register("cnn32")(CNN32)
