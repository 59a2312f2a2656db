"""Run folders travel: reading one never runs code from it, and a damaged or foreign file is a
clear error (exit 2) naming the file. A legacy pickle file loads only with ``--trust-pickle``."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import fcdd
from fcdd.cli import build_parser, main
from fcdd.rundir import (
    CHECKPOINT,
    CHECKPOINT_FORMAT,
    CONFIG,
    HEATMAPS,
    METRICS,
    SNAPSHOT,
    SNAPSHOT_FORMAT,
    RunFileError,
    UntrustedFileError,
    read_checkpoint,
    read_snapshot,
    trusting_pickle,
)

READING_COMMANDS = ("predict", "serve", "evaluate", "report", "export", "compare", "train", "run")


class Payload:
    """What a hostile run file carries: unpickling it creates ``marker`` (it could run anything)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    """A writable copy of the finished tiny run."""
    return Path(shutil.copytree(tiny_run.out, tmp_path / "run"))


@pytest.fixture
def image(tiny_run) -> str:
    return str(tiny_run.evaluation.paths[0])


def rewrite(path: Path, change: Callable[[dict], None]) -> None:
    """Load a run file, change it in place and save it again with plain ``torch.save``."""
    stored = torch.load(path, weights_only=True)
    change(stored)
    torch.save(stored, path)


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def unfinished(run: Path) -> Path:
    """Only the checkpoint and config are left: a run killed during training."""
    for name in (SNAPSHOT, HEATMAPS, METRICS):
        (run / name).unlink()
    return run


def resume(run: Path, *flags: str) -> list[str]:
    return ["train", "--config", str(run / CONFIG), "--out", str(run), "--resume", *flags]


# --- pickle payloads are refused -----------------------------------------------------------------
def test_snapshot_with_a_payload_is_refused_everywhere_and_never_runs(run_copy, image, tmp_path, capsys):
    marker = tmp_path / "pwned"
    rewrite(run_copy / SNAPSHOT, lambda s: s.update(note=Payload(marker)))
    snapshot = run_copy / SNAPSHOT

    with pytest.raises(UntrustedFileError, match="trust_pickle=True") as info:
        fcdd.load(run_copy, device="cpu")
    assert str(snapshot) in str(info.value) and "arbitrary code" in str(info.value)
    for argv in (
        ["predict", str(run_copy), image, "--out", str(tmp_path / "pred"), "--device", "cpu", "--quiet"],
        ["evaluate", str(run_copy), "--device", "cpu"],
        ["report", str(run_copy)],
        ["export", str(run_copy), "--format", "torchscript", "--out", str(tmp_path / "m.pt")],
    ):
        code, err = cli(capsys, *argv)
        assert code == 2, (argv[0], err)
        assert err.startswith(f"fcdd {argv[0]}: error: {snapshot}: refused"), err
        assert "--trust-pickle" in err and "Traceback" not in err
    assert not marker.exists()
    assert not (tmp_path / "pred" / "predictions.csv").exists()


def test_checkpoint_with_a_payload_is_refused_on_resume_and_never_runs(run_copy, tmp_path, capsys):
    marker = tmp_path / "pwned"
    run = unfinished(run_copy)
    rewrite(run / CHECKPOINT, lambda s: s.update(note=Payload(marker)))
    code, err = cli(capsys, *resume(run))
    assert code == 2, err
    assert err.startswith(f"fcdd train: error: {run / CHECKPOINT}: refused") and "--trust-pickle" in err
    with pytest.raises(UntrustedFileError):
        read_checkpoint(run / CHECKPOINT)
    assert not marker.exists()


# --- a trusted legacy file loads -------------------------------------------------------------------
def legacy(stored: dict) -> None:
    """What an older writer might have stored: a numpy scalar needs pickle, but runs nothing."""
    stored["legacy_score"] = np.float64(0.5)


def test_a_trusted_legacy_snapshot_loads(run_copy, tiny_run, image, tmp_path, capsys):
    rewrite(run_copy / SNAPSHOT, legacy)
    with pytest.raises(UntrustedFileError):
        fcdd.load(run_copy, device="cpu")
    detector = fcdd.load(run_copy, device="cpu", trust_pickle=True)
    assert float(detector.score([image])[0]) == pytest.approx(float(tiny_run.evaluation.scores[0]), rel=1e-5, abs=1e-7)
    with trusting_pickle():
        assert read_snapshot(run_copy)["legacy_score"] == 0.5

    base = ["predict", str(run_copy), image, "--out", str(tmp_path / "pred"), "--device", "cpu", "--quiet", "--no-overlays"]
    code, err = cli(capsys, *base)
    assert code == 2 and "--trust-pickle" in err
    code, err = cli(capsys, *base, "--trust-pickle")
    assert code == 0, err
    assert (tmp_path / "pred" / "predictions.json").is_file()


def test_a_trusted_legacy_checkpoint_resumes(run_copy, capsys):
    run = unfinished(run_copy)
    rewrite(run / CHECKPOINT, legacy)
    code, err = cli(capsys, *resume(run))
    assert code == 2 and str(run / CHECKPOINT) in err and "--trust-pickle" in err
    code, err = cli(capsys, *resume(run, "--trust-pickle"))
    assert code == 0, err
    assert (run / METRICS).is_file()


def test_every_command_that_reads_runs_has_the_flag():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name in READING_COMMANDS:
        assert "--trust-pickle" in commands[name].format_help(), name
    assert "arbitrary code" in commands["predict"].format_help()


# --- format numbers ------------------------------------------------------------------------------
def test_files_carry_a_format_and_newer_ones_are_refused(run_copy):
    assert torch.load(run_copy / SNAPSHOT, weights_only=True)["format"] == SNAPSHOT_FORMAT
    assert torch.load(run_copy / CHECKPOINT, weights_only=True)["format"] == CHECKPOINT_FORMAT

    rewrite(run_copy / SNAPSHOT, lambda s: s.pop("format"))
    fcdd.load(run_copy, device="cpu")  # older than numbering: still read

    rewrite(run_copy / SNAPSHOT, lambda s: s.update(format=SNAPSHOT_FORMAT + 1))
    with pytest.raises(RunFileError, match=r"snapshot format 2 is newer than this fcdd reads") as info:
        fcdd.load(run_copy, device="cpu")
    assert str(info.value).startswith(str(run_copy / SNAPSHOT))

    rewrite(run_copy / CHECKPOINT, lambda s: s.update(format=CHECKPOINT_FORMAT + 1))
    with pytest.raises(RunFileError, match="newer") as info:
        read_checkpoint(run_copy / CHECKPOINT)
    assert str(info.value).startswith(str(run_copy / CHECKPOINT))


# --- damaged files -------------------------------------------------------------------------------
def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def foreign_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not a torch file")


def a_list(path: Path) -> None:
    torch.save([1, 2, 3], path)


def no_weights(path: Path) -> None:
    rewrite(path, lambda s: s.pop("state_dict" if path.name == SNAPSHOT else "method"))


def empty(path: Path) -> None:
    path.write_bytes(b"")


DAMAGE = [truncated, random_bytes, foreign_zip, a_list, no_weights, empty]


@pytest.mark.parametrize("damage", DAMAGE, ids=[d.__name__ for d in DAMAGE])
def test_a_damaged_snapshot_is_exit_2_naming_the_file(run_copy, image, tmp_path, capsys, damage):
    damage(run_copy / SNAPSHOT)
    code, err = cli(capsys, "predict", str(run_copy), image, "--out", str(tmp_path / "pred"), "--device", "cpu", "--quiet")
    assert code == 2
    assert err.startswith(f"fcdd predict: error: {run_copy / SNAPSHOT}: ") and "Traceback" not in err
    assert "refused" not in err  # damaged, not a pickle to trust


@pytest.mark.parametrize("damage", DAMAGE, ids=[d.__name__ for d in DAMAGE])
def test_a_damaged_checkpoint_is_exit_2_naming_the_file(run_copy, capsys, damage):
    run = unfinished(run_copy)
    damage(run / CHECKPOINT)
    code, err = cli(capsys, *resume(run))
    assert code == 2
    assert err.startswith(f"fcdd train: error: {run / CHECKPOINT}: ") and "Traceback" not in err


# --- weights that do not fit the net ------------------------------------------------------------
def first_key(weights: dict) -> str:
    return next(k for k, v in weights.items() if isinstance(v, torch.Tensor) and v.ndim >= 2)


def test_snapshot_weights_that_do_not_fit_name_the_file_and_key(run_copy, image, tmp_path, capsys):
    weights = torch.load(run_copy / SNAPSHOT, weights_only=True)["state_dict"]
    key = first_key(weights)
    rewrite(run_copy / SNAPSHOT, lambda s: s["state_dict"].update({key: torch.zeros(3, 3)}))
    code, err = cli(capsys, "predict", str(run_copy), image, "--out", str(tmp_path / "pred"), "--device", "cpu", "--quiet")
    assert code == 2
    assert err.startswith(f"fcdd predict: error: {run_copy / SNAPSHOT}: weights do not fit")
    assert f"{key} has shape (3, 3)" in err

    rewrite(run_copy / SNAPSHOT, lambda s: s["state_dict"].pop(key))
    with pytest.raises(RunFileError, match=f"{key} is missing"):
        fcdd.load(run_copy, device="cpu")
    rewrite(run_copy / SNAPSHOT, lambda s: s["state_dict"].update({key: weights[key], "extra.weight": torch.zeros(1)}))
    with pytest.raises(RunFileError, match="extra.weight is not a weight of this net"):
        fcdd.load(run_copy, device="cpu")


def test_checkpoint_weights_that_do_not_fit_name_the_file_and_key(run_copy, capsys):
    run = unfinished(run_copy)
    key = first_key(torch.load(run / CHECKPOINT, weights_only=True)["method"])
    rewrite(run / CHECKPOINT, lambda s: s["method"].update({key: torch.zeros(2)}))
    code, err = cli(capsys, *resume(run))
    assert code == 2
    assert f"fcdd train: error: {run / CHECKPOINT}: weights do not fit the model (FCDD): {key} has shape (2,)" in err  # after the log
    assert "Traceback" not in err
