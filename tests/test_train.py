"""Training end to end on generated data: loss goes down, checkpoints resume exactly, run folder."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import fcdd
from fcdd.cli import main
from fcdd.config import Config
from fcdd.training import prefetch


def test_training_lowers_loss_and_writes_run_folder(tiny_config):
    config = tiny_config.replace(epochs=4)
    run = fcdd.train(config)
    h = run.history
    assert len(h.loss) == len(h.nominal) == len(h.anomalous) == 4
    assert h.loss[-1] < h.loss[0]
    out = run.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["image_auroc"] <= 1.0 and 0.0 <= metrics["pixel_auroc"] <= 1.0
    assert metrics["image_auroc"] == pytest.approx(run.evaluation.image_auroc)
    assert Config.from_yaml(out / "config.yaml") == config.replace(out=None)  # replays as a new run
    snapshot = torch.load(out / "snapshot.pt", weights_only=True)
    assert snapshot["config"] == config.to_dict() and snapshot["in_channels"] == 3
    heat = torch.load(out / "heatmaps.pt", weights_only=True)
    assert heat["heatmaps"].shape == (len(run.splits.test), 1, 32, 32)
    assert "epoch 4" in (out / "log.txt").read_text()


def test_killed_run_resumes_to_the_same_result(tiny_config, tmp_path):
    full = fcdd.train(tiny_config.replace(epochs=3, out=str(tmp_path / "full")))
    # a run stopped after one epoch (its checkpoint is what a kill leaves behind) ...
    partial_config = tiny_config.replace(epochs=1, out=str(tmp_path / "partial"))
    fcdd.train(partial_config)
    with pytest.raises(FileExistsError, match="--resume"):
        fcdd.train(partial_config.replace(epochs=3))
    resumed = fcdd.train(partial_config.replace(epochs=3, resume=True))
    assert resumed.history.loss == pytest.approx(full.history.loss, rel=1e-5)
    for key, value in full.method.state_dict().items():
        assert torch.allclose(value.float(), resumed.method.state_dict()[key].float(), atol=1e-5), key
    assert resumed.metrics["image_auroc"] == pytest.approx(full.metrics["image_auroc"])


def test_resume_refuses_changed_options(tiny_config):
    fcdd.train(tiny_config.replace(epochs=1))
    with pytest.raises(ValueError, match="changed options: lr"):
        fcdd.train(tiny_config.replace(epochs=2, lr=0.5, resume=True))


def test_cli_train_and_evaluate(tiny_config, tmp_path, capsys):
    out = tmp_path / "cli"
    yaml_path = tmp_path / "cfg.yaml"
    yaml_path.write_text(yaml.safe_dump({k: v for k, v in tiny_config.to_dict().items() if k != "out"}))
    assert main(["train", "--config", str(yaml_path), "--out", str(out), "--epochs", "1"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(printed) == {"image_auroc", "pixel_auroc"}
    assert main(["evaluate", str(out)]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["image_auroc"] == pytest.approx(printed["image_auroc"])
    assert again["pixel_auroc"] == pytest.approx(printed["pixel_auroc"])


def test_cli_reports_bad_data_with_exit_code(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "nothing" in capsys.readouterr().err


def test_semi_supervised_run_says_which_defects_it_trained_on(tiny_config):
    config = tiny_config.replace(supervise_mode="noise", noise_mode="mvtec_gt", oe_limit=1, epochs=3)
    run = fcdd.train(config)
    assert run.metrics["n_test"] == 18 - 4
    assert any("moved from test to training" in note for note in run.metrics["notes"])
    assert "moved from test to training" in (run.out / "log.txt").read_text()
    assert run.history.anomalous[-1] < run.history.anomalous[0]


def test_prefetch_keeps_order_and_raises_producer_errors():
    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))

    def broken():
        yield 1
        raise RuntimeError("bad batch")

    with pytest.raises(RuntimeError, match="bad batch"):
        list(prefetch(broken()))
