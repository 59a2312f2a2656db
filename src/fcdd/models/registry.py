"""The network registry: each network module registers a factory ``(in_channels, input_size, **options)``."""

from __future__ import annotations

from collections.abc import Callable

from fcdd.models.base import FCDDNet
from fcdd.registry import Registry

NETS: Registry[Callable[..., FCDDNet]] = Registry("network")


def build_net(name: str, in_channels: int, input_size: int, standardise: bool = False, preprocessing: str = "channels",
              **options) -> FCDDNet:
    """Make a registered net; ``standardise`` switches on per-image standardisation of its inputs,
    ``preprocessing`` chooses its input normalisation (``FCDDNet.use_preprocessing``)."""
    net = NETS.get(name)(in_channels=in_channels, input_size=input_size, **options)
    net.standardise_inputs = standardise
    net.use_preprocessing(preprocessing)
    return net
