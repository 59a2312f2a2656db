"""``report.html``: one page to browse a run, opened straight from the file system.

No network and no libraries: thumbnails and small pictures are embedded as base64, large
pictures (full-size galleries) are linked beside the page, and the card grid is sorted and
filtered by a few lines of vanilla JavaScript reading one embedded JSON blob.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import Image

from fcdd.evaluation import HEADLINE_METRICS
from fcdd.io import atomic_write_text
from fcdd.report.gallery import CMAP, check_alpha

TEMPLATE = Path(__file__).parent / "templates" / "report.html"
#: pictures larger than this are linked beside report.html instead of embedded
EMBED_LIMIT = 500_000
THUMB = 96


@dataclass
class Figure:
    title: str
    path: Path
    wide: bool = False


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _encode(array: np.ndarray, fmt: str = "JPEG") -> str:
    buffer = io.BytesIO()
    image = Image.fromarray(array)
    if fmt == "JPEG":
        image.save(buffer, format="JPEG", quality=85)
        return data_uri(buffer.getvalue(), "image/jpeg")
    image.save(buffer, format="PNG")
    return data_uri(buffer.getvalue(), "image/png")


def _thumb_size(side: int, limit: int = THUMB) -> int:
    return min(side, limit)


def card_thumbnails(images: torch.Tensor, heatmaps: torch.Tensor, maps: torch.Tensor | None, alpha: float, size: int = THUMB,
                    colour_range: tuple[float, float] | None = None) -> list[dict]:
    """Per image: input, overlays with calibrated ('c', when the run has a colour range),
    semi-global ('g') and local ('l') colours, truth (or None).

    Heatmaps are reduced by area averaging first, so a whole test set takes well under a second.
    """
    check_alpha(alpha)
    n = len(images)
    if n == 0:
        return []
    side = _thumb_size(int(images.shape[-1]), size)
    small = F.interpolate(images.float(), size=(side, side), mode="area") if images.shape[-1] != side else images.float()
    small = small.round().clamp(0, 255).byte()
    rgb = small.permute(0, 2, 3, 1).numpy()
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    hm = heatmaps.float()
    hm = F.interpolate(hm, size=(side, side), mode="area") if hm.shape[-1] != side else hm
    hm = hm[:, 0].numpy()
    glo, ghi = float(hm.min()), float(hm.max())
    lo, hi = hm.min(axis=(1, 2), keepdims=True), hm.max(axis=(1, 2), keepdims=True)
    local = (hm - lo) / np.where(hi > lo, hi - lo, 1.0)
    semi = (hm - glo) / (ghi - glo if ghi > glo else 1.0)
    scales = [("g", semi), ("l", local)]
    if colour_range is not None:
        low, high = colour_range
        scales.insert(0, ("c", (hm - low) / (high - low if high > low else 1.0)))
    cmap = colormaps[CMAP]
    out = []
    truth = None
    if maps is not None:
        truth = F.interpolate(maps.float(), size=(side, side), mode="nearest")[:, 0].numpy() > 0
    for i in range(n):
        base = rgb[i].astype(np.float32)
        entry = {"img": _encode(rgb[i])}
        for key, scaled in scales:
            coloured = cmap(np.clip(scaled[i], 0, 1))[..., :3] * 255
            entry[key] = _encode(np.round(base * (1 - alpha) + coloured * alpha).astype(np.uint8))
        entry["truth"] = _encode((truth[i] * 255).astype(np.uint8), "PNG") if truth is not None and truth[i].any() else None
        out.append(entry)
    return out


def picture_src(path: Path, page_dir: Path) -> str:
    """Embed a small picture; link a large one relative to the page."""
    if path.stat().st_size <= EMBED_LIMIT:
        mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}.get(path.suffix.lower(), "application/octet-stream")
        return data_uri(path.read_bytes(), mime)
    try:
        return path.resolve().relative_to(page_dir.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_uri()


def _num(value, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _duration(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "n/a"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def blank_thumbnail(side: int) -> str:
    """A black square: the ground truth of an image without defects."""
    return _encode(np.zeros((side, side), np.uint8), "PNG")


def _table(rows: Sequence[tuple], head: tuple[str, ...] | None = None) -> str:
    """Rows of (name, value, ...): the name as a row heading, values as numbers."""
    parts = ["<table>"]
    if head:
        parts.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
    for key, *values in rows:
        parts.append(f"<tr><th>{html.escape(key)}</th>" + "".join(f"<td class='num'>{_num(v)}</td>" for v in values) + "</tr>")
    parts.append("</table>")
    return "".join(parts)


def verdict_counts(scores: np.ndarray, labels: np.ndarray, threshold: float | None) -> dict | None:
    """Confusion counts of ``score >= threshold`` on the test set."""
    if threshold is None or not np.isfinite(threshold):
        return None
    flagged = scores >= threshold
    labels = labels.astype(bool)
    return {
        "true positives": int((flagged & labels).sum()),
        "false positives": int((flagged & ~labels).sum()),
        "false negatives": int((~flagged & labels).sum()),
        "true negatives": int((~flagged & ~labels).sum()),
    }


def _test_rates_table(test: dict) -> str:
    """Precision / recall / F1 / FPR of the stored thresholds on the test set, images and pixels."""
    if not test:
        return ""
    names = ("precision", "recall", "f1", "fpr")
    rows = [(level, *[(test.get(level) or {}).get(n) for n in names]) for level in ("image", "pixel") if test.get(level)]
    table = _table(rows, ("at the stored threshold", *names)) if rows else ""
    shares = [
        ("defective test images with a flagged pixel", test.get("defective_images_with_flagged_pixels")),
        ("good test images with a flagged pixel", test.get("good_images_with_flagged_pixels")),
        ("anomalous verdicts with an empty mask", test.get("anomalous_verdicts_with_empty_mask")),
    ]
    return "<h3>Thresholds on the test set</h3>" + table + _table([r for r in shares if r[1] is not None])


def metrics_section(metrics: dict, scores: np.ndarray, labels: np.ndarray, threshold: float | None) -> str:
    m = metrics
    pixel = m.get("pixel_auroc")
    stats = [
        ("image AUROC", _num(m.get("image_auroc"))),
        ("pixel AUROC", _num(pixel) if pixel is not None else "n/a"),
        ("test images", f"{len(scores)} ({int(labels.sum())} anomalous)"),
        ("epochs", _num(m.get("epochs"))),
        ("training time", _duration(m.get("train_seconds"))),
    ]
    parts = ["<section id='metrics'><h2>Metrics</h2><div class='summary'>"]
    parts += [f"<div class='stat'><div class='v'>{v}</div><div class='k'>{html.escape(k)}</div></div>" for k, v in stats]
    parts.append("</div>")
    rows = [(title, m.get(key)) for key, title in HEADLINE_METRICS] + [
        ("pixel F1-max threshold", m.get("pixel_f1_max_threshold")),
        ("pixel metrics at", {"input": "network input size", "native": "each mask's own size"}.get(m.get("pixel_resolution"))),
        ("pixel AUROC error bound (binning)", m.get("pixel_auroc_error_bound")),
        ("dataset", m.get("dataset")),
        ("objective", m.get("objective")),
        ("training images / s", m.get("train_images_per_second")),
        ("total seconds", m.get("total_seconds")),
    ]
    parts.append("<h3>Detection and explanation</h3>" + _table([r for r in rows if r[1] is not None]))
    per_defect = m.get("image_auroc_per_defect") or {}
    if per_defect:
        parts.append("<h3>Image AUROC per defect type (vs. all nominal test images)</h3>" + _table(list(per_defect.items()), ("defect type", "AUROC")))
    thresholds = m.get("thresholds") or {}
    if thresholds.get("image"):
        t = thresholds["image"]
        rows = [("image threshold", t.get("threshold")), ("rule", t.get("rule")), ("calibrated on", thresholds.get("source"))]
        if thresholds.get("pixel"):
            rows.append(("pixel threshold", thresholds["pixel"].get("threshold")))
            rows.append(("pixel rule", thresholds["pixel"].get("rule")))
        counts = verdict_counts(scores, labels, threshold)
        rows += list((counts or {}).items())
        parts.append("<h3>Verdict threshold (on held-out training images) and its verdicts on the test set</h3>" + _table(rows))
        parts.append(_test_rates_table(thresholds.get("test") or {}))
    for note in m.get("notes") or []:
        parts.append(f"<p class='muted'>note: {html.escape(str(note))}</p>")
    parts.append("</section>")
    return "".join(parts)


def _figure(fig: Figure, page_dir: Path) -> str:
    src = picture_src(fig.path, page_dir)
    lazy = "" if src.startswith("data:") else " loading='lazy'"
    wide = " class='wide'" if fig.wide else ""
    return (
        f"<figure{wide}><a href='{html.escape(fig.path.name)}'><img src='{html.escape(src)}' alt='{html.escape(fig.title)}'{lazy}></a>"
        f"<figcaption>{html.escape(fig.title)} ({html.escape(fig.path.name)})</figcaption></figure>"
    )


def figures_section(anchor: str, heading: str, figures: Sequence[Figure], page_dir: Path, intro: str = "") -> str:
    figures = [f for f in figures if f.path.is_file()]
    if not figures:
        return ""
    parts = [f"<section id='{anchor}'><h2>{html.escape(heading)}</h2>"]
    if intro:
        parts.append(f"<p class='muted'>{html.escape(intro)}</p>")
    parts.append("<div class='plots'>" + "".join(_figure(f, page_dir) for f in figures) + "</div></section>")
    return "".join(parts)


def gallery_section(groups: Sequence[tuple[str, Sequence[Figure], bool]], page_dir: Path, intro: str = "") -> str:
    """One collapsible group per gallery (title, its normalisations side by side, open?)."""
    parts = []
    for title, figures, is_open in groups:
        figures = [f for f in figures if f.path.is_file()]
        if figures:
            parts.append(f"<details{' open' if is_open else ''}><summary>{html.escape(title)}</summary><div class='plots gallery'>"
                         + "".join(_figure(f, page_dir) for f in figures) + "</div></details>")
    if not parts:
        return ""
    head = "<section id='galleries'><h2>Heatmap galleries</h2>" + (f"<p class='muted'>{html.escape(intro)}</p>" if intro else "")
    return head + "".join(parts) + "</section>"


def write_html(
    path: Path,
    title: str,
    subtitle: str,
    metrics: dict,
    config_yaml: str,
    before: Sequence[str],
    after: Sequence[str],
    cards: list[dict],
    threshold: float | None,
    scores: np.ndarray,
    labels: np.ndarray,
    blank: str | None = None,
) -> Path:
    """Fill the template: metrics and ``before`` above the test-image cards, ``after`` below.

    ``cards`` are dicts with index, score, label, kind, path and the thumbnails 'img', 'g', 'l',
    'truth'; ``blank`` (a black thumbnail) switches the ground-truth column on.
    """
    body = metrics_section(metrics, scores, labels, threshold) + "".join(before)
    config_html = f"<section id='config'><h2>Config</h2><p class='muted'>Replay with <code>fcdd train --config config.yaml</code>.</p><pre>{html.escape(config_yaml)}</pre></section>"
    payload = json.dumps({"cards": cards, "threshold": threshold, "blank": blank}, allow_nan=False).replace("<", "\\u003c")
    page = TEMPLATE.read_text(encoding="utf-8")
    for key, value in (
        ("__FCDD_TITLE__", html.escape(title)),
        ("__FCDD_SUBTITLE__", html.escape(subtitle)),
        ("__FCDD_BODY__", body),
        ("__FCDD_AFTER__", "".join(after)),
        ("__FCDD_CONFIG__", config_html),
        ("__FCDD_DATA__", payload),
    ):
        page = page.replace(key, value)
    return atomic_write_text(path, page)


def generated_at() -> str:
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
