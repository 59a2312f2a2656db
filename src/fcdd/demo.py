"""``fcdd demo``: the whole pipeline on generated data, in a few CPU minutes."""

from __future__ import annotations

from pathlib import Path

from fcdd.api import train
from fcdd.config import Config
from fcdd.rundir import read_metrics, run_or_resume

#: a CPU-friendly setting for the synthetic textures (documented in the README)
DEMO_OPTIONS = dict(
    dataset="synthetic",
    category="gravel",
    image_size=64,
    net="cnn32",
    width=0.5,
    pretrained="none",
    epochs=30,
    batch_size=32,
    lr=1e-3,
    weight_decay=1e-6,
    milestones=[20],
    augment_flip="hv",
)


def demo_config(out: str | Path, epochs: int | None = None) -> Config:
    out = Path(out)
    options = dict(DEMO_OPTIONS, data=str(out / "data"), out=str(out / "run"))
    if epochs is not None:
        options["epochs"] = epochs
    return Config(**options)


def run_demo(out: str | Path = "runs/demo", epochs: int | None = None) -> dict:
    """Train the demo (or keep it, when finished before; resume it when interrupted); its metrics."""
    config = demo_config(out, epochs)
    run_dir = Path(config.out)
    if not run_or_resume(config, train):
        print(f"the demo run in {run_dir} finished before; kept (delete the folder to train again)")
    m = read_metrics(run_dir)
    print(f"\nimage AUROC: {m['image_auroc']:.4f}")
    print(f"pixel AUROC: {m['pixel_auroc']:.4f}")
    print(f"pictures: {run_dir.resolve()} (report.html, gallery_*.png, roc_*.png, loss.png)")
    return m
