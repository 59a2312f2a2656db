"""Semi-supervised FCDD (a few real defects with ground-truth maps) vs unsupervised confetti.

Both runs see the same data: the real defects used by the semi-supervised run (``--oe-limit``
per defect type) are removed from the test set of both, so the AUROCs compare like for like.
Same config, same epochs, same seed. Writes JSON.

    .venv/bin/python benchmarks/semi_supervised.py --category mvtec_bottle_256 --epochs 20
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import fcdd
from fcdd.config import Config
from fcdd.data import prepare_splits
from fcdd.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--category", default="mvtec_bottle_256")
    parser.add_argument("--config", default=str(ROOT / "configs" / "cpu-fast.yaml"))
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--oe-limit", type=int, default=1, help="real defects per defect type")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "semi_supervised.json"))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="fcdd-semi-"))
    base = Config.from_yaml(args.config).replace(data=str(SHARED / args.category), report=False)
    if args.epochs:
        base = base.replace(epochs=args.epochs)
    semi = base.replace(supervise_mode="noise", noise_mode="mvtec_gt", oe_limit=args.oe_limit, out=str(work / "semi"))
    unsup = base.replace(supervise_mode="malformed_normal", noise_mode="confetti", out=str(work / "unsupervised"))
    splits = prepare_splits(semi)
    results = {}
    for name, config in (("unsupervised_confetti", unsup), ("semi_supervised_gt", semi)):
        run = fcdd.train(config, splits)
        results[name] = {
            "image_auroc": run.metrics["image_auroc"],
            "pixel_auroc": run.metrics["pixel_auroc"],
            "train_seconds": run.metrics["train_seconds"],
            "n_test": run.metrics["n_test"],
            "supervise_mode": config.supervise_mode,
            "noise_mode": config.noise_mode,
        }
        print(name, json.dumps(results[name]))
    payload = {
        "benchmark": "semi-supervised FCDD vs unsupervised confetti",
        "category": args.category,
        "epochs": base.epochs,
        "real_defects_used": splits.notes,
        "config": {k: v for k, v in base.to_dict().items() if k != "out"},
        "results": results,
        "semi_beats_unsupervised_on_pixel_auroc": results["semi_supervised_gt"]["pixel_auroc"] > results["unsupervised_confetti"]["pixel_auroc"],
    }
    atomic_write_json(args.out, payload)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
