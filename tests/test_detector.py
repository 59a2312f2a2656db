"""``fcdd.load``: the same scores and heatmaps as the run's evaluation, for every kind of input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fcdd
from fcdd.data.base import DataError, open_image, to_array
from fcdd.detector import Detector, Prediction
from fcdd.preprocess import prepare_batch, prepare_one


@pytest.fixture(scope="module")
def detector(tiny_run) -> Detector:
    return fcdd.load(tiny_run.out, device="cpu")


def test_files_score_like_the_training_time_evaluation(tiny_run, detector):
    stored = torch.load(Path(tiny_run.out) / "heatmaps.pt", weights_only=True)
    scores = detector.score(stored["paths"])
    np.testing.assert_allclose(scores.double().numpy(), stored["scores"].numpy(), rtol=1e-5, atol=1e-7)
    heatmaps = detector.heatmap(stored["paths"])
    assert heatmaps.shape == stored["heatmaps"].shape == (len(stored["paths"]), 1, 32, 32)
    # heatmaps.pt keeps float16
    torch.testing.assert_close(heatmaps.half().float(), stored["heatmaps"].float(), rtol=2e-3, atol=1e-5)


def test_batch_size_and_workers_do_not_change_results(tiny_run, detector):
    paths = tiny_run.evaluation.paths
    other = Detector.load(tiny_run.out, device="cpu", batch_size=3, workers=1)
    torch.testing.assert_close(other.score(paths), detector.score(paths), rtol=1e-5, atol=1e-7)


def test_every_input_kind_is_preprocessed_as_in_training(tiny_run, detector):
    path = Path(tiny_run.evaluation.paths[-1])
    expected = float(tiny_run.evaluation.scores[-1])
    image = Image.open(path)
    arr = np.asarray(image)
    inputs = {
        "str": str(path), "path": path, "pil": image, "uint8 HWC": arr, "float HWC": arr / 255.0,
        "uint8 CHW tensor": torch.from_numpy(arr.copy()).permute(2, 0, 1),
        "float CHW tensor": torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255,
        "prepared tensor": prepare_one(path, 3, 32),
    }
    for name, item in inputs.items():
        assert float(detector.score(item)[0]) == pytest.approx(expected, rel=1e-5, abs=1e-7), name
    batch = detector.score(np.stack([arr, arr]))
    assert batch.shape == (2,) and float(batch[1]) == pytest.approx(expected, rel=1e-5)
    prepared = prepare_batch([path, path], 3, 32)
    assert detector.score(prepared).shape == (2,)


def test_grey_and_wide_inputs_follow_pil_conversion():
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    expected = torch.from_numpy(to_array(rgb, 1, 16).copy()).float() / 255
    torch.testing.assert_close(prepare_one(rgb, 1, 16), expected)
    torch.testing.assert_close(prepare_one(np.asarray(rgb), 1, 16), expected)
    wide = np.linspace(0, 4000, 16 * 16).reshape(16, 16).astype(np.uint16)
    grey = prepare_one(wide, 1, 16)
    # scaled by the bit depth as 16-bit training files are, not stretched per image (brightness survives)
    assert float(grey.min()) == 0.0 and float(grey.max()) == pytest.approx(4000 / 65535, abs=1 / 255)
    with pytest.raises(DataError, match="shape"):
        prepare_one(np.zeros((2, 3, 4, 5)), 3, 16)
    with pytest.raises(TypeError, match="dict"):
        prepare_one({}, 3, 16)


def test_predict_gives_verdicts_masks_and_overridable_thresholds(tiny_run, detector):
    paths = tiny_run.evaluation.paths
    calibrated = tiny_run.metrics["thresholds"]
    assert detector.threshold == pytest.approx(calibrated["image"]["threshold"])
    assert detector.pixel_threshold == pytest.approx(calibrated["pixel"]["threshold"])
    predictions = detector.predict(paths)
    assert all(isinstance(p, Prediction) for p in predictions)
    for p, score in zip(predictions, tiny_run.evaluation.scores, strict=True):
        assert p.verdict == ("anomalous" if score >= detector.threshold else "nominal")
        assert p.mask is not None and p.mask.dtype == torch.bool and p.mask.shape == (32, 32)
        assert torch.equal(p.mask, p.heatmap >= detector.pixel_threshold)
        assert p["score"] == p.score and p.to_dict()["verdict"] == p.verdict
    lowest = float(np.min(tiny_run.evaluation.scores))
    strict = Detector.load(tiny_run.out, device="cpu", threshold=lowest, pixel_threshold=float("inf"))
    assert all(p.verdict == "anomalous" for p in strict.predict(paths))
    assert all(not bool(p.mask.any()) for p in strict.predict(paths))
    strict.thresholds = {"image": float("inf")}
    assert all(p.verdict == "nominal" for p in strict.predict(paths))
    strict.thresholds = {"image": None}
    assert strict.predict(paths[0])[0].verdict is None
    with pytest.raises(KeyError, match="unknown threshold"):
        strict.thresholds = {"region": 1.0}


def test_bad_inputs_name_the_file(tmp_path, tiny_run, detector):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        detector.score([tiny_run.evaluation.paths[0], bad])
    with pytest.raises(DataError, match="missing.png: file not found"):
        detector.score(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError, match="no snapshot"):
        fcdd.load(tmp_path)
    (tmp_path / "snapshot.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable fcdd snapshot"):
        fcdd.load(tmp_path)
    assert open_image(Path(tiny_run.evaluation.paths[0])).size == (64, 64)


def test_snapshot_from_a_version_with_other_options_still_loads(tiny_run, detector):
    snapshot = torch.load(Path(tiny_run.out) / "snapshot.pt", weights_only=True)
    snapshot["config"]["an_option_from_elsewhere"] = 3
    other = Detector(snapshot, device="cpu")
    path = tiny_run.evaluation.paths[0]
    assert float(other.score(path)[0]) == pytest.approx(float(detector.score(path)[0]))
    assert other.describe()["image_size"] == 32


def test_prediction_repr_is_short_and_version_is_printed(capsys):
    from fcdd.cli import main

    text = repr(Prediction(0.7, torch.zeros(64, 64), threshold=0.5))
    assert text == "Prediction(score=0.7, anomalous, heatmap=(64, 64))"
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("fcdd 0.1.0")
