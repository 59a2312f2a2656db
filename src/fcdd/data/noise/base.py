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

    @classmethod
    def adjust_splits(cls, config: Config, splits: DataSplits) -> DataSplits:
        """Sources that train on real test-set defects return new splits without them here."""
        return splits


class PoolSource(NoiseSource):
    """Whole-image outliers drawn from a fixed pool of images (``pool``: uint8 N, C, H, W).

    ``--oe-limit`` keeps only that many distinct images (chosen with the run's seed).
    """

    full_frame = True

    def __init__(self, config: Config, splits: DataSplits) -> None:
        super().__init__(config, splits)
        pool = self.load_pool(config, splits)
        if len(pool) == 0:
            raise ValueError(f"noise mode {config.noise_mode}: no outlier images found")
        if config.oe_limit is not None:
            keep = torch.randperm(len(pool), generator=torch.Generator().manual_seed(config.seed))[: config.oe_limit]
            pool = pool[keep]
        self.pool = pool

    def load_pool(self, config: Config, splits: DataSplits) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, nominal, generator):
        pick = torch.randint(len(self.pool), (len(nominal),), generator=generator)
        return whole_image_outliers(self.pool[pick], nominal)


def whole_image_outliers(images: torch.Tensor, nominal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(content, where)`` of uint8 outlier images replacing a nominal batch whole: brought to
    the batch's channels and size, every pixel marked."""
    content = images.float().div(255).to(nominal.device)
    c = nominal.shape[1]
    if content.shape[1] != c:
        content = content.mean(1, keepdim=True) if c == 1 else content.expand(-1, c, -1, -1)
    if content.shape[-2:] != nominal.shape[-2:]:
        content = torch.nn.functional.interpolate(content, size=nominal.shape[-2:], mode="bilinear", align_corners=False)
    return content, torch.ones(len(nominal), 1, *nominal.shape[-2:], device=nominal.device)


NOISE: Registry[Callable[[Config, DataSplits], NoiseSource]] = Registry("noise mode")
