"""Heatmap galleries: rows of inputs, heatmaps and ground-truth maps as one PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from PIL import Image  # noqa: E402

from fcdd.io import atomic_write_bytes  # noqa: E402


def colourise(heatmap: np.ndarray, lo: float, hi: float, cmap: str = "jet") -> np.ndarray:
    """(H, W) float -> (H, W, 3) uint8 with ``lo``..``hi`` mapped onto the colour map."""
    scaled = np.clip((heatmap - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    return (colormaps[cmap](scaled)[..., :3] * 255).astype(np.uint8)


def image_rgb(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) uint8 or float in [0, 1] -> (H, W, 3) uint8."""
    arr = image.float()
    if image.dtype == torch.uint8:
        arr = arr / 255
    arr = (arr.clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr


def overlay(image: np.ndarray, coloured: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    return (image.astype(np.float32) * (1 - alpha) + coloured.astype(np.float32) * alpha).astype(np.uint8)


def grid(rows: list[list[np.ndarray]], pad: int = 2) -> Image.Image:
    """Tiles (H, W, 3) uint8 into a white-padded grid, row by row."""
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            canvas[y : y + h, x : x + w] = tile
    return Image.fromarray(canvas)


def save_png(image: Image.Image, path: Path) -> Path:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return atomic_write_bytes(path, buffer.getvalue())


def heatmap_gallery(images: torch.Tensor, heatmaps: torch.Tensor, maps: torch.Tensor | None, path: Path, normalise: str = "semi_global") -> Path:
    """Columns are samples; rows are input, heatmap, overlay and (if any) ground truth.

    ``normalise``: 'local' scales each heatmap to its own range, 'semi_global' to the range of
    all heatmaps shown, so colours compare across samples.
    """
    hm = heatmaps.float().squeeze(1).numpy()
    lo, hi = float(hm.min()), float(hm.max())
    rows: list[list[np.ndarray]] = [[], [], []]
    if maps is not None:
        rows.append([])
    for i in range(len(images)):
        rgb = image_rgb(images[i])
        a, b = (float(hm[i].min()), float(hm[i].max())) if normalise == "local" else (lo, hi)
        coloured = colourise(hm[i], a, b)
        rows[0].append(rgb)
        rows[1].append(coloured)
        rows[2].append(overlay(rgb, coloured))
        if maps is not None:
            rows[3].append(np.repeat((maps[i, 0].numpy() > 0).astype(np.uint8)[..., None] * 255, 3, axis=2))
    return save_png(grid(rows), path)
