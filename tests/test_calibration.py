"""Thresholds calibrated after training: the rates they claim are the rates they give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

import fcdd
from fcdd.calibration import calibrate, calibration_set, fpr_threshold, rates, threshold_from, thresholds_for
from fcdd.config import Config


def test_fpr_threshold_never_exceeds_the_target():
    rng = np.random.default_rng(0)
    for n in (1, 3, 7, 20, 101):
        nominal = rng.normal(size=n)
        for target in (0.0, 0.05, 0.1, 0.34, 0.5):
            t = fpr_threshold(nominal, target)
            fpr = float((nominal >= t).mean())
            assert fpr <= target + 1e-12
            # and it is the lowest such threshold: one step down flags one more image
            if fpr + 1 / n <= target + 1e-12:
                pytest.fail(f"threshold not minimal for n={n}, target={target}")
    ties = np.array([1.0, 1.0, 1.0, 0.0])
    assert (ties >= fpr_threshold(ties, 0.5)).mean() <= 0.5
    with pytest.raises(ValueError, match="false-positive rate"):
        fpr_threshold(ties, 1.0)


def test_max_f1_threshold_reproduces_its_f1():
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(40, int), np.ones(25, int)]
    scores = np.r_[rng.normal(0, 1, 40), rng.normal(1.5, 1, 25)]
    result = threshold_from(scores, labels, None)
    assert result["rule"] == "max_f1"
    assert result["f1"] == pytest.approx(f1_score(labels, scores >= result["threshold"]))
    # no other observed threshold does better
    best = max(f1_score(labels, scores >= t) for t in scores)
    assert result["f1"] == pytest.approx(best)
    fixed = threshold_from(scores, labels, 0.1)
    assert fixed["rule"] == "fpr<=0.1" and fixed["fpr"] <= 0.1
    nominal_only = threshold_from(scores[:40], labels[:40], None)
    assert nominal_only["rule"] == "fpr<=0.05" and nominal_only["f1"] is None and nominal_only["fpr"] <= 0.05


def test_run_stores_thresholds_that_reproduce_their_claims(tiny_run):
    stored = tiny_run.metrics["thresholds"]
    snapshot = torch.load(Path(tiny_run.out) / "snapshot.pt", weights_only=True)
    assert snapshot["thresholds"]["image"]["threshold"] == stored["image"]["threshold"]
    assert stored["image"]["rule"] == "max_f1" and stored["n_anomalous"] > 0
    # the calibration images are rebuilt deterministically: same threshold, same F1
    calibration = calibration_set(tiny_run.method, tiny_run.splits.holdout, tiny_run.supervision, 32, tiny_run.config.seed, "cpu")
    again = thresholds_for(calibration, None, tiny_run.config.seed)
    assert again["image"]["threshold"] == pytest.approx(stored["image"]["threshold"])
    claimed = rates(calibration.scores, calibration.labels, stored["image"]["threshold"])
    assert claimed["f1"] == pytest.approx(stored["image"]["f1"])
    assert claimed["f1"] == pytest.approx(f1_score(calibration.labels, calibration.scores >= stored["image"]["threshold"]))
    pixel_labels = (calibration.maps > 0.5).reshape(-1).numpy()
    pixel_pred = (calibration.heatmaps >= stored["pixel"]["threshold"]).reshape(-1).numpy()
    assert stored["pixel"]["f1"] == pytest.approx(f1_score(pixel_labels, pixel_pred), abs=0.02)  # claim from a pixel sample
    # the test-set rates it reports are what the detector's verdicts give on the test files
    detector = fcdd.load(tiny_run.out, device="cpu")
    verdicts = np.array([p.anomalous for p in detector.predict(tiny_run.evaluation.paths)])
    labels = tiny_run.evaluation.labels
    assert stored["test"]["f1"] == pytest.approx(f1_score(labels, verdicts))
    assert stored["test"]["fpr"] == pytest.approx(verdicts[labels == 0].mean())


def test_target_fpr_rule(tiny_run):
    calibration = calibration_set(tiny_run.method, tiny_run.splits.holdout, tiny_run.supervision, 32, tiny_run.config.seed, "cpu")
    result = thresholds_for(calibration, 0.2)
    assert result["image"]["rule"] == "fpr<=0.2" and result["image"]["fpr"] <= 0.2
    assert result["pixel"]["rule"] == "fpr<=0.2" and result["pixel"]["fpr"] <= 0.2
    lo, hi = result["heatmap_range"]
    assert hi > lo
    with pytest.raises(ValueError, match="target_fpr"):
        Config(target_fpr=1.5)


def test_no_holdout_means_no_thresholds():
    assert calibrate(Config(), None, None, None, "cpu") == {}
