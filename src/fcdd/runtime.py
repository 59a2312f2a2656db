"""What every run needs from its process: a device, seeded random streams and log handlers.

Seeds: a run's one ``seed`` drives everything. Each place that draws its own random numbers
(the hold-out split, calibration copies, galleries, the data preview) derives its stream with
``derived_seed(seed, purpose)``, so those draws never depend on the order in which they happen
and the offsets live in one table.

Logging and progress: the library logs to the ``fcdd`` logger and adds no console handler of
its own (records propagate to whatever the host application set up; the command line installs
``console_logging``); a run's ``log.txt`` is the one handler it adds. Progress bars are drawn
only where someone watches (``progress_bar``): a terminal or a notebook, unless a command's
``--progress`` / ``--no-progress`` (``progress_setting``) or ``TQDM_DISABLE`` says otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import logging
import os
import platform
import random
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

log = logging.getLogger("fcdd")

#: the run folder's log file (part of the run-folder contract, ``fcdd.rundir``)
LOG = "log.txt"

#: offsets of the derived random streams (changing one changes every figure that uses it)
SEED_OFFSETS = {
    "holdout": 7919,
    "calibration": 1,
    "train_gallery": 15485863,
    "preview": 104729,
}


def derived_seed(seed: int, purpose: str) -> int:
    """The seed of one named random stream of a run."""
    return seed + SEED_OFFSETS[purpose]


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


class DivergedError(ValueError):
    """Training or scoring produced NaN or infinite numbers: the model diverged.

    A ``ValueError``, so the command line reports it as a user error (exit status 2): what fixes
    it is an option (a lower learning rate, fp32 arithmetic), not the code. Raised before the
    run folder gets its results, so a diverged run never looks finished.
    """


#: what to change when a run diverges (the learner adds the run's own values)
DIVERGED_ADVICE = "lower --lr or train with --precision fp32"


def available_devices() -> list[str]:
    """The devices this machine can run on, named as ``--device`` takes them."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        names.append("mps")
    return names


def device_present(device: torch.device) -> bool:
    """Whether this machine has ``device`` (a CUDA index beyond the GPUs present does not count)."""
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return torch.cuda.is_available() and (device.index is None or device.index < torch.cuda.device_count())
    if device.type == "mps":
        return torch.backends.mps.is_available()
    backend = getattr(torch, device.type, None)  # xpu and other accelerators with a torch module
    return bool(getattr(backend, "is_available", lambda: False)())


def pick_device(name: str) -> torch.device:
    """The device ``--device`` names ("auto": CUDA when present, else the CPU).

    A device this machine lacks is a ``ValueError`` listing what it has, so a typo or a copied
    command line ends in a message, not a traceback from deep inside torch.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    here = ", ".join(available_devices())
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; this machine has: {here}") from None
    if not device_present(device):
        raise ValueError(f"device {name!r} is not available on this machine; it has: {here}")
    return device


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``--precision`` on ``device``; None means plain fp32."""
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16() else None
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("--precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    return torch.bfloat16 if precision == "bf16" else torch.float16


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 instructions (AVX512-BF16 or AMX), where bf16 pays."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision for the block, or nothing when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def run_logging(out: Path | None) -> Iterator[logging.Logger]:
    """What is logged while the block runs also goes to ``out/log.txt``, the run folder's log.

    No console handler: records propagate to the host's handlers (the command line's is
    ``console_logging``). The ``fcdd`` logger passes INFO during the block unless its level was
    set by someone, so log.txt holds the run's lines whatever the root logger's level is.
    """
    logger = logging.getLogger("fcdd")
    level = logger.level
    if level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    file_handler: logging.Handler | None = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(out / LOG, mode="a")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(file_handler)
    try:
        yield logger
    finally:
        if file_handler is not None:
            logger.removeHandler(file_handler)
            file_handler.close()
        logger.setLevel(level)


class ConsoleFormatter(logging.Formatter):
    """One plain line: the message, with ``warning:`` / ``error:`` before anything above INFO."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno <= logging.INFO else f"{record.levelname.lower()}: {text}"


class ConsoleHandler(logging.Handler):
    """Writes to the ``sys.stderr`` of the moment (so captured and redirected streams work),
    through ``tqdm.write`` so that a line never lands inside a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must not raise; the standard report instead
            self.handleError(record)


@contextlib.contextmanager
def console_logging(level: int = logging.INFO) -> Iterator[logging.Handler]:
    """fcdd's records from ``level`` up on stderr while the block runs: what the command line shows."""
    logger = logging.getLogger("fcdd")
    handler = ConsoleHandler(level)
    handler.setFormatter(ConsoleFormatter("%(message)s"))
    before = logger.level
    if before == logging.NOTSET or before > level:
        logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)


# --- progress bars -------------------------------------------------------------------------------
#: True / False: bars forced on / off (``--progress`` / ``--no-progress``); None: decide (``show_progress``)
_PROGRESS: ContextVar[bool | None] = ContextVar("fcdd_progress", default=None)

#: values of ``TQDM_DISABLE`` that leave bars on
_FALSE_WORDS = {"", "0", "false", "no", "off"}


@contextlib.contextmanager
def progress_setting(show: bool | None) -> Iterator[None]:
    """Within the block progress bars are drawn (True), never drawn (False) or decided (None)."""
    token = _PROGRESS.set(show)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def watched_stderr() -> bool:
    """Whether stderr reaches a person who sees bars redraw: a terminal or a Jupyter kernel."""
    stream = sys.stderr
    if stream is None:
        return False
    if type(stream).__module__.startswith("ipykernel"):
        return True  # tqdm.auto draws a notebook widget there
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def show_progress() -> bool:
    """Whether bars are drawn now: the setting when forced, else not when ``TQDM_DISABLE`` is set,
    else only on a watched stderr (a log file or pipe would fill with redrawn frames)."""
    forced = _PROGRESS.get()
    if forced is not None:
        return forced
    if os.environ.get("TQDM_DISABLE", "").strip().lower() not in _FALSE_WORDS:
        return False
    return watched_stderr()


def progress_bar(iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar (same arguments) that draws only when ``show_progress()``; ``disable=True``
    from the caller keeps it off in any case."""
    disable = bool(kwargs.pop("disable", False)) or not show_progress()
    return tqdm(iterable, disable=disable, **kwargs)


# --- what produced a run -------------------------------------------------------------------------
@functools.cache
def versions() -> dict[str, str | None]:
    """fcdd, torch, Python and platform versions and the source tree's git commit, for
    ``metrics.json`` and snapshots: what a result came from, to compare or reproduce it."""
    try:
        fcdd_version: str | None = importlib.metadata.version("fcdd")
    except importlib.metadata.PackageNotFoundError:
        fcdd_version = None
    return {
        "fcdd": fcdd_version, "torch": str(torch.__version__), "python": platform.python_version(),
        "platform": platform.platform(), "git_commit": source_commit(),
    }


def source_commit() -> str | None:
    """The git commit of the checkout fcdd's source is part of, or None (no git, no repository,
    or the package is not tracked there, e.g. installed into a virtual environment inside some
    other repository). Never raises."""
    folder = Path(__file__).resolve().parent
    tracked = _git(folder, "ls-files", "--error-unmatch", Path(__file__).name)
    commit = _git(folder, "rev-parse", "HEAD") if tracked is not None else None
    return commit if commit and len(commit) == 40 else None


def _git(folder: Path, *args: str) -> str | None:
    """The output of one git command run in ``folder``, or None when it fails in any way."""
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
