"""Generalisation benchmark: one FCDD setting on every real category, beside the memory-bank reference.

Every MVTec-style category under ../shared/data is found by ``discover_categories`` (nothing is
listed here), trained with the one config (``configs/cpu-fast.yaml`` unless ``--config``) for
each seed, and scored: image AUROC, pixel AUROC, AUPRO (FPR <= 0.3) and train seconds. PatchCore
with its own defaults (``--objective patchcore``) runs on the same images in the same process as
the reference. Means over categories (of the per-category means over seeds), and per category
FCDD's gap to the reference. Writes JSON and prints a Markdown table.

    .venv/bin/python benchmarks/generalise.py --seeds 3 --out benchmarks/results/generalise.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from fcdd.config import Config
from fcdd.data.mvtec import discover_categories
from fcdd.io import atomic_write_json
from fcdd.training import execute

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
KEYS = ("image_auroc", "pixel_auroc", "pixel_aupro", "train_seconds", "total_seconds")


def score(config: Config) -> dict:
    started = time.perf_counter()
    run = execute(config)
    m = run.metrics
    return {"image_auroc": m["image_auroc"], "pixel_auroc": m["pixel_auroc"], "pixel_aupro": m.get("pixel_aupro"),
            "train_seconds": m["train_seconds"], "total_seconds": time.perf_counter() - started, "seed": config.seed}


def summary(runs: list[dict]) -> dict:
    out = {}
    for key in KEYS:
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = statistics.mean(values) if values else None
        out[f"{key}_std"] = statistics.pstdev(values) if len(values) > 1 else 0.0
    return out


def markdown(rows: list[dict], means: dict) -> str:
    def f(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = ["| category | FCDD image | FCDD pixel | FCDD AUPRO | FCDD train s | PatchCore image | PatchCore pixel | PatchCore AUPRO | PatchCore fit s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        a, b = row["fcdd"], row["patchcore"]
        lines.append(f"| {row['category']} | {f(a['image_auroc'])} ± {f(a['image_auroc_std'])} | {f(a['pixel_auroc'])} ± {f(a['pixel_auroc_std'])} "
                     f"| {f(a['pixel_aupro'])} | {a['train_seconds']:.0f} | {f(b['image_auroc'])} | {f(b['pixel_auroc'])} | {f(b['pixel_aupro'])} "
                     f"| {b['train_seconds']:.0f} |")
    a, b = means["fcdd"], means["patchcore"]
    lines.append(f"| **mean** | {f(a['image_auroc'])} | {f(a['pixel_auroc'])} | {f(a['pixel_aupro'])} | | {f(b['image_auroc'])} "
                 f"| {f(b['pixel_auroc'])} | {f(b['pixel_aupro'])} | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED), help="folder searched for MVTec-style categories")
    parser.add_argument("--config", default=str(ROOT / "configs" / "cpu-fast.yaml"))
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE", help="override an option of the config (repeatable)")
    parser.add_argument("--only", default=None, help="comma-separated category names to run (default: all found)")
    parser.add_argument("--no-reference", action="store_true", help="skip the PatchCore reference")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "generalise.json"))
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    base = Config.from_dict({**Config.from_yaml(args.config).to_dict(), **overrides}, source="--set").replace(report=False)
    categories = discover_categories(args.data)
    if args.only:
        wanted = set(args.only.split(","))
        categories = [c for c in categories if c.name in wanted]
    rows = []
    for folder in categories:
        fcdd_runs = []
        for seed in range(args.seeds):
            result = score(base.replace(data=str(folder), seed=seed))
            print(json.dumps({"category": folder.name, "method": "fcdd", **result}), flush=True)
            fcdd_runs.append(result)
        reference = [] if args.no_reference else [score(Config(data=str(folder), objective="patchcore", report=False))]
        if reference:
            print(json.dumps({"category": folder.name, "method": "patchcore", **reference[0]}), flush=True)
        row = {"category": folder.name, "fcdd": summary(fcdd_runs), "fcdd_runs": fcdd_runs,
               "patchcore": summary(reference) if reference else None}
        if reference:
            row["gap"] = {k: row["fcdd"][k] - row["patchcore"][k] for k in ("image_auroc", "pixel_auroc")
                          if row["fcdd"][k] is not None and row["patchcore"][k] is not None}
        rows.append(row)
    means = {}
    for method in ("fcdd", "patchcore"):
        present = [r[method] for r in rows if r.get(method)]
        means[method] = {k: (statistics.mean([p[k] for p in present if p[k] is not None]) if present else None)
                         for k in ("image_auroc", "pixel_auroc", "pixel_aupro", "train_seconds")}
    payload = {
        "benchmark": "one FCDD setting on every shared category, PatchCore as reference",
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
        "config": {k: v for k, v in base.to_dict().items() if k not in ("data", "out", "seed")},
        "seeds": args.seeds, "categories": rows, "mean": means,
    }
    atomic_write_json(args.out, payload)
    if not args.no_reference:
        print(markdown(rows, means))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
