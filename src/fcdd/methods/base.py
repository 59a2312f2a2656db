"""What an objective is: a module that trains with a per-sample loss and explains with heatmaps.

A method wraps its network(s). ``forward(images)`` is inference: anomaly scores (B,) and
heatmaps (B, 1, H, W) at input resolution, from [0, 1] images. ``training_loss`` returns the
per-sample loss for a batch with labels (0 nominal, 1 anomalous) and ground-truth maps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from fcdd.data.shape import Size, as_shape
from fcdd.registry import Registry

if TYPE_CHECKING:
    from fcdd.config import Config


class Method(nn.Module):
    #: True when heatmaps need input gradients (gradient-based explanations)
    heatmaps_need_grad: bool = False
    #: whether the method can use synthetic/real anomalies in training (else nominal only)
    uses_anomalies: bool = True
    #: how it learns: gradient steps over epochs (``training_loss``), or one pass over the
    #: nominal images (``fit``) with no optimiser, epochs or synthetic anomalies
    learns_by_gradient: bool = True

    def __init__(self, config: Config, in_channels: int, image_shape: Size | None = None) -> None:
        super().__init__()
        #: (height, width) of the network input: the data's (``--aspect``), else the square side
        self.image_shape = as_shape(config.image_size if image_shape is None else image_shape)
        self.in_channels = in_channels
        self._net_name = config.net

    def describe(self) -> str:
        """What the method is built on, for the log: its network (arch, backbone ...)."""
        arch = getattr(self, "arch", None)
        return f"arch {arch}" if arch else f"net {self._net_name}"

    def training_loss(self, images: torch.Tensor, labels: torch.Tensor, maps: torch.Tensor, use_maps: bool) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def fit(
        self, train_images: torch.Tensor, batch_size: int, device: torch.device | str,
        state: dict | None = None, save: Callable[[dict], None] | None = None,
    ) -> None:
        """Methods that do not learn by gradient: learn from the nominal images (uint8) in one
        pass and keep what they learnt in buffers, so that it is part of the snapshot.

        A long fit calls ``save(state)`` now and then (tensors and plain values); a fit given
        that ``state`` back continues from it (the run was killed and resumed)."""
        raise NotImplementedError

    def after_training(self, train_images: torch.Tensor, batch_size: int, device: torch.device | str) -> None:
        """Called once after training, before evaluation, with the nominal training images (uint8).

        For statistics a method keeps about nominal data (e.g. the mean attention map); store them
        in buffers so that they are part of the snapshot.
        """

    def set_input_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Hand the training set's channel statistics to every sub-network that normalises."""
        for module in self.modules():
            if module is not self and hasattr(module, "set_input_normalisation") and getattr(module, "normalisation", "") == "dataset":
                module.set_input_normalisation(mean, std)

    def fit_input_range(self, train_images: torch.Tensor) -> None:
        """Before training, from the nominal training images (uint8): let every sub-network that
        measures its input range do so (``FCDDNet.fit_input_range``; the ``lcn_minmax``
        preprocessing), into buffers, so the snapshot normalises as training did."""
        for module in self.modules():
            if module is not self and hasattr(module, "fit_input_range"):
                module.fit_input_range(train_images)

    def frozen_modules(self) -> list[nn.Module]:
        """Modules whose weights stay fixed (pretrained early stages)."""
        frozen: list[nn.Module] = []
        for module in self.modules():
            if module is not self and hasattr(module, "frozen_prefix"):
                frozen += module.frozen_prefix()
        return frozen

    def trainable_parameters(self) -> list[nn.Parameter]:
        frozen = {id(p) for m in self.frozen_modules() for p in m.parameters()}
        return [p for p in self.parameters() if id(p) not in frozen and p.requires_grad]


METHODS: Registry[Callable[[Config, int, Size | None], Method]] = Registry("objective")


def square_side(image_shape: tuple[int, int], objective: str) -> int:
    """The side of a square input; a ValueError for objectives whose nets need one."""
    height, width = image_shape
    if height != width:
        raise ValueError(f"objective {objective} needs a square input; the data gave {height}x{width} (use --aspect square)")
    return height


def build_method(config: Config, in_channels: int, image_shape: Size | None = None) -> Method:
    return METHODS.get(config.objective)(config, in_channels, image_shape)
