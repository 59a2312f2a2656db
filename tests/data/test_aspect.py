"""``--aspect data``: tall or wide parts keep their aspect from data loading to a served prediction."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from PIL import Image

import fcdd
from fcdd.config import Config
from fcdd.data import prepare_splits
from fcdd.data.shape import SIDE_MULTIPLE, as_shape, data_shape, shape_for_ratio
from fcdd.evaluate_run import evaluate_run
from fcdd.evaluation import evaluate
from fcdd.export import metadata
from fcdd.rundir import method_from_snapshot, read_snapshot


@pytest.mark.parametrize(("ratio", "expected"), [(1.0, (224, 224)), (2.52, (576, 224)), (1 / 2.52, (224, 576)),
                                                 (1.332, (288, 224)), (1.05, (224, 224)), (20.0, (4096, 224))])
def test_shape_keeps_the_ratio_with_the_short_side_fixed(ratio, expected):
    height, width = shape_for_ratio(224, ratio)
    assert (height, width) == expected
    assert max(height, width) % SIDE_MULTIPLE == 0


def test_data_shape_is_the_median_ratio_of_width_height_sizes():
    # (width, height): two tall images and one square outlier; the median is the tall one
    assert data_shape([(100, 250), (120, 300), (200, 200)], 64) == (160, 64)
    assert data_shape([], 64) == (64, 64)
    assert as_shape(32) == (32, 32) and as_shape((64, 32)) == (64, 32)


@pytest.fixture(scope="module")
def tall_root(synthetic_root, tmp_path_factory) -> Path:
    """The synthetic set stretched to twice its height (masks nearest)."""
    root = tmp_path_factory.mktemp("tall") / "gravel"
    for path in synthetic_root.rglob("*.png"):
        target = root / path.relative_to(synthetic_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        image = Image.open(path)
        mask = "ground_truth" in path.parts
        image.resize((image.width, 2 * image.height), Image.NEAREST if mask else Image.BILINEAR).save(target)
    return root


def test_images_and_masks_load_at_the_datas_aspect(tall_root, make_tiny_config, tmp_path):
    config = make_tiny_config(tall_root, tmp_path / "run", aspect="data")
    splits = prepare_splits(config)
    assert tuple(splits.train.images.shape[-2:]) == (64, 32)
    assert tuple(splits.test.images.shape[-2:]) == (64, 32) and tuple(splits.test.maps.shape[-2:]) == (64, 32)
    assert splits.test.maps[splits.test.labels == 1].sum() > 0  # masks resized with their images
    square = prepare_splits(config.replace(aspect="square"))
    assert tuple(square.test.images.shape[-2:]) == (32, 32)


def test_the_cache_stores_a_non_square_shape(tall_root, make_tiny_config, tmp_path):
    config = make_tiny_config(tall_root, tmp_path / "run", aspect="data")
    memory = prepare_splits(config)
    cached = prepare_splits(config.replace(cache_dir=str(tmp_path / "cache")))
    again = prepare_splits(config.replace(cache_dir=str(tmp_path / "cache")))
    assert torch.equal(cached.train.images[:], memory.train.images[:])
    assert torch.equal(again.test.images[:], memory.test.images[:])
    assert tuple(pickle.loads(pickle.dumps(again.train.images)).shape) == tuple(memory.train.images.shape)


def test_a_run_trained_tall_predicts_tall(tall_root, make_tiny_config, tmp_path):
    config = make_tiny_config(tall_root, tmp_path / "run", aspect="data")
    run = fcdd.train(config)
    assert run.metrics["pixel_auroc"] is not None
    snapshot = read_snapshot(tmp_path / "run")
    assert snapshot["image_shape"] == [64, 32]
    detector = fcdd.load(tmp_path / "run", device="cpu")
    assert detector.image_shape == (64, 32)
    test_file = next(p for p in (tall_root / "test").rglob("*.png"))
    # a file, and an image of another shape, both resized to the training shape
    predictions = detector.predict([str(test_file), Image.new("RGB", (90, 40))])
    assert [tuple(p.heatmap.shape) for p in predictions] == [(64, 32), (64, 32)]
    # the score of the file is the one the run's evaluation gave it
    index = run.splits.test.paths.index(str(test_file))
    assert predictions[0].score == pytest.approx(float(run.evaluation.scores[index]), rel=1e-4, abs=1e-6)
    meta = metadata(detector, "onnx")
    assert meta["image_shape"] == [64, 32] and meta["input"]["shape"][2:] == [64, 32]


def test_objectives_with_square_nets_refuse_a_non_square_input(tall_root, make_tiny_config, tmp_path):
    config = make_tiny_config(tall_root, tmp_path / "run", aspect="data", objective="ae", arch="ae")
    with pytest.raises(ValueError, match="needs a square input; the data gave 64x32"):
        fcdd.train(config)


def test_load_size_needs_a_square_input(tall_root, make_tiny_config, tmp_path):
    config = make_tiny_config(tall_root, tmp_path / "run", aspect="data", load_size=40)
    with pytest.raises(ValueError, match="--aspect square"):
        prepare_splits(config)


def test_an_old_snapshot_without_a_shape_is_square(tiny_run):
    snapshot = read_snapshot(tiny_run.out)
    snapshot.pop("image_shape")
    detector = fcdd.detector.Detector(snapshot, device="cpu")
    assert detector.image_shape == (32, 32)


def test_aspect_is_a_config_option():
    assert Config.from_dict({"aspect": "data"}).aspect == "data"
    assert Config.from_dict({"aspect": "288x224", "image_size": 224}).aspect == "288x224"
    for bad in ("tall", "288x", "288x224x3"):
        with pytest.raises(ValueError, match="square, data or HEIGHTxWIDTH"):
            Config.from_dict({"aspect": bad})
    with pytest.raises(ValueError, match="set image_size to 128"):
        Config.from_dict({"aspect": "128x256", "image_size": 224})


def test_a_fixed_aspect_loads_that_shape(tall_root, make_tiny_config, tmp_path):
    config = make_tiny_config(tall_root, tmp_path / "run", aspect="32x96")
    splits = prepare_splits(config)
    assert tuple(splits.train.images.shape[-2:]) == (32, 96) and tuple(splits.test.maps.shape[-2:]) == (32, 96)


def test_evaluate_on_other_data_keeps_the_runs_shape(tall_root, synthetic_root, make_tiny_config, tmp_path):
    """A tall run scored on square images reads them at its own 64x32, not at a shape of theirs."""
    fcdd.train(make_tiny_config(tall_root, tmp_path / "run", aspect="data"))
    on_square = evaluate_run(tmp_path / "run", device="cpu", data=synthetic_root, output=tmp_path / "square.json")
    config, method = method_from_snapshot(read_snapshot(tmp_path / "run"))
    at_run_shape = prepare_splits(config.replace(data=str(synthetic_root), aspect="64x32")).test
    at_own_shape = prepare_splits(config.replace(data=str(synthetic_root))).test
    assert tuple(at_run_shape.images.shape[-2:]) == (64, 32) and tuple(at_own_shape.images.shape[-2:]) == (32, 32)
    expected = evaluate(method, at_run_shape, config.eval_batch_size, torch.device("cpu"), resolution=config.eval_resolution)
    assert on_square["pixel_auroc"] == pytest.approx(expected.metrics()["pixel_auroc"])
    assert on_square["image_auroc"] == pytest.approx(expected.metrics()["image_auroc"])
