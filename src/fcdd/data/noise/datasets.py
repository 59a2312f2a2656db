"""Outlier exposure with other data sets: EMNIST, CIFAR-100, ImageNet-style folders, any folder.

``--noise-dir`` names where the outlier data lies (the readers' usual layouts). Folder sources
list every file (``--oe-limit`` keeps a seeded sample of that many) and decode lazily: up to
``MAX_POOL`` files are decoded once into a pool in memory; a larger tree is streamed, each batch
drawing file paths with the run's seeded generator and decoding only those, so an outlier tree
of any size costs one batch of memory and runs stay reproducible. The array sources (EMNIST,
CIFAR-100) read their files whole and keep a sample of at most ``MAX_POOL`` images.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from fcdd.data.base import IMAGE_SUFFIXES, DataError, load_images
from fcdd.data.cifar import read_batch
from fcdd.data.idx import load_idx_split
from fcdd.data.noise.base import NOISE, NoiseSource, PoolSource, whole_image_outliers

log = logging.getLogger("fcdd")

MAX_POOL = 5000


def _noise_dir(config) -> Path:
    if not config.noise_dir:
        raise DataError(f"noise mode {config.noise_mode} needs --noise-dir (where the outlier images are)")
    path = Path(config.noise_dir)
    if not path.is_dir():
        raise DataError(f"{path}: outlier folder not found")
    return path


def _sample(items: list, config) -> list:
    limit = config.oe_limit if config.oe_limit is not None else MAX_POOL
    if len(items) <= limit:
        return items
    keep = torch.randperm(len(items), generator=torch.Generator().manual_seed(config.seed))[:limit]
    return [items[i] for i in sorted(keep.tolist())]


@NOISE.register("emnist")
class EMNISTOutliers(PoolSource):
    def load_pool(self, config, splits):
        images, _ = load_idx_split(_noise_dir(config), "train", transpose=True)
        images = torch.from_numpy(images[_sample(list(range(len(images))), config)].copy())[:, None]
        return images


@NOISE.register("cifar100")
class CIFAR100Outliers(PoolSource):
    def load_pool(self, config, splits):
        root = _noise_dir(config)
        path = root / "train" if (root / "train").is_file() else root / "cifar-100-python" / "train"
        images, _ = read_batch(path, "fine_labels")
        picked = images[_sample(list(range(len(images))), config)]
        return torch.from_numpy(picked.transpose(0, 3, 1, 2).copy())


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _limited(files: list[Path], config) -> list[Path]:
    """A seeded sample of ``--oe-limit`` files (in listing order), or all of them."""
    if config.oe_limit is None or len(files) <= config.oe_limit:
        return files
    keep = torch.randperm(len(files), generator=torch.Generator().manual_seed(config.seed))[: config.oe_limit]
    return [files[i] for i in sorted(keep.tolist())]


@NOISE.register("folder")
class FolderOutliers(PoolSource):
    """Every image below ``--noise-dir`` (recursively): a decoded pool up to ``MAX_POOL`` files,
    streamed per batch beyond (``stream``)."""

    def __init__(self, config, splits) -> None:
        self.files = self.outlier_files(config)
        if not self.files:
            raise DataError(f"{config.noise_dir}: no images found")
        self.channels = splits.train.channels if splits is not None else 3
        self.size = tuple(splits.train.images.shape[-2:]) if splits is not None else config.image_size  # the nominal images' shape
        if len(self.files) <= MAX_POOL:
            super().__init__(config, splits)
            return
        NoiseSource.__init__(self, config, splits)
        self.pool = None
        log.info("noise mode %s: %d outlier files, streamed (each batch decodes only the files it draws)",
                 config.noise_mode, len(self.files))

    def outlier_files(self, config) -> list[Path]:
        return _limited(_files(_noise_dir(config)), config)

    def load_pool(self, config, splits):
        return load_images(self.files, self.channels, self.size)

    def __call__(self, nominal, generator):
        return super().__call__(nominal, generator) if self.pool is not None else self.stream(nominal, generator)

    def stream(self, nominal: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One outlier per nominal image: file indices drawn with ``generator`` (as from a pool),
        each distinct file decoded once."""
        pick = torch.randint(len(self.files), (len(nominal),), generator=generator)
        distinct, where = pick.unique(return_inverse=True)
        images = load_images([self.files[i] for i in distinct.tolist()], self.channels, self.size)
        return whole_image_outliers(images[where], nominal)


@NOISE.register("imagenet22k")
class ImageNetOutliers(FolderOutliers):
    """An ImageNet-style folder (``<root>/<wnid>/*.JPEG``, e.g. ImageNet-22k), classes sampled evenly."""

    def outlier_files(self, config) -> list[Path]:
        root = _noise_dir(config)
        classes = sorted(p for p in root.iterdir() if p.is_dir())
        if not classes:
            raise DataError(f"{root}: no class folders (expected <root>/<wnid>/*.JPEG)")
        per_class = [_files(c) for c in classes]
        # round-robin over classes so a limited pool still spans many classes
        order = []
        depth = max(len(f) for f in per_class)
        for i in range(depth):
            order += [f[i] for f in per_class if i < len(f)]
        return order if config.oe_limit is None else order[: config.oe_limit]


NOISE.register("imagenet")(ImageNetOutliers)
