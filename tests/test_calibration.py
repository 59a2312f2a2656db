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
    # the pixel threshold flags at most --pixel-fpr of the held-out nominal pixels, and is the lowest such
    nominal = calibration.heatmaps[torch.from_numpy(calibration.labels == 0)].reshape(-1).double()
    pixel_t = stored["pixel"]["threshold"]
    assert float((nominal >= pixel_t).double().mean()) <= tiny_run.config.pixel_fpr
    assert float((nominal >= nominal[nominal < pixel_t].max()).double().mean()) > tiny_run.config.pixel_fpr
    assert stored["pixel"]["rule"].startswith(f"fpr<={tiny_run.config.pixel_fpr:g} of held-out nominal pixels")
    # the colour scale puts the pixel threshold mid-scale
    lo, hi = stored["heatmap_range"]
    assert (lo + hi) / 2 == pytest.approx(pixel_t)
    # the test-set rates it reports are what the detector's verdicts and masks give on the test files
    detector = fcdd.load(tiny_run.out, device="cpu")
    predictions = detector.predict(tiny_run.evaluation.paths)
    verdicts = np.array([p.anomalous for p in predictions])
    labels = tiny_run.evaluation.labels.astype(bool)
    test = stored["test"]
    assert test["image"]["f1"] == pytest.approx(f1_score(labels, verdicts))
    assert test["image"]["fpr"] == pytest.approx(verdicts[~labels].mean())
    assert test["image"]["recall"] == pytest.approx(verdicts[labels].mean())
    flagged = np.array([bool(p.mask.any()) for p in predictions])
    assert test["defective_images_with_flagged_pixels"] == pytest.approx(flagged[labels].mean())
    assert test["good_images_with_flagged_pixels"] == pytest.approx(flagged[~labels].mean())
    assert test["anomalous_verdicts_with_empty_mask"] == pytest.approx((~flagged[verdicts]).mean())
    masks = torch.stack([p.mask for p in predictions]).reshape(-1).numpy()
    truth = (tiny_run.splits.test.maps > 0).reshape(-1).numpy()
    assert test["pixel"]["f1"] == pytest.approx(f1_score(truth, masks), abs=1e-3)
    assert test["pixel"]["fpr"] == pytest.approx(masks[~truth].mean(), abs=1e-3)


def test_normalised_scores_put_the_threshold_at_one_half(tiny_run):
    detector = fcdd.load(tiny_run.out, device="cpu")
    predictions = detector.predict(tiny_run.evaluation.paths)
    raw = np.array([p.score for p in predictions])
    normalised = np.array([p.normalised_score for p in predictions])
    assert ((normalised > 0) & (normalised < 1)).all()
    order = np.argsort(raw)
    assert (np.diff(normalised[order]) >= 0).all()  # monotone
    assert ((normalised >= 0.5) == np.array([p.anomalous for p in predictions])).all()
    assert detector.normalise(torch.tensor([detector.threshold])).item() == pytest.approx(0.5)
    detector.threshold = float(np.median(raw))  # an overridden threshold moves the midpoint with it
    assert detector.normalise(torch.tensor([detector.threshold])).item() == pytest.approx(0.5)
    assert "normalised_score" in predictions[0].to_dict()


def test_target_fpr_rule(tiny_run):
    calibration = calibration_set(tiny_run.method, tiny_run.splits.holdout, tiny_run.supervision, 32, tiny_run.config.seed, "cpu")
    result = thresholds_for(calibration, 0.2)
    assert result["image"]["rule"] == "fpr<=0.2" and result["image"]["fpr"] <= 0.2
    assert result["pixel"]["rule"].startswith("fpr<=0.001") and result["pixel"]["fpr"] <= 0.001
    wide = thresholds_for(calibration, 0.2, pixel_fpr=0.2)
    assert wide["pixel"]["fpr"] <= 0.2 and wide["pixel"]["threshold"] < result["pixel"]["threshold"]
    lo, hi = result["heatmap_range"]
    assert hi > lo
    with pytest.raises(ValueError, match="target_fpr"):
        Config(target_fpr=1.5)


def test_no_holdout_means_no_thresholds():
    assert calibrate(Config(), None, None, None, "cpu") == {}
