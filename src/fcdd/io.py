"""Durable writes: a crash never leaves a half-written result, checkpoint or table row behind.

Atomic writes go to a hidden temp file beside the target, then rename. The temp file's name
says who wrote it (``.NAME.fcdd.HOST.PID.RANDOM.tmp``), so one left behind by a killed process
can be recognised and removed later (``remove_stale_temps``) without touching a live writer's.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("fcdd")

_UMASK = os.umask(0)
os.umask(_UMASK)

#: this machine in temp names (letters, digits and '-', so the name parses back unambiguously)
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
_TEMP = re.compile(r"\.fcdd\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")
#: a temp of another machine (its process cannot be checked from here) is stale after this long
FOREIGN_TEMP_SECONDS = 24 * 3600


def temp_prefix(path: Path) -> str:
    """The start of a temp file's name for ``path``: hidden, with this host and process id."""
    return f".{path.name}.fcdd.{_HOST}.{os.getpid()}."


def _atomic(path: str | Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if err.filename is None:  # write() / fsync() errors (a full disk) name no file: name the target
            err.filename = str(path)
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return _atomic(path, lambda h: h.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Strict JSON (no NaN or Infinity, which most parsers refuse): a non-finite number becomes
    null, and a top-level mapping gets ``null_reasons`` saying which value was what."""
    reasons: dict[str, str] = {}
    clean = finite_json(obj, reasons)
    if reasons and isinstance(clean, dict):
        clean["null_reasons"] = {**clean.get("null_reasons", {}), **reasons}
    return atomic_write_text(path, json.dumps(clean, indent=2, allow_nan=False, default=_jsonable) + "\n")


def finite_json(value: Any, reasons: dict[str, str], where: str = "") -> Any:
    """``value`` with arrays and tensors as lists and every NaN / infinite float replaced by
    None; ``reasons[path]`` says why. One walk, before the one ``json.dumps``."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()  # numpy / torch values and arrays (their floats can be NaN too)
    if isinstance(value, float) and not math.isfinite(value):
        reasons[where or "value"] = "not a number (undefined, e.g. one class only)" if math.isnan(value) else \
            f"{'+' if value > 0 else '-'}infinite"
        return None
    if isinstance(value, dict):
        return {k: finite_json(v, reasons, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v, reasons, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def atomic_torch_save(path: str | Path, obj: Any) -> Path:
    return _atomic(path, lambda h: torch.save(obj, h))


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


# --- stale temp files -----------------------------------------------------------------------------
def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch, +-1 s), where the system says so (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _writer_alive(pid: int, modified: float) -> bool:
    """Whether the process that last wrote a temp at ``modified`` may still be writing it.

    A dead pid is not; nor is a live one that started after the write (the pid was reused).
    Where processes cannot be checked the answer is yes: a live writer's file is never taken.
    """
    if pid <= 0:
        return False
    if os.name != "posix":
        return True  # os.kill(pid, 0) is no probe there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    started = _process_start(pid)
    return started is None or started <= modified + 2.0


def is_stale_temp(path: Path, now: float | None = None) -> bool:
    """A temp file of ``_atomic`` whose writer is gone (killed mid-write); other names never are."""
    match = _TEMP.search(path.name)
    if not match or not path.name.startswith("."):
        return False
    try:
        modified = path.stat().st_mtime
    except OSError:
        return False
    pid = int(match["pid"])
    if match["host"] != _HOST:
        return (now or time.time()) - modified > FOREIGN_TEMP_SECONDS
    return pid != os.getpid() and not _writer_alive(pid, modified)


def remove_stale_temps(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Delete temp files that killed writers left in ``folder``; returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.glob("**/.*.tmp" if recursive else ".*.tmp"):
        if path.is_file() and is_stale_temp(path):
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.info("removed %d temp file(s) left by interrupted writes in %s", len(removed), folder)
    return removed


# --- growing files --------------------------------------------------------------------------------
class AppendFile:
    """A file that grows by whole records: each ``append`` is written and fsync'd before it
    returns, and one that fails (full disk, interrupt) is cut off again, so the file always ends
    after a complete record. Opening empties the file: every writer starts clean."""

    def __init__(self, path: str | Path, header: str = "") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        self.size = 0
        if header:
            self.append(header)

    def append(self, text: str) -> None:
        data = memoryview(text.encode())
        try:
            while data:
                data = data[os.write(self._fd, data):]
            os.fsync(self._fd)
        except BaseException:
            self._cut_back()
            raise
        self.size = os.lseek(self._fd, 0, os.SEEK_CUR)

    def _cut_back(self) -> None:
        try:
            os.ftruncate(self._fd, self.size)
            os.lseek(self._fd, self.size, os.SEEK_SET)
        except OSError:
            log.warning("%s: could not cut off a partly written record", self.path)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> AppendFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
