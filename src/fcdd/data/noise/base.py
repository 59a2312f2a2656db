"""What a noise / outlier source is: something that makes anomalous images for a nominal batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from fcdd.registry import Registry

if TYPE_CHECKING:
    from fcdd.config import Config
    from fcdd.data.base import DataSplits


class NoiseSource:
    """Makes ``(content, where)`` for a batch of nominal images in [0, 1].

    ``content`` (B, C, H, W) holds the anomalous pixels, ``where`` (B, 1, H, W) in [0, 1] says
    which pixels they replace. Local noise (confetti) marks only its blobs; whole-image outliers
    (noise images, other data sets) mark everything. The supervision mode decides how to use them.
    """

    #: whole-image outliers mark every pixel; used by supervision modes that paste patches
    full_frame: bool = False

    def __init__(self, config: Config, splits: DataSplits) -> None:
        self.config = config

    def __call__(self, nominal: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


NOISE: Registry[Callable[[Config, DataSplits], NoiseSource]] = Registry("noise mode")
