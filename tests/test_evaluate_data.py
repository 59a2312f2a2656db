"""``fcdd evaluate RUN --data DIR``: a run's model on new labelled data, at input or native resolution."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import roc_auc_score

from fcdd.cli import main
from fcdd.data.base import ImageSet
from fcdd.data.prepare import prepare_splits
from fcdd.data.synthetic import generate
from fcdd.evaluation import NativeMaps, evaluate
from fcdd.rundir import METRICS, read_json


@pytest.fixture(scope="module")
def second_folder(tmp_path_factory) -> Path:
    """Another gravel folder (other seed, 48 px files) the run never saw."""
    return generate(tmp_path_factory.mktemp("second"), "gravel", size=48, n_train=4, n_test_good=4, n_test_per_defect=2, seed=7)


def _native_reference(evaluation, test) -> float:
    """Pixel AUROC the slow way: every heatmap upsampled to its mask file's size, masks read from disk."""
    scores, truth = [], []
    for i in range(len(test)):
        with Image.open(test.paths[i]) as image:
            size = (image.height, image.width)
        heat = F.interpolate(evaluation.heatmaps[i : i + 1].float(), size=size, mode="bilinear", align_corners=False)[0, 0]
        if test.mask_paths[i]:
            mask = np.asarray(Image.open(test.mask_paths[i]).convert("L")) > 127
        else:
            mask = np.zeros(size, bool)
        scores.append(heat.numpy().ravel())
        truth.append(mask.ravel())
    return roc_auc_score(np.concatenate(truth), np.concatenate(scores))


def test_evaluate_on_a_second_folder_writes_beside_the_run(tiny_run, second_folder, capsys):
    own_before = (Path(tiny_run.out) / METRICS).read_bytes()
    assert main(["evaluate", str(tiny_run.out), "--data", str(second_folder), "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    written = Path(printed["written_to"])
    assert written.parent == Path(tiny_run.out) / "evaluations" and written.name == "gravel-input.json"
    assert (Path(tiny_run.out) / METRICS).read_bytes() == own_before  # the run's own results untouched
    stored = read_json(written)
    n_defects = sum(1 for p in (second_folder / "test").iterdir() if p.name != "good")
    assert stored["n_test"] == 4 + 2 * n_defects and stored["pixel_resolution"] == "input"
    # the same numbers as scoring that folder's test set directly with the run's model
    config = tiny_run.config.replace(data=str(second_folder), channels=tiny_run.splits.train.channels)
    direct = evaluate(tiny_run.method, prepare_splits(config).test, 16, "cpu")
    assert stored["image_auroc"] == pytest.approx(direct.image_auroc)
    assert stored["pixel_auroc"] == pytest.approx(direct.pixel_auroc)
    assert stored["pixel_aupro"] == pytest.approx(direct.pixel_aupro)
    # the stored thresholds' rates on the new images
    assert stored["at_thresholds"]["image"]["fpr"] == pytest.approx(
        float((direct.scores[direct.labels == 0] >= tiny_run.metrics["thresholds"]["image"]["threshold"]).mean()))


def test_native_resolution_matches_a_slow_reference(tiny_run, second_folder):
    config = tiny_run.config.replace(data=str(second_folder), channels=tiny_run.splits.train.channels)
    test = prepare_splits(config).test
    assert all(m is None for m, label in zip(test.mask_paths, test.labels.tolist(), strict=True) if label == 0)
    native = evaluate(tiny_run.method, test, 16, "cpu", resolution="native")
    at_input = evaluate(tiny_run.method, test, 16, "cpu", resolution="input")
    assert native.extra["pixel_resolution"] == "native"
    reference = _native_reference(native, test)
    assert native.pixel_auroc == pytest.approx(reference, abs=native.pixel_auroc_error_bound + 1e-6)
    assert native.pixel_auroc != at_input.pixel_auroc  # 48 px masks, 32 px network input: not the same pixels
    maps = NativeMaps(native.heatmaps, test)
    assert tuple(maps.mask(0).shape) == (48, 48) and tuple(maps.heatmap(0).shape) == (48, 48)


def test_evaluate_cli_native_and_explicit_output(tiny_run, second_folder, tmp_path, capsys):
    target = tmp_path / "eval.json"
    assert main(["evaluate", str(tiny_run.out), "--data", str(second_folder), "--eval-resolution", "native",
                 "--output", str(target), "--device", "cpu"]) == 0
    capsys.readouterr()
    stored = json.loads(target.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert stored["pixel_resolution"] == "native"
    assert main(["evaluate", str(tiny_run.out), "--data", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def test_native_masks_from_files_of_their_own_size(tmp_path):
    """Masks at the image's own size, whatever the network input size."""
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 10:20] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "i.png")
    test = ImageSet(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.ones(1, dtype=torch.long), torch.zeros(1, 1, 8, 8, dtype=torch.uint8),
                    ["d"], [str(tmp_path / "i.png")], [str(tmp_path / "m.png")])
    maps = NativeMaps(torch.rand(1, 1, 8, 8), test)
    assert maps.mask(0).sum() == 50 and tuple(maps.heatmap(0).shape) == (20, 30)
