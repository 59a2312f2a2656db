"""benchmarks/generalise.py on a folder of generated categories: discovery, the reference beside
FCDD, resuming a killed run, and the semi-supervised comparison with one run per pixel loss."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

from fcdd.config import Config

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "generalise.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("generalise_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_yaml(path: Path) -> Path:
    Config(image_size=32, net="cnn32", width=0.25, pretrained="none", epochs=1, batch_size=8, eval_batch_size=16,
           report=False, holdout=0.0, device="cpu").to_yaml(path)
    return path


def test_categories_are_found_and_a_killed_run_resumes(two_categories, tmp_path, capsys):
    benchmark = load_benchmark()
    root = tmp_path / "data" / "nested"
    shutil.copytree(two_categories, root)
    config, out = tiny_yaml(tmp_path / "tiny.yaml"), tmp_path / "generalise.json"
    args = ["--data", str(tmp_path / "data"), "--config", str(config), "--no-reference", "--out", str(out)]
    assert benchmark.main(args) == 0
    first = json.loads(out.read_text())
    assert first["complete"] and sorted(r["category"] for r in first["categories"]) == ["grass", "gravel"]
    assert 0.0 <= first["mean"]["fcdd"]["image_auroc"] <= 1.0
    # a run killed after its first category: the rerun keeps it and trains only the other
    first["categories"] = first["categories"][:1]
    first["complete"] = False
    out.write_text(json.dumps(first))
    capsys.readouterr()
    assert benchmark.main([*args, "--resume"]) == 0
    printed = capsys.readouterr().out
    kept = first["categories"][0]["category"]
    assert f"{kept}: kept from" in printed and printed.count("kept from") == 1
    again = json.loads(out.read_text())
    assert again["complete"] and len(again["categories"]) == 2
    assert again["categories"][0] == first["categories"][0]
    # another setting is not mixed with the kept rows
    assert benchmark.main([*args, "--resume", "--set", "epochs=2"]) == 0
    assert "starting afresh" in capsys.readouterr().out


def test_semi_supervised_runs_once_per_pixel_loss_on_the_same_test_images(synthetic_root, tmp_path):
    benchmark = load_benchmark()
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root / "gravel")
    config = tiny_yaml(tmp_path / "tiny.yaml")
    out = tmp_path / "semi.json"
    assert benchmark.main(["--data", str(root), "--config", str(config), "--semi", "--pixel-losses", "mean,balanced",
                           "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["complete"]
    assert set(payload["mean"]) == {"unsupervised", "semi_supervised_mean", "semi_supervised_balanced"}
    (row,) = payload["categories"]
    # every run scored the same test set: one defect per type left it for training
    test_files = [p for p in (root / "gravel" / "test").rglob("*.png")]
    types = {p.parent.name for p in test_files} - {"good"}
    assert {run["n_test"] for runs in row["runs"].values() for run in runs} == {len(test_files) - len(types)}
    assert all(len(runs) == 1 for runs in row["runs"].values())
