"""Image sets and the data-set registry.

Images are decoded and resized once, then kept as uint8 tensors: training augmentation and
synthetic anomalies run on whole batches in torch, so the network, not the input pipeline, is
what a training step waits for. Sets too large for memory go through the decoded-image cache
(``--cache-dir``, ``fcdd.data.cache``): ``ImageSet.images`` is then a ``Rows`` view of a
memory-mapped file, subsets are index views of it, and only indexed batches are read.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from fcdd.config import fixed_aspect
from fcdd.data.cache import Rows, cache_root, cached_images
from fcdd.data.shape import Size, as_shape, data_shape
from fcdd.registry import Registry

if TYPE_CHECKING:
    from fcdd.config import Config

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: modes of more than 8 bits per sample, scaled by their bit depth (``scale_high_bit``)
HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
GREY_MODES = ("1", "L", "LA", "La", *HIGH_BIT_MODES)
#: files in colour modes decoded to tell grey from colour content (``decide_channels``)
COLOUR_SAMPLE = 16

log = logging.getLogger("fcdd")


class DataError(ValueError):
    """Bad or missing input data; the message names the file or folder and what is wrong."""


@dataclass
class ImageSet:
    """Images (N, C, S, S) uint8, labels (N,) 0 nominal / 1 anomalous, maps (N, 1, S, S) uint8 0/1.

    ``kinds`` holds the defect type (or class name) of each image, ``paths`` where it came from,
    ``mask_paths`` its ground-truth file (None without one), for metrics at the mask's own size.
    ``images`` (and ``maps``) may be ``Rows`` of a memory-mapped cache instead of a tensor: they
    index, slice, ``len``, ``shape`` and ``float()`` the same, and ``subset`` keeps them views.
    Sets without masks carry ``no_maps`` (one zero row, expanded, never materialised).
    ``loaded`` (nominal training sets with ``--load-size``) holds the same images decoded at that
    larger side, which training crops or resizes; everything else uses ``images``.
    """

    images: torch.Tensor | Rows
    labels: torch.Tensor
    maps: torch.Tensor | Rows
    kinds: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    mask_paths: list[str | None] = field(default_factory=list)
    loaded: torch.Tensor | Rows | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if not (len(self.labels) == len(self.maps) == n) or (self.loaded is not None and len(self.loaded) != n):
            raise DataError(f"inconsistent set: {n} images, {len(self.labels)} labels, {len(self.maps)} maps"
                            + ("" if self.loaded is None else f", {len(self.loaded)} images at the load size"))
        self.kinds = self.kinds or ["" for _ in range(n)]
        self.paths = self.paths or [f"#{i}" for i in range(n)]
        self.mask_paths = self.mask_paths or [None] * n

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: Sequence[int] | torch.Tensor) -> ImageSet:
        """The images at ``index``: a copy of in-memory images, an index view of cached ones
        (so a hold-out split of a cached set reads nothing)."""
        index = torch.as_tensor(index, dtype=torch.long)
        idx = index.tolist()
        return ImageSet(
            take_rows(self.images, index), self.labels[index], take_rows(self.maps, index),
            [self.kinds[i] for i in idx], [self.paths[i] for i in idx], [self.mask_paths[i] for i in idx],
            None if self.loaded is None else take_rows(self.loaded, index),
        )

    @staticmethod
    def concat(sets: Sequence[ImageSet]) -> ImageSet:
        """One set after another; views of one cache file stay a view (see ``concat_rows``)."""
        return ImageSet(
            concat_rows([s.images for s in sets]), torch.cat([s.labels for s in sets]), concat_rows([s.maps for s in sets]),
            [k for s in sets for k in s.kinds], [p for s in sets for p in s.paths],
            [m for s in sets for m in s.mask_paths],
            concat_rows([s.loaded for s in sets]) if sets and all(s.loaded is not None for s in sets) else None,
        )

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def has_maps(self) -> bool:
        """Whether any anomalous image carries a non-empty ground-truth map (read in chunks, so
        a large or cached set is never copied whole)."""
        anomalous = (self.labels == 1).nonzero().flatten()
        if len(anomalous) == 0 or is_blank(self.maps):
            return False
        return any(bool((self.maps[anomalous[i : i + 256]] > 0).any()) for i in range(0, len(anomalous), 256))


def no_maps(n: int, size: Size) -> torch.Tensor:
    """(n, 1, H, W) all-zero maps of a set without masks: one zero row expanded, so a large
    set costs no memory for them; indexing it gives ordinary tensors, writing into it fails."""
    height, width = as_shape(size)
    return torch.zeros(1, 1, height, width, dtype=torch.uint8).expand(n, 1, height, width)


def is_blank(rows: torch.Tensor | Rows) -> bool:
    """Whether ``rows`` is ``no_maps``-like: one all-zero row expanded (cheap to tell)."""
    return isinstance(rows, torch.Tensor) and rows.ndim > 0 and rows.stride(0) == 0 and (len(rows) == 0 or not rows[0].any())


def take_rows(rows: torch.Tensor | Rows, index: torch.Tensor) -> torch.Tensor | Rows:
    """``rows[index]`` that keeps cache views views and blank maps blank."""
    if isinstance(rows, Rows):
        return rows.take(index)
    if is_blank(rows):
        return rows[:1].expand(len(index), *rows.shape[1:]) if len(rows) else rows[index]
    return rows[index]


def concat_rows(parts: Sequence[torch.Tensor | Rows]) -> torch.Tensor | Rows:
    """Parts one after another: views of one cache file as one view, blank maps blank; anything
    else in memory (cached parts of different files are read then, with a logged note)."""
    if parts and all(isinstance(p, Rows) and p.same_file(parts[0]) for p in parts):
        first = parts[0]
        return Rows(first.base, torch.cat([p.index for p in parts]), first.pages)
    if parts and all(is_blank(p) for p in parts):
        return torch.zeros((1, *parts[0].shape[1:]), dtype=parts[0].dtype).expand(sum(len(p) for p in parts), *parts[0].shape[1:])
    cached = [p for p in parts if isinstance(p, Rows)]
    if cached:
        log.info("concatenating image sets of different sources reads %d cached images into memory", sum(len(p) for p in cached))
    return torch.cat([p.load() if isinstance(p, Rows) else p for p in parts])


@dataclass
class DataSplits:
    """What a data set gives a run: nominal (and maybe anomalous) training images and a test set."""

    train: ImageSet
    test: ImageSet
    name: str
    notes: list[str] = field(default_factory=list)
    #: real anomalous training images with maps (semi-supervision), kept apart from ``train``
    train_anomalies: ImageSet | None = None
    #: nominal training images held out of training to calibrate thresholds
    holdout: ImageSet | None = None
    #: what a run sees (``fcdd.data.prepare_splits``): hold-out and supervision's share taken
    prepared: bool = False

    def split_holdout(self, fraction: float, seed: int) -> DataSplits:
        """New splits with a random ``fraction`` of the nominal training images moved to ``holdout``
        (at least 2 stay); ``seed`` is the split's own stream. Splits that hold some out already
        are returned as they are."""
        n = len(self.train)
        k = min(int(round(n * fraction)), max(n - 2, 0))
        if k <= 0 or self.holdout is not None:
            return self
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        return dataclasses.replace(
            self, holdout=self.train.subset(order[:k].sort().values), train=self.train.subset(order[k:].sort().values),
            notes=list(self.notes),
        )


#: data set readers ``(config) -> DataSplits``; ``classes=`` info ``(config) -> list[str]`` lists
#: the classes ``fcdd run`` iterates over
DATASETS: Registry[Callable[[Config], DataSplits]] = Registry("dataset")


def category_folders(config: Config) -> list[str]:
    """Classes of folder layouts: the category folders (with ``train/``) below ``--data``."""
    root = Path(config.data) if config.data else None
    classes = sorted(p.name for p in root.iterdir() if (p / "train").is_dir()) if root and root.is_dir() else []
    if not classes:
        raise DataError(f"{root}: no category folders (with train/) to run over; give --classes")
    return classes


def numbered_classes(n: int) -> Callable[[Config], list[str]]:
    """Classes of one-vs-rest sets: their label indices."""

    def classes(config: Config) -> list[str]:
        return [str(i) for i in range(n)]

    return classes


# --- decoding ------------------------------------------------------------------------------------


def _opened(path: Path) -> Image.Image:
    """``Image.open`` (header only) with every failure a DataError naming the file. Pillow's
    decompression-bomb check (``Image.MAX_IMAGE_PIXELS``) runs here, before any pixel is decoded."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return Image.open(path)
    except Image.DecompressionBombError as err:
        raise DataError(f"{path}: refused, too many pixels for an image (decompression bomb? {err})") from None
    except Exception as err:  # noqa: BLE001 - whatever a decoder raises, the file is unreadable
        raise DataError(f"{path}: cannot read image ({err})") from None


def image_header(path: Path) -> tuple[str, tuple[int, int]]:
    """(mode, (width, height)) from the file's header, without decoding its pixels (cheap)."""
    with _opened(path) as image:
        return image.mode, image.size


#: nominal files whose headers decide ``--aspect data``'s shape
SHAPE_SAMPLE = 1000


def input_shape(config: Config, nominal_files: Sequence[Path]) -> Size:
    """The network input for a set of files: ``--image-size`` square, a fixed ``--aspect HxW``,
    or with ``--aspect data`` the nominal training images' median aspect kept (read from the
    headers of up to ``SHAPE_SAMPLE`` of them, spread over the list, so a large set costs no scan)."""
    if config.aspect == "square":
        return config.image_size
    if (shape := fixed_aspect(config.aspect)) is not None:
        return shape
    return data_shape((image_header(path)[1] for path in spread(nominal_files, SHAPE_SAMPLE)), config.image_size)


def open_image(path: Path) -> Image.Image:
    """A decoded image; DataError naming the file when it is missing, unreadable or a bomb."""
    image = _opened(path)
    try:
        image.load()
    except Exception as err:  # noqa: BLE001 - truncated data, bad chunks, oversized text chunks, ...
        image.close()
        raise DataError(f"{path}: cannot read image ({err})") from None
    return image


def full_scale(image: Image.Image) -> float:
    """The sample value that means white in a mode of more than 8 bits: 1.0 for float images,
    else 2**bits - 1 with the bits per sample the file reports (TIFF), else 16 bits (16-bit PNG,
    PGM and TIFF all open in these modes)."""
    if image.mode == "F":
        return 1.0
    bits = getattr(image, "tag_v2", {}).get(258)  # TIFF BitsPerSample
    bits = bits[0] if isinstance(bits, tuple) and bits else bits
    return float(2 ** (bits if isinstance(bits, int) and 8 < bits <= 32 else 16) - 1)


def scale_high_bit(image: Image.Image) -> np.ndarray:
    """(H, W) uint8 of a grey image of more than 8 bits, divided by its ``full_scale``.

    The same factor for every image of a mode, so a darker image stays darker (stretching each
    image to its own min..max would hide brightness defects); values outside are clipped."""
    scale = full_scale(image)
    arr = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=scale, neginf=0.0)
    return np.clip(np.rint(arr * (255.0 / scale)), 0, 255).astype(np.uint8)


def to_array(image: Image.Image, channels: int, size: Size, resample=Image.BILINEAR) -> np.ndarray:
    """A PIL image as (C, H, W) uint8: ``size`` a square side or (H, W), C = 1 for ``channels == 1``, else 3.

    Modes of more than 8 bits are scaled by their bit depth (``scale_high_bit``); a mode Pillow
    cannot convert to grey / RGB is a ValueError."""
    if image.mode in HIGH_BIT_MODES:
        image = Image.fromarray(scale_high_bit(image))
    image = image.convert("L" if channels == 1 else "RGB")
    height, width = as_shape(size)
    if image.size != (width, height):
        image = image.resize((width, height), resample)
    arr = np.asarray(image, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def read_image(path: Path, channels: int, size: Size) -> np.ndarray:
    """One image file as ``to_array`` gives it; every failure a DataError naming the file."""
    image = open_image(path)
    try:
        return to_array(image, channels, size)
    except Exception as err:  # noqa: BLE001 - a decoded image that converts to nothing usable
        raise DataError(f"{path}: cannot convert a {image.mode} image to {'grey' if channels == 1 else 'RGB'} ({err})") from None


def is_grey(image: Image.Image) -> bool:
    """Whether an image is grey: by its mode, or for colour modes by its pixels (R, G, B within 2
    of each other on a 32 x 32 thumbnail: RGB photos of grey scenes count as grey)."""
    if image.mode in GREY_MODES:
        return True
    try:
        small = np.asarray(image.convert("RGB").resize((32, 32)), dtype=np.int16)
    except (ValueError, OSError):
        return False  # no RGB form: reading it fails later with the file named
    return bool(np.abs(small[..., 0] - small[..., 1]).max() <= 2 and np.abs(small[..., 1] - small[..., 2]).max() <= 2)


def spread(items: Sequence, k: int) -> list:
    """At most ``k`` items evenly spread over ``items``, first and last included."""
    if len(items) <= k:
        return list(items)
    return [items[i] for i in sorted(set(np.linspace(0, len(items) - 1, k).round().astype(int).tolist()))]


def decide_channels(paths: Sequence[Path], requested: int) -> int:
    """1 when every image is grey, else 3, unless the user asked for a number; logged.

    Every file's mode is read from its header (no decoding), so one colour file anywhere makes
    the set colour. Files in colour modes may still hold grey pixels (RGB photos of grey parts),
    so up to ``COLOUR_SAMPLE`` of them, spread over the list, are decoded and looked at."""
    if requested in (1, 3):
        return requested
    if requested != 0:
        raise DataError(f"channels must be 0, 1 or 3, got {requested}")
    paths = list(paths)
    modes = [image_header(p)[0] for p in paths]
    colour = [p for p, mode in zip(paths, modes, strict=True) if mode not in GREY_MODES]
    listed = ", ".join(sorted(set(modes)))
    if not colour:
        log.info("channels: 1 (grey), all %d images have grey modes (%s)", len(paths), listed)
        return 1
    coloured = next((p for p in spread(colour, COLOUR_SAMPLE) if not is_grey(open_image(p))), None)
    if coloured is not None:
        log.info("channels: 3 (colour), %d of %d images have colour modes (%s); %s holds colour",
                 len(colour), len(paths), listed, coloured)
        return 3
    log.info("channels: 1 (grey), %d of %d images have colour modes (%s) but the %d of them looked at hold grey pixels",
             len(colour), len(paths), listed, min(len(colour), COLOUR_SAMPLE))
    return 1


def load_images(paths: Sequence[Path], channels: int, size: Size, cache_dir: str | Path | None = None) -> torch.Tensor | Rows:
    """Decode and resize many files in threads (PIL releases the GIL while decoding), into
    memory; with a ``cache_dir`` (``--cache-dir``) as ``Rows`` of the memory-mapped cache file
    of these files, decoded (streamed, never all in memory) only when it has none yet."""
    if not paths:
        return torch.zeros(0, channels, *as_shape(size), dtype=torch.uint8)
    root = cache_root(cache_dir)
    if root is not None:
        return cached_images(paths, channels, size, root, lambda path: read_image(path, channels, size))

    def one(path: Path) -> np.ndarray:
        return read_image(path, channels, size)

    with ThreadPoolExecutor(max_workers=4) as pool:
        arrays = list(pool.map(one, paths))
    return torch.from_numpy(np.stack(arrays))


def file_set(files: Sequence[Path], labels: Sequence[int], kinds: list[str], channels: int, size: Size,
             cache_dir: str | Path | None = None) -> ImageSet:
    """Image files as an ``ImageSet`` without masks (the class-folder layouts)."""
    return ImageSet(load_images(files, channels, size, cache_dir), torch.tensor(list(labels), dtype=torch.long),
                    no_maps(len(files), size), kinds, [str(p) for p in files])


def with_load_size(images: ImageSet, files: Sequence[Path], channels: int, load_size: int | None,
                   cache_dir: str | Path | None = None) -> ImageSet:
    """A nominal training set with ``loaded``: its files decoded again at ``load_size``
    (``--load-size``), for training's crops; as it is when ``load_size`` is None. Each file is
    decoded twice (once per side), so ``images`` stays what evaluation and prediction decode."""
    if load_size is None:
        return images
    return dataclasses.replace(images, loaded=load_images(files, channels, load_size, cache_dir))


def binary_mask(image: Image.Image) -> np.ndarray:
    """(H, W) bool: where a mask marks a defect. 8-bit masks: above 127 (so JPEG noise stays
    out), or nonzero when the file holds only 0 and 1; deeper masks (lossless): nonzero."""
    if image.mode in HIGH_BIT_MODES:
        return np.nan_to_num(np.asarray(image, dtype=np.float64)) > 0
    values = np.asarray(image.convert("L"))
    return values > 127 if values.size and values.max() > 1 else values > 0


def load_mask(path: Path, image_path: Path, size: Size) -> np.ndarray:
    """A binary ground-truth map (1, H, W); it must have the size of its image."""
    mask = open_image(path)
    image_size = image_header(image_path)[1]
    if mask.size != image_size:
        raise DataError(f"{path}: mask is {mask.size[0]}x{mask.size[1]} but its image {image_path.name} is {image_size[0]}x{image_size[1]}")
    try:
        binary = Image.fromarray(binary_mask(mask).astype(np.uint8) * 255)
    except (ValueError, OSError) as err:
        raise DataError(f"{path}: cannot read a {mask.mode} image as a mask ({err})") from None
    return (to_array(binary, 1, size, resample=Image.NEAREST) > 0).astype(np.uint8)


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def from_arrays(images: np.ndarray, labels: np.ndarray, size: int, channels: int, kinds: list[str] | None = None) -> ImageSet:
    """An ImageSet from (N, H, W[, C]) uint8 arrays, resizing when needed (IDX/CIFAR readers)."""
    if images.ndim == 3:
        images = images[..., None]
    n, h, w, c = images.shape
    if (h, w) != (size, size) or c != channels:
        converted = [to_array(Image.fromarray(img.squeeze(-1) if c == 1 else img), channels, size) for img in images]
        tensor = torch.from_numpy(np.stack(converted)) if n else torch.zeros(0, channels, size, size, dtype=torch.uint8)
    else:
        tensor = torch.from_numpy(np.array(images.transpose(0, 3, 1, 2), copy=True))
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    return ImageSet(tensor, labels_t, torch.zeros(n, 1, size, size, dtype=torch.uint8), kinds or [])
