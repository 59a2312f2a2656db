"""Pixel thresholds from nominal pixels, checked on real defects: which ``--pixel-fpr`` holds up.

Trains the one CPU setting (``configs/cpu-fast.yaml``) once per real category under
../shared/data, then calibrates the pixel threshold at each target false-positive rate of the
grid on the run's held-out nominal pixels and scores it on the test set: the share of defective
and of good test images with a flagged pixel, the test pixel F1 at the threshold beside the
pixel F1-max (the best any threshold reaches), and the share of anomalous verdicts whose mask
is empty. The default is the rate whose masks stay within a false-alarm budget (at most 10 %
of good images with a flagged region) on the most categories, ties going to the one that flags
more defective images; the same choice is made leave-one-out (on all categories but one, then
checked on the one left out).

    .venv/bin/python benchmarks/thresholds.py --out benchmarks/results/thresholds.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

from fcdd.calibration import calibration_set, test_rates, thresholds_for
from fcdd.config import Config
from fcdd.data.mvtec import discover_categories
from fcdd.io import atomic_write_json
from fcdd.training import execute

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
GRID = (0.0001, 0.0003, 0.001, 0.003, 0.01)


def figures(run, calibration, pixel_fpr: float) -> dict:
    """The test-set figures of the pixel threshold calibrated at ``pixel_fpr``."""
    thresholds = thresholds_for(calibration, run.config.target_fpr, run.config.seed, pixel_fpr)
    test = test_rates(run.evaluation, run.splits.test, thresholds)
    pixel = test.get("pixel") or {}
    return {
        "pixel_fpr": pixel_fpr, "threshold": thresholds["pixel"]["threshold"],
        "defective_with_pixels": test.get("defective_images_with_flagged_pixels"),
        "good_with_pixels": test.get("good_images_with_flagged_pixels"),
        "anomalous_verdicts_with_empty_mask": test.get("anomalous_verdicts_with_empty_mask"),
        "pixel_f1": pixel.get("f1"), "pixel_fpr_test": pixel.get("fpr"), "pixel_recall": pixel.get("recall"),
        "pixel_f1_max": run.metrics.get("pixel_f1_max"),
    }


#: share of good test images that may carry a flagged region (the false-alarm budget of masks)
GOOD_BUDGET = 0.10


def choose(rows: list[dict]) -> float:
    """The grid rate that keeps masks within the false-alarm budget on the most categories; ties
    go to the one that flags more defective images on average (then the lower rate)."""

    def merit(fpr: float) -> tuple[int, float, float]:
        figures = [r["grid"][str(fpr)] for r in rows]
        within = sum(1 for f in figures if (f["good_with_pixels"] or 0.0) <= GOOD_BUDGET + 1e-9)
        return within, statistics.mean(f["defective_with_pixels"] or 0.0 for f in figures), -fpr

    return max(GRID, key=merit)


def leave_one_out(rows: list[dict]) -> list[dict]:
    """Per category: the rate ``choose`` picks on the other categories, and its figures on this one."""
    choices = []
    for held in rows:
        others = [r for r in rows if r is not held]
        if not others:
            break
        best = choose(others)
        choices.append({"left_out": held["category"], "chosen_pixel_fpr": best, "on_left_out": held["grid"][str(best)]})
    return choices


def summarise(rows: list[dict]) -> dict:
    means = {str(fpr): {key: statistics.mean(r["grid"][str(fpr)][key] or 0.0 for r in rows)
                        for key in ("defective_with_pixels", "good_with_pixels", "pixel_f1", "pixel_f1_max")} for fpr in GRID}
    within = {str(fpr): sum(1 for r in rows if (r["grid"][str(fpr)]["good_with_pixels"] or 0.0) <= GOOD_BUDGET + 1e-9)
              for fpr in GRID}
    return {"means": means, "categories_within_budget": within, "good_budget": GOOD_BUDGET, "chosen": choose(rows),
            "leave_one_out": leave_one_out(rows)}


def train_and_score(args) -> list[dict]:
    base = Config.from_yaml(args.config).replace(report=False)
    categories = discover_categories(args.data)
    if args.only:
        categories = [c for c in categories if c.name in set(args.only.split(","))]
    rows = []
    for folder in categories:
        run = execute(base.replace(data=str(folder)))
        calibration = calibration_set(run.method, run.splits.holdout, run.supervision, run.config.eval_batch_size,
                                      run.config.seed, "cpu")
        grid = {str(fpr): figures(run, calibration, fpr) for fpr in GRID}
        row = {"category": folder.name, "image_auroc": run.metrics["image_auroc"], "pixel_auroc": run.metrics["pixel_auroc"],
               "grid": grid}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED))
    parser.add_argument("--config", default=str(ROOT / "configs" / "cpu-fast.yaml"))
    parser.add_argument("--only", default=None, help="comma-separated category names (default: all found)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "thresholds.json"))
    parser.add_argument("--rescore", action="store_true", help="summarise the figures stored in --out again, without training")
    args = parser.parse_args(argv)
    if args.rescore:  # the stored per-category figures, summarised again (no training)
        rows = json.loads(Path(args.out).read_text())["categories"]
    else:
        rows = train_and_score(args)
    summary = summarise(rows)
    payload = {
        "benchmark": "thresholds", "config": args.config, "grid": list(GRID), "categories": rows, **summary,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads()},
    }
    atomic_write_json(args.out, payload)
    for fpr in GRID:
        m = summary["means"][str(fpr)]
        print(f"pixel_fpr {fpr:<6g} defective flagged {m['defective_with_pixels']:.3f} good flagged {m['good_with_pixels']:.3f} "
              f"pixel F1 {m['pixel_f1']:.3f} (F1-max {m['pixel_f1_max']:.3f}); good within {GOOD_BUDGET:.0%} on "
              f"{summary['categories_within_budget'][str(fpr)]} of {len(rows)} categories")
    print(f"chosen: {summary['chosen']}; leave-one-out: " + ", ".join(
        f"{c['left_out']} {c['chosen_pixel_fpr']:g} (good {c['on_left_out']['good_with_pixels']:.2f}, "
        f"defective {c['on_left_out']['defective_with_pixels']:.2f})" for c in summary["leave_one_out"]))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
