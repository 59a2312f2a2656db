"""The data as a run sees it, from one entry point for training, reloading and comparing.

``prepare_splits(config)`` reads the data set, holds out the calibration images and lets the
supervision take what it trains on (real defects leave the test set). It returns new splits
and never changes the ones a caller passes, so the same splits can be reused across runs.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from fcdd.data.base import DATASETS, DataError, DataSplits
from fcdd.data.supervision import SUPERVISION, Supervision, build_supervision
from fcdd.runtime import derived_seed

if TYPE_CHECKING:
    from fcdd.config import Config


def load_data(config: Config) -> DataSplits:
    """The train/test split named by ``config.dataset``, as the reader gives it."""
    return DATASETS.get(config.dataset)(config)


def prepare_splits(config: Config, splits: DataSplits | None = None) -> DataSplits:
    """Hold-out split off and the supervision's share taken; new splits, inputs left as they are.

    Splits prepared before come back as they are.
    """
    splits = splits or load_data(config)
    if splits.prepared:
        return splits
    check_load_size(config, splits)
    splits = splits.split_holdout(config.holdout, derived_seed(config.seed, "holdout"))
    splits = SUPERVISION.get(config.supervise_mode).adjust_splits(config, splits)
    return dataclasses.replace(splits, prepared=True)


def check_load_size(config: Config, splits: DataSplits) -> None:
    """``--load-size`` needs a reader that decodes the training images at it (mvtec, btad, custom,
    synthetic) and a side no smaller than the input's; a reader that ignored it would train on no crops."""
    if config.load_size is None:
        return
    if config.aspect != "square":
        raise ValueError(f"--load-size crops a square out of a square; it needs --aspect square, not {config.aspect}")
    if config.load_size < config.image_size:
        raise ValueError(f"load_size ({config.load_size}) must be at least image_size ({config.image_size}): training crops image_size out of it")
    loaded = splits.train.loaded
    if loaded is None or loaded.shape[-1] != config.load_size:
        raise DataError(f"--load-size: the {config.dataset} reader does not decode its training images at a second size "
                        "(mvtec, btad, custom and synthetic do); leave --load-size unset")


__all__ = ["load_data", "prepare_splits", "build_supervision", "Supervision"]
