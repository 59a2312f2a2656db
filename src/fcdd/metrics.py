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
    """Area under the ROC curve; ties count one half. NaN when only one class is present;
    ValueError on NaN scores (a diverged model) or scores and labels of different lengths."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN; the model diverged")
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

    def update(self, scores, labels) -> None:
        """Add a batch: scores and labels (mask nonzero = anomalous) of the same number of elements."""
        scores = torch.as_tensor(scores).detach().reshape(-1).cpu()
        labels = torch.as_tensor(labels).detach().reshape(-1).cpu() != 0
        if scores.numel() != labels.numel():
            raise ValueError(f"{scores.numel()} scores but {labels.numel()} mask values")
        if torch.isnan(scores).any():
            raise ValueError("heatmaps contain NaN; the model diverged")
        keys = _ordered_bits(scores.float() + 0.0) >> (32 - self.bits)  # + 0.0 folds -0.0 into +0.0
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


# --- metrics the anomaly-detection field reports beside AUROC ------------------------------------


def _image(array, i: int) -> np.ndarray:
    """Image ``i`` of an (N, H, W) or (N, 1, H, W) numpy array or torch tensor, as a 2-D numpy array."""
    item = array[i]
    if isinstance(item, torch.Tensor):
        item = item.detach().cpu().numpy()
    item = np.asarray(item)
    if item.ndim == 3 and item.shape[0] == 1:
        item = item[0]
    if item.ndim != 2:
        raise ValueError(f"expected (N, H, W) or (N, 1, H, W) maps, got an image of shape {item.shape}")
    return item


def _area_up_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under the polyline (x, y) from x[0] to ``x_max``, x non-decreasing.

    The segment that crosses ``x_max`` is cut there, with y interpolated linearly on it.
    """
    x0, x1, y0, y1 = x[:-1], x[1:], y[:-1], y[1:]
    inside = x0 < x_max
    x0, x1, y0, y1 = x0[inside], x1[inside], y0[inside], y1[inside]
    crosses = x1 > x_max
    dx = np.where(crosses, x1 - x0, 1.0)  # > 0 wherever it is used
    y_end = np.where(crosses, y0 + (y1 - y0) * (x_max - x0) / dx, y1)
    x_end = np.minimum(x1, x_max)
    return float(np.sum((x_end - x0) * (y0 + y_end) / 2))


def aupro(heatmaps, masks, max_fpr: float = 0.3, thresholds: int = 1000) -> float:
    """Area under the per-region-overlap (PRO) curve up to ``max_fpr``, divided by ``max_fpr``.

    The MVTec-AD / anomalib localisation metric: pixel AUROC lets one large defect dominate, PRO
    weighs every defect region (8-connected component of a mask) the same. For a threshold t,
    PRO(t) is the mean over all regions of the fraction of the region with ``heat >= t`` and
    FPR(t) is the fraction of nominal pixels (mask == 0, all images) with ``heat >= t``. PRO is
    integrated over FPR in [0, max_fpr] by the trapezoid rule, cut at exactly ``max_fpr`` with
    linear interpolation. The curve runs from (0, 0) (t = +inf) to (1, 1) (t = -inf), so a
    perfect map scores 1, an inverted one 0 and a constant one max_fpr / 2 (the diagonal).

    Threshold grid (bounded memory, no global sort): ``thresholds`` order statistics of a seeded
    random sample of at most ``64 * thresholds`` nominal pixels (all of them when there are fewer),
    plus the highest nominal score, placed at FPR levels evenly spaced over [0, 1.05 * max_fpr],
    and one threshold just above that (FPR 0). The grid is thus dense exactly
    where the integral is taken and consists of actual score values, so ties are kept intact; the
    counts at each grid threshold are exact (accumulated image by image with ``np.searchsorted``
    + ``np.bincount``), only the curve between grid points is a straight line. Extra memory is
    O(64 x thresholds (the sample) + thresholds x regions of one image + one image), independent
    of N; the heatmaps are read three times, one image at a time.

    Masks count as anomalous where nonzero. NaN when there is no anomalous region or no nominal
    pixel; ValueError on NaN heatmaps.
    """
    from scipy import ndimage

    if not 0 < max_fpr <= 1:
        raise ValueError(f"max_fpr must lie in (0, 1], got {max_fpr}")
    if thresholds < 2:
        raise ValueError(f"need at least 2 thresholds, got {thresholds}")
    n = len(heatmaps)
    if len(masks) != n:
        raise ValueError(f"{n} heatmaps but {len(masks)} masks")
    structure = np.ones((3, 3), dtype=bool)  # 8-connectivity

    # pass 1: how many nominal pixels there are, to size the sample
    n_nominal = 0
    for i in range(n):
        heat, mask = _image(heatmaps, i), _image(masks, i)
        if heat.shape != mask.shape:
            raise ValueError(f"heatmap {i} has shape {heat.shape} but its mask {mask.shape}")
        if np.isnan(heat).any():
            raise ValueError("heatmaps contain NaN; the model diverged")
        n_nominal += int((mask == 0).sum())
    if n_nominal == 0:
        return float("nan")

    # pass 2: the threshold grid from a sample of nominal scores
    budget = 64 * thresholds
    keep = min(1.0, budget / n_nominal)
    rng = np.random.default_rng(0)
    sample, top = [], -np.inf
    for i in range(n):
        values = _image(heatmaps, i)[_image(masks, i) == 0].astype(np.float64)
        if values.size:
            top = max(top, float(values.max()))
        if keep < 1.0:
            values = values[rng.random(values.size) < keep]
        sample.append(values)
    if keep < 1.0:
        sample.append(np.array([top]))  # the highest nominal score always makes the grid
    sample = np.sort(np.concatenate(sample))
    m = sample.size
    levels = np.linspace(0.0, min(1.0, 1.05 * max_fpr), thresholds)
    ranks = np.clip(np.ceil((1.0 - levels) * m).astype(np.int64) - 1, 0, m - 1)
    # just above the highest nominal score: FPR 0, so the curve's first corner is exact
    grid = np.unique(np.concatenate([sample[ranks], [np.nextafter(top, np.inf)]]))  # ascending
    k = grid.size
    del sample

    # pass 3: per-threshold counts, image by image
    nominal_ge = np.zeros(k, dtype=np.int64)
    pro_sum = np.zeros(k, dtype=np.float64)
    n_regions = 0
    for i in range(n):
        heat = _image(heatmaps, i).astype(np.float64)
        anomalous = _image(masks, i) != 0
        above = np.searchsorted(grid, heat, side="right")  # how many grid thresholds are <= heat
        hist = np.bincount(above[~anomalous], minlength=k + 1)
        nominal_ge += np.cumsum(hist[::-1])[::-1][1:]  # [j] = pixels with above > j, i.e. heat >= grid[j]
        regions, r = ndimage.label(anomalous, structure=structure)
        if r == 0:
            continue
        region = regions[anomalous] - 1
        counts = np.bincount(region * (k + 1) + above[anomalous], minlength=r * (k + 1)).reshape(r, k + 1)
        covered = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1][:, 1:]
        pro_sum += (covered / counts.sum(axis=1, keepdims=True)).sum(axis=0)
        n_regions += r
    if n_regions == 0:
        return float("nan")

    # thresholds descending: both FPR and PRO non-decreasing
    fpr = np.concatenate([[0.0], nominal_ge[::-1] / n_nominal, [1.0]])
    pro = np.concatenate([[0.0], pro_sum[::-1] / n_regions, [1.0]])
    return _area_up_to(fpr, pro, max_fpr) / max_fpr


def _pr_counts(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(true positives, false positives, thresholds) at each distinct score, descending, and P.

    The counts at threshold t are those of the verdict ``score >= t``; tied scores share one point.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores but {labels.size} labels")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.concatenate([np.flatnonzero(np.diff(s)), [len(s) - 1]]) if len(s) else np.zeros(0, dtype=np.int64)
    tps = np.cumsum(y, dtype=np.int64)[last]
    fps = (last + 1) - tps
    return tps, fps, s[last], int(y.sum())


def _f1_from_counts(tps: np.ndarray, fps: np.ndarray, p: int) -> np.ndarray:
    # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (TP + FP + P)
    return 2.0 * tps / np.maximum(tps + fps + p, 1)


def _ap_from_counts(tps: np.ndarray, fps: np.ndarray, p: int) -> float:
    # sum_n (R_n - R_{n-1}) P_n over distinct thresholds, descending, R_0 = 0
    recall_steps = np.diff(np.concatenate([[0], tps])) / p
    precision = tps / np.maximum(tps + fps, 1)
    return float(np.sum(recall_steps * precision))


def f1_max(scores, labels) -> tuple[float, float]:
    """(best F1, threshold reaching it) over all thresholds, verdict ``score >= threshold``.

    The threshold-free summary the field reports with AUROC (how good the best operating point
    is). Exact: every distinct score is tried. On ties in F1 the highest threshold wins. Same
    optimum as ``best_f1_threshold``, which returns the pair the other way round. With no
    positive label F1 is undefined (0 / 0 at best) and the result is ``(nan, nan)``.
    """
    tps, fps, thresholds, p = _pr_counts(scores, labels)
    if p == 0:
        return float("nan"), float("nan")
    f1 = _f1_from_counts(tps, fps, p)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])


def average_precision(scores, labels) -> float:
    """Average precision as scikit-learn defines it: sum_n (R_n - R_{n-1}) P_n.

    The area under the precision-recall step curve; unlike AUROC it reacts to the class
    imbalance of anomaly data (few anomalous pixels). Tied scores form one step, as in
    ``sklearn.metrics.average_precision_score``. NaN when there is no positive label.
    """
    tps, fps, _, p = _pr_counts(scores, labels)
    if p == 0:
        return float("nan")
    return _ap_from_counts(tps, fps, p)


def _bin_floor(keys: torch.Tensor, bits: int) -> torch.Tensor:
    """The smallest float32 of each bin (the inverse of ``_ordered_bits`` at the bin's lowest key)."""
    ordered = (keys << (32 - bits)) - (1 << 31)
    raw = torch.where(ordered < 0, (-ordered - 1) - (1 << 31), ordered)  # sign bit set for negatives
    values = raw.to(torch.int32).view(torch.float32)
    return torch.where(torch.isnan(values), torch.full_like(values, float("-inf")), values)


@dataclass
class StreamingPixelCurves(StreamingAUROC):
    """Pixel F1-max and average precision over arbitrarily many pixels, with two fixed histograms.

    Scores are binned like ``StreamingAUROC`` (top ``bits`` bits of the order-preserving float32
    key): relative-width bins of about 0.05 % of the value at the default 20 bits, so the result
    does not depend on the scale of the heatmaps. Memory is 2 x 2**bits int64 counts (16 MiB at
    20 bits) whatever the number of pixels.

    Both metrics are computed exactly on the binned scores, i.e. as if all scores in a bin were
    tied; that is the only approximation. The F1 threshold is the lowest float32 of its bin, so
    ``score >= threshold`` selects exactly the pixels of that bin and above: the reported F1 is
    really reached at that threshold and is never above the exact F1-max.
    """

    def _cumulative(self) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """(TP, FP, bin index) at each non-empty bin, bins descending."""
        nz = (self.positives + self.negatives).nonzero().squeeze(1).flip(0)
        tps = torch.cumsum(self.positives[nz], 0).numpy()
        fps = torch.cumsum(self.negatives[nz], 0).numpy()
        return tps, fps, nz

    def f1_max(self) -> tuple[float, float]:
        """(best F1, threshold) over bin edges; ``(nan, nan)`` with no positive pixel, as ``f1_max``."""
        p, _ = self.counts
        if p == 0:
            return float("nan"), float("nan")
        tps, fps, nz = self._cumulative()
        f1 = _f1_from_counts(tps, fps, p)
        best = int(np.argmax(f1))
        return float(f1[best]), float(_bin_floor(nz[best : best + 1], self.bits)[0])

    def average_precision(self) -> float:
        """Average precision on the binned scores; NaN with no positive pixel."""
        p, _ = self.counts
        if p == 0:
            return float("nan")
        tps, fps, _ = self._cumulative()
        return _ap_from_counts(tps, fps, p)
