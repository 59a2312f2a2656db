"""Every kind of input to exactly the training-time preprocessing, and a parallel loader.

Training decodes each file once with PIL, converts it to grey or RGB, resizes it (bilinear) to
the run's input shape (``image_size`` square, or with ``--aspect data`` its height x width) and
scales it to [0, 1] (``fcdd.data.base.to_array``). The same function runs here, so a file scored
by a ``Detector`` gets the score the run's evaluation gave it. Arrays and
tensors of another size or channel count take the same PIL path (after rounding to uint8);
float tensors already at the training size and channel count are used as they are.

``iter_batches`` decodes in a thread pool and keeps the next batches decoding while the model
runs on the current one: PIL releases the GIL while it decodes and resizes.

Files and uploads are untrusted: PIL is only ever asked for the formats listed here
(``UPLOAD_FORMATS``: PNG, JPEG, BMP, TIFF, WebP; files may also be PPM/PGM), detected from the
bytes, never the name, so no EPS/PS ever reaches Ghostscript and GIF/TGA/ICO/PCX are refused.
The dimensions are checked from the header before any pixel is decoded (``max_pixels``,
``max_side``), so a small file that would decode to a huge image is refused cheaply.
"""

from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from fcdd.data.base import HIGH_BIT_MODES, IMAGE_SUFFIXES, DataError, full_scale, scale_high_bit, to_array
from fcdd.data.shape import Size, as_shape

#: longest side of the copy kept for overlays (the heatmap is upsampled to it)
DISPLAY_SIDE = 512
#: the formats an upload may have (PIL's names, detected from the bytes); PIL opens no other
UPLOAD_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")
#: image files may also be PPM/PGM/PBM, which the data set readers accept (``IMAGE_SUFFIXES``)
FILE_FORMATS = (*UPLOAD_FORMATS, "PPM")
#: formats PIL names differently although they are one of the above (a multi-picture JPEG)
SAME_FORMAT = {"MPO": "JPEG"}
#: default decoded size of an upload (16.8 MP, 4096 x 4096); ``fcdd serve --max-pixels``
MAX_UPLOAD_PIXELS = 4096 * 4096
#: decoded size of a file given to ``predict`` / ``Detector``: PIL's own warning level
#: (``Image.MAX_IMAGE_PIXELS``), enforced from the header with an error naming the file
MAX_FILE_PIXELS = 89_478_485
#: pixels of one band of rows when an image of more than 8 bits is scaled to 8 (bounds float64 copies)
BAND_PIXELS = 1 << 20


def _array_to_pil(arr: np.ndarray) -> Image.Image:
    """(H, W), (H, W, C) or (C, H, W) arrays; float in [0, 1], uint8, or wider integers."""
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 3, 4):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise DataError(f"cannot use an array of shape {tuple(arr.shape)} as an image (expected H x W, H x W x C or C x H x W)")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        arr = (np.clip(np.nan_to_num(arr.astype(np.float64)), 0, 1) * 255).round().astype(np.uint8)
    elif arr.dtype != np.uint8:
        if arr.ndim == 2 and (arr.min() < 0 or arr.max() > 255):
            # wide grey values (16-bit sensors): scaled to 8 bits as 16-bit files are (``to_array``)
            return Image.fromarray(arr.astype(np.int32))  # mode "I"
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr))


def to_pil(item) -> Image.Image:
    """A path, PIL image, array or tensor as a PIL image (decoded, not yet resized)."""
    if isinstance(item, (str, Path)):
        return open_file(Path(item))
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, np.ndarray):
        return _array_to_pil(item)
    if isinstance(item, torch.Tensor):
        return _array_to_pil(item.detach().cpu().numpy())
    raise TypeError(f"cannot use {type(item).__name__} as an image (give a path, PIL image, numpy array or tensor)")


def prepare_one(item, channels: int, size: Size) -> torch.Tensor:
    """(C, H, W) float in [0, 1] at ``size`` (a side or (H, W)) from a path, PIL image, array
    (h, w[, c]) or tensor (c, h, w)."""
    if is_prepared(item, channels, size, ndim=3):
        return item.detach().float().cpu()
    return _to_tensor(to_array(to_8bit(to_pil(item)), channels, size))


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    """uint8 (C, H, W) -> float in [0, 1], the same conversion as training (``to_float``)."""
    return torch.from_numpy(np.require(arr, requirements="W")).float().div_(255.0)


def is_prepared(images, channels: int, size: Size, ndim: int) -> bool:
    """Whether ``images`` is a float tensor of ``ndim`` dimensions (3: one image, 4: a batch)
    already at the input's channels and shape, to be used as it is."""
    return (isinstance(images, torch.Tensor) and images.is_floating_point() and images.ndim == ndim
            and tuple(images.shape[-3:]) == (channels, *as_shape(size)))


def prepare_batch(images, channels: int, size: Size) -> torch.Tensor:
    """A float batch (N, C, H, W) from one image or a sequence / batch of them."""
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        if is_prepared(images, channels, size, ndim=4):
            return images.detach().float().cpu()
        return torch.stack([prepare_one(x, channels, size) for x in images])
    return torch.stack([prepare_one(x, channels, size) for x in as_items(images)])


def as_items(images) -> list:
    """One image or many as a list of single images (a 4-D array or tensor is a batch)."""
    if isinstance(images, (str, Path, Image.Image)):
        return [images]
    if isinstance(images, (np.ndarray, torch.Tensor)):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, Iterable):
        return list(images)
    raise TypeError(f"cannot use {type(images).__name__} as images")


# --- decoding uploads ------------------------------------------------------------------------------


class ImageRejected(ValueError):
    """An upload that is not an acceptable image; ``reason`` says why, as one of ``REASONS``
    (a server maps each to its own status code)."""

    REASONS = ("empty", "unknown_format", "too_large", "corrupt")

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        if reason not in self.REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        self.reason = reason


Source = bytes | str | Path | BinaryIO


def format_names(formats: Sequence[str]) -> str:
    """'PNG, JPEG, ...' as people write them, for messages and help texts."""
    return ", ".join("WebP" if f == "WEBP" else "PPM/PGM" if f == "PPM" else f for f in formats)


def _is_empty(source: Source) -> bool:
    if isinstance(source, bytes):
        return not source
    if isinstance(source, (str, Path)):
        return os.path.getsize(source) == 0
    start = source.tell()
    empty = not source.read(1)
    source.seek(start)
    return empty


def check_size(width: int, height: int, max_pixels: int, max_side: int | None = None) -> None:
    """``too_large`` past the limits; the header's dimensions, so nothing has been decoded yet."""
    if (max_side is not None and max(width, height) > max_side) or width * height > max_pixels:
        side = f"{max_side} px a side and " if max_side is not None else ""
        raise ImageRejected(f"image is {width}x{height}; the limit is {side}{max_pixels} pixels", "too_large")


def open_checked(source: Source, max_pixels: int, max_side: int | None = None,
                 formats: Sequence[str] = UPLOAD_FORMATS) -> Image.Image:
    """The image's header only: its format (from the bytes) must be one of ``formats`` and its
    dimensions within the limits. Only those formats' plugins ever see the data."""
    if _is_empty(source):
        raise ImageRejected("empty upload", "empty")
    data = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        image = Image.open(data, formats=list(formats))
    except UnidentifiedImageError:
        raise ImageRejected(f"not a supported image format (accepted: {format_names(formats)})", "unknown_format") from None
    except Image.DecompressionBombError as err:
        raise ImageRejected(f"image too large: {err}", "too_large") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageRejected(f"cannot decode the image ({err})", "corrupt") from None
    if SAME_FORMAT.get(image.format, image.format) not in formats:  # a plugin may hand over to another
        image.close()
        raise ImageRejected(f"{image.format} images are not accepted (accepted: {format_names(formats)})", "unknown_format")
    try:
        check_size(*image.size, max_pixels, max_side)
    except ImageRejected:
        image.close()
        raise
    return image


def decode_bytes(data: Source, max_pixels: int = MAX_UPLOAD_PIXELS, max_side: int | None = 16384,
                 formats: Sequence[str] = UPLOAD_FORMATS) -> Image.Image:
    """Decode an upload (bytes, a binary file or a path) fully after ``open_checked``; rejected as
    ``unknown_format`` when it is not one of ``formats``, ``too_large`` past the limits, ``corrupt``
    when the format is known but the data are truncated or corrupt, ``empty`` for no data."""
    image = open_checked(data, max_pixels, max_side, formats)
    try:
        image.load()
    except Image.DecompressionBombError as err:
        raise ImageRejected(f"image too large: {err}", "too_large") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageRejected(f"cannot decode the image: truncated or corrupt {image.format} data ({err})", "corrupt") from None
    return image


def open_file(path: Path, max_pixels: int = MAX_FILE_PIXELS) -> Image.Image:
    """An image file decoded as training reads it, limited like an upload (``FILE_FORMATS``,
    ``max_pixels`` from the header); ``DataError`` naming the file otherwise."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return decode_bytes(path, max_pixels, None, FILE_FORMATS)
    except ImageRejected as err:
        raise DataError(f"{path}: cannot read image ({err})") from None


# --- 8-bit copies --------------------------------------------------------------------------------


def to_8bit(image: Image.Image) -> Image.Image:
    """A grey image of more than 8 bits as mode L, scaled exactly as ``to_array`` scales it
    (``scale_high_bit``, value by value), a band of rows at a time so that its float64 copies
    stay small; other images as they are."""
    if image.mode not in HIGH_BIT_MODES:
        return image
    width, height = image.size
    rows = max(1, BAND_PIXELS // max(1, width))
    if rows >= height or full_scale(image.crop((0, 0, width, 1))) != full_scale(image):
        return Image.fromarray(scale_high_bit(image))  # one band, or a scale only the whole file knows
    out = np.empty((height, width), dtype=np.uint8)
    for top in range(0, height, rows):
        out[top : top + rows] = scale_high_bit(image.crop((0, top, width, min(height, top + rows))))
    return Image.fromarray(out)


# --- files and the parallel loader ---------------------------------------------------------------


def find_images(items: Sequence[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files as given and image files inside folders (recursively, sorted); missing paths are errors."""
    files: list[Path] = []
    errors: list[tuple[str, str]] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
            if not found:
                errors.append((str(path), "folder holds no image files"))
            files += found
        elif path.is_file():
            files.append(path)
        else:
            errors.append((str(path), "file not found"))
    return files, errors


def display_copy(image: Image.Image, side: int = DISPLAY_SIDE) -> Image.Image:
    """An RGB copy at most ``side`` pixels a side, for overlays."""
    copy = to_8bit(image).convert("RGB")
    if max(copy.size) > side:
        copy.thumbnail((side, side), Image.BILINEAR)
    return copy


@dataclass
class Loaded:
    """One batch: which inputs it holds, the float images, display copies and the failures."""

    indices: list[int]
    images: torch.Tensor
    displays: list[Image.Image | None] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)


def _load(item, channels: int, size: Size, keep_display: bool) -> tuple[torch.Tensor, Image.Image | None]:
    if is_prepared(item, channels, size, ndim=3):
        return item.detach().float().cpu(), None
    return prepare_decoded(to_pil(item), channels, size, keep_display)


def prepare_decoded(image: Image.Image, channels: int, size: Size, keep_display: bool) -> tuple[torch.Tensor, Image.Image | None]:
    """The model's float input and (optionally) the display copy of a decoded image; an image of
    more than 8 bits is scaled to 8 once, band by band, for both."""
    image = to_8bit(image)
    return _to_tensor(to_array(image, channels, size)), display_copy(image) if keep_display else None


def iter_batches(
    items: Sequence, channels: int, size: Size, batch_size: int, workers: int = 2, prefetch: int = 2,
    keep_display: bool = False, skip_errors: bool = False,
) -> Iterator[Loaded]:
    """Batches of prepared images in input order, decoded ``prefetch`` batches ahead in threads.

    With ``skip_errors`` unreadable inputs are reported in ``Loaded.errors`` and left out;
    otherwise the first one raises (``DataError`` naming the file).
    """
    n = len(items)
    if n == 0:
        return
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="fcdd-decode") as pool:
        pending: deque[tuple[int, Future]] = deque()
        submitted = 0

        def fill() -> None:
            nonlocal submitted
            while submitted < n and len(pending) < batch_size * (prefetch + 1):
                pending.append((submitted, pool.submit(_load, items[submitted], channels, size, keep_display)))
                submitted += 1

        fill()
        try:
            while pending:
                batch = Loaded([], torch.zeros(0))
                arrays = []
                while pending and len(batch.indices) + len(batch.errors) < batch_size:
                    index, future = pending.popleft()
                    try:
                        array, display = future.result()
                    except Exception as err:  # noqa: BLE001 - with skip_errors no single file may stop the batch
                        if not skip_errors:
                            raise
                        batch.errors.append((index, str(err) or type(err).__name__))
                        continue
                    batch.indices.append(index)
                    arrays.append(array)
                    batch.displays.append(display)
                fill()
                batch.images = torch.stack(arrays) if arrays else torch.zeros(0, channels, *as_shape(size))
                yield batch
        finally:
            for _, future in pending:
                future.cancel()
