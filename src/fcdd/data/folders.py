"""Class-folder data sets, one class against the rest: ImageNet-style folders and Pascal VOC.

ImageNet layout: ``<root>/train/<class>/*.JPEG`` and ``<root>/val/<class>/*.JPEG``.
Pascal VOC layout: ``<root>/JPEGImages/*.jpg`` with ``<root>/ImageSets/Main/<class>_{train,val}.txt``
(``VOCdevkit/VOC2012`` may be given or found below ``--data``); an image is nominal when it
contains the nominal class.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fcdd.data.base import (
    DATASETS,
    DataError,
    DataSplits,
    decide_channels,
    file_set,
    input_shape,
    list_images,
)

if TYPE_CHECKING:
    from fcdd.config import Config


def _pick_class(category: str | None, classes: list[str], root: Path) -> str:
    if not classes:
        raise DataError(f"{root}: no class folders")
    if category is None:
        return classes[0]
    if category in classes:
        return category
    if category.isdigit() and int(category) < len(classes):
        return classes[int(category)]
    raise DataError(f"{root}: unknown class {category!r}; {len(classes)} classes, e.g. {', '.join(classes[:5])}")


@DATASETS.register("imagenet")
def imagenet(config: Config) -> DataSplits:
    root = Path(config.data or "")
    train_root, test_root = root / "train", root / "val"
    for folder in (train_root, test_root):
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found (ImageNet layout: train/<class>/ and val/<class>/)")
    classes = sorted(p.name for p in train_root.iterdir() if p.is_dir())
    nominal = _pick_class(config.category, classes, train_root)
    train_files = list_images(train_root / nominal)
    channels = decide_channels(train_files, config.channels or 3)
    test_files, labels, kinds = [], [], []
    for cls in sorted(p.name for p in test_root.iterdir() if p.is_dir()):
        files = list_images(test_root / cls)
        test_files += files
        labels += [int(cls != nominal)] * len(files)
        kinds += ["good" if cls == nominal else cls] * len(files)
    size = input_shape(config, train_files)
    return DataSplits(file_set(train_files, [0] * len(train_files), [nominal] * len(train_files), channels, size, config.cache_dir),
                      file_set(test_files, labels, kinds, channels, size, config.cache_dir), name=f"imagenet-{nominal}")


def _voc_root(data: str | None) -> Path:
    root = Path(data or "")
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012", root / "VOC2007", root / "VOCdevkit" / "VOC2007"):
        if (candidate / "ImageSets" / "Main").is_dir() and (candidate / "JPEGImages").is_dir():
            return candidate
    raise DataError(f"{root}: no Pascal VOC folder (expected JPEGImages/ and ImageSets/Main/)")


def _voc_split(root: Path, cls: str, split: str) -> dict[str, int]:
    path = root / "ImageSets" / "Main" / f"{cls}_{split}.txt"
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("1", "0", "-1"):
            raise DataError(f"{path}:{n}: expected '<image id> <1|0|-1>', got {line!r}")
        rows[parts[0]] = int(parts[1])
    return rows


@DATASETS.register("voc")
def voc(config: Config) -> DataSplits:
    root = _voc_root(config.data)
    classes = sorted({p.name.split("_")[0] for p in (root / "ImageSets" / "Main").glob("*_train.txt")})
    nominal = _pick_class(config.category, classes, root / "ImageSets" / "Main")

    def files(split: str, keep_nominal_only: bool):
        rows = _voc_split(root, nominal, split)
        ids = [i for i, v in rows.items() if v == 1 or (not keep_nominal_only and v == -1)]
        return [root / "JPEGImages" / f"{i}.jpg" for i in ids], [int(rows[i] == -1) for i in ids]

    train_files, _ = files("train", True)
    test_files, labels = files("val", False)
    channels = 3
    size = input_shape(config, train_files)
    return DataSplits(
        file_set(train_files, [0] * len(train_files), [nominal] * len(train_files), channels, size, config.cache_dir),
        file_set(test_files, labels, ["good" if lab == 0 else "other" for lab in labels], channels, size, config.cache_dir),
        name=f"voc-{nominal}",
    )
