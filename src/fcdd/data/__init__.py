"""Data: readers for the standard layouts, synthetic data, augmentation and synthetic anomalies."""

from fcdd.data.base import DATASETS, DataError, DataSplits, ImageSet
from fcdd.data.prepare import load_data, prepare_splits
from fcdd.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["DATASETS", "DataError", "DataSplits", "ImageSet", "load_data", "prepare_splits"]
