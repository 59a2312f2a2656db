from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from fcdd.config import Config
from fcdd.data.noise.confetti import confetti
from fcdd.data.supervision import build_supervision
from fcdd.data.synthetic import DEFECTS, generate
from fcdd.data.transforms import Augment


def test_confetti_changes_only_marked_pixels():
    g = torch.Generator().manual_seed(0)
    nominal = torch.full((16, 3, 32, 32), 0.5)
    content, where = confetti(nominal, g)
    assert where.shape == (16, 1, 32, 32)
    covered = where.flatten(1).mean(1)
    assert (covered > 0).all() and (covered < 0.6).all()
    outside = where.expand_as(content) == 0
    assert torch.equal(content[outside], nominal[outside])
    # blobs have flat random colours, different between images
    assert content[where.expand_as(content) > 0].std() > 0.1


def test_malformed_normal_labels_fraction_and_maps(synthetic_root):
    config = Config(data=str(synthetic_root), anomaly_fraction=0.25, image_size=32)
    supervision = build_supervision(config, splits=None)
    images = torch.rand(8, 3, 32, 32)
    batch = supervision(images.clone(), torch.zeros(8, 1, 32, 32), torch.Generator().manual_seed(1))
    assert batch.labels.tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    assert not batch.use_maps
    assert torch.equal(batch.images[2:], images[2:])
    changed = (batch.images[:2] != images[:2]).any(1, keepdim=True)
    assert torch.equal(changed, batch.maps[:2].bool() & changed)  # changes only inside the maps
    assert batch.maps[:2].sum() > 0 and batch.maps[2:].sum() == 0


def test_augment_moves_maps_with_images():
    images = torch.zeros(4, 1, 16, 16)
    images[:, :, 2:5, 3:7] = 1
    maps = images.clone()
    out_images, out_maps = Augment(flip="hv", shift=0.1, jitter=0.0)(images, maps, torch.Generator().manual_seed(3))
    assert torch.equal(out_images > 0.5, out_maps > 0.5)


def test_synthetic_masks_are_exact(tmp_path):
    root = generate(tmp_path, "brick", size=48, n_train=3, n_test_good=2, n_test_per_defect=2, seed=5)
    assert sorted(p.name for p in (root / "test").iterdir()) == sorted(["good", *DEFECTS])
    for defect in DEFECTS:
        for i in range(2):
            mask = np.asarray(Image.open(root / "ground_truth" / defect / f"{i:03d}_mask.png"))
            assert set(np.unique(mask)) == {0, 255}
            assert 0.002 < (mask > 0).mean() < 0.25
    # generation is reproducible and skipped when already complete
    before = (root / "test" / "blob" / "000.png").read_bytes()
    assert generate(tmp_path, "brick", size=48, n_train=3, n_test_good=2, n_test_per_defect=2, seed=5) == root
    assert (root / "test" / "blob" / "000.png").read_bytes() == before
