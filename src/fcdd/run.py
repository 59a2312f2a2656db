"""One run: a config in, a run folder out (config, log, history, metrics, snapshot, report)."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from fcdd.config import Config
from fcdd.data import DataSplits
from fcdd.evaluation import Evaluation, evaluate
from fcdd.io import atomic_torch_save, atomic_write_json
from fcdd.methods import Method
from fcdd.train import CHECKPOINT, SNAPSHOT, History, Trainer, prepare

log = logging.getLogger("fcdd")

METRICS = "metrics.json"
HEATMAPS = "heatmaps.pt"


def is_finished(run_dir: Path) -> bool:
    """Whether a run folder holds all a finished run writes (``execute`` writes metrics last)."""
    return all((run_dir / name).is_file() for name in (SNAPSHOT, HEATMAPS, METRICS))

# options that may differ between a run and its resumption
RESUMABLE_CHANGES = {"resume", "epochs", "out", "report", "device", "threads", "eval_batch_size", "gallery_size", "overlay_alpha"}


@dataclass
class Run:
    config: Config
    method: Method
    history: History
    evaluation: Evaluation
    metrics: dict
    splits: DataSplits
    out: Path | None

    def snapshot(self) -> dict:
        return snapshot_of(self.config, self.method, self.splits.train.channels, self.metrics)


def snapshot_of(config: Config, method: Method, in_channels: int, metrics: dict, thresholds: dict | None = None) -> dict:
    """Everything needed to use the model later: config, weights, preprocessing, thresholds."""
    return {
        "format": 1,
        "config": config.to_dict(),
        "in_channels": in_channels,
        "image_size": config.image_size,
        "state_dict": {k: v.cpu() for k, v in method.state_dict().items()},
        "thresholds": thresholds or {},
        "metrics": metrics,
    }


@contextlib.contextmanager
def run_logging(out: Path | None):
    """Everything logged goes to the console and to ``out/log.txt``."""
    logger = logging.getLogger("fcdd")
    logger.setLevel(logging.DEBUG)
    handlers: list[logging.Handler] = []
    if not any(getattr(h, "_fcdd_console", False) for h in logger.handlers):
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.INFO)
        console.setFormatter(logging.Formatter("%(message)s"))
        console._fcdd_console = True  # type: ignore[attr-defined]
        logger.addHandler(console)
        handlers.append(console)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(out / "log.txt", mode="a")
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(file_handler)
        handlers.append(file_handler)
    logger.propagate = False
    try:
        yield logger
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()


def _check_resume(config: Config, out: Path) -> Path | None:
    checkpoint = out / CHECKPOINT
    if not checkpoint.is_file():
        return None
    if not config.resume:
        raise FileExistsError(f"{out} already holds a run (checkpoint.pt); pass --resume to continue it or choose another --out")
    stored = torch.load(checkpoint, map_location="cpu", weights_only=False)["config"]
    changed = sorted(k for k, v in config.to_dict().items() if k not in RESUMABLE_CHANGES and stored.get(k) != v)
    if changed:
        raise ValueError(f"{checkpoint}: cannot resume with changed options: {', '.join(changed)}")
    return checkpoint


def execute(config: Config, splits: DataSplits | None = None) -> Run:
    out = Path(config.out) if config.out else None
    with run_logging(out):
        checkpoint = _check_resume(config, out) if out else None
        started = time.perf_counter()
        splits, method, supervision, device = prepare(config, splits)
        log.info(
            "data %s: %d training images, %d test images (%d anomalous), %d channel(s) at %dx%d",
            splits.name, len(splits.train), len(splits.test), int(splits.test.labels.sum()), splits.train.channels,
            config.image_size, config.image_size,
        )
        for note in splits.notes:
            log.info("note: %s", note)
        log.info("objective %s, net %s, %s", config.objective, config.net, supervision.describe())
        if out:
            config.to_yaml(out / "config.yaml")
        trainer = Trainer(config, method, supervision, device, out)
        if checkpoint:
            trainer.load_checkpoint(checkpoint)
        history = trainer.fit(splits.train)
        method.after_training(splits.train.images, config.eval_batch_size, device)
        train_seconds = sum(history.seconds)
        evaluation = evaluate(method, splits.test, config.eval_batch_size, device)
        metrics = evaluation.metrics()
        metrics.update(
            train_seconds=train_seconds,
            train_images_per_second=(sum(history.images_per_second) / len(history.images_per_second)) if history.images_per_second else None,
            total_seconds=time.perf_counter() - started,
            epochs=config.epochs,
            dataset=splits.name,
            objective=config.objective,
            notes=splits.notes,
        )
        run = Run(config, method, history, evaluation, metrics, splits, out)
        from fcdd.calibration import calibrate

        thresholds = calibrate(run, device)
        metrics["thresholds"] = thresholds
        log.info(
            "image AUROC %.4f | pixel AUROC %s", metrics["image_auroc"],
            "n/a (no ground-truth maps)" if metrics["pixel_auroc"] is None else f"{metrics['pixel_auroc']:.4f}",
        )
        if out:
            atomic_write_json(out / "history.json", {**history.to_dict(), "metrics": metrics})
            atomic_torch_save(out / SNAPSHOT, snapshot_of(config, method, splits.train.channels, metrics, thresholds))
            atomic_torch_save(out / HEATMAPS, {
                "heatmaps": evaluation.heatmaps, "scores": torch.from_numpy(evaluation.scores),
                "labels": torch.from_numpy(evaluation.labels), "paths": evaluation.paths, "kinds": evaluation.kinds,
            })
            # last: a folder with metrics.json holds everything (``is_finished``), so a run
            # killed between these writes is redone rather than read half-written
            atomic_write_json(out / METRICS, metrics)
            if config.report:
                from fcdd.report import write_report

                write_report(run)
            log.info("run folder: %s", out)
        return run
