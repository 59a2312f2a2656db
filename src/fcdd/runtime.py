"""What every run needs from its process: a device, seeded random streams and log handlers.

Seeds: a run's one ``seed`` drives everything. Each place that draws its own random numbers
(the hold-out split, calibration copies, galleries, the data preview) derives its stream with
``derived_seed(seed, purpose)``, so those draws never depend on the order in which they happen
and the offsets live in one table.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

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
    """Everything logged goes to the console and to ``out/log.txt`` while the block runs."""
    logger = logging.getLogger("fcdd")
    logger.setLevel(logging.DEBUG)
    handlers: list[logging.Handler] = []
    if not any(getattr(h, "_fcdd_console", False) for h in logger.handlers):
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.INFO)
        console.setFormatter(logging.Formatter("%(message)s"))
        console._fcdd_console = True  # type: ignore[attr-defined]
        logger.addHandler(console)
        handlers.append(console)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(out / LOG, mode="a")
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(file_handler)
        handlers.append(file_handler)
    logger.propagate = False
    try:
        yield logger
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
