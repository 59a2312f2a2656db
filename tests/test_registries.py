"""Every registered plug-in meets its contract: the tests iterate over the registries, so a new
net, noise mode, objective, encoder-decoder or data set is tested without editing a list."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fcdd.config import Config
from fcdd.data import DATASETS, DataError, DataSplits, prepare_splits
from fcdd.data.noise import NOISE
from fcdd.data.supervision import SUPERVISION, build_supervision
from fcdd.methods import METHODS, build_method
from fcdd.models import NETS, build_net
from fcdd.models.autoencoders import ENCODER_DECODERS, build_autoencoder
from fcdd.rundir import History
from fcdd.tracking import TRACKERS, check_available, open_tracking


@pytest.fixture(scope="module")
def splits(synthetic_root) -> DataSplits:
    return prepare_splits(Config(dataset="mvtec", data=str(synthetic_root), image_size=32, holdout=0.2))


@pytest.mark.parametrize("name", NETS.names())
def test_net_maps_images_to_one_channel_at_its_output_size(name):
    net = build_net(name, 3, 64, width=0.25, pretrained="none").eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 64, 64))
    side = net.output_size()
    assert out.shape == (2, 1, side, side) and torch.isfinite(out).all()
    assert net.receptive_field.size >= 1


@pytest.fixture(scope="module")
def outlier_folder(tmp_path_factory):
    """A small folder tree of outlier images for the folder-fed noise modes."""
    root = tmp_path_factory.mktemp("outliers")
    for i in range(6):
        folder = root / "train" / f"n{i % 2:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.mark.parametrize("name", NOISE.names())
def test_noise_mode_makes_anomalies_for_a_batch(name, splits, outlier_folder):
    config = Config(noise_mode=name, image_size=32, noise_dir=str(outlier_folder))
    prepared = NOISE.get(name).adjust_splits(config, splits)
    try:
        source = NOISE.get(name)(config, prepared)
    except (DataError, ValueError, FileNotFoundError) as err:
        # modes fed by outside data (outlier sets, folders) must say what is missing
        assert str(err), f"{name}: empty error"
        pytest.skip(f"{name} needs outside data here: {err}")
    nominal = torch.rand(4, 3, 32, 32)
    content, where = source(nominal, torch.Generator().manual_seed(0))
    again = NOISE.get(name)(config, prepared)(nominal, torch.Generator().manual_seed(0))
    assert content.shape == nominal.shape and where.shape == (4, 1, 32, 32)
    assert 0 <= float(where.min()) and float(where.max()) <= 1 and float(where.max()) > 0
    assert torch.equal(content, again[0]), "same generator, same anomalies"


@pytest.mark.parametrize("mode", SUPERVISION.names())
def test_supervision_mode_labels_its_batch(mode, splits):
    config = Config(supervise_mode=mode, noise_mode="confetti", anomaly_fraction=0.5, image_size=32)
    try:
        supervision = build_supervision(config, splits)
    except ValueError as err:
        pytest.skip(f"{mode} needs other data: {err}")
    batch = supervision(torch.rand(4, 3, 32, 32), torch.zeros(4, 1, 32, 32), torch.Generator().manual_seed(0))
    assert batch.images.shape == (4, 3, 32, 32) and batch.labels.shape == (4,)
    assert set(batch.labels.tolist()) <= {0, 1}
    assert (batch.maps[batch.labels == 0] == 0).all()
    assert supervision.describe()


@pytest.mark.parametrize("objective", METHODS.names())
def test_objective_scores_and_explains_at_input_resolution(objective, splits):
    config = Config(objective=objective, net="cnn32", width=0.25, pretrained="none", image_size=32)
    method = build_method(config, 3)
    images = torch.rand(4, 3, 32, 32)
    if method.learns_by_gradient:
        loss = method.training_loss(images, torch.tensor([0, 0, 1, 1]), torch.zeros(4, 1, 32, 32), False)
        assert loss.shape == (4,) and torch.isfinite(loss).all()
    else:
        method.fit((splits.train.images[:8]), 4, "cpu")
    method.after_training(splits.train.images[:8], 4, "cpu")
    method.eval()
    with torch.enable_grad() if method.heatmaps_need_grad else torch.no_grad():
        scores, heatmaps = method(images)
    assert scores.shape == (4,) and heatmaps.shape == (4, 1, 32, 32)
    assert torch.isfinite(scores).all() and torch.isfinite(heatmaps).all()


@pytest.mark.parametrize("arch", ENCODER_DECODERS.names())
def test_encoder_decoder_reconstructs_its_target_shape(arch):
    """Image nets reconstruct the input; feature nets their own target, on a coarser grid."""
    net = build_autoencoder(arch, 3, 32, width=0.25).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 32, 32))
    if net.reconstructs_images:
        assert out.target is None and out.output.shape == (2, 3, 32, 32)
    else:
        assert out.output.shape == out.target.shape and out.output.shape[-1] < 32


@pytest.mark.parametrize("name", DATASETS.names())
def test_data_set_reads_or_names_what_is_missing(name, tmp_path):
    """On an empty folder a reader either makes its data (the synthetic set) and gives nominal
    training images and a labelled test set, or fails with a ``DataError`` that says why."""
    config = Config(dataset=name, data=str(tmp_path), image_size=32, category=None)
    try:
        splits = DATASETS.get(name)(config)
    except DataError as err:
        assert str(err)
        return
    assert len(splits.train) and (splits.train.labels == 0).all()
    assert set(splits.test.labels.tolist()) == {0, 1}
    classes = DATASETS.info(name).get("classes")
    if classes is not None:
        assert classes(config.replace(data=str(tmp_path)))


@pytest.mark.parametrize("name", TRACKERS.names())
def test_tracker_records_a_run_into_its_folder(name, tmp_path):
    """A tracker takes epochs, final metrics and figures and writes only inside the run folder
    (or, without its package, fails before any run with the pip command)."""
    try:
        check_available(name)
    except ValueError as err:
        assert "pip install" in str(err)
        pytest.skip(str(err))
    out = tmp_path / "run"
    out.mkdir()
    figure = out / "loss.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(figure)
    history = History(loss=[1.0, 0.5], nominal=[0.8, 0.4], anomalous=[1.2, float("nan")], lr=[1e-3, 1e-3],
                      seconds=[1.0, 1.0], images_per_second=[10.0, 12.0])
    config = Config(out=str(out), loggers=[name])
    with open_tracking(config, out) as tracking:
        for epoch in (1, 2):
            tracking.epoch(epoch, History(**{k: v[:epoch] for k, v in history.to_dict().items()}))
        tracking.finish(2, {"image_auroc": 0.75, "pixel_auroc": None, "thresholds": {"image": 0.5}, "versions": {"fcdd": "x"}})
        assert set(tracking.trackers) == {name}, "no call raised"
    with open_tracking(config, out, reopen=True) as tracking:
        tracking.figures(2, {"loss": figure})
        assert set(tracking.trackers) == {name}
    assert len(list(out.rglob("*"))) > 1
    assert [p.name for p in tmp_path.iterdir()] == ["run"], "nothing outside the run folder"


@pytest.mark.parametrize("objective", ["ae", "attention-ae"])
def test_pretrained_option_reaches_the_imagenet_encoder_decoder(objective, tmp_path):
    """``--pretrained`` decides unet_effnet's encoder, as it does a net's backbone."""
    config = Config(objective=objective, arch="unet_effnet", image_size=32, pretrained="none")
    net = build_method(config, 3).net
    assert not net.pretrained and net.frozen_prefix() == []
    missing = tmp_path / "lite0.pth"
    with pytest.raises(FileNotFoundError, match="lite0.pth"):
        build_method(config.replace(pretrained=str(missing)), 3)
