"""Verdict thresholds, calibrated at the end of training on images the model did not train on.

The held-out nominal training images give the false-positive side. When the run's supervision
makes anomalies (confetti, outliers, real defects), the same held-out images turned anomalous
give the other side, and the image threshold maximises F1; otherwise (or with ``target_fpr``)
it is the nominal-score quantile for that false-positive rate. The pixel threshold is chosen the
same way on heatmap pixels, for a binary defect mask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from fcdd.data.transforms import to_float
from fcdd.evaluation import infer
from fcdd.metrics import best_f1_threshold

if TYPE_CHECKING:
    from fcdd.run import Run

DEFAULT_FPR = 0.05
PIXEL_SAMPLE = 200_000


def _scores(method, images: torch.Tensor, batch_size: int, device) -> tuple[np.ndarray, torch.Tensor]:
    scores, maps = [], []
    for start in range(0, len(images), batch_size):
        s, h = infer(method, images[start : start + batch_size].to(device))
        scores.append(s.cpu())
        maps.append(h.cpu())
    return torch.cat(scores).double().numpy(), torch.cat(maps)


def _subsample(values: torch.Tensor, labels: torch.Tensor, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    values, labels = values.reshape(-1), labels.reshape(-1)
    if len(values) > n:
        pick = torch.randperm(len(values), generator=torch.Generator().manual_seed(seed))[:n]
        values, labels = values[pick], labels[pick]
    return values.double().numpy(), labels.numpy()


def threshold_from(scores: np.ndarray, labels: np.ndarray, target_fpr: float | None) -> dict:
    nominal = scores[labels == 0]
    if target_fpr is None and (labels == 1).any():
        threshold, f1 = best_f1_threshold(scores, labels)
        rule = "max_f1"
    else:
        fpr = DEFAULT_FPR if target_fpr is None else target_fpr
        threshold = float(np.quantile(nominal, 1 - fpr)) if len(nominal) else float("nan")
        rule, f1 = f"fpr={fpr:g}", None
    predicted = scores >= threshold
    return {
        "threshold": threshold,
        "rule": rule,
        "f1": f1,
        "fpr": float(predicted[labels == 0].mean()) if (labels == 0).any() else None,
        "tpr": float(predicted[labels == 1].mean()) if (labels == 1).any() else None,
    }


def calibrate(run: Run, device) -> dict:
    """Image and pixel thresholds from the held-out nominal images (and anomalies made from them)."""
    holdout = run.splits.holdout
    config = run.config
    if holdout is None or len(holdout) == 0:
        return {}
    method = run.method.eval()
    images = to_float(holdout.images)
    maps = holdout.maps.float()
    generator = torch.Generator().manual_seed(config.seed + 1)
    from fcdd.data.supervision import build_supervision

    supervision = build_supervision(config.replace(anomaly_fraction=0.5), run.splits)
    batch = supervision(images, maps, generator)
    scores, heatmaps = _scores(method, batch.images, config.eval_batch_size, device)
    labels = batch.labels.cpu().numpy()
    image = threshold_from(scores, labels, config.target_fpr)
    anomalous = torch.from_numpy(labels == 1)
    if anomalous.any() and batch.maps[anomalous].sum() > 0:
        pixel_values, pixel_labels = _subsample(heatmaps, (batch.maps.cpu() > 0.5).long(), PIXEL_SAMPLE, config.seed)
    else:
        pixel_values, pixel_labels = _subsample(heatmaps[~anomalous], torch.zeros_like(heatmaps[~anomalous], dtype=torch.long), PIXEL_SAMPLE)
    pixel = threshold_from(pixel_values, pixel_labels, config.target_fpr)
    return {
        "image": image,
        "pixel": pixel,
        "n_nominal": int((labels == 0).sum()),
        "n_anomalous": int((labels == 1).sum()),
        "source": f"{len(holdout)} held-out nominal training images" + (", half turned anomalous by the run's supervision" if (labels == 1).any() else ""),
    }
