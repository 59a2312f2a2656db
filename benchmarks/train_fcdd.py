"""FCDD training benchmark: AUROC and training throughput, end to end vs the raw network.

For each data set: train with the given config (the demo setting on the synthetic set,
``configs/cpu-fast.yaml`` on the real categories in ../shared/data), then, in the same process,
time the bare network's forward + backward + optimiser step on in-memory random tensors of the
same batch shape. ``throughput_ratio`` = end-to-end training images/s (data indexing,
augmentation, confetti noise, loss, optimiser) / raw images/s. The bare network is also timed
in plain fp32 with contiguous tensors and in fp32 channels-last, so the fast path's speed-up
(``--precision`` / ``--channels-last``) is a ratio measured in the same run. ``--check-fp32``
also trains each set in plain fp32 / contiguous and with a second seed on the fast path, so the
fast path's AUROC change can be read against seed noise. Writes JSON.

    .venv/bin/python benchmarks/train_fcdd.py --datasets synthetic,hazelnut_toy --out benchmarks/results/train_fcdd.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import fcdd
from fcdd.config import Config
from fcdd.demo import demo_config
from fcdd.io import atomic_write_json
from fcdd.methods import build_method
from fcdd.runtime import autocast, resolve_precision

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def raw_throughput(config: Config, channels: int, seconds: float = 20.0, precision: str = "fp32", channels_last: bool = False) -> float:
    """Images/s of forward + backward + Adam step on a fixed in-memory batch.

    The network is built as training builds it (same weights source, same frozen stages), so
    the two figures differ only by what the input pipeline and the trainer add. ``precision``
    and ``channels_last`` select the arithmetic and memory layout, as the trainer does.
    """
    dtype = resolve_precision(precision, torch.device("cpu"))
    layout = torch.channels_last if channels_last else torch.contiguous_format
    method = build_method(config, channels).to(memory_format=layout)
    method.train()
    for module in method.frozen_modules():
        module.requires_grad_(False)
        module.eval()
    params = method.trainable_parameters()
    optimizer = torch.optim.Adam(params, lr=config.lr)
    x = torch.rand(config.batch_size, channels, config.image_size, config.image_size).contiguous(memory_format=layout)
    labels = (torch.arange(config.batch_size) < config.batch_size // 2).long()
    maps = torch.zeros(config.batch_size, 1, config.image_size, config.image_size)
    for _ in range(2):  # warm-up
        with autocast(torch.device("cpu"), dtype):
            loss = method.training_loss(x, labels, maps, False).float().mean()
        loss.backward()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        optimizer.zero_grad(set_to_none=True)
        with autocast(torch.device("cpu"), dtype):
            loss = method.training_loss(x, labels, maps, False).float().mean()
        loss.backward()
        optimizer.step()
        count += len(x)
    return count / (time.perf_counter() - started)


def bench(name: str, config: Config) -> dict:
    started = time.perf_counter()
    run = fcdd.train(config)
    wall = time.perf_counter() - started
    per_epoch = run.history.images_per_second
    # the first epoch includes one-off warm-up; use the median of the rest
    e2e = statistics.median(per_epoch[1:] if len(per_epoch) > 1 else per_epoch)
    channels = run.splits.train.channels
    fast = raw_throughput(config, channels, precision=config.precision, channels_last=config.channels_last)
    layout_only = raw_throughput(config, channels, precision="fp32", channels_last=True)
    plain = raw_throughput(config, channels, precision="fp32", channels_last=False)
    raw = fast
    return {
        "dataset": name,
        "image_auroc": run.metrics["image_auroc"],
        "pixel_auroc": run.metrics["pixel_auroc"],
        "pixel_auroc_error_bound": run.metrics["pixel_auroc_error_bound"],
        "epochs": config.epochs,
        "train_seconds": run.metrics["train_seconds"],
        "wall_seconds_train_and_evaluate": wall,
        "train_images_per_second": e2e,
        "raw_net_images_per_second": raw,  # with the run's own precision and layout
        "throughput_ratio": e2e / raw,
        "raw_fp32_contiguous_images_per_second": plain,
        "raw_fp32_channels_last_images_per_second": layout_only,
        "fast_path": {"precision": config.precision, "channels_last": config.channels_last},
        "fast_path_speedup_vs_fp32_contiguous": fast / plain,
        "channels_last_speedup_vs_contiguous": layout_only / plain,
        "config": {k: v for k, v in config.to_dict().items() if k not in ("out",)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="synthetic,hazelnut_toy,mvtec_bottle_256,magnetic_tile")
    parser.add_argument("--config", default=str(ROOT / "configs" / "cpu-fast.yaml"), help="config for real categories")
    parser.add_argument("--epochs", type=int, default=None, help="override epochs everywhere (quick checks)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_fcdd.json"))
    parser.add_argument("--check-fp32", action="store_true", help="also train in fp32 / contiguous and with seed 1 (AUROC vs seed noise)")
    args = parser.parse_args(argv)
    results = []
    work = Path(tempfile.mkdtemp(prefix="fcdd-bench-"))
    for name in args.datasets.split(","):
        if name == "synthetic":
            config = demo_config(work / "synthetic")
        else:
            if not (SHARED / name).is_dir():
                print(f"skip {name}: {SHARED / name} not found", file=sys.stderr)
                continue
            config = Config.from_yaml(args.config).replace(data=str(SHARED / name), out=str(work / name))
        config = config.replace(report=False, **({"epochs": args.epochs} if args.epochs else {}))
        result = bench(name, config)
        if args.check_fp32:
            plain = fcdd.train(config.replace(precision="fp32", channels_last=False, out=str(Path(config.out).parent / f"{name}-fp32")))
            seed1 = fcdd.train(config.replace(seed=config.seed + 1, out=str(Path(config.out).parent / f"{name}-seed1")))
            result["fp32_contiguous"] = {k: plain.metrics[k] for k in ("image_auroc", "pixel_auroc", "train_seconds")}
            result["fast_path_seed1"] = {k: seed1.metrics[k] for k in ("image_auroc", "pixel_auroc", "train_seconds")}
            result["auroc_change_fast_vs_fp32"] = {k: result[k] - plain.metrics[k] for k in ("image_auroc", "pixel_auroc")}
            result["auroc_change_seed0_vs_seed1"] = {k: result[k] - seed1.metrics[k] for k in ("image_auroc", "pixel_auroc")}
        print(json.dumps({k: v for k, v in result.items() if k != "config"}))
        results.append(result)
    payload = {
        "benchmark": "fcdd training",
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
        "results": results,
    }
    atomic_write_json(args.out, payload)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
