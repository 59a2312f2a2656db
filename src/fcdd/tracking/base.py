"""What every experiment tracker gets from a run, and the one object a run talks to.

A tracker writes into the run folder: per-epoch values (losses, learning rate, throughput),
the final metrics of ``metrics.json``, the options (``Config``) and the report's figures.
``open_tracking`` checks the names and the extras before any training, so a missing package
costs seconds, not a run; once a run has started, a tracker that fails is switched off with a
warning instead of costing the run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fcdd.config import Config
from fcdd.registry import Registry
from fcdd.rundir import History, Run
from fcdd.runtime import versions

log = logging.getLogger("fcdd")

#: report figures trackers receive, by the report's names (``write_report``'s keys)
FIGURES = ("loss", "roc_image", "roc_pixel")


class Tracker:
    """One experiment tracker writing into a run folder; a subclass overrides what it records.

    ``reopen``: attach to what the finished run recorded (to add the report's figures) instead of
    starting, or continuing an interrupted, run record.
    """

    def __init__(self, config: Config, out: Path, reopen: bool = False) -> None:
        self.config = config
        self.out = out
        self.reopen = reopen

    def epoch(self, epoch: int, history: History) -> None:
        """After epoch ``epoch`` (1-based) was trained and checkpointed; its values are the last of ``history``."""

    def finish(self, step: int, metrics: dict[str, float]) -> None:
        """The run's final metrics (finite numbers only; nested keys joined with ``/``), after ``step`` epochs."""

    def figures(self, step: int, images: dict[str, Path]) -> None:
        """The report's key figures (PNG files) by name, once the report is written."""

    def close(self, failed: bool = False) -> None:
        """Flush and release; ``failed``: the run ended by an error or an interrupt."""


#: name -> Tracker class; ``info``: ``package`` (the module it imports), ``extra`` (fcdd's pip extra)
TRACKERS: Registry[type[Tracker]] = Registry("tracker")


def check_available(name: str) -> None:
    """KeyError listing the trackers for an unknown name; ValueError with the pip command when
    the tracker's package is not installed."""
    info = TRACKERS.info(name)
    package = info.get("package")
    if package and importlib.util.find_spec(package) is None:
        raise ValueError(f"--loggers {name} needs the {package} package: pip install 'fcdd[{info['extra']}]'")


def epoch_values(history: History) -> dict[str, float]:
    """The last epoch's values of ``history`` under the names trackers record them by."""
    return {
        "loss": history.loss[-1], "loss_nominal": history.nominal[-1], "loss_anomalous": history.anomalous[-1],
        "lr": history.lr[-1], "images_per_second": history.images_per_second[-1], "seconds": history.seconds[-1],
    }


def scalar_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Every finite number of ``metrics`` (nested mappings as ``outer/inner``): what a tracker can
    plot. Text, lists, None and NaN are left out."""
    found: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            found.update(scalar_metrics(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            found[name] = float(value)
    return found


def flat_params(config: Config) -> dict[str, str | int | float | bool]:
    """The options as flat scalars (lists comma separated, None as ``none``): what trackers take as
    hyperparameters."""
    params: dict[str, str | int | float | bool] = {}
    for key, value in config.to_dict().items():
        if isinstance(value, list):
            params[key] = ",".join(map(str, value))
        elif value is None:
            params[key] = "none"
        else:
            params[key] = value
    return params


def version_tags() -> dict[str, str]:
    """``versions()`` as text tags (``fcdd.version.torch`` ...); unknown ones left out."""
    return {f"fcdd.version.{k}": str(v) for k, v in versions().items() if v is not None}


class Tracking:
    """The trackers a run asked for, called together; with none every call does nothing."""

    def __init__(self, trackers: dict[str, Tracker]) -> None:
        self.trackers = trackers

    def _each(self, what: str, *args: Any) -> None:
        """Call ``what`` on every tracker; one that raises is closed and dropped with a warning."""
        for name, tracker in list(self.trackers.items()):
            try:
                getattr(tracker, what)(*args)
            except Exception as err:  # noqa: BLE001 - a tracker must not cost the run
                log.warning("tracker %s stopped (%s: %s); the run goes on without it", name, type(err).__name__, err)
                self.trackers.pop(name)
                with contextlib.suppress(Exception):
                    tracker.close(failed=True)

    def epoch(self, epoch: int, history: History) -> None:
        self._each("epoch", epoch, history)

    def finish(self, step: int, metrics: dict[str, Any]) -> None:
        self._each("finish", step, scalar_metrics(metrics))

    def figures(self, step: int, images: dict[str, Path]) -> None:
        self._each("figures", step, images)

    def close(self, failed: bool = False) -> None:
        self._each("close", failed)
        self.trackers.clear()


def start_trackers(config: Config, out: Path | None, reopen: bool = False) -> Tracking:
    """The trackers of ``config.loggers`` opened on the run folder ``out`` (all checked first)."""
    names = list(dict.fromkeys(config.loggers))  # a name given twice records once
    for name in names:
        check_available(name)
    if names and out is None:
        raise ValueError(f"--loggers {','.join(names)} write into the run folder: set --out")
    tracking = Tracking({})
    try:
        for name in names:
            tracking.trackers[name] = TRACKERS.get(name)(config, out, reopen)
    except BaseException:
        tracking.close(failed=True)
        raise
    return tracking


@contextlib.contextmanager
def open_tracking(config: Config, out: Path | None, reopen: bool = False) -> Iterator[Tracking]:
    """``start_trackers`` for the block; closed at its end, marked failed when it raised."""
    tracking = start_trackers(config, out, reopen)
    try:
        yield tracking
    except BaseException:
        tracking.close(failed=True)
        raise
    tracking.close()


def log_figures(run: Run, written: dict[str, Path]) -> None:
    """Hand the report's key figures (``write_report``'s result) to the trackers of a finished
    run, which reopen what the run recorded; a run without loggers or folder does nothing."""
    images = {name: Path(written[name]) for name in FIGURES if name in written and Path(written[name]).is_file()}
    if not run.config.loggers or run.out is None or not images:
        return
    with open_tracking(run.config, Path(run.out), reopen=True) as tracking:
        tracking.figures(int(run.metrics.get("epochs") or 0), images)
