"""In-memory image sets and the data-set registry.

Images are decoded and resized once, then kept as uint8 tensors: training augmentation and
synthetic anomalies run on whole batches in torch, so the network, not the input pipeline, is
what a training step waits for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from fcdd.registry import Registry

if TYPE_CHECKING:
    from fcdd.config import Config

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


class DataError(ValueError):
    """Bad or missing input data; the message names the file or folder and what is wrong."""


@dataclass
class ImageSet:
    """Images (N, C, S, S) uint8, labels (N,) 0 nominal / 1 anomalous, maps (N, 1, S, S) uint8 0/1.

    ``kinds`` holds the defect type (or class name) of each image, ``paths`` where it came from.
    """

    images: torch.Tensor
    labels: torch.Tensor
    maps: torch.Tensor
    kinds: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.images)
        if not (len(self.labels) == len(self.maps) == n):
            raise DataError(f"inconsistent set: {n} images, {len(self.labels)} labels, {len(self.maps)} maps")
        self.kinds = self.kinds or ["" for _ in range(n)]
        self.paths = self.paths or [f"#{i}" for i in range(n)]

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: Sequence[int] | torch.Tensor) -> ImageSet:
        index = torch.as_tensor(index, dtype=torch.long)
        idx = index.tolist()
        return ImageSet(
            self.images[index], self.labels[index], self.maps[index],
            [self.kinds[i] for i in idx], [self.paths[i] for i in idx],
        )

    @staticmethod
    def concat(sets: Sequence[ImageSet]) -> ImageSet:
        return ImageSet(
            torch.cat([s.images for s in sets]), torch.cat([s.labels for s in sets]), torch.cat([s.maps for s in sets]),
            [k for s in sets for k in s.kinds], [p for s in sets for p in s.paths],
        )

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def has_maps(self) -> bool:
        """Whether any anomalous image carries a non-empty ground-truth map."""
        return bool((self.maps[self.labels == 1] > 0).any()) if (self.labels == 1).any() else False


@dataclass
class DataSplits:
    """What a data set gives a run: nominal (and maybe anomalous) training images and a test set."""

    train: ImageSet
    test: ImageSet
    name: str
    notes: list[str] = field(default_factory=list)
    #: real anomalous training images with maps (semi-supervision), kept apart from ``train``
    train_anomalies: ImageSet | None = None
    #: nominal training images held out of training to calibrate thresholds
    holdout: ImageSet | None = None
    #: what a run sees (``fcdd.data.prepare_splits``): hold-out and supervision's share taken
    prepared: bool = False

    def split_holdout(self, fraction: float, seed: int) -> DataSplits:
        """New splits with a random ``fraction`` of the nominal training images moved to ``holdout``
        (at least 2 stay); ``seed`` is the split's own stream. Splits that hold some out already
        are returned as they are."""
        n = len(self.train)
        k = min(int(round(n * fraction)), max(n - 2, 0))
        if k <= 0 or self.holdout is not None:
            return self
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        return dataclasses.replace(
            self, holdout=self.train.subset(order[:k].sort().values), train=self.train.subset(order[k:].sort().values),
            notes=list(self.notes),
        )


#: data set readers ``(config) -> DataSplits``; ``classes=`` info ``(config) -> list[str]`` lists
#: the classes ``fcdd run`` iterates over
DATASETS: Registry[Callable[[Config], DataSplits]] = Registry("dataset")


def category_folders(config: Config) -> list[str]:
    """Classes of folder layouts: the category folders (with ``train/``) below ``--data``."""
    root = Path(config.data) if config.data else None
    classes = sorted(p.name for p in root.iterdir() if (p / "train").is_dir()) if root and root.is_dir() else []
    if not classes:
        raise DataError(f"{root}: no category folders (with train/) to run over; give --classes")
    return classes


def numbered_classes(n: int) -> Callable[[Config], list[str]]:
    """Classes of one-vs-rest sets: their label indices."""

    def classes(config: Config) -> list[str]:
        return [str(i) for i in range(n)]

    return classes


# --- decoding ------------------------------------------------------------------------------------


def open_image(path: Path) -> Image.Image:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: cannot read image ({err})") from None
    return image


def to_array(image: Image.Image, channels: int, size: int, resample=Image.BILINEAR) -> np.ndarray:
    """A PIL image as (C, size, size) uint8."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(image, dtype=np.float64)
        span = arr.max() - arr.min()
        image = Image.fromarray(((arr - arr.min()) / (span or 1) * 255).astype(np.uint8))
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (size, size):
        image = image.resize((size, size), resample)
    arr = np.asarray(image, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def is_grey(image: Image.Image) -> bool:
    if image.mode in GREY_MODES:
        return True
    if image.mode in ("RGB", "RGBA", "P"):
        small = np.asarray(image.convert("RGB").resize((32, 32)), dtype=np.int16)
        return bool(np.abs(small[..., 0] - small[..., 1]).max() <= 2 and np.abs(small[..., 1] - small[..., 2]).max() <= 2)
    return False


def decide_channels(paths: Sequence[Path], requested: int) -> int:
    """1 when every sampled image is grey, else 3, unless the user asked for a number."""
    if requested in (1, 3):
        return requested
    if requested not in (0,):
        raise DataError(f"channels must be 0, 1 or 3, got {requested}")
    sample = list(paths)[:: max(1, len(paths) // 16)][:16]
    return 1 if all(is_grey(open_image(p)) for p in sample) else 3


def load_images(paths: Sequence[Path], channels: int, size: int) -> torch.Tensor:
    """Decode and resize many files in threads (PIL releases the GIL while decoding)."""
    if not paths:
        return torch.zeros(0, channels, size, size, dtype=torch.uint8)

    def one(path: Path) -> np.ndarray:
        return to_array(open_image(path), channels, size)

    with ThreadPoolExecutor(max_workers=4) as pool:
        arrays = list(pool.map(one, paths))
    return torch.from_numpy(np.stack(arrays))


def load_mask(path: Path, image_path: Path, size: int) -> np.ndarray:
    """A binary ground-truth map; it must have the size of its image."""
    mask = open_image(path)
    with Image.open(image_path) as image:
        image_size = image.size
    if mask.size != image_size:
        raise DataError(f"{path}: mask is {mask.size[0]}x{mask.size[1]} but its image {image_path.name} is {image_size[0]}x{image_size[1]}")
    arr = to_array(mask, 1, size, resample=Image.NEAREST)
    return (arr > 127).astype(np.uint8) if arr.max() > 1 else (arr > 0).astype(np.uint8)


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def from_arrays(images: np.ndarray, labels: np.ndarray, size: int, channels: int, kinds: list[str] | None = None) -> ImageSet:
    """An ImageSet from (N, H, W[, C]) uint8 arrays, resizing when needed (IDX/CIFAR readers)."""
    if images.ndim == 3:
        images = images[..., None]
    n, h, w, c = images.shape
    if (h, w) != (size, size) or c != channels:
        converted = [to_array(Image.fromarray(img.squeeze(-1) if c == 1 else img), channels, size) for img in images]
        tensor = torch.from_numpy(np.stack(converted)) if n else torch.zeros(0, channels, size, size, dtype=torch.uint8)
    else:
        tensor = torch.from_numpy(np.array(images.transpose(0, 3, 1, 2), copy=True))
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    return ImageSet(tensor, labels_t, torch.zeros(n, 1, size, size, dtype=torch.uint8), kinds or [])
