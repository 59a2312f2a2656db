"""``fcdd predict``: verdicts for many image files, with a CSV/JSON table and an overlay per image.

Files are decoded in threads a few batches ahead of the model; overlays are drawn and written in
threads too. A file that cannot be read is reported and skipped; the batch goes on.

No score is lost to a kill or a full disk: every batch's rows are appended to
``predictions.csv`` and ``predictions.jsonl`` and fsync'd before the next batch, each file
always ending after a whole row. ``predictions.json`` (rows, skipped files, the model) is
written atomically at the end, so its presence means the prediction finished. A new
prediction into the same folder starts these tables afresh (overlays are overwritten by name).
An overlay is written after its row: a killed prediction may list an overlay that is missing.
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

from fcdd.detector import Detector, Prediction
from fcdd.io import AppendFile, atomic_write_bytes, atomic_write_json, finite_json, remove_stale_temps
from fcdd.overlay import colour_scale, png_bytes, render_overlay
from fcdd.preprocess import find_images, iter_batches
from fcdd.runtime import progress_bar

log = logging.getLogger("fcdd")

CSV_FIELDS = ("path", "score", "normalised_score", "verdict", "threshold", "anomalous_pixel_fraction", "overlay")
CSV_NAME, JSONL_NAME, JSON_NAME = "predictions.csv", "predictions.jsonl", "predictions.json"
#: a text cell starting with one of these is a formula to a spreadsheet (OWASP's CSV injection list)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class PredictWriteError(ValueError):
    """The tables could not grow (full disk?); the rows written before are kept."""


# --- the tables, row by row -----------------------------------------------------------------------
def csv_cell(value: object) -> object:
    """A value as a CSV cell: None empty, text that a spreadsheet would run as a formula behind
    a quote ('=..., '-...); numbers, negative ones too, stay numbers."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_rows(rows: list[dict], header: bool = False) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(CSV_FIELDS)
    writer.writerows([csv_cell(row[k]) for k in CSV_FIELDS] for row in rows)
    return buffer.getvalue()


def jsonl_rows(rows: list[dict]) -> str:
    """One strict JSON object per line (a non-finite score becomes null)."""
    return "".join(json.dumps(finite_json(row, {}), allow_nan=False) + "\n" for row in rows)


class PredictionLog:
    """``predictions.csv`` and ``predictions.jsonl`` of one prediction, grown batch by batch."""

    def __init__(self, out: Path) -> None:
        (out / JSON_NAME).unlink(missing_ok=True)  # an earlier prediction's summary would not match these rows
        self.files: list[AppendFile] = []
        try:
            self.files.append(AppendFile(out / CSV_NAME, csv_rows([], header=True)))
            self.files.append(AppendFile(out / JSONL_NAME))
        except OSError as err:
            self.close()
            raise PredictWriteError(f"{err.filename or out}: cannot write the predictions table ({err.strerror or err})") from err
        self.rows = 0

    def add(self, rows: list[dict]) -> None:
        """Append one batch's rows to both tables, on disk before this returns."""
        if not rows:
            return
        for file, text in zip(self.files, (csv_rows(rows), jsonl_rows(rows)), strict=True):
            try:
                file.append(text)
            except OSError as err:
                raise PredictWriteError(f"{file.path}: cannot write more rows ({err.strerror or err}); "
                                        f"the {self.rows} row(s) before are kept") from err
        self.rows += len(rows)

    def close(self) -> None:
        for file in self.files:
            file.close()


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
    """Score every image file (folders are searched recursively) and write the tables to ``out``.

    Rows reach ``predictions.csv`` / ``predictions.jsonl`` batch by batch (see the module's
    docstring); temp files that killed writes left in ``out`` are removed first.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out, recursive=False)
    for sub in ("overlays", "masks"):
        remove_stale_temps(out / sub)
    files, missing = find_images(inputs)
    result = PredictResult(errors=[{"path": p, "error": e} for p, e in missing])
    names = overlay_names(files)
    table = PredictionLog(out)
    bar = progress_bar(total=len(files), desc="predict", unit="img", disable=not progress)
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
        for batch in iter_batches(files, detector.in_channels, detector.image_shape, detector.batch_size, detector.workers,
                                  keep_display=overlays, skip_errors=True):
            for index, message in batch.errors:
                result.errors.append({"path": str(files[index]), "error": message})
                log.warning("skipped %s", message if str(files[index]) in message else f"{files[index]}: {message}")
            if batch.indices:
                scores, heatmaps = detector.forward(batch.images)
                predictions = detector.predictions(scores, heatmaps)
                batch_rows = [row_of(files[i], p, str(Path("overlays") / names[i]) if overlays else None)
                              for i, p in zip(batch.indices, predictions, strict=True)]
                table.add(batch_rows)
                rows.update(zip(batch.indices, batch_rows, strict=True))
                for index, prediction, display in zip(batch.indices, predictions, batch.displays, strict=True):
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
        table.close()
    result.rows = [rows[i] for i in sorted(rows)]
    write_summary(detector, result, out)
    return result


def row_of(path: Path, prediction: Prediction, overlay: str | None) -> dict:
    """One table row: the file, its score and verdict, and where its overlay goes."""
    info = prediction.to_dict()
    return {
        "path": str(path), "score": info["score"], "normalised_score": info["normalised_score"], "verdict": info["verdict"],
        "threshold": info["threshold"], "anomalous_pixel_fraction": info["anomalous_pixel_fraction"], "overlay": overlay,
    }


def write_summary(detector: Detector, result: PredictResult, out: Path) -> None:
    """``predictions.json``, atomically, once every row is in the tables."""
    atomic_write_json(out / JSON_NAME, {
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
