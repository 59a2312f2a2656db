"""``fcdd run``: classes x seeds, aggregation, and resuming after SIGKILL."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fcdd.cli import main
from fcdd.runner import Job

TINY = ["--image-size", "32", "--net", "cnn32", "--width", "0.25", "--pretrained", "none", "--batch-size", "8",
        "--eval-batch-size", "16", "--no-report", "--holdout", "0.2"]


def test_run_over_classes_and_seeds_aggregates(two_categories, tmp_path, capsys):
    out = tmp_path / "exp"
    assert main(["run", "--data", str(two_categories), "--out", str(out), "--seeds", "2", "--epochs", "1", *TINY]) == 0
    for cls in ("grass", "gravel"):
        for seed in (0, 1):
            assert (out / f"normal_{cls}" / f"it_{seed}" / "metrics.json").is_file()
        assert (out / f"normal_{cls}" / "roc_mean.png").is_file()
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["class"] for r in rows] == ["grass", "gravel"] and all(r["seeds"] == "2" for r in rows)
    seeds = [json.loads((out / "normal_grass" / f"it_{s}" / "metrics.json").read_text())["image_auroc"] for s in (0, 1)]
    assert float(rows[0]["image_auroc_mean"]) == pytest.approx(sum(seeds) / 2)
    # different seeds give different models
    configs = [(out / "normal_grass" / f"it_{s}" / "config.yaml").read_text() for s in (0, 1)]
    assert "seed: 0" in configs[0] and "seed: 1" in configs[1]
    assert "| grass | 2 |" in capsys.readouterr().out


@pytest.mark.slow
def test_sigkill_then_restart_keeps_finished_classes(two_categories, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "fcdd", "run", "--data", str(two_categories), "--out", str(out), "--seeds", "1",
           "--epochs", "3", *TINY]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = out / "normal_grass" / "it_0" / "metrics.json"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240
        while not (first.is_file() and (first.parent / "snapshot.pt").is_file()) and time.time() < deadline:
            assert proc.poll() is None, "fcdd run ended before the kill"
            time.sleep(0.1)
        assert first.is_file(), "first class did not finish in time"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    before = first.read_bytes()
    mtime = first.stat().st_mtime_ns
    assert not (out / "results.csv").exists()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert first.read_bytes() == before and first.stat().st_mtime_ns == mtime  # never recomputed
    assert "finished before, kept" in done.stderr
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["class"] for r in rows] == ["grass", "gravel"]
    assert float(rows[0]["image_auroc_mean"]) == pytest.approx(json.loads(before)["image_auroc"])


def test_run_needs_classes_for_unknown_layouts(tmp_path, capsys):
    assert main(["run", "--dataset", "custom", "--data", str(tmp_path), "--out", str(tmp_path / "o"), *TINY]) == 2
    assert "--classes" in capsys.readouterr().err


@pytest.mark.slow
def test_run_over_all_real_categories(shared_data, tmp_path):
    """The documented CI setting: every MVTec-layout category in ../shared/data, 2 seeds, 1 epoch at 32 px."""
    root = shared_data("magnetic_tile").parent
    categories = sorted(p.name for p in root.iterdir() if (p / "train").is_dir())
    out = tmp_path / "all"
    assert main(["run", "--data", str(root), "--out", str(out), "--seeds", "2", "--epochs", "1", *TINY]) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["class"] for r in rows] == categories and len(categories) >= 3
    assert all(r["seeds"] == "2" and r["pixel_auroc_mean"] for r in rows)
    assert Path(out / "results.md").read_text().count("|") > 10


def test_a_run_killed_before_its_heatmaps_were_written_is_redone(tmp_path):
    # metrics.json is written last; a folder from a run killed mid-way through its final
    # writes must not count as finished, or the aggregate would read a missing heatmaps.pt
    job = Job("grass", 0, tmp_path)
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "snapshot.pt").write_bytes(b"x")
    assert not job.finished
    (tmp_path / "heatmaps.pt").write_bytes(b"x")
    assert job.finished
