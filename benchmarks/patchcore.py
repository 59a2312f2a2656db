"""PatchCore benchmark: every real category under ../shared/data with the method's own defaults.

Per category (found by ``discover_categories``, never listed here), in a subprocess of its own
so that its peak memory is its own: image / pixel AUROC, AUPRO, fit seconds (feature extraction
and coreset), bank size, peak resident memory and inference images/s. Then, on one category,
coreset 1.0 vs 0.1 vs 0.01 (quality and speed), and the peak memory of exact chunked search over
a bank of 1M x 256 features. Writes JSON.

    .venv/bin/python benchmarks/patchcore.py --out benchmarks/results/patchcore.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from fcdd.config import Config
from fcdd.data.mvtec import discover_categories
from fcdd.io import atomic_write_json
from fcdd.neighbours import TorchSearch
from fcdd.training import execute

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_category(data: str, overrides: dict) -> dict:
    """Fit, evaluate and time inference on one category (run in a child process)."""
    config = Config(data=data, objective="patchcore", report=False, **overrides)
    started = time.perf_counter()
    run = execute(config)
    total = time.perf_counter() - started
    images = run.splits.test.images.float() / 255
    method = run.method.eval()
    with torch.no_grad():
        method(images[:4])  # warm-up
        t = time.perf_counter()
        for start in range(0, len(images), config.eval_batch_size):
            method(images[start : start + config.eval_batch_size])
        per_second = len(images) / (time.perf_counter() - t)
    m = run.metrics
    return {
        "category": Path(data).name, "image_auroc": m["image_auroc"], "pixel_auroc": m["pixel_auroc"],
        "pixel_aupro": m.get("pixel_aupro"), "fit_seconds": m["train_seconds"], "total_seconds": total,
        "bank_size": int(len(method.bank)), "bank_dim": int(method.bank.shape[1]), "n_train": len(run.splits.train),
        "n_test": len(run.splits.test), "inference_images_per_second": per_second, "peak_rss_mib": peak_rss_mib(),
        "options": {"coreset": config.coreset, "image_size": config.image_size, "backbone": config.backbone,
                    "coreset_projection": config.coreset_projection},
    }


def search_memory(rows: int = 1_000_000, dim: int = 256, queries: int = 8192) -> dict:
    """Peak memory of exact chunked search over a large bank beyond the bank itself (run in a
    child process): building the index, then searching two query chunks."""
    bank = torch.randn(rows, dim)
    with_bank = peak_rss_mib()
    search = TorchSearch(bank)
    built = peak_rss_mib()
    started = time.perf_counter()
    search.search(torch.randn(queries, dim), k=1)
    seconds = time.perf_counter() - started
    block_mib = search.query_chunk * search.bank_chunk * 4 / 2**20
    return {
        "bank_rows": rows, "dim": dim, "queries": queries, "bank_mib": rows * dim * 4 / 2**20,
        "peak_rss_mib_with_bank": with_bank, "extra_peak_mib_building": built - with_bank,
        "extra_peak_mib_searching": peak_rss_mib() - built, "distance_block_mib": block_mib,
        "query_chunk": search.query_chunk, "bank_chunk": search.bank_chunk,
        "seconds": seconds, "queries_per_second": queries / seconds,
    }


def child(task: dict) -> dict:
    """Run one task in a fresh interpreter; its last stdout line is the JSON result."""
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(task)], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{task}: failed\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED), help="folder searched for MVTec-style categories")
    parser.add_argument("--coreset-category", default="mvtec_bottle_256", help="category of the coreset comparison")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "patchcore.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--search-only", action="store_true", help="only the search-memory measurement; update it in --out")
    args = parser.parse_args(argv)
    if args.child:
        task = json.loads(args.child)
        result = search_memory() if task["kind"] == "search" else one_category(task["data"], task.get("overrides", {}))
        print(json.dumps(result))
        return 0
    if args.search_only:
        payload = json.loads(Path(args.out).read_text())
        payload["search_memory"] = child({"kind": "search"})
        print(json.dumps(payload["search_memory"]))
        atomic_write_json(args.out, payload)
        return 0
    categories = discover_categories(args.data)
    results = []
    for folder in categories:
        result = child({"kind": "category", "data": str(folder)})
        print(json.dumps(result), flush=True)
        results.append(result)
    coreset = []
    target = next((f for f in categories if f.name == args.coreset_category), categories[0] if categories else None)
    if target is not None:
        for fraction in (1.0, 0.1, 0.01):
            result = child({"kind": "category", "data": str(target), "overrides": {"coreset": fraction}})
            print(json.dumps(result), flush=True)
            coreset.append(result)
    memory = child({"kind": "search"})
    print(json.dumps(memory), flush=True)

    def mean(key: str) -> float | None:
        values = [r[key] for r in results if r.get(key) is not None]
        return sum(values) / len(values) if values else None

    payload = {
        "benchmark": "patchcore with its defaults, every shared category",
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
        "results": results,
        "mean": {k: mean(k) for k in ("image_auroc", "pixel_auroc", "pixel_aupro", "fit_seconds")},
        "coreset_comparison": coreset,
        "search_memory": memory,
    }
    atomic_write_json(args.out, payload)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
