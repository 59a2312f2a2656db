"""``--executor sequential`` (the default): every job in this process, one after another."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fcdd.executors.base import EXECUTORS, ExecutorSettings
from fcdd.runtime import progress_bar


@EXECUTORS.register("sequential")
def run_sequentially(run: Callable[[Any], Any], items: Sequence[Any], done: Callable[[Any, Any], None],
                     settings: ExecutorSettings) -> None:
    """In order, with a progress bar; a scheduler array's shard runs its jobs this way."""
    bar = progress_bar(items, desc="jobs", unit="run")
    for item in bar:
        bar.set_postfix_str(str(item))
        done(item, run(item))
