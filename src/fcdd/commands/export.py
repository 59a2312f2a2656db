"""``fcdd export RUN --format torchscript|onnx [--out FILE]``: a deployable model, parity-checked."""

from __future__ import annotations

import json

from fcdd.commands.base import command
from fcdd.export import export


def _arguments(p) -> None:
    p.add_argument("run", help="run folder (or its snapshot.pt)")
    p.add_argument("--format", required=True, choices=("torchscript", "onnx"), help="model file format")
    p.add_argument("--out", default=None, help="model file (default: RUN/model.torchscript.pt or RUN/model.onnx)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed difference from PyTorch (default: 1e-4)")


@command("export", "export a trained model (scores + heatmaps) to TorchScript or ONNX, checked against PyTorch", _arguments)
def cmd_export(args) -> None:
    report = export(args.run, args.format, args.out, args.tolerance)
    print(json.dumps({k: report[k] for k in ("path", "bytes", "max_abs_diff_scores", "max_abs_diff_heatmaps", "tolerance", "ok")}))
