"""Generalisation benchmark: one FCDD setting on every real category, beside the memory-bank reference.

Every MVTec-style category under ../shared/data is found by ``discover_categories`` (nothing is
listed here), trained with the one config (``configs/cpu-fast.yaml`` unless ``--config``) for
each seed, and scored: image AUROC, pixel AUROC, AUPRO (FPR <= 0.3) and train seconds. PatchCore
with its own defaults (``--objective patchcore``) runs on the same images in the same process as
the reference. Means over categories (of the per-category means over seeds), and per category
FCDD's gap to the reference. Writes JSON and prints a Markdown table.

``--semi``: instead, the paper's semi-supervised test. One real defect per type moves from the
test set to training (``--supervise-mode noise --noise-mode mvtec_gt --oe-limit 1``); the same
setting without them (the config as it is) trains on the same splits, so both are scored on the
same test images. ``--pixel-losses mean,balanced`` runs the semi-supervised setting once per
``--pixel-loss``.

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
from fcdd.data import prepare_splits
from fcdd.data.mvtec import discover_categories
from fcdd.io import atomic_write_json
from fcdd.training import execute

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
KEYS = ("image_auroc", "pixel_auroc", "pixel_aupro", "train_seconds", "total_seconds")


def score(config: Config, splits=None) -> dict:
    started = time.perf_counter()
    run = execute(config, splits)
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
    parser.add_argument("--semi", action="store_true", help="semi-supervised (one real defect per type) vs unsupervised, same test images")
    parser.add_argument("--pixel-losses", default=None,
                        help="--semi: comma-separated --pixel-loss values, one semi-supervised run each (default: the config's)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "generalise.json"))
    parser.add_argument("--resume", action="store_true",
                        help="keep the categories an earlier run with the same config and seeds already wrote to --out")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    base = Config.from_dict({**Config.from_yaml(args.config).to_dict(), **overrides}, source="--set").replace(report=False)
    categories = discover_categories(args.data)
    if args.only:
        wanted = set(args.only.split(","))
        categories = [c for c in categories if c.name in wanted]
    if args.semi:
        return semi_supervised(base, categories, args.seeds, args.out, args.pixel_losses.split(",") if args.pixel_losses else [base.pixel_loss])
    config_dict = {k: v for k, v in base.to_dict().items() if k not in ("data", "out", "seed")}
    done = finished_rows(args.out, config_dict, args.seeds) if args.resume else {}
    rows = []
    for folder in categories:
        if folder.name in done:
            print(f"{folder.name}: kept from {args.out}", flush=True)
            rows.append(done[folder.name])
            continue
        fcdd_runs = []
        for seed in range(args.seeds):
            result = score(base.replace(data=str(folder), seed=seed))
            print(json.dumps({"category": folder.name, "method": base.objective, **result}), flush=True)
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
        write_payload(args, base, config_dict, rows, complete=False)
    write_payload(args, base, config_dict, rows, complete=True)
    if not args.no_reference:
        print(markdown(rows, means_of(rows)))
    print(f"wrote {args.out}")
    return 0


def finished_rows(out: str, config_dict: dict, seeds: int) -> dict[str, dict]:
    """Categories an earlier (possibly killed) run of the same setting wrote, so a rerun skips them."""
    path = Path(out)
    if not path.is_file():
        return {}
    earlier = json.loads(path.read_text())
    if earlier.get("config") != json.loads(json.dumps(config_dict)) or earlier.get("seeds") != seeds:
        print(f"{out} holds another setting or seed count; starting afresh", flush=True)
        return {}
    return {row["category"]: row for row in earlier.get("categories", [])}


def means_of(rows: list[dict]) -> dict:
    means = {}
    for method in ("fcdd", "patchcore"):
        present = [r[method] for r in rows if r.get(method)]
        means[method] = {k: (statistics.mean([p[k] for p in present if p[k] is not None]) if present else None)
                         for k in ("image_auroc", "pixel_auroc", "pixel_aupro", "train_seconds")}
    return means


def write_payload(args, base: Config, config_dict: dict, rows: list[dict], complete: bool) -> None:
    """Written after every category (atomically), so a killed run loses at most the one in progress."""
    payload = {
        # rows keep the key "fcdd" for the configured setting whatever its objective (config.objective)
        "benchmark": f"one {base.objective} setting on every shared category"
                     + ("" if args.no_reference else ", PatchCore as reference"),
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
        "config": config_dict,
        "seeds": args.seeds, "complete": complete, "categories": rows, "mean": means_of(rows),
    }
    atomic_write_json(args.out, payload)


def semi_supervised(base: Config, categories: list[Path], seeds: int, out: str, pixel_losses: list[str]) -> int:
    """Unsupervised and, per ``--pixel-loss`` in ``pixel_losses``, semi-supervised on the same splits."""
    names = ["unsupervised", *(f"semi_supervised_{loss}" for loss in pixel_losses)]
    rows = []
    for folder in categories:
        runs: dict[str, list[dict]] = {name: [] for name in names}
        for seed in range(seeds):
            semi = base.replace(data=str(folder), seed=seed, supervise_mode="noise", noise_mode="mvtec_gt", oe_limit=1)
            splits = prepare_splits(semi)  # the defects it trains on leave the test set, for every run
            configs = [base.replace(data=str(folder), seed=seed), *(semi.replace(pixel_loss=loss) for loss in pixel_losses)]
            for name, config in zip(names, configs, strict=True):
                result = {**score(config, splits), "n_test": len(splits.test)}
                print(json.dumps({"category": folder.name, "method": name, **result}), flush=True)
                runs[name].append(result)
        rows.append({"category": folder.name, **{k: summary(v) for k, v in runs.items()}, "runs": runs})
        write_semi_payload(base, seeds, names, rows, out, complete=False)  # a killed run keeps the finished categories
    means = write_semi_payload(base, seeds, names, rows, out, complete=True)
    print("| category | " + " | ".join(f"{name} image | {name} pixel" for name in names) + " |")
    for row in rows:
        print(f"| {row['category']} | " + " | ".join(f"{row[n]['image_auroc']:.3f} | {row[n]['pixel_auroc']:.3f}" for n in names) + " |")
    print(json.dumps(means))
    print(f"wrote {out}")
    return 0


def write_semi_payload(base: Config, seeds: int, names: list[str], rows: list[dict], out: str, complete: bool) -> dict:
    means = {k: {m: statistics.mean([r[k][m] for r in rows if r[k][m] is not None]) for m in ("image_auroc", "pixel_auroc", "pixel_aupro")}
             for k in names}
    atomic_write_json(out, {
        "benchmark": "semi-supervised FCDD (one real defect per type, per --pixel-loss) vs unsupervised, same test images",
        "config": {k: v for k, v in base.to_dict().items() if k not in ("data", "out", "seed")},
        "seeds": seeds, "complete": complete, "categories": rows, "mean": means,
    })
    return means


if __name__ == "__main__":
    sys.exit(main())
