"""Inputs that used to be accepted silently and give wrong results, one test each: they now fail
with an error naming the file, folder or option, or are handled so the numbers stay right."""

from __future__ import annotations

import dataclasses
import logging
import struct
import typing
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fcdd
from fcdd.cli import main
from fcdd.config import MIN_IMAGE_SIZE, Config, base_type, field_types
from fcdd.data import DataError, load_data
from fcdd.data.base import decide_channels, load_images, load_mask, read_image
from fcdd.data.mvtec import MVTecLayout
from fcdd.methods import build_method
from fcdd.models.registry import NETS, build_net
from fcdd.presets import PRESETS
from fcdd.runner import check_same_experiment
from fcdd.training.setup import effective_config
from fcdd.training.trainer import make_learner

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)
    return path


def grey(value: int = 100, size: tuple[int, int] = (12, 10)) -> np.ndarray:
    return np.full((size[1], size[0]), value, np.uint8)


def colour(size: tuple[int, int] = (12, 10)) -> np.ndarray:
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[..., 0] = 200  # clearly red: not grey content
    return arr


def small_mvtec(root: Path, defects: tuple[str, ...] = ("crack",)) -> Path:
    """train/good 2, test/good 1, one image per defect with its mask."""
    for name in ("a", "b"):
        save(root / "train" / "good" / f"{name}.png", grey())
    save(root / "test" / "good" / "c.png", grey())
    for defect in defects:
        save(root / "test" / defect / "d.png", grey(200))
        mask = grey(0)
        mask[2:5, 3:7] = 255
        save(root / "ground_truth" / defect / "d_mask.png", mask)
    return root


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid PNG header promising width x height pixels, with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


# --- masks -------------------------------------------------------------------------------------


def test_defect_folder_without_ground_truth_folder_is_an_error_naming_it(tmp_path):
    """Its images would enter the pixel metrics as all-nominal pixels."""
    root = small_mvtec(tmp_path / "cat", defects=("crack", "scratch"))
    for mask in (root / "ground_truth" / "scratch").iterdir():
        mask.unlink()
    (root / "ground_truth" / "scratch").rmdir()
    with pytest.raises(DataError, match=r"ground_truth/scratch: folder not found.*scratch have no masks"):
        MVTecLayout(root).load(16)


def test_a_set_without_any_ground_truth_has_no_pixel_metrics(tmp_path):
    """Image labels only: allowed, and no pixel metric is computed from empty masks."""
    root = small_mvtec(tmp_path / "cat")
    for mask in (root / "ground_truth" / "crack").iterdir():
        mask.unlink()
    (root / "ground_truth" / "crack").rmdir()
    (root / "ground_truth").rmdir()
    _, test = MVTecLayout(root).load(16)
    assert sorted(test.labels.tolist()) == [0, 1] and not test.has_maps


def test_defect_image_without_its_mask_file_is_an_error_naming_it(tmp_path):
    root = small_mvtec(tmp_path / "cat")
    save(root / "test" / "crack" / "e.png", grey(200))
    with pytest.raises(DataError, match=r"crack/e\.png: anomalous image has no mask"):
        MVTecLayout(root).load(16)


# --- decoding ----------------------------------------------------------------------------------


def test_16_bit_images_are_scaled_by_their_bit_depth_not_stretched(tmp_path):
    """A dark and a bright 16-bit image stay dark and bright (per-image min-max made both span 0..255)."""
    dark = np.full((10, 12), 1000, np.uint16)
    dark[0, 0] = 2000
    bright = np.full((10, 12), 60000, np.uint16)
    bright[0, 0] = 65535
    paths = [save(tmp_path / "dark.png", dark), save(tmp_path / "bright.png", bright)]
    assert Image.open(paths[0]).mode == "I;16"
    images = load_images(paths, 1, 12)
    assert int(images[0, 0, 5, 5]) == round(1000 * 255 / 65535) and int(images[1, 0, 5, 5]) == round(60000 * 255 / 65535)
    assert images[0].max() < 10 < 200 < images[1].min()


def test_16_bit_masks_of_0_and_1_still_mark_the_defect(tmp_path):
    """Scaled by the bit depth, 0/1 would round to an empty mask."""
    mask = np.zeros((12, 12), np.uint16)
    mask[2:6, 3:9] = 1
    image = save(tmp_path / "d.png", grey(size=(12, 12)))
    out = load_mask(save(tmp_path / "d_mask.png", mask), image, 12)
    assert int(out.sum()) == 4 * 6


def test_colour_images_after_16_grey_ones_keep_the_set_colour(tmp_path, caplog):
    """The channel decision sampled the first 16 files; every file's mode is read now, and logged."""
    paths = [save(tmp_path / f"{i:02d}.png", grey()) for i in range(16)]
    paths += [save(tmp_path / f"{i:02d}.png", colour()) for i in range(16, 20)]
    with caplog.at_level(logging.INFO, logger="fcdd"):
        assert decide_channels(paths, 0) == 3
        assert decide_channels(paths[:16], 0) == 1
    assert "channels: 3 (colour), 4 of 20 images have colour modes" in caplog.text
    assert "channels: 1 (grey), all 16 images have grey modes" in caplog.text


def test_unreadable_defect_image_with_a_mask_is_an_error_naming_it(tmp_path):
    root = small_mvtec(tmp_path / "cat")
    (root / "test" / "crack" / "d.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 8)
    with pytest.raises(DataError, match=r"crack/d\.png: cannot read image"):
        MVTecLayout(root).load(16)


def test_decompression_bomb_is_an_error_naming_the_file(tmp_path, capsys):
    root = small_mvtec(tmp_path / "cat")
    bomb = root / "train" / "good" / "bomb.png"
    bomb.write_bytes(bomb_png())
    with pytest.raises(DataError, match=r"bomb\.png: refused, too many pixels"):
        read_image(bomb, 1, 16)
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--image-size", "16", "--net", "cnn32",
                 "--pretrained", "none", "--epochs", "1", "--no-report", "--device", "cpu"]) == 2
    assert f"fcdd train: error: {bomb}: refused, too many pixels" in capsys.readouterr().err


# --- runs --------------------------------------------------------------------------------------


def test_resume_with_fewer_epochs_than_the_checkpoint_is_refused(tiny_config):
    """``--resume --epochs 5`` on a 12-epoch checkpoint would report 5 epochs for a model trained 12."""
    out = Path(tiny_config.out)
    out.mkdir(parents=True)
    config = effective_config(tiny_config.replace(epochs=12))
    trainer = make_learner(config, build_method(config, 3), None, torch.device("cpu"), out)
    trainer.epoch = 12  # as after 12 epochs: only the count matters here
    trainer.save_checkpoint()
    with pytest.raises(ValueError, match=r"checkpoint holds 12 finished epoch\(s\), more than the 5 asked for; pass --epochs 12"):
        fcdd.train(tiny_config.replace(epochs=5, resume=True))


def test_run_restarted_with_other_options_is_refused_and_keeps_its_config(tmp_path, capsys):
    """Finished classes would be kept beside new ones trained otherwise, in one table."""
    out = tmp_path / "exp"
    first = ["run", "--data", str(tmp_path / "data"), "--classes", "grass", "--out", str(out), "--epochs", "3"]
    stored = Config(data=str(tmp_path / "data"), epochs=3, out=str(out))
    out.mkdir()
    stored.to_yaml(out / "config.yaml")  # what the first `fcdd run` wrote
    before = (out / "config.yaml").read_text()
    assert main([*first[:-1], "5", "--lr", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "holds an experiment with other options (epochs: 3 there, 5 now; lr: 0.001 there, 0.01 now)" in err
    assert (out / "config.yaml").read_text() == before
    # options that change no number of the table may differ
    check_same_experiment(stored.replace(resume=True, device="cpu", threads=1, report=False, eval_batch_size=3), out)


# --- options -----------------------------------------------------------------------------------

BAD_OPTIONS = [
    ("holdout", 1.5), ("holdout", -1), ("width", 0), ("gauss_std", -5), ("augment_jitter", -3), ("oe_limit", -1),
    ("image_size", 1), ("image_size", MIN_IMAGE_SIZE - 1), ("epochs", -1), ("batch_size", 1), ("lr", 0), ("lr", float("nan")),
    ("momentum", 1), ("coreset", 0), ("anomaly_fraction", 1.01), ("milestones", [10, 0]), ("feature_layers", [-1]),
    ("seed", -1), ("pixel_fpr", 1), ("target_fpr", -0.1), ("overlay_alpha", 2), ("threads", -2), ("blur_heatmaps", -1),
    ("neighbourhood", 0), ("epochs", True), ("epochs", 2.5), ("dataset", None), ("data", ["a", "b"]), ("channels", 4),
]


@pytest.mark.parametrize(("name", "value"), BAD_OPTIONS, ids=[f"{n}={v!r}" for n, v in BAD_OPTIONS])
def test_out_of_range_or_mistyped_option_is_refused_by_name(name, value):
    for build in (lambda: Config(**{name: value}), lambda: Config.from_dict({name: value})):
        with pytest.raises(ValueError, match=rf"\b{name}\b"):
            build()


def test_out_of_range_flag_exits_2_naming_it(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path), "--holdout", "1.5"]) == 2
    assert "fcdd train: error: holdout must lie in [0, 1), got 1.5" in capsys.readouterr().err


def test_every_numeric_option_declares_its_bounds():
    for f in dataclasses.fields(Config):
        kind, _ = base_type(field_types()[f.name])
        if kind is list:
            kind = (typing.get_args(field_types()[f.name]) or (str,))[0]
        if kind in (int, float):
            assert f.metadata.get("bounds") is not None, f.name


@pytest.mark.parametrize("name", PRESETS.names())
def test_every_preset_builds_a_config(name):
    assert Config.from_preset(name).preset == name


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_file_builds_a_config(path):
    assert isinstance(Config.from_yaml(path), Config)


@pytest.mark.parametrize("name", NETS.names())
def test_every_net_runs_at_the_smallest_allowed_image_size(name):
    """``MIN_IMAGE_SIZE`` is what the nets can take: an allowed size never fails inside a net."""
    net = build_net(name, 3, MIN_IMAGE_SIZE, pretrained="none", width=0.25).eval()
    with torch.no_grad():
        out = net(torch.zeros(2, 3, MIN_IMAGE_SIZE, MIN_IMAGE_SIZE))
    assert out.shape[0] == 2 and torch.isfinite(out).all()


def test_load_data_checks_ground_truth_through_the_registry(tmp_path):
    """The check sits in the layout, so ``btad`` (same reader) has it too."""
    root = small_mvtec(tmp_path / "01", defects=("ko",))
    (root / "test" / "ko2").mkdir()
    save(root / "test" / "ko2" / "x.png", grey(200))
    with pytest.raises(DataError, match="ko2 have no masks"):
        load_data(Config(dataset="btad", data=str(root), image_size=16))
