"""The ``runs/`` tree of the command line: a version folder per start, the ``latest`` link, and
the index of finished runs that ``fcdd runs`` prints.

    runs/<dataset>/<category or data folder>/<objective>-<net>/v1, v2, ...   latest -> v2

A start without ``--out`` reserves the next free ``v<N>`` (``mkdir`` decides, so parallel
starts never share one) and points ``latest`` at the newest version; a start that fails before
its first checkpoint removes its version folder again.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fcdd.config import Config
from fcdd.evaluation import HEADLINE_METRICS
from fcdd.io import finite_json
from fcdd.rundir import NOT_REPLAYED, has_checkpoint, is_finished, read_config, read_metrics
from fcdd.training.execute import missing_folders, remove_empty_folders

log = logging.getLogger("fcdd")

#: where runs go when ``--out`` is not given, relative to the current directory
RUNS = Path("runs")
#: the link beside the version folders that points at the newest one
LATEST = "latest"
_VERSION = re.compile(r"v(\d+)")


# --- version folders -----------------------------------------------------------------------------
def _component(text: str) -> str:
    """``text`` as one folder name: no separators, nothing hidden, nothing empty."""
    cleaned = re.sub(r"[^\w.+-]+", "_", text).strip("._")
    return cleaned or "_"


def experiment_folder(config: Config, root: Path = RUNS) -> Path:
    """``root/<dataset>/<category or data folder>/<objective>-<net>``: where a config's versions go."""
    data = Path(config.data).resolve().name if config.data else None
    subject = config.category or data or "all"
    return root / _component(config.dataset) / _component(str(subject)) / _component(f"{config.objective}-{config.net}")


def versions(parent: Path) -> list[Path]:
    """The version folders ``v<N>`` of ``parent``, oldest first (links such as ``latest`` excluded)."""
    if not parent.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in parent.iterdir()
             if (m := _VERSION.fullmatch(p.name)) and p.is_dir() and not p.is_symlink()]
    return [p for _, p in sorted(found)]


def reserve_version(parent: Path) -> Path:
    """Make and return the next free ``parent/v<N>``; ``mkdir`` is atomic, so two starts at once
    get two folders."""
    parent.mkdir(parents=True, exist_ok=True)
    existing = versions(parent)
    number = int(existing[-1].name[1:]) + 1 if existing else 1
    while True:
        folder = parent / f"v{number}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            number += 1


def point_latest(parent: Path) -> None:
    """Point ``parent/latest`` at the newest version (or remove it when none is left). The new
    link is made beside it and renamed over it, so a reader never finds it missing."""
    link = parent / LATEST
    existing = versions(parent)
    if not existing:
        if link.is_symlink():
            link.unlink()
        return
    temp = parent / f".{LATEST}.{os.getpid()}.tmp"
    try:
        temp.unlink(missing_ok=True)
        temp.symlink_to(existing[-1].name, target_is_directory=True)
        os.replace(temp, link)
    except OSError as err:  # a file system without links: the versions still work
        temp.unlink(missing_ok=True)
        log.warning("could not point %s at %s: %s", link, existing[-1].name, err)


@contextmanager
def run_folder(config: Config, root: Path = RUNS) -> Iterator[Config]:
    """``config`` with its run folder: ``--out`` as given; with ``--resume`` alone, the newest
    version to continue; else a new version, which a failure of the block before any checkpoint
    in it removes again (with the folders made for it)."""
    if config.out:
        yield config
        return
    parent = experiment_folder(config, root)
    if config.resume:
        yield config.replace(out=str(_to_resume(parent)))
        return
    made = missing_folders(parent)
    out = reserve_version(parent)
    point_latest(parent)
    try:
        yield config.replace(out=str(out))
    except BaseException:
        if not _holds_checkpoint(out):  # an experiment's checkpoints lie in its runs' folders
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        point_latest(parent)
        remove_empty_folders(made)


def _holds_checkpoint(folder: Path) -> bool:
    return any(has_checkpoint(Path(f)) for f, _, _ in os.walk(folder))


def _to_resume(parent: Path) -> Path:
    existing = versions(parent)
    if not existing:
        raise FileNotFoundError(f"--resume without --out: no run under {parent} to continue")
    if is_finished(existing[-1]):
        raise ValueError(f"--resume without --out: the newest run, {existing[-1]}, has finished; "
                         "leave out --resume to start a new one, or give --out")
    return existing[-1]


# --- the index of finished runs ------------------------------------------------------------------
@dataclass(frozen=True)
class RunRecord:
    """One finished run as ``fcdd runs`` shows it."""

    path: Path
    metrics: dict

    def row(self) -> dict[str, Any]:
        """Strict-JSON values: the run, what it trained and its headline metrics."""
        values = {"run": str(self.path), "dataset": self.metrics.get("dataset"), "objective": self.metrics.get("objective")}
        values.update({key: self.metrics.get(key) for key, _ in HEADLINE_METRICS})
        return finite_json(values, {})


def find_runs(root: Path) -> list[Path]:
    """Every finished run folder below ``root`` (itself included), in path order; links (such as
    ``latest``) are not followed, so each run is found once."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no runs folder {root} (train one with fcdd train, or give the folder)")
    found = []
    for folder, subfolders, _ in os.walk(root, followlinks=False):
        subfolders.sort()
        if is_finished(Path(folder)):
            found.append(Path(folder))
    return sorted(found)


def collect(root: Path) -> list[RunRecord]:
    return [RunRecord(path, read_metrics(path)) for path in find_runs(root)]


def sort_records(records: list[RunRecord], key: str = "image_auroc") -> list[RunRecord]:
    """By ``key`` (a column or any entry of metrics.json): numbers highest first, text
    alphabetically; runs without a value for it come last."""

    def value(record: RunRecord) -> Any:
        row = record.row()
        return row[key] if key in row else record.metrics.get(key)

    if records and not any(key in r.row() or key in r.metrics for r in records):
        raise ValueError(f"--sort: no run has {key!r}; use one of {', '.join(sort_keys())}")
    present = [r for r in records if _usable(value(r))]
    missing = [r for r in records if not _usable(value(r))]
    numeric = all(isinstance(value(r), (int, float)) for r in present)
    return sorted(present, key=value, reverse=numeric) + missing


def sort_keys() -> list[str]:
    return ["run", "dataset", "objective", *(key for key, _ in HEADLINE_METRICS)]


def _usable(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def index_table(records: list[RunRecord]) -> str:
    """One row per run: path, objective and the headline metrics, aligned."""
    header = ["run", "objective", *(title for _, title in HEADLINE_METRICS)]
    rows = [[r.row()["run"], r.row()["objective"], *(r.row()[key] for key, _ in HEADLINE_METRICS)] for r in records]
    return format_table(header, rows)


# --- side by side ----------------------------------------------------------------------------------
def compare(paths: list[Path]) -> dict[str, Any]:
    """Metrics and differing options of finished runs, one list entry per run (strict JSON)."""
    paths = [Path(p) for p in paths]
    metrics = [read_metrics(p) for p in paths]
    configs = [{k: v for k, v in read_config(p).to_dict().items() if k not in NOT_REPLAYED} for p in paths]
    keys = [key for key, _ in HEADLINE_METRICS] + [
        key for key in _ordered_union(metrics) if key not in dict(HEADLINE_METRICS) and _is_number(metrics, key)]
    differing = [key for key in configs[0] if len({repr(c.get(key)) for c in configs}) > 1]
    return finite_json({
        "runs": [str(p) for p in paths],
        "metrics": {key: [m.get(key) for m in metrics] for key in keys},
        "options": {key: [c.get(key) for c in configs] for key in differing},
    }, {})


def _ordered_union(dicts: list[dict]) -> list[str]:
    return list(dict.fromkeys(key for d in dicts for key in d))


def _is_number(dicts: list[dict], key: str) -> bool:
    """Whether ``key`` holds a number (or nothing) in every run: a metric row, not a table."""
    values = [d.get(key) for d in dicts]
    return any(v is not None for v in values) and all(
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values)


def compare_table(comparison: dict[str, Any]) -> str:
    """One column per run, one row per metric, then the options that differ."""
    titles = dict(HEADLINE_METRICS)
    rows = [[titles.get(key, key), *values] for key, values in comparison["metrics"].items()]
    if comparison["options"]:
        rows.append(["options that differ:", *([""] * len(comparison["runs"]))])
        rows += [[f"  {key}", *(_option(v) for v in values)] for key, values in comparison["options"].items()]
    return format_table(["", *comparison["runs"]], rows)


def _option(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


# --- text tables --------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _is_numeric(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def format_table(header: list[str], rows: list[list[Any]]) -> str:
    """Columns padded to their widest cell: numbers right-aligned, text left-aligned; a title is
    right-aligned over a column of numbers."""
    columns = range(len(header))
    widths = [max([len(header[i]), *(len(_cell(row[i])) for row in rows)]) for i in columns]
    numeric = [bool(rows) and all(_is_numeric(row[i]) for row in rows) for i in columns]

    def line(texts: list[str], right: list[bool]) -> str:
        return "  ".join(texts[i].rjust(widths[i]) if right[i] else texts[i].ljust(widths[i]) for i in columns).rstrip()

    lines = [line(header, numeric), line(["-" * w for w in widths], numeric)]
    lines += [line([_cell(v) for v in row], [_is_numeric(v) for v in row]) for row in rows]
    return "\n".join(lines) + "\n"
