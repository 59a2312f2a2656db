"""Class x seed experiments: one model per nominal class per seed, then one table.

``RUN/normal_<class>/it_<seed>/`` holds an ordinary run folder each. A finished run (metrics,
snapshot and heatmaps written) is never recomputed; one with only a checkpoint is resumed; so
a killed ``fcdd run`` restarted with the same options picks up where it stopped; restarted with
other options (``check_same_experiment``) it is refused, as it would mix two settings in one
table. The aggregate (mean and std over seeds per class, CSV + Markdown table, ROC curves
averaged over seeds) is rebuilt from the run folders at the end.

The jobs run through an executor (``fcdd.executors``: in this process, or as Ray tasks on a
cluster); a ``Shard`` (a scheduler array's task) runs every N-th job and leaves the table to
``aggregate_experiment``, once every shard is done.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from fcdd.api import train
from fcdd.config import Config
from fcdd.data.base import DATASETS, DataError
from fcdd.evaluation import HEADLINE_METRICS
from fcdd.executors import EXECUTORS, ExecutorSettings, check_available
from fcdd.io import atomic_write_json, atomic_write_text
from fcdd.metrics import roc_curve
from fcdd.report.plots import plot_mean_roc
from fcdd.rundir import (
    CONFIG,
    METRICS,
    RESUMABLE_CHANGES,
    is_finished,
    read_heatmaps,
    read_metrics,
    run_or_resume,
    trusting_pickle,
)
from fcdd.runtime import run_logging

log = logging.getLogger("fcdd")

#: options a restarted experiment may change: none of them changes a number in its table (unlike
#: ``epochs``, which a single run's resumption may raise, but here finished runs would keep theirs)
RESTART_CHANGES = RESUMABLE_CHANGES - {"epochs"}


@dataclass(frozen=True)
class Job:
    cls: str
    seed_index: int
    out: Path

    @property
    def finished(self) -> bool:
        return is_finished(self.out)

    def __str__(self) -> str:
        return f"class {self.cls} seed {self.seed_index}"


@dataclass(frozen=True)
class Shard:
    """Part ``index`` of ``count`` (1-based, as ``--shard K/N``): the jobs whose index mod N is K-1,
    so the N tasks of a scheduler array share a grid without talking to each other."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match:
            raise ValueError(f"--shard {text!r}: expected K/N, e.g. 1/4 (part K of N, counted from 1)")
        index, count = int(match[1]), int(match[2])
        if count < 1 or not 1 <= index <= count:
            raise ValueError(f"--shard {text}: K must be between 1 and N, and N at least 1")
        return cls(index, count)

    def select(self, jobs: list[Job]) -> list[Job]:
        return [job for i, job in enumerate(jobs) if i % self.count == self.index - 1]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def discover_classes(config: Config) -> list[str]:
    """The classes the data set's registration says how to list (``classes=`` info)."""
    classes = DATASETS.info(config.dataset).get("classes")
    if classes is None:
        raise DataError(f"cannot list the classes of data set {config.dataset}; give --classes")
    return classes(config)


def jobs_for(out: Path, classes: list[str], seeds: int) -> list[Job]:
    return [Job(c, s, out / f"normal_{c}" / f"it_{s}") for c in classes for s in range(seeds)]


def run_experiment(config: Config, classes: list[str] | None, seeds: int, executor: str = "sequential",
                   settings: ExecutorSettings | None = None, shard: Shard | None = None,
                   trust_pickle: bool = False) -> dict | None:
    """Train every class x seed (of ``shard`` only, if given) not finished yet with ``executor``,
    then aggregate; returns the summary (None for a shard: the table waits for all of them).
    ``trust_pickle`` is passed to jobs running in other processes, where ``--trust-pickle``'s
    context does not reach."""
    check_available(executor)  # an unknown name or a missing package, before any folder is made
    out, classes, jobs = _experiment(config, classes, seeds)
    stored = config.replace(out=str(out), category=None)
    check_same_experiment(stored, out)
    out.mkdir(parents=True, exist_ok=True)
    stored.to_yaml(out / CONFIG)
    with run_logging(out):
        _run_jobs(config, shard.select(jobs) if shard else jobs, executor, settings or ExecutorSettings(), trust_pickle)
        return None if shard else aggregate(out, classes, seeds)


def aggregate_experiment(config: Config, classes: list[str] | None, seeds: int) -> dict:
    """The table of an experiment whose jobs ran elsewhere (``--shard``), once all of them have
    finished: ValueError naming each unfinished job folder, as a partial table would mislead."""
    out, classes, jobs = _experiment(config, classes, seeds)
    check_same_experiment(config.replace(out=str(out), category=None), out)
    missing = [job for job in jobs if not job.finished]
    if missing:
        raise ValueError(f"{len(missing)} of {len(jobs)} jobs of {out} have not finished: "
                         + ", ".join(str(job.out) for job in missing)
                         + "; run their shards (or fcdd run without --shard) first")
    with run_logging(out):
        return aggregate(out, classes, seeds)


def _experiment(config: Config, classes: list[str] | None, seeds: int) -> tuple[Path, list[str], list[Job]]:
    """The folder, classes and jobs an experiment's options name (ValueError for bad ones)."""
    if not config.out:
        raise ValueError("fcdd run needs --out RUN_DIR")
    if seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {seeds}")
    out = Path(config.out)
    classes = classes or discover_classes(config)
    return out, classes, jobs_for(out, classes, seeds)


def check_same_experiment(config: Config, out: Path) -> None:
    """Refuse to continue ``out`` when its ``config.yaml`` holds other options: the finished runs
    there would be kept and the table would mix two settings (ValueError naming each option)."""
    path = out / CONFIG
    if not path.is_file():
        return
    before, now = Config.from_yaml(path).to_dict(), config.to_dict()
    changed = sorted(k for k in now if k not in RESTART_CHANGES and before[k] != now[k])
    if changed:
        listed = "; ".join(f"{k}: {before[k]!r} there, {now[k]!r} now" for k in changed)
        raise ValueError(f"{path}: {out} holds an experiment with other options ({listed}); "
                         "give the same options to continue it, or another --out")


def run_job(config: Config, trust_pickle: bool, job: Job) -> bool:
    """One class x seed into its folder, wherever the executor runs it; whether it trained
    (False: finished before). A job run again after its worker died resumes its checkpoint."""
    run_config = config.replace(category=job.cls, seed=config.seed + job.seed_index, out=str(job.out))
    with trusting_pickle() if trust_pickle else nullcontext():
        return run_or_resume(run_config, train)


def _run_jobs(config: Config, jobs: list[Job], executor: str, settings: ExecutorSettings, trust_pickle: bool) -> None:
    finished: list[Job] = []

    def report(job: Job, trained: bool) -> None:
        """One plain line per finished job, in the order they finish."""
        finished.append(job)
        n = len(finished)
        if not trained:
            log.info("[%d/%d] class %s seed %d: finished before, kept", n, len(jobs), job.cls, job.seed_index)
            return
        m = read_metrics(job.out)
        log.info("[%d/%d] class %s seed %d: image AUROC %.4f, pixel AUROC %s", n, len(jobs), job.cls, job.seed_index,
                 m["image_auroc"], "n/a" if m["pixel_auroc"] is None else f"{m['pixel_auroc']:.4f}")

    if jobs:  # a shard of a grid smaller than the array has none: no cluster to start for it
        EXECUTORS.get(executor)(partial(run_job, config, trust_pickle), jobs, report, settings)


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values))


def aggregate(out: Path, classes: list[str], seeds: int) -> dict:
    rows = []
    for cls in classes:
        metrics, curves = [], []
        for job in jobs_for(out, [cls], seeds):
            if not job.finished:
                continue
            metrics.append(read_metrics(job.out))
            stored = read_heatmaps(job.out)
            fpr, tpr, _ = roc_curve(stored["scores"].numpy(), stored["labels"].numpy())
            curves.append((fpr, tpr, metrics[-1]["image_auroc"]))
        row: dict = {"class": cls, "seeds": len(metrics)}
        for key, _ in HEADLINE_METRICS:
            mean, std = _mean_std([m.get(key) for m in metrics])
            row.update({f"{key}_mean": mean, f"{key}_std": std})
        rows.append(row)
        if curves:
            plot_mean_roc(curves, out / f"normal_{cls}" / "roc_mean", f"class {cls}: detection ROC over {len(curves)} seed(s)")
    summary: dict = {"classes": rows, "seeds": seeds}
    for key, _ in HEADLINE_METRICS:
        mean = _mean_std([r[f"{key}_mean"] for r in rows])[0]
        summary.update({f"{key}_mean": mean, key: mean})
    atomic_write_json(out / METRICS, summary)
    atomic_write_text(out / "results.csv", to_csv(rows))
    atomic_write_text(out / "results.md", to_markdown(rows, summary))
    return summary


def _fmt(mean, std) -> str:
    return "n/a" if mean is None else f"{mean:.4f} ± {std:.4f}"


def to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["class"])
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def to_markdown(rows: list[dict], summary: dict) -> str:
    lines = ["| class | seeds | " + " | ".join(title for _, title in HEADLINE_METRICS) + " |",
             "|---|---|" + "---|" * len(HEADLINE_METRICS)]
    for r in rows:
        cells = [_fmt(r[f"{key}_mean"], r[f"{key}_std"]) for key, _ in HEADLINE_METRICS]
        lines.append(f"| {r['class']} | {r['seeds']} | " + " | ".join(cells) + " |")
    means = ["n/a" if summary[f"{key}_mean"] is None else f"{summary[f'{key}_mean']:.4f}" for key, _ in HEADLINE_METRICS]
    lines.append("| **mean** | | " + " | ".join(means) + " |")
    return "\n".join(lines) + "\n"
