"""Objectives, one module each: loss, anomaly score and heatmap."""

from fcdd.methods.base import METHODS, Method, build_method
from fcdd.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["METHODS", "Method", "build_method"]
