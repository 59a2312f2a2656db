"""Atomic writes: a crash never leaves a half-written result or checkpoint behind."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic(path: str | Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
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
