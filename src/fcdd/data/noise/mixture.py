"""``--noise-mode mix``: every anomalous image drawn from one of several sources (``--noise-mix``).

Real defects come in several kinds (blobs, scratches, missing pieces); a model that has seen
only one kind of synthetic anomaly tends to miss the others. Sources must be all local (their
own masks) or all whole-image, because the supervision mode treats the two differently.
"""

from __future__ import annotations

import torch

from fcdd.data.noise.base import NOISE, NoiseSource


@NOISE.register("mix")
class Mixture(NoiseSource):
    def __init__(self, config, splits) -> None:
        super().__init__(config, splits)
        names = list(config.noise_mix)
        if len(names) < 2 or "mix" in names:
            raise ValueError(f"noise mode mix needs two or more other noise modes in --noise-mix, got {names}")
        self.sources = [NOISE.get(name)(config, splits) for name in names]
        kinds = {source.full_frame for source in self.sources}
        if len(kinds) > 1:
            raise ValueError(f"--noise-mix {','.join(names)}: cannot mix local and whole-image noise modes")
        self.full_frame = kinds.pop()

    def __call__(self, nominal, generator):
        pick = torch.randint(len(self.sources), (len(nominal),), generator=generator)
        content = nominal.clone()
        where = torch.zeros(len(nominal), 1, *nominal.shape[-2:], device=nominal.device)
        for i, source in enumerate(self.sources):
            chosen = (pick == i).nonzero().flatten()
            if len(chosen):
                index = chosen.to(nominal.device)
                content[index], where[index] = source(nominal[index], generator)
        return content, where

    @classmethod
    def adjust_splits(cls, config, splits):
        for name in config.noise_mix:
            splits = NOISE.get(name).adjust_splits(config, splits)
        return splits
