"""benchmarks/attention.py runs on a BTAD folder (``01/train/ok``, ``01/test/ko``,
``01/ground_truth/ko``) the test writes, and measures pixel metrics from its masks."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
from PIL import Image

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "attention.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("attention_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_btad(root: Path, rng: np.random.Generator) -> None:
    def save(path: Path, array: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)

    for i in range(4):
        save(root / "train" / "ok" / f"{i:04d}.png", rng.integers(100, 140, (32, 32, 3), dtype=np.uint8))
    for i in range(2):
        save(root / "test" / "ok" / f"{i:04d}.png", rng.integers(100, 140, (32, 32, 3), dtype=np.uint8))
        defect = rng.integers(100, 140, (32, 32, 3), dtype=np.uint8)
        defect[8:16, 10:20] = 255
        mask = np.zeros((32, 32), np.uint8)
        mask[8:16, 10:20] = 255
        save(root / "test" / "ko" / f"{i:04d}.png", defect)
        save(root / "ground_truth" / "ko" / f"{i:04d}.png", mask)


def test_attention_benchmark_runs_on_a_btad_folder(tmp_path):
    write_btad(tmp_path / "btad" / "01", np.random.default_rng(0))
    out = tmp_path / "attention.json"
    benchmark = load_benchmark()
    assert benchmark.main(["--data", str(tmp_path / "btad"), "--image-size", "32", "--images", "4",
                           "--training", "vae:0", "--threads", "1", "--digits", "", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    settings = report["results"]["01"]
    assert len(settings) == len(benchmark.LAYERS) * len(benchmark.INPUTS)
    for row in settings.values():
        assert 0.0 <= row["pixel_auroc"] <= 1.0 and 0.0 <= row["image_auroc"] <= 1.0
    assert report["selection"]["default"] in settings
