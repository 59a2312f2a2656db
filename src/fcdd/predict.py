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
from PIL import Image
from tqdm.auto import tqdm

from fcdd.detector import Detector, Prediction
from fcdd.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from fcdd.overlay import colour_scale, png_bytes, render_overlay
from fcdd.preprocess import find_images, iter_batches

log = logging.getLogger("fcdd")

CSV_FIELDS = ("path", "score", "normalised_score", "verdict", "threshold", "anomalous_pixel_fraction", "overlay")
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
                        "path": str(files[index]), "score": info["score"], "normalised_score": info["normalised_score"], "verdict": info["verdict"], "threshold": info["threshold"],
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
