"""AUPRO, F1-max and average precision (exact and streaming) against slow references and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve

from fcdd.metrics import StreamingPixelCurves, aupro, average_precision, best_f1_threshold, f1_max


def blobs_and_maps(seed: int, n: int = 10, size: int = 64, quant: float = 20.0, strength: float = 1.5):
    """Masks with 1-3 elliptic blobs (every third image empty) and smooth noisy maps brighter on the
    blobs, rounded to multiples of 1 / ``quant`` so the reference has few thresholds to visit."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((n, size, size), dtype=np.uint8)
    for i in range(n):
        if i % 3 == 0:
            continue
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.integers(0, size, 2)
            ry, rx = rng.uniform(2, 9, 2)
            masks[i][((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = 1
    noise = ndimage.gaussian_filter(rng.normal(size=(n, size, size)), (0, 1.5, 1.5)) * 3
    heat = noise + strength * ndimage.gaussian_filter(masks.astype(float), (0, 2, 2))
    return np.round(heat * quant) / quant, masks


def reference_aupro(heat: np.ndarray, masks: np.ndarray, max_fpr: float = 0.3) -> float:
    """Every distinct heat value is a threshold; PRO and FPR computed directly at each one."""
    regions = []
    for i in range(len(masks)):
        labelled, count = ndimage.label(masks[i], structure=np.ones((3, 3)))
        regions += [(i, labelled == j) for j in range(1, count + 1)]
    nominal = masks == 0
    points = [(0.0, 0.0)]  # threshold +inf
    for t in np.unique(heat)[::-1]:
        hit = heat >= t
        fpr = hit[nominal].mean()
        pro = np.mean([hit[i][region].mean() for i, region in regions])
        points.append((fpr, pro))
    points.append((1.0, 1.0))  # threshold -inf
    area = 0.0
    for (f0, p0), (f1, p1) in zip(points, points[1:], strict=False):
        if f0 >= max_fpr:
            break
        if f1 > max_fpr:
            p1 = p0 + (p1 - p0) * (max_fpr - f0) / (f1 - f0)
            f1 = max_fpr
        area += (f1 - f0) * (p0 + p1) / 2
    return area / max_fpr


# --- AUPRO ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("thresholds", [1000, 100])  # 100: the nominal pixels are subsampled for the grid
@pytest.mark.parametrize("quant", [20.0, 200.0])
@pytest.mark.parametrize("seed", range(3))
def test_aupro_matches_slow_reference(seed, quant, thresholds):
    """Off by at most 0.5 / thresholds: the chord between grid points against the exact curve."""
    heat, masks = blobs_and_maps(seed, quant=quant)
    expected = reference_aupro(heat, masks)
    assert 0.5 < expected < 0.9  # informative, neither trivial nor random
    assert aupro(heat, masks, thresholds=thresholds) == pytest.approx(expected, abs=0.5 / thresholds)


def test_aupro_other_max_fpr_and_input_forms():
    heat, masks = blobs_and_maps(7, quant=50.0)
    for max_fpr in (0.05, 1.0):
        assert aupro(heat, masks, max_fpr=max_fpr) == pytest.approx(reference_aupro(heat, masks, max_fpr), abs=5e-4)
    as_numpy = aupro(heat, masks)
    as_torch = aupro(torch.from_numpy(heat).unsqueeze(1), torch.from_numpy(masks).unsqueeze(1).bool())
    assert as_torch == pytest.approx(as_numpy, abs=1e-12)  # (N, 1, H, W) tensors, bool masks


def test_aupro_perfect_inverse_and_constant_maps():
    _, masks = blobs_and_maps(3)
    perfect = masks.astype(np.float32)
    assert aupro(perfect, masks) == pytest.approx(1.0, abs=1e-9)
    rng = np.random.default_rng(0)
    separated = rng.random(masks.shape) + 2.0 * masks  # every anomalous pixel above every nominal one
    assert aupro(separated, masks) == pytest.approx(1.0, abs=1e-9)
    assert aupro(1.0 - perfect, masks) == pytest.approx(0.0, abs=1e-9)
    constant = np.full(masks.shape, 0.25)
    assert aupro(constant, masks) == pytest.approx(0.15, abs=1e-9)  # the diagonal: max_fpr / 2 / max_fpr
    assert aupro(constant, masks) == pytest.approx(reference_aupro(constant, masks), abs=1e-9)


def test_aupro_regions_are_8_connected():
    """A 2x2 block and a pixel touching it diagonally are one region of 5 pixels, not two."""
    masks = np.zeros((1, 8, 8), dtype=np.uint8)
    masks[0, 1:3, 1:3] = 1
    masks[0, 3, 3] = 1
    heat = np.zeros((1, 8, 8))
    heat[0, 3, 3] = 1.0  # finds the diagonal pixel only: PRO 1/5 (4-connectivity would say 1/2)
    # curve (0, 0) -> (0, 0.2) -> (1, 1): area to 0.3 is 0.3 * (0.2 + 0.44) / 2, over 0.3
    assert aupro(heat, masks) == pytest.approx(0.32, abs=1e-12)
    assert reference_aupro(heat, masks) == pytest.approx(0.32, abs=1e-12)


def test_aupro_degenerate_inputs():
    heat = np.random.default_rng(0).random((3, 16, 16))
    assert math.isnan(aupro(heat, np.zeros(heat.shape)))  # no anomalous region
    assert math.isnan(aupro(heat, np.ones(heat.shape)))  # no nominal pixel
    with pytest.raises(ValueError, match="NaN"):
        aupro(np.full(heat.shape, np.nan), np.zeros(heat.shape))
    with pytest.raises(ValueError, match="shape"):
        aupro(heat, np.zeros((3, 8, 8)))


# --- F1-max and average precision -----------------------------------------------------------------


def random_scores(seed: int, n: int = 600):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.2
    scores = rng.normal(size=n) + 0.8 * labels
    scores[: n // 2] = np.round(scores[: n // 2], 1)  # many ties, some across the classes
    return scores, labels


@pytest.mark.parametrize("seed", range(6))
def test_f1_max_matches_scikit_learn(seed):
    scores, labels = random_scores(seed)
    precision, recall, _ = precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.nanmax(2 * precision * recall / (precision + recall))
    f1, threshold = f1_max(scores, labels)
    assert f1 == pytest.approx(expected, abs=1e-12)
    assert f1_score(labels, scores >= threshold) == pytest.approx(f1, abs=1e-12)  # reached at that threshold
    old_threshold, old_f1 = best_f1_threshold(scores, labels)
    assert (old_f1, old_threshold) == pytest.approx((f1, threshold), abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_average_precision_matches_scikit_learn(seed):
    scores, labels = random_scores(seed)
    assert average_precision(scores, labels) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


def test_degenerate_labels():
    scores = np.array([0.1, 0.5, 0.5, 0.9])
    assert math.isnan(average_precision(scores, np.zeros(4)))
    f1, threshold = f1_max(scores, np.zeros(4))  # documented: F1 undefined without positives
    assert math.isnan(f1) and math.isnan(threshold)
    assert average_precision(scores, np.ones(4)) == 1.0
    assert f1_max(scores, np.ones(4)) == (1.0, 0.1)  # everything flagged
    assert f1_max([0.5, 0.5], [0, 1]) == pytest.approx((2 / 3, 0.5))  # one tie: all-or-nothing


# --- streaming pixel versions ---------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1e-4, 1.0, 1e3])
def test_streaming_pixel_curves_agree_with_exact(scale):
    """Float data: AP within 1e-4; F1 within 1e-4, never above the exact optimum, and reached at
    the reported threshold on the raw scores."""
    rng = np.random.default_rng(2)
    labels = rng.random(200_000) < 0.05
    scores = ((rng.gamma(2.0, size=labels.size) + 0.8 * labels - 1.0) * scale).astype(np.float32)  # some < 0
    curves = StreamingPixelCurves()
    for chunk in np.array_split(np.arange(labels.size), 7):
        curves.update(torch.from_numpy(scores[chunk]), torch.from_numpy(labels[chunk]))
    assert curves.counts == (int(labels.sum()), int((~labels).sum()))
    assert curves.average_precision() == pytest.approx(average_precision(scores, labels), abs=1e-4)
    f1, threshold = curves.f1_max()
    exact_f1, _ = f1_max(scores, labels)
    assert exact_f1 - 1e-4 <= f1 <= exact_f1 + 1e-12
    verdict = scores >= np.float32(threshold)
    assert f1_score(labels, verdict) == pytest.approx(f1, abs=1e-12)


def test_streaming_is_exact_when_bins_separate_the_scores():
    """Few distinct values, each in its own bin: no tie created by binning, so no error at all."""
    rng = np.random.default_rng(3)
    heat = rng.integers(-20, 30, size=(6, 1, 16, 16)).astype(np.float32) / 4  # (N, 1, H, W)
    masks = (rng.random((6, 16, 16)) < 0.1 + 0.02 * np.maximum(heat[:, 0], 0)).astype(np.uint8)  # (N, H, W)
    curves = StreamingPixelCurves()
    curves.update(heat, masks)  # numpy input
    scores, labels = heat.ravel(), masks.ravel()
    assert curves.average_precision() == pytest.approx(average_precision(scores, labels), abs=1e-12)
    assert curves.f1_max() == pytest.approx(f1_max(scores, labels), abs=1e-12)  # threshold a data value here


def test_streaming_degenerate_inputs():
    curves = StreamingPixelCurves()
    assert math.isnan(curves.average_precision())
    curves.update(torch.tensor([-0.0, 0.0, 1.0]), torch.tensor([0, 0, 0]))
    assert math.isnan(curves.average_precision())
    f1, threshold = curves.f1_max()
    assert math.isnan(f1) and math.isnan(threshold)
    curves.update(torch.tensor([2.0]), torch.tensor([1]))
    assert curves.average_precision() == 1.0
    assert curves.f1_max() == (1.0, 2.0)
    with pytest.raises(ValueError, match="NaN"):
        curves.update(torch.tensor([float("nan")]), torch.tensor([1]))
