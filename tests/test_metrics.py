from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from fcdd.metrics import StreamingAUROC, auroc, best_f1_threshold, roc_curve, trapezoid_area


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=500)
    scores[:50] = np.round(scores[:50], 1)  # ties
    labels = rng.random(500) < 0.3
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr, _ = roc_curve(scores, labels)
    assert trapezoid_area(fpr, tpr) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize("scale", [1e-4, 1.0, 1e3])
def test_streaming_auroc_within_its_stated_bound(scale):
    """The binned pixel AUROC is within ``error_bound`` of the exact one, and the bound is small."""
    rng = np.random.default_rng(1)
    labels = rng.random(200_000) < 0.05
    scores = (rng.gamma(2.0, size=labels.size) + labels * 0.8) * scale
    exact = roc_auc_score(labels, scores)
    metric = StreamingAUROC()
    for chunk in np.array_split(np.arange(labels.size), 7):  # streamed in pieces
        metric.update(torch.from_numpy(scores[chunk]).float(), torch.from_numpy(labels[chunk]))
    assert abs(metric.compute() - exact) <= metric.error_bound + 1e-6
    assert metric.error_bound < 1e-3
    fpr, tpr = metric.curve(max_points=100_000)
    assert trapezoid_area(fpr, tpr) == pytest.approx(metric.compute(), abs=1e-9)


def test_streaming_handles_negative_scores_in_order():
    metric = StreamingAUROC()
    metric.update(torch.tensor([-3.0, -1.0, 0.0, 2.0]), torch.tensor([0, 0, 1, 1]))
    assert metric.compute() == 1.0
    metric.update(torch.tensor([-5.0]), torch.tensor([1]))
    assert metric.compute() == pytest.approx(4 / 6)


def test_best_f1_threshold():
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    labels = np.array([0, 0, 1, 1, 1])
    threshold, f1 = best_f1_threshold(scores, labels)
    assert threshold == 0.3 and f1 == 1.0
