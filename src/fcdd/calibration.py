"""Verdict thresholds, calibrated at the end of training on images the model did not train on.

The held-out nominal training images (``--holdout``) give the false-positive side. When the
run's supervision makes anomalies (confetti, outliers, real defects), a copy of every held-out
image turned anomalous by it gives the other side, and the image threshold maximises F1;
otherwise, or with ``--target-fpr``, it is the lowest threshold whose false-positive rate on the
held-out nominal images does not exceed the target (5 % by default). The pixel threshold, for a
binary defect mask, flags ``--pixel-fpr`` (0.1 %) of the held-out nominal pixels; it is never
chosen on synthetic defects, whose heatmaps are often brighter than real ones.

A verdict is ``score >= threshold``. Everything is stored in the snapshot under ``thresholds``:
the rules used, the rates reached on the calibration images and on the test set, the heatmap
colour scale (threshold mid-scale) and the score normalisation (threshold at 0.5).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from fcdd.config import Config
from fcdd.data.base import ImageSet
from fcdd.data.supervision import Supervision
from fcdd.data.transforms import to_float
from fcdd.evaluation import Evaluation, infer
from fcdd.methods.base import Method
from fcdd.metrics import best_f1_threshold
from fcdd.runtime import DIVERGED_ADVICE, DivergedError, derived_seed

log = logging.getLogger("fcdd")

DEFAULT_FPR = 0.05
DEFAULT_PIXEL_FPR = 0.001
PIXEL_SAMPLE = 2_000_000


@dataclass
class CalibrationSet:
    """Scores, heatmaps, labels and ground-truth maps of the calibration images."""

    scores: np.ndarray
    labels: np.ndarray
    heatmaps: torch.Tensor
    maps: torch.Tensor


def rates(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """F1, precision, false- and true-positive rates of the verdict ``score >= threshold``."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    predicted = scores >= threshold
    tp = int((predicted & labels).sum())
    fp = int((predicted & ~labels).sum())
    fn = int((~predicted & labels).sum())
    return {
        "f1": 2 * tp / (2 * tp + fp + fn) if labels.any() else None,
        "precision": tp / (tp + fp) if tp + fp else None,
        "fpr": fp / int((~labels).sum()) if (~labels).any() else None,
        "tpr": tp / int(labels.sum()) if labels.any() else None,
    }


def fpr_threshold(nominal: np.ndarray, fpr: float) -> float:
    """The lowest threshold that flags at most ``fpr`` of the nominal scores (``score >= t``)."""
    if not 0 <= fpr < 1:
        raise ValueError(f"target false-positive rate must lie in [0, 1), got {fpr}")
    ordered = np.sort(np.asarray(nominal, dtype=np.float64))[::-1]
    if len(ordered) == 0:
        return float("nan")
    allowed = int(np.floor(fpr * len(ordered) + 1e-9))
    if allowed >= len(ordered):
        return float(ordered[-1])
    # just above the first nominal score that must stay below the threshold
    return float(np.nextafter(ordered[allowed], np.inf))


def threshold_from(scores: np.ndarray, labels: np.ndarray, target_fpr: float | None, default_fpr: float = DEFAULT_FPR) -> dict:
    """Max-F1 threshold when anomalies are present and no target rate is given, else the FPR rule."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(int)
    if not np.isfinite(scores).all():  # an infinite threshold would flag nothing (or everything)
        raise DivergedError(f"the model diverged: {int((~np.isfinite(scores)).sum())} calibration value(s) are NaN or infinite; {DIVERGED_ADVICE}")
    if target_fpr is None and (labels == 1).any() and (labels == 0).any():
        threshold, _ = best_f1_threshold(scores, labels)
        rule = "max_f1"
    else:
        fpr = default_fpr if target_fpr is None else target_fpr
        threshold = fpr_threshold(scores[labels == 0], fpr)
        rule = f"fpr<={fpr:g}"
    return {"threshold": threshold, "rule": rule, "n_nominal": int((labels == 0).sum()), "n_anomalous": int((labels == 1).sum()), **rates(scores, labels, threshold)}


def score_normalisation(nominal: np.ndarray, threshold: float) -> dict | None:
    """Parameters of a logistic map that sends ``threshold`` to 0.5 and the median nominal score to 0.1.

    A logistic curve is monotone and stays inside (0, 1) for any score, so a score far beyond
    anything seen in calibration still gets a value, and the order of scores never changes.
    """
    nominal = np.asarray(nominal, dtype=np.float64)
    nominal = nominal[np.isfinite(nominal)]
    if not len(nominal) or not np.isfinite(threshold):
        return None
    gap = threshold - float(np.median(nominal))
    if gap <= 0:  # degenerate: fall back to the nominal spread
        gap = float(np.std(nominal)) or abs(threshold) * 1e-3 or 1e-6
    return {"threshold": float(threshold), "scale": float(gap / np.log(9.0)), "rule": "logistic: threshold -> 0.5, median nominal -> 0.1"}


def normalise_scores(scores: torch.Tensor, threshold: float, scale: float) -> torch.Tensor:
    """Scores mapped into [0, 1] (monotone) with ``threshold`` at 0.5."""
    return torch.sigmoid((scores.double() - threshold) / scale)


def _infer_all(method, images: torch.Tensor, batch_size: int, device) -> tuple[np.ndarray, torch.Tensor]:
    scores, maps = [], []
    for start in range(0, len(images), batch_size):
        s, h = infer(method, images[start : start + batch_size].to(device))
        scores.append(s.cpu())
        maps.append(h.float().cpu())
    return torch.cat(scores).double().numpy(), torch.cat(maps)


def calibration_set(
    method: Method, holdout: ImageSet | None, supervision: Supervision, batch_size: int, seed: int, device,
) -> CalibrationSet | None:
    """Held-out nominal images, plus a copy of each turned anomalous by the run's supervision."""
    if holdout is None or len(holdout) == 0:
        return None
    method = method.eval()
    images = to_float(holdout.images)
    maps = holdout.maps.float()
    generator = torch.Generator().manual_seed(derived_seed(seed, "calibration"))
    batch = supervision.with_fraction(1.0)(images.clone(), maps.clone(), generator)
    made = batch.labels.cpu().bool()
    all_images = torch.cat([images, batch.images.cpu()[made]])
    all_maps = torch.cat([torch.zeros_like(maps), (batch.maps.cpu()[made] > 0.5).float()])
    labels = np.concatenate([np.zeros(len(images), int), np.ones(int(made.sum()), int)])
    scores, heatmaps = _infer_all(method, all_images, batch_size, device)
    return CalibrationSet(scores, labels, heatmaps, all_maps)


def _pixels(heatmaps: torch.Tensor, maps: torch.Tensor, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    values, labels = heatmaps.reshape(-1), (maps.reshape(-1) > 0.5).long()
    if len(values) > n:
        pick = torch.randperm(len(values), generator=torch.Generator().manual_seed(seed))[:n]
        values, labels = values[pick], labels[pick]
    return values.double().numpy(), labels.numpy()


def nominal_pixels(calibration: CalibrationSet, seed: int = 0) -> np.ndarray:
    """Heatmap values of the held-out nominal images (a seeded sample when there are very many)."""
    nominal = calibration.heatmaps[torch.from_numpy(calibration.labels == 0)]
    return _pixels(nominal, torch.zeros_like(nominal), PIXEL_SAMPLE, seed)[0]


def pixel_threshold_from(calibration: CalibrationSet, pixel_fpr: float, seed: int = 0,
                         values: np.ndarray | None = None) -> dict:
    """The lowest heatmap value that flags at most ``pixel_fpr`` of the held-out nominal pixels.

    Nominal pixels only: heatmaps of real defects are often lower than those of the synthetic
    anomalies calibration could paste in, so a threshold chosen to separate synthetic defects
    misses real ones. The rates on the synthetic copies are still reported, for information.
    ``values`` are ``nominal_pixels(calibration, seed)`` when the caller has them already.
    """
    anomalous = torch.from_numpy(calibration.labels == 1)
    nominal = calibration.heatmaps[~anomalous]
    values = nominal_pixels(calibration, seed) if values is None else values
    threshold = fpr_threshold(values, pixel_fpr)
    flagged_images = (nominal.flatten(1).amax(1) >= threshold).double().mean().item() if len(nominal) else None
    result = {
        "threshold": threshold, "rule": f"fpr<={pixel_fpr:g} of held-out nominal pixels",
        "n_nominal_pixels": int(nominal.numel()), "nominal_images_flagged": flagged_images,
    }
    if anomalous.any() and calibration.maps[anomalous].sum() > 0:
        synthetic, labels = _pixels(calibration.heatmaps, calibration.maps, PIXEL_SAMPLE, seed)
        result["synthetic_anomalies"] = rates(synthetic, labels, threshold)
    return {**result, "fpr": float((values >= threshold).mean()) if len(values) else None}


def colour_range(values: np.ndarray, pixel_threshold: float) -> list[float]:
    """Heatmap colour scale from nominal pixel ``values``: from their 1st percentile to twice the
    distance to the pixel threshold, so the threshold sits mid-scale and flagged pixels are the warm half."""
    low = float(np.quantile(values, 0.01)) if len(values) else 0.0
    if not np.isfinite(pixel_threshold) or pixel_threshold <= low:
        return [low, low + 1e-6]
    return [low, low + 2 * (pixel_threshold - low)]


def thresholds_for(calibration: CalibrationSet, target_fpr: float | None, seed: int = 0,
                   pixel_fpr: float = DEFAULT_PIXEL_FPR) -> dict:
    image = threshold_from(calibration.scores, calibration.labels, target_fpr)
    values = nominal_pixels(calibration, seed)  # one read of the nominal pixels for threshold and colours
    pixel = pixel_threshold_from(calibration, pixel_fpr, seed, values)
    return {
        "image": image,
        "pixel": pixel,
        # a fixed colour scale for heatmaps, so colours mean the same on every image
        "heatmap_range": colour_range(values, pixel["threshold"]),
        "normalisation": score_normalisation(calibration.scores[calibration.labels == 0], image["threshold"]),
        "n_nominal": image["n_nominal"],
        "n_anomalous": image["n_anomalous"],
    }


#: share of anomalous verdicts without a flagged pixel above which a warning is logged
EMPTY_MASK_WARNING = 0.25


def test_rates(evaluation: Evaluation, test: ImageSet, thresholds: dict) -> dict:
    """How the stored thresholds do on the test set (never used to choose them).

    Image verdicts: precision, recall, F1 and FPR. Pixels (at the input resolution, where the
    masks of ``predict`` are drawn): the same over all test pixels, the share of defective and
    of good test images with any flagged pixel, and the share of anomalous verdicts whose mask is
    empty, a verdict a line engineer cannot check.
    """
    image_t = thresholds["image"]["threshold"]
    image = rates(evaluation.scores, evaluation.labels, image_t)
    result: dict = {"image": {**image, "recall": image["tpr"]}}
    pixel_t = (thresholds.get("pixel") or {}).get("threshold")
    if pixel_t is None or not len(evaluation.heatmaps):
        return result
    peaks = evaluation.heatmaps.float().flatten(1).amax(1).numpy()
    flagged = peaks >= pixel_t
    labels = np.asarray(evaluation.labels).astype(bool)
    called = np.asarray(evaluation.scores) >= image_t
    result["defective_images_with_flagged_pixels"] = float(flagged[labels].mean()) if labels.any() else None
    result["good_images_with_flagged_pixels"] = float(flagged[~labels].mean()) if (~labels).any() else None
    result["anomalous_verdicts_with_empty_mask"] = float((~flagged[called]).mean()) if called.any() else None
    if test.has_maps:
        tp = fp = fn = negatives = positives = 0
        for start in range(0, len(test), 64):
            heat = evaluation.heatmaps[start : start + 64].float() >= pixel_t
            truth = test.maps[start : start + 64] > 0
            tp += int((heat & truth).sum())
            fp += int((heat & ~truth).sum())
            fn += int((~heat & truth).sum())
            positives += int(truth.sum())
            negatives += int((~truth).sum())
        result["pixel"] = {
            "f1": 2 * tp / (2 * tp + fp + fn) if positives else None,
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / positives if positives else None,
            "fpr": fp / negatives if negatives else None,
        }
    empty = result["anomalous_verdicts_with_empty_mask"]
    if empty is not None and empty > EMPTY_MASK_WARNING:
        log.warning(
            "%.0f%% of the test images called anomalous have no pixel above the pixel threshold %.4g: their masks are "
            "empty (raise --pixel-fpr for larger masks)", 100 * empty, pixel_t,
        )
    return result


def calibrate(
    config: Config, method: Method, holdout: ImageSet | None, supervision: Supervision, device,
    evaluation: Evaluation | None = None, test: ImageSet | None = None,
) -> dict:
    """Image and pixel thresholds from the held-out images; ``{}`` when the run holds none out.

    ``supervision`` is the run's own (built once per run); ``evaluation``, when given, adds how
    the chosen verdict does on the test set.
    """
    calibration = calibration_set(method, holdout, supervision, config.eval_batch_size, config.seed, device)
    if calibration is None:
        return {}
    result = thresholds_for(calibration, config.target_fpr, config.seed, config.pixel_fpr)
    made = result["n_anomalous"]
    result["source"] = f"{result['n_nominal']} held-out nominal training images" + (
        f" and {made} copies turned anomalous by the run's supervision ({config.supervise_mode})" if made else ""
    )
    if evaluation is not None and test is not None and len(evaluation.scores):
        result["test"] = test_rates(evaluation, test, result)
    return result
