"""The data as a run sees it, from one entry point for training, reloading and comparing.

``prepare_splits(config)`` reads the data set, holds out the calibration images and lets the
supervision take what it trains on (real defects leave the test set). It returns new splits
and never changes the ones a caller passes, so the same splits can be reused across runs.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from fcdd.data.base import DATASETS, DataSplits
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
    splits = splits.split_holdout(config.holdout, derived_seed(config.seed, "holdout"))
    splits = SUPERVISION.get(config.supervise_mode).adjust_splits(config, splits)
    return dataclasses.replace(splits, prepared=True)


__all__ = ["load_data", "prepare_splits", "build_supervision", "Supervision"]
