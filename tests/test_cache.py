"""The decoded-image cache (``--cache-dir``) and streamed outlier exposure: data larger than memory.

The acceptance test trains from a cache whose decoded images (20 000 at 128 px in colour,
983 MB) exceed the peak resident memory of the training process (measured 707-714 MB: about
370 MB is the interpreter with torch and fcdd's training modules imported, about 260 MB the
256-image float64 chunk of the normalisation statistics), and gets the same image AUROC as the
in-memory run of the same data (peak 2.6-3.1 GB: the decoded set, its stacking copy and the
rest). The other tests check reuse, invalidation, damaged and half-written caches, index views
and outlier folders of more than ``MAX_POOL`` files decoded per batch.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import fcdd.data.base as base
from fcdd.config import Config
from fcdd.data import load_data, prepare_splits
from fcdd.data.base import DataSplits, ImageSet, no_maps
from fcdd.data.cache import SUFFIX, Rows, cache_root, cached_images
from fcdd.data.noise import NOISE
from fcdd.data.noise.datasets import MAX_POOL

ROOT = Path(__file__).resolve().parents[1]


def write_ppm(path: Path, pixels: np.ndarray) -> None:
    """A binary PPM (P6): a text header and the raw RGB bytes, the fastest image file to write."""
    h, w, _ = pixels.shape
    path.write_bytes(f"P6\n{w} {h}\n255\n".encode() + np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())


def write_set(root: Path, n_train: int, size: int, n_test: int = 20, seed: int = 0) -> Path:
    """An MVTec-layout set: crops of one smooth texture as nominal images, the test's anomalies
    with a bright square (no ground truth, so image metrics only)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(60, 130, (size // 4, size // 4, 3)).astype(np.uint8)
    texture = np.repeat(np.repeat(coarse, 8, 0), 8, 1)  # (2 size, 2 size, 3): 8 px blocks

    def crops(folder: Path, count: int, square: bool) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        offsets = rng.integers(0, size, (count, 2))
        for i, (y, x) in enumerate(offsets):
            crop = texture[y : y + size, x : x + size]
            if square:
                crop = crop.copy()
                crop[size // 4 : size // 2, size // 4 : size // 2] = 250
            write_ppm(folder / f"{i:05d}.ppm", crop)

    crops(root / "train" / "good", n_train, False)
    crops(root / "test" / "good", n_test, False)
    crops(root / "test" / "square", n_test, True)
    return root


@pytest.fixture
def decodes(monkeypatch) -> list[Path]:
    """Every image file decoded through ``read_image`` (the cache writer and ``load_images``)."""
    seen: list[Path] = []
    real = base.read_image

    def counted(path, channels, size):
        seen.append(Path(path))
        return real(path, channels, size)

    monkeypatch.setattr(base, "read_image", counted)
    return seen


def small_config(data: Path, cache: Path | None, **changes) -> Config:
    return Config(dataset="mvtec", data=str(data), image_size=16, channels=3, cache_dir=str(cache) if cache else None,
                  holdout=0.25, **changes)


# --- the cache itself ----------------------------------------------------------------------------


def test_cached_set_equals_the_in_memory_set_and_is_reused(tmp_path, decodes):
    data = write_set(tmp_path / "set", 24, 16, n_test=4)
    memory = load_data(small_config(data, None))
    n = len(memory.train) + len(memory.test)
    decodes.clear()
    first = load_data(small_config(data, tmp_path / "cache"))
    assert len(decodes) == n
    files = sorted((tmp_path / "cache").glob(f"*{SUFFIX}"))
    assert len(files) == 2  # train and test: one file each
    stamps = [f.stat().st_mtime_ns for f in files]
    decodes.clear()
    second = load_data(small_config(data, tmp_path / "cache"))
    assert decodes == []  # read back, nothing decoded
    assert [f.stat().st_mtime_ns for f in files] == stamps  # nor written again
    for loaded in (first, second):
        assert isinstance(loaded.train.images, Rows)
        for part in ("train", "test"):
            assert torch.equal(getattr(loaded, part).images[:], getattr(memory, part).images)
            assert getattr(loaded, part).paths == getattr(memory, part).paths


def test_hold_out_and_subsets_of_a_cached_set_are_views(tmp_path):
    data = write_set(tmp_path / "set", 24, 16, n_test=4)
    memory = prepare_splits(small_config(data, None))
    cached = prepare_splits(small_config(data, tmp_path / "cache"))
    train, holdout = cached.train.images, cached.holdout.images
    assert isinstance(train, Rows) and isinstance(holdout, Rows) and train.same_file(holdout)
    assert len(train) + len(holdout) == 24
    assert torch.equal(train[:], memory.train.images) and torch.equal(holdout[:], memory.holdout.images)
    assert cached.train.maps.stride(0) == 0  # blank maps stay one expanded row
    pick = torch.tensor([5, 0, 17, 5, 3])
    assert torch.equal(train[pick], memory.train.images[pick])  # unsorted, repeated: read sorted, given back in order
    assert torch.equal(train[3], memory.train.images[3]) and torch.equal(train[-2:], memory.train.images[-2:])
    assert torch.equal(train[[1, 2]], memory.train.images[[1, 2]])
    assert torch.equal(train[2, 0], memory.train.images[2, 0]) and torch.equal(train[1:3, 1:], memory.train.images[1:3, 1:])
    joined = ImageSet.concat([cached.train.subset([1, 2]), cached.holdout])
    assert isinstance(joined.images, Rows) and torch.equal(joined.images[:2], memory.train.images[[1, 2]])
    assert to_float_matches(cached.holdout.images, memory.holdout.images)
    copied = pickle.loads(pickle.dumps(cached.holdout))  # another process maps the same file again
    assert isinstance(copied.images, Rows) and torch.equal(copied.images[:], memory.holdout.images)


def to_float_matches(rows: Rows, tensor: torch.Tensor) -> bool:
    """``float()`` (what ``transforms.to_float`` and calibration call) reads every row of a view."""
    return torch.equal(rows.float(), tensor.float()) and rows.shape == tensor.shape and rows.dtype == tensor.dtype


def test_a_changed_file_makes_a_new_cache(tmp_path, decodes):
    data = write_set(tmp_path / "set", 10, 16, n_test=2)
    load_data(small_config(data, tmp_path / "cache"))
    changed = data / "train" / "good" / "00003.ppm"
    write_ppm(changed, np.full((16, 16, 3), 200, np.uint8))
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime even on coarse clocks
    decodes.clear()
    again = load_data(small_config(data, tmp_path / "cache"))
    assert len(decodes) == 10  # the training set again, the unchanged test set from its cache
    assert int(again.train.images[3].float().mean()) == 200
    assert len(list((tmp_path / "cache").glob(f"*{SUFFIX}"))) == 3


def test_a_truncated_cache_is_rebuilt_with_a_note(tmp_path, decodes, caplog):
    data = write_set(tmp_path / "set", 10, 16, n_test=2)
    memory = load_data(small_config(data, None))
    load_data(small_config(data, tmp_path / "cache"))
    biggest = max((tmp_path / "cache").glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_size)
    with biggest.open("r+b") as handle:
        handle.truncate(biggest.stat().st_size - 100)
    decodes.clear()
    with caplog.at_level(logging.WARNING, logger="fcdd"):
        again = load_data(small_config(data, tmp_path / "cache"))
    assert "truncated" in caplog.text and biggest.name in caplog.text
    assert len(decodes) == 10
    assert torch.equal(again.train.images[:], memory.train.images)


def test_a_failed_write_leaves_no_cache(tmp_path, monkeypatch):
    data = write_set(tmp_path / "set", 10, 16, n_test=2)
    real, calls = base.read_image, []

    def failing(path, channels, size):
        calls.append(path)
        if len(calls) == 6:
            raise base.DataError(f"{path}: cannot read image (test)")
        return real(path, channels, size)

    monkeypatch.setattr(base, "read_image", failing)
    with pytest.raises(base.DataError, match="test"):
        load_data(small_config(data, tmp_path / "cache"))
    assert list((tmp_path / "cache").iterdir()) == []  # neither a cache file nor its temp


KILLED_WRITER = """
import sys, time
from pathlib import Path
import fcdd.data.base as base
real = base.read_image
def slow(path, channels, size):
    time.sleep(0.05)
    return real(path, channels, size)
base.read_image = slow
files = sorted(Path(sys.argv[1]).glob("*.ppm"))
base.load_images(files, 3, 16, sys.argv[2])
"""


def test_a_killed_writer_leaves_only_a_temp_that_the_next_writer_removes(tmp_path):
    data = write_set(tmp_path / "set", 200, 16, n_test=1)
    folder, cache = data / "train" / "good", tmp_path / "cache"
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(folder), str(cache)], cwd=ROOT)
    deadline = time.time() + 120
    while not (cache.is_dir() and any(p.stat().st_size > 4096 for p in cache.iterdir())):
        assert child.poll() is None and time.time() < deadline, "the writer ended before it was killed"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    left = list(cache.iterdir())
    assert left and all(p.name.startswith(".") and p.name.endswith(".tmp") for p in left)  # no complete-looking file
    files = sorted(folder.glob("*.ppm"))
    rows = cached_images(files, 3, 16, cache, lambda p: base.read_image(p, 3, 16))
    assert torch.equal(rows[:], base.load_images(files, 3, 16))
    assert [p.suffix for p in cache.iterdir()] == [SUFFIX]  # the stale temp is gone


def test_cache_root_auto_is_the_users_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_root("auto") == tmp_path / "fcdd"
    assert cache_root(None) is None and cache_root("") is None
    assert cache_root(str(tmp_path / "c")) == tmp_path / "c"


def test_blank_maps_subset_and_concat_stay_blank():
    maps = no_maps(10, 8)
    part = ImageSet(torch.zeros(10, 1, 8, 8, dtype=torch.uint8), torch.zeros(10, dtype=torch.long), maps).subset([1, 2, 3])
    assert part.maps.shape == (3, 1, 8, 8) and part.maps.stride(0) == 0
    joined = ImageSet.concat([part, part])
    assert joined.maps.shape == (6, 1, 8, 8) and joined.maps.stride(0) == 0 and not joined.has_maps


# --- streamed outlier exposure --------------------------------------------------------------------


def colour_splits() -> DataSplits:
    """Splits whose training set says: colour images (all an outlier source asks of them)."""
    train = ImageSet(torch.zeros(2, 3, 16, 16, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), no_maps(2, 16))
    return DataSplits(train, train.subset([]), "outlier-test")


def test_outlier_folders_beyond_the_pool_are_streamed(tmp_path, decodes):
    noise = tmp_path / "outliers"
    for sub in range(3):
        (noise / f"part{sub}").mkdir(parents=True)
    rng = np.random.default_rng(1)
    count = MAX_POOL + 200
    for i in range(count):
        write_ppm(noise / f"part{i % 3}" / f"{i:05d}.ppm", rng.integers(0, 256, (4, 4, 3)))
    config = Config(image_size=16, noise_mode="folder", noise_dir=str(noise), supervise_mode="noise")
    splits = colour_splits()
    source = NOISE.get("folder")(config, splits)
    assert len(source.files) == count > MAX_POOL and source.pool is None
    assert decodes == []  # nothing decoded up front
    nominal = torch.zeros(16, 3, 16, 16)
    generator, replay = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    batches = []
    for _ in range(5):
        before = len(decodes)
        batches.append(source(nominal, generator))
        picks = torch.randint(count, (16,), generator=replay)  # what the source drew
        assert len(decodes) - before == len(picks.unique())  # each distinct file drawn decoded once, no other
    assert len(decodes) <= 5 * 16 < count
    again = NOISE.get("folder")(config, splits)
    generator = torch.Generator().manual_seed(3)
    for content, where in batches:  # the same seed draws and decodes the same files
        content_again, where_again = again(nominal, generator)
        assert torch.equal(content, content_again) and torch.equal(where, where_again) and bool((where == 1).all())
    picks = torch.randint(count, (16,), generator=torch.Generator().manual_seed(3))
    expected = base.load_images([source.files[i] for i in picks.tolist()], 3, 16).float().div(255)
    assert torch.equal(batches[0][0], expected)


def test_small_outlier_folders_stay_a_decoded_pool(tmp_path, decodes):
    noise = tmp_path / "outliers"
    noise.mkdir()
    for i in range(12):
        write_ppm(noise / f"{i}.ppm", np.full((4, 4, 3), i * 20, np.uint8))
    config = Config(image_size=16, noise_mode="folder", noise_dir=str(noise), supervise_mode="noise", oe_limit=5)
    splits = colour_splits()
    source = NOISE.get("folder")(config, splits)
    assert source.pool is not None and len(source.pool) == 5 and len(decodes) == 5
    source(torch.zeros(4, 3, 16, 16), torch.Generator().manual_seed(0))
    assert len(decodes) == 5  # drawn from the pool, not decoded again


# --- acceptance: training from a cache larger than the process's memory ----------------------------

TRAIN_CHILD = """
import json, sys
from pathlib import Path
from torch import nn
import fcdd
import fcdd.data.base as base
from fcdd.config import Config
from fcdd.models import NETS
from fcdd.models.base import FCDDNet


class PoolNet(FCDDNet):
    # an 8x8 average pooling and two 1x1 convolutions: training costs little per pixel, so a
    # gigabyte of images passes through the whole pipeline in seconds
    def __init__(self, in_channels=3, input_size=32, width=1.0, pretrained=None):
        super().__init__(in_channels, input_size)
        self.features = nn.Sequential(nn.AvgPool2d(8), nn.Conv2d(in_channels, 4, 1), nn.ReLU())
        self.head = nn.Conv2d(4, 1, 1)


def status(key):
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key + ":"))
    return int(line.split()[1]) * 1024


NETS.register("cache_test_pool")(PoolNet)
decodes = [0]
real = base.read_image
def counted(*args):
    decodes[0] += 1
    return real(*args)
base.read_image = counted
imported = status("VmRSS")
run = fcdd.train(Config(**json.loads(sys.argv[1])))
print(json.dumps({"auroc": run.metrics["image_auroc"], "peak": status("VmHWM"), "imported": imported, "decodes": decodes[0],
                  "train_seconds": run.metrics["train_seconds"]}))
"""

N_TRAIN, SIZE = 20_000, 128


def train_child(options: dict) -> dict:
    """``fcdd.train`` in a fresh interpreter; its peak resident memory (``VmHWM``) is its own."""
    done = subprocess.run([sys.executable, "-c", TRAIN_CHILD, json.dumps(options)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "TQDM_DISABLE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="peak memory is read from /proc")
def test_training_from_a_cache_larger_than_the_process_memory(tmp_path):
    started = time.perf_counter()
    data = write_set(tmp_path / "set", N_TRAIN, SIZE)
    generated = time.perf_counter() - started
    assert generated < 30, f"generating the set took {generated:.1f} s"
    decoded = N_TRAIN * 3 * SIZE * SIZE  # 983 MB: what the training images need decoded in memory
    options = dict(
        dataset="mvtec", data=str(data), image_size=SIZE, channels=3, net="cache_test_pool", pretrained="none", epochs=1,
        batch_size=64, eval_batch_size=20, report=False, device="cpu", seed=0,
        # the hold-out is read whole by calibration (float32, with copies): keep it to 20 images here
        holdout=0.001,
        # outliers from a small folder instead of confetti, and no augmentation: cheap per pixel
        supervise_mode="noise", noise_mode="folder", noise_dir=str(tmp_path / "outliers"),
        augment_flip="none", augment_shift=0, augment_jitter=0,
    )
    (tmp_path / "outliers").mkdir()
    for i in range(8):
        write_ppm(tmp_path / "outliers" / f"{i}.ppm", np.random.default_rng(i).integers(0, 256, (32, 32, 3)))
    try:
        cached = train_child({**options, "out": str(tmp_path / "cached"), "cache_dir": str(tmp_path / "cache")})
        memory = train_child({**options, "out": str(tmp_path / "memory")})
    finally:  # 2 GB of files and cache: not left for pytest to keep
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(tmp_path / "cache", ignore_errors=True)
    report = (f"decoded training set {decoded / 1e6:.0f} MB; peak resident memory from the cache {cached['peak'] / 1e6:.0f} MB "
              f"(after imports {cached['imported'] / 1e6:.0f} MB), in memory {memory['peak'] / 1e6:.0f} MB; "
              f"set generated in {generated:.1f} s, trained {cached['train_seconds']:.1f} s / {memory['train_seconds']:.1f} s")
    print(report)
    assert cached["decodes"] == memory["decodes"] == N_TRAIN + 40 + 8  # train, test, outlier pool: each decoded once
    assert cached["peak"] < decoded, report
    assert memory["peak"] > decoded, report  # the measurement sees a set held in memory
    assert cached["auroc"] == memory["auroc"], report  # the same bytes, the same seed: the same run
