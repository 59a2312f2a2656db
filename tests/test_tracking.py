"""``--loggers tensorboard,mlflow,csv``: one tiny run with every tracker, read back with each
tool's own reader; the versions in metrics.json and the snapshot; clear errors before training."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import subprocess
from pathlib import Path

import pytest
import torch

import fcdd
from fcdd.cli import main
from fcdd.runtime import source_commit, versions
from fcdd.tracking import TRACKERS, Tracker
from fcdd.tracking.csv import CSV_FILE
from fcdd.tracking.mlflow import EXPERIMENT, file_store_allowed, store_uri
from fcdd.tracking.tensorboard import TENSORBOARD_DIR
from fcdd.training.trainer import Trainer

HAVE = {name: importlib.util.find_spec(name) is not None for name in ("tensorboard", "mlflow")}
LOGGERS = ["csv", *(name for name in ("tensorboard", "mlflow") if HAVE[name])]
EPOCH_KEYS = {"loss": "loss", "loss_nominal": "nominal", "loss_anomalous": "anomalous", "lr": "lr",
              "images_per_second": "images_per_second", "seconds": "seconds"}


def needs(name: str):
    return pytest.mark.skipif(not HAVE[name], reason=f"{name} is not installed (pip install 'fcdd[{name}]')")


@pytest.fixture(scope="module")
def tracked(synthetic_root, make_tiny_config, tmp_path_factory):
    """A tiny run with every installed tracker and its report: ``fcdd.train`` hands the report's
    figures to the trackers."""
    config = make_tiny_config(synthetic_root, tmp_path_factory.mktemp("tracked") / "run", loggers=LOGGERS, report=True)
    run = fcdd.train(config)
    out = Path(run.out)
    return out, json.loads((out / "history.json").read_text()), json.loads((out / "metrics.json").read_text())


def test_csv_has_one_row_per_epoch_matching_the_history(tracked):
    out, history, _ = tracked
    with open(out / CSV_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for column, key in EPOCH_KEYS.items():
        assert [float(r[column]) for r in rows] == pytest.approx(history[key])


@needs("tensorboard")
def test_tensorboard_events_hold_epochs_metrics_options_and_figures(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, history, metrics = tracked
    events = EventAccumulator(str(out / TENSORBOARD_DIR), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    for name, key in EPOCH_KEYS.items():
        scalars = events.Scalars(f"train/{name}")
        assert [s.step for s in scalars] == [1, 2]
        assert [s.value for s in scalars] == pytest.approx(history[key], rel=1e-5)
    for key in ("image_auroc", "pixel_auroc", "pixel_aupro", "image_ap", "image_f1_max"):
        (final,) = events.Scalars(f"final/{key}")
        assert final.step == 2 and final.value == pytest.approx(metrics[key], rel=1e-5)
    assert {"report/loss", "report/roc_image"} <= set(tags["images"])
    assert "config/text_summary" in tags["tensors"]
    assert any((out / TENSORBOARD_DIR / "hparams").glob("events.out.tfevents.*")), "the HParams dashboard's run"


@needs("mlflow")
def test_mlflow_store_holds_params_metric_histories_final_metrics_and_figures(tracked):
    from mlflow.tracking import MlflowClient

    out, history, metrics = tracked
    assert store_uri(out).startswith("file:")
    with file_store_allowed():
        client = MlflowClient(tracking_uri=store_uri(out))
        experiment = client.get_experiment_by_name(EXPERIMENT)
        (run,) = client.search_runs([experiment.experiment_id])
        run_id = run.info.run_id
        assert run.info.status == "FINISHED" and run.info.run_name == out.name
        params = run.data.params
        assert params["lr"] == "0.001" and params["epochs"] == "2" and params["net"] == "cnn32"
        assert params["loggers"] == ",".join(LOGGERS)
        assert run.data.tags["fcdd.version.torch"] == str(torch.__version__)
        for name, key in EPOCH_KEYS.items():
            steps = client.get_metric_history(run_id, f"train/{name}")
            assert [m.step for m in steps] == [1, 2]
            assert [m.value for m in steps] == pytest.approx(history[key])
        for key in ("image_auroc", "pixel_auroc", "pixel_aupro", "image_ap", "image_f1_max"):
            assert run.data.metrics[f"final/{key}"] == pytest.approx(metrics[key])
        figures = {Path(a.path).name for a in client.list_artifacts(run_id, "figures")}
    assert {"loss.png", "roc_image.png"} <= figures


def test_versions_are_in_metrics_json_and_the_snapshot(tracked):
    out, _, metrics = tracked
    snapshot = torch.load(out / "snapshot.pt", weights_only=True, map_location="cpu")
    for recorded in (metrics["versions"], snapshot["versions"], snapshot["metrics"]["versions"]):
        assert recorded["torch"] == str(torch.__version__) and recorded["fcdd"] == fcdd.__version__
        assert recorded["python"] and recorded["platform"]
        assert recorded["git_commit"] == versions()["git_commit"]


def test_the_git_commit_is_the_source_trees_or_none():
    commit = source_commit()
    try:
        head = subprocess.run(["git", "-C", str(Path(fcdd.__file__).parent), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head = None
    assert commit == head


def test_no_git_means_no_commit_and_no_error(monkeypatch):
    monkeypatch.setenv("PATH", "")
    assert source_commit() is None


def train_args(synthetic_root, out: Path, *extra: str) -> list[str]:
    return ["train", "--dataset", "mvtec", "--data", str(synthetic_root), "--image-size", "32", "--net", "cnn32",
            "--width", "0.25", "--pretrained", "none", "--epochs", "1", "--device", "cpu", "--no-report", "--out", str(out), *extra]


def test_an_unknown_logger_is_a_user_error_listing_the_trackers(synthetic_root, tmp_path, capsys):
    assert main(train_args(synthetic_root, tmp_path / "run", "--logger", "csv,wandb")) == 2
    err = capsys.readouterr().err
    assert "unknown tracker 'wandb'; choose one of: csv, mlflow, tensorboard" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["tensorboard", "mlflow"])
def test_a_missing_extra_names_the_pip_install_before_training(name, synthetic_root, tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda module, *a: None if module == name else real(module, *a))
    assert main(train_args(synthetic_root, tmp_path / "run", "--loggers", name)) == 2
    err = capsys.readouterr().err
    assert f"pip install 'fcdd[{name}]'" in err and "epoch 1/1" not in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@needs("mlflow")
def test_a_resumed_run_continues_its_mlflow_run_and_csv(synthetic_root, make_tiny_config, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "run"
    config = make_tiny_config(synthetic_root, out, loggers=["mlflow", "csv"])
    original = Trainer.train_epoch

    def stop_in_epoch_two(self, train):
        if self.epoch == 1:
            raise RuntimeError("power cut")
        return original(self, train)

    monkeypatch.setattr(Trainer, "train_epoch", stop_in_epoch_two)
    with pytest.raises(RuntimeError, match="power cut"):
        fcdd.train(config)
    monkeypatch.undo()
    fcdd.train(config.replace(resume=True))
    with file_store_allowed():
        client = MlflowClient(tracking_uri=store_uri(out))
        (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
        assert run.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2]
    assert (out / CSV_FILE).read_text().count("\n") == 3  # header and both epochs


class Broken(Tracker):
    def epoch(self, epoch, history) -> None:
        raise RuntimeError("disk full")


def test_a_failing_tracker_is_dropped_with_a_warning_and_the_run_finishes(synthetic_root, make_tiny_config, tmp_path, caplog):
    TRACKERS.register("broken")(Broken)
    try:
        with caplog.at_level(logging.WARNING, logger="fcdd"):
            run = fcdd.train(make_tiny_config(synthetic_root, tmp_path / "run", epochs=1, loggers=["broken", "csv"]))
    finally:
        TRACKERS.unregister("broken")
    assert run.metrics["image_auroc"] is not None and (tmp_path / "run" / CSV_FILE).is_file()
    assert "tracker broken stopped (RuntimeError: disk full)" in caplog.text
