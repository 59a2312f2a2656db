"""Each kind of extension, done once, in this file only: a throwaway noise mode, net, data set
and objective are registered here and run end to end through ``fcdd.train``, ``fcdd run`` and
``fcdd.load`` without any other file knowing about them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fcdd
from fcdd.cli import main
from fcdd.config import Config
from fcdd.data import DATASETS, DataSplits, ImageSet
from fcdd.data.noise import NOISE, NoiseSource
from fcdd.methods import METHODS, Method
from fcdd.models import NETS
from fcdd.models.base import FCDDNet, conv_bn_act
from fcdd.rundir import read_metrics

BUILDS = {"stripes": 0}


class Stripes(NoiseSource):
    """A bright horizontal stripe; counts how often it is built (once per run)."""

    def __init__(self, config, splits) -> None:
        super().__init__(config, splits)
        BUILDS["stripes"] += 1

    def __call__(self, nominal, generator):
        b, _, h, w = nominal.shape
        top = torch.randint(0, h - 4, (b,), generator=generator)
        rows = torch.arange(h).view(1, h, 1)
        where = ((rows >= top.view(b, 1, 1)) & (rows < (top + 4).view(b, 1, 1))).expand(b, h, w)[:, None].float()
        return torch.ones_like(nominal), where.to(nominal.device)


class TwoConvNet(FCDDNet):
    """Two 3x3 convolutions and a pooling: an output map at half the input size."""

    def __init__(self, in_channels: int = 3, input_size: int = 32, width: float = 1.0, pretrained: str | None = None) -> None:
        super().__init__(in_channels, input_size)
        self.features = nn.Sequential(*conv_bn_act(in_channels, 8), nn.MaxPool2d(2, 2), *conv_bn_act(8, 8))
        self.head = nn.Conv2d(8, 1, 1)


def squares(config: Config) -> DataSplits:
    """Dim noise as nominal images; test anomalies carry a bright square with its mask."""
    g = torch.Generator().manual_seed(int(config.category or 0))
    s = config.image_size

    def nominal(n: int) -> torch.Tensor:
        return (torch.rand(n, 3, s, s, generator=g) * 80).to(torch.uint8)

    anomalous, maps = nominal(6), torch.zeros(12, 1, s, s, dtype=torch.uint8)
    anomalous[:, :, 4:12, 4:12] = 255
    maps[6:, :, 4:12, 4:12] = 1
    train = ImageSet(nominal(20), torch.zeros(20, dtype=torch.long), torch.zeros(20, 1, s, s, dtype=torch.uint8))
    test = ImageSet(torch.cat([nominal(6), anomalous]), torch.tensor([0] * 6 + [1] * 6), maps, ["good"] * 6 + ["square"] * 6)
    return DataSplits(train, test, name=f"squares-{config.category or 0}")


class PixelDistance(Method):
    """Learns without gradients: the nominal images' mean; heatmap = distance to it."""

    learns_by_gradient = False
    uses_anomalies = False

    def __init__(self, config, in_channels: int, image_shape=None) -> None:
        super().__init__(config, in_channels, image_shape)
        self.register_buffer("mean", torch.zeros(1, in_channels, *self.image_shape))

    def fit(self, train_images, batch_size, device, state=None, save=None) -> None:
        self.mean.copy_(train_images.float().div(255).mean(0, keepdim=True))

    def forward(self, images):
        heatmaps = (images - self.mean).abs().mean(1, keepdim=True)
        return heatmaps.flatten(1).amax(1), heatmaps


@pytest.fixture(scope="module")
def plugins():
    NOISE.register("test_stripes")(Stripes)
    NETS.register("test_two_conv")(TwoConvNet)
    DATASETS.register("test_squares", classes=lambda config: ["0", "1"])(squares)
    METHODS.register("test_pixel_distance")(PixelDistance)
    yield
    NOISE.unregister("test_stripes")
    NETS.unregister("test_two_conv")
    DATASETS.unregister("test_squares")
    METHODS.unregister("test_pixel_distance")


def test_new_noise_net_and_data_set_train_end_to_end_with_one_supervision_build(plugins, tmp_path):
    BUILDS["stripes"] = 0
    config = Config(dataset="test_squares", image_size=32, net="test_two_conv", pretrained="none", noise_mode="test_stripes",
                    epochs=2, batch_size=8, holdout=0.2, out=str(tmp_path / "run"), device="cpu", report=True)
    run = fcdd.train(config)
    # training, calibration, the training galleries and the preview share one supervision
    assert BUILDS["stripes"] == 1
    assert run.metrics["thresholds"]["n_anomalous"] > 0 and (tmp_path / "run" / "report.html").is_file()
    detector = fcdd.load(run)
    assert detector.score(torch.rand(2, 3, 32, 32)).shape == (2,)


def test_new_objective_learns_in_one_pass_and_runs_over_the_data_sets_classes(plugins, tmp_path, capsys):
    out = tmp_path / "grid"
    assert main(["run", "--dataset", "test_squares", "--objective", "test_pixel_distance", "--supervise-mode", "unsupervised",
                 "--image-size", "16", "--holdout", "0.2", "--no-report", "--device", "cpu", "--out", str(out)]) == 0
    for cls in ("0", "1"):
        metrics = read_metrics(out / f"normal_{cls}" / "it_0")
        assert metrics["image_auroc"] == 1.0 and metrics["epochs"] == 0
        assert metrics["thresholds"]["image"]["threshold"] > 0
    assert "| **mean** |" in capsys.readouterr().out
