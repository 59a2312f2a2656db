"""ImageNet-pretrained vs randomly initialised FCDD backbones on real data, within a CPU budget.

Each run trains and evaluates with ``configs/cpu-fast.yaml``'s settings, changing only the net
and whether ImageNet weights are loaded, and records image / pixel AUROC, the measured training
and total seconds (wall clock, on a shared machine) and the config used. Runs go one after
another; results are rewritten after each so an interrupted benchmark keeps what it finished.

    .venv/bin/python benchmarks/pretrained.py --data /work/shared/data/magnetic_tile
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from fcdd.config import Config
from fcdd.io import atomic_write_json
from fcdd.run import execute

ROOT = Path(__file__).resolve().parents[1]
#: name -> changes to the base config
RUNS = {
    "mobilenetv2_imagenet": {"net": "mobilenetv2", "pretrained": "auto"},
    "mobilenetv2_random": {"net": "mobilenetv2", "pretrained": "none"},
    "efficientnet_lite0_imagenet": {"net": "efficientnet_lite0", "pretrained": "auto"},
    "efficientnet_lite0_random": {"net": "efficientnet_lite0", "pretrained": "none"},
}
BUDGET_SECONDS = 15 * 60


def run_one(base: Config, changes: dict) -> dict:
    config = base.replace(**changes)
    started = time.perf_counter()
    run = execute(config)
    wall = time.perf_counter() - started
    m = run.metrics
    seconds = run.history.seconds
    return {
        "image_auroc": m["image_auroc"],
        "pixel_auroc": m["pixel_auroc"],
        "image_auroc_per_defect": m.get("image_auroc_per_defect"),
        "pretrained_loaded": bool(getattr(run.method.net, "pretrained_loaded", False)),
        "train_seconds": m["train_seconds"],
        "seconds_per_epoch": sum(seconds) / len(seconds) if seconds else None,
        "wall_seconds": wall,
        "within_budget": wall <= BUDGET_SECONDS,
        "final_loss": run.history.loss[-1] if run.history.loss else None,
        "config": config.to_dict(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "magnetic_tile"))
    parser.add_argument("--config", default=str(ROOT / "configs" / "cpu-fast.yaml"))
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma separated subset of {', '.join(RUNS)}")
    parser.add_argument("--epochs", type=int, default=None, help="override the config's epochs (smoke tests)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pretrained.json"))
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        parser.error(f"unknown run(s) {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    base = Config.from_yaml(args.config).replace(data=args.data, out=None, report=False)
    if args.epochs is not None:
        base = base.replace(epochs=args.epochs)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    results.setdefault("runs", {})
    results.update(
        data=args.data, base_config=args.config, budget_seconds=BUDGET_SECONDS,
        machine=f"{platform.machine()}, torch {torch.__version__}, {base.threads or torch.get_num_threads()} threads, shared CPU",
    )
    for name in names:
        print(f"== {name}", flush=True)
        results["runs"][name] = run_one(base, RUNS[name])
        r = results["runs"][name]
        print(f"{name}: image AUROC {r['image_auroc']:.4f} pixel AUROC {r['pixel_auroc']:.4f} wall {r['wall_seconds']:.0f}s", flush=True)
        atomic_write_json(out, results)


if __name__ == "__main__":
    main()
