"""Experiment tracking: ``--loggers tensorboard,mlflow,csv`` record a run into its run folder.

One module per tracker registers itself in ``TRACKERS``; ``open_tracking`` is what a run uses
(``fcdd.training.execute``), ``log_figures`` adds the report's figures afterwards.
"""

from fcdd.registry import import_submodules
from fcdd.tracking.base import FIGURES, TRACKERS, Tracker, Tracking, check_available, log_figures, open_tracking

import_submodules(__name__, __path__)

__all__ = ["FIGURES", "TRACKERS", "Tracker", "Tracking", "check_available", "log_figures", "open_tracking"]
