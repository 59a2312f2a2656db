"""``--executor ray``: each job a Ray task, on a new local Ray or an existing cluster.

The run folders and the data must be on a filesystem every node sees (as on a SLURM cluster)
and fcdd installed on each node; results come back as files, and only the driver aggregates.
A task whose worker dies is started again (``ExecutorSettings.retries``); as every job is a
resumable run folder, it continues from its last checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from fcdd.executors.base import EXECUTORS, ExecutorSettings


@EXECUTORS.register("ray", module="ray", extra="ray")
def run_on_ray(run: Callable[[Any], Any], items: Sequence[Any], done: Callable[[Any, Any], None],
               settings: ExecutorSettings) -> None:
    """All jobs submitted at once; Ray runs as many side by side as the cluster's resources allow."""
    import ray

    joined = _join(ray, settings.address)
    pending: dict[Any, Any] = {}
    try:
        task = ray.remote(_in_folder).options(
            num_cpus=settings.cpus_per_job, num_gpus=settings.gpus_per_job, max_retries=settings.retries)
        cwd = os.getcwd()
        pending.update({task.remote(cwd, run, item): item for item in items})
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            item = pending.pop(ready[0])
            done(item, _result(ray, ready[0]))
    except BaseException:
        for ref in pending:  # stop like the sequential executor (also on Ctrl-C); a rerun resumes them
            ray.cancel(ref)
        raise
    finally:
        if joined:
            ray.shutdown()


def _result(ray: Any, ref: Any) -> Any:
    """A task's return value; a failed task raises its own exception (a ``ValueError`` stays one,
    so the command line reports it in one line), chained to Ray's with the worker's traceback."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None)
        raise (cause if isinstance(cause, Exception) else err) from err


def _join(ray: Any, address: str | None) -> bool:
    """Connect unless this process already joined a Ray (then that one is used); without an
    address Ray's default: ``$RAY_ADDRESS``, a cluster ``ray start`` began on this machine,
    else a new local one. True when this call connected, so the executor leaves it at the end."""
    if ray.is_initialized():
        return False
    ray.init(address=address)
    return True


def _in_folder(cwd: str, run: Callable[[Any], Any], item: Any) -> Any:
    """``run(item)`` from the driver's working directory where the worker has it, so relative
    paths in the options mean what they mean on the driver."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    return run(item)
