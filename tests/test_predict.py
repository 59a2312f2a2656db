"""``fcdd predict``: a table row and an overlay per readable image; unreadable ones are skipped."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcdd.cli import main


@pytest.fixture
def inputs(tiny_run, tmp_path) -> tuple[Path, list[Path]]:
    """A folder with the run's test images (two levels), a broken file and a text file."""
    folder = tmp_path / "images"
    files = []
    for path in tiny_run.evaluation.paths:
        target = folder / Path(path).parent.name / Path(path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
        files.append(target)
    (folder / "good" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "notes.txt").write_text("not an image, and not an image suffix either")
    return folder, files


def read_csv(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_predict_folder_writes_table_overlays_and_skips_bad_files(tiny_run, inputs, tmp_path, capsys):
    folder, files = inputs
    out = tmp_path / "pred"
    code = main(["predict", str(tiny_run.out), str(folder), str(tmp_path / "missing.png"), "--out", str(out), "--quiet",
                 "--device", "cpu", "--batch-size", "4", "--masks"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "broken.png" in err and "missing.png" in err
    rows = read_csv(out / "predictions.csv")
    assert len(rows) == len(files)
    by_name = {str(Path(r["path"]).relative_to(folder)): r for r in rows}
    threshold = tiny_run.metrics["thresholds"]["image"]["threshold"]
    for path, score in zip(tiny_run.evaluation.paths, tiny_run.evaluation.scores, strict=True):
        row = by_name[f"{Path(path).parent.name}/{Path(path).name}"]
        assert float(row["score"]) == pytest.approx(score, rel=1e-5, abs=1e-7)
        assert row["verdict"] == ("anomalous" if score >= threshold else "nominal")
        assert float(row["threshold"]) == pytest.approx(threshold)
        overlay = Image.open(out / row["overlay"])
        assert overlay.size[0] >= 64
        assert (out / "masks" / Path(row["overlay"]).relative_to("overlays")).is_file()
    table = json.loads((out / "predictions.json").read_text())
    assert table["n_images"] == len(files)
    assert {Path(s["path"]).name for s in table["skipped"]} == {"broken.png", "missing.png"}
    assert table["model"]["threshold"] == pytest.approx(threshold)


def test_threshold_flag_overrides_the_calibrated_one(tiny_run, inputs, tmp_path):
    folder, files = inputs
    out = tmp_path / "pred"
    assert main(["predict", str(tiny_run.out), *map(str, files[:4]), "--out", str(out), "--quiet", "--device", "cpu",
                 "--threshold", "1e9", "--no-overlays"]) == 0
    rows = read_csv(out / "predictions.csv")
    assert [r["verdict"] for r in rows] == ["nominal"] * 4
    assert not (out / "overlays").exists()
    np.testing.assert_allclose([float(r["score"]) for r in rows], tiny_run.evaluation.scores[:4], rtol=1e-5)


def test_nothing_readable_is_an_error(tiny_run, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    code = main(["predict", str(tiny_run.out), str(bad), str(tmp_path / "absent"), "--out", str(tmp_path / "o"), "--quiet"])
    assert code != 0
    err = capsys.readouterr().err
    assert "bad.png" in err and "none of the 2 input(s) could be read" in err
