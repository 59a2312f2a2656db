"""Loss curves and ROC figures, written as PNG and PDF."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fcdd.io import atomic_write_bytes  # noqa: E402


def save_figure(fig, path: Path, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Write a figure atomically in each format; returns the paths."""
    import io

    written = []
    for fmt in formats:
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=110, bbox_inches="tight")
        written.append(atomic_write_bytes(path.with_suffix(f".{fmt}"), buffer.getvalue()))
    plt.close(fig)
    return written


def plot_loss(history: dict, path: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = np.arange(1, len(history["loss"]) + 1)
    for key, style in (("loss", "-"), ("nominal", "--"), ("anomalous", ":")):
        values = np.asarray(history.get(key, []), dtype=float)
        if len(values) and not np.isnan(values).all():
            ax.plot(epochs, values, style, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean loss")
    ax.set_yscale("log")
    ax.set_title("training loss")
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path: Path, title: str) -> list[Path]:
    """``curves``: label -> (fpr, tpr, auroc)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    for label, (fpr, tpr, area) in curves.items():
        ax.plot(fpr, tpr, label=f"{label} (AUROC {area:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
