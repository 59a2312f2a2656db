"""One run: a config in, a trained and evaluated ``Run`` out, written to its run folder.

Data flows one way: config -> data -> method -> learner -> evaluation -> calibration -> run
folder. The report is drawn above this layer (``fcdd.api.train``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from fcdd.calibration import calibrate
from fcdd.config import Config
from fcdd.data.base import DataSplits
from fcdd.evaluation import evaluate
from fcdd.rundir import Run, resume_checkpoint, write_config, write_run
from fcdd.runtime import run_logging
from fcdd.training.setup import effective_config, prepare
from fcdd.training.trainer import make_learner

log = logging.getLogger("fcdd")


def execute(config: Config, splits: DataSplits | None = None) -> Run:
    """Train, evaluate, calibrate and write the run folder (when ``config.out`` is set)."""
    config = effective_config(config)
    out = Path(config.out) if config.out else None
    with run_logging(out):
        checkpoint = resume_checkpoint(config, out) if out else None
        started = time.perf_counter()
        setup = prepare(config, splits)
        splits, method, supervision, device = setup.splits, setup.method, setup.supervision, setup.device
        log.info(
            "data %s: %d training images, %d test images (%d anomalous), %d channel(s) at %dx%d",
            splits.name, len(splits.train), len(splits.test), int(splits.test.labels.sum()), splits.train.channels,
            config.image_size, config.image_size,
        )
        for note in splits.notes:
            log.info("note: %s", note)
        log.info("objective %s, %s, %s", config.objective, method.describe(), supervision.describe())
        if out:
            write_config(config, out)
        learner = make_learner(config, method, supervision, device, out)
        if checkpoint:
            learner.load_checkpoint(checkpoint)
        history = learner.fit(splits.train)
        method.after_training(splits.train.images, config.eval_batch_size, device)
        evaluation = evaluate(method, splits.test, config.eval_batch_size, device, resolution=config.eval_resolution)
        metrics = evaluation.metrics()
        metrics.update(
            train_seconds=sum(history.seconds),
            train_images_per_second=(sum(history.images_per_second) / len(history.images_per_second)) if history.images_per_second else None,
            total_seconds=time.perf_counter() - started,
            epochs=config.epochs if method.learns_by_gradient else 0,
            dataset=splits.name,
            objective=config.objective,
            notes=splits.notes,
        )
        metrics["thresholds"] = calibrate(config, method, splits.holdout, supervision, device, evaluation, splits.test)
        log.info(
            "image AUROC %.4f | pixel AUROC %s", metrics["image_auroc"],
            "n/a (no ground-truth maps)" if metrics["pixel_auroc"] is None else f"{metrics['pixel_auroc']:.4f}",
        )
        for key in ("image_auroc", "pixel_auroc"):
            value = metrics.get(key)
            if value is not None and value == value and value < 0.5:
                log.warning("%s %.4f is below 0.5: the scores rank anomalies below nominal images (diverged or inverted model?)", key, value)
        run = Run(config, method, history, evaluation, metrics, splits, out, supervision)
        if out:
            write_run(run)
        return run
