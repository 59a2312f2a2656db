"""``fcdd report RUN_DIR`` and ``load_run``: everything rebuilt from a finished run, no training."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fcdd.cli import main
from fcdd.rundir import load_run

REBUILT = ("loss.png", "loss.pdf", "roc_image.png", "roc_image.json", "roc_pixel.pdf", "ds_preview.png", "galleries.json",
           "gallery_test_global_local.png", "gallery_train_nominal_semi_global.png", "report.html")


def _copy(run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run.out, copy)
    return copy


def test_load_run_restores_the_run(report_run):
    loaded = load_run(report_run.out)
    assert loaded.config == report_run.config
    assert loaded.history.loss == pytest.approx(report_run.history.loss)
    assert len(loaded.history.anomalous) == report_run.config.epochs
    np.testing.assert_allclose(loaded.evaluation.scores, report_run.evaluation.scores)
    assert loaded.evaluation.image_auroc == pytest.approx(report_run.metrics["image_auroc"])
    # heatmaps.pt holds float16 maps, so the recomputed pixel AUROC may move in the 4th decimal
    assert loaded.evaluation.pixel_auroc == pytest.approx(report_run.metrics["pixel_auroc"], abs=2e-3)
    assert loaded.splits.train.paths == report_run.splits.train.paths  # same holdout split
    assert loaded.metrics["thresholds"] == report_run.metrics["thresholds"]


def test_report_command_rebuilds_the_artefacts(report_run, tmp_path, capsys):
    run_dir = _copy(report_run, tmp_path)
    original = json.loads((run_dir / "galleries.json").read_text())
    for name in REBUILT:
        (run_dir / name).unlink()
    assert main(["report", str(run_dir)]) == 0
    assert "report.html" in capsys.readouterr().out
    for name in REBUILT:
        assert (run_dir / name).is_file(), name
    rebuilt = json.loads((run_dir / "galleries.json").read_text())
    assert rebuilt.keys() == original.keys()
    for key in original:
        assert [b["items"] for b in rebuilt[key]["blocks"]] == [b["items"] for b in original[key]["blocks"]], key


def test_report_command_reevaluates_without_heatmaps(report_run, tmp_path):
    run_dir = _copy(report_run, tmp_path)
    (run_dir / "heatmaps.pt").unlink()
    assert main(["report", str(run_dir), "--overlay-alpha", "0.8", "--no-train-galleries"]) == 0
    page = (run_dir / "report.html").read_text()
    cards = json.loads(re.search(r'id="fcdd-data">(.*?)</script>', page, re.S).group(1))["cards"]
    assert [c["path"] for c in cards] == report_run.splits.test.paths
    loaded = load_run(run_dir, reevaluate=True)
    stored = torch.load(Path(report_run.out) / "heatmaps.pt", weights_only=True)
    np.testing.assert_allclose(loaded.evaluation.scores, stored["scores"].numpy(), rtol=1e-4, atol=1e-6)


def test_report_command_errors_name_the_problem(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "snapshot" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "empty"), "--overlay-alpha", "2"]) == 2
    assert "overlay_alpha" in capsys.readouterr().err


def test_report_without_ground_truth_maps_or_training_anomalies(report_run, tmp_path):
    """One-vs-rest style data (no maps) and an unsupervised run: no pixel ROC, no truth rows."""
    from dataclasses import replace

    from fcdd.report import write_report

    test = replace(report_run.splits.test, maps=torch.zeros_like(report_run.splits.test.maps))
    splits = replace(report_run.splits, test=test)
    evaluation = replace(report_run.evaluation, pixel_auroc=None, pixel_auroc_error_bound=None, pixel_roc=None)
    config = report_run.config.replace(supervise_mode="unsupervised", out=str(tmp_path))
    run = replace(report_run, config=config, splits=splits, evaluation=evaluation, out=tmp_path, supervision=None)
    written = write_report(run)
    assert "roc_pixel" not in written and not (tmp_path / "roc_pixel.png").exists()
    layouts = json.loads((tmp_path / "galleries.json").read_text())
    assert all("truth" not in block["tiles"] for layout in layouts.values() for block in layout["blocks"])
    assert not any(key.startswith("gallery_train_anomalous") for key in layouts)
    page = (tmp_path / "report.html").read_text()
    data = json.loads(re.search(r'id="fcdd-data">(.*?)</script>', page, re.S).group(1))
    assert data["blank"] is None and all(card["truth"] is None for card in data["cards"])
