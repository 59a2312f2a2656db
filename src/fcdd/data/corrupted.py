"""Corrupted Fashion-MNIST: the nominal class's test images, half of them corrupted.

The corruptions are synthetic (confetti blobs, noise patches, scratches of random lines) and come
with exact pixel masks, so one-class Fashion-MNIST gets a pixel-level explanation score.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from fcdd.data.base import DATASETS, DataSplits, ImageSet, numbered_classes
from fcdd.data.idx import fmnist
from fcdd.data.noise.confetti import confetti
from fcdd.data.noise.shapes import random_patch

if TYPE_CHECKING:
    from fcdd.config import Config


def corrupt(images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """uint8 images -> corrupted uint8 images, their 0/1 masks and the corruption names."""
    x = images.float() / 255
    kinds = []
    out, masks = torch.empty_like(x), torch.zeros(len(x), 1, *x.shape[-2:])
    choice = torch.randint(2, (len(x),), generator=generator)
    blobs, blob_masks = confetti(x, generator, max_blobs=3, min_side=1 / 8, max_side=1 / 3)
    patch = random_patch(x.shape, generator, x.device)
    noise = torch.rand(x.shape, generator=generator)
    for i in range(len(x)):
        if choice[i] == 0:
            out[i], masks[i] = blobs[i], blob_masks[i]
            kinds.append("confetti")
        else:
            out[i] = x[i] * (1 - patch[i]) + noise[i] * patch[i]
            masks[i] = patch[i]
            kinds.append("noise_patch")
    return (out * 255).round().byte(), masks.byte(), kinds


@DATASETS.register("fmnist_corrupted", classes=numbered_classes(10))
def fmnist_corrupted(config: Config) -> DataSplits:
    base = fmnist(config)
    nominal = base.test.subset((base.test.labels == 0).nonzero().squeeze(1))
    generator = torch.Generator().manual_seed(1234)
    order = torch.randperm(len(nominal), generator=generator)
    half = len(nominal) // 2
    clean = nominal.subset(order[:half])
    to_corrupt = nominal.subset(order[half:])
    images, masks, kinds = corrupt(to_corrupt.images, generator)
    corrupted = ImageSet(images, torch.ones(len(images), dtype=torch.long), masks, kinds, [f"{p}#corrupted" for p in to_corrupt.paths])
    return DataSplits(base.train, ImageSet.concat([clean, corrupted]), name=f"{base.name}-corrupted",
                      notes=[f"test: {half} clean and {len(images)} synthetically corrupted images of the nominal class"])
