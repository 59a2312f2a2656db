"""The executor contract: map a job function over items, reporting each result as it arrives.

An executor knows nothing of classes, seeds or run folders (``fcdd.runner`` hands it
``run_job`` and the jobs), so a new engine is one module with one registered function.
Jobs are resumable run folders, so an engine may run a job again after its worker died.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fcdd.registry import Registry


@dataclass(frozen=True)
class ExecutorSettings:
    """What a cluster engine needs to place the jobs; the sequential executor uses none of it."""

    #: the cluster to join (None: the engine's own default, e.g. a new local one)
    address: str | None = None
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0
    #: how often a job whose worker died is started again (it resumes from its checkpoint)
    retries: int = 3

    def __post_init__(self) -> None:
        if not self.cpus_per_job > 0:
            raise ValueError(f"--cpus-per-job must be above 0, got {self.cpus_per_job:g}")
        if not self.gpus_per_job >= 0:
            raise ValueError(f"--gpus-per-job must be 0 or more, got {self.gpus_per_job:g}")
        if self.retries < 0:
            raise ValueError(f"retries must be 0 or more, got {self.retries}")


#: ``executor(run, items, done, settings)``: ``done(item, run(item))`` for every item, on this
#: process, in the order the jobs finish; the first job that fails raises here
Executor = Callable[[Callable[[Any], Any], Sequence[Any], Callable[[Any, Any], None], ExecutorSettings], None]

#: name -> executor; ``info``: ``module`` (the optional package it imports) and ``extra`` (the
#: ``fcdd[...]`` extra that installs it)
EXECUTORS: Registry[Executor] = Registry("executor")


def check_available(name: str) -> None:
    """Refuse an engine whose package is missing before any job starts (ValueError naming the extra)."""
    info = EXECUTORS.info(name)
    module = info.get("module")
    if module and importlib.util.find_spec(module) is None:
        raise ValueError(f"--executor {name} needs the {module} package: pip install 'fcdd[{info.get('extra', module)}]'")
