"""Writes a run's pictures and ``report.html`` from its evaluation.

``write_report(run)`` is called at the end of training (``config.report``) and by
``fcdd report RUN_DIR`` on a reloaded run; it only reads the run, so it can be repeated.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch

from fcdd.data.supervision import Supervision, build_supervision
from fcdd.data.transforms import to_float
from fcdd.evaluation import infer
from fcdd.io import atomic_write_json
from fcdd.report.gallery import CALIBRATED, LABEL_NAMES, NORMALISATIONS, Block, by_score, global_blocks, heatmap_gallery
from fcdd.report.html import (
    THUMB,
    Figure,
    blank_thumbnail,
    card_thumbnails,
    figures_section,
    gallery_section,
    generated_at,
    write_html,
)
from fcdd.report.plots import plot_loss, plot_roc
from fcdd.report.preview import write_preview
from fcdd.rundir import CONFIG, REPORT, Run
from fcdd.runtime import derived_seed

log = logging.getLogger("fcdd")

#: training images scored for the training galleries (a fixed random subset)
TRAIN_SAMPLE = 96


def _device(method) -> torch.device:
    try:
        return next(method.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def score_training_samples(run: Run, n: int = TRAIN_SAMPLE) -> dict:
    """Score a fixed random subset of the training images, half turned anomalous by the run's
    supervision (as in training, without augmentation), with the trained method."""
    config, train = run.config, run.splits.train
    generator = torch.Generator().manual_seed(derived_seed(config.seed, "train_gallery"))
    pick = torch.randperm(len(train), generator=generator)[:n].sort().values
    images = to_float(train.images[pick])
    maps = train.maps[pick].float()
    batch = run_supervision(run).with_fraction(0.5)(images, maps, generator)
    method, device = run.method.eval(), _device(run.method)
    scores, heatmaps = [], []
    for start in range(0, len(batch.images), config.eval_batch_size):
        s, h = infer(method, batch.images[start : start + config.eval_batch_size].to(device))
        scores.append(s.cpu())
        heatmaps.append(h.cpu().float())
    labels = batch.labels.cpu().numpy()
    paths = [train.paths[i] for i in pick.tolist()]
    return {
        "images": batch.images.cpu(),
        "maps": (batch.maps.cpu() > 0.5).to(torch.uint8),
        "scores": torch.cat(scores).double().numpy(),
        "heatmaps": torch.cat(heatmaps),
        "labels": labels,
        "kinds": ["synthetic anomaly" if lbl else "train" for lbl in labels],
        "paths": [("(made anomalous) " if lbl else "") + p for lbl, p in zip(labels, paths, strict=True)],
    }


def run_supervision(run: Run) -> Supervision:
    """The run's own supervision; built here only for a ``Run`` made without one."""
    if run.supervision is None:
        run.supervision = build_supervision(run.config, run.splits)
    return run.supervision


def galleries(prefix: str, images, heatmaps, maps, scores, labels, kinds, paths, out: Path, n: int, alpha: float, title: str,
              colour_range: tuple[float, float] | None = None) -> dict[str, dict]:
    """Per label (most anomalous first) and global galleries, in each normalisation (calibrated
    colours too when the run has a colour range)."""
    written: dict[str, dict] = {}
    anomalous = torch.as_tensor(labels == 1)
    if maps is not None and not (anomalous.any() and (maps[anomalous] > 0).any()):
        maps = None  # no ground truth to show
    common = dict(scores=scores, labels=labels, kinds=kinds, paths=paths, alpha=alpha, colour_range=colour_range)
    for norm in (*NORMALISATIONS, CALIBRATED) if colour_range is not None else NORMALISATIONS:
        for label, name in LABEL_NAMES.items():
            pick = by_score(scores, labels, label)[:n]
            if pick:
                block = Block(f"{name} samples, most anomalous first", pick, f"{name}_most_anomalous")
                key = f"gallery_{prefix}_{name}_{norm}"
                written[key] = heatmap_gallery(images, heatmaps, maps, out / f"{key}.png", norm, [block], title=f"{title}, {norm.replace('_', '-')} colours", **common)
        key = f"gallery_{prefix}_global_{norm}"
        written[key] = heatmap_gallery(images, heatmaps, maps, out / f"{key}.png", norm, global_blocks(scores, labels), title=f"{title}, {norm.replace('_', '-')} colours", **common)
    return written


def _colour_range(metrics: dict) -> tuple[float, float] | None:
    value = (metrics.get("thresholds") or {}).get("heatmap_range")
    return (float(value[0]), float(value[1])) if value and all(math.isfinite(v) for v in value) else None


def _threshold(metrics: dict) -> float | None:
    value = ((metrics.get("thresholds") or {}).get("image") or {}).get("threshold")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def write_report(run: Run, train_galleries: bool = True, html: bool = True) -> dict[str, Path]:
    """Plots, galleries, ``ds_preview.png`` and ``report.html`` into ``run.out``; returns what was written."""
    out = run.out
    if out is None:
        return {}
    out = Path(out)
    started = time.perf_counter()
    config, ev, test = run.config, run.evaluation, run.splits.test
    alpha = config.overlay_alpha
    colours = _colour_range(run.metrics)
    written: dict[str, Path] = {}
    plot_loss(run.history.to_dict(), out / "loss")
    written["loss"] = out / "loss.png"
    fpr, tpr, _ = ev.image_roc()
    plot_roc({"image": (fpr, tpr, ev.image_auroc)}, out / "roc_image", "detection ROC (test images)")
    written["roc_image"] = out / "roc_image.png"
    if ev.pixel_roc is not None:
        plot_roc({"pixel": (*ev.pixel_roc, ev.pixel_auroc)}, out / "roc_pixel", "explanation ROC (test pixels)")
        written["roc_pixel"] = out / "roc_pixel.png"
    layouts: dict[str, dict] = {}
    if len(test):
        maps = test.maps if test.has_maps else None
        layouts.update(galleries("test", test.images, ev.heatmaps, maps, ev.scores, ev.labels, ev.kinds, ev.paths, out,
                                 config.gallery_size, alpha, "test", colours))
    if train_galleries and len(run.splits.train):
        try:
            trained = score_training_samples(run)
            layouts.update(galleries(
                "train", trained["images"], trained["heatmaps"], trained["maps"], trained["scores"], trained["labels"],
                trained["kinds"], trained["paths"], out, config.gallery_size, alpha, "training", colours,
            ))
        except (ValueError, RuntimeError, OSError) as err:  # a noise source that cannot be rebuilt must not cost the report
            log.warning("training galleries skipped: %s", err)
        try:
            write_preview(config, run.splits, run_supervision(run), out / "ds_preview.png")
            written["ds_preview"] = out / "ds_preview.png"
        except (ValueError, RuntimeError, OSError) as err:
            log.warning("ds_preview.png skipped: %s", err)
    for key, layout in layouts.items():
        written[key] = Path(layout["path"])
        layout["path"] = Path(layout["path"]).name
    atomic_write_json(out / "galleries.json", layouts)
    written["galleries"] = out / "galleries.json"
    if html:
        written["report"] = write_run_html(run, out, layouts)
    log.info("report written in %.1f s: %s", time.perf_counter() - started, out / REPORT)
    return written


def write_run_html(run: Run, out: Path, layouts: dict[str, dict]) -> Path:
    """report.html: metrics, plots, test-image cards, galleries and the config."""
    config, ev, test = run.config, run.evaluation, run.splits.test
    threshold = _threshold(run.metrics)
    maps = test.maps if test.has_maps else None
    thumbs = card_thumbnails(test.images, ev.heatmaps, maps, config.overlay_alpha, colour_range=_colour_range(run.metrics)) if len(test) else []
    cards = [
        {"index": i, "score": float(ev.scores[i]), "label": int(ev.labels[i]), "kind": ev.kinds[i], "path": ev.paths[i], **thumbs[i]}
        for i in range(len(thumbs))
    ]
    blank = blank_thumbnail(min(int(test.images.shape[-1]), THUMB)) if maps is not None and len(test) else None
    plots = [
        Figure("training loss per epoch: overall, nominal and anomalous samples", out / "loss.png"),
        Figure("detection ROC", out / "roc_image.png"),
        Figure("explanation ROC over test pixels", out / "roc_pixel.png"),
        Figure("training samples after augmentation and synthetic anomalies", out / "ds_preview.png", wide=True),
    ]
    titles = {
        "test_anomalous": ("anomalous test images, most anomalous first", True),
        "test_nominal": ("nominal test images, most anomalous first (false-positive candidates)", True),
        "test_global": ("test set: first samples, then the most nominal and most anomalous of each label", False),
        "train_anomalous": ("training images made anomalous by the supervision, most anomalous first", False),
        "train_nominal": ("nominal training images, most anomalous first", False),
        "train_global": ("training samples: first, then the most nominal and most anomalous of each label", False),
    }
    groups = []
    for key, (title, is_open) in titles.items():
        figures = [
            Figure(f"{norm.replace('_', '-')} colours", out / f"gallery_{key}_{norm}.png")
            for norm in (CALIBRATED, "semi_global", "local") if f"gallery_{key}_{norm}" in layouts
        ]
        groups.append((title, figures, is_open))
    intro = ("Rows: input, heatmap, heatmap over the input, ground-truth map; the number under a column is its anomaly score. "
             "Calibrated colours are the run's fixed scale, the pixel threshold mid-scale (as in predict and serve). Semi-global colours share one range over all heatmaps of a picture (comparable across samples); local colours "
             "stretch each heatmap to its own range (where the model looks, even when it is sure the image is fine).")
    m = run.metrics
    title = f"{m.get('dataset') or config.dataset}: {config.objective} with {config.net}"
    subtitle = f"run folder {out.resolve()} · report generated {generated_at()}"
    config_yaml = (out / CONFIG).read_text() if (out / CONFIG).is_file() else config.to_yaml()
    return write_html(
        out / REPORT, title, subtitle, m, config_yaml,
        before=[figures_section("plots", "Plots", plots, out)],
        after=[gallery_section(groups, out, intro)],
        cards=cards, threshold=threshold, scores=ev.scores, labels=ev.labels, blank=blank,
    )
