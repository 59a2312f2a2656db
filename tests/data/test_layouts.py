"""Every reader on small files the test writes, and clear errors for bad input."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from fcdd.config import Config
from fcdd.data import DataError, load_data
from fcdd.data.idx import read_idx
from fcdd.data.mvtec import MVTecLayout


def write_image(path, size=(20, 16), mode="RGB", value=128, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0], 3) if mode == "RGB" else (size[1], size[0]), value, np.uint8)
    if mode == "RGB":
        arr[..., 2] //= 3  # coloured, so colour detection keeps three channels
    Image.fromarray(arr, mode).save(path, format=fmt)
    return path


def make_mvtec(root, mask_size=(20, 16), nominal="good", mask_suffix="_mask"):
    write_image(root / "train" / nominal / "a.png")
    write_image(root / "train" / nominal / "b.jpg", mode="L", value=90)
    write_image(root / "test" / nominal / "c.bmp")
    write_image(root / "test" / "crack" / "d.tiff")
    mask = np.zeros((mask_size[1], mask_size[0]), np.uint8)
    mask[2:6, 3:9] = 255
    (root / "ground_truth" / "crack").mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(root / "ground_truth" / "crack" / f"d{mask_suffix}.png")
    return root


def test_mvtec_layout_reads_formats_labels_and_masks(tmp_path):
    root = make_mvtec(tmp_path / "cat")
    train, test = MVTecLayout(root).load(size=8)
    assert train.images.shape == (2, 3, 8, 8)
    good = test.kinds.index("good")
    crack = test.kinds.index("crack")
    assert test.labels[good] == 0 and test.labels[crack] == 1
    assert test.maps[good].sum() == 0
    assert 0 < test.maps[crack].float().mean() < 0.5
    assert set(test.maps.unique().tolist()) <= {0, 1}


def test_btad_naming_ok_ko(tmp_path):
    root = make_mvtec(tmp_path / "01", nominal="ok", mask_suffix="")
    splits = load_data(Config(dataset="btad", data=str(root), image_size=16))
    assert len(splits.train) == 2 and splits.test.labels.sum() == 1


def test_category_lookup_and_grey_detection(tmp_path):
    root = tmp_path / "all"
    make_mvtec(root / "tile")
    for p in (root / "tile").rglob("*"):
        if p.suffix in (".jpg", ".bmp", ".tiff") or (p.suffix == ".png" and "ground" not in str(p)):
            Image.open(p).convert("L").save(p)
    splits = load_data(Config(data=str(root), category="tile", image_size=16))
    assert splits.train.channels == 1
    with pytest.raises(DataError, match="several categories"):
        load_data(Config(data=str(root), image_size=16))
    with pytest.raises(DataError, match="nope"):
        load_data(Config(data=str(root), category="nope", image_size=16))


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="not found|no MVTec"):
        load_data(Config(data=str(tmp_path / "missing"), image_size=16))


def test_mask_without_image(tmp_path):
    root = make_mvtec(tmp_path / "cat")
    Image.fromarray(np.zeros((16, 20), np.uint8)).save(root / "ground_truth" / "crack" / "zz_mask.png")
    with pytest.raises(DataError, match=r"zz_mask\.png: mask without image"):
        MVTecLayout(root).load(8)


def test_corrupt_png_names_the_file(tmp_path):
    root = make_mvtec(tmp_path / "cat")
    bad = root / "train" / "good" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DataError, match=r"broken\.png: cannot read image"):
        MVTecLayout(root).load(8)


def test_wrong_mask_size(tmp_path):
    root = make_mvtec(tmp_path / "cat", mask_size=(10, 10))
    with pytest.raises(DataError, match=r"d_mask\.png: mask is 10x10 but its image d\.tiff is 20x16"):
        MVTecLayout(root).load(8)


def test_anomaly_without_mask(tmp_path):
    root = make_mvtec(tmp_path / "cat")
    write_image(root / "test" / "crack" / "e.png")
    with pytest.raises(DataError, match=r"e\.png: anomalous image has no mask"):
        MVTecLayout(root).load(8)


def test_custom_layout_both_forms(tmp_path):
    root = tmp_path / "custom"
    for split, kind, n in (("train", "normal", 3), ("train", "anomalous", 1), ("test", "normal", 2), ("test", "anomalous", 2)):
        for i in range(n):
            write_image(root / split / "screws" / kind / f"{i}.png")
    splits = load_data(Config(dataset="custom", data=str(root), category="screws", image_size=16))
    assert len(splits.train) == 3 and splits.test.labels.tolist() == [0, 0, 1, 1]
    assert splits.train_anomalies is not None and len(splits.train_anomalies) == 1

    ovr = tmp_path / "ovr"
    for split in ("train", "test"):
        for cls, n in (("cats", 3), ("dogs", 2)):
            for i in range(n):
                write_image(ovr / split / cls / f"{i}.png")
    splits = load_data(Config(dataset="custom", data=str(ovr), category="dogs", ovr=True, image_size=16))
    assert len(splits.train) == 2
    assert sorted(splits.test.labels.tolist()) == [0, 0, 1, 1, 1]
    assert {k for k, label in zip(splits.test.kinds, splits.test.labels.tolist(), strict=True) if label} == {"cats"}


def write_idx(path, array, gz=True):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader_and_one_vs_rest(tmp_path, gz):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    train_x, train_y = rng.integers(0, 255, (30, 28, 28)), np.arange(30) % 3
    test_x, test_y = rng.integers(0, 255, (12, 28, 28)), np.arange(12) % 3
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", train_x, gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", train_y, gz)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", test_x, gz)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", test_y, gz)
    assert np.array_equal(read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}"), train_x)
    splits = load_data(Config(dataset="fmnist", data=str(tmp_path), category="1", image_size=28))
    assert len(splits.train) == 10
    assert np.array_equal(splits.train.images[0, 0].numpy(), train_x[1])
    assert splits.test.labels.tolist() == [int(y != 1) for y in test_y]


def test_idx_reader_rejects_truncated_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((4, 5, 5)), gz=False)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match="header promises"):
        read_idx(path)


def test_cifar_batches(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, n in (("data_batch_1", 20), ("data_batch_2", 10), ("test_batch", 10)):
        batch = {b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), b"labels": list(np.arange(n) % 10)}
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle)
    splits = load_data(Config(dataset="cifar10", data=str(tmp_path), category="cat", image_size=32))
    assert len(splits.train) == 3 and splits.train.channels == 3
    assert splits.test.labels.sum() == 9
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="test_batch: not a CIFAR pickle batch"):
        load_data(Config(dataset="cifar10", data=str(tmp_path), category="cat", image_size=32))


def test_real_mnist_idx_files(shared_data):
    root = shared_data("mnist")
    splits = load_data(Config(dataset="mnist", data=str(root), category="7", image_size=28))
    assert len(splits.train) == 6265 and len(splits.test) == 10000
    assert int((splits.test.labels == 0).sum()) == 1028


def test_discover_categories_finds_mvtec_folders_at_any_depth(tmp_path):
    from fcdd.data.mvtec import discover_categories

    for name in ("sets/bottle", "sets/group/tile", "plain"):
        for part in ("train/good", "test/good"):
            (tmp_path / name / part).mkdir(parents=True)
    (tmp_path / "sets" / "notes").mkdir()
    (tmp_path / "mnist").mkdir()
    (tmp_path / "only_train" / "train").mkdir(parents=True)
    found = [p.relative_to(tmp_path).as_posix() for p in discover_categories(tmp_path, depth=3)]
    assert found == ["plain", "sets/bottle", "sets/group/tile"]
    assert discover_categories(tmp_path / "plain") == [tmp_path / "plain"]
    assert discover_categories(tmp_path, depth=1) == [tmp_path / "plain"]
