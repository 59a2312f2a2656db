"""Loss curves and ROC figures, written as PNG and PDF.

Every ROC figure also writes the points it draws as ``<name>.json`` (fpr, tpr, auroc per
curve), so the picture can be checked against the reported AUROC and seeds can be averaged later
without re-scoring (``plot_mean_roc``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fcdd.io import atomic_write_bytes, atomic_write_json  # noqa: E402
from fcdd.metrics import trapezoid_area  # noqa: E402

#: the common false-positive-rate grid seeds are averaged on
FPR_GRID = np.linspace(0.0, 1.0, 201)


def save_figure(fig, path: Path, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Write a figure atomically in each format; returns the paths."""
    import io

    path = Path(path)
    written = []
    for fmt in formats:
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=110, bbox_inches="tight")
        written.append(atomic_write_bytes(path.with_suffix(f".{fmt}"), buffer.getvalue()))
    plt.close(fig)
    return written


def plot_loss(history: dict, path: Path) -> list[Path]:
    """Mean training loss per epoch: overall, on nominal and on anomalous samples."""
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    drawn = []
    for key, style in (("loss", "-o"), ("nominal", "--"), ("anomalous", ":")):
        values = np.asarray(history.get(key, []), dtype=float)
        if len(values) == len(epochs) and len(values) and not np.isnan(values).all():
            ax.plot(epochs, values, style, label="overall" if key == "loss" else key, markersize=3)
            drawn.append(values[np.isfinite(values)])
    finite = np.concatenate(drawn) if drawn else np.zeros(0)
    if len(finite) and (finite > 0).all():
        ax.set_yscale("log")  # losses fall over orders of magnitude; log only where defined
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean loss")
    ax.set_title("training loss")
    if drawn:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no epochs trained", ha="center", va="center", transform=ax.transAxes)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def _roc_axes(title: str):
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig, ax


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]], path: Path, title: str) -> list[Path]:
    """``curves``: label -> (fpr, tpr, auroc). Writes PNG, PDF and the drawn points as JSON."""
    path = Path(path)
    fig, ax = _roc_axes(title)
    for label, (fpr, tpr, area) in curves.items():
        ax.plot(fpr, tpr, label=f"{label} (AUROC {area:.3f})")
    if curves:
        ax.legend(loc="lower right")
    written = save_figure(fig, path)
    points = {label: {"fpr": np.asarray(fpr, float), "tpr": np.asarray(tpr, float), "auroc": float(area)} for label, (fpr, tpr, area) in curves.items()}
    written.append(atomic_write_json(path.with_suffix(".json"), {"title": title, "curves": points}))
    return written


def interpolate_roc(fpr: np.ndarray, tpr: np.ndarray, grid: np.ndarray = FPR_GRID) -> np.ndarray:
    """The TPR of the piecewise-linear ROC curve through (fpr, tpr) at each grid FPR.

    Vertical steps (several points at one FPR) are honoured: at that FPR the highest TPR counts,
    just before it the segment leading to the lowest one, so averaged curves keep their area.
    """
    fpr = np.asarray(fpr, dtype=float)
    tpr = np.asarray(tpr, dtype=float)
    if len(fpr) == 0:
        raise ValueError("an ROC curve needs at least one point")
    if np.any(np.diff(fpr) < 0):
        order = np.lexsort((tpr, fpr))
        fpr, tpr = fpr[order], tpr[order]
    grid = np.asarray(grid, dtype=float)
    last = np.searchsorted(fpr, grid, side="right") - 1  # last point with fpr <= x
    out = np.empty_like(grid)
    below = last < 0
    out[below] = 0.0
    i = np.clip(last, 0, len(fpr) - 1)
    exact = ~below & (fpr[i] == grid)
    out[exact] = tpr[i[exact]]
    between = ~below & ~exact & (i + 1 < len(fpr))
    j = i[between]
    x0, x1, y0, y1 = fpr[j], fpr[j + 1], tpr[j], tpr[j + 1]
    out[between] = y0 + (grid[between] - x0) * (y1 - y0) / (x1 - x0)
    beyond = ~below & ~exact & (i + 1 >= len(fpr))
    out[beyond] = tpr[i[beyond]]
    return out


def _as_curves(curves_per_seed) -> list[tuple[np.ndarray, np.ndarray, float]]:
    items = curves_per_seed.values() if isinstance(curves_per_seed, Mapping) else curves_per_seed
    out = []
    for curve in items:
        if isinstance(curve, Mapping):
            fpr, tpr, area = curve["fpr"], curve["tpr"], curve.get("auroc")
        else:
            fpr, tpr, *rest = curve
            area = rest[0] if rest else None
        fpr, tpr = np.asarray(fpr, float), np.asarray(tpr, float)
        out.append((fpr, tpr, float(trapezoid_area(fpr, tpr) if area is None else area)))
    return out


def mean_roc(curves_per_seed, grid: np.ndarray = FPR_GRID) -> dict:
    """Average ROC curves over seeds on a common FPR grid.

    ``curves_per_seed``: a sequence (or seed -> curve mapping) of ``(fpr, tpr[, auroc])`` tuples
    or ``{"fpr", "tpr"[, "auroc"]}`` dicts (the ``curves`` entries of a ``roc_*.json``).
    Returns fpr, mean and std TPR per grid point and the mean / std of the seeds' AUROCs.
    """
    curves = _as_curves(curves_per_seed)
    if not curves:
        raise ValueError("plot_mean_roc needs at least one curve")
    tprs = np.stack([interpolate_roc(fpr, tpr, grid) for fpr, tpr, _ in curves])
    areas = np.array([area for *_, area in curves])
    return {
        "fpr": np.asarray(grid, float),
        "tpr_mean": tprs.mean(0),
        "tpr_std": tprs.std(0),
        "auroc_mean": float(areas.mean()),
        "auroc_std": float(areas.std()),
        "aurocs": areas,
        "seeds": len(curves),
    }


def plot_mean_roc(curves_per_seed: Sequence | Mapping, path: Path, title: str) -> list[Path]:
    """Per-class ROC averaged over seeds: the seeds thin, their mean bold, +-1 std shaded.

    TPRs are interpolated on a common FPR grid (``FPR_GRID``); the legend gives the mean and std
    of the seeds' own AUROCs. Writes PNG, PDF and the averaged curve as JSON.
    """
    path = Path(path)
    curves = _as_curves(curves_per_seed)
    summary = mean_roc(curves)
    fig, ax = _roc_axes(title)
    for k, (fpr, tpr, _) in enumerate(curves):
        ax.plot(fpr, tpr, color="tab:blue", alpha=0.25, lw=0.8, label="seeds" if k == 0 else None)
    grid, mean, std = summary["fpr"], summary["tpr_mean"], summary["tpr_std"]
    ax.fill_between(grid, np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1), color="tab:blue", alpha=0.2, lw=0, label="±1 std")
    ax.plot(grid, mean, color="tab:blue", lw=2,
            label=f"mean of {len(curves)} (AUROC {summary['auroc_mean']:.3f} ± {summary['auroc_std']:.3f})")
    ax.legend(loc="lower right")
    written = save_figure(fig, path)
    written.append(atomic_write_json(path.with_suffix(".json"), {"title": title, **summary}))
    return written
