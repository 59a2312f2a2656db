"""Export a trained model to TorchScript or ONNX, heatmap upsampling included.

The exported graph takes a float batch in [0, 1] at the training size (N, C, S, S; the batch
axis is dynamic) and returns ``scores`` (N,) and ``heatmaps`` (N, 1, S, S): the net's input
normalisation, the anomaly map and its receptive-field upsampling are all inside. Resizing and
channel conversion stay outside, as documented in the metadata (``fcdd.json`` in TorchScript's
extra files, ``metadata_props`` in ONNX, and a ``.json`` file beside the model).

Methods whose heatmaps are input gradients (``heatmaps_need_grad``: HSC, gradient attention)
cannot be exported: a traced graph holds no backward pass. ``export`` refuses them with an error
that says so rather than writing a model whose heatmaps would be wrong.

Every export is checked: the written file is loaded again and run on random batches of two
sizes next to the PyTorch model; the largest absolute differences are reported and must stay
within ``tolerance``.
"""

from __future__ import annotations

import io
import json
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from fcdd.detector import Detector
from fcdd.io import atomic_write_bytes, atomic_write_json

FORMATS = ("torchscript", "onnx")
SUFFIXES = {"torchscript": ".torchscript.pt", "onnx": ".onnx"}
ONNX_OPSET = 17


class ExportModel(nn.Module):
    """The method as a plain function of the image batch: (scores, heatmaps)."""

    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.method = method

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores, heatmaps = self.method(images)
        return scores, heatmaps


class ExportError(ValueError):
    pass


def check_exportable(detector: Detector) -> None:
    if detector.method.heatmaps_need_grad:
        raise ExportError(
            f"objective {detector.config.objective!r} computes its heatmaps from input gradients, which an exported "
            "TorchScript/ONNX graph cannot hold; nothing was exported. Use the Python API (fcdd.load) or `fcdd serve` "
            "for this model, or export an FCDD model (forward-only heatmaps)."
        )


def metadata(detector: Detector, fmt: str) -> dict:
    config = detector.config
    return {
        "format": fmt,
        "objective": config.objective,
        "net": config.net,
        "image_size": detector.image_size,
        "channels": detector.in_channels,
        "input": {"name": "images", "shape": ["N", detector.in_channels, detector.image_size, detector.image_size],
                  "dtype": "float32", "range": [0.0, 1.0],
                  "preprocessing": f"decode, convert to {'grey (L)' if detector.in_channels == 1 else 'RGB'}, "
                                   f"resize to {detector.image_size}x{detector.image_size} (bilinear, PIL), divide by 255"},
        "outputs": {"scores": ["N"], "heatmaps": ["N", 1, detector.image_size, detector.image_size]},
        "threshold": detector.threshold,
        "pixel_threshold": detector.pixel_threshold,
        "heatmap_range": detector.heatmap_range,
        "verdict": "anomalous when score >= threshold",
        "snapshot": detector.snapshot.get("path"),
    }


def _torchscript(model: nn.Module, example: torch.Tensor, meta: dict) -> bytes:
    with torch.no_grad(), warnings.catch_warnings():
        # tracer notes about Python ints from shapes (sizes are fixed here) and TorchScript's deprecation notice
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model.eval(), example, check_trace=False)  # eval: see _onnx
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={"fcdd.json": json.dumps(meta)})
    return buffer.getvalue()


def _onnx(model: nn.Module, example: torch.Tensor, meta: dict) -> bytes:
    import onnx

    buffer = io.BytesIO()
    # exporting a module left in training mode runs batch norm in training mode, which both
    # exports the wrong statistics path and updates the running statistics of the live model
    model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), buffer, input_names=["images"], output_names=["scores", "heatmaps"],
            dynamic_axes={"images": {0: "batch"}, "scores": {0: "batch"}, "heatmaps": {0: "batch"}},
            opset_version=ONNX_OPSET, dynamo=False,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in (("fcdd", json.dumps(meta)), ("threshold", str(meta["threshold"]))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def runner(fmt: str, path: Path):
    """A function images (numpy/tensor) -> (scores, heatmaps) tensors, from the written file."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu").eval()

        def run(images: torch.Tensor):
            with torch.no_grad():
                return module(images)

        return run
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(images: torch.Tensor):
        scores, heatmaps = session.run(["scores", "heatmaps"], {"images": images.numpy()})
        return torch.from_numpy(scores), torch.from_numpy(heatmaps)

    return run


def parity(detector: Detector, run, batches: tuple[int, ...] = (3, 1), seed: int = 0) -> dict:
    """Largest absolute differences between the exported model and PyTorch on random batches."""
    generator = torch.Generator().manual_seed(seed)
    worst = {"scores": 0.0, "heatmaps": 0.0}
    for n in batches:
        images = torch.rand(n, detector.in_channels, detector.image_size, detector.image_size, generator=generator)
        expected = detector.forward(images)
        got = run(images)
        for key, a, b in zip(("scores", "heatmaps"), expected, got, strict=True):
            if tuple(a.shape) != tuple(b.shape):
                raise ExportError(f"exported {key} have shape {tuple(b.shape)}, PyTorch gives {tuple(a.shape)} (batch {n})")
            worst[key] = max(worst[key], float((a.float() - b.float()).abs().max()))
    return {"max_abs_diff_scores": worst["scores"], "max_abs_diff_heatmaps": worst["heatmaps"], "batches": list(batches)}


def export(run_or_snapshot: str | Path, fmt: str, out: str | Path | None = None, tolerance: float = 1e-4) -> dict:
    """Write the exported model (default: beside the snapshot) and return a report with the parity check."""
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    detector = Detector.load(run_or_snapshot, device="cpu")
    check_exportable(detector)
    snapshot_path = Path(detector.snapshot["path"])
    out = Path(out) if out else snapshot_path.parent / f"model{SUFFIXES[fmt]}"
    meta = metadata(detector, fmt)
    model = ExportModel(detector.method)  # _torchscript and _onnx put it in eval mode
    example = torch.rand(2, detector.in_channels, detector.image_size, detector.image_size, generator=torch.Generator().manual_seed(1))
    started = time.perf_counter()
    data = _torchscript(model, example, meta) if fmt == "torchscript" else _onnx(model, example, meta)
    atomic_write_bytes(out, data)
    check = parity(detector, runner(fmt, out))
    report = {"path": str(out), "bytes": len(data), "seconds": round(time.perf_counter() - started, 3), **check,
              "tolerance": tolerance, "ok": max(check["max_abs_diff_scores"], check["max_abs_diff_heatmaps"]) <= tolerance,
              "metadata": meta}
    atomic_write_json(out.with_name(out.name + ".json"), report)
    if not report["ok"]:
        raise ExportError(f"{out}: exported model differs from PyTorch by up to "
                          f"{max(check['max_abs_diff_scores'], check['max_abs_diff_heatmaps']):.3g} (> tolerance {tolerance:g})")
    return report
