"""Heatmaps drawn over images for people: the same colours in ``predict``, ``serve`` and exports."""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import Image, ImageDraw

from fcdd.detector import Detector, Prediction

CMAP = "jet"
#: overlays are at least this many pixels a side
MIN_SIDE = 256


def colour_scale(detector: Detector, heatmap: torch.Tensor) -> tuple[float, float]:
    """The calibrated heatmap range when there is one (same colours on every image), else the map's own."""
    if detector.heatmap_range is not None:
        return detector.heatmap_range
    lo, hi = float(heatmap.min()), float(heatmap.max())
    return lo, hi if hi > lo else lo + 1e-6


def coloured(heatmap: torch.Tensor, size: tuple[int, int], lo: float, hi: float) -> np.ndarray:
    """(S, S) heatmap -> (H, W, 3) uint8 in the colour map, resized (bilinear) to ``size`` = (W, H)."""
    up = F.interpolate(heatmap.float()[None, None], size=(size[1], size[0]), mode="bilinear", align_corners=False)[0, 0]
    scaled = ((up - lo) / (hi - lo)).clamp(0, 1).numpy()
    return (colormaps[CMAP](scaled)[..., :3] * 255).astype(np.uint8)


def mask_outline(mask: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(S, S) bool -> (H, W) bool outline of the mask resized (nearest) to ``size`` = (W, H)."""
    up = F.interpolate(mask.float()[None, None], size=(size[1], size[0]), mode="nearest")[0, 0] > 0.5
    inner = -F.max_pool2d(-up.float()[None, None], 3, 1, 1)[0, 0] > 0.5
    return (up & ~inner).numpy()


def render_overlay(display: Image.Image, prediction: Prediction, lo: float, hi: float, alpha: float = 0.5, caption: bool = True) -> Image.Image:
    """The image with its heatmap blended over it, the defect mask outlined in white and a caption."""
    if max(display.size) < MIN_SIDE:
        # small inputs are enlarged so that the outline and the caption stay readable
        factor = MIN_SIDE / max(display.size)
        display = display.resize((round(display.width * factor), round(display.height * factor)), Image.BILINEAR)
    rgb = np.asarray(display.convert("RGB"), dtype=np.float32)
    heat = coloured(prediction.heatmap, display.size, lo, hi).astype(np.float32)
    blended = (rgb * (1 - alpha) + heat * alpha).round().astype(np.uint8)
    mask = prediction.mask
    if mask is not None and bool(mask.any()):
        blended[mask_outline(mask, display.size)] = 255
    image = Image.fromarray(blended)
    if not caption:
        return image
    band = 14
    canvas = Image.new("RGB", (image.width, image.height + band), (0, 0, 0) if prediction.anomalous is None else
                       ((170, 20, 20) if prediction.anomalous else (20, 110, 40)))
    canvas.paste(image, (0, 0))
    text = f"{(prediction.verdict or 'score').upper()} {prediction.score:.4g}"
    if prediction.threshold is not None:
        text += f" (t={prediction.threshold:.4g})"
    ImageDraw.Draw(canvas).text((3, image.height + 1), text, fill=(255, 255, 255))
    return canvas


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
