"""The 224x224 FCDD net of the paper: VGG11 (with batch norm) up to its fourth stage, 1x1 head."""

from __future__ import annotations

import warnings

from torch import nn

from fcdd.models.base import FCDDNet, scaled
from fcdd.models.pretrained import load_matching, resolve_weights, strip_prefix, torchvision_state_dict
from fcdd.models.registry import NETS

#: torchvision's VGG11 layout: output channels of each 3x3 convolution, "M" a 2x2 max pooling
VGG11_LAYOUT = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
# the FCDD net stops at the last convolution before the fourth pooling (a 28x28 map at 224)
_STAGES = VGG11_LAYOUT[:9]
#: layers (torchvision layout) frozen when ImageNet weights are used: the first four convolutions
#: with their batch norms, ReLUs and the three poolings between them, up to the third pooling
#: (``features[:15]``, as the paper's FCDD_CNN224_VGG_F); the two 512-channel blocks and the head train
_FROZEN_LAYERS = 15


def vgg_bn_layers(layout, in_channels: int, width: float = 1.0, inplace: bool = True) -> tuple[list[nn.Module], int]:
    """Convolution, batch norm and ReLU per channel count, pooling per "M", indexed as in
    torchvision's ``vgg11_bn.features`` (so its weights load as they are); and the channels out."""
    layers: list[nn.Module] = []
    channels = in_channels
    for item in layout:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            out = scaled(int(item), width)
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=inplace)]
            channels = out
    return layers, channels


def imagenet_state_dict(pretrained: str | None = "auto") -> dict | None:
    """VGG11-BN's ImageNet weights, from a file or torchvision when it imports."""
    return resolve_weights(pretrained, "vgg11_bn", [lambda: torchvision_state_dict("vgg11_bn", "VGG11_BN_Weights")])


class VGG11FCDD(FCDDNet):
    """Module indices in ``features`` match torchvision's ``vgg11_bn`` so its weights load as is."""

    def __init__(self, in_channels: int = 3, input_size: int = 224, width: float = 1.0, pretrained: str | None = None) -> None:
        self.normalisation = "imagenet" if pretrained not in (None, "", "none") else "dataset"
        super().__init__(in_channels, input_size)
        layers, channels = vgg_bn_layers(_STAGES, 3 if self.normalisation == "imagenet" else in_channels, width)
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(channels, 1, 1)
        self.pretrained_loaded = False
        if self.normalisation == "imagenet":
            self._load_imagenet(pretrained, width)

    def _load_imagenet(self, pretrained: str, width: float) -> None:
        if width != 1.0:
            warnings.warn("ImageNet weights need width 1.0; using random initialisation", stacklevel=3)
            return
        state = imagenet_state_dict(pretrained)
        if state is None:
            return
        load_matching(self.features, state, strip_prefix("features."), "pretrained VGG11-BN")
        self.pretrained_loaded = True

    def frozen_prefix(self) -> list[nn.Module]:
        return list(self.features[:_FROZEN_LAYERS]) if self.pretrained_loaded else []


NETS.register("vgg11")(VGG11FCDD)
