"""Using a trained model: ``fcdd.load(run_or_snapshot)`` gives a ``Detector``.

    detector = fcdd.load("runs/bottle")             # GPU when there is one
    detector.score(["a.png", "b.png"])               # (N,) anomaly scores
    detector.heatmap(pil_image)                      # (N, 1, S, S) at the training size
    for p in detector.predict(folder_files):         # score, heatmap, verdict, mask
        print(p.score, p.verdict)
    detector.threshold = 0.3                         # override the calibrated threshold

The snapshot carries everything the run used: config (net, objective, image size, channels),
weights (including the input normalisation), and the thresholds calibrated after training.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fcdd.calibration import normalise_scores
from fcdd.evaluation import infer
from fcdd.preprocess import as_items, is_prepared, iter_batches, prepare_batch
from fcdd.rundir import Run, method_from_snapshot, read_snapshot, snapshot_shape
from fcdd.runtime import pick_device

log = logging.getLogger("fcdd")


@dataclass
class Prediction:
    """One image's result. ``verdict`` is 'anomalous' / 'nominal', or None without a threshold."""

    score: float
    heatmap: torch.Tensor
    threshold: float | None
    pixel_threshold: float | None = None
    #: the score mapped monotonically into [0, 1] with the image threshold at 0.5 (None when uncalibrated)
    normalised_score: float | None = None

    @property
    def anomalous(self) -> bool | None:
        return None if self.threshold is None else bool(self.score >= self.threshold)

    @property
    def verdict(self) -> str | None:
        return None if self.anomalous is None else ("anomalous" if self.anomalous else "nominal")

    @property
    def mask(self) -> torch.Tensor | None:
        """Binary defect mask (H, W) at the training size: heatmap >= pixel threshold."""
        return None if self.pixel_threshold is None else self.heatmap >= self.pixel_threshold

    def to_dict(self) -> dict:
        """JSON-ready, without the heatmap."""
        mask = self.mask
        return {
            "score": self.score, "normalised_score": self.normalised_score, "verdict": self.verdict, "anomalous": self.anomalous, "threshold": self.threshold,
            "pixel_threshold": self.pixel_threshold,
            "anomalous_pixel_fraction": None if mask is None else float(mask.float().mean()),
        }

    def __repr__(self) -> str:
        """Short: the heatmap as its shape, not its values."""
        verdict = f", {self.verdict}" if self.verdict else ""
        return f"Prediction(score={self.score:.4g}{verdict}, heatmap={tuple(self.heatmap.shape)})"

    def __getitem__(self, key: str):
        """``prediction["score"]`` works too (the first version returned dicts)."""
        return self.heatmap if key == "heatmap" else self.to_dict()[key]


def _stored_threshold(calibration: dict, key: str) -> float | None:
    value = (calibration.get(key) or {}).get("threshold")
    return None if value is None or not np.isfinite(value) else float(value)


class Detector:
    """A trained model with its preprocessing: scores, heatmaps and verdicts for new images.

    Inputs may be file paths, PIL images, numpy arrays (H, W[, C], uint8 or float in [0, 1]) or
    tensors (C, H, W), one or a sequence, or a 4-D batch. They are resized and converted exactly
    as the training images were. ``threshold`` / ``pixel_threshold`` override the calibrated
    ones; ``batch_size`` and ``workers`` set how many images go through the model at once and
    how many threads decode files.
    """

    def __init__(
        self, snapshot: dict, device: str | torch.device = "auto", threshold: float | None = None,
        pixel_threshold: float | None = None, batch_size: int | None = None, workers: int | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.config, self.method = method_from_snapshot(snapshot)
        self.device = pick_device(device) if isinstance(device, str) else torch.device(device)
        self.method.to(self.device)
        self.image_size = int(snapshot["image_size"])
        #: (height, width) every input is resized to, as in training
        self.image_shape = snapshot_shape(snapshot)
        self.in_channels = int(snapshot["in_channels"])
        #: what calibration stored (rules, rates on calibration and test images, heatmap range)
        self.calibration: dict = dict(snapshot.get("thresholds") or {})
        self.threshold = _stored_threshold(self.calibration, "image") if threshold is None else float(threshold)
        self.pixel_threshold = _stored_threshold(self.calibration, "pixel") if pixel_threshold is None else float(pixel_threshold)
        self.batch_size = int(batch_size or self.config.eval_batch_size)
        self.workers = int(workers or min(4, os.cpu_count() or 1))
        # one model, many callers (the server's threads): one forward pass at a time
        self._lock = threading.Lock()

    @classmethod
    def load(cls, run_or_snapshot: str | Path | Run, device: str | torch.device = "auto", trust_pickle: bool = False,
             **options) -> Detector:
        """From a run folder, a snapshot file or a ``Run`` that wrote its folder.

        ``trust_pickle=True`` also reads a legacy snapshot that needs full pickle, which can run
        code stored in the file: only for files from a trusted source.
        """
        if isinstance(run_or_snapshot, Run):
            if run_or_snapshot.out is None:
                raise ValueError("this run wrote no run folder (train with out=...); nothing to load")
            run_or_snapshot = run_or_snapshot.out
        return cls(read_snapshot(run_or_snapshot, trust_pickle=trust_pickle), device, **options)

    # --- thresholds ------------------------------------------------------------------------------
    @property
    def thresholds(self) -> dict:
        """``{"image": t, "pixel": t}``; assign a dict with either key to override."""
        return {"image": self.threshold, "pixel": self.pixel_threshold}

    @thresholds.setter
    def thresholds(self, values: dict) -> None:
        unknown = set(values) - {"image", "pixel"}
        if unknown:
            raise KeyError(f"unknown threshold(s) {sorted(unknown)}; use 'image' and 'pixel'")
        if "image" in values:
            self.threshold = None if values["image"] is None else float(values["image"])
        if "pixel" in values:
            self.pixel_threshold = None if values["pixel"] is None else float(values["pixel"])

    @property
    def image_threshold(self) -> float | None:
        return self.threshold

    @property
    def heatmap_range(self) -> tuple[float, float] | None:
        """The calibrated colour scale for heatmaps (1st to 99.9th percentile of calibration pixels)."""
        value = self.calibration.get("heatmap_range")
        return (float(value[0]), float(value[1])) if value else None

    # --- inference -------------------------------------------------------------------------------
    def prepare(self, images) -> torch.Tensor:
        """Paths, PIL images, arrays or tensors -> a float batch resized exactly as in training."""
        return prepare_batch(images, self.in_channels, self.image_shape)

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores (B,) and heatmaps (B, 1, H, W) on the CPU for a prepared float batch."""
        with self._lock:
            scores, heatmaps = infer(self.method, batch.to(self.device, non_blocking=True))
            return scores.float().cpu(), heatmaps.float().cpu()

    def infer(self, images) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores (N,) and heatmaps (N, 1, H, W) in one pass; files are decoded in threads, batches ahead."""
        if is_prepared(images, self.in_channels, self.image_shape, ndim=4):
            loaded = (images[i : i + self.batch_size] for i in range(0, len(images), self.batch_size))
        else:
            items = as_items(images)
            loaded = (b.images for b in iter_batches(items, self.in_channels, self.image_shape, self.batch_size, self.workers))
        scores, heatmaps = [], []
        for batch in loaded:
            s, h = self.forward(batch)
            scores.append(s)
            heatmaps.append(h)
        if not scores:
            return torch.zeros(0), torch.zeros(0, 1, *self.image_shape)
        return torch.cat(scores), torch.cat(heatmaps)

    def score(self, images) -> torch.Tensor:
        """Anomaly scores (N,); higher is more anomalous."""
        return self.infer(images)[0]

    def heatmap(self, images) -> torch.Tensor:
        """Heatmaps (N, 1, H, W) at the training input's shape."""
        return self.infer(images)[1]

    @property
    def score_scale(self) -> float | None:
        """Spread of the calibrated score normalisation (the threshold maps to 0.5); None without one."""
        value = (self.calibration.get("normalisation") or {}).get("scale")
        return None if value is None else float(value)

    def normalise(self, scores) -> torch.Tensor | None:
        """Scores mapped into [0, 1], monotone, with the (possibly overridden) image threshold at 0.5."""
        if self.threshold is None or self.score_scale is None:
            return None
        return normalise_scores(torch.as_tensor(scores, dtype=torch.float64), self.threshold, self.score_scale)

    def predictions(self, scores: torch.Tensor, heatmaps: torch.Tensor) -> list[Prediction]:
        normalised = self.normalise(scores)
        return [
            Prediction(float(s), h[0], self.threshold, self.pixel_threshold, None if normalised is None else float(normalised[i]))
            for i, (s, h) in enumerate(zip(scores, heatmaps, strict=True))
        ]

    def predict(self, images) -> list[Prediction]:
        """Per image: score, heatmap (H, W), verdict and mask from the (calibrated) thresholds."""
        return self.predictions(*self.infer(images))

    def describe(self) -> dict:
        """What the model is and expects, for logs, ``/health`` and export metadata."""
        return {
            "objective": self.config.objective, "net": self.config.net, "image_size": self.image_size,
            "image_shape": list(self.image_shape), "channels": self.in_channels,
            "input": "float [0, 1], N x C x H x W, (H, W) = image_shape (the net normalises inside)",
            "threshold": self.threshold, "pixel_threshold": self.pixel_threshold, "heatmap_range": self.heatmap_range,
            "normalisation": self.calibration.get("normalisation"),
            "calibration": {k: v for k, v in self.calibration.items() if k in ("image", "pixel", "source", "test")},
            "snapshot": self.snapshot.get("path"), "device": str(self.device),
        }


def load(run_or_snapshot: str | Path | Run, device: str | torch.device = "auto", trust_pickle: bool = False,
         **options) -> Detector:
    return Detector.load(run_or_snapshot, device, trust_pickle=trust_pickle, **options)


Model = Detector

__all__ = ["Detector", "Prediction", "load", "read_snapshot", "method_from_snapshot"]
