"""Supervision modes: how a training batch of nominal images gets its anomalies.

Each mode registers a class in ``SUPERVISION``; it receives the nominal batch (already
augmented) and returns the batch to train on, with labels and ground-truth maps.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from fcdd.data.noise import NOISE
from fcdd.data.noise.shapes import random_patch
from fcdd.registry import Registry

if TYPE_CHECKING:
    from fcdd.config import Config
    from fcdd.data.base import DataSplits


@dataclass
class Batch:
    images: torch.Tensor
    labels: torch.Tensor
    maps: torch.Tensor
    #: train with the per-pixel loss (ground-truth maps are meaningful)
    use_maps: bool = False


def anomaly_count(batch_size: int, fraction: float) -> int:
    return int(round(batch_size * fraction))


class Supervision:
    def __init__(self, config: Config, splits: DataSplits) -> None:
        self.config = config
        self.fraction = config.anomaly_fraction

    def __call__(self, images: torch.Tensor, maps: torch.Tensor, generator: torch.Generator) -> Batch:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__

    def with_fraction(self, fraction: float) -> Supervision:
        """The same supervision (same pools, nothing rebuilt) making ``fraction`` of each batch
        anomalous: calibration wants every image turned, galleries and the preview half."""
        clone = copy.copy(self)
        clone.fraction = fraction
        return clone

    @classmethod
    def adjust_splits(cls, config: Config, splits: DataSplits) -> DataSplits:
        """New splits with what the mode needs taken from the data before training; default: as given."""
        return splits


SUPERVISION: Registry[Callable[[Config, DataSplits], Supervision]] = Registry("supervision mode")


@SUPERVISION.register("unsupervised")
class Unsupervised(Supervision):
    """Nominal images only (HSC, AE and attention baselines)."""

    def __call__(self, images, maps, generator):
        return Batch(images, torch.zeros(len(images), dtype=torch.long, device=images.device), maps)

    def describe(self) -> str:
        return "unsupervised: nominal images only"


class NoiseSupervision(Supervision):
    """Modes fed by a noise / outlier source (``--noise-mode``)."""

    def __init__(self, config, splits) -> None:
        super().__init__(config, splits)
        self.source = NOISE.get(config.noise_mode)(config, splits)

    def _split(self, images: torch.Tensor) -> int:
        return anomaly_count(len(images), self.fraction)

    @classmethod
    def adjust_splits(cls, config, splits):
        return NOISE.get(config.noise_mode).adjust_splits(config, splits)


@SUPERVISION.register("malformed_normal")
class MalformedNormal(NoiseSupervision):
    """Nominal images corrupted by the noise source are the anomalies (image labels only)."""

    pixel_maps = False

    def __call__(self, images, maps, generator):
        k = self._split(images)
        labels = torch.zeros(len(images), dtype=torch.long, device=images.device)
        if k == 0:
            return Batch(images, labels, maps, self.pixel_maps)
        content, where = self.source(images[:k], generator)
        if self.source.full_frame:
            where = random_patch(images[:k].shape, generator, images.device)
        corrupted = images[:k] * (1 - where) + content * where
        images = torch.cat([corrupted, images[k:]])
        maps = torch.cat([(where > 0.5).to(maps.dtype), maps[k:]])
        labels[:k] = 1
        return Batch(images, labels, maps, self.pixel_maps)

    def describe(self) -> str:
        return f"{self.config.supervise_mode}: {self.config.noise_mode} noise on {self.fraction:.0%} of every batch"


@SUPERVISION.register("malformed_normal_gt")
class MalformedNormalGT(MalformedNormal):
    """As malformed_normal, and the corruption's pixel mask is the ground truth (per-pixel loss)."""

    pixel_maps = True


@SUPERVISION.register("noise")
class NoiseAsAnomalies(NoiseSupervision):
    """The noise / outlier images themselves are the anomalies (outlier exposure).

    Sources with real maps (``mvtec_gt``) switch on the per-pixel loss.
    """

    def __call__(self, images, maps, generator):
        k = self._split(images)
        labels = torch.zeros(len(images), dtype=torch.long, device=images.device)
        if k == 0:
            return Batch(images, labels, maps, False)
        content, where = self.source(images[:k], generator)
        labels[:k] = 1
        use_maps = not self.source.full_frame
        return Batch(torch.cat([content, images[k:]]), labels, torch.cat([(where > 0.5).to(maps.dtype), maps[k:]]), use_maps)

    def describe(self) -> str:
        return f"noise: {self.config.noise_mode} outliers as {self.fraction:.0%} of every batch"


@SUPERVISION.register("other")
class RealAnomalies(Supervision):
    """Real anomalous training images (e.g. ``train/<class>/anomalous`` of the custom layout).

    With ground-truth maps they train the per-pixel loss; ``--oe-limit`` caps how many are used.
    """

    def __init__(self, config, splits) -> None:
        super().__init__(config, splits)
        pool = splits.train_anomalies if splits is not None else None
        if pool is None or len(pool) == 0:
            raise ValueError("supervise mode 'other' needs real anomalous training images (custom layout: train/<class>/anomalous/)")
        if config.oe_limit is not None:
            pool = pool.subset(torch.randperm(len(pool), generator=torch.Generator().manual_seed(config.seed))[: config.oe_limit])
        self.pool = pool
        self.use_maps = pool.has_maps

    def __call__(self, images, maps, generator):
        k = anomaly_count(len(images), self.fraction)
        labels = torch.zeros(len(images), dtype=torch.long, device=images.device)
        if k == 0:
            return Batch(images, labels, maps, self.use_maps)
        pick = torch.randint(len(self.pool), (k,), generator=generator)
        real = self.pool.images[pick].float().div(255).to(images.device)
        if real.shape[1] != images.shape[1]:
            real = real.mean(1, keepdim=True) if images.shape[1] == 1 else real.expand(-1, images.shape[1], -1, -1)
        real_maps = self.pool.maps[pick].to(maps.dtype).to(maps.device)
        labels[:k] = 1
        return Batch(torch.cat([real, images[k:]]), labels, torch.cat([real_maps, maps[k:]]), self.use_maps)

    def describe(self) -> str:
        return f"other: {len(self.pool)} real anomalous training images as {self.fraction:.0%} of every batch"


def build_supervision(config: Config, splits: DataSplits) -> Supervision:
    return SUPERVISION.get(config.supervise_mode)(config, splits)
