"""FCDD vs its baselines (HSC, AE, gradient-attention AE): image and pixel AUROC per data set.

Every data set is trained with one small CPU budget shared by all methods: the ``fcdd demo``
setting (64 px, cnn32 at width 0.5, no pretraining, Adam 1e-3, batch 32) with a per-data-set
number of epochs chosen so that each run sees about the same number of training images. FCDD
is trained first; ``fcdd.compare.compare_run`` then re-runs its configuration with the other
objectives (same data, seed and preprocessing; AE and attention-AE unsupervised) and writes
``compare/comparison.png`` and ``compare/metrics.csv`` into the FCDD run folder.

    .venv/bin/python benchmarks/compare_methods.py --out benchmarks/results/compare_methods.json

Run folders go to ``--work`` (default ``runs/compare_methods``, not versioned).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

import fcdd
from fcdd.compare import compare_run
from fcdd.config import Config
from fcdd.demo import DEMO_OPTIONS
from fcdd.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
METHODS = ("hsc", "ae", "attention-ae")
#: epochs per data set: about 2,200-2,700 training images per run (hazelnut_toy has 25)
EPOCHS = {"synthetic": 12, "mvtec_bottle_256": 12, "magnetic_tile": 4, "hazelnut_toy": 40}


def config_for(name: str, work: Path, threads: int) -> Config:
    options = dict(DEMO_OPTIONS, epochs=EPOCHS[name], milestones=[], out=str(work / name / "fcdd"), report=False, threads=threads, device="cpu")
    if name == "synthetic":
        options.update(data=str(work / "data"))
    else:
        options.update(dataset="mvtec", category=None, data=str(SHARED / name))
    return Config(**options)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="synthetic,mvtec_bottle_256,magnetic_tile,hazelnut_toy")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--work", default=str(ROOT / "runs" / "compare_methods"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "compare_methods.json"))
    args = parser.parse_args()
    work = Path(args.work)
    started = time.perf_counter()
    results: dict = {}
    for name in args.datasets.split(","):
        if name != "synthetic" and not (SHARED / name).is_dir():
            print(f"skip {name}: {SHARED / name} not found", file=sys.stderr)
            continue
        config = config_for(name, work, args.threads)
        t0 = time.perf_counter()
        if not (Path(config.out) / "metrics.json").is_file():
            fcdd.train(config)
        runs = compare_run(config.out, args.methods)
        results[name] = {
            "epochs": config.epochs,
            "seconds": time.perf_counter() - t0,
            "figure": str(Path(config.out) / "compare" / "comparison.png"),
            "methods": {
                run.name: {
                    "image_auroc": run.metrics["image_auroc"],
                    "pixel_auroc": run.metrics["pixel_auroc"],
                    "train_seconds": run.metrics.get("train_seconds"),
                    "n_test": run.metrics.get("n_test"),
                }
                for run in runs
            },
        }
        print(name, {k: (round(v["image_auroc"], 3), round(v["pixel_auroc"] or 0, 3)) for k, v in results[name]["methods"].items()}, flush=True)
    names = sorted({m for r in results.values() for m in r["methods"]})
    mean = {
        m: {
            key: sum(r["methods"][m][key] for r in results.values() if r["methods"].get(m, {}).get(key) is not None)
            / max(1, sum(1 for r in results.values() if r["methods"].get(m, {}).get(key) is not None))
            for key in ("image_auroc", "pixel_auroc")
        }
        for m in names
    }
    atomic_write_json(args.out, {
        "setting": {k: v for k, v in config_for("synthetic", work, args.threads).to_dict().items()
                    if k in ("image_size", "net", "width", "pretrained", "batch_size", "lr", "supervise_mode", "noise_mode", "seed")},
        "epochs": {k: v for k, v in EPOCHS.items() if k in results},
        "note": "same configuration and epochs for every method of a data set; ae / attention-ae unsupervised; "
                "attention-ae = VAE, Grad-CAM (abs) at its default layer",
        "results": results,
        "mean": mean,
        "total_seconds": time.perf_counter() - started,
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": args.threads},
    })
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
