"""CIFAR-10 and CIFAR-100 from their python pickle batches, one class against the rest."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fcdd.data.base import DATASETS, DataError, DataSplits, numbered_classes
from fcdd.data.download import download
from fcdd.data.idx import one_vs_rest

if TYPE_CHECKING:
    from fcdd.config import Config

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, OSError, ValueError) as err:
        raise DataError(f"{path}: not a CIFAR pickle batch ({err})") from None
    if not isinstance(batch, dict) or b"data" not in batch or label_key.encode() not in batch:
        raise DataError(f"{path}: CIFAR batch lacks 'data' or '{label_key}'")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: expected rows of 3072 bytes (3x32x32), got {data.shape}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.asarray(batch[label_key.encode()], dtype=np.int64)


def _folder(config: Config, names: tuple[str, ...], dataset: str) -> Path:
    root = Path(config.data or config.datadir or "")
    if not config.data and config.download:
        download(dataset, root)
    for candidate in (root, *(root / n for n in names)):
        if candidate.is_dir() and ((candidate / "test_batch").is_file() or (candidate / "test").is_file()):
            return candidate
    raise DataError(f"{root}: no {dataset} batches found (expected {names[0]}/ with the python pickles)")


def _merge(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@DATASETS.register("cifar10", classes=numbered_classes(10))
def cifar10(config: Config) -> DataSplits:
    folder = _folder(config, ("cifar-10-batches-py",), "cifar10")
    train_files = sorted(folder.glob("data_batch_*"))
    if not train_files:
        raise DataError(f"{folder}: no data_batch_* files")
    train = _merge([read_batch(p, "labels") for p in train_files])
    test = read_batch(folder / "test_batch", "labels")
    return one_vs_rest(config, "cifar10", train, test, CIFAR10_CLASSES, channels=3)


@DATASETS.register("cifar100", classes=numbered_classes(100))
def cifar100(config: Config) -> DataSplits:
    """CIFAR-100 with its 100 fine labels (``--category`` is a fine-label index)."""
    folder = _folder(config, ("cifar-100-python",), "cifar100")
    return one_vs_rest(config, "cifar100", read_batch(folder / "train", "fine_labels"), read_batch(folder / "test", "fine_labels"), channels=3)
