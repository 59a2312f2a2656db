"""``fcdd export RUN --format onnx|pt2|openvino|torchscript [--out FILE]``: a deployable model,
parity-checked against PyTorch; the figures are printed as one JSON line, also when they fail."""

from __future__ import annotations

import json

from fcdd.commands.base import add_trust_flag, command
from fcdd.export import FORMATS, OUTPUTS, SUFFIXES, ParityError, export

PRINTED = ("format", "path", "files", "bytes", *(f"max_abs_diff_{k}" for k in OUTPUTS),
           *(f"allowed_diff_{k}" for k in OUTPUTS), "tolerance", "ok")


def _arguments(p) -> None:
    p.add_argument("run", help="run folder (or its snapshot.pt)")
    p.add_argument("--format", required=True, choices=FORMATS,
                   help="onnx (extra 'export'), pt2 (torch.export), openvino (extra 'openvino', IR .xml + .bin) "
                        "or torchscript (deprecated by PyTorch; prefer pt2)")
    defaults = ", ".join(f"RUN/model{suffix}" for suffix in SUFFIXES.values())
    p.add_argument("--out", default=None, help=f"model file (default: {defaults})")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest allowed difference from PyTorch, times max(1, largest |value|) of each output "
                        "(absolute up to 1, relative above; default: 1e-4)")
    add_trust_flag(p)


def _print(report: dict) -> None:
    print(json.dumps({k: report[k] for k in PRINTED}))


@command("export", "export a trained model (scores + heatmaps) to ONNX, pt2, OpenVINO or TorchScript, "
                   "checked against PyTorch", _arguments)
def cmd_export(args) -> None:
    try:
        report = export(args.run, args.format, args.out, args.tolerance)
    except ParityError as err:
        _print(err.report)  # the figures that failed, then the error (exit 2)
        raise
    _print(report)
