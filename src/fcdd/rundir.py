"""The run-folder contract: every file a run folder holds, and the only code that reads or writes them.

    RUN/config.yaml     the options (replays the run)        RUN/log.txt       everything logged
    RUN/checkpoint.pt   last finished epoch (resume)         RUN/history.json  losses per epoch
    RUN/snapshot.pt     config, weights, thresholds          RUN/heatmaps.pt   test scores and heatmaps
    RUN/metrics.json    written last: its presence means the run finished
    RUN/report.html     with plots and galleries beside it (``fcdd.report``)

A ``Run`` is a run in memory, fresh from training or read back with ``load_run``.

Run folders travel between machines, so reading one never runs code from it: ``.pt`` files load
with ``weights_only=True`` (tensors and plain values), and a legacy file that needs full pickle
is refused unless the caller trusts it (``trust_pickle=True``, ``--trust-pickle`` or
``trusting_pickle()``). A damaged file or weights that do not fit the net are a
``RunFileError`` naming the file.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from fcdd.config import Config
from fcdd.data.base import DataSplits
from fcdd.data.prepare import prepare_splits
from fcdd.data.supervision import Supervision, build_supervision
from fcdd.evaluation import Evaluation, evaluate, evaluation_from_scores
from fcdd.io import atomic_torch_save, atomic_write_json, atomic_write_text, remove_stale_temps
from fcdd.methods import Method, build_method
from fcdd.runtime import LOG as LOG  # the log file is opened by runtime.run_logging
from fcdd.runtime import pick_device, versions

log = logging.getLogger("fcdd")

CONFIG = "config.yaml"
CHECKPOINT = "checkpoint.pt"
SNAPSHOT = "snapshot.pt"
HEATMAPS = "heatmaps.pt"
HISTORY = "history.json"
METRICS = "metrics.json"
REPORT = "report.html"
#: where ``fcdd compare`` puts the runs it trains beside a run
COMPARE = "compare"
#: layout versions of snapshot.pt and checkpoint.pt; a reader refuses newer ones (files without
#: a number are older than numbering and read as format 0)
SNAPSHOT_FORMAT = 1
CHECKPOINT_FORMAT = 1

#: options that may differ between a run and its resumption
RESUMABLE_CHANGES = {"resume", "epochs", "out", "report", "device", "devices", "threads", "eval_batch_size", "gallery_size", "overlay_alpha", "loggers", "cache_dir"}


class RunFileError(ValueError):
    """A run-folder file that cannot be used as it is; the message starts with the file."""


class UntrustedFileError(RunFileError):
    """A legacy ``.pt`` file that only full pickle reads, which can run code from the file."""


#: whether this context opted in to full pickle (``--trust-pickle`` sets it for one command)
_TRUST_PICKLE: ContextVar[bool] = ContextVar("fcdd_trust_pickle", default=False)


@contextmanager
def trusting_pickle(trust: bool = True) -> Iterator[None]:
    """Within the block, legacy pickle files load (``trust=True``) or are refused (``False``)."""
    token = _TRUST_PICKLE.set(trust)
    try:
        yield
    finally:
        _TRUST_PICKLE.reset(token)


@dataclass
class History:
    """Mean loss per epoch: overall and split into nominal / anomalous samples."""

    loss: list[float] = field(default_factory=list)
    nominal: list[float] = field(default_factory=list)
    anomalous: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    images_per_second: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> History:
        """From ``history.json`` or a checkpoint (extra keys such as ``metrics`` are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: list(v) for k, v in (values or {}).items() if k in names})


@dataclass
class Run:
    config: Config
    method: Method
    history: History
    evaluation: Evaluation
    metrics: dict
    splits: DataSplits
    out: Path | None
    #: the run's one supervision: calibration, galleries and the preview reuse it
    supervision: Supervision | None = None

    def snapshot(self) -> dict:
        return snapshot_of(self.config, self.method, self.splits.train.channels, self.metrics, self.metrics.get("thresholds"))


# --- reading ------------------------------------------------------------------------------------
def is_finished(run_dir: Path) -> bool:
    """Whether a run folder holds all a finished run writes (``write_run`` writes metrics last)."""
    run_dir = Path(run_dir)
    return all((run_dir / name).is_file() for name in (SNAPSHOT, HEATMAPS, METRICS))


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / CHECKPOINT).is_file()


def run_or_resume(config: Config, train: Callable[[Config], Any]) -> bool:
    """Train ``config`` into ``config.out`` unless the run there finished; resume a partial one.

    Returns whether it trained (``False``: finished before, kept as it is).
    """
    out = Path(config.out)
    if is_finished(out):
        return False
    train(config.replace(resume=has_checkpoint(out)))
    return True


def read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def read_metrics(run_dir: Path) -> dict:
    metrics = read_json(Path(run_dir) / METRICS)
    if metrics is None:
        raise FileNotFoundError(f"{Path(run_dir) / METRICS} missing: {run_dir} is not a finished run")
    return metrics


def read_heatmaps(run_dir: Path) -> dict:
    """``heatmaps.pt``: test ``scores``, ``labels``, ``heatmaps`` (float16), ``paths``, ``kinds``."""
    path = Path(run_dir) / HEATMAPS
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: {run_dir} is not a finished run")
    return load_tensors(path, "heatmaps file")


def _first_line(err: BaseException) -> str:
    """What went wrong, in one short line (torch's weights-only errors open with advice, not the cause)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = next((line for line in lines if "Unsupported" in line), lines[0] if lines else type(err).__name__)
    return (text[:200] + "...") if len(text) > 200 else text


def _unsafe_globals(path: Path, err: Exception) -> list[str]:
    """The Python objects a file refers to that ``weights_only`` refuses (empty: damaged, not refused).

    torch names the first one in its error; for zip files it lists them all.
    """
    named = re.findall(r"GLOBAL ([\w.]+)", str(err))
    if not named:
        return []
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path)) or named
    except Exception:  # noqa: BLE001 - the legacy (non-zip) format has no listing; torch's name will do
        return named


def load_tensors(path: Path, what: str, device: torch.device | str = "cpu", trust_pickle: bool = False):
    """A ``.pt`` file of the run folder, loaded without running code (tensors and plain values only).

    A well-formed legacy file that needs full pickle loads only when trusted (``trust_pickle`` or
    ``trusting_pickle()``), else ``UntrustedFileError``; any other failure is a ``RunFileError``.
    """
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad or a legacy file
        needs = _unsafe_globals(path, err)
        if not needs:
            raise RunFileError(f"{path}: not a readable {what}: damaged, or not written by fcdd ({_first_line(err)})") from None
    if not (trust_pickle or _TRUST_PICKLE.get()):
        raise UntrustedFileError(
            f"{path}: refused: this {what} is in a legacy pickle format that refers to {', '.join(needs[:5])}; "
            "loading it can run arbitrary code stored in the file. If you trust where it came from, pass "
            "--trust-pickle (Python: trust_pickle=True)") from None
    log.warning("%s: loading with full pickle (trusted; it refers to %s)", path, ", ".join(needs[:5]))
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as err:  # noqa: BLE001 - the file's own code may raise anything
        raise RunFileError(f"{path}: not a readable {what} ({_first_line(err)})") from None


def _check_format(path: Path, stored: Any, what: str, newest: int) -> None:
    """A dict whose ``format`` this version reads; files from before numbering have none."""
    if not isinstance(stored, dict):
        raise RunFileError(f"{path}: not an fcdd {what} (holds a {type(stored).__name__}, not a dict)")
    number = stored.get("format", 0)
    if not isinstance(number, int) or isinstance(number, bool) or number < 0:
        raise RunFileError(f"{path}: not an fcdd {what} (format {number!r})")
    if number > newest:
        raise RunFileError(f"{path}: {what} format {number} is newer than this fcdd reads (up to {newest}); upgrade fcdd to use it")


def _require(path: Path, stored: dict, what: str, kinds: dict[str, type | tuple[type, ...]]) -> None:
    for key, kind in kinds.items():
        if not isinstance(stored.get(key), kind):
            found = "missing" if key not in stored else f"a {type(stored[key]).__name__}"
            raise RunFileError(f"{path}: not a valid fcdd {what}: '{key}' is {found}")


def read_snapshot(path: str | Path, trust_pickle: bool = False) -> dict:
    """``snapshot.pt`` of a run folder (or the file itself), checked for format and contents."""
    path = Path(path)
    if path.is_dir():
        path = path / SNAPSHOT
    if not path.is_file():
        raise FileNotFoundError(f"no snapshot at {path} (expected a run folder or a snapshot.pt)")
    snapshot = load_tensors(path, "fcdd snapshot", trust_pickle=trust_pickle)
    _check_format(path, snapshot, "snapshot", SNAPSHOT_FORMAT)
    _require(path, snapshot, "snapshot", {"config": dict, "state_dict": dict, "in_channels": int, "image_size": int})
    snapshot["path"] = str(path)
    return snapshot


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """``checkpoint.pt``, checked for format and the entries every learner writes."""
    state = load_tensors(path, "checkpoint", device)
    _check_format(path, state, "checkpoint", CHECKPOINT_FORMAT)
    _require(path, state, "checkpoint", {"epoch": int, "method": dict, "config": dict})
    return state


def _weights_mismatch(module: torch.nn.Module, weights: dict) -> str:
    """The first entry, in the net's order, where ``weights`` do not fit ``module``."""
    expected = module.state_dict()
    for key, tensor in expected.items():
        if key not in weights:
            return f"{key} is missing"
        given = weights[key]
        if not isinstance(given, torch.Tensor):
            return f"{key} is a {type(given).__name__}, not a tensor"
        if given.shape != tensor.shape:
            return f"{key} has shape {tuple(given.shape)}, the net needs {tuple(tensor.shape)}"
    extra = next((key for key in weights if key not in expected), None)
    return f"{extra} is not a weight of this net" if extra else ""


def load_weights(module: torch.nn.Module, weights: dict, source: str | Path) -> None:
    """``module.load_state_dict(weights)``; weights that do not fit are a ``RunFileError``
    naming ``source`` and the first mismatching key."""
    try:
        module.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as err:
        where = _weights_mismatch(module, weights) or _first_line(err)
        raise RunFileError(f"{source}: weights do not fit the model ({type(module).__name__}): {where}") from None


def snapshot_shape(snapshot: dict) -> tuple[int, int]:
    """(height, width) of the network input a snapshot was trained at (older ones: square)."""
    shape = snapshot.get("image_shape")
    if shape is None:
        side = int(snapshot["image_size"])
        return side, side
    if not (isinstance(shape, (list, tuple)) and len(shape) == 2 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise RunFileError(f"{snapshot.get('path', 'snapshot')}: image_shape must be [height, width], got {shape!r}")
    return int(shape[0]), int(shape[1])


def config_from_snapshot(snapshot: dict) -> Config:
    known = {f.name for f in fields(Config)}
    dropped = sorted(set(snapshot["config"]) - known)
    if dropped:
        # options of another fcdd version that this one does not know; weights decide what the model is
        log.warning("%s: ignoring option(s) this fcdd version does not know: %s", snapshot.get("path", "snapshot"), ", ".join(dropped))
    return Config.from_dict({k: v for k, v in snapshot["config"].items() if k in known})


def method_from_snapshot(snapshot: dict) -> tuple[Config, Method]:
    """Rebuild the trained method; weights come from the snapshot, never from the network."""
    source = snapshot.get("path", "snapshot")
    try:
        config = config_from_snapshot(snapshot)
        method = build_method(config.replace(pretrained="none"), snapshot["in_channels"], snapshot_shape(snapshot))
    except (ValueError, KeyError, TypeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise RunFileError(f"{source}: its config does not describe a model this fcdd builds ({message})") from None
    load_weights(method, snapshot["state_dict"], source)
    return config, method.eval()


def read_config(run_dir: Path) -> Config:
    """The options a run ran with: its ``config.yaml`` (the file a person edits and replays),
    else the copy in its snapshot."""
    run_dir = Path(run_dir)
    if (run_dir / CONFIG).is_file():
        return Config.from_yaml(run_dir / CONFIG)
    if not (run_dir / SNAPSHOT).is_file():
        raise FileNotFoundError(f"{run_dir}: not a run folder (no {CONFIG} or {SNAPSHOT})")
    return config_from_snapshot(read_snapshot(run_dir))


def resume_checkpoint(config: Config, out: Path) -> Path | None:
    """The checkpoint to continue from, after checking that only resumable options changed."""
    checkpoint = out / CHECKPOINT
    if checkpoint.is_file() and not config.resume:
        raise FileExistsError(f"{out} already holds a run (checkpoint.pt); pass --resume to continue it or choose another --out")
    remove_stale_temps(out)  # what a write killed half-way (a checkpoint save) left behind
    if not checkpoint.is_file():
        return None
    stored = read_checkpoint(checkpoint)["config"]
    changed = sorted(k for k, v in config.to_dict().items() if k not in RESUMABLE_CHANGES and stored.get(k) != v)
    if changed:
        raise ValueError(f"{checkpoint}: cannot resume with changed options: {', '.join(changed)}")
    return checkpoint


def _matches(stored: dict, test) -> bool:
    return (
        len(stored.get("scores", [])) == len(test)
        and list(stored.get("paths") or []) == list(test.paths)
        and tuple(stored["heatmaps"].shape[-2:]) == tuple(test.images.shape[-2:])
    )


def load_run(run_dir: str | Path, device: str = "cpu", reevaluate: bool = False) -> Run:
    """A finished run folder as a ``Run`` (``out`` = ``run_dir``), without retraining.

    The method comes from the snapshot, the data from the recorded config (prepared as in
    training: same hold-out split and supervision share), the history from ``history.json`` and
    the test scores and heatmaps from ``heatmaps.pt`` (or a fresh evaluation when that is
    missing, stale or asked for).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    snapshot = read_snapshot(run_dir)
    _, method = method_from_snapshot(snapshot)
    config = read_config(run_dir).replace(out=str(run_dir))
    dev = pick_device(device)
    method = method.to(dev).eval()
    splits = prepare_splits(config)
    stored = None
    if (run_dir / HEATMAPS).is_file() and not reevaluate:
        stored = read_heatmaps(run_dir)
        if not _matches(stored, splits.test):
            log.warning("%s does not match the reloaded test set (%d images); evaluating again", run_dir / HEATMAPS, len(splits.test))
            stored = None
    if stored is None:
        evaluation = evaluate(method, splits.test, config.eval_batch_size, dev, progress=False, resolution=config.eval_resolution)
    else:
        evaluation = evaluation_from_scores(
            torch.as_tensor(stored["scores"]).double().numpy(), torch.as_tensor(stored["labels"]).numpy(),
            stored["heatmaps"], list(stored.get("kinds") or []), list(stored.get("paths") or []), splits.test,
            config.eval_resolution,
        )
    history = History.from_dict(read_json(run_dir / HISTORY))
    metrics = read_json(run_dir / METRICS) or dict(snapshot.get("metrics") or {})
    if stored is None:
        metrics = {**metrics, **evaluation.metrics()}
    if "thresholds" not in metrics and snapshot.get("thresholds"):
        metrics["thresholds"] = snapshot["thresholds"]
    if np.isnan(evaluation.scores).any():
        raise ValueError(f"{run_dir}: test scores contain NaN")
    return Run(config, method, history, evaluation, metrics, splits, run_dir, build_supervision(config, splits))


# --- writing ------------------------------------------------------------------------------------
def snapshot_of(config: Config, method: Method, in_channels: int, metrics: dict, thresholds: dict | None = None) -> dict:
    """Everything needed to use the model later: config, weights, preprocessing, thresholds."""
    return {
        "format": SNAPSHOT_FORMAT,
        "config": config.to_dict(),
        "in_channels": in_channels,
        "image_size": config.image_size,
        "image_shape": list(method.image_shape),
        "state_dict": {k: v.cpu() for k, v in method.state_dict().items()},
        "thresholds": thresholds or {},
        "metrics": metrics,
        "versions": versions(),  # what wrote the snapshot (metrics.json has the training's)
    }


#: options ``config.yaml`` leaves out: replaying the file (``fcdd train --config RUN/config.yaml``)
#: starts a new run, never continues or overwrites the one it was written into
NOT_REPLAYED = ("out", "resume")


def write_config(config: Config, out: Path) -> None:
    values = {k: v for k, v in config.to_dict().items() if k not in NOT_REPLAYED}
    atomic_write_text(out / CONFIG, yaml.safe_dump(values, sort_keys=False))


def write_checkpoint(out: Path, state: dict) -> None:
    atomic_torch_save(out / CHECKPOINT, {**state, "format": CHECKPOINT_FORMAT})


def write_run(run: Run) -> None:
    """History, snapshot and heatmaps, then ``metrics.json`` last: a folder with metrics holds
    everything (``is_finished``), so a run killed between these writes is redone, not read half-written."""
    out, ev = Path(run.out), run.evaluation
    atomic_write_json(out / HISTORY, {**run.history.to_dict(), "metrics": run.metrics})
    atomic_torch_save(out / SNAPSHOT, run.snapshot())
    atomic_torch_save(out / HEATMAPS, {
        "heatmaps": ev.heatmaps, "scores": torch.from_numpy(ev.scores),
        "labels": torch.from_numpy(ev.labels), "paths": ev.paths, "kinds": ev.kinds,
    })
    atomic_write_json(out / METRICS, run.metrics)
