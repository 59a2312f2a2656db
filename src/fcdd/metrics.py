"""Detection and explanation metrics.

Image AUROC is exact (rank statistic with ties counted half). Pixel AUROC runs over every test
pixel and would not fit in memory for large sets, so ``StreamingAUROC`` bins scores by the top
bits of their float32 pattern: the bins are relative-width (about 0.05 % of the value with the
default 20 bits), so the result does not depend on the scale of the heatmaps, and it comes with
an exact bound on its distance from the unbinned AUROC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def auroc(scores, labels) -> float:
    """Area under the ROC curve; ties count one half. NaN when only one class is present."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # average ranks over ties
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(scores)]])
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates, thresholds), thresholds descending."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    distinct = np.flatnonzero(np.diff(s)) if len(s) else np.array([], dtype=int)
    last = np.concatenate([distinct, [len(s) - 1]]) if len(s) else np.array([], dtype=int)
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    tpr = np.concatenate([[0.0], tps / max(y.sum(), 1)])
    fpr = np.concatenate([[0.0], fps / max((~y).sum(), 1)])
    return fpr, tpr, np.concatenate([[np.inf], s[last]])


def trapezoid_area(fpr: np.ndarray, tpr: np.ndarray) -> float:
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def _ordered_bits(values: torch.Tensor) -> torch.Tensor:
    """float32 -> int64 keys whose order is the float order (negative floats flipped)."""
    bits = values.float().contiguous().view(torch.int32).long()
    return torch.where(bits < 0, -(bits & 0x7FFFFFFF) - 1, bits) + (1 << 31)


@dataclass
class StreamingAUROC:
    """Pixel AUROC over arbitrarily many pixels with two fixed-size histograms.

    Each score lands in the bin given by the top ``bits`` bits of its order-preserving float32
    key. Within a bin positives and negatives count as ties (one half), so the result is off from
    the exact AUROC by at most ``error_bound`` = sum_b pos_b * neg_b / (2 P N).
    """

    bits: int = 20

    def __post_init__(self) -> None:
        self.positives = torch.zeros(1 << self.bits, dtype=torch.int64)
        self.negatives = torch.zeros(1 << self.bits, dtype=torch.int64)

    def update(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        scores = scores.detach().reshape(-1).cpu()
        labels = labels.detach().reshape(-1).cpu().bool()
        if torch.isnan(scores).any():
            raise ValueError("heatmaps contain NaN; the model diverged")
        keys = _ordered_bits(scores) >> (32 - self.bits)
        size = 1 << self.bits
        self.positives += torch.bincount(keys[labels], minlength=size)
        self.negatives += torch.bincount(keys[~labels], minlength=size)

    @property
    def counts(self) -> tuple[int, int]:
        return int(self.positives.sum()), int(self.negatives.sum())

    def compute(self) -> float:
        p_total, n_total = self.counts
        if p_total == 0 or n_total == 0:
            return float("nan")
        pos, neg = self.positives.double(), self.negatives.double()
        negatives_below = torch.cumsum(neg, 0) - neg
        wins = (pos * negatives_below).sum() + 0.5 * (pos * neg).sum()
        return float(wins / (p_total * n_total))

    @property
    def error_bound(self) -> float:
        p_total, n_total = self.counts
        if p_total == 0 or n_total == 0:
            return float("nan")
        return float((self.positives.double() * self.negatives.double()).sum() / (2 * p_total * n_total))

    def curve(self, max_points: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """ROC points (fpr, tpr) from the histograms, thinned to at most ``max_points``."""
        nz = (self.positives + self.negatives).nonzero().squeeze(1).flip(0)
        tps = torch.cumsum(self.positives[nz], 0).double()
        fps = torch.cumsum(self.negatives[nz], 0).double()
        p_total, n_total = self.counts
        fpr = torch.cat([torch.zeros(1), fps / max(n_total, 1)]).numpy()
        tpr = torch.cat([torch.zeros(1), tps / max(p_total, 1)]).numpy()
        if len(fpr) > max_points:
            keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
            fpr, tpr = fpr[keep], tpr[keep]
        return fpr, tpr


def best_f1_threshold(scores, labels) -> tuple[float, float]:
    """(threshold, F1) maximising F1 for the verdict ``score >= threshold``."""
    fpr, tpr, thresholds = roc_curve(scores, labels)
    labels = np.asarray(labels).astype(bool)
    p, n = labels.sum(), (~labels).sum()
    tp, fp = tpr * p, fpr * n
    f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + (p - tp), 1e-12), 0.0)
    best = int(np.argmax(f1[1:]) + 1) if len(f1) > 1 else 0
    return float(thresholds[best]), float(f1[best])
