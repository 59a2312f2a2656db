"""Everything a run builds before it learns: data as the run sees it, the method, the supervision."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fcdd.config import Config
from fcdd.data.base import DataSplits
from fcdd.data.prepare import prepare_splits
from fcdd.data.supervision import Supervision, build_supervision
from fcdd.data.transforms import channel_stats
from fcdd.methods import METHODS, Method, build_method
from fcdd.runtime import pick_device, seed_everything
from fcdd.training.distributed import rank_device


@dataclass
class Setup:
    splits: DataSplits
    method: Method
    #: built once per run: training, calibration, galleries and the preview all use this one
    supervision: Supervision
    device: torch.device


def effective_config(config: Config) -> Config:
    """The options as the run uses them: a method fitted on nominal images alone (no gradients,
    no anomalies) runs unsupervised whatever ``--supervise-mode`` says, so its verdicts are
    calibrated on held-out nominal images (a false-positive rate), not on synthetic anomalies it
    never learnt from, and its galleries show what it saw."""
    kind = METHODS.get(config.objective)
    if not getattr(kind, "learns_by_gradient", True) and not getattr(kind, "uses_anomalies", True) \
            and config.supervise_mode != "unsupervised":
        return config.replace(supervise_mode="unsupervised")
    return config


def prepare(config: Config, splits: DataSplits | None = None) -> Setup:
    """Data, method and supervision for a config, with the training set's normalisation set.

    ``splits`` a caller passes are not changed (``prepare_splits`` returns new ones).
    """
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    device = rank_device(pick_device(config.device))  # several processes: the GPU of each one's local rank
    splits = prepare_splits(config, splits)
    method = build_method(config, splits.train.channels, tuple(splits.train.images.shape[-2:]))
    mean, std = channel_stats(splits.train.images)
    method.set_input_normalisation(mean, std)
    if not method.uses_anomalies and config.supervise_mode != "unsupervised":
        raise ValueError(f"objective {config.objective} trains on nominal images only; use --supervise-mode unsupervised")
    supervision = build_supervision(config, splits)
    return Setup(splits, method, supervision, device)
