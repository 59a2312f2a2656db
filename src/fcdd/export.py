"""Export a trained model to ONNX, a ``torch.export`` program (pt2), OpenVINO IR or TorchScript.

Every exported graph takes a float batch in [0, 1] at the training size (``images``: batch, C,
S, S; the batch axis is dynamic and named ``batch``) and returns ``scores`` (batch,) and
``heatmaps`` (batch, 1, S, S): the net's input normalisation, the anomaly map, its
receptive-field (Gaussian) upsampling and the image score are all inside. Resizing and channel
conversion stay outside, as the metadata says: in the model file (ONNX ``metadata_props``,
``fcdd.json`` among the pt2 / TorchScript extra files, OpenVINO ``rt_info``) and in a ``.json``
file beside it, with the thresholds, the heatmap range and the parity check.

* ``onnx``: ``torch.onnx.export(..., dynamo=True)`` (extra ``export``: onnx, onnxscript, onnxruntime).
* ``pt2``: ``torch.export.export`` + ``torch.export.save``; ``torch.export.load(f).module()(x)``
  returns ``{"scores": ..., "heatmaps": ...}``.
* ``openvino``: the ONNX graph converted with ``openvino.convert_model`` and saved as IR
  (``.xml`` + ``.bin``, full float32 weights; extra ``openvino``). Compile it with
  ``{"INFERENCE_PRECISION_HINT": "f32"}``: the CPU plugin's default bf16 hint moved scores by 3 %.
* ``torchscript``: ``torch.jit.trace``, which PyTorch deprecates (its warning is shown); kept for
  existing users, ``pt2`` replaces it.

Methods whose heatmaps are input gradients (``heatmaps_need_grad``: HSC, gradient attention)
cannot be exported: a forward graph holds no backward pass. ``export`` refuses them with an
error that says so rather than writing a model whose heatmaps would be wrong.

Every export is checked: the written file is loaded again with its own runtime and run on random
batches of 3 and 1 images next to the PyTorch model. The largest absolute differences of scores
and heatmaps are reported; each must stay within ``tolerance * max(1, largest |PyTorch value|)``
of that output, i.e. absolute for values up to 1 and relative for larger ones (FCDD scores are
unbounded).
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fcdd.detector import Detector
from fcdd.io import atomic_write_bytes, atomic_write_json, temp_prefix

FORMATS = ("onnx", "pt2", "openvino", "torchscript")
SUFFIXES = {"onnx": ".onnx", "pt2": ".pt2", "openvino": ".xml", "torchscript": ".torchscript.pt"}
#: file endings the loaders insist on (OpenVINO writes its weights beside the .xml as .bin)
NEEDS_SUFFIX = {"pt2": ".pt2", "openvino": ".xml"}
#: format -> (the extra that installs it, the modules it needs)
REQUIRES = {
    "onnx": ("export", ("onnx", "onnxscript", "onnxruntime")),
    "pt2": (None, ()),
    "openvino": ("openvino", ("onnx", "onnxscript", "openvino")),
    "torchscript": (None, ()),
}
INPUT = "images"
OUTPUTS = ("scores", "heatmaps")
BATCH = "batch"
ONNX_OPSET = 18
#: OpenVINO CPU compile options for exact float32 results (the default hint there is bf16)
OPENVINO_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}
PARITY_BATCHES = (3, 1)

Runner = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class ExportModel(nn.Module):
    """The method as a plain function of the image batch: (scores, heatmaps)."""

    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.method = method

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores, heatmaps = self.method(images)
        return scores, heatmaps


class NamedExportModel(ExportModel):
    """Outputs by name, for formats that keep the Python output structure (pt2)."""

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return dict(zip(OUTPUTS, super().forward(images), strict=True))


class ExportError(ValueError):
    pass


class ParityError(ExportError):
    """The written model differs from PyTorch beyond the tolerance; ``report`` has the figures."""

    def __init__(self, message: str, report: dict) -> None:
        super().__init__(message)
        self.report = report


def check_exportable(detector: Detector) -> None:
    if detector.method.heatmaps_need_grad:
        raise ExportError(
            f"objective {detector.config.objective!r} computes its heatmaps from input gradients, which an exported "
            "graph (ONNX, pt2, OpenVINO, TorchScript) cannot hold; nothing was exported. Use the Python API (fcdd.load) "
            "or `fcdd serve` for this model, or export an FCDD model (forward-only heatmaps)."
        )


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_requirements(fmt: str) -> None:
    """Fail before any work when the format's optional packages are missing, naming the extra."""
    extra, modules = REQUIRES[fmt]
    missing = [name for name in modules if not _installed(name)]
    if missing:
        raise ExportError(f"--format {fmt} needs {', '.join(missing)}: pip install 'fcdd[{extra}]'")


def metadata(detector: Detector, fmt: str) -> dict:
    config = detector.config
    (height, width), channels = detector.image_shape, detector.in_channels
    meta = {
        "format": fmt,
        "objective": config.objective,
        "net": config.net,
        "image_size": detector.image_size,
        "image_shape": [height, width],
        "channels": channels,
        "input": {"name": INPUT, "shape": [BATCH, channels, height, width], "dtype": "float32", "range": [0.0, 1.0],
                  "preprocessing": f"decode, convert to {'grey (L)' if channels == 1 else 'RGB'}, "
                                   f"resize to {width}x{height} (width x height; bilinear, PIL), divide by 255"},
        "outputs": {"scores": [BATCH], "heatmaps": [BATCH, 1, height, width]},
        "threshold": detector.threshold,
        "pixel_threshold": detector.pixel_threshold,
        "heatmap_range": detector.heatmap_range,
        "normalisation": detector.calibration.get("normalisation"),
        "verdict": "anomalous when score >= threshold",
        "snapshot": detector.snapshot.get("path"),
        "torch": torch.__version__,
    }
    if fmt == "openvino":
        meta["compile_config"] = OPENVINO_CONFIG
    return meta


@contextmanager
def _exporter_notices() -> Iterator[None]:
    """Hide two notices of torch 2.13's own exporter internals that no caller can act on: the
    FutureWarning its ``run_decompositions`` raises by deep-copying a pytree ``LeafSpec``, and
    the log lines about torchvision operators (fcdd uses none). Everything else shows."""
    registry = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry.level
    registry.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                    category=FutureWarning)
            yield
    finally:
        registry.setLevel(level)


def _dynamic_batch() -> dict:
    return {INPUT: {0: torch.export.Dim(BATCH, min=1)}}


def _torchscript(model: nn.Module, example: torch.Tensor, meta: dict) -> bytes:
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer's notes on Python ints read from shapes: every size but the batch is fixed here
        # (the parity check runs two batch sizes); PyTorch's deprecation of tracing is left visible
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model.eval(), example, check_trace=False)  # eval: see _onnx
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={"fcdd.json": json.dumps(meta)})
    return buffer.getvalue()


def _onnx(model: nn.Module, example: torch.Tensor, meta: dict) -> bytes:
    import onnx

    # exporting a module left in training mode runs batch norm in training mode, which both
    # exports the wrong statistics path and updates the running statistics of the live model
    model.eval()
    with _exporter_notices():
        program = torch.onnx.export(
            model, (example,), dynamo=True, input_names=[INPUT], output_names=list(OUTPUTS),
            dynamic_shapes=_dynamic_batch(), opset_version=ONNX_OPSET, verbose=False,
        )
    program.model.metadata_props.update({"fcdd": json.dumps(meta), "threshold": str(meta["threshold"])})
    proto = program.model_proto
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _pt2(model: ExportModel, example: torch.Tensor, meta: dict) -> bytes:
    named = NamedExportModel(model.method).eval()
    with _exporter_notices():
        program = torch.export.export(named, (example,), dynamic_shapes=_dynamic_batch())
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={"fcdd.json": json.dumps(meta)})
    return buffer.getvalue()


def _openvino_ir(model: nn.Module, example: torch.Tensor, meta: dict, out: Path) -> list[Path]:
    """Convert the (checked) ONNX graph, so names and the dynamic batch come from one exporter."""
    import openvino as ov

    converted = ov.convert_model(io.BytesIO(_onnx(model, example, meta)))
    converted.set_rt_info(json.dumps(meta), "fcdd")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=temp_prefix(out), suffix=".tmp"))
    try:
        # full float32 weights: save_model halves them by default, which breaks parity
        ov.save_model(converted, str(staging / out.name), compress_to_fp16=False)
        weights = out.with_suffix(".bin")
        os.replace(staging / weights.name, weights)  # weights first: the .xml is what readers open
        os.replace(staging / out.name, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out, weights]


def write(fmt: str, model: nn.Module, example: torch.Tensor, meta: dict, out: Path) -> list[Path]:
    """The model files of ``fmt`` at ``out`` (OpenVINO adds the ``.bin`` beside the ``.xml``)."""
    if fmt == "openvino":
        return _openvino_ir(model, example, meta, out)
    to_bytes = {"onnx": _onnx, "pt2": _pt2, "torchscript": _torchscript}[fmt]
    atomic_write_bytes(out, to_bytes(model, example, meta))
    return [out]


def _tensors(*arrays) -> tuple[torch.Tensor, ...]:
    return tuple(torch.tensor(np.asarray(a)) for a in arrays)  # a copy: runtimes may hand out read-only buffers


def runner(fmt: str, path: Path) -> Runner:
    """A function images -> (scores, heatmaps) from the written file, each output fetched by name."""
    path = Path(path)
    if fmt == "torchscript":
        module = torch.jit.load(str(path), map_location="cpu").eval()

        def run(images: torch.Tensor):
            with torch.no_grad():
                return module(images)

        return run
    if fmt == "pt2":
        program = torch.export.load(str(path)).module()

        def run(images: torch.Tensor):
            with torch.no_grad():
                outputs = program(images)
            return tuple(outputs[name] for name in OUTPUTS)

        return run
    if fmt == "openvino":
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", OPENVINO_CONFIG)

        def run(images: torch.Tensor):
            outputs = compiled({INPUT: images.numpy()})
            return _tensors(*(outputs[name] for name in OUTPUTS))

        return run
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(images: torch.Tensor):
        return _tensors(*session.run(list(OUTPUTS), {INPUT: images.numpy()}))

    return run


def parity(detector: Detector, run: Runner, batches: tuple[int, ...] = PARITY_BATCHES, seed: int = 0) -> dict:
    """Largest absolute differences between the exported model and PyTorch on random batches,
    and each output's scale (the largest PyTorch magnitude, at least 1) for the tolerance."""
    generator = torch.Generator().manual_seed(seed)
    worst = dict.fromkeys(OUTPUTS, 0.0)
    scale = dict.fromkeys(OUTPUTS, 1.0)
    for n in batches:
        images = torch.rand(n, detector.in_channels, *detector.image_shape, generator=generator)
        expected = detector.forward(images)
        got = run(images)
        for key, a, b in zip(OUTPUTS, expected, got, strict=True):
            if tuple(a.shape) != tuple(b.shape):
                raise ExportError(f"exported {key} have shape {tuple(b.shape)}, PyTorch gives {tuple(a.shape)} (batch {n})")
            worst[key] = max(worst[key], float((a.float() - b.float()).abs().max()))
            scale[key] = max(scale[key], float(a.float().abs().max()))
    return {**{f"max_abs_diff_{k}": worst[k] for k in OUTPUTS}, **{f"scale_{k}": scale[k] for k in OUTPUTS},
            "batches": list(batches)}


def judge(check: dict, tolerance: float) -> dict:
    """Allowed difference per output (``tolerance`` x its scale) and whether all stay within."""
    allowed = {f"allowed_diff_{k}": tolerance * check[f"scale_{k}"] for k in OUTPUTS}
    ok = all(check[f"max_abs_diff_{k}"] <= allowed[f"allowed_diff_{k}"] for k in OUTPUTS)
    return {**allowed, "tolerance": tolerance, "ok": ok}


def _failure(out: Path, fmt: str, report: dict) -> str:
    worst = [f"{k} by {report[f'max_abs_diff_{k}']:.3g} (allowed {report[f'allowed_diff_{k}']:.3g})" for k in OUTPUTS
             if report[f"max_abs_diff_{k}"] > report[f"allowed_diff_{k}"]]
    return (f"{out}: the exported {fmt} model differs from PyTorch in {', '.join(worst)}; allowed is tolerance "
            f"{report['tolerance']:g} x max(1, largest |value|). The file is kept for inspection")


def _capture(fmt: str, objective: str, produce: Callable[[], list[Path]]) -> list[Path]:
    """Run an exporter; its failures (an operator it cannot capture, say) become an ExportError."""
    try:
        return produce()
    except (ExportError, ImportError):
        raise
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ExportError(f"{fmt} export of objective {objective!r} failed: {type(err).__name__}: {first}") from err


def export(run_or_snapshot: str | Path, fmt: str, out: str | Path | None = None, tolerance: float = 1e-4) -> dict:
    """Write the exported model (default: beside the snapshot) and return a report with the parity check."""
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    check_requirements(fmt)
    detector = Detector.load(run_or_snapshot, device="cpu")
    check_exportable(detector)
    out = Path(out) if out else Path(detector.snapshot["path"]).parent / f"model{SUFFIXES[fmt]}"
    if fmt in NEEDS_SUFFIX and out.suffix != NEEDS_SUFFIX[fmt]:
        raise ExportError(f"--out for {fmt} must end in {NEEDS_SUFFIX[fmt]} (what its loader accepts), got {out}")
    meta = metadata(detector, fmt)
    model = ExportModel(detector.method)  # every writer puts it in eval mode
    example = torch.rand(2, detector.in_channels, *detector.image_shape,
                         generator=torch.Generator().manual_seed(1))
    started = time.perf_counter()
    files = _capture(fmt, detector.config.objective, lambda: write(fmt, model, example, meta, out))
    check = parity(detector, runner(fmt, out))
    report = {"format": fmt, "path": str(out), "files": [str(f) for f in files], "bytes": sum(f.stat().st_size for f in files),
              "seconds": round(time.perf_counter() - started, 3), **check, **judge(check, tolerance), "metadata": meta}
    atomic_write_json(out.with_name(out.name + ".json"), report)
    if not report["ok"]:
        raise ParityError(_failure(out, fmt, report), report)
    return report
