"""A run's metrics.json carries the metrics the field reports: AUPRO, F1-max with its
threshold and average precision, image and pixel, each matching a reference computation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve

from fcdd.metrics import aupro


def best_f1(labels, scores) -> float:
    precision, recall, _ = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(f1.max())


def test_metrics_json_holds_ap_f1_max_and_aupro(tiny_run):
    metrics = json.loads((Path(tiny_run.out) / "metrics.json").read_text())
    ev, test = tiny_run.evaluation, tiny_run.splits.test
    assert metrics["image_ap"] == pytest.approx(average_precision_score(ev.labels, ev.scores), abs=1e-9)
    assert metrics["image_f1_max"] == pytest.approx(best_f1(ev.labels, ev.scores), abs=1e-9)
    assert f1_score(ev.labels, ev.scores >= metrics["image_f1_max_threshold"]) == pytest.approx(metrics["image_f1_max"])
    pixels = ev.heatmaps.float().numpy().ravel()
    truth = (test.maps.numpy().ravel() > 0).astype(int)
    assert metrics["pixel_ap"] == pytest.approx(average_precision_score(truth, pixels), abs=2e-3)
    assert metrics["pixel_f1_max"] == pytest.approx(best_f1(truth, pixels), abs=2e-3)
    assert metrics["pixel_aupro"] == pytest.approx(aupro(ev.heatmaps, test.maps > 0), abs=1e-12)
    assert 0 <= metrics["pixel_aupro"] <= 1
