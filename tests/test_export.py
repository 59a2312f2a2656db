"""``fcdd export``: TorchScript and ONNX models that give PyTorch's scores and heatmaps."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import fcdd
from fcdd.cli import main
from fcdd.config import Config
from fcdd.export import ExportError, check_exportable


@pytest.fixture(scope="module")
def test_batch(tiny_run) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    detector = fcdd.load(tiny_run.out, device="cpu")
    images = detector.prepare(tiny_run.evaluation.paths[:5])
    scores, heatmaps = detector.forward(images)
    return images, scores, heatmaps


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch(fmt, tiny_run, test_batch, tmp_path, capsys):
    out = tmp_path / f"model.{fmt}"
    assert main(["export", str(tiny_run.out), "--format", fmt, "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["max_abs_diff_heatmaps"] <= 1e-4 and report["max_abs_diff_scores"] <= 1e-4
    meta = json.loads(Path(str(out) + ".json").read_text())["metadata"]
    assert meta["image_size"] == 32 and meta["threshold"] == pytest.approx(tiny_run.metrics["thresholds"]["image"]["threshold"])
    images, scores, heatmaps = test_batch  # real test images, a batch size the export never saw
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got_scores, got_maps = session.run(["scores", "heatmaps"], {"images": images.numpy()})
        assert json.loads(session.get_modelmeta().custom_metadata_map["fcdd"])["channels"] == 3
    else:
        extra = {"fcdd.json": ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in recent torch
            module = torch.jit.load(str(out), _extra_files=extra)
        assert json.loads(extra["fcdd.json"])["net"] == "cnn32"
        with torch.no_grad():
            got_scores, got_maps = (t.numpy() for t in module(images))
    assert got_maps.shape == (5, 1, 32, 32)
    np.testing.assert_allclose(got_scores, scores.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(got_maps, heatmaps.numpy(), atol=1e-4, rtol=0)
    assert np.abs(got_scores - tiny_run.evaluation.scores[:5]).max() <= 1e-4


def test_default_output_lies_beside_the_snapshot(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(Path(tiny_run.out) / "snapshot.pt", run / "snapshot.pt")
    assert main(["export", str(run), "--format", "torchscript"]) == 0
    assert (run / "model.torchscript.pt").is_file() and (run / "model.torchscript.pt.json").is_file()


def test_gradient_heatmaps_and_failed_parity_are_errors(tiny_run, synthetic_root, tmp_path, capsys):
    config = Config(
        dataset="mvtec", data=str(synthetic_root), image_size=32, net="cnn32", width=0.25, pretrained="none", objective="hsc",
        supervise_mode="unsupervised", epochs=1, batch_size=8, eval_batch_size=16, out=str(tmp_path / "hsc"), report=False,
        holdout=0.2, device="cpu",
    )
    run = fcdd.train(config)
    detector = fcdd.load(run.out, device="cpu")
    assert detector.method.heatmaps_need_grad
    # the Python API still explains it (with input gradients), exactly as the evaluation did
    np.testing.assert_allclose(detector.score(run.evaluation.paths).double().numpy(), run.evaluation.scores, rtol=1e-5, atol=1e-8)
    with pytest.raises(ExportError, match="input gradients"):
        check_exportable(detector)
    assert main(["export", str(run.out), "--format", "torchscript", "--out", str(tmp_path / "hsc.pt")]) == 2
    assert "computes its heatmaps from input gradients" in capsys.readouterr().err
    assert not (tmp_path / "hsc.pt").exists()
    assert main(["export", str(tiny_run.out), "--format", "onnx", "--out", str(tmp_path / "m.onnx"), "--tolerance", "-1"]) == 2
    assert "differs from PyTorch" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing"), "--format", "onnx"]) == 2


def test_per_image_standardisation_survives_onnx_export():
    """The standardisation lives in the net's forward, so an exported model must repeat it."""
    import onnxruntime as ort

    from fcdd.export import ExportModel, _onnx
    from fcdd.methods import build_method

    config = Config(net="cnn32", width=0.25, image_size=32, pretrained="none", standardise_images=True)
    method = build_method(config, 3).eval()
    before = {k: v.clone() for k, v in method.state_dict().items()}
    example = torch.rand(2, 3, 32, 32)
    meta = {"threshold": 0.5}
    # a wrapper left in training mode must neither export nor update training-mode batch norm
    session = ort.InferenceSession(_onnx(ExportModel(method), example, meta), providers=["CPUExecutionProvider"])
    assert all(torch.equal(v, before[k]) for k, v in method.state_dict().items())
    images = torch.rand(3, 3, 32, 32) * 0.5 + 0.2
    with torch.no_grad():
        scores, maps = method(images)
    got_scores, got_maps = session.run(["scores", "heatmaps"], {"images": images.numpy()})
    np.testing.assert_allclose(got_maps, maps.numpy(), atol=1e-5, rtol=0)
    # and the exported model ignores exposure as the PyTorch one does
    darker, _ = session.run(["scores", "heatmaps"], {"images": (images * 0.5 + 0.1).numpy()})
    np.testing.assert_allclose(darker, got_scores, atol=1e-5, rtol=0)
