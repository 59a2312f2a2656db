"""``fcdd evaluate RUN``: score a finished run's test set again, or any labelled folder.

On the run's own test set the run's ``metrics.json`` is rewritten. On other data (``data=``)
the run's model scores that folder's test images, read in the same layout and at the same
size and channels as in training, and the metrics go to ``RUN/evaluations/<name>.json``: the
run's own results are never overwritten. Both include the rates of the run's stored
thresholds on the images scored.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from fcdd.calibration import test_rates
from fcdd.data.prepare import prepare_splits
from fcdd.evaluation import evaluate
from fcdd.io import atomic_write_json
from fcdd.rundir import METRICS, method_from_snapshot, read_snapshot, snapshot_shape
from fcdd.runtime import pick_device

log = logging.getLogger("fcdd")

EVALUATIONS = "evaluations"


def evaluation_name(data: str | Path, category: str | None, resolution: str) -> str:
    """A file name for an evaluation on other data: the folder's name, its category, the resolution."""
    parts = [Path(data).resolve().name, category or "", resolution]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(p for p in parts if p)) + ".json"


def evaluate_run(
    run_dir: str | Path, device: str = "auto", data: str | Path | None = None, dataset: str | None = None,
    category: str | None = None, resolution: str | None = None, output: str | Path | None = None,
) -> dict:
    """Metrics of the run's model on its own test set, or on the labelled folder ``data``.

    ``resolution`` (``input`` / ``native``) overrides the run's ``eval_resolution``; ``output``
    names the metrics file for other data (default ``RUN/evaluations/<name>.json``).
    """
    run_dir = Path(run_dir)
    snapshot = read_snapshot(run_dir)
    config, method = method_from_snapshot(snapshot)
    changes: dict = {"channels": int(snapshot["in_channels"])}
    if resolution is not None:
        changes["eval_resolution"] = resolution
    if data is not None:
        folder = Path(data)
        if not folder.exists():
            raise FileNotFoundError(f"{folder}: data folder not found")
        # a category folder (with test/) stands for itself; a folder of categories takes the run's
        changes.update(data=str(folder), dataset=dataset or config.dataset,
                       category=category if category is not None else (None if (folder / "test").is_dir() else config.category))
        height, width = snapshot_shape(snapshot)
        if config.aspect != "square":  # the run's shape, not one derived from the other folder's images
            changes["aspect"] = "square" if height == width else f"{height}x{width}"
    config = config.replace(**changes)
    dev = pick_device(device)
    test = prepare_splits(config).test
    evaluation = evaluate(method.to(dev), test, config.eval_batch_size, dev, resolution=config.eval_resolution)
    thresholds = dict(snapshot.get("thresholds") or {})
    at_thresholds = test_rates(evaluation, test, thresholds) if (thresholds.get("image") or {}).get("threshold") is not None else None
    if data is None:
        metrics = {**snapshot.get("metrics", {}), **evaluation.metrics()}
        if at_thresholds is not None and "thresholds" in metrics:
            metrics["thresholds"] = {**metrics["thresholds"], "test": at_thresholds}
        target = run_dir / METRICS
    else:
        metrics = {**evaluation.metrics(), "data": str(Path(data).resolve()), "dataset": config.dataset,
                   "category": config.category, "run": str(run_dir), "at_thresholds": at_thresholds}
        target = Path(output) if output else run_dir / EVALUATIONS / evaluation_name(data, config.category, config.eval_resolution)
    atomic_write_json(target, metrics)
    log.info("evaluation of %s on %d test images written to %s", run_dir, len(test), target)
    metrics["written_to"] = str(target)
    return metrics
