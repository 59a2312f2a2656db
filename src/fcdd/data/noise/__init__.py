"""Synthetic anomaly and outlier-exposure sources; each module registers itself in ``NOISE``."""

from fcdd.data.noise.base import NOISE, NoiseSource
from fcdd.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["NOISE", "NoiseSource"]
