"""ImageNet-pretrained vs randomly initialised FCDD backbones on real data, within a CPU budget.

Each run trains and evaluates with ``configs/cpu-fast.yaml``'s settings, changing only the net
and whether ImageNet weights are loaded, and records image / pixel AUROC, the measured training
and total seconds (wall clock, on a shared machine) and the config used. Runs go one after
another; results are rewritten after each so an interrupted benchmark keeps what it finished.
With ``--seeds`` every setting runs once per seed and the JSON gives each seed's figures and
their mean and standard deviation (one seed's AUROC moves by a few hundredths on this data).

    .venv/bin/python benchmarks/pretrained.py --data /work/shared/data/magnetic_tile --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from fcdd.config import Config
from fcdd.io import atomic_write_json
from fcdd.training import execute

ROOT = Path(__file__).resolve().parents[1]
#: name -> changes to the base config
RUNS = {
    "mobilenetv2_imagenet": {"net": "mobilenetv2", "pretrained": "auto"},
    "mobilenetv2_random": {"net": "mobilenetv2", "pretrained": "none"},
    "efficientnet_lite0_imagenet": {"net": "efficientnet_lite0", "pretrained": "auto"},
    "efficientnet_lite0_random": {"net": "efficientnet_lite0", "pretrained": "none"},
    "efficientnet_lite0_ms_imagenet": {"net": "efficientnet_lite0_ms", "pretrained": "auto"},
    "efficientnet_lite0_ms_random": {"net": "efficientnet_lite0_ms", "pretrained": "none"},
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
    parser.add_argument("--seeds", default="0", help="comma separated seeds; each setting runs once per seed")
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
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    for name in names:
        per_seed = {}
        for seed in seeds:
            print(f"== {name}, seed {seed}", flush=True)
            r = per_seed[str(seed)] = run_one(base, {**RUNS[name], "seed": seed})
            print(f"{name} seed {seed}: image AUROC {r['image_auroc']:.4f} pixel AUROC {r['pixel_auroc']:.4f} wall {r['wall_seconds']:.0f}s", flush=True)
            results["runs"][name] = summarise(per_seed)
            atomic_write_json(out, results)


def summarise(per_seed: dict[str, dict]) -> dict:
    """Mean and spread over the seeds run so far, with every seed's own figures."""
    summary: dict = {"seeds": per_seed}
    for key in ("image_auroc", "pixel_auroc", "wall_seconds"):
        values = [r[key] for r in per_seed.values()]
        summary[f"{key}_mean"] = statistics.fmean(values)
        summary[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    summary["within_budget"] = all(r["within_budget"] for r in per_seed.values())
    return summary


if __name__ == "__main__":
    main()
