"""What a person can fix ends as ``fcdd <command>: error: <what is wrong>`` with exit status 2;
only a bug gives a traceback."""

from __future__ import annotations

import errno
import os
import sys

import pytest
import torch
import yaml

import fcdd.io
import fcdd.rundir
import fcdd.training.execute  # noqa: F401 - the module, reached through sys.modules
from fcdd.cli import main
from fcdd.rundir import HEATMAPS, is_finished
from fcdd.runtime import device_present, pick_device

#: the module (``fcdd.training.execute`` is also the name of its function)
EXECUTE = sys.modules["fcdd.training.execute"]


def train_cli(config, tmp_path, *flags: str) -> int:
    """``fcdd train`` in this process, with the tiny config as a YAML file."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in config.to_dict().items() if k != "out"}))
    return main(["train", "--config", str(path), "--out", config.out, *flags])


@pytest.mark.parametrize("name", ["cuda", "cuda:1", "mps"])
def test_a_missing_device_names_what_the_machine_has(tiny_config, tmp_path, capsys, name):
    if device_present(torch.device(name)):
        pytest.skip(f"this machine has {name}")
    assert train_cli(tiny_config, tmp_path, "--device", name) == 2
    err = capsys.readouterr().err
    assert f"fcdd train: error: device {name!r} is not available on this machine; it has: cpu" in err


def test_an_unknown_device_is_a_value_error():
    with pytest.raises(ValueError, match="unknown device 'gpu'; this machine has: cpu"):
        pick_device("gpu")


def test_no_space_left_names_the_file_and_leaves_the_run_unfinished(tiny_config, tmp_path, monkeypatch, capsys):
    original = fcdd.rundir.atomic_torch_save

    def disk_full_at_heatmaps(path, obj):
        if path.name == HEATMAPS:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return original(path, obj)

    monkeypatch.setattr(fcdd.rundir, "atomic_torch_save", disk_full_at_heatmaps)
    assert train_cli(tiny_config.replace(epochs=1), tmp_path) == 2
    out = tmp_path / "run"
    assert f"fcdd train: error: no space left on device writing {out / HEATMAPS}" in capsys.readouterr().err
    assert not is_finished(out) and not (out / "metrics.json").exists()


def test_a_bare_no_space_error_from_a_write_is_an_error(tiny_config, tmp_path, monkeypatch, capsys):
    def disk_full(fd):
        raise OSError(errno.ENOSPC)

    monkeypatch.setattr(fcdd.io.os, "fsync", disk_full)
    assert train_cli(tiny_config, tmp_path) == 2
    err = capsys.readouterr().err
    assert "fcdd train: error: no space left on device" in err and "Traceback" not in err


def test_a_floating_point_error_is_an_error(tiny_config, tmp_path, monkeypatch, capsys):
    def overflow(*args, **kwargs):
        raise FloatingPointError("overflow encountered in exp")

    monkeypatch.setattr(EXECUTE, "prepare", overflow)
    assert train_cli(tiny_config, tmp_path) == 2
    assert "fcdd train: error: overflow encountered in exp" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback(tiny_config, tmp_path, monkeypatch):
    def bug(*args, **kwargs):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(EXECUTE, "prepare", bug)
    with pytest.raises(TypeError, match="unsupported operand"):
        train_cli(tiny_config, tmp_path)
