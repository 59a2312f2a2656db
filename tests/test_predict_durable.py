"""``fcdd predict`` loses no work: rows reach the tables batch by batch, a killed prediction
keeps every whole row, a rerun starts clean, stale temp files go, and the CSV is safe to open
in a spreadsheet."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcdd.detector import Detector
from fcdd.io import AppendFile, is_stale_temp, remove_stale_temps, temp_prefix
from fcdd.predict import CSV_FIELDS, PredictionLog, csv_cell, csv_rows, predict_files
from fcdd.rundir import CHECKPOINT, read_config, resume_checkpoint

#: killing processes and reading who started when (``/proc``) are what these tests are about
posix_only = pytest.mark.skipif(os.name != "posix" or not Path("/proc/stat").is_file(), reason="needs POSIX signals and /proc")


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def detector(tiny_run) -> Detector:
    return Detector.load(tiny_run.out, device="cpu", batch_size=4, workers=1)


@pytest.fixture(scope="module")
def many_images(tmp_path_factory) -> list[Path]:
    """60 small noise images: 15 batches of 4."""
    folder = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(0)
    files = []
    for i in range(60):
        path = folder / f"img_{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
        files.append(path)
    return files


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def temp_name(target: str, pid: int, host: str | None = None) -> str:
    """The name ``atomic_*`` gives a temp for ``target`` in process ``pid`` (of this host by default)."""
    host = host or temp_prefix(Path(target)).split(".fcdd.")[1].split(".")[0]
    return f".{target}.fcdd.{host}.{pid}.abc123_x.tmp"


# --- rows as they go -----------------------------------------------------------------------------
def test_rows_reach_both_tables_batch_by_batch(detector, many_images, tmp_path):
    out = tmp_path / "pred"
    seen: list[int] = []
    forward = detector.forward

    def counting_forward(batch):
        seen.append(len(read_csv(out / "predictions.csv")))  # on disk before the next batch runs
        return forward(batch)

    detector.forward = counting_forward
    result = predict_files(detector, many_images[:12], out, overlays=False, progress=False)
    assert seen == [0, 4, 8]
    rows, lines = read_csv(out / "predictions.csv"), read_jsonl(out / "predictions.jsonl")
    summary = json.loads((out / "predictions.json").read_text())
    assert [r["path"] for r in rows] == [str(p) for p in many_images[:12]] == [r["path"] for r in lines]
    assert lines == summary["predictions"] == result.rows
    assert [float(r["score"]) for r in rows] == [r["score"] for r in lines]


def test_a_new_prediction_into_the_folder_starts_clean(detector, many_images, tmp_path):
    out = tmp_path / "pred"
    predict_files(detector, many_images[:8], out, overlays=False, progress=False)
    predict_files(detector, many_images[8:11], out, overlays=False, progress=False)
    assert [r["path"] for r in read_csv(out / "predictions.csv")] == [str(p) for p in many_images[8:11]]
    assert len(read_jsonl(out / "predictions.jsonl")) == 3
    # the summary of an earlier prediction goes as soon as a new one starts
    PredictionLog(out).close()
    assert not (out / "predictions.json").exists()


def test_a_failed_append_is_cut_off(tmp_path, monkeypatch):
    table = AppendFile(tmp_path / "t.csv", "a,b\n")
    table.append("1,2\n")
    real_write = os.write

    def half_then_full_disk(fd, data):
        if len(data) > 4:
            return real_write(fd, bytes(data[:4]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full_disk)
    with pytest.raises(OSError, match="No space"):
        table.append("3,4444444\n")
    monkeypatch.undo()
    table.append("5,6\n")
    table.close()
    assert (tmp_path / "t.csv").read_text() == "a,b\n1,2\n5,6\n"


# --- spreadsheet formulas ------------------------------------------------------------------------
def test_formula_cells_are_neutralised_and_numbers_stay_numbers(tiny_run, tmp_path, monkeypatch):
    assert [csv_cell(v) for v in ("=1+1", "+x", "-x", "@x", "\tx", "ok", None)] == ["'=1+1", "'+x", "'-x", "'@x", "'\tx", "ok", ""]
    assert csv_cell(-0.25) == -0.25 and csv_cell(-3) == -3
    row = dict.fromkeys(CSV_FIELDS, None) | {"path": "-x.png", "score": -1.5, "threshold": -2.0, "verdict": "anomalous"}
    parsed = next(csv.DictReader(csv_rows([row], header=True).splitlines()))
    assert parsed["path"] == "'-x.png" and float(parsed["score"]) == -1.5 and parsed["threshold"] == "-2.0"

    monkeypatch.chdir(tmp_path)
    source = Path(tiny_run.evaluation.paths[0])
    names = ["=HYPERLINK(1).png", "+x.png", "-x.png", "@x.png", "plain.png"]
    for name in names:
        shutil.copy(source, name)
    detector = Detector.load(tiny_run.out, device="cpu", threshold=-5.0)
    predict_files(detector, names, "pred", overlays=False, progress=False)
    rows = read_csv(Path("pred/predictions.csv"))
    assert [r["path"] for r in rows] == ["'=HYPERLINK(1).png", "'+x.png", "'-x.png", "'@x.png", "plain.png"]
    assert all(float(r["threshold"]) == -5.0 and r["threshold"] == "-5.0" for r in rows)  # a number, not '-5.0
    assert [r["path"] for r in read_jsonl(Path("pred/predictions.jsonl"))] == names  # JSON keeps the paths as they are


# --- stale temp files ----------------------------------------------------------------------------
@posix_only
def test_only_temps_of_dead_writers_are_stale(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.5)
        dead = tmp_path / temp_name("checkpoint.pt", dead_pid())
        own = tmp_path / temp_name("checkpoint.pt", os.getpid())
        live = tmp_path / temp_name("snapshot.pt", sleeper.pid)
        reused = tmp_path / temp_name("heatmaps.pt", sleeper.pid)  # written long before that process started
        foreign_old = tmp_path / temp_name("metrics.json", 12, host="elsewhere")
        foreign_new = tmp_path / temp_name("history.json", 12, host="elsewhere")
        other = tmp_path / ".notes.txt.tmp"
        for path in (dead, own, live, reused, foreign_old, foreign_new, other):
            path.write_bytes(b"partial")
        hour_ago = time.time() - 3600
        os.utime(reused, (hour_ago, hour_ago))
        os.utime(foreign_old, (hour_ago - 86400, hour_ago - 86400))
        assert sorted(remove_stale_temps(tmp_path)) == sorted([dead, reused, foreign_old])
        assert all(p.exists() for p in (own, live, foreign_new, other))
    finally:
        sleeper.kill()
        sleeper.wait()


@posix_only
def test_a_save_killed_half_way_leaves_a_recognised_temp(tmp_path):
    script = (
        "import os, signal, sys\n"
        "from fcdd.io import atomic_torch_save\n"
        "class Kill:\n"
        "    def __reduce__(self):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "atomic_torch_save(sys.argv[1], {'weights': bytes(100000), 'then': Kill()})\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "checkpoint.pt")], timeout=120)
    assert done.returncode == -signal.SIGKILL
    left = list(tmp_path.iterdir())
    assert len(left) == 1 and left[0].name.startswith(".checkpoint.pt.fcdd.") and is_stale_temp(left[0])


def test_resuming_and_predicting_remove_stale_temps(tiny_run, detector, many_images, tmp_path):
    run = Path(shutil.copytree(tiny_run.out, tmp_path / "run"))
    stale = run / temp_name(CHECKPOINT, dead_pid())
    stale.write_bytes(b"half a checkpoint")
    config = read_config(run).replace(out=str(run), resume=True)
    assert resume_checkpoint(config, run) == run / CHECKPOINT
    assert not stale.exists()

    out = tmp_path / "pred"
    (out / "overlays" / "sub").mkdir(parents=True)
    stale_table = out / temp_name("predictions.json", dead_pid())
    stale_overlay = out / "overlays" / "sub" / temp_name("img_000.png", dead_pid())
    for path in (stale_table, stale_overlay):
        path.write_bytes(b"half")
    predict_files(detector, many_images[:2], out, progress=False)
    assert not stale_table.exists() and not stale_overlay.exists()


# --- killed mid-prediction -----------------------------------------------------------------------
SLOW_PREDICT = """
import sys, time
from fcdd.cli import main
from fcdd.detector import Detector

forward = Detector.forward

def slow(self, batch):  # a slower model, so the kill lands while batches are still coming
    time.sleep(0.15)
    return forward(self, batch)

Detector.forward = slow
sys.exit(main(sys.argv[1:]))
"""


@posix_only
def test_a_killed_prediction_keeps_every_whole_row(tiny_run, detector, many_images, tmp_path):
    folder = many_images[0].parent
    full = {r["path"]: r["score"] for r in predict_files(detector, many_images, tmp_path / "full", overlays=False, progress=False).rows}
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", SLOW_PREDICT, "predict", str(tiny_run.out), str(folder), "--out", str(out),
                              "--batch-size", "4", "--workers", "1", "--device", "cpu", "--quiet"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and child.poll() is None:
            table = out / "predictions.csv"
            if table.is_file() and table.read_text().count("\n") > 5:  # the header and two batches
                break
            time.sleep(0.01)
        time.sleep(0.07)  # somewhere inside a batch
        child.send_signal(signal.SIGKILL)
    finally:
        _, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert not (out / "predictions.json").exists()

    rows, lines = read_csv(out / "predictions.csv"), read_jsonl(out / "predictions.jsonl")
    assert (out / "predictions.csv").read_text().endswith("\n") and (out / "predictions.jsonl").read_text().endswith("\n")
    assert 8 <= len(rows) < len(many_images) and len(rows) % 4 == 0  # whole batches
    assert abs(len(lines) - len(rows)) <= 4
    for row in rows:
        assert set(row) == set(CSV_FIELDS) and None not in row.values()
        assert float(row["score"]) == pytest.approx(full[row["path"]], rel=1e-5, abs=1e-7)
        assert row["verdict"] in ("anomalous", "nominal")
    for line in lines:
        assert line["score"] == pytest.approx(full[line["path"]], rel=1e-5, abs=1e-7)

    predict_files(detector, many_images[:4], out, progress=False)  # a rerun cleans up after the kill
    assert len(read_csv(out / "predictions.csv")) == 4
    assert not [p for p in out.rglob(".*.tmp")]
