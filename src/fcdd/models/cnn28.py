"""The 28x28 net for Fashion-MNIST / MNIST / EMNIST sized images (FCDD paper, Appendix)."""

from __future__ import annotations

from torch import nn

from fcdd.models.base import FCDDNet, conv_bn_act, scaled
from fcdd.models.registry import NETS


class CNN28(FCDDNet):
    """Two conv stages with pooling: a 7x7 output map for a 28x28 input."""

    def __init__(self, in_channels: int = 1, input_size: int = 28, width: float = 1.0, pretrained: str | None = None) -> None:
        super().__init__(in_channels, input_size)
        c1, c2 = scaled(128, width), scaled(128, width)
        self.features = nn.Sequential(
            *conv_bn_act(in_channels, c1),
            nn.MaxPool2d(2, 2),
            *conv_bn_act(c1, c2),
            nn.MaxPool2d(2, 2),
            *conv_bn_act(c2, c2),
        )
        self.head = nn.Conv2d(c2, 1, 1)


NETS.register("cnn28")(CNN28)
