"""Run folders of the command line (``runs/.../v<N>`` and ``latest``), replaying a run's
config.yaml, nothing left by a failed start, and ``fcdd runs`` listing and comparing runs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

import fcdd.training.execute  # noqa: F401 - the module, reached through sys.modules
from fcdd.cli import main
from fcdd.config import Config
from fcdd.evaluation import HEADLINE_METRICS
from fcdd.rundir import CHECKPOINT, CONFIG, is_finished, read_metrics
from fcdd.runs_index import LATEST, experiment_folder, point_latest, reserve_version, versions

EXECUTE = sys.modules["fcdd.training.execute"]


def tiny_yaml(tiny, synthetic_root: Path, path: Path, **changes) -> Path:
    """The tiny setting (conftest's ``tiny``) as a YAML file without ``out``, as a person would replay it."""
    values = {k: v for k, v in tiny(synthetic_root, Path("unused"), **changes).to_dict().items() if k != "out"}
    path.write_text(yaml.safe_dump(values))
    return path


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- version folders ---------------------------------------------------------------------------------
def test_versions_count_up_and_latest_points_at_the_newest(tmp_path):
    parent = tmp_path / "exp"
    assert reserve_version(parent).name == "v1"
    (parent / "v7").mkdir()
    (parent / "notes").mkdir()
    assert reserve_version(parent).name == "v8"
    point_latest(parent)
    assert os.readlink(parent / LATEST) == "v8" and (parent / LATEST).resolve() == (parent / "v8").resolve()
    assert [p.name for p in versions(parent)] == ["v1", "v7", "v8"]  # the link is no version
    assert not [p for p in parent.iterdir() if p.name.endswith(".tmp")]
    for version in versions(parent):
        version.rmdir()
    point_latest(parent)
    assert not (parent / LATEST).is_symlink()


def test_default_folder_names_data_set_subject_objective_and_net(tmp_path):
    config = Config(data=str(tmp_path / "mvtec"), category="bottle", objective="hsc", net="cnn32")
    assert experiment_folder(config, tmp_path / "runs") == tmp_path / "runs" / "mvtec" / "bottle" / "hsc-cnn32"
    assert experiment_folder(Config(data=str(tmp_path / "tile") + "/")).parts[-3:] == ("mvtec", "tile", "fcdd-vgg11")
    assert experiment_folder(Config(dataset="mnist", category="../3")).parts[-2] == "3"


# --- a failed start leaves nothing ----------------------------------------------------------------------
def test_a_failed_start_leaves_no_folder_behind(make_tiny_config, synthetic_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = tiny_yaml(make_tiny_config, synthetic_root, tmp_path / "c.yaml")
    code, _, err = cli(capsys, "train", "--config", str(config), "--data", "missing")
    assert code == 2 and "missing" in err
    assert not (tmp_path / "runs").exists()
    code, _, _ = cli(capsys, "run", "--config", str(config), "--data", "missing")
    assert code == 2 and not (tmp_path / "runs").exists()
    # an explicit --out that did not exist goes too, with the parents made for it ...
    code, _, _ = cli(capsys, "train", "--config", str(config), "--data", "missing", "--out", "new/run")
    assert code == 2 and not (tmp_path / "new").exists()
    # ... one that existed before stays
    (tmp_path / "mine").mkdir()
    code, _, _ = cli(capsys, "train", "--config", str(config), "--data", "missing", "--out", "mine")
    assert code == 2 and (tmp_path / "mine").is_dir()


# --- two tiny runs: replay, a failure after the checkpoint, resume, listing and comparing ---------------
@pytest.fixture(scope="module")
def two_runs(make_tiny_config, synthetic_root, tmp_path_factory):
    """``runs/`` in a fresh directory: v1 trained without --out, v2 its config.yaml replayed with
    another seed, killed after its checkpoint and continued with ``--resume`` alone."""
    root = tmp_path_factory.mktemp("cwd")
    here = Path.cwd()
    os.chdir(root)
    patch = pytest.MonkeyPatch()
    log: dict = {}
    try:
        config = tiny_yaml(make_tiny_config, synthetic_root, root / "c.yaml")
        log["first"] = main(["train", "--config", str(config)])
        parent = experiment_folder(Config.from_yaml(config))
        first = parent / "v1"
        log["stored"] = yaml.safe_load((first / CONFIG).read_text())

        def killed(*args, **kwargs):
            raise OSError(28, "No space left on device")

        patch.setattr(EXECUTE, "evaluate", killed)
        log["killed"] = main(["train", "--config", str(first / CONFIG), "--seed", "1"])
        log["after_kill"] = sorted(p.name for p in parent.iterdir())
        log["kept_checkpoint"] = (parent / "v2" / CHECKPOINT).is_file()
        patch.undo()
        log["resumed"] = main(["train", "--config", str(first / CONFIG), "--seed", "1", "--resume"])
        log["again"] = main(["train", "--config", str(first / CONFIG), "--seed", "1", "--resume"])
    finally:
        patch.undo()
        os.chdir(here)
    return root, root / parent, log


def test_a_run_without_out_gets_a_version_folder_and_replays_as_a_new_one(two_runs, synthetic_root):
    root, parent, log = two_runs
    assert log["first"] == 0 and parent.relative_to(root).parts == ("runs", "mvtec", synthetic_root.name, "fcdd-cnn32")
    assert "out" not in log["stored"] and "resume" not in log["stored"]
    assert log["killed"] == 2 and log["after_kill"] == ["latest", "v1", "v2"] and log["kept_checkpoint"]
    assert log["resumed"] == 0 and log["again"] == 2  # the newest has finished: nothing to resume
    assert is_finished(parent / "v1") and is_finished(parent / "v2")
    assert os.readlink(parent / LATEST) == "v2"
    assert Config.from_yaml(parent / "v2" / CONFIG).seed == 1 and Config.from_yaml(parent / "v1" / CONFIG).seed == 0


def test_runs_lists_finished_runs_sorted_with_headline_metrics(two_runs, monkeypatch, capsys):
    root, parent, _ = two_runs
    monkeypatch.chdir(root)
    code, out, _ = cli(capsys, "runs")
    assert code == 0
    header, rule, *rows = out.splitlines()
    assert header.split("  ")[0].strip() == "run" and all(title in header for _, title in HEADLINE_METRICS)
    assert set(rule) == {"-", " "} and len(rows) == 2  # links (latest) are not followed: each run once
    assert len({line.index("fcdd ") for line in rows}) == 1  # aligned
    metrics = {v: read_metrics(parent / v) for v in ("v1", "v2")}
    best = max(metrics, key=lambda v: metrics[v]["image_auroc"])
    assert rows[0].startswith(str(parent.relative_to(root) / best))
    assert f"{metrics['v1']['image_auroc']:.4f}" in out

    code, out, _ = cli(capsys, "runs", "--json", "--sort", "run")
    listed = json.loads(out)
    assert [Path(r["run"]).name for r in listed] == ["v1", "v2"]
    assert listed[0]["image_auroc"] == pytest.approx(metrics["v1"]["image_auroc"])
    assert set(listed[0]) == {"run", "dataset", "objective", *(key for key, _ in HEADLINE_METRICS)}
    code, _, err = cli(capsys, "runs", "--sort", "nonsense")
    assert code == 2 and "image_auroc" in err


def test_runs_of_another_folder_and_a_missing_one(tiny_run, capsys, tmp_path):
    code, out, _ = cli(capsys, "runs", str(tiny_run.out.parent), "--json")
    assert code == 0 and [r["run"] for r in json.loads(out)] == [str(tiny_run.out)]
    code, out, _ = cli(capsys, "runs", str(tmp_path))
    assert code == 0 and "no finished runs" in out
    code, _, err = cli(capsys, "runs", str(tmp_path / "none"))
    assert code == 2 and "no runs folder" in err


def test_compare_puts_runs_side_by_side_with_the_options_that_differ(two_runs, capsys):
    _, parent, _ = two_runs
    a, b = str(parent / "v1"), str(parent / LATEST)
    code, out, _ = cli(capsys, "runs", "--compare", a, b, "--json")
    comparison = json.loads(out)
    assert code == 0 and comparison["runs"] == [a, b]
    assert comparison["options"] == {"seed": [0, 1]}
    v1, v2 = read_metrics(parent / "v1"), read_metrics(parent / "v2")
    assert comparison["metrics"]["image_auroc"] == [v1["image_auroc"], v2["image_auroc"]]
    assert list(comparison["metrics"])[: len(HEADLINE_METRICS)] == [key for key, _ in HEADLINE_METRICS]

    code, out, _ = cli(capsys, "runs", "--compare", a, b)
    lines = out.splitlines()
    assert a in lines[0] and b in lines[0]
    auroc = next(line for line in lines if line.startswith("image AUROC")).split()
    assert auroc[2:] == [f"{v1['image_auroc']:.4f}", f"{v2['image_auroc']:.4f}"]
    assert next(line for line in lines if line.strip().startswith("seed")).split() == ["seed", "0", "1"]
