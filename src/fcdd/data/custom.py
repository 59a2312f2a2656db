"""The custom folder layout.

Two forms:

    custom/train/<class>/normal/*.png          nominal training images
    custom/train/<class>/anomalous/*.png       optional real anomalies (supervise mode 'other')
    custom/test/<class>/normal/*.png
    custom/test/<class>/anomalous/*.png

or, with ``--ovr`` (one vs rest), images directly in class folders:

    custom/train/<class>/*.png, custom/test/<class>/*.png
    the ``--category`` class is nominal, every other class anomalous.
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
    with_load_size,
)

if TYPE_CHECKING:
    from fcdd.config import Config


def _classes(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


@DATASETS.register("custom")
def custom(config: Config) -> DataSplits:
    if not config.data:
        raise DataError("the custom data set needs --data (the folder holding train/ and test/)")
    root = Path(config.data)
    classes = _classes(root / "train")
    if not classes:
        raise DataError(f"{root / 'train'}: no class folders")
    category = config.category or classes[0]
    if category not in classes:
        raise DataError(f"{root / 'train' / category}: class folder not found; classes: {', '.join(classes)}")
    if config.ovr:
        train_files = list_images(root / "train" / category)
        size = input_shape(config, train_files)
        channels = decide_channels(train_files, config.channels)
        test_files, labels, kinds = [], [], []
        for cls in _classes(root / "test"):
            files = list_images(root / "test" / cls)
            test_files += files
            labels += [0 if cls == category else 1] * len(files)
            kinds += ["good" if cls == category else cls] * len(files)
        train = file_set(train_files, [0] * len(train_files), [category] * len(train_files), channels, size, config.cache_dir)
        train = with_load_size(train, train_files, channels, config.load_size, config.cache_dir)
        return DataSplits(train, file_set(test_files, labels, kinds, channels, size, config.cache_dir), name=f"custom-ovr-{category}")
    train_files = list_images(root / "train" / category / "normal")
    if not train_files:
        raise DataError(f"{root / 'train' / category / 'normal'}: no images")
    size = input_shape(config, train_files)
    channels = decide_channels(train_files, config.channels)
    train = file_set(train_files, [0] * len(train_files), ["good"] * len(train_files), channels, size, config.cache_dir)
    train = with_load_size(train, train_files, channels, config.load_size, config.cache_dir)
    anomalous_dir = root / "train" / category / "anomalous"
    train_anomalies = None
    if anomalous_dir.is_dir() and list_images(anomalous_dir):
        files = list_images(anomalous_dir)
        train_anomalies = file_set(files, [1] * len(files), ["anomalous"] * len(files), channels, size, config.cache_dir)
    normal_test = list_images(root / "test" / category / "normal")
    anomalous_test = list_images(root / "test" / category / "anomalous")
    test = file_set(normal_test + anomalous_test, [0] * len(normal_test) + [1] * len(anomalous_test),
                      ["good"] * len(normal_test) + ["anomalous"] * len(anomalous_test), channels, size, config.cache_dir)
    return DataSplits(train, test, name=f"custom-{category}", train_anomalies=train_anomalies)
