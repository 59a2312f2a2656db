"""A few real defects of the category, with their ground-truth maps (semi-supervised FCDD).

``--oe-limit N`` (default 1) real defective test images per defect type move from the test split
to training; they are never evaluated on, and the run's notes say which were taken.
"""

from __future__ import annotations

import dataclasses

import torch

from fcdd.data.noise.base import NOISE, NoiseSource
from fcdd.data.transforms import Augment


@NOISE.register("mvtec_gt")
class RealDefects(NoiseSource):
    full_frame = False

    @classmethod
    def adjust_splits(cls, config, splits):
        test = splits.test
        per_type = 1 if config.oe_limit is None else config.oe_limit
        generator = torch.Generator().manual_seed(config.seed)
        taken: list[int] = []
        for kind in sorted({k for k, label in zip(test.kinds, test.labels.tolist(), strict=True) if label == 1}):
            index = [i for i, k in enumerate(test.kinds) if k == kind and test.labels[i] == 1]
            order = torch.randperm(len(index), generator=generator)[:per_type]
            taken += [index[i] for i in order.tolist()]
        if not taken:
            raise ValueError("noise mode mvtec_gt needs anomalous test images with ground-truth maps")
        taken.sort()
        keep = [i for i in range(len(test)) if i not in set(taken)]
        names = ", ".join(f"{test.kinds[i]}/{test.paths[i].rsplit('/', 1)[-1]}" for i in taken)
        note = f"{len(taken)} real defects ({per_type} per type) moved from test to training and excluded from evaluation: {names}"
        return dataclasses.replace(splits, train_anomalies=test.subset(taken), test=test.subset(keep), notes=[*splits.notes, note])

    def __init__(self, config, splits) -> None:
        super().__init__(config, splits)
        if splits is None or splits.train_anomalies is None:
            raise ValueError("noise mode mvtec_gt: the real defects were not split off (prepare the data with fcdd.data.prepare_splits)")
        self.pool = splits.train_anomalies
        # the few real defects are seen over and over: vary them as the nominal images are
        self.augment = Augment.from_config(config)

    def __call__(self, nominal, generator):
        pick = torch.randint(len(self.pool), (len(nominal),), generator=generator)
        content = self.pool.images[pick].float().div(255).to(nominal.device)
        if content.shape[1] != nominal.shape[1]:
            content = content.mean(1, keepdim=True) if nominal.shape[1] == 1 else content.expand(-1, nominal.shape[1], -1, -1)
        return self.augment(content, self.pool.maps[pick].float().to(nominal.device), generator)
