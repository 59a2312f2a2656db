"""``fcdd evaluate RUN``: score a finished run's test set again from its snapshot."""

from __future__ import annotations

from pathlib import Path

from fcdd.data.prepare import prepare_splits
from fcdd.evaluation import evaluate
from fcdd.io import atomic_write_json
from fcdd.rundir import METRICS, method_from_snapshot, read_snapshot
from fcdd.runtime import pick_device


def evaluate_run(run_dir: str | Path, device: str = "auto") -> dict:
    run_dir = Path(run_dir)
    snapshot = read_snapshot(run_dir)
    config, method = method_from_snapshot(snapshot)
    dev = pick_device(device)
    splits = prepare_splits(config)
    evaluation = evaluate(method.to(dev), splits.test, config.eval_batch_size, dev)
    metrics = {**snapshot.get("metrics", {}), **evaluation.metrics()}
    atomic_write_json(run_dir / METRICS, metrics)
    return metrics
