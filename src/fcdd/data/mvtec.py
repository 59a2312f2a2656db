"""The MVTec-AD folder layout (also BTAD's ``ok``/``ko`` naming).

    <category>/train/good/*.png
    <category>/test/good/*.png
    <category>/test/<defect>/*.png
    <category>/ground_truth/<defect>/<stem>_mask.png     (BTAD: <stem>.png or .bmp)

``ground_truth/`` may be left out (image labels only, no pixel metrics); when it is there, every
defect image needs its mask, so no defect counts as nominal pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from fcdd.data.base import (
    DATASETS,
    IMAGE_SUFFIXES,
    DataError,
    DataSplits,
    ImageSet,
    category_folders,
    decide_channels,
    input_shape,
    list_images,
    load_images,
    load_mask,
    no_maps,
    with_load_size,
)
from fcdd.data.shape import Size, as_shape

if TYPE_CHECKING:
    from fcdd.config import Config

NOMINAL_NAMES = ("good", "ok")


@dataclass
class MVTecLayout:
    """One category folder in MVTec layout; ``load`` returns its train and test sets."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: data folder not found")
        for part in ("train", "test"):
            if not (self.root / part).is_dir():
                raise DataError(f"{self.root}: not an MVTec-style category folder (no '{part}/' inside)")

    @staticmethod
    def resolve(data: str | Path, category: str | None) -> Path:
        """The category folder from ``--data`` and ``--category`` (either may name it)."""
        root = Path(data)
        if category:
            candidate = root / category
            if candidate.is_dir():
                return candidate
            if root.name == category and (root / "train").is_dir():
                return root
            present = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
            raise DataError(f"{candidate}: category folder not found" + (f"; found: {', '.join(present)}" if present else ""))
        if (root / "train").is_dir():
            return root
        categories = sorted(p.name for p in root.iterdir() if (p / "train").is_dir()) if root.is_dir() else []
        if categories:
            raise DataError(f"{root} holds several categories ({', '.join(categories)}); choose one with --category")
        raise DataError(f"{root}: no MVTec-style category folder (expected train/ and test/)")

    def nominal_dir(self, split: str) -> Path:
        """The folder of nominal images of ``split`` (MVTec-AD ``good``, BTAD ``ok``)."""
        for name in NOMINAL_NAMES:
            if (self.root / split / name).is_dir():
                return self.root / split / name
        raise DataError(f"{self.root / split}: no nominal folder ({' or '.join(NOMINAL_NAMES)})")

    def _mask_for(self, defect: str, image: Path) -> Path | None:
        folder = self.root / "ground_truth" / defect
        if not folder.is_dir():
            return None
        for stem in (f"{image.stem}_mask", image.stem):
            for suffix in IMAGE_SUFFIXES:
                if (folder / f"{stem}{suffix}").is_file():
                    return folder / f"{stem}{suffix}"
        raise DataError(f"{image}: anomalous image has no mask in {folder} (expected {image.stem}_mask.png)")

    def _check_mask_folders(self, test_files: dict[str, list[Path]]) -> None:
        """With a ``ground_truth/`` folder every defect type needs its masks: an image without one
        would enter the pixel metrics as all-nominal pixels and silently lower them. Without the
        folder the set has image labels only and no pixel metrics are computed."""
        gt = self.root / "ground_truth"
        if not gt.is_dir():
            return
        missing = [d for d, files in test_files.items() if files and d not in NOMINAL_NAMES and not (gt / d).is_dir()]
        if missing:
            have = sorted(p.name for p in gt.iterdir() if p.is_dir())
            raise DataError(
                f"{gt / missing[0]}: folder not found; the defect images of {', '.join(missing)} have no masks "
                f"(ground_truth/ holds {', '.join(have) or 'nothing'}). Pixel metrics need a mask for every defect "
                f"image: add the masks, or move those defect folders out of {self.root / 'test'}"
            )

    def _check_orphan_masks(self, test_files: dict[str, list[Path]]) -> None:
        gt = self.root / "ground_truth"
        if not gt.is_dir():
            return
        for folder in sorted(p for p in gt.iterdir() if p.is_dir()):
            stems = {p.stem for p in test_files.get(folder.name, [])}
            for mask in list_images(folder):
                stem = mask.stem[: -len("_mask")] if mask.stem.endswith("_mask") else mask.stem
                if stem not in stems:
                    raise DataError(f"{mask}: mask without image (no {stem}.* in {self.root / 'test' / folder.name})")

    def files(self) -> tuple[list[Path], dict[str, list[Path]]]:
        train = list_images(self.nominal_dir("train"))
        if not train:
            raise DataError(f"{self.nominal_dir('train')}: no images")
        test_root = self.root / "test"
        test = {p.name: list_images(p) for p in sorted(test_root.iterdir()) if p.is_dir()}
        if not any(test.values()):
            raise DataError(f"{test_root}: no test images")
        return train, test

    def load(self, size: Size, channels: int = 0, cache_dir: str | None = None, load_size: int | None = None,
             shape_of: Callable[[list[Path]], Size] | None = None) -> tuple[ImageSet, ImageSet]:
        """Train and test sets at ``size``, or at the shape ``shape_of(nominal training files)`` gives."""
        train_files, test_files = self.files()
        if shape_of is not None:
            size = shape_of(train_files)
        self._check_mask_folders(test_files)
        self._check_orphan_masks(test_files)
        channels = decide_channels(train_files, channels)
        train = ImageSet(
            load_images(train_files, channels, size, cache_dir),
            torch.zeros(len(train_files), dtype=torch.long),
            no_maps(len(train_files), size),
            ["good"] * len(train_files), [str(p) for p in train_files],
        )
        train = with_load_size(train, train_files, channels, load_size, cache_dir)
        paths, labels, kinds, maps, mask_paths = [], [], [], [], []
        for defect, files in test_files.items():
            nominal = defect in NOMINAL_NAMES
            for path in files:
                mask_path = None if nominal else self._mask_for(defect, path)
                mask_paths.append(None if mask_path is None else str(mask_path))
                maps.append(load_mask(mask_path, path, size) if mask_path else np.zeros((1, *as_shape(size)), np.uint8))
                paths.append(path)
                labels.append(0 if nominal else 1)
                kinds.append("good" if nominal else defect)
        test = ImageSet(
            load_images(paths, channels, size, cache_dir), torch.tensor(labels), torch.from_numpy(np.stack(maps)), kinds, [str(p) for p in paths],
            mask_paths,
        )
        return train, test


def discover_categories(root: str | Path, depth: int = 2) -> list[Path]:
    """Every MVTec-style category folder (``train/`` and ``test/`` inside) at or below ``root``,
    up to ``depth`` levels down, sorted; a category's own subfolders are not searched."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    if (root / "train").is_dir() and (root / "test").is_dir():
        return [root]
    if depth == 0:
        return []
    found: list[Path] = []
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found += discover_categories(child, depth - 1)
    return found


@DATASETS.register("mvtec", classes=category_folders)
def mvtec(config: Config) -> DataSplits:
    if not config.data:
        raise DataError("the mvtec data set needs --data (a category folder or a folder of categories)")
    root = MVTecLayout.resolve(config.data, config.category)
    train, test = MVTecLayout(root).load(config.image_size, config.channels, config.cache_dir, config.load_size,
                                         shape_of=partial(input_shape, config))
    return DataSplits(train, test, name=root.name)


DATASETS.register("btad", classes=category_folders)(mvtec)
