"""PatchCore: a memory bank of nominal patch features, fitted in one pass, in the snapshot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fcdd
from fcdd.config import Config
from fcdd.data import prepare_splits
from fcdd.methods import build_method
from fcdd.metrics import auroc
from fcdd.rundir import read_snapshot
from fcdd.training import execute


def patchcore_config(base: Config, **changes) -> Config:
    return base.replace(objective="patchcore", pretrained="none", image_size=32, **changes)


def test_fit_keeps_a_coreset_and_a_training_image_scores_zero(tiny_config):
    config = patchcore_config(tiny_config, coreset=1.0)
    splits = prepare_splits(config)
    method = build_method(config, splits.train.channels).eval()
    method.fit(splits.train.images, 8, "cpu")
    side = 32 // method.features.stride
    assert method.bank.shape == (len(splits.train) * side * side, method.features.out_dim)
    with torch.no_grad():
        scores, heatmaps = method(splits.train.images[:3].float() / 255)
    assert torch.allclose(scores, torch.zeros(3), atol=1e-4) and float(heatmaps.abs().max()) < 1e-3
    smaller = build_method(config.replace(coreset=0.25), splits.train.channels).eval()
    smaller.fit(splits.train.images, 8, "cpu")
    assert len(smaller.bank) == round(0.25 * len(method.bank))


def test_score_modes_and_reweighting(tiny_config):
    config = patchcore_config(tiny_config, coreset=0.5, blur_heatmaps=0.0)
    splits = prepare_splits(config)
    method = build_method(config, splits.train.channels).eval()
    method.fit(splits.train.images, 8, "cpu")
    images = splits.test.images[:6].float() / 255
    with torch.no_grad():
        reweighted, _ = method(images)
        method.score_mode = "max"
        plain, heatmaps = method(images)
    # the plain score is the largest patch distance; the paper's weight lies in (0, 1)
    distances = method.search().search(method.patch_features(images).reshape(-1, method.features.out_dim))[0]
    assert torch.allclose(plain, distances.view(6, -1).amax(1), atol=1e-5)
    weight = reweighted / plain
    assert ((weight > 0) & (weight < 1)).all()
    assert heatmaps.shape == (6, 1, 32, 32)


def test_run_with_no_gradients_snapshot_and_resume(tiny_config, tmp_path, monkeypatch):
    config = patchcore_config(tiny_config, out=str(tmp_path / "pc"))
    run = execute(config)
    assert run.metrics["epochs"] == 0 and run.history.loss == []
    assert run.metrics["image_auroc"] > 0.5
    snapshot = read_snapshot(tmp_path / "pc")
    assert snapshot["state_dict"]["bank"].shape == run.method.bank.shape
    # a loaded model scores the test images exactly as the run did
    detector = fcdd.load(run, device="cpu")
    scores = detector.score(run.splits.test.images.float() / 255).double().numpy()
    assert np.allclose(scores, run.evaluation.scores, atol=1e-5)
    assert auroc(scores, run.evaluation.labels) == pytest.approx(run.metrics["image_auroc"])
    # resuming a fitted run does not fit again
    calls = []
    monkeypatch.setattr(type(run.method), "fit", lambda *args, **kwargs: calls.append(args))
    (tmp_path / "pc" / "metrics.json").unlink()
    again = execute(config.replace(resume=True))
    assert calls == [] and np.allclose(again.evaluation.scores, run.evaluation.scores)


def test_patchcore_needs_no_supervision_flags(tiny_config):
    """Whatever --supervise-mode says, a method fitted on nominal images sees nominal images
    only, and its verdict threshold comes from held-out nominal images (false-positive rate)."""
    config = patchcore_config(tiny_config, out=None)
    assert config.supervise_mode == "malformed_normal"
    run = execute(config)
    thresholds = run.metrics["thresholds"]
    assert thresholds["n_anomalous"] == 0 and thresholds["image"]["rule"].startswith("fpr<=")
    assert thresholds["image"]["threshold"] > 0 and run.supervision.describe().startswith("unsupervised")
    assert run.config.supervise_mode == "unsupervised"


@pytest.mark.slow
def test_coreset_tenth_keeps_pixel_auroc_of_the_full_bank(shared_data, tmp_path):
    data = shared_data("hazelnut_toy")
    base = Config(data=str(data), objective="patchcore", image_size=224, report=False, holdout=0.0, device="cpu")
    full = execute(base.replace(coreset=1.0))
    tenth = execute(base.replace(coreset=0.1))
    assert tenth.metrics["pixel_auroc"] >= full.metrics["pixel_auroc"] - 0.01
    assert full.metrics["pixel_auroc"] > 0.95


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_holds_the_bank_and_scores_like_pytorch(tiny_config, tmp_path, fmt):
    from fcdd.export import export

    run = execute(patchcore_config(tiny_config, out=str(tmp_path / "pc"), coreset=0.3))
    report = export(run.out, fmt)
    assert report["ok"] and report["max_abs_diff_scores"] <= 1e-4 and report["max_abs_diff_heatmaps"] <= 1e-4
    assert report["bytes"] > run.method.bank.numel() * 4  # the bank is a constant of the graph


def test_report_and_compare_treat_patchcore_like_any_method(tiny_config, tmp_path):
    from fcdd.compare import compare_run

    run = fcdd.train(tiny_config.replace(epochs=1, out=str(tmp_path / "fcdd"), report=True))
    runs = compare_run(run.out, ["patchcore"], pretrained="none")
    assert [r.name for r in runs] == ["fcdd", "patchcore"]
    compared = tmp_path / "fcdd" / "compare" / "patchcore"
    assert (compared / "report.html").is_file() and (compared / "gallery_test_global_local.png").is_file()
    assert runs[1].heatmaps.shape == runs[0].heatmaps.shape and runs[1].paths == runs[0].paths
    table = (tmp_path / "fcdd" / "compare" / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in table[1:]] == ["fcdd", "patchcore"]


def test_a_fit_killed_midway_resumes_to_the_same_bank(tiny_config, tmp_path, monkeypatch):
    from fcdd.methods.patchcore import PatchCore
    from fcdd.training.trainer import SinglePassFit

    monkeypatch.setattr(PatchCore, "save_every", 10)
    config = patchcore_config(tiny_config, coreset=0.5, out=str(tmp_path / "whole"))
    whole = execute(config)
    saves = []
    original = SinglePassFit.save_fit_state

    def killed(self, state):
        original(self, state)  # the checkpoint is written, then the process dies
        saves.append(len(state["selected"]))
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(SinglePassFit, "save_fit_state", killed)
    interrupted = config.replace(out=str(tmp_path / "killed"))
    with pytest.raises(KeyboardInterrupt):
        execute(interrupted)
    monkeypatch.setattr(SinglePassFit, "save_fit_state", original)
    resumed = execute(interrupted.replace(resume=True))
    assert saves == [10, 20]
    assert torch.equal(resumed.method.bank, whole.method.bank)
    assert np.allclose(resumed.evaluation.scores, whole.evaluation.scores)
