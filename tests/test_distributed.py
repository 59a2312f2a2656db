"""Data-parallel training (``fcdd.training.distributed``): two CPU processes (gloo) under
torchrun, or started by ``fcdd train --devices 2``, train the model one process trains with the
same global batch, and rank 0's checkpoint resumes in one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fcdd
from fcdd.training.distributed import World, shard_bounds

#: How close two processes come to one. The float32 sums run in another order (the all-reduces;
#: one thread per process against the test process's threads), which moves results in the last
#: bits, and Adam's normalised steps carry that into the weights. Measured on 2 CPU cores with
#: this setting: epoch losses within 7e-8 relative, weights within 9e-7 absolute; with a step
#: every batch (``accumulate=1``) 4e-7 and 4e-5, where one process with 1 thread against 2
#: differs by 8e-5 itself. Training without synchronised batch norm, or without weighting the
#: uneven shards of the last batch, moves the weights by 2e-2 and more.
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 2e-4

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("whole,size", [(8, 2), (3, 2), (19, 4), (2, 3), (16, 16)])
def test_shards_cover_the_batch_once_in_order(whole, size):
    bounds = [shard_bounds(whole, World(rank, size)) for rank in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == whole
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))  # contiguous, rank after rank
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1


def fast_config(make_tiny_config, synthetic_root, out: Path, **changes):
    """The tiny test run in plain fp32, so the comparison is float order alone, with steps over 2
    batches (DDP keeps the first one's gradients local) and 19 images a epoch: batches of 8, 8, 3."""
    return make_tiny_config(synthetic_root, out, precision="fp32", accumulate=2, **changes)


@pytest.fixture(scope="module")
def reference(make_tiny_config, synthetic_root, tmp_path_factory):
    """One process, 2 epochs: the history and weights the parallel runs must reproduce."""
    out = tmp_path_factory.mktemp("one") / "run"
    fcdd.train(fast_config(make_tiny_config, synthetic_root, out))
    return history(out), weights(out)


def history(out: Path) -> dict:
    return json.loads((out / "history.json").read_text())


def weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoint.pt", weights_only=True)["method"]


def fcdd_command(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def assert_same_training(out: Path, reference) -> None:
    ref_history, ref_weights = reference
    got = history(out)
    for key in ("loss", "nominal", "anomalous"):
        assert got[key] == pytest.approx(ref_history[key], rel=LOSS_RTOL), key
    got_weights = weights(out)
    assert got_weights.keys() == ref_weights.keys()  # the unwrapped model's names: no DDP ``module.``
    for name, tensor in ref_weights.items():
        torch.testing.assert_close(got_weights[name], tensor, rtol=0, atol=WEIGHT_ATOL, msg=name)


@pytest.mark.slow
def test_torchrun_two_processes_train_the_one_process_model(make_tiny_config, synthetic_root, tmp_path, reference):
    options = tmp_path / "options.yaml"
    fast_config(make_tiny_config, synthetic_root, tmp_path / "run").to_yaml(options)
    done = fcdd_command(["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                         "-m", "fcdd", "train", "--config", str(options)], tmp_path)
    out = tmp_path / "run"
    assert_same_training(out, reference)
    assert len([line for line in done.stdout.splitlines() if line.startswith("{")]) == 1  # rank 0 alone prints
    log = (out / "log.txt").read_text()  # rank 0 alone writes: each line once
    assert log.count("epoch 2/2:") == 1 and log.count("data parallel: 2 processes (gloo)") == 1
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2


@pytest.mark.slow
def test_devices_two_checkpoint_resumes_in_one_process(make_tiny_config, synthetic_root, tmp_path, reference):
    out = tmp_path / "run"
    config = fast_config(make_tiny_config, synthetic_root, out)
    options = tmp_path / "options.yaml"
    config.replace(epochs=1).to_yaml(options)
    fcdd_command(["-m", "fcdd", "train", "--config", str(options), "--devices", "2"], tmp_path)
    assert history(out)["loss"] == pytest.approx(reference[0]["loss"][:1], rel=LOSS_RTOL)
    fcdd.train(config.replace(resume=True))  # the 2-process checkpoint, continued in this one
    assert_same_training(out, reference)
