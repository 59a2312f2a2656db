"""Scoring a test set: image scores, heatmaps and the image / pixel AUROC."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from fcdd.data.base import ImageSet
from fcdd.data.transforms import to_float
from fcdd.methods.base import Method
from fcdd.metrics import StreamingPixelCurves, aupro, auroc, average_precision, f1_max, roc_curve


def infer(method: Method, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and heatmaps for a float batch, with gradients only when the method needs them."""
    if method.heatmaps_need_grad:
        with torch.enable_grad():
            scores, heatmaps = method(images)
        return scores.detach(), heatmaps.detach()
    with torch.no_grad():
        return method(images)


@dataclass
class Evaluation:
    scores: np.ndarray
    labels: np.ndarray
    kinds: list[str]
    paths: list[str]
    #: heatmaps (N, 1, H, W) float16 at input resolution, for galleries and later analysis
    heatmaps: torch.Tensor
    image_auroc: float
    pixel_auroc: float | None
    pixel_auroc_error_bound: float | None
    pixel_roc: tuple[np.ndarray, np.ndarray] | None = None
    #: area under the per-region-overlap curve up to FPR 0.3, normalised (MVTec-AD's metric)
    pixel_aupro: float | None = None
    #: the best F1 over all thresholds with its threshold, and average precision: image and pixel
    image_f1_max: tuple[float, float] | None = None
    image_ap: float | None = None
    pixel_f1_max: tuple[float, float] | None = None
    pixel_ap: float | None = None
    extra: dict = field(default_factory=dict)

    def metrics(self) -> dict:
        per_kind = {}
        for kind in sorted(set(self.kinds)):
            if kind == "good":
                continue
            pick = np.array([k in (kind, "good") for k in self.kinds])
            per_kind[kind] = auroc(self.scores[pick], self.labels[pick])
        return {
            "image_auroc": self.image_auroc,
            "pixel_auroc": self.pixel_auroc,
            "pixel_auroc_error_bound": self.pixel_auroc_error_bound,
            "pixel_aupro": self.pixel_aupro,
            "image_ap": self.image_ap,
            "image_f1_max": None if self.image_f1_max is None else self.image_f1_max[0],
            "image_f1_max_threshold": None if self.image_f1_max is None else self.image_f1_max[1],
            "pixel_ap": self.pixel_ap,
            "pixel_f1_max": None if self.pixel_f1_max is None else self.pixel_f1_max[0],
            "pixel_f1_max_threshold": None if self.pixel_f1_max is None else self.pixel_f1_max[1],
            "image_auroc_per_defect": per_kind,
            "n_test": len(self.scores),
            "n_test_anomalous": int(self.labels.sum()),
            **self.extra,
        }

    def image_roc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return roc_curve(self.scores, self.labels)


def region_overlap(heatmaps: torch.Tensor, test: ImageSet) -> float:
    """AUPRO (FPR <= 0.3) of the test heatmaps against the test masks."""
    return aupro(heatmaps, test.maps > 0, max_fpr=0.3)


def evaluate(method: Method, test: ImageSet, batch_size: int = 32, device: torch.device | str = "cpu", progress: bool = True) -> Evaluation:
    method.eval()
    pixel = StreamingPixelCurves()
    with_maps = test.has_maps
    scores, heatmaps = [], []
    for start in tqdm(range(0, len(test), batch_size), desc="evaluate", leave=False, disable=not progress):
        images = to_float(test.images[start : start + batch_size]).to(device)
        s, h = infer(method, images)
        scores.append(s.cpu())
        heatmaps.append(h.cpu().half())
        if with_maps:
            pixel.update(h.cpu(), test.maps[start : start + batch_size] > 0)
    scores_np = torch.cat(scores).double().numpy() if scores else np.zeros(0)
    labels = test.labels.numpy()
    if np.isnan(scores_np).any():
        raise ValueError("anomaly scores contain NaN; the model diverged (lower the learning rate)")
    heatmaps = torch.cat(heatmaps) if heatmaps else torch.zeros(0)
    return assemble(scores_np, labels, heatmaps, list(test.kinds), list(test.paths), test, pixel if with_maps else None)


def evaluation_from_scores(
    scores: np.ndarray, labels: np.ndarray, heatmaps: torch.Tensor, kinds: list[str], paths: list[str], test: ImageSet,
) -> Evaluation:
    """An ``Evaluation`` from stored scores and heatmaps and the test set's ground-truth maps
    (a finished run read back without scoring its test set again)."""
    scores = np.asarray(scores, dtype=np.float64)
    with_maps = test.has_maps
    pixel = StreamingPixelCurves()
    if with_maps:
        for start in range(0, len(test), 64):
            pixel.update(heatmaps[start : start + 64].float(), test.maps[start : start + 64] > 0)
    return assemble(scores, np.asarray(labels), heatmaps, list(kinds or test.kinds), list(paths or test.paths), test,
                    pixel if with_maps else None)


def assemble(
    scores: np.ndarray, labels: np.ndarray, heatmaps: torch.Tensor, kinds: list[str], paths: list[str], test: ImageSet,
    pixel: StreamingPixelCurves | None,
) -> Evaluation:
    """The evaluation of scored test images; ``pixel`` holds their pixel counts when there are masks."""
    both = bool(len(labels)) and 0 < int(np.sum(labels)) < len(labels)
    return Evaluation(
        scores=scores, labels=labels, kinds=kinds, paths=paths, heatmaps=heatmaps,
        image_auroc=auroc(scores, labels),
        pixel_auroc=pixel.compute() if pixel is not None else None,
        pixel_auroc_error_bound=pixel.error_bound if pixel is not None else None,
        pixel_roc=pixel.curve() if pixel is not None else None,
        pixel_aupro=region_overlap(heatmaps, test) if pixel is not None else None,
        image_f1_max=f1_max(scores, labels) if both else None,
        image_ap=average_precision(scores, labels) if both else None,
        pixel_f1_max=pixel.f1_max() if pixel is not None else None,
        pixel_ap=pixel.average_precision() if pixel is not None else None,
    )
