"""Scoring a test set: image scores, heatmaps and the image / pixel metrics.

Pixel metrics are taken at one of two resolutions (``Config.eval_resolution``): the network's
input size, where masks were resized with the images (anomalib's protocol), or each mask's own
size, with the heatmap upsampled bilinearly to it (the FCDD paper's). Native masks are read one
image at a time, so memory stays that of one full-size image beyond the stored heatmaps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from fcdd.data.base import ImageSet, binary_mask, open_image
from fcdd.data.transforms import to_float
from fcdd.methods.base import Method
from fcdd.metrics import StreamingPixelCurves, aupro, auroc, average_precision, f1_max, roc_curve
from fcdd.runtime import DIVERGED_ADVICE, DivergedError, progress_bar

#: the largest float16: a stored heatmap value beyond it would become infinite
FLOAT16_MAX = float(torch.finfo(torch.float16).max)
#: the smallest normal float16: heatmaps all below it would keep next to no precision
FLOAT16_TINY = float(torch.finfo(torch.float16).tiny)


def infer(method: Method, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and heatmaps for a float batch, with gradients only when the method needs them."""
    if method.heatmaps_need_grad:
        with torch.enable_grad():
            scores, heatmaps = method(images)
        return scores.detach(), heatmaps.detach()
    with torch.no_grad():
        return method(images)


def storable(heatmaps: torch.Tensor) -> torch.Tensor:
    """Heatmaps as the run keeps them: float16 (half the memory and disk) when every value fits
    it, else float32. Overflowing float16 would turn large values into ties at infinity, and pixel
    metrics read back from the stored heatmaps would then disagree with the run's."""
    heatmaps = heatmaps.float()
    largest = float(heatmaps.abs().max()) if heatmaps.numel() else 0.0
    fits = largest <= FLOAT16_MAX and (largest == 0 or largest >= FLOAT16_TINY)
    return heatmaps.half() if fits else heatmaps


def stack_heatmaps(parts: list[torch.Tensor]) -> torch.Tensor:
    """The batches' stored heatmaps as one tensor: float16 only when every batch fitted it."""
    if not parts:
        return torch.zeros(0)
    dtype = torch.float16 if all(part.dtype == torch.float16 for part in parts) else torch.float32
    return torch.cat([part.to(dtype) for part in parts])


def check_finite(scores: torch.Tensor, heatmaps: torch.Tensor, first: int) -> None:
    """``DivergedError`` when scores or heatmaps of test images ``first ..`` are NaN or infinite:
    such numbers make every metric and threshold meaningless, so the run must not look finished."""
    if bool(torch.isfinite(scores).all() & torch.isfinite(heatmaps).all()):
        return
    n_scores = int((~torch.isfinite(scores)).sum())
    n_maps = int((~torch.isfinite(heatmaps)).flatten(1).any(1).sum())  # images with a bad pixel
    bad = " and ".join(f"{n} {what}" for n, what in ((n_scores, "score(s)"), (n_maps, "heatmap(s)")) if n)
    raise DivergedError(
        f"the model diverged: {bad} of test images {first + 1}-{first + len(scores)} are NaN or infinite; {DIVERGED_ADVICE}"
    )


@dataclass
class Evaluation:
    scores: np.ndarray
    labels: np.ndarray
    kinds: list[str]
    paths: list[str]
    #: heatmaps (N, 1, H, W) at input resolution, for galleries and later analysis: float16, or
    #: float32 when a value lies outside float16's range (``storable``)
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


RESOLUTIONS = ("input", "native")

#: the metrics every table shows (key in metrics.json, heading), AUROCs first as the FCDD paper's
HEADLINE_METRICS = (
    ("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"), ("pixel_aupro", "pixel AUPRO"),
    ("image_ap", "image AP"), ("pixel_ap", "pixel AP"), ("image_f1_max", "image F1-max"), ("pixel_f1_max", "pixel F1-max"),
)


class NativeMaps:
    """Heatmaps and masks of a test set at each image's own resolution, made one image at a time.

    The size of image ``i`` is its mask file's, else its image file's (read from the header);
    images that come from no file (generated sets) keep the input resolution.
    """

    def __init__(self, heatmaps: torch.Tensor, test: ImageSet) -> None:
        self.heatmaps, self.test = heatmaps, test
        self._sizes: dict[int, tuple[int, int] | None] = {}

    def __len__(self) -> int:
        return len(self.test)

    def size(self, i: int) -> tuple[int, int] | None:
        """(H, W) at which image ``i`` is scored, or None for the input resolution."""
        if i not in self._sizes:
            source = self.test.mask_paths[i] or self.test.paths[i]
            size = None
            if source and Path(source).is_file():
                with Image.open(source) as image:
                    size = (image.height, image.width)
            self._sizes[i] = size
        return self._sizes[i]

    def heatmap(self, i: int, heatmap: torch.Tensor | None = None) -> torch.Tensor:
        """(H, W) float32: heatmap ``i`` (or the given one) upsampled bilinearly to the native size."""
        heat = (self.heatmaps[i] if heatmap is None else heatmap).float().reshape(1, 1, *self.heatmaps.shape[-2:])
        size = self.size(i)
        if size is None or tuple(heat.shape[-2:]) == size:
            return heat[0, 0]
        return F.interpolate(heat, size=size, mode="bilinear", align_corners=False)[0, 0]

    def mask(self, i: int) -> torch.Tensor:
        """(H, W) bool ground truth at the native size (all False for an image without a mask)."""
        size, path = self.size(i), self.test.mask_paths[i]
        if size is None:
            return self.test.maps[i, 0] > 0
        if path is None:
            return torch.zeros(size, dtype=torch.bool)
        return torch.from_numpy(binary_mask(open_image(Path(path))))

    def heatmaps_view(self) -> _Lazy:
        return _Lazy(len(self), lambda i: self.heatmap(i).numpy())

    def masks_view(self) -> _Lazy:
        return _Lazy(len(self), lambda i: self.mask(i).numpy())


class _Lazy:
    """A sequence whose items are computed when indexed (what ``aupro`` reads image by image)."""

    def __init__(self, n: int, item) -> None:
        self.n, self.item = n, item

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.item(i)


def region_overlap(heatmaps: torch.Tensor, test: ImageSet, resolution: str = "input") -> float:
    """AUPRO (FPR <= 0.3) of the test heatmaps against the test masks."""
    if resolution == "native":
        native = NativeMaps(heatmaps, test)
        return aupro(native.heatmaps_view(), native.masks_view(), max_fpr=0.3)
    return aupro(heatmaps, test.maps > 0, max_fpr=0.3)


def update_pixels(pixel: StreamingPixelCurves, heatmaps: torch.Tensor, test: ImageSet, start: int,
                  native: NativeMaps | None) -> None:
    """Add the pixels of test images ``start ..`` (``heatmaps`` is their batch) at the chosen resolution."""
    if native is None:
        pixel.update(heatmaps.float(), test.maps[start : start + len(heatmaps)] > 0)
        return
    for offset, heat in enumerate(heatmaps):
        i = start + offset
        pixel.update(native.heatmap(i, heat), native.mask(i))


def _check_resolution(resolution: str) -> None:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"eval resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")


def evaluate(method: Method, test: ImageSet, batch_size: int = 32, device: torch.device | str = "cpu", progress: bool = True,
             resolution: str = "input") -> Evaluation:
    _check_resolution(resolution)
    method.eval()
    native = NativeMaps(torch.zeros(0, 1, *test.images.shape[-2:]), test) if resolution == "native" else None
    pixel = StreamingPixelCurves()
    with_maps = test.has_maps
    scores, heatmaps = [], []
    for start in progress_bar(range(0, len(test), batch_size), desc="evaluate", leave=False, disable=not progress):
        images = to_float(test.images[start : start + batch_size]).to(device)
        s, h = infer(method, images)
        check_finite(s, h, start)
        stored = storable(h.cpu())
        scores.append(s.cpu())
        heatmaps.append(stored)
        if with_maps:
            # pixel metrics of the heatmaps as stored, so metrics read back from heatmaps.pt agree
            update_pixels(pixel, stored, test, start, native)
    scores_np = torch.cat(scores).double().numpy() if scores else np.zeros(0)
    labels = test.labels.numpy()
    heatmaps = stack_heatmaps(heatmaps)
    return assemble(scores_np, labels, heatmaps, list(test.kinds), list(test.paths), test, pixel if with_maps else None,
                    resolution)


def evaluation_from_scores(
    scores: np.ndarray, labels: np.ndarray, heatmaps: torch.Tensor, kinds: list[str], paths: list[str], test: ImageSet,
    resolution: str = "input",
) -> Evaluation:
    """An ``Evaluation`` from stored scores and heatmaps and the test set's ground-truth maps
    (a finished run read back without scoring its test set again)."""
    scores = np.asarray(scores, dtype=np.float64)
    with_maps = test.has_maps
    pixel = StreamingPixelCurves()
    _check_resolution(resolution)
    native = NativeMaps(heatmaps, test) if resolution == "native" else None
    if with_maps:
        for start in range(0, len(test), 64):
            update_pixels(pixel, heatmaps[start : start + 64], test, start, native)
    return assemble(scores, np.asarray(labels), heatmaps, list(kinds or test.kinds), list(paths or test.paths), test,
                    pixel if with_maps else None, resolution)


def assemble(
    scores: np.ndarray, labels: np.ndarray, heatmaps: torch.Tensor, kinds: list[str], paths: list[str], test: ImageSet,
    pixel: StreamingPixelCurves | None, resolution: str = "input",
) -> Evaluation:
    """The evaluation of scored test images; ``pixel`` holds their pixel counts when there are masks."""
    both = bool(len(labels)) and 0 < int(np.sum(labels)) < len(labels)
    return Evaluation(
        scores=scores, labels=labels, kinds=kinds, paths=paths, heatmaps=heatmaps,
        image_auroc=auroc(scores, labels),
        pixel_auroc=pixel.compute() if pixel is not None else None,
        pixel_auroc_error_bound=pixel.error_bound if pixel is not None else None,
        pixel_roc=pixel.curve() if pixel is not None else None,
        pixel_aupro=region_overlap(heatmaps, test, resolution) if pixel is not None else None,
        image_f1_max=f1_max(scores, labels) if both else None,
        image_ap=average_precision(scores, labels) if both else None,
        pixel_f1_max=pixel.f1_max() if pixel is not None else None,
        pixel_ap=pixel.average_precision() if pixel is not None else None,
        extra={"pixel_resolution": resolution} if pixel is not None else {},
    )
