"""Output maps to input-sized heatmaps.

The paper's upsampling: every output pixel spreads its value over its receptive field with a
Gaussian weight, i.e. a transposed convolution whose kernel is a Gaussian as large as the
receptive field and whose stride is the net's total stride. Bilinear interpolation is offered
for comparison.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fcdd.data.transforms import blur, gaussian_1d, gaussian_kernel
from fcdd.models.base import ReceptiveField
from fcdd.registry import Registry

#: how output maps become heatmaps (``--upsample``): classes taking (receptive field, std)
UPSAMPLERS: Registry[Callable[[ReceptiveField, float | None], nn.Module]] = Registry("upsampling")


@UPSAMPLERS.register("gaussian")
class GaussianUpsample(nn.Module):
    """Transposed convolution with a receptive-field-sized Gaussian, cropped to the input size.

    ``std`` defaults to the field's ``gaussian_std`` (a quarter of it), so the bulk of the mass
    lies in the field's central half, where the field's units have the most paths to the output.
    """

    def __init__(self, field: ReceptiveField, std: float | None = None) -> None:
        super().__init__()
        self.field = field
        size = field.size
        self.std = float(std) if std else field.gaussian_std
        # the 2-d Gaussian is the outer product of two 1-d ones, so the transposed convolution
        # runs as two 1-d passes: the same result, tens of times faster for the large fields of
        # deep backbones (a 331 px field on a 32x32 map: 24 s -> 0.4 s per 32 images on 2 cores).
        # The kernel follows from the field, so snapshots do not store it.
        self.register_buffer("kernel", gaussian_1d(size, self.std), persistent=False)
        # transposed conv puts output pixel i's kernel centre at i * jump + (size - 1) / 2;
        # the receptive field centre is at start + i * jump, so shift by the difference
        self.offset = (size - 1) / 2 - field.start

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # snapshots written before the kernel became separable hold the 2-d kernel: drop it
        state_dict.pop(prefix + "kernel", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, maps: torch.Tensor, output_size: int | tuple[int, int]) -> torch.Tensor:
        out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
        g = self.kernel.to(maps.dtype)
        jump = self.field.jump
        up = F.conv_transpose2d(maps, g.view(1, 1, -1, 1), stride=(jump, 1))
        up = F.conv_transpose2d(up, g.view(1, 1, 1, -1), stride=(1, jump))
        shift = int(round(self.offset))
        # pad generously so that cropping at ``shift`` is always in range
        pad = max(0, -shift, out_h + shift - up.shape[-2], out_w + shift - up.shape[-1])
        if pad:
            up = F.pad(up, (pad, pad, pad, pad))
        top = shift + pad
        return up[..., top : top + out_h, top : top + out_w]


@UPSAMPLERS.register("bilinear")
class BilinearUpsample(nn.Module):
    def __init__(self, field: ReceptiveField | None = None, std: float | None = None) -> None:
        super().__init__()

    def forward(self, maps: torch.Tensor, output_size: int | tuple[int, int]) -> torch.Tensor:
        size = (output_size, output_size) if isinstance(output_size, int) else output_size
        return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def make_upsampler(kind: str, field: ReceptiveField, std: float | None = None) -> nn.Module:
    if kind not in UPSAMPLERS:
        raise ValueError(f"unknown upsampling {kind!r}; choose one of {UPSAMPLERS.names()}")
    return UPSAMPLERS.get(kind)(field, std)


__all__ = ["BilinearUpsample", "GaussianUpsample", "blur", "gaussian_1d", "gaussian_kernel", "make_upsampler", "UPSAMPLERS"]
