"""``fcdd predict``: verdicts for many image files, with a CSV/JSON table and an overlay per image.

Files are decoded in threads a few batches ahead of the model; overlays are drawn and written in
threads too. A file that cannot be read is reported and skipped; the batch goes on.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from fcdd.detector import Detector, Prediction
from fcdd.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from fcdd.preprocess import find_images, iter_batches

log = logging.getLogger("fcdd")

CSV_FIELDS = ("path", "score", "verdict", "threshold", "anomalous_pixel_fraction", "overlay")
CMAP = "jet"
#: overlays are at least this many pixels a side
MIN_SIDE = 256


# --- pictures ----------------------------------------------------------------------------------------


def colour_scale(detector: Detector, heatmap: torch.Tensor) -> tuple[float, float]:
    """The calibrated heatmap range when there is one (same colours on every image), else the map's own."""
    if detector.heatmap_range is not None:
        return detector.heatmap_range
    lo, hi = float(heatmap.min()), float(heatmap.max())
    return lo, hi if hi > lo else lo + 1e-6


def coloured(heatmap: torch.Tensor, size: tuple[int, int], lo: float, hi: float) -> np.ndarray:
    """(S, S) heatmap -> (H, W, 3) uint8 in the colour map, resized (bilinear) to ``size`` = (W, H)."""
    from matplotlib import colormaps

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


# --- a folder of files ----------------------------------------------------------------------------


@dataclass
class PredictResult:
    rows: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)


def overlay_names(files: list[Path]) -> list[str]:
    """Overlay file names that keep the inputs' folder structure below their common folder."""
    if not files:
        return []
    parents = [str(p.resolve().parent) for p in files]
    root = Path(os.path.commonpath(parents))
    names, seen = [], set()
    for path in files:
        rel = path.resolve().relative_to(root)
        name = rel.with_suffix(".png").as_posix()
        if name in seen:
            name = rel.with_name(rel.name.replace(".", "_") + ".png").as_posix()
        seen.add(name)
        names.append(name)
    return names


def predict_files(
    detector: Detector, inputs: list[str | Path], out: str | Path, overlays: bool = True, masks: bool = False,
    progress: bool = True,
) -> PredictResult:
    """Score every image file (folders are searched recursively) and write the tables to ``out``."""
    out = Path(out)
    files, missing = find_images(inputs)
    result = PredictResult(errors=[{"path": p, "error": e} for p, e in missing])
    names = overlay_names(files)
    bar = tqdm(total=len(files), desc="predict", unit="img", disable=not progress)
    writers = ThreadPoolExecutor(max_workers=detector.workers, thread_name_prefix="fcdd-write")
    pending: deque = deque()

    def write(index: int, prediction: Prediction, display: Image.Image | None) -> None:
        if overlays and display is not None:
            lo, hi = colour_scale(detector, prediction.heatmap)
            atomic_write_bytes(out / "overlays" / names[index], png_bytes(render_overlay(display, prediction, lo, hi)))
        if masks and prediction.mask is not None:
            mask = Image.fromarray(prediction.mask.numpy().astype(np.uint8) * 255)
            atomic_write_bytes(out / "masks" / names[index], png_bytes(mask))

    try:
        rows: dict[int, dict] = {}
        for batch in iter_batches(files, detector.in_channels, detector.image_size, detector.batch_size, detector.workers,
                                  keep_display=overlays, skip_errors=True):
            for index, message in batch.errors:
                result.errors.append({"path": str(files[index]), "error": message})
                log.warning("skipped %s", message if str(files[index]) in message else f"{files[index]}: {message}")
            if batch.indices:
                scores, heatmaps = detector.forward(batch.images)
                for index, prediction, display in zip(batch.indices, detector.predictions(scores, heatmaps), batch.displays, strict=True):
                    info = prediction.to_dict()
                    rows[index] = {
                        "path": str(files[index]), "score": info["score"], "verdict": info["verdict"], "threshold": info["threshold"],
                        "anomalous_pixel_fraction": info["anomalous_pixel_fraction"],
                        "overlay": str(Path("overlays") / names[index]) if overlays else None,
                    }
                    pending.append(writers.submit(write, index, prediction, display))
                # bounded memory: at most a few batches of overlays wait to be written
                while len(pending) > 4 * detector.batch_size:
                    pending.popleft().result()
            bar.update(len(batch.indices) + len(batch.errors))
        for future in pending:
            future.result()
    finally:
        bar.close()
        writers.shutdown(wait=True, cancel_futures=True)
    result.rows = [rows[i] for i in sorted(rows)]
    write_tables(detector, result, out)
    return result


def write_tables(detector: Detector, result: PredictResult, out: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in result.rows:
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in CSV_FIELDS})
    atomic_write_text(out / "predictions.csv", buffer.getvalue())
    atomic_write_json(out / "predictions.json", {
        "model": detector.describe(),
        "n_images": len(result.rows),
        "n_anomalous": sum(1 for r in result.rows if r["verdict"] == "anomalous"),
        "predictions": result.rows,
        "skipped": result.errors,
    })


def summary(result: PredictResult, out: Path) -> str:
    anomalous = sum(1 for r in result.rows if r["verdict"] == "anomalous")
    text = {"images": len(result.rows), "anomalous": anomalous, "skipped": len(result.errors), "out": str(out)}
    return json.dumps(text)
