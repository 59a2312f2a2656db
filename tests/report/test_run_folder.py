"""The run folder's own artefacts: replayable config, log, history per epoch, metrics, snapshot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fcdd.config import Config
from fcdd.data.transforms import to_float
from fcdd.detector import method_from_snapshot, read_snapshot
from fcdd.metrics import auroc


def test_config_yaml_replays_the_run(report_run):
    out = Path(report_run.out)
    assert Config.from_yaml(out / "config.yaml") == report_run.config.replace(out=None)  # a new run, not this one


def test_history_has_one_entry_per_epoch(report_run):
    history = json.loads((Path(report_run.out) / "history.json").read_text())
    epochs = report_run.config.epochs
    for key in ("loss", "nominal", "anomalous", "lr", "seconds"):
        assert len(history[key]) == epochs, key
    assert all(np.isfinite(history["nominal"])) and all(np.isfinite(history["anomalous"]))
    assert history["metrics"]["image_auroc"] == pytest.approx(report_run.metrics["image_auroc"])


def test_log_and_metrics(report_run):
    out = Path(report_run.out)
    log = (out / "log.txt").read_text()
    assert "image AUROC" in log and "training images" in log and "report written" in log
    metrics = json.loads((out / "metrics.json").read_text())
    stored = torch.load(out / "heatmaps.pt", weights_only=True)
    assert metrics["image_auroc"] == pytest.approx(auroc(stored["scores"].numpy(), stored["labels"].numpy()))
    assert metrics["n_test"] == len(stored["scores"]) == len(report_run.splits.test)


def test_snapshot_reproduces_the_stored_scores(report_run):
    out = Path(report_run.out)
    _, method = method_from_snapshot(read_snapshot(out))
    stored = torch.load(out / "heatmaps.pt", weights_only=True)
    test = report_run.splits.test
    with torch.no_grad():
        scores, heatmaps = method(to_float(test.images))
    np.testing.assert_allclose(scores.numpy(), stored["scores"].numpy(), rtol=1e-4, atol=1e-5)
    assert heatmaps.shape == stored["heatmaps"].shape
    assert stored["paths"] == test.paths
