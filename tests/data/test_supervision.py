"""Each supervision mode and noise source on small generated data: labels, maps, counts."""

from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from fcdd.config import Config
from fcdd.data import prepare_splits
from fcdd.data.supervision import build_supervision


def batch(n=8, c=3, s=32):
    return torch.full((n, c, s, s), 0.5), torch.zeros(n, 1, s, s)


def run(config, splits=None, n=8, c=3, seed=0):
    images, maps = batch(n, c, config.image_size)
    return build_supervision(config, splits)(images, maps, torch.Generator().manual_seed(seed))


def test_unsupervised_has_no_anomalies():
    out = run(Config(supervise_mode="unsupervised", image_size=32))
    assert out.labels.sum() == 0 and torch.all(out.images == 0.5)


@pytest.mark.parametrize("mode,use_maps", [("malformed_normal", False), ("malformed_normal_gt", True)])
@pytest.mark.parametrize("noise", ["gaussian", "uniform"])
def test_malformed_normal_with_full_frame_noise_pastes_a_patch(mode, use_maps, noise):
    out = run(Config(supervise_mode=mode, noise_mode=noise, image_size=32, anomaly_fraction=0.5))
    assert out.labels.tolist() == [1] * 4 + [0] * 4 and out.use_maps is use_maps
    for i in range(4):
        area = out.maps[i].mean().item()
        assert 0.06 <= area <= 0.26  # a quarter to a half of each side
        outside = out.maps[i].expand(3, -1, -1) == 0
        assert torch.all(out.images[i][outside] == 0.5)
        assert out.images[i][~outside].std() > 0.05


@pytest.mark.parametrize("noise", ["gaussian", "uniform", "confetti"])
def test_noise_mode_makes_noise_images(noise):
    out = run(Config(supervise_mode="noise", noise_mode=noise, image_size=32, anomaly_fraction=0.25))
    assert out.labels.tolist() == [1, 1] + [0] * 6
    assert torch.all(out.images[2:] == 0.5)
    assert (out.images[:2] != 0.5).float().mean() > (0.01 if noise == "confetti" else 0.9)
    assert 0.0 <= out.images.min() and out.images.max() <= 1.0


def write_folder(root, n, size=12):
    rng = np.random.default_rng(0)
    for i in range(n):
        (root / f"c{i % 3}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / f"c{i % 3}" / f"{i}.png")


@pytest.mark.parametrize("mode", ["folder", "imagenet22k"])
def test_folder_outliers_respect_oe_limit(tmp_path, mode):
    write_folder(tmp_path / "oe", 9)
    config = Config(supervise_mode="noise", noise_mode=mode, noise_dir=str(tmp_path / "oe"), oe_limit=2, image_size=16, anomaly_fraction=1.0)
    supervision = build_supervision(config, None)
    assert len(supervision.source.pool) == 2
    seen = set()
    for seed in range(10):
        out = supervision(*batch(8, 3, 16), torch.Generator().manual_seed(seed))
        assert out.labels.sum() == 8
        seen |= {tuple(img.flatten()[:20].tolist()) for img in out.images}
    assert len(seen) == 2


def test_emnist_and_cifar100_outliers(tmp_path):
    rng = np.random.default_rng(0)
    em = tmp_path / "emnist"
    em.mkdir()
    for kind, arr in (("images", rng.integers(0, 255, (20, 28, 28))), ("labels", np.arange(20) % 5)):
        header = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
        (em / f"emnist-letters-train-{kind}-idx{arr.ndim}-ubyte").write_bytes(header + arr.astype(np.uint8).tobytes())
    out = run(Config(supervise_mode="noise", noise_mode="emnist", noise_dir=str(em), oe_limit=5, image_size=28), c=1)
    assert out.labels.sum() == 4 and out.images.shape == (8, 1, 28, 28)
    assert len(build_supervision(Config(supervise_mode="noise", noise_mode="emnist", noise_dir=str(em), oe_limit=5, image_size=28), None).source.pool) == 5

    cf = tmp_path / "cifar-100-python"
    cf.mkdir()
    with open(cf / "train", "wb") as handle:
        pickle.dump({b"data": rng.integers(0, 255, (30, 3072), dtype=np.uint8), b"fine_labels": list(range(30))}, handle)
    config = Config(supervise_mode="noise", noise_mode="cifar100", noise_dir=str(tmp_path), oe_limit=7, image_size=32)
    assert len(build_supervision(config, None).source.pool) == 7
    assert run(config).labels.sum() == 4


def test_missing_noise_dir_is_clear():
    with pytest.raises(ValueError, match="needs --noise-dir"):
        build_supervision(Config(supervise_mode="noise", noise_mode="folder", image_size=16), None)


def test_mvtec_gt_moves_defects_out_of_test_and_trains_with_maps(synthetic_root):
    config = Config(data=str(synthetic_root), image_size=32, supervise_mode="noise", noise_mode="mvtec_gt", oe_limit=1, holdout=0.0)
    full = prepare_splits(config.replace(supervise_mode="malformed_normal", noise_mode="confetti"))
    splits = prepare_splits(config)
    assert len(splits.train_anomalies) == 4  # one per defect type
    assert len(splits.test) == len(full.test) - 4
    assert not set(splits.train_anomalies.paths) & set(splits.test.paths)
    assert sorted(splits.train_anomalies.kinds) == ["blob", "cut", "scratch", "stain"]
    assert "moved from test to training" in splits.notes[0]
    assert prepare_splits(config, splits) is splits and len(splits.test) == len(full.test) - 4  # idempotent
    out = build_supervision(config, splits)(*batch(8, 3, 32), torch.Generator().manual_seed(0))
    assert out.use_maps and out.labels.tolist() == [1] * 4 + [0] * 4
    assert all(out.maps[i].sum() > 0 for i in range(4)) and out.maps[4:].sum() == 0


def test_other_mode_uses_real_training_anomalies(tmp_path):
    root = tmp_path / "custom"
    for split, kind, n in (("train", "normal", 4), ("train", "anomalous", 3), ("test", "normal", 2), ("test", "anomalous", 2)):
        for i in range(n):
            (root / split / "a" / kind).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8, 3), 255 if kind == "anomalous" else 0, np.uint8)).save(root / split / "a" / kind / f"{i}.png")
    config = Config(dataset="custom", data=str(root), category="a", image_size=16, supervise_mode="other", oe_limit=2, holdout=0.0)
    splits = prepare_splits(config)
    supervision = build_supervision(config, splits)
    assert len(supervision.pool) == 2
    out = supervision(*batch(4, 3, 16), torch.Generator().manual_seed(0))
    assert out.labels.tolist() == [1, 1, 0, 0]
    assert torch.all(out.images[:2] == 1.0)


def test_training_leaves_the_callers_splits_as_they_were(synthetic_root, tmp_path):
    """``fcdd.train(config, splits)`` prepares its own copy: hold-out and real defects are
    taken from new splits, so the same splits can feed another run."""
    from fcdd.data import load_data
    from fcdd.training import execute

    config = Config(dataset="mvtec", data=str(synthetic_root), image_size=32, net="cnn32", width=0.25, pretrained="none",
                    epochs=1, batch_size=8, holdout=0.2, supervise_mode="noise", noise_mode="mvtec_gt", device="cpu")
    splits = load_data(config)
    sizes = (len(splits.train), len(splits.test), list(splits.test.paths), list(splits.notes))
    run = execute(config, splits)
    assert (len(splits.train), len(splits.test), list(splits.test.paths), list(splits.notes)) == sizes
    assert splits.holdout is None and splits.train_anomalies is None and not splits.prepared
    assert len(run.splits.test) < len(splits.test) and run.splits.holdout is not None
