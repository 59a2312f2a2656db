"""``fcdd compare``: baselines on a finished run's configuration, figure and metrics table."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fcdd.cli import main
from fcdd.compare import compare_run, parse_specs, pick_images
from fcdd.rundir import read_heatmaps
from fcdd.training import execute


def test_parse_specs():
    assert parse_specs("hsc, attention-ae:unet") == [("hsc", "hsc", None), ("attention-ae-unet", "attention-ae", "unet")]
    with pytest.raises(KeyError, match="unknown objective"):
        parse_specs("hsc,nope")


def test_pick_images_takes_top_anomaly_per_kind_and_a_nominal():
    kinds = ["good", "good", "good", "cut", "cut", "stain"]
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.5, 0.3, 0.2, 0.9, 0.4])
    assert pick_images(kinds, labels, scores) == [4, 5, 2]


@pytest.mark.slow
def test_compare_command_writes_runs_figure_and_table(tiny_config, tmp_path, capsys):
    config = tiny_config.replace(epochs=1, out=str(tmp_path / "run"))
    execute(config)
    assert main(["compare", config.out, "--with", "ae,attention-ae:unet"]) == 0
    out = tmp_path / "run" / "compare"
    for name in ("ae", "attention-ae-unet"):
        assert (out / name / "metrics.json").is_file()
    table = (out / "metrics.csv").read_text().splitlines()
    assert table[0].startswith("method,objective,image_auroc,pixel_auroc")
    assert [row.split(",")[0] for row in table[1:]] == ["fcdd", "ae", "attention-ae-unet"]
    figure = Image.open(out / "comparison.png")
    assert figure.width > 200 and figure.height > 200
    assert "| ae |" in capsys.readouterr().out
    # a second call reuses the finished runs
    mtime = (out / "ae" / "metrics.json").stat().st_mtime
    assert main(["compare", config.out, "--with", "ae"]) == 0
    assert (out / "ae" / "metrics.json").stat().st_mtime == mtime


def test_compare_needs_a_finished_run(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "missing")]) == 2
    assert "config.yaml" in capsys.readouterr().err


def test_compare_a_semi_supervised_run_tests_every_method_on_the_same_images(tiny_config, tmp_path):
    """mvtec_gt moves real defects from the test set to training; the compared methods are
    tested on the images the run was tested on (the defects it trained on stay out)."""
    config = tiny_config.replace(epochs=1, out=str(tmp_path / "semi"), supervise_mode="noise", noise_mode="mvtec_gt", oe_limit=1)
    run = execute(config)
    taken = run.splits.train_anomalies.paths
    assert taken and not set(taken) & set(run.evaluation.paths)
    runs = compare_run(config.out, ["hsc"], epochs=1)
    assert [r.name for r in runs] == ["fcdd", "hsc"]
    assert runs[1].paths == list(run.evaluation.paths)
    assert read_heatmaps(tmp_path / "semi" / "compare" / "hsc")["paths"] == list(run.evaluation.paths)
    assert (tmp_path / "semi" / "compare" / "comparison.png").is_file()
