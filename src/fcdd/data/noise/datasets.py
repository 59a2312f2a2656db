"""Outlier exposure with other data sets: EMNIST, CIFAR-100, ImageNet-style folders, any folder.

``--noise-dir`` names where the outlier data lies (the readers' usual layouts). Folder sources
decode lazily: with ``--oe-limit`` only that many files are ever read, otherwise a random sample
of at most ``MAX_POOL`` files is decoded once.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fcdd.data.base import IMAGE_SUFFIXES, DataError, load_images
from fcdd.data.cifar import read_batch
from fcdd.data.idx import load_idx_split
from fcdd.data.noise.base import NOISE, PoolSource

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


@NOISE.register("folder")
class FolderOutliers(PoolSource):
    """Every image below ``--noise-dir`` (recursively)."""

    def load_pool(self, config, splits):
        files = _files(_noise_dir(config))
        if not files:
            raise DataError(f"{config.noise_dir}: no images found")
        channels = splits.train.channels if splits is not None else 3
        return load_images(_sample(files, config), channels, config.image_size)


@NOISE.register("imagenet22k")
class ImageNetOutliers(FolderOutliers):
    """An ImageNet-style folder (``<root>/<wnid>/*.JPEG``, e.g. ImageNet-22k), classes sampled evenly."""

    def load_pool(self, config, splits):
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
        limit = config.oe_limit if config.oe_limit is not None else MAX_POOL
        channels = splits.train.channels if splits is not None else 3
        return load_images(order[:limit], channels, config.image_size)


NOISE.register("imagenet")(ImageNetOutliers)
