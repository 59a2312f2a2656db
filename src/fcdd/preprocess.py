"""Inputs of every kind to the training-time preprocessing (resize, [0, 1], channels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fcdd.data.base import open_image, to_array


def prepare_one(item, channels: int, size: int) -> torch.Tensor:
    """(C, size, size) float in [0, 1] from a path, PIL image, array (H, W[, C]) or tensor (C, H, W)."""
    if isinstance(item, (str, Path)):
        item = open_image(Path(item))
    if isinstance(item, Image.Image):
        return torch.from_numpy(to_array(item, channels, size)).float() / 255
    if isinstance(item, np.ndarray):
        arr = item
        if arr.dtype != np.uint8:
            arr = (np.clip(arr.astype(np.float64), 0, 1) * 255).round().astype(np.uint8)
        if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[2] not in (1, 3):
            arr = arr.transpose(1, 2, 0)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[..., 0]
        return prepare_one(Image.fromarray(arr), channels, size)
    if isinstance(item, torch.Tensor):
        tensor = item.detach().cpu()
        if tensor.dtype == torch.uint8:
            tensor = tensor.float() / 255
        if tensor.ndim == 2:
            tensor = tensor[None]
        if tensor.shape[0] != channels:
            tensor = tensor.mean(0, keepdim=True) if channels == 1 else tensor.expand(3, -1, -1)
        if tensor.shape[-2:] != (size, size):
            # the same PIL resize as training, so results match the evaluation exactly
            arr = (tensor.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
            return prepare_one(arr, channels, size)
        return tensor.float()
    raise TypeError(f"cannot use {type(item).__name__} as an image")


def prepare_batch(images, channels: int, size: int) -> torch.Tensor:
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return torch.stack([prepare_one(x, channels, size) for x in images])
    if isinstance(images, (str, Path, Image.Image, np.ndarray)) or (isinstance(images, torch.Tensor) and images.ndim < 4):
        if isinstance(images, np.ndarray) and images.ndim == 4:
            return torch.stack([prepare_one(x, channels, size) for x in images])
        images = [images]
    return torch.stack([prepare_one(x, channels, size) for x in images])
