"""``ds_preview.png``: what the network trains on, after augmentation and synthetic anomalies.

A few training images go through the run's own ``Augment`` and supervision with a fixed seed,
exactly as in a training step, so a person can see whether the anomalies look like the defects
the model should find and whether their ground-truth maps cover them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fcdd.config import Config
from fcdd.data.base import DataSplits
from fcdd.data.supervision import Batch, Supervision
from fcdd.data.transforms import Augment, to_float
from fcdd.report.gallery import Panel, image_rgb, render, save_png, truth_rgb
from fcdd.runtime import derived_seed


def preview_batch(config: Config, splits: DataSplits, supervision: Supervision, n: int = 8, seed: int | None = None) -> Batch:
    """``2 n`` random training images, augmented, half of them turned anomalous by the supervision.

    The supervision runs with an anomaly fraction of one half (whatever the run's fraction) so
    both kinds are shown; unsupervised runs give nominal images only.
    """
    seed = config.seed if seed is None else seed
    generator = torch.Generator().manual_seed(derived_seed(seed, "preview"))
    train = splits.train
    if len(train) == 0:
        raise ValueError("no training images to preview")
    pick = torch.randperm(len(train), generator=generator)[: 2 * n]
    images = to_float(train.images[pick])
    maps = train.maps[pick].float()
    images, maps = Augment.from_config(config)(images, maps, generator)
    return supervision.with_fraction(0.5)(images, maps, generator)


def write_preview(config: Config, splits: DataSplits, supervision: Supervision, path: Path, n: int = 8) -> dict:
    """Draw the preview batch: nominal inputs; anomalous inputs over their ground-truth maps."""
    batch = preview_batch(config, splits, supervision, n)
    labels = batch.labels.cpu()
    supervision = f"{config.supervise_mode}, {config.noise_mode} noise (training: {config.anomaly_fraction:.0%} of each batch)"
    nominal = torch.nonzero(labels == 0).flatten().tolist()
    anomalous = torch.nonzero(labels == 1).flatten().tolist()
    panels = []
    if nominal:
        panels.append(Panel(f"nominal training samples after augmentation ({len(nominal)})", ["input"], [[image_rgb(batch.images[i]) for i in nominal]]))
    if anomalous:
        panels.append(Panel(
            f"anomalous training samples: {supervision}", ["input", "truth"],
            [[image_rgb(batch.images[i]) for i in anomalous], [truth_rgb(batch.maps[i].cpu()) for i in anomalous]],
        ))
    picture, _ = render(panels)
    save_png(picture, Path(path))
    return {"path": str(path), "nominal": len(nominal), "anomalous": len(anomalous), "supervision": supervision}
