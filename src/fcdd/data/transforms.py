"""Batch-level preprocessing and online augmentation on tensors.

Preprocessing (as in the FCDD paper's per-size pipelines, simplified to one rule): every image is
resized once to ``image_size`` (bilinear; masks nearest) and scaled to [0, 1]. The network itself
normalises (``FCDDNet.normalise``): per channel, with ImageNet mean/std for pretrained backbones,
otherwise the mean/std of the nominal training images, estimated once per run and stored in the
snapshot; or (``--preprocessing lcn_minmax``) by the paper's local contrast normalisation and
min-max scaling. Training adds random flips, a random shift (reflection padding), brightness/contrast
jitter and optional pixel noise; evaluation uses the resized image only. With ``--load-size`` the
nominal training images are also decoded at that larger side and each training image is first,
half the time each, a random ``image_size`` crop or a resize of it (``crop_or_resize``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) to float in [0, 1]."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


#: uint8 values read at once by ``channel_stats`` (it holds about 21 bytes per value while summing)
STATS_CHUNK_VALUES = 4_000_000


def channel_stats(images: torch.Tensor, chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of a uint8 image set, in [0, 1] units, in bounded memory
    (``chunk`` images at a time; by default as many as make ``STATS_CHUNK_VALUES`` values, ~84 MB)."""
    per_image = max(1, int(torch.tensor(images.shape[1:]).prod()))
    chunk = chunk or max(1, STATS_CHUNK_VALUES // per_image)
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    count = 0
    for start in range(0, len(images), chunk):
        x = to_float(images[start : start + chunk]).double()
        total += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
        count += x.numel() // x.shape[1]
    mean = total / max(count, 1)
    std = (squares / max(count, 1) - mean**2).clamp_min(0).sqrt()
    return mean.float(), std.float()


@dataclass
class Augment:
    """Random geometric and photometric changes; geometric ones move the ground-truth maps too."""

    flip: str = "h"
    shift: float = 0.0625
    jitter: float = 0.1
    noise: float = 0.0
    #: ``noise`` is a multiple of each image's own standard deviation (else in [0, 1] units)
    noise_relative: bool = False
    #: probability that an image gets the noise
    noise_p: float = 1.0
    #: the network's input side; larger images (``--load-size``) are cropped or resized to it first
    size: int | None = None

    @classmethod
    def from_config(cls, config) -> Augment:
        return cls(config.augment_flip, config.augment_shift, config.augment_jitter, config.augment_noise,
                   config.augment_noise_relative, config.augment_noise_p, config.image_size if config.load_size is not None else None)

    def __call__(self, images: torch.Tensor, maps: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(images)
        if n == 0:
            return images, maps
        dev = images.device
        if self.size is not None and images.shape[-1] != self.size:
            images, maps = crop_or_resize(images, maps, self.size, generator)

        def rand(*shape):
            return torch.rand(*shape, generator=generator).to(dev)

        h, w = images.shape[-2:]
        flip_x = rand(n) < 0.5 if "h" in self.flip else torch.zeros(n, dtype=torch.bool, device=dev)
        flip_y = rand(n) < 0.5 if "v" in self.flip else torch.zeros(n, dtype=torch.bool, device=dev)
        # whole-pixel shifts: images and maps stay exactly aligned and images are not resampled
        dx = torch.round((rand(n) * 2 - 1) * self.shift * w).long()
        dy = torch.round((rand(n) * 2 - 1) * self.shift * h).long()
        both = torch.cat([images, maps], dim=1)
        if flip_x.any():
            both = torch.where(flip_x.view(n, 1, 1, 1), both.flip(-1), both)
        if flip_y.any():
            both = torch.where(flip_y.view(n, 1, 1, 1), both.flip(-2), both)
        pad_x, pad_y = int(dx.abs().max()), int(dy.abs().max())
        if pad_x or pad_y:
            mode = "reflect" if pad_x < w and pad_y < h else "replicate"
            padded = F.pad(both, (pad_x, pad_x, pad_y, pad_y), mode=mode)
            both = torch.stack([padded[i, :, pad_y + int(dy[i]) : pad_y + int(dy[i]) + h, pad_x + int(dx[i]) : pad_x + int(dx[i]) + w] for i in range(n)])
        c = images.shape[1]
        images, maps = both[:, :c], both[:, c:]
        if self.jitter > 0:
            images = brightness_contrast(images, self.jitter, generator, clamp=False)
        if self.noise > 0:
            images = images + pixel_noise(images, self.noise, self.noise_relative, self.noise_p, generator)
        return images.clamp(0, 1), maps


def pixel_noise(images: torch.Tensor, std: float, relative: bool, p: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise to add to ``images``: of standard deviation ``std``, or ``std`` times each
    image's own (over its pixels and channels, as the paper's MVTec noise), on a random share
    ``p`` of the images (the rest get none)."""
    noise = torch.randn(images.shape, generator=generator).to(images.device) * std
    if relative:
        noise = noise * images.std(dim=(1, 2, 3), keepdim=True)
    if p < 1:
        noise = noise * (torch.rand(len(images), generator=generator) < p).to(images.device, images.dtype).view(-1, 1, 1, 1)
    return noise


def crop_or_resize(images: torch.Tensor, maps: torch.Tensor, size: int, generator: torch.Generator,
                   p_crop: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Each (larger) image, with its map, to ``size``: with probability ``p_crop`` a ``size`` crop at
    a uniformly random whole-pixel position (top-left corner in 0 .. side - size), else the whole
    image resized (bilinear with antialiasing, as the test images' decode; maps nearest).

    The FCDD paper's MVTec training does this to its 240 px images (``RandomChoice`` of a 224 crop
    and a resize, nearest in its code), and its tests see the resize. Maps of another size than
    the images (the blank maps of nominal training sets) are first brought to the images' side."""
    n, side = len(images), images.shape[-1]
    if maps.shape[-1] != side:
        maps = F.interpolate(maps, size=(side, side), mode="nearest")
    crop = (torch.rand(n, generator=generator) < p_crop).to(images.device).view(n, 1, 1, 1)
    top, left = torch.randint(0, side - size + 1, (2, n), generator=generator).tolist()
    cropped = torch.stack([images[i, :, top[i] : top[i] + size, left[i] : left[i] + size] for i in range(n)])
    cropped_maps = torch.stack([maps[i, :, top[i] : top[i] + size, left[i] : left[i] + size] for i in range(n)])
    resized = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    resized_maps = F.interpolate(maps, size=(size, size), mode="nearest")
    return torch.where(crop, cropped, resized), torch.where(crop, cropped_maps, resized_maps)


def brightness_contrast(images: torch.Tensor, strength: float, generator: torch.Generator, clamp: bool = True) -> torch.Tensor:
    """A random brightness shift and contrast factor per image, both within +-``strength``.

    Contrast scales around each image's own mean, so a darker or flatter photo of the same
    scene comes out; ``clamp`` keeps the result in [0, 1].
    """
    n = len(images)
    brightness = ((torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * strength).to(images.device)
    contrast = (1 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * strength).to(images.device)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = (images - mean) * contrast + mean + brightness
    return images.clamp(0, 1) if clamp else images


def gaussian_1d(size: int, std: float) -> torch.Tensor:
    """A ``size``-long Gaussian whose values sum to one."""
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * std**2))
    return g / g.sum()


def gaussian_kernel(size: int, std: float) -> torch.Tensor:
    """A ``size`` x ``size`` Gaussian whose values sum to one."""
    g = gaussian_1d(size, std)
    return g[:, None] * g[None, :]


def blur(maps: torch.Tensor, std: float) -> torch.Tensor:
    """Gaussian blur (same size), channel by channel, edges replicated.

    Every channel goes through one fixed (1, 1, k, k) kernel, so the kernel's shape never
    depends on the batch and traced / ONNX graphs can hold it.
    """
    if std <= 0:
        return maps
    size = 2 * math.ceil(2 * std) + 1
    kernel = gaussian_kernel(size, std).to(maps)[None, None]
    channels = maps.reshape(-1, 1, *maps.shape[-2:])
    return F.conv2d(F.pad(channels, [size // 2] * 4, mode="replicate"), kernel).reshape(maps.shape)
