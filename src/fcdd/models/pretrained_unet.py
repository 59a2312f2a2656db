"""A U-Net for gradient attention whose encoder is EfficientNet-Lite0's first stages (ImageNet).

A randomly initialised encoder trained on a few hundred nominal images sees little beyond
colour and borders, so its Grad-CAM maps hardly move with a defect. ImageNet stages give the
attention layers features that respond to local structure. Encoder stages (named like the
other encoder-decoders, ``encoder.0`` ... ``encoder.3``) end at strides 2, 4, 8 and 16; the two
earliest stay frozen, as in the FCDD backbones. The decoder joins the stride-4 and stride-8
stages by skips (not the stride-2 one, through which it could copy the input, defects too).
"""

from __future__ import annotations

import torch
from torch import nn

from fcdd.models.autoencoders import ENCODER_DECODERS, EncoderDecoder, Reconstruction, conv_block, encode_stages
from fcdd.models.base import scaled
from fcdd.models.efficientnet import EfficientNetLite0, imagenet_state_dict
from fcdd.models.pretrained import load_matching

#: (first block, end block, channels) of each encoder stage after the stem
STAGE_BLOCKS = ((0, 1, 16), (1, 3, 24), (3, 5, 40), (5, 11, 112))
FROZEN_STAGES = 2
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def stage_key(key: str) -> str | None:
    """Checkpoint key -> key of the encoder built by ``efficientnet_stages``."""
    if key.startswith("_conv_stem."):
        return "0.0.0." + key[len("_conv_stem."):]
    if key.startswith("_bn0."):
        return "0.0.1." + key[len("_bn0."):]
    if key.startswith("_blocks."):
        index, rest = key[len("_blocks."):].split(".", 1)
        for stage, (first, end, _) in enumerate(STAGE_BLOCKS):
            if first <= int(index) < end:
                return f"0.1.{rest}" if stage == 0 else f"{stage}.{int(index) - first}.{rest}"
    return None


def efficientnet_stages() -> nn.Sequential:
    """Stem + block 0, blocks 1-2, 3-4 and 5-10 of EfficientNet-Lite0, one ``Sequential`` each."""
    full = EfficientNetLite0()
    stem = nn.Sequential(full._conv_stem, full._bn0, nn.ReLU6())
    stages = [nn.Sequential(stem, full._blocks[0])]
    stages += [nn.Sequential(*full._blocks[first:end]) for first, end, _ in STAGE_BLOCKS[1:]]
    return nn.Sequential(*stages)


class EfficientUNet(EncoderDecoder):
    """U-Net decoder on a pretrained EfficientNet-Lite0 encoder (stride 16)."""

    bottleneck_layer = "bottleneck"
    normalisation = "imagenet"

    def __init__(self, in_channels: int, input_size: int, width: float = 1.0, pretrained: str | None = "auto") -> None:
        super().__init__(in_channels, input_size, len(STAGE_BLOCKS))
        mean = IMAGENET_MEAN if in_channels == 3 else (sum(IMAGENET_MEAN) / 3,)
        std = IMAGENET_STD if in_channels == 3 else (sum(IMAGENET_STD) / 3,)
        self.input_mean.copy_(torch.tensor(mean).view(1, -1, 1, 1))
        self.input_std.copy_(torch.tensor(std).view(1, -1, 1, 1))
        self.encoder = efficientnet_stages()
        state = imagenet_state_dict(pretrained)
        self.pretrained = state is not None
        if state is not None:
            load_matching(self.encoder, state, stage_key, "EfficientNet-Lite0")
        channels = [c for _, _, c in STAGE_BLOCKS]
        bottom, narrow = channels[-1], max(8, scaled(32, width))
        self.bottleneck = nn.Sequential(nn.Conv2d(bottom, narrow, 1), nn.LeakyReLU(0.1), conv_block(narrow, bottom))
        ups = []
        for level in range(len(channels) - 1, -1, -1):
            skip = channels[level - 1] if level in (2, 3) else 0
            c_out = scaled(max(channels[level - 1] if level else 16, 16), width)
            c_in = channels[level] if level == len(channels) - 1 else ups[-1].out_channels
            ups.append(DecoderStage(c_in, skip, c_out))
        self.decoder = nn.ModuleList(ups)
        self.output = nn.Conv2d(ups[-1].out_channels, in_channels, 1)

    def frozen_prefix(self) -> list[nn.Module]:
        """The stride-2 and stride-4 stages keep their ImageNet weights."""
        return list(self.encoder[:FROZEN_STAGES]) if self.pretrained else []

    def forward(self, x: torch.Tensor) -> Reconstruction:
        self.check_input(x)
        h = self.normalise(x)
        if h.shape[1] == 1:
            h = h.expand(-1, 3, -1, -1)
        outputs = encode_stages(self.encoder, h)
        h = self.bottleneck(outputs[-1])
        for j, stage in enumerate(self.decoder):
            level = len(self.decoder) - 1 - j
            h = stage(h, outputs[level - 1] if level in (2, 3) else None)
        return Reconstruction(self.output(h))


class DecoderStage(nn.Module):
    """Up-sample by two, join the skip (if any), two conv blocks."""

    def __init__(self, c_in: int, skip: int, c_out: int) -> None:
        super().__init__()
        self.out_channels = c_out
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Sequential(conv_block(c_in + skip, c_out), conv_block(c_out, c_out))

    def forward(self, h: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        h = self.up(h)
        return self.conv(torch.cat([h, skip], 1) if skip is not None else h)


ENCODER_DECODERS.register("unet_effnet")(
    lambda in_channels, input_size, width=1.0, pretrained=None: EfficientUNet(in_channels, input_size, width=width, pretrained=pretrained)
)
