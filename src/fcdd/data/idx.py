"""MNIST, Fashion-MNIST and EMNIST from their standard IDX files (gzipped or not).

One nominal class (``--category``, index) against all others: training images are the nominal
class's training images; the test set is every test image, anomalous unless of that class.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fcdd.data.base import DATASETS, DataError, DataSplits, from_arrays, numbered_classes
from fcdd.data.download import download

if TYPE_CHECKING:
    from fcdd.config import Config

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file as a numpy array; clear errors for truncated or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: IDX data has {len(raw) - header} bytes, header promises {expected} for shape {shape}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def find_idx(root: Path, split: str, kind: str) -> Path:
    """``<prefix>{train,t10k,test}-{images,labels}-idx?-ubyte[.gz]`` inside ``root``."""
    names = ("train",) if split == "train" else ("t10k", "test")
    matches = sorted(p for p in root.glob("*") if any(f"{n}-{kind}-idx" in p.name for n in names))
    if not matches:
        raise DataError(f"{root}: no {split} {kind} IDX file (e.g. {names[0]}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz)")
    return matches[0]


def load_idx_split(root: Path, split: str, transpose: bool = False) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(find_idx(root, split, "images"))
    labels = read_idx(find_idx(root, split, "labels"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{root}: {split} images {images.shape} and labels {labels.shape} do not match")
    if transpose:  # EMNIST stores images transposed
        images = images.transpose(0, 2, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def one_vs_rest(config: Config, name: str, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                class_names: list[str] | None = None, channels: int = 1) -> DataSplits:
    classes = sorted(set(train[1].tolist()))
    nominal = parse_class(config.category, classes, class_names, name)
    pick = train[1] == nominal
    names = class_names or [str(c) for c in range(max(classes) + 1)]
    train_set = from_arrays(train[0][pick], np.zeros(int(pick.sum()), np.int64), config.image_size, channels, [names[nominal]] * int(pick.sum()))
    test_labels = (test[1] != nominal).astype(np.int64)
    test_set = from_arrays(test[0], test_labels, config.image_size, channels, ["good" if c == nominal else names[c] for c in test[1]])
    return DataSplits(train_set, test_set, name=f"{name}-{names[nominal]}")


def parse_class(category: str | None, classes: list[int], class_names: list[str] | None, dataset: str) -> int:
    if category is None:
        return classes[0]
    if class_names and category in class_names:
        return class_names.index(category)
    try:
        value = int(category)
    except ValueError:
        raise DataError(f"{dataset}: unknown class {category!r}; use an index in {classes[0]}..{classes[-1]}") from None
    if value not in classes:
        raise DataError(f"{dataset}: class {value} not present; classes are {classes[0]}..{classes[-1]}")
    return value


def _root(config: Config, dataset: str) -> Path:
    root = Path(config.data or config.datadir or "")
    if not config.data and config.download:
        download(dataset, root)
    if not root.is_dir():
        raise DataError(f"{root}: {dataset} folder not found (give --data DIR with the IDX files)")
    for sub in (root, root / dataset, root / dataset / "raw", root / "raw"):
        if sub.is_dir() and any("-images-idx" in p.name for p in sub.iterdir()):
            return sub
    raise DataError(f"{root}: no IDX files found for {dataset}")


FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


@DATASETS.register("mnist", classes=numbered_classes(10))
def mnist(config: Config) -> DataSplits:
    root = _root(config, "mnist")
    return one_vs_rest(config, "mnist", load_idx_split(root, "train"), load_idx_split(root, "test"))


@DATASETS.register("fmnist", classes=numbered_classes(10))
def fmnist(config: Config) -> DataSplits:
    root = _root(config, "fmnist")
    return one_vs_rest(config, "fmnist", load_idx_split(root, "train"), load_idx_split(root, "test"), FASHION_CLASSES)


@DATASETS.register("emnist", classes=numbered_classes(26))
def emnist(config: Config) -> DataSplits:
    root = _root(config, "emnist")
    return one_vs_rest(config, "emnist", load_idx_split(root, "train", True), load_idx_split(root, "test", True))
