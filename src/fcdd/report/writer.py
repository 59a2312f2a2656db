"""Writes a run's pictures from its evaluation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fcdd.report.gallery import heatmap_gallery
from fcdd.report.plots import plot_loss, plot_roc

if TYPE_CHECKING:
    from fcdd.run import Run


def write_report(run: Run) -> None:
    out = run.out
    if out is None:
        return
    ev = run.evaluation
    plot_loss(run.history.to_dict(), out / "loss")
    fpr, tpr, _ = ev.image_roc()
    plot_roc({"image": (fpr, tpr, ev.image_auroc)}, out / "roc_image", "detection ROC")
    if ev.pixel_roc is not None:
        plot_roc({"pixel": (*ev.pixel_roc, ev.pixel_auroc)}, out / "roc_pixel", "explanation ROC (pixels)")
    test = run.splits.test
    n = run.config.gallery_size
    order = np.argsort(-ev.scores, kind="stable")
    for label, name in ((1, "anomalous"), (0, "nominal")):
        pick = [int(i) for i in order if ev.labels[i] == label][:n]
        if pick:
            heatmap_gallery(test.images[pick], ev.heatmaps[pick], test.maps[pick] if test.has_maps else None, out / f"gallery_{name}.png")
