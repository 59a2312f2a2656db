"""A diverged run never looks finished: NaN or infinite losses, scores or heatmaps stop it with an
error naming what to change, and heatmaps beyond float16's range are stored without overflowing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import fcdd
from fcdd.calibration import threshold_from
from fcdd.cli import main
from fcdd.data.base import ImageSet
from fcdd.evaluation import evaluate, evaluation_from_scores, stack_heatmaps, storable
from fcdd.methods.fcdd import FCDD
from fcdd.rundir import is_finished, load_run, read_checkpoint, read_heatmaps
from fcdd.runtime import DivergedError
from fcdd.training.trainer import Trainer


def train_cli(config, tmp_path, *flags: str) -> int:
    """``fcdd train`` in this process, with the tiny config as a YAML file."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in config.to_dict().items() if k != "out"}))
    return main(["train", "--config", str(path), "--out", config.out, *flags])


def assert_not_finished(out) -> None:
    assert not is_finished(out)
    for name in ("metrics.json", "snapshot.pt", "heatmaps.pt"):
        assert not (out / name).exists(), name


def test_non_finite_loss_stops_the_run_in_its_epoch(tiny_config, tmp_path, monkeypatch, capsys):
    epoch = {"now": 0}
    original_epoch, original_loss = Trainer.train_epoch, FCDD.training_loss

    def counting_epochs(self, train):
        epoch["now"] = self.epoch + 1
        return original_epoch(self, train)

    def nan_from_epoch_two(self, *args):
        losses = original_loss(self, *args)
        return losses * float("nan") if epoch["now"] >= 2 else losses

    monkeypatch.setattr(Trainer, "train_epoch", counting_epochs)
    monkeypatch.setattr(FCDD, "training_loss", nan_from_epoch_two)
    config = tiny_config.replace(epochs=3)
    assert train_cli(config, tmp_path, "--optimizer", "sgd", "--lr", "10") == 2
    err = capsys.readouterr().err
    assert "fcdd train: error: training diverged in epoch 2 of 3" in err and "lower --lr (now 10 with sgd)" in err
    assert "Traceback" not in err
    out = tmp_path / "run"
    assert_not_finished(out)
    assert read_checkpoint(out / "checkpoint.pt")["epoch"] == 1  # the diverged epoch is never saved


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_an_infinite_loss_stops_either_optimiser(tiny_config, tmp_path, optimizer, monkeypatch, capsys):
    original = FCDD.training_loss
    monkeypatch.setattr(FCDD, "training_loss", lambda self, *args: original(self, *args) * float("inf"))
    assert train_cli(tiny_config, tmp_path, "--optimizer", optimizer, "--lr", "10") == 2
    err = capsys.readouterr().err
    assert "training diverged in epoch 1 of 2" in err and f"with {optimizer}" in err
    assert_not_finished(tmp_path / "run")


def test_infinite_test_scores_are_an_error_not_a_result(tiny_config, capsys):
    """Plain SGD at lr 10 makes HSC's scores overflow float32 within a few epochs while its loss
    is still finite: the evaluation stops the run."""
    config = tiny_config.replace(objective="hsc", optimizer="sgd", lr=10.0, epochs=5)
    with pytest.raises(DivergedError, match="diverged.*lower --lr"):
        fcdd.train(config)
    assert_not_finished(Path(config.out))


def test_heatmaps_beyond_float16_round_trip_and_report_the_same_pixel_auroc(tiny_config):
    """Adam at lr 10 makes HSC's heatmaps reach millions, far beyond float16's 65504."""
    config = tiny_config.replace(objective="hsc", optimizer="adam", lr=10.0, epochs=1)
    run = fcdd.train(config)
    stored = read_heatmaps(run.out)["heatmaps"]
    assert stored.dtype == torch.float32 and bool(torch.isfinite(stored).all())
    assert float(stored.abs().max()) > 65504
    assert torch.equal(stored, run.evaluation.heatmaps)
    metrics = json.loads((run.out / "metrics.json").read_text())
    reloaded = load_run(run.out)  # what ``fcdd report`` reads
    assert reloaded.evaluation.pixel_auroc == metrics["pixel_auroc"] == run.evaluation.pixel_auroc
    assert 0.5 < metrics["pixel_auroc"] <= 1.0


class ScaledMean(nn.Module):
    """A stand-in method: the heatmap is the image's mean over channels times ``scale``."""

    heatmaps_need_grad = False

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        heatmaps = images.mean(1, keepdim=True) * self.scale
        return heatmaps.flatten(1).mean(1), heatmaps


@pytest.fixture(scope="module")
def small_test_set() -> ImageSet:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8, generator=generator)
    maps = (torch.rand(12, 1, 16, 16, generator=generator) > 0.7).to(torch.uint8)
    maps[:6] = 0
    images[6:] = torch.where(maps[6:].bool(), images[6:].clamp(min=128), images[6:] // 2)  # defects are bright
    labels = torch.tensor([0] * 6 + [1] * 6)
    return ImageSet(images, labels, maps, kinds=["good"] * 6 + ["bright"] * 6)


@pytest.mark.parametrize(("scale", "dtype"), [(1.0, torch.float16), (1e9, torch.float32), (1e-9, torch.float32)])
def test_stored_heatmaps_give_the_metrics_of_the_evaluation(small_test_set, scale, dtype):
    evaluation = evaluate(ScaledMean(scale), small_test_set, batch_size=5, progress=False)
    assert evaluation.heatmaps.dtype == dtype and bool(torch.isfinite(evaluation.heatmaps).all())
    again = evaluation_from_scores(evaluation.scores, evaluation.labels, evaluation.heatmaps, evaluation.kinds,
                                   evaluation.paths, small_test_set)
    assert again.pixel_auroc == evaluation.pixel_auroc > 0.5
    assert again.pixel_aupro == evaluation.pixel_aupro


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_heatmaps_are_a_divergence(small_test_set, value):
    with pytest.raises(DivergedError, match="12 score\\(s\\) and 12 heatmap\\(s\\) of test images 1-12"):
        evaluate(ScaledMean(value), small_test_set, batch_size=32, progress=False)


def test_storable_keeps_float16_only_when_every_value_fits():
    assert storable(torch.tensor([0.0, 1.5, 65504.0])).dtype == torch.float16
    assert storable(torch.zeros(0)).dtype == torch.float16
    big = torch.tensor([1.0, 65520.0, 3e9])
    assert storable(big).dtype == torch.float32 and torch.equal(storable(big), big)
    mixed = stack_heatmaps([storable(torch.ones(2)), storable(big)])
    assert mixed.dtype == torch.float32 and mixed.tolist() == [1.0, 1.0, *big.tolist()]


def test_calibration_never_stores_an_infinite_threshold():
    scores = torch.tensor([0.1, 0.2, float("inf"), 0.3]).numpy()
    with pytest.raises(DivergedError, match="1 calibration value"):
        threshold_from(scores, [0, 0, 1, 1], target_fpr=None)
