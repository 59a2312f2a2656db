"""``fcdd predict RUN IMAGES...|DIR --out DIR``: scores, verdicts and overlays for image files."""

from __future__ import annotations

import sys
from pathlib import Path

from fcdd.commands.base import add_trust_flag, command
from fcdd.data.base import DataError
from fcdd.detector import Detector
from fcdd.predict import predict_files, summary


def add_device_flags(p) -> None:
    p.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, ... (default: auto)")
    p.add_argument("--threshold", type=float, default=None, help="image verdict threshold (default: the calibrated one)")
    p.add_argument("--pixel-threshold", type=float, default=None, help="heatmap threshold of the defect mask (default: calibrated)")
    p.add_argument("--batch-size", type=int, default=None, help="images per forward pass (default: the run's eval_batch_size)")
    p.add_argument("--workers", type=int, default=None, help="threads decoding images (default: up to 4)")


def _arguments(p) -> None:
    p.add_argument("run", help="run folder (or its snapshot.pt)")
    p.add_argument("images", nargs="+", help="image files and/or folders (searched recursively)")
    p.add_argument("--out", required=True, help="folder for predictions.csv and predictions.jsonl (grown batch by batch; a new "
                   "prediction there starts them afresh), predictions.json (written at the end) and overlays/")
    p.add_argument("--no-overlays", dest="overlays", action="store_false", help="do not write overlay PNGs")
    p.add_argument("--masks", action="store_true", help="also write binary defect masks (masks/*.png) at the training size")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_flags(p)
    add_trust_flag(p)


def detector_from_args(args):
    return Detector.load(args.run, device=args.device, threshold=args.threshold, pixel_threshold=args.pixel_threshold,
                         batch_size=args.batch_size, workers=args.workers, trust_pickle=args.trust_pickle)


@command("predict", "score image files with a trained model: predictions.csv/json and overlay PNGs", _arguments)
def cmd_predict(args) -> None:
    detector = detector_from_args(args)
    if detector.threshold is None:
        print("fcdd predict: note: the run has no calibrated threshold (trained with --holdout 0?); "
              "verdicts are empty unless --threshold is given", file=sys.stderr)
    result = predict_files(detector, args.images, args.out, overlays=args.overlays, masks=args.masks, progress=not args.quiet)
    for error in result.errors:
        message = error["error"] if error["path"] in error["error"] else f"{error['path']}: {error['error']}"
        print(f"fcdd predict: skipped {message}", file=sys.stderr)
    if not result.rows:
        raise DataError(f"none of the {len(result.errors)} input(s) could be read as an image")
    print(summary(result, Path(args.out)))
