"""``fcdd run`` on other engines: every executor in ``EXECUTORS`` writes the sequential run's
table, and so do the shards of a scheduler array followed by ``--aggregate``. Ray starts once
for the module, with 2 workers, and is skipped (with the reason) where it is not installed."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

from fcdd.cli import main
from fcdd.config import Config
from fcdd.executors import EXECUTORS, ExecutorSettings, check_available
from fcdd.runner import Job, Shard, run_job

#: one torch thread in every process: a Ray worker's default (Ray sets OMP_NUM_THREADS to the
#: job's CPUs), and the number of threads changes float sums, so the last digits of the metrics
TINY = ["--image-size", "32", "--net", "cnn32", "--width", "0.25", "--pretrained", "none", "--batch-size", "8",
        "--eval-batch-size", "16", "--no-report", "--holdout", "0.2", "--device", "cpu", "--epochs", "1",
        "--threads", "1"]

ROOT = Path(__file__).resolve().parents[1]
SLURM_SCRIPT = ROOT / "examples" / "slurm_array.sh"

#: the fixture that starts a local cluster for an engine (engines not named here need none)
CLUSTERS = {"ray": "local_ray"}


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """``--threads 1`` in this process must not slow the tests that run after these."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def grid(data, out, *extra: str) -> list[str]:
    """``fcdd run`` over both classes, one seed each, in the tiny setting."""
    return ["run", "--data", str(data), "--out", str(out), "--seeds", "1", *TINY, *extra]


@pytest.fixture(scope="module")
def reference(two_categories, tmp_path_factory) -> str:
    """results.csv of the plain sequential run, which every other way must reproduce."""
    out = tmp_path_factory.mktemp("sequential") / "exp"
    assert main(grid(two_categories, out)) == 0
    return (out / "results.csv").read_text()


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 workers for the module; ``fcdd run --executor ray`` joins it."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'fcdd[ray]')")
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def engine(name: str, request) -> None:
    """Skip an engine whose package is missing; start the cluster it needs."""
    module = EXECUTORS.info(name).get("module")
    if module:
        pytest.importorskip(module, reason=f"{module} is not installed (pip install 'fcdd[{EXECUTORS.info(name)['extra']}]')")
    if name in CLUSTERS:
        request.getfixturevalue(CLUSTERS[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", EXECUTORS.names())
def test_every_executor_writes_the_sequential_table(name, request, two_categories, reference, tmp_path, capsys):
    engine(name, request)
    out = tmp_path / "exp"
    assert main(grid(two_categories, out, "--executor", name)) == 0
    assert (out / "results.csv").read_text() == reference
    finished = re.findall(r"^\[(\d)/2\] class (\w+) seed 0: image AUROC", capsys.readouterr().err, re.M)
    # one plain line per finished job, counted in the order they finish
    assert sorted(c for _, c in finished) == ["grass", "gravel"] and sorted(n for n, _ in finished) == ["1", "2"]


@pytest.mark.slow
def test_shards_then_aggregate_write_the_sequential_table(two_categories, reference, tmp_path, capsys):
    out = tmp_path / "sharded"
    assert main(grid(two_categories, out, "--shard", "1/2")) == 0
    assert (out / "normal_grass" / "it_0" / "metrics.json").is_file()
    assert not (out / "normal_gravel").exists() and not (out / "results.csv").exists()
    capsys.readouterr()
    assert main(grid(two_categories, out, "--aggregate")) == 2
    err = capsys.readouterr().err
    assert "1 of 2 jobs" in err and str(out / "normal_gravel" / "it_0") in err and "normal_grass" not in err
    assert not (out / "results.csv").exists()
    assert main(grid(two_categories, out, "--shard", "2/2")) == 0
    assert main(grid(two_categories, out, "--aggregate")) == 0
    assert (out / "results.csv").read_text() == reference


def test_aggregate_of_an_experiment_never_started_names_every_job(two_categories, tmp_path, capsys):
    out = tmp_path / "none"
    assert main(grid(two_categories, out, "--aggregate")) == 2
    err = capsys.readouterr().err
    assert "2 of 2 jobs" in err and str(out / "normal_grass" / "it_0") in err and str(out / "normal_gravel" / "it_0") in err


@pytest.mark.parametrize("value", ["0/2", "3/2", "1/0", "2", "a/b", "1/2/3", ""])
def test_bad_shards_are_refused(value, two_categories, tmp_path, capsys):
    assert main(grid(two_categories, tmp_path / "exp", f"--shard={value}")) == 2
    assert "--shard" in capsys.readouterr().err
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("extra", [("--shard", "1/2", "--aggregate"), ("--cpus-per-job", "2"),
                                   ("--executor", "ray", "--gpus-per-job", "-1"),
                                   ("--executor", "ray", "--device", "cuda")])
def test_contradicting_options_are_refused(extra, two_categories, tmp_path, capsys):
    assert main(grid(two_categories, tmp_path / "exp", *extra)) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "exp").exists()


def test_shard_or_aggregate_needs_one_folder(two_categories, capsys):
    argv = ["run", "--data", str(two_categories), *TINY, "--shard", "1/2"]
    assert main(argv) == 2
    assert "--shard needs --out" in capsys.readouterr().err


def test_shards_cover_every_job_once():
    jobs = list(range(7))
    parts = [Shard.parse(f"{k}/3").select(jobs) for k in (1, 2, 3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    assert Shard.parse(" 2 / 3 ") == Shard(2, 3) and str(Shard(2, 3)) == "2/3"


def test_an_engine_whose_package_is_missing_is_refused_by_name():
    EXECUTORS.register("absent", module="fcdd_no_such_engine", extra="absent")(lambda *args: None)
    try:
        with pytest.raises(ValueError, match=r"fcdd\[absent\]"):
            check_available("absent")
    finally:
        EXECUTORS.unregister("absent")


def test_a_job_with_a_checkpoint_resumes_it(tmp_path, monkeypatch):
    """What a retried task does: its folder holds the dead worker's last checkpoint."""
    seen: list[Config] = []
    monkeypatch.setattr("fcdd.runner.train", seen.append)
    job = Job("grass", 1, tmp_path / "it_1")
    job.out.mkdir()
    (job.out / "checkpoint.pt").write_bytes(b"x")
    assert run_job(Config(seed=5), False, job) is True
    assert seen[0].resume and seen[0].category == "grass" and seen[0].seed == 6 and seen[0].out == str(job.out)


@pytest.mark.slow
def test_a_ray_task_whose_worker_died_is_run_again(local_ray, tmp_path):
    def die_the_first_time(item: int) -> int:  # local, so Ray ships it by value
        started = tmp_path / f"{item}.started"
        if not started.exists():
            started.touch()
            os._exit(1)
        return item * 10

    results: dict[int, int] = {}
    EXECUTORS.get("ray")(die_the_first_time, [1, 2], results.__setitem__, ExecutorSettings(retries=1))
    assert results == {1: 10, 2: 20}


def test_a_failed_ray_job_raises_its_own_error(local_ray):
    def refuse(item: int) -> int:
        raise ValueError(f"job {item} refused")

    with pytest.raises(ValueError, match="job 1 refused") as raised:
        EXECUTORS.get("ray")(refuse, [1], lambda *args: None, ExecutorSettings(retries=0))
    assert type(raised.value) is ValueError  # not Ray's wrapper: the command line prints one line


def test_the_readme_shows_the_slurm_script_as_saved():
    readme = (ROOT / "README.md").read_text()
    assert f"```bash\n{SLURM_SCRIPT.read_text()}```" in readme


def slurm(tmp_path: Path, *args: str, **env: str) -> tuple[list[str], list[str]]:
    """The example script's ``fcdd`` commands (stdout) and ``sbatch`` ones (stderr), each replaced
    by one that prints it; the fake sbatch answers job id 42."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "sbatch").write_text('#!/bin/sh\necho "sbatch $*" >&2\necho 42\n')
    (fake / "sbatch").chmod(0o755)
    done = subprocess.run(["bash", str(SLURM_SCRIPT), *args], capture_output=True, text=True, timeout=30, check=True,
                          env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "FCDD": "echo", **env})
    return done.stdout.splitlines(), done.stderr.splitlines()


def test_the_slurm_script_gives_each_array_task_its_shard(tmp_path):
    # an --array=0-3 range: task 2 is the third of four shards
    [line], _ = slurm(tmp_path, SLURM_ARRAY_TASK_ID="2", SLURM_ARRAY_TASK_MIN="0", SLURM_ARRAY_TASK_COUNT="4")
    assert line.startswith("run --preset mvtec") and line.endswith("--shard 3/4")
    [line], _ = slurm(tmp_path, "aggregate")
    assert line.endswith("--aggregate") and "--shard" not in line
    _, (array, table) = slurm(tmp_path, "submit")
    assert array == f"sbatch --parsable {SLURM_SCRIPT}"
    assert "--dependency=afterok:42" in table and table.endswith(f"--wrap bash {SLURM_SCRIPT} aggregate")
