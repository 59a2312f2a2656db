"""The Python API: ``fcdd.train(config)`` and ``fcdd.load(run)``, as the CLI uses them."""

from __future__ import annotations

from pathlib import Path

import torch

from fcdd.config import Config
from fcdd.data.base import DataSplits
from fcdd.detector import Detector
from fcdd.report import write_report
from fcdd.rundir import Run
from fcdd.runtime import run_logging
from fcdd.tracking import log_figures
from fcdd.training import execute


def train(config: Config, splits: DataSplits | None = None) -> Run:
    """Train, evaluate and write a run folder with its report (when ``config.out`` is set).

    ``splits`` (e.g. from ``fcdd.data.prepare_splits``) are used instead of reading
    ``config.data`` and are not changed.
    """
    run = execute(config, splits)
    if run.out is not None and config.report:
        with run_logging(Path(run.out)):
            log_figures(run, write_report(run))  # the report's key figures reach the run's trackers too
    return run


def load(run_or_snapshot: str | Path | Run, device: str | torch.device = "auto", **options) -> Detector:
    """A ``Detector`` for a run folder, a snapshot file or a ``Run`` (``threshold=``, ``batch_size=`` ...)."""
    return Detector.load(run_or_snapshot, device=device, **options)
