"""The network input's shape: a square side, or (height, width) that keeps the data's aspect.

Why: squeezing a tall part into a square shrinks its long side (KolektorSDD's 1:2.5
commutators lose 60 % of their height, and thin cracks vanish into one heatmap cell). With
``--aspect data`` the shorter side is ``--image-size`` and the longer one follows the median
height:width ratio of the nominal training images, so every image of a set still gets the same
shape (one batch, one heatmap grid) and nothing is cropped.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

#: a square side, or (height, width)
Size = int | tuple[int, int]

#: the longer side is rounded to a multiple of this, so every stride of the nets (up to 32) divides it
SIDE_MULTIPLE = 32


def as_shape(size: Size) -> tuple[int, int]:
    """(height, width) of a square side or of a (height, width) pair."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def shape_for_ratio(side: int, ratio: float, longest: int = 4096) -> tuple[int, int]:
    """(height, width) with ``side`` as the shorter side and height / width close to ``ratio``;
    the longer side a multiple of ``SIDE_MULTIPLE`` (nearest, at least ``side``, at most
    ``longest``)."""
    if ratio <= 0:
        raise ValueError(f"aspect ratio must be positive, got {ratio}")
    long_ratio = max(ratio, 1 / ratio)
    long_side = max(side, round(side * long_ratio / SIDE_MULTIPLE) * SIDE_MULTIPLE)
    long_side = min(long_side, max(side, longest))
    return (long_side, side) if ratio >= 1 else (side, long_side)


def data_shape(sizes: Iterable[tuple[int, int]], side: int) -> tuple[int, int]:
    """The input shape for images of these (width, height) sizes: ``side`` on the shorter side,
    the median height:width ratio kept."""
    ratios = [height / width for width, height in sizes if width > 0 and height > 0]
    if not ratios:
        return side, side
    return shape_for_ratio(side, statistics.median(ratios))


def describe(size: Size) -> str:
    height, width = as_shape(size)
    return f"{height}x{width}"


__all__ = ["SIDE_MULTIPLE", "Size", "as_shape", "data_shape", "describe", "shape_for_ratio"]
