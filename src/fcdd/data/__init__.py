"""Data: readers for the standard layouts, synthetic data, augmentation and synthetic anomalies."""

from fcdd.data.base import DATASETS, DataError, DataSplits, ImageSet
from fcdd.registry import import_submodules

import_submodules(__name__, __path__)


def load_data(config) -> DataSplits:
    """The train/test split named by ``config.dataset``."""
    return DATASETS.get(config.dataset)(config)


__all__ = ["DATASETS", "DataError", "DataSplits", "ImageSet", "load_data"]
