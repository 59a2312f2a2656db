from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fcdd.cli import build_parser, config_from_args
from fcdd.config import Config
from fcdd.data import DATASETS, DataError, load_data
from fcdd.presets import PRESETS


def img(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((10, 12, 3), value, np.uint8)).save(path)


def test_imagenet_folder_one_vs_rest(tmp_path):
    for split, n in (("train", 3), ("val", 2)):
        for cls in ("n01", "n02", "n03"):
            for i in range(n):
                img(tmp_path / split / cls / f"{i}.JPEG", 40 * int(cls[-1]))
    splits = load_data(Config(dataset="imagenet", data=str(tmp_path), category="n02", image_size=16))
    assert len(splits.train) == 3 and splits.train.channels == 3
    assert sorted(splits.test.labels.tolist()) == [0, 0, 1, 1, 1, 1]
    assert load_data(Config(dataset="imagenet", data=str(tmp_path), category="0", image_size=16)).name == "imagenet-n01"


def test_voc_layout_and_bad_split_file(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    for i in range(6):
        img(root / "JPEGImages" / f"{i:04d}.jpg", 30 * i)
    (main / "horse_train.txt").write_text("0000  1\n0001 -1\n0002  1\n")
    (main / "horse_val.txt").write_text("0003  1\n0004 -1\n0005  0\n")
    (main / "cat_train.txt").write_text("0000 -1\n")
    splits = load_data(Config(dataset="voc", data=str(tmp_path), category="horse", image_size=16))
    assert len(splits.train) == 2 and splits.test.labels.tolist() == [0, 1]
    (main / "horse_val.txt").write_text("0003 yes\n")
    with pytest.raises(DataError, match=r"horse_val\.txt:1: expected"):
        load_data(Config(dataset="voc", data=str(tmp_path), category="horse", image_size=16))


def test_fmnist_corrupted_has_masks(shared_data):
    splits = load_data(Config(dataset="fmnist_corrupted", data=str(shared_data("mnist")), category="3", image_size=28))
    anomalous = splits.test.labels == 1
    assert anomalous.sum() == (~anomalous).sum() or abs(int(anomalous.sum()) - int((~anomalous).sum())) == 1
    assert all(splits.test.maps[i].sum() > 0 for i in anomalous.nonzero().squeeze(1).tolist())
    assert splits.test.maps[~anomalous].sum() == 0


@pytest.mark.parametrize("name", PRESETS.names())
def test_every_preset_is_a_valid_config_for_a_registered_dataset(name):
    config = Config.from_preset(name, data="somewhere")
    assert config.dataset in DATASETS and config.preset == name


def test_preset_then_yaml_then_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("preset: cifar10\nepochs: 5\n")
    config = config_from_args(build_parser().parse_args(["train", "--config", str(path), "--lr", "0.2"]))
    assert (config.net, config.image_size, config.epochs, config.lr) == ("cnn32", 32, 5, 0.2)
