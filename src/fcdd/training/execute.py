"""One run: a config in, a trained and evaluated ``Run`` out, written to its run folder.

Data flows one way: config -> data -> method -> learner -> evaluation -> calibration -> run
folder. The report is drawn above this layer (``fcdd.api.train``).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fcdd.calibration import calibrate
from fcdd.config import Config
from fcdd.data.base import DataSplits
from fcdd.evaluation import evaluate
from fcdd.rundir import Run, has_checkpoint, resume_checkpoint, write_config, write_run
from fcdd.runtime import run_logging, versions
from fcdd.tracking import open_tracking
from fcdd.training.distributed import current, session
from fcdd.training.setup import effective_config, prepare
from fcdd.training.trainer import make_learner

log = logging.getLogger("fcdd")


def missing_folders(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first."""
    return [folder for folder in (path, *path.parents) if not folder.exists()]


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty; stop at the first that is not."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


@contextmanager
def removed_if_unstarted(out: Path | None) -> Iterator[None]:
    """When the block fails before the run folder's first checkpoint, remove the folder and the
    parents made for it, if this start made it: a failed start leaves nothing that looks like a
    run. A folder that existed before, or holds a checkpoint to resume from, stays."""
    made = missing_folders(out) if out is not None else []
    try:
        yield
    except BaseException:
        if made and not has_checkpoint(made[0]):
            shutil.rmtree(made[0], ignore_errors=True)
            remove_empty_folders(made[1:])
        raise


def execute(config: Config, splits: DataSplits | None = None) -> Run:
    """Train, evaluate, calibrate and write the run folder (when ``config.out`` is set)."""
    config = effective_config(config)
    out = Path(config.out) if config.out else None
    main = current().is_main  # with several processes (torchrun) rank 0 alone writes the run folder; all read it
    writes = out if main else None
    tracked = config if main else config.replace(loggers=[])  # the trackers record rank 0's run
    with session(config.device), removed_if_unstarted(writes), run_logging(writes), open_tracking(tracked, writes) as tracking:  # the log file closes before a removal
        checkpoint = resume_checkpoint(config, out) if out else None
        started = time.perf_counter()
        setup = prepare(config, splits)
        splits, method, supervision, device = setup.splits, setup.method, setup.supervision, setup.device
        log.info(
            "data %s: %d training images, %d test images (%d anomalous), %d channel(s) at %dx%d (height x width)",
            splits.name, len(splits.train), len(splits.test), int(splits.test.labels.sum()), splits.train.channels,
            *method.image_shape,
        )
        for note in splits.notes:
            log.info("note: %s", note)
        log.info("objective %s, %s, %s", config.objective, method.describe(), supervision.describe())
        if writes:
            write_config(config, writes)
        learner = make_learner(config, method, supervision, device, writes, tracking.epoch)
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
            versions=versions(),
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
        run = Run(config, method, history, evaluation, metrics, splits, writes, supervision)
        if writes:
            write_run(run)
        tracking.finish(metrics["epochs"], metrics)
        return run
