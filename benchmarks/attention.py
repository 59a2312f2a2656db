"""Gradient-attention AE on every real category: which layer, input, architecture and training localise.

Every category under ``../shared/data`` (``discover_categories``; ``--data`` for another folder,
a BTAD one too) and the corrupted-digit set (``fmnist_corrupted`` on the shared MNIST IDX files,
class 0; ``--digits``) is trained once per training
setting (architecture x ``--attention-training``) with one small CPU budget (about ``--images``
training images a run, 64 px, width 0.5, random init); each trained model is then evaluated
for every inference setting (``--layer`` x ``--attention-input``) without retraining, since
those change only how the map is computed. Per setting: image AUROC, pixel AUROC and pixel
AUPRO. The best setting per set, one default best on average over all sets, and a
leave-one-out check of that choice (chosen on the other sets, measured on the held-out one)
are written with the grid.

    .venv/bin/python benchmarks/attention.py --out benchmarks/results/attention.json
    .venv/bin/python benchmarks/attention.py --data /path/to/BTAD --out btad_attention.json
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
from fcdd.data.mvtec import MVTecLayout, discover_categories
from fcdd.evaluation import evaluate
from fcdd.io import atomic_write_json
from fcdd.training import execute

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TRAINING = [("vae", False, "mean"), ("vae", True, "mean"), ("unet", True, "mean")]
LAYERS = ["encoder.1", "encoder.2"]
INPUTS = ["image", "residual"]
#: nets that reconstruct features (no image residual): their layers, both CAM weightings, and
#: for the VAE the latent mean beside the reconstruction error as the explained scalar
FEATURE_LAYERS = ["embedding", "encoder.0"]
CAMS = ["gradcam", "hirescam"]
METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro")
#: the corrupted-digit set's nominal class and its training images (about 6000 per class in
#: MNIST and Fashion-MNIST), for the epochs of a run
DIGIT_CLASS, DIGIT_TRAIN_IMAGES = "0", 6000
DIGITS = SHARED / "mnist"
DIGIT_SET = "mnist_corrupted"
NOTE = ("REDUCED grid (CPU, time-boxed): 64 px, width 0.5, random init, loss mean, no ssim, attention target auto; "
        "training grid arch x attention-training, inference grid layer x input")


def inference_grid(method) -> list[tuple[str, str, str, str]]:
    """(layer, input, cam, target) settings evaluated on one trained model."""
    if method.net.reconstructs_images:
        return [(layer, source, "gradcam", method.target) for layer in LAYERS for source in INPUTS]
    grid = [(layer, "image", cam, "reconstruction_error") for layer in FEATURE_LAYERS for cam in CAMS]
    if getattr(method.net, "variational", False):
        grid.append(("embedding", "image", "hirescam", "latent_mean"))
    return grid


def common_config(images_per_run: int, n_train: int, threads: int, size: int, **data) -> Config:
    return Config(
        objective="attention-ae", image_size=size, width=0.5, pretrained="none", supervise_mode="unsupervised",
        epochs=max(1, math.ceil(images_per_run / max(1, n_train))), batch_size=16, eval_batch_size=32, report=False,
        device="cpu", threads=threads, precision="fp32", out=None, **data,
    )


def base_config(category: Path, images: int, threads: int, size: int = 64) -> Config:
    """An MVTec-AD or BTAD category (one reader reads both layouts)."""
    n_train = sum(1 for p in MVTecLayout(category).nominal_dir("train").iterdir() if p.is_file())
    return common_config(images, n_train, threads, size, dataset="mvtec", data=str(category))


def digits_config(root: Path, images: int, threads: int, size: int = 64) -> Config:
    """The corrupted-digit protocol (``fmnist_corrupted``: train on one class, test on its test
    images, half of them with synthetic corruptions and exact masks) on IDX files, class 0."""
    return common_config(images, DIGIT_TRAIN_IMAGES, threads, size, dataset="fmnist_corrupted", data=str(root),
                         category=DIGIT_CLASS)


def key(arch: str, trained: bool, layer: str, source: str, size: int = 64, cam: str = "gradcam", target: str | None = None,
        loss: str = "mean") -> str:
    """Setting name; the parts added after the first grid appear only when they are not its values."""
    name = f"{arch}@{size}|attention_training={int(trained)}|{layer}|{source}"
    if cam != "gradcam":
        name += f"|{cam}"
    if target is not None:
        name += f"|target={target}"
    if loss != "mean":
        name += f"|loss={loss}"
    return name


def run_category(name: str, base: Config, training: list) -> dict[str, dict]:
    """Metrics of every grid setting on one category (``base``: its data and budget)."""
    results: dict[str, dict] = {}
    for arch, trained, loss in training:
        config = base.replace(arch=arch, attention_training=trained, loss=loss)
        features = arch.startswith("feature_")
        if features:
            # frozen ImageNet features: the pretrained backbone is the point; the standardised
            # features are what is reconstructed, so explain their reconstruction error
            config = config.replace(pretrained="auto", width=1.0, attention_target="reconstruction_error")
        t0 = time.perf_counter()
        run = execute(config)
        train_seconds = time.perf_counter() - t0
        method = run.method
        for layer, source, cam, target in inference_grid(method):
            method.layer, method.attention_input, method.cam, method.target = layer, source, cam, target
            ev = evaluate(method, run.splits.test, config.eval_batch_size, "cpu", progress=False)
            row = {name: getattr(ev, name) for name in METRICS}
            setting = key(arch, trained, layer, source, config.image_size, cam, target if features else None, loss)
            results[setting] = {**row, "epochs": config.epochs, "train_seconds": train_seconds}
            print(name, setting, {k: round(v or 0, 3) for k, v in row.items()}, flush=True)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED), help="folder whose categories are measured: MVTec-AD "
                        "(<category>/train/good) or BTAD (01/train/ok, 01/test/ko, 01/ground_truth/ko) layout")
    parser.add_argument("--images", type=int, default=250, help="training images per run (epochs = images / set size)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--digits", default=str(DIGITS), help=f"folder of MNIST or Fashion-MNIST IDX files for the corrupted-digit "
                        f"set ({DIGIT_SET}, class {DIGIT_CLASS}); '' or a missing folder skips it")
    parser.add_argument("--sets", default="", help="comma-separated category names (default: all found)")
    parser.add_argument("--training", default="", help="the training grid as arch:attention-training[:loss], "
                        "e.g. vae:0,vae:1,feature_vae:0:sum (default: the 64 px random-init grid)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--append", action="store_true", help="add to the grid already in --out")
    parser.add_argument("--note", default="", help="text added to the result's note (what this invocation adds)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "attention.json"))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    categories = {c.name: base_config(c, args.images, args.threads, args.image_size) for c in discover_categories(args.data)}
    if args.digits and Path(args.digits).is_dir():
        categories[DIGIT_SET] = digits_config(Path(args.digits), args.images, args.threads, args.image_size)
    if args.sets:
        categories = {name: categories[name] for name in args.sets.split(",") if name in categories}  # in the order given
    training = TRAINING
    if args.training:
        parts = [item.split(":") for item in args.training.split(",")]
        training = [(p[0], bool(int(p[1])), p[2] if len(p) > 2 else "mean") for p in parts]
    started = time.perf_counter()
    previous = json.loads(Path(args.out).read_text()) if args.append and Path(args.out).is_file() else {}
    results: dict[str, dict] = previous.get("results", {})
    grid = previous.get("grid", {"training": []})
    added = [f"{a}@{args.image_size}:{int(t)}" + (f":{loss}" if loss != "mean" else "")
             + ("" if args.images == 250 else f" ({args.images} images a run)") for a, t, loss in training]
    grid["training"] = list(dict.fromkeys(grid["training"] + added))  # an append for more sets repeats none
    note = previous.get("note", NOTE) + (f" {args.note}" if args.note else "")
    for name, base in categories.items():
        results.setdefault(name, {}).update(run_category(name, base, training))
        report = {
            "note": note,
            "grid": {**grid, "layers": LAYERS, "inputs": INPUTS, "feature_layers": FEATURE_LAYERS, "cams": CAMS,
                     "images_per_run": grid.get("images_per_run", args.images)},
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
