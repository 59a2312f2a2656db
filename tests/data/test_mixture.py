from __future__ import annotations

import pytest
import torch

from fcdd.config import Config
from fcdd.data.noise import NOISE
from fcdd.data.supervision import build_supervision


def test_mix_draws_each_image_from_one_of_its_sources():
    config = Config(noise_mode="mix", noise_mix=["confetti", "cutpaste"], image_size=32)
    source = NOISE.get("mix")(config, None)
    nominal = torch.rand(64, 1, 32, 32)
    content, where = source(nominal, torch.Generator().manual_seed(0))
    assert not source.full_frame
    kinds = []
    for i in range(len(nominal)):
        inside = where[i, 0] > 0
        assert inside.any()
        pasted = content[i, 0][inside]
        # confetti paints flat colours (few distinct values); cutpaste moves texture (many)
        kinds.append("confetti" if pasted.unique().numel() <= 6 else "cutpaste")
    assert 16 <= kinds.count("confetti") <= 48  # both sources used, about half each


def test_mix_with_the_supervision_mode_keeps_labels_and_maps():
    config = Config(noise_mode="mix", noise_mix="confetti,cutpaste_scar", supervise_mode="malformed_normal", image_size=32)
    images = torch.rand(8, 3, 32, 32)
    out = build_supervision(config, None)(images.clone(), torch.zeros(8, 1, 32, 32), torch.Generator().manual_seed(1))
    assert out.labels.tolist() == [1] * 4 + [0] * 4
    assert (out.maps[:4].flatten(1).sum(1) > 0).all() and out.maps[4:].sum() == 0


@pytest.mark.parametrize("mix,message", [(["confetti"], "two or more"), (["confetti", "mix"], "two or more"), (["confetti", "gaussian"], "local and whole-image")])
def test_bad_mixes_are_named(mix, message):
    with pytest.raises(ValueError, match=message):
        NOISE.get("mix")(Config(noise_mode="mix", noise_mix=mix, image_size=32), None)
