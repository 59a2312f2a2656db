"""``--loggers mlflow``: an MLflow file store in ``RUN/mlruns`` (tracking URI ``file:.../RUN/mlruns``).

One MLflow run per fcdd run, named after the run folder, in the experiment ``fcdd``: the options
as params, the versions as tags, per-epoch metrics ``train/*`` (step = epoch), the final metrics
``final/*`` and the report's figures as artifacts (``figures/``). A resumed run (``--resume``
with a checkpoint) continues its MLflow run. Needs the ``mlflow`` package; ``mlflow-skinny`` is
enough (``pip install 'fcdd[mlflow]'``). Look at it with ``MLFLOW_ALLOW_FILE_STORE=true mlflow ui
--backend-store-uri RUN/mlruns`` (the full ``mlflow`` package) or ``MlflowClient``.

MLflow 3 refuses file stores unless ``MLFLOW_ALLOW_FILE_STORE`` is true; fcdd sets it around its
own calls only, and keeps a value the user set.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fcdd.config import Config
from fcdd.rundir import CHECKPOINT, History
from fcdd.tracking.base import TRACKERS, Tracker, epoch_values, flat_params, version_tags

#: the store's folder in the run folder
MLRUNS_DIR = "mlruns"
EXPERIMENT = "fcdd"
#: MLflow takes at most this many params per batch
PARAM_BATCH = 100
#: characters MLflow allows in metric and param names
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./ ]")


@contextlib.contextmanager
def file_store_allowed() -> Iterator[None]:
    """``MLFLOW_ALLOW_FILE_STORE=true`` for the block, unless the variable is set already."""
    if "MLFLOW_ALLOW_FILE_STORE" in os.environ:
        yield
        return
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


def store_uri(out: Path) -> str:
    """The tracking URI of a run folder's store (``file:///.../RUN/mlruns``)."""
    return (Path(out) / MLRUNS_DIR).resolve().as_uri()


def safe_key(key: str) -> str:
    return _UNSAFE.sub("_", key)


@TRACKERS.register("mlflow", package="mlflow", extra="mlflow")
class MlflowTracker(Tracker):
    """An ``MlflowClient`` on the run folder's store; the MLflow run starts with the first record,
    so a run refused before training leaves none."""

    def __init__(self, config: Config, out: Path, reopen: bool = False) -> None:
        super().__init__(config, out, reopen)
        #: an interrupted run goes on: its checkpoint is there before this run trains
        self.resuming = config.resume and (Path(out) / CHECKPOINT).is_file()
        self._client: Any = None
        self._run_id: str | None = None

    # --- the MLflow run ----------------------------------------------------------------------
    def run_id(self) -> str:
        if self._run_id is None:
            with file_store_allowed():
                self._run_id = self._open_run()
        return self._run_id

    def _open_run(self) -> str:
        from mlflow.tracking import MlflowClient  # optional extra

        self._client = MlflowClient(tracking_uri=store_uri(self.out))
        experiment = self._client.get_experiment_by_name(EXPERIMENT)
        experiment_id = experiment.experiment_id if experiment else self._client.create_experiment(EXPERIMENT)
        runs = self._client.search_runs([experiment_id], order_by=["attributes.start_time DESC"], max_results=1)
        last = runs[0] if runs else None
        if self.reopen:
            if last is None:
                raise FileNotFoundError(f"{self.out / MLRUNS_DIR} holds no MLflow run")
            return last.info.run_id
        if self.resuming and last is not None and last.info.status != "FINISHED":
            self._client.update_run(last.info.run_id, status="RUNNING")
            self._log_params(last.info.run_id, set(last.data.params))
            return last.info.run_id
        run = self._client.create_run(experiment_id, run_name=Path(self.out).name, tags=version_tags())
        self._log_params(run.info.run_id, set())
        return run.info.run_id

    def _log_params(self, run_id: str, present: set[str]) -> None:
        """The options not logged yet (a resumed run keeps its first values: MLflow params are
        write-once; the options a resume may change are in the run folder's config.yaml)."""
        from mlflow.entities import Param

        params = [Param(safe_key(k), str(v)) for k, v in flat_params(self.config).items() if safe_key(k) not in present]
        for start in range(0, len(params), PARAM_BATCH):
            self._client.log_batch(run_id, params=params[start : start + PARAM_BATCH])

    def _log_metrics(self, values: dict[str, float], prefix: str, step: int) -> None:
        from mlflow.entities import Metric

        run_id = self.run_id()
        now = int(time.time() * 1000)
        metrics = [Metric(safe_key(prefix + k), float(v), now, step) for k, v in values.items() if math.isfinite(v)]
        with file_store_allowed():
            self._client.log_batch(run_id, metrics=metrics)

    # --- records -----------------------------------------------------------------------------
    def epoch(self, epoch: int, history: History) -> None:
        self._log_metrics(epoch_values(history), "train/", epoch)

    def finish(self, step: int, metrics: dict[str, float]) -> None:
        self._log_metrics(metrics, "final/", step)

    def figures(self, step: int, images: dict[str, Path]) -> None:
        run_id = self.run_id()
        with file_store_allowed():
            for path in images.values():
                self._client.log_artifact(run_id, str(path), artifact_path="figures")

    def close(self, failed: bool = False) -> None:
        if self._run_id is None or self.reopen:
            return
        with file_store_allowed():
            self._client.set_terminated(self._run_id, status="FAILED" if failed else "FINISHED")
