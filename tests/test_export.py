"""``fcdd export``: ONNX, pt2, OpenVINO and TorchScript models that give PyTorch's scores and heatmaps.

Each format is exported once per module (``exported``) from the shared tiny run; the tests then
open the written file with that format's own runtime, not with fcdd's parity runner.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import fcdd
import fcdd.export as export_module
from fcdd.cli import main
from fcdd.config import Config
from fcdd.export import FORMATS, OUTPUTS, REQUIRES, SUFFIXES, ExportError, check_exportable

#: dynamo-based exports take seconds each on a small CPU
SLOW_FORMATS = {"onnx", "openvino"}


@dataclass
class Exported:
    fmt: str
    out: Path
    printed: dict
    caught: list[warnings.WarningMessage]


@dataclass
class Opened:
    """A written model as its own runtime sees it."""

    inputs: list[str]
    outputs: list[str]
    dynamic_batch: bool
    metadata: dict
    run: Callable[[torch.Tensor], tuple[np.ndarray, np.ndarray]]


def skip_without_extra(fmt: str) -> None:
    extra, modules = REQUIRES[fmt]
    for name in modules:
        pytest.importorskip(name, reason=f"--format {fmt} needs the '{extra}' extra (pip install 'fcdd[{extra}]')")


@pytest.fixture(scope="module")
def test_batch(tiny_run) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    detector = fcdd.load(tiny_run.out, device="cpu")
    images = detector.prepare(tiny_run.evaluation.paths[:5])
    scores, heatmaps = detector.forward(images)
    return images, scores, heatmaps


@pytest.fixture(scope="module", params=[pytest.param(f, marks=[pytest.mark.slow] if f in SLOW_FORMATS else [])
                                        for f in FORMATS])
def exported(request, tiny_run, tmp_path_factory) -> Exported:
    """One export per format through the command line: the printed report and every warning."""
    fmt = request.param
    skip_without_extra(fmt)
    out = tmp_path_factory.mktemp(f"export_{fmt}") / f"model{SUFFIXES[fmt]}"
    stdout = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(stdout):
        warnings.simplefilter("always")
        assert main(["export", str(tiny_run.out), "--format", fmt, "--out", str(out)]) == 0
    return Exported(fmt, out, json.loads(stdout.getvalue()), list(caught))


def open_model(fmt: str, path: Path) -> Opened:
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (image_input,) = session.get_inputs()
        return Opened([image_input.name], [o.name for o in session.get_outputs()], image_input.shape[0] == "batch",
                      json.loads(session.get_modelmeta().custom_metadata_map["fcdd"]),
                      lambda x: tuple(session.run(list(OUTPUTS), {"images": x.numpy()})))
    if fmt == "openvino":
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(path))
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})

        def run(x: torch.Tensor):
            result = compiled({"images": x.numpy()})
            return tuple(result[name] for name in OUTPUTS)

        return Opened([n for i in model.inputs for n in i.get_names()], [o.get_any_name() for o in model.outputs],
                      model.inputs[0].get_partial_shape()[0].is_dynamic, json.loads(model.get_rt_info("fcdd").astype(str)), run)
    if fmt == "pt2":
        extra = {"fcdd.json": ""}
        program = torch.export.load(str(path), extra_files=extra)
        module = program.module()
        with torch.no_grad():
            names = list(module(torch.rand(2, 3, 32, 32)))

        def run(x: torch.Tensor):
            with torch.no_grad():
                result = module(x)
            return tuple(result[name].numpy() for name in OUTPUTS)

        batch = program.graph_signature.user_inputs[0]
        dynamic = isinstance(next(n for n in program.graph.nodes if n.name == batch).meta["val"].shape[0], torch.SymInt)
        return Opened(list(program.graph_signature.user_inputs), names, dynamic, json.loads(extra["fcdd.json"]), run)
    extra = {"fcdd.json": ""}
    module = torch.jit.load(str(path), _extra_files=extra)
    meta = json.loads(extra["fcdd.json"])

    def run(x: torch.Tensor):
        with torch.no_grad():
            return tuple(t.numpy() for t in module(x))

    # a traced module returns a plain tuple: its order is what the metadata lists
    return Opened([meta["input"]["name"]], list(meta["outputs"]), True, meta, run)


def test_printed_parity_is_within_1e4_and_the_report_lies_beside(exported, tiny_run):
    printed = exported.printed
    assert printed["ok"] and printed["format"] == exported.fmt
    assert printed["max_abs_diff_scores"] <= 1e-4 and printed["max_abs_diff_heatmaps"] <= 1e-4
    assert all(Path(f).is_file() for f in printed["files"]) and printed["bytes"] > 0
    report = json.loads(Path(str(exported.out) + ".json").read_text())
    assert report["batches"] == [3, 1] and report["max_abs_diff_scores"] == printed["max_abs_diff_scores"]
    meta = report["metadata"]
    assert meta["format"] == exported.fmt and meta["image_size"] == 32 and meta["input"]["shape"][0] == "batch"
    assert meta["threshold"] == pytest.approx(tiny_run.metrics["thresholds"]["image"]["threshold"])
    assert meta["heatmap_range"] is not None and list(meta["outputs"]) == ["scores", "heatmaps"]


def test_the_file_gives_pytorch_outputs_by_name_for_batches_of_1_and_3(exported, test_batch, tiny_run):
    opened = open_model(exported.fmt, exported.out)
    assert opened.inputs == ["images"] and opened.outputs == ["scores", "heatmaps"] and opened.dynamic_batch
    images, scores, heatmaps = test_batch  # real test images, batch sizes the parity check did not use first
    for n in (1, 3, 5):
        got_scores, got_maps = opened.run(images[:n])
        assert got_scores.shape == (n,) and got_maps.shape == (n, 1, 32, 32)
        np.testing.assert_allclose(got_scores, scores[:n].numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(got_maps, heatmaps[:n].numpy(), atol=1e-4, rtol=0)
    assert np.abs(opened.run(images)[0] - tiny_run.evaluation.scores[:5]).max() <= 1e-4
    beside = json.loads(Path(str(exported.out) + ".json").read_text())["metadata"]
    assert opened.metadata == beside and opened.metadata["net"] == "cnn32" and opened.metadata["channels"] == 3


def test_modern_exports_raise_no_deprecation_warnings(exported):
    if exported.fmt == "torchscript":
        pytest.skip("TorchScript is deprecated by PyTorch itself; its warnings are left visible (pt2 replaces it)")
    notices = [w for w in exported.caught if issubclass(w.category, (DeprecationWarning, FutureWarning))]
    assert not notices, [f"{w.category.__name__}: {w.message} ({w.filename})" for w in notices]


def test_default_output_lies_beside_the_snapshot(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(Path(tiny_run.out) / "snapshot.pt", run / "snapshot.pt")
    assert main(["export", str(run), "--format", "pt2"]) == 0
    assert (run / "model.pt2").is_file() and (run / "model.pt2.json").is_file()


def test_failed_parity_prints_the_figures_and_exits_2(tiny_run, tmp_path, capsys):
    out = tmp_path / "m.pt2"
    assert main(["export", str(tiny_run.out), "--format", "pt2", "--out", str(out), "--tolerance", "-1"]) == 2
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert not printed["ok"] and printed["allowed_diff_scores"] < 0
    assert "differs from PyTorch in scores" in captured.err and "kept for inspection" in captured.err
    assert not json.loads(Path(str(out) + ".json").read_text())["ok"]


def test_unusable_requests_are_clear_errors(tiny_run, tmp_path, capsys, monkeypatch):
    run = str(tiny_run.out)
    assert main(["export", run, "--format", "pt2", "--out", str(tmp_path / "m.bin")]) == 2
    assert "must end in .pt2" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing"), "--format", "pt2"]) == 2
    monkeypatch.setattr(export_module, "_installed", lambda name: name != "openvino")
    assert main(["export", run, "--format", "openvino", "--out", str(tmp_path / "m.xml")]) == 2
    assert "pip install 'fcdd[openvino]'" in capsys.readouterr().err and not (tmp_path / "m.xml").exists()

    def cannot_capture(*args, **kwargs):
        raise RuntimeError("Cannot access data pointer of Tensor\nmore detail")

    monkeypatch.setattr(torch.export, "export", cannot_capture)
    assert main(["export", run, "--format", "pt2", "--out", str(tmp_path / "m.pt2")]) == 2
    assert "pt2 export of objective 'fcdd' failed: RuntimeError: Cannot access data pointer" in capsys.readouterr().err


def test_gradient_heatmaps_are_refused(synthetic_root, tmp_path, capsys):
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
    assert main(["export", str(run.out), "--format", "pt2", "--out", str(tmp_path / "hsc.pt2")]) == 2
    assert "computes its heatmaps from input gradients" in capsys.readouterr().err
    assert not (tmp_path / "hsc.pt2").exists()


@pytest.mark.slow
def test_per_image_standardisation_survives_onnx_export():
    """The standardisation lives in the net's forward, so an exported model must repeat it."""
    skip_without_extra("onnx")
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
