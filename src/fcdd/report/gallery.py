"""Heatmap galleries as in the FCDD paper: blocks of inputs, heatmaps, overlays and ground truth.

Normalisations of the heatmap colours:

- ``local``: every heatmap is scaled to its own [min, max], so each shows *where* the model
  looks, even on images it rates nominal;
- ``semi_global``: all heatmaps shown in one picture share one [min, max], so colours compare
  across samples (a nominal image stays dark next to an anomalous one);
- ``calibrated``: the run's fixed colour scale from held-out nominal heatmaps, the pixel
  threshold mid-scale, the same as in ``predict``, ``serve`` and exports (warm = flagged).

Every picture comes with its layout (which sample is in which column, its score and the colour
range used), so the picture can be checked and traced back to the test set.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from fcdd.io import atomic_write_bytes  # noqa: E402

CMAP = "jet"
NORMALISATIONS = ("local", "semi_global")
#: the run's fixed scale (``thresholds.heatmap_range``), drawn when the run has one
CALIBRATED = "calibrated"
LABEL_NAMES = {0: "nominal", 1: "anomalous"}
#: samples per row group of the global galleries (the paper shows ten)
GLOBAL_ROW = 10
PAD = 2
HEADER = 16
ROW_LABEL = 64
#: galleries draw tiles at least this large
MIN_TILE = 64


# --- pixels ------------------------------------------------------------------------------------


def colourise(heatmap: np.ndarray, lo: float = 0.0, hi: float = 1.0, cmap: str = CMAP) -> np.ndarray:
    """(H, W) float -> (H, W, 3) uint8 with ``lo``..``hi`` mapped onto the colour map."""
    scaled = np.clip((np.asarray(heatmap, dtype=np.float32) - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    return (colormaps[cmap](scaled)[..., :3] * 255).astype(np.uint8)


def image_rgb(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(C, H, W) uint8 or float in [0, 1] -> (H, W, 3) uint8."""
    arr = image.numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.dtype != np.uint8:  # numpy, not torch: per-tile torch ops cost milliseconds each
        arr = np.round(np.clip(arr.astype(np.float32), 0, 1) * 255).astype(np.uint8)
    arr = arr.transpose(1, 2, 0)
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr


def check_alpha(alpha: float) -> float:
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"overlay_alpha must lie in [0, 1], got {alpha}")
    return float(alpha)


def overlay(image: np.ndarray, coloured: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the coloured heatmap over the image; ``alpha`` 0 is the image, 1 the heatmap."""
    alpha = check_alpha(alpha)
    return np.round(image.astype(np.float32) * (1 - alpha) + coloured.astype(np.float32) * alpha).astype(np.uint8)


def truth_rgb(mask: torch.Tensor | np.ndarray) -> np.ndarray:
    """(1, H, W) or (H, W) ground-truth map -> white-on-black (H, W, 3) uint8."""
    arr = np.asarray(mask).reshape(np.asarray(mask).shape[-2:])
    return np.repeat(((arr > 0).astype(np.uint8) * 255)[..., None], 3, axis=2)


def normalise(heatmaps: np.ndarray | torch.Tensor, mode: str = "semi_global",
              colour_range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heatmaps (N, [1,] H, W) scaled to [0, 1]; returns (scaled, lo (N,), hi (N,)).

    ``local`` spans each map's own range (a constant map becomes 0), ``semi_global`` the range
    of all maps given, ``calibrated`` the fixed ``colour_range``.
    """
    if mode not in (*NORMALISATIONS, CALIBRATED):
        raise ValueError(f"normalisation must be one of {', '.join((*NORMALISATIONS, CALIBRATED))}, got {mode!r}")
    if mode == CALIBRATED and colour_range is None:
        raise ValueError("calibrated colours need the run's colour range")
    hm = torch.as_tensor(heatmaps).float().numpy()
    hm = hm.reshape(len(hm), *hm.shape[-2:])
    if len(hm) == 0:
        return hm, np.zeros(0), np.zeros(0)
    if mode == CALIBRATED:
        lo, hi = np.full(len(hm), float(colour_range[0])), np.full(len(hm), float(colour_range[1]))
    elif mode == "local":
        lo, hi = hm.min(axis=(1, 2)), hm.max(axis=(1, 2))
    else:
        lo, hi = np.full(len(hm), hm.min()), np.full(len(hm), hm.max())
    span = np.where(hi > lo, hi - lo, 1.0)
    scaled = np.clip((hm - lo[:, None, None]) / span[:, None, None], 0, 1)
    return scaled, lo.astype(np.float64), hi.astype(np.float64)


# --- which samples -----------------------------------------------------------------------------


@dataclass
class Block:
    """A group of columns (samples) under one title."""

    title: str
    indices: list[int]
    key: str = ""


def by_score(scores: np.ndarray, labels: np.ndarray, label: int | None = None, descending: bool = True) -> list[int]:
    """Indices (of one label, or all) ordered by score; ties keep data order."""
    scores = np.asarray(scores, dtype=np.float64)
    pick = np.arange(len(scores)) if label is None else np.flatnonzero(np.asarray(labels) == label)
    order = np.argsort(-scores[pick] if descending else scores[pick], kind="stable")
    return [int(i) for i in pick[order]]


def global_blocks(scores: np.ndarray, labels: np.ndarray, n: int = GLOBAL_ROW, names: dict[int, str] = LABEL_NAMES) -> list[Block]:
    """The paper's global gallery: first samples of each label, then per label the ``n`` rated
    most nominal (lowest score first) and the ``n`` rated most anomalous (highest first)."""
    labels = np.asarray(labels)
    present = [lbl for lbl in (0, 1) if (labels == lbl).any()]
    blocks = [Block(f"first {names[lbl]} samples (data order)", [int(i) for i in np.flatnonzero(labels == lbl)[:n]], f"first_{names[lbl]}") for lbl in present]
    for lbl in present:
        blocks.append(Block(f"{names[lbl]} samples rated most nominal (lowest score first)", by_score(scores, labels, lbl, descending=False)[:n], f"{names[lbl]}_most_nominal"))
        blocks.append(Block(f"{names[lbl]} samples rated most anomalous (highest score first)", by_score(scores, labels, lbl)[:n], f"{names[lbl]}_most_anomalous"))
    return blocks


# --- drawing -----------------------------------------------------------------------------------


@dataclass
class Panel:
    """Rows of equally sized tiles under a title; ``captions`` go under each column."""

    title: str
    row_names: list[str]
    rows: list[list[np.ndarray]]
    captions: list[str] = field(default_factory=list)


def _font(size: int = 11):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def render(panels: Sequence[Panel], min_tile: int = MIN_TILE) -> tuple[Image.Image, list[dict]]:
    """Stack panels vertically on white; returns the picture and each tile's (y, x) per panel.

    Tiles smaller than ``min_tile`` are enlarged by an integer factor (nearest neighbour), so
    small inputs stay readable and every pixel of a heatmap stays one colour block.
    """
    tiles = [t for p in panels for r in p.rows for t in r]
    if not tiles:
        raise ValueError("nothing to draw")
    h, w = tiles[0].shape[:2]
    factor = max(1, -(-min_tile // max(h, 1)))
    if factor > 1:
        panels = [Panel(p.title, p.row_names, [[t.repeat(factor, 0).repeat(factor, 1) for t in r] for r in p.rows], p.captions) for p in panels]
        h, w = h * factor, w * factor
    font = _font()
    caption_h = 13 if w >= 48 else 0
    cols = max(len(r) for p in panels for r in p.rows)
    width = max([ROW_LABEL + cols * (w + PAD) + PAD] + [int(font.getlength(p.title)) + 8 for p in panels])
    heights = [HEADER + len(p.rows) * (h + PAD) + (caption_h if p.captions and caption_h else 0) + PAD for p in panels]
    canvas = np.full((sum(heights), width, 3), 255, np.uint8)
    layout, texts = [], []
    y0 = 0
    for panel, height in zip(panels, heights, strict=True):
        texts.append(((4, y0 + 2), panel.title, (0, 0, 0)))
        positions: dict[str, list[list[int]]] = {}
        y = y0 + HEADER
        for name, row in zip(panel.row_names, panel.rows, strict=True):
            texts.append(((4, y + h // 2 - 6), name, (70, 70, 70)))
            positions[name] = []
            for j, tile in enumerate(row):
                x = ROW_LABEL + PAD + j * (w + PAD)
                canvas[y : y + h, x : x + w] = tile
                positions[name].append([y, x])
            y += h + PAD
        if panel.captions and caption_h:
            for j, caption in enumerate(panel.captions):
                texts.append(((ROW_LABEL + PAD + j * (w + PAD), y), caption, (40, 40, 40)))
        layout.append({"title": panel.title, "tiles": positions, "tile_size": [h, w]})
        y0 += height
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for xy, text, colour in texts:
        draw.text(xy, text, fill=colour, font=font)
    return image, layout


def save_png(image: Image.Image, path: Path) -> Path:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=3)
    return atomic_write_bytes(path, buffer.getvalue())


def _fmt(score: float) -> str:
    return f"{score:.3g}"


def heatmap_gallery(
    images: torch.Tensor,
    heatmaps: torch.Tensor,
    maps: torch.Tensor | None,
    path: Path,
    normalise_mode: str = "semi_global",
    blocks: Sequence[Block] | None = None,
    scores: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    kinds: Sequence[str] | None = None,
    paths: Sequence[str] | None = None,
    alpha: float = 0.5,
    title: str = "",
    colour_range: tuple[float, float] | None = None,
) -> dict:
    """Draw blocks of samples (columns) with rows input / heatmap / overlay / ground truth.

    ``blocks`` index into the given tensors (default: one block of all of them, in order).
    With ``semi_global`` the colour range is the min / max over every heatmap shown. Returns the
    layout: per block its items (index, score, label, kind, path, colour range) and tile
    positions, plus the picture's path.
    """
    check_alpha(alpha)
    blocks = list(blocks) if blocks is not None else [Block(title or "samples", list(range(len(images))))]
    blocks = [b for b in blocks if b.indices]
    shown = sorted({i for b in blocks for i in b.indices})
    if not shown:
        raise ValueError(f"{path}: no samples to show")
    position = {i: k for k, i in enumerate(shown)}
    scaled, lo, hi = normalise(heatmaps[shown], normalise_mode, colour_range)
    with_truth = maps is not None
    panels, items = [], []
    for block in blocks:
        rows: list[list[np.ndarray]] = [[], [], []] + ([[]] if with_truth else [])
        block_items = []
        for i in block.indices:
            k = position[i]
            rgb = image_rgb(images[i])
            coloured = colourise(scaled[k])
            rows[0].append(rgb)
            rows[1].append(coloured)
            rows[2].append(overlay(rgb, coloured, alpha))
            if with_truth:
                rows[3].append(truth_rgb(maps[i]))
            block_items.append({
                "index": int(i),
                "score": None if scores is None else float(scores[i]),
                "label": None if labels is None else int(labels[i]),
                "kind": None if kinds is None else kinds[i],
                "path": None if paths is None else paths[i],
                "lo": float(lo[k]),
                "hi": float(hi[k]),
            })
        captions = [_fmt(scores[i]) for i in block.indices] if scores is not None else []
        row_names = ["input", "heatmap", "overlay"] + (["truth"] if with_truth else [])
        heading = f"{title}: {block.title}" if title else block.title
        panels.append(Panel(heading, row_names, rows, captions))
        items.append({"key": block.key, "title": block.title, "items": block_items})
    picture, layout = render(panels)
    save_png(picture, Path(path))
    for entry, placed in zip(items, layout, strict=True):
        entry.update(tiles=placed["tiles"], tile_size=placed["tile_size"])
    return {
        "path": str(path),
        "normalisation": normalise_mode,
        "range": [float(lo.min()), float(hi.max())],
        "alpha": alpha,
        "blocks": items,
    }
