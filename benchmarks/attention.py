"""Gradient-attention AE on every real category: which layer, input, architecture and training localise.

Every category under ``../shared/data`` (``discover_categories``) is trained once per training
setting (architecture x ``--attention-training``) with one small CPU budget (about ``--images``
training images a run, 64 px, width 0.5, random init); each trained model is then evaluated
for every inference setting (``--layer`` x ``--attention-input``) without retraining, since
those change only how the map is computed. Per setting: image AUROC, pixel AUROC and pixel
AUPRO. The best setting per set, one default best on average over all sets, and a
leave-one-out check of that choice (chosen on the other sets, measured on the held-out one)
are written with the grid.

    .venv/bin/python benchmarks/attention.py --out benchmarks/results/attention.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

from fcdd.config import Config
from fcdd.data.mvtec import discover_categories
from fcdd.evaluation import evaluate
from fcdd.io import atomic_write_json
from fcdd.training import execute

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TRAINING = [("vae", False), ("vae", True), ("unet", True)]
LAYERS = ["encoder.1", "encoder.2"]
INPUTS = ["image", "residual"]
METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro")


def base_config(category: Path, images: int, threads: int, size: int = 64) -> Config:
    n_train = sum(1 for p in (category / "train" / "good").iterdir() if p.is_file())
    return Config(
        objective="attention-ae", dataset="mvtec", data=str(category), image_size=size, width=0.5, pretrained="none",
        supervise_mode="unsupervised", epochs=max(1, math.ceil(images / max(1, n_train))), batch_size=16,
        eval_batch_size=32, report=False, device="cpu", threads=threads, precision="fp32", out=None,
    )


def key(arch: str, trained: bool, layer: str, source: str, size: int = 64) -> str:
    return f"{arch}@{size}|attention_training={int(trained)}|{layer}|{source}"


def run_category(category: Path, images: int, threads: int, training: list, size: int = 64) -> dict[str, dict]:
    """Metrics of every grid setting on one category."""
    results: dict[str, dict] = {}
    for arch, trained in training:
        config = base_config(category, images, threads, size).replace(arch=arch, attention_training=trained)
        t0 = time.perf_counter()
        run = execute(config)
        train_seconds = time.perf_counter() - t0
        method = run.method
        for layer in LAYERS:
            for source in INPUTS:
                method.layer, method.attention_input = layer, source
                ev = evaluate(method, run.splits.test, config.eval_batch_size, "cpu", progress=False)
                row = {name: getattr(ev, name) for name in METRICS}
                results[key(arch, trained, layer, source, size)] = {**row, "epochs": config.epochs, "train_seconds": train_seconds}
                print(category.name, key(arch, trained, layer, source, size), {k: round(v or 0, 3) for k, v in row.items()}, flush=True)
    return results


def mean_of(results: dict[str, dict[str, dict]], setting: str, sets: list[str], metric: str = "pixel_auroc") -> float:
    return sum(results[s][setting][metric] or 0.0 for s in sets) / len(sets)


def choose(results: dict[str, dict[str, dict]]) -> dict:
    """Best per set, the default best on average, and its leave-one-out check (all by pixel AUROC)."""
    sets = sorted(results)
    settings = sorted(set.intersection(*(set(results[s]) for s in sets)))
    best_per_set = {s: max(settings, key=lambda k, s=s: results[s][k]["pixel_auroc"] or 0.0) for s in sets}
    default = max(settings, key=lambda k: mean_of(results, k, sets))
    loo = {}
    for held in sets:
        others = [s for s in sets if s != held] or sets
        chosen = max(settings, key=lambda k: mean_of(results, k, others))
        loo[held] = {"chosen": chosen, "pixel_auroc": results[held][chosen]["pixel_auroc"]}
    return {
        "best_per_set": {s: {"setting": k, **{m: results[s][k][m] for m in METRICS}} for s, k in best_per_set.items()},
        "default": default,
        "default_mean": {m: mean_of(results, default, sets, m) for m in METRICS},
        "leave_one_out": loo,
        "leave_one_out_mean_pixel_auroc": sum(v["pixel_auroc"] or 0.0 for v in loo.values()) / len(loo),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=250, help="training images per run (epochs = images / set size)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sets", default="", help="comma-separated category names (default: all found)")
    parser.add_argument("--training", default="", help="subset of the training grid, e.g. vae:0,vae:1")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--append", action="store_true", help="add to the grid already in --out")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "attention.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    categories = discover_categories(SHARED)
    if args.sets:
        by_name = {c.name: c for c in categories}
        categories = [by_name[name] for name in args.sets.split(",") if name in by_name]  # in the order given
    training = TRAINING
    if args.training:
        training = [(a, bool(int(t))) for a, t in (item.split(":") for item in args.training.split(","))]
    started = time.perf_counter()
    previous = json.loads(Path(args.out).read_text()) if args.append and Path(args.out).is_file() else {}
    results: dict[str, dict] = previous.get("results", {})
    grid = previous.get("grid", {"training": []})
    grid["training"] = grid["training"] + [f"{a}@{args.image_size}:{int(t)}" for a, t in training]
    for category in categories:
        results.setdefault(category.name, {}).update(run_category(category, args.images, args.threads, training, args.image_size))
        report = {
            "note": "REDUCED grid (CPU, time-boxed): 64 px, width 0.5, random init, loss mean, no ssim, "
                    "attention target auto; training grid arch x attention-training, inference grid layer x input; "
                    "no pretrained encoders, no 128-256 px",
            "grid": {**grid, "layers": LAYERS, "inputs": INPUTS, "images_per_run": args.images},
            "results": results,
            "selection": choose(results),
            "total_seconds": time.perf_counter() - started,
            "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": args.threads},
        }
        atomic_write_json(args.out, report)
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
