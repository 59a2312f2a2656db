"""Loss and ROC figures: written in both formats, and the drawn points agree with the metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fcdd.metrics import auroc, roc_curve, trapezoid_area
from fcdd.report.plots import interpolate_roc, mean_roc, plot_loss, plot_mean_roc, plot_roc


def test_plot_roc_writes_points_whose_area_is_the_auroc(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(40), np.ones(25)]
    scores = rng.normal(labels, 1.0).round(1)  # rounding makes ties: vertical and diagonal steps
    fpr, tpr, _ = roc_curve(scores, labels)
    written = plot_roc({"image": (fpr, tpr, auroc(scores, labels))}, tmp_path / "roc", "ROC")
    assert {p.suffix for p in written} == {".png", ".pdf", ".json"}
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "roc.pdf").read_bytes()[:4] == b"%PDF"
    curve = json.loads((tmp_path / "roc.json").read_text())["curves"]["image"]
    assert trapezoid_area(np.array(curve["fpr"]), np.array(curve["tpr"])) == pytest.approx(auroc(scores, labels), abs=1e-12)


def test_interpolation_keeps_vertical_steps():
    fpr = np.array([0.0, 0.0, 0.5, 0.5, 1.0])
    tpr = np.array([0.0, 0.4, 0.6, 0.9, 1.0])
    got = interpolate_roc(fpr, tpr, np.array([0.0, 0.25, 0.5, 0.75, 1.0]))
    np.testing.assert_allclose(got, [0.4, 0.5, 0.9, 0.95, 1.0])


def test_mean_roc_averages_on_a_common_grid_and_keeps_the_area():
    a = (np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0]), 1.0)  # perfect
    b = (np.array([0.0, 1.0]), np.array([0.0, 1.0]), 0.5)  # chance
    summary = mean_roc([a, b])
    assert summary["fpr"][0] == 0 and summary["fpr"][-1] == 1
    inner = (summary["fpr"] > 0) & (summary["fpr"] < 1)
    np.testing.assert_allclose(summary["tpr_mean"][inner], (1 + summary["fpr"][inner]) / 2)
    np.testing.assert_allclose(summary["tpr_std"][inner], (1 - summary["fpr"][inner]) / 2)
    assert summary["auroc_mean"] == pytest.approx(0.75) and summary["auroc_std"] == pytest.approx(0.25)
    # the mean curve's area is the mean area (up to the grid's resolution at the vertical step)
    assert trapezoid_area(summary["fpr"], summary["tpr_mean"]) == pytest.approx(0.75, abs=0.01)


def test_plot_mean_roc_accepts_roc_json_curves(tmp_path):
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(30), np.ones(30)]
    per_seed = {}
    for seed in range(3):
        scores = rng.normal(labels * (1 + seed), 1.0)
        fpr, tpr, _ = roc_curve(scores, labels)
        plot_roc({"image": (fpr, tpr, auroc(scores, labels))}, tmp_path / f"seed{seed}" / "roc_image", "ROC")
        per_seed[seed] = json.loads((tmp_path / f"seed{seed}" / "roc_image.json").read_text())["curves"]["image"]
    written = plot_mean_roc(per_seed, tmp_path / "class_roc", "class 0 over 3 seeds")
    assert {p.name for p in written} == {"class_roc.png", "class_roc.pdf", "class_roc.json"}
    summary = json.loads((tmp_path / "class_roc.json").read_text())
    areas = [c["auroc"] for c in per_seed.values()]
    assert summary["seeds"] == 3
    assert summary["auroc_mean"] == pytest.approx(np.mean(areas))
    assert np.all(np.diff(summary["tpr_mean"]) >= -1e-12)  # a mean of ROC curves is monotone


def test_mean_roc_needs_curves(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        plot_mean_roc([], tmp_path / "x", "none")


def test_plot_loss_handles_missing_anomalous_loss(tmp_path):
    history = {"loss": [1.0, 0.5, 0.25], "nominal": [1.0, 0.5, 0.25], "anomalous": [float("nan")] * 3}
    written = plot_loss(history, tmp_path / "loss")
    assert all(Path(p).stat().st_size > 1000 for p in written)


def test_run_plots_match_run_metrics(report_run):
    out = Path(report_run.out)
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ("loss", "roc_image", "roc_pixel"):
        assert (out / f"{name}.png").stat().st_size > 1000 and (out / f"{name}.pdf").stat().st_size > 1000
    image = json.loads((out / "roc_image.json").read_text())["curves"]["image"]
    assert image["auroc"] == pytest.approx(metrics["image_auroc"])
    assert trapezoid_area(np.array(image["fpr"]), np.array(image["tpr"])) == pytest.approx(metrics["image_auroc"], abs=1e-9)
    pixel = json.loads((out / "roc_pixel.json").read_text())["curves"]["pixel"]
    assert trapezoid_area(np.array(pixel["fpr"]), np.array(pixel["tpr"])) == pytest.approx(metrics["pixel_auroc"], abs=0.01)
