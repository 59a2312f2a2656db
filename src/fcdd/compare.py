"""Re-run a finished run's configuration with other objectives and compare them side by side.

``compare_run(RUN_DIR, ["hsc", "ae", "attention-ae"])`` reads ``RUN_DIR/config.yaml`` and trains
each objective with the same data, seed, preprocessing and budget (nominal-only objectives get
``supervise_mode: unsupervised``) into ``RUN_DIR/compare/<name>/``; finished runs are reused,
interrupted ones resumed. It then writes ``compare/metrics.csv`` / ``metrics.md`` (image and
pixel AUROC per method) and ``compare/comparison.png``: the same test images in every row (the
highest-scored anomaly of each defect type by the original run, plus a typical nominal image),
an input row, a ground-truth row and one heatmap row per method.

A spec ``objective:arch`` (e.g. ``attention-ae:unet``) also sets ``--arch``.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from fcdd.api import train  # noqa: E402
from fcdd.config import Config  # noqa: E402
from fcdd.data.base import DataSplits  # noqa: E402
from fcdd.data.prepare import prepare_splits  # noqa: E402
from fcdd.evaluation import HEADLINE_METRICS  # noqa: E402
from fcdd.io import atomic_write_bytes, atomic_write_text  # noqa: E402
from fcdd.methods import METHODS  # noqa: E402
from fcdd.report.gallery import colourise, image_rgb, overlay  # noqa: E402
from fcdd.rundir import COMPARE, read_config, read_heatmaps, read_metrics, run_or_resume  # noqa: E402

log = logging.getLogger("fcdd")

DEFAULT_METHODS = ("hsc", "ae", "attention-ae")


@dataclass
class MethodRun:
    name: str
    run_dir: Path
    metrics: dict
    heatmaps: torch.Tensor
    scores: np.ndarray
    paths: list[str]


def parse_specs(text: str | list[str]) -> list[tuple[str, str, str | None]]:
    """'hsc,attention-ae:unet' -> [(name, objective, arch)], checked against the registry."""
    items = text.split(",") if isinstance(text, str) else list(text)
    specs = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        objective, _, arch = item.partition(":")
        METHODS.get(objective)  # unknown objective: KeyError listing the valid ones
        specs.append((f"{objective}-{arch}" if arch else objective, objective, arch or None))
    if not specs:
        raise ValueError("no methods to compare; pass e.g. --with hsc,ae,attention-ae")
    return specs


def compare_config(base: Config, objective: str, arch: str | None, out: Path, **overrides) -> Config:
    """The base run's configuration with another objective (nominal-only ones unsupervised)."""
    changes: dict = dict(objective=objective, out=str(out), resume=False, **overrides)
    if not getattr(METHODS.get(objective), "uses_anomalies", True):
        changes["supervise_mode"] = "unsupervised"
    if arch:
        changes["arch"] = arch
    return base.replace(**changes)


def _load_run(name: str, run_dir: Path) -> MethodRun:
    metrics, stored = read_metrics(run_dir), read_heatmaps(run_dir)
    return MethodRun(name, run_dir, metrics, stored["heatmaps"], stored["scores"].double().numpy(), list(stored["paths"]))


def run_method(base: Config, name: str, objective: str, arch: str | None, out: Path, splits: DataSplits | None = None,
               **overrides) -> MethodRun:
    """Train one compared method unless its run folder is already finished; resume a partial one.

    ``splits``: the base run's prepared data, so every method is tested on the same images
    (a semi-supervised base run has moved some defects from the test set to training).
    """
    config = compare_config(base, objective, arch, out, **overrides)

    def train_one(config: Config) -> None:
        log.info("compare: training %s into %s", name, out)
        train(config, splits)

    if not run_or_resume(config, train_one):
        log.info("compare: %s already finished in %s", name, out)
    return _load_run(name, out)


def pick_images(kinds: list[str], labels: np.ndarray, scores: np.ndarray, max_columns: int = 8) -> list[int]:
    """Per defect type the anomaly scored highest by the reference run, then the median nominal."""
    picks: list[int] = []
    for kind in sorted({k for k, y in zip(kinds, labels, strict=True) if y == 1}):
        members = [i for i, (k, y) in enumerate(zip(kinds, labels, strict=True)) if k == kind and y == 1]
        picks.append(max(members, key=lambda i: scores[i]))
    if not picks:  # no anomalies in the test set
        picks = [int(i) for i in np.argsort(-scores)[: max_columns - 1]]
    picks = picks[: max_columns - 1]
    nominal = [i for i in np.argsort(scores, kind="stable") if labels[i] == 0]
    if nominal:
        picks.append(int(nominal[len(nominal) // 2]))
    return picks


def comparison_figure(images: torch.Tensor, maps: torch.Tensor | None, titles: list[str], runs: list[MethodRun], picks: list[int], path: Path) -> Path:
    """Rows: input, ground truth, one heatmap row per method (colours scaled per row)."""
    rows = 1 + (maps is not None) + len(runs)
    cols = len(picks)
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols + 1.6, 1.55 * rows + 0.3), squeeze=False)
    rgb = [image_rgb(images[i]) for i in picks]
    row = 0
    for j, tile in enumerate(rgb):
        axes[row, j].imshow(tile)
        axes[row, j].set_title(titles[j], fontsize=8)
    axes[row, 0].set_ylabel("input", fontsize=9)
    row += 1
    if maps is not None:
        for j, i in enumerate(picks):
            axes[row, j].imshow(maps[i, 0].numpy() > 0, cmap="gray", vmin=0, vmax=1)
        axes[row, 0].set_ylabel("ground truth", fontsize=9)
        row += 1
    for run in runs:
        shown = run.heatmaps[picks].float().squeeze(1).numpy()
        lo, hi = float(shown.min()), float(shown.max())
        for j in range(cols):
            axes[row, j].imshow(overlay(rgb[j], colourise(shown[j], lo, hi), alpha=0.6))
        pixel = run.metrics.get("pixel_auroc")
        label = f"{run.name}\nimg {run.metrics['image_auroc']:.2f}" + (f" px {pixel:.2f}" if pixel is not None else "")
        axes[row, 0].set_ylabel(label, fontsize=8)
        row += 1
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(pad=0.4)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def metrics_table(runs: list[MethodRun]) -> tuple[str, str]:
    """(CSV, Markdown) of the headline metrics and training time per method."""

    def fmt(value) -> str:
        return "" if value is None else f"{value:.4f}"

    keys = [key for key, _ in HEADLINE_METRICS]
    header = ["method", "objective", *keys, "train_seconds", "run_dir"]
    lines = [",".join(header)]
    md = ["| method | " + " | ".join(title for _, title in HEADLINE_METRICS) + " | train s |",
          "|---|" + "---|" * (len(keys) + 1)]
    for run in runs:
        m = run.metrics
        seconds = m.get("train_seconds")
        values = [fmt(m.get(key)) for key in keys]
        lines.append(",".join([run.name, str(m.get("objective", "")), *values,
                               "" if seconds is None else f"{seconds:.1f}", str(run.run_dir)]))
        md.append(f"| {run.name} | " + " | ".join(values) + f" | {'' if seconds is None else f'{seconds:.0f}'} |")
    return "\n".join(lines) + "\n", "\n".join(md) + "\n"


def compare_run(run_dir: str | Path, methods: str | list[str] = DEFAULT_METHODS, max_columns: int = 8, **overrides) -> list[MethodRun]:
    """Train the other methods on ``run_dir``'s configuration and write the comparison files.

    ``overrides`` (e.g. ``device``, ``threads``, ``epochs``) change every compared run.
    """
    run_dir = Path(run_dir)
    base = read_config(run_dir)
    reference = _load_run(base.objective, run_dir)
    specs = [s for s in parse_specs(list(methods) if not isinstance(methods, str) else methods) if s[0] != base.objective]
    out = run_dir / COMPARE
    splits = prepare_splits(base)  # the data as the run saw it (semi-supervision takes test defects)
    runs = [reference] + [run_method(base, name, objective, arch, out / name, splits, **overrides) for name, objective, arch in specs]
    test = splits.test
    for run in runs:
        if run.paths != list(test.paths):
            raise ValueError(f"{run.run_dir}: its test images differ from {run_dir}'s; cannot compare them")
    labels = test.labels.numpy()
    picks = pick_images(list(test.kinds), labels, reference.scores, max_columns)
    titles = [f"{test.kinds[i] or ('anomalous' if labels[i] else 'nominal')}" for i in picks]
    comparison_figure(test.images, test.maps if test.has_maps else None, titles, runs, picks, out / "comparison.png")
    csv, md = metrics_table(runs)
    atomic_write_text(out / "metrics.csv", csv)
    atomic_write_text(out / "metrics.md", md)
    return runs
