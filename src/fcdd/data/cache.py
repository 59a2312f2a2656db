"""Decoded images on disk: one memory-mapped file per (files, size, channels), written once.

A set decoded into memory costs N x C x H x W bytes (100k images at 224 px in colour: 15 GB).
With ``--cache-dir`` the decoded, resized images are written once into a file named by a hash
of what they were made from (every file's resolved path, byte size and mtime, the input
shape, the channels and ``FORMAT``), and every later load (each run of a grid, a resumed run, a rerun)
maps that file read-only instead of decoding: a batch reads only the pages of its own rows.

A cache file ``<key>.images`` is a ``HEADER``-byte header (``MAGIC``, then ``FORMAT``, N, C, H, W
as little-endian int64) followed by N rows of C x H x W bytes, in the order of the sorted
resolved paths. It is written to a temp beside it, fsync'd and renamed, so a killed writer
leaves a temp (``fcdd.io`` names it; the next writer removes it) and never a complete-looking
file; one whose header or length is wrong (truncated on disk) is rebuilt with a logged note.

``Rows`` is how an ``ImageSet`` holds a cached set: the mapped file plus an index of rows, so
subsets and hold-out splits are index views and nothing reads all images at once. Training,
evaluation, normalisation statistics and single-pass fits read batches; the trainer's prefetch
thread (on accelerators) reads its next batch from the map in that thread, which is what
DataLoader workers would do, without copying the set into worker processes. What still reads a
whole (small) part: calibration takes the hold-out as float32 with copies (``--holdout``), and
the report's thumbnails the test set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import struct
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from fcdd.data.shape import Size, as_shape
from fcdd.io import remove_stale_temps, temp_prefix

log = logging.getLogger("fcdd")

#: bump when the decoding changes (resampling, bit-depth scaling, ...): old caches then miss
FORMAT = 2
MAGIC = b"FCDDIMGS"
HEADER = 64
SUFFIX = ".images"
#: images decoded at a time while a cache is written (bounds the writer's memory)
WRITE_CHUNK = 64
#: mapped bytes read before the reader drops its page mappings (``_Pages``)
RELEASE_BYTES = 64 * 2**20


def cache_root(setting: str | Path | None) -> Path | None:
    """The cache folder of ``--cache-dir``: None (decode into memory), ``auto`` (the user's cache
    folder, ``$XDG_CACHE_HOME/fcdd`` or ``~/.cache/fcdd``) or a folder path."""
    if not setting:
        return None
    if str(setting) == "auto":
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(base) / "fcdd"
    return Path(setting).expanduser()


def cache_key(paths: Sequence[Path], channels: int, size: Size) -> str:
    """Hash of the sorted resolved paths with their byte sizes and mtimes, the shape, the channels
    and ``FORMAT``: a changed, added or removed file makes a new key, so a stale cache is never read."""
    entries = []
    for path in sorted(str(Path(p).resolve()) for p in paths):
        stat = os.stat(path)
        entries.append([path, stat.st_size, stat.st_mtime_ns])
    text = json.dumps({"format": FORMAT, "size": list(as_shape(size)), "channels": channels, "files": entries})
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class _Pages:
    """The mapped file a ``Rows`` reads from. Pages a read touched stay mapped into the process
    (and count in its resident size) until dropped, so after every ``RELEASE_BYTES`` read they are
    dropped (``MADV_DONTNEED``): the kernel's page cache still holds them for the next epoch, but
    the process's memory stays bounded however large the file is."""

    def __init__(self, mapping: mmap.mmap, path: Path) -> None:
        self.mapping = mapping
        self.path = path
        self.unreleased = 0

    def read(self, nbytes: int) -> None:
        self.unreleased += nbytes
        if self.unreleased >= RELEASE_BYTES and hasattr(mmap, "MADV_DONTNEED"):
            self.unreleased = 0
            self.mapping.madvise(mmap.MADV_DONTNEED)


class Rows:
    """Rows of a read-only memory-mapped uint8 tensor chosen by an index, read when indexed.

    Indexing (an int, a slice, an index tensor or list, a boolean mask) returns a new in-memory
    tensor of just those rows, gathered in file order (sorted positions, then put back in the
    order asked), so a batch costs a few page reads. ``take`` returns another view, ``load`` and
    ``float`` read every row (for small sets such as a hold-out). The mapped tensor itself is
    never handed out: it is read-only memory.
    """

    def __init__(self, base: torch.Tensor, index: torch.Tensor | None = None, pages: _Pages | None = None) -> None:
        self.base = base
        self.index = torch.arange(len(base)) if index is None else torch.as_tensor(index, dtype=torch.long)
        self.pages = pages

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.index), *self.base.shape[1:]))

    @property
    def dtype(self) -> torch.dtype:
        return self.base.dtype

    @property
    def device(self) -> torch.device:
        return self.base.device

    @property
    def ndim(self) -> int:
        return self.base.ndim

    def dim(self) -> int:
        return self.base.ndim

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, tuple):  # rows first, then the rest on what they give (``images[i, 0]``)
            picked = self[key[0]]
            return picked[key[1:]] if picked.ndim < self.base.ndim else picked[(slice(None), *key[1:])]
        positions = self.index[key]
        out = self.base[int(positions)].clone() if positions.ndim == 0 else self._gather(positions)
        if self.pages is not None:
            self.pages.read(out.nbytes)
        return out

    def _gather(self, positions: torch.Tensor) -> torch.Tensor:
        """Rows at ``positions``: one copy of a contiguous run, else ``index_select`` in ascending
        file order (sequential reads when the pages come from disk), then back to the order asked
        (a second ``index_select`` of the small batch; both far faster than advanced indexing)."""
        if len(positions) == 0:
            return torch.empty((0, *self.base.shape[1:]), dtype=self.base.dtype)
        ascending = len(positions) == 1 or bool((positions[1:] > positions[:-1]).all())
        if ascending and int(positions[-1]) - int(positions[0]) == len(positions) - 1:
            return self.base[int(positions[0]) : int(positions[-1]) + 1].clone()
        if ascending:
            return self.base.index_select(0, positions)
        ordered, order = positions.sort()
        back = torch.empty_like(order)
        back[order] = torch.arange(len(order))
        return self.base.index_select(0, ordered).index_select(0, back)

    def take(self, key) -> Rows:
        """A view of some rows (same indexing as ``[]``), nothing read."""
        index = self.index[torch.as_tensor(key, dtype=torch.long) if not isinstance(key, slice) else key]
        return Rows(self.base, index.reshape(-1).clone(), self.pages)

    def same_file(self, other: object) -> bool:
        return isinstance(other, Rows) and other.base is self.base

    def load(self) -> torch.Tensor:
        """Every row in memory."""
        return self[:]

    def float(self) -> torch.Tensor:
        return self.load().float()

    def __repr__(self) -> str:
        return f"Rows({tuple(self.shape)}, {self.dtype}, memory-mapped)"

    def __reduce__(self):
        """Pickled (another process, ``copy.deepcopy``) as the file's name and the index: the
        receiver maps the same file again instead of receiving the images."""
        if self.pages is None:
            return Rows, (self.base.clone(), self.index)
        n, channels, height, width = self.base.shape
        return _reopen, (str(self.pages.path), n, channels, (height, width), self.index)


def _reopen(path: str, n: int, channels: int, size: Size, index: torch.Tensor) -> Rows:
    rows = open_rows(Path(path), n, channels, size)
    if rows is None:
        raise OSError(f"{path}: image cache missing or damaged; load the data again")
    return Rows(rows.base, index, rows.pages)


def open_rows(path: Path, n: int, channels: int, size: Size) -> Rows | None:
    """The cache file as ``Rows``, or None when it is missing; a file whose header or length
    does not match (truncated, another format) is logged and None too, so it gets rebuilt."""
    if not path.is_file():
        return None
    height, width = as_shape(size)
    row = channels * height * width
    expected = HEADER + n * row
    with path.open("rb") as handle:
        header = handle.read(HEADER)
        length = os.fstat(handle.fileno()).st_size
        if header[:8] != MAGIC or struct.unpack("<5q", header[8:48]) != (FORMAT, n, channels, height, width) or length != expected:
            log.warning("image cache %s is damaged or truncated (%d bytes, expected %d); rebuilding it", path, length, expected)
            return None
        if n == 0:
            return Rows(torch.zeros(0, channels, height, width, dtype=torch.uint8))
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    array = np.frombuffer(mapping, dtype=np.uint8, count=n * row, offset=HEADER).reshape(n, channels, height, width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only memory: Rows only ever copies out of it
        base = torch.from_numpy(array)
    return Rows(base, pages=_Pages(mapping, path))


def write_cache(path: Path, files: Sequence[Path], decode: Callable[[Path], np.ndarray], channels: int, size: Size) -> None:
    """Decode ``files`` in order into the cache file ``path``: streamed, ``WRITE_CHUNK`` images
    at a time in threads, into a temp renamed into place only when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, recursive=False)
    started = time.perf_counter()
    height, width = as_shape(size)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write((MAGIC + struct.pack("<5q", FORMAT, len(files), channels, height, width)).ljust(HEADER, b"\0"))
            with ThreadPoolExecutor(max_workers=4) as pool:
                for start in range(0, len(files), WRITE_CHUNK):
                    chunk = files[start : start + WRITE_CHUNK]
                    for file, array in zip(chunk, pool.map(decode, chunk), strict=True):
                        if array.shape != (channels, height, width) or array.dtype != np.uint8:
                            raise ValueError(f"{file}: decoded to {array.shape} {array.dtype}, expected ({channels}, {height}, {width}) uint8")
                        handle.write(np.ascontiguousarray(array).tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("image cache: %d images decoded into %s (%.0f MB) in %.1f s", len(files), path,
             path.stat().st_size / 1e6, time.perf_counter() - started)


def cached_images(paths: Sequence[Path], channels: int, size: Size, root: Path, decode: Callable[[Path], np.ndarray]) -> Rows:
    """The decoded images of ``paths`` (in that order) from the cache under ``root``; decoded
    and written first when the cache has no valid file for them."""
    resolved = [str(Path(p).resolve()) for p in paths]
    order = sorted(range(len(paths)), key=resolved.__getitem__)
    path = Path(root) / f"{cache_key(paths, channels, size)}{SUFFIX}"
    rows = open_rows(path, len(paths), channels, size)
    if rows is None:
        write_cache(path, [Path(paths[i]) for i in order], decode, channels, size)
        rows = open_rows(path, len(paths), channels, size)
        if rows is None:
            raise OSError(f"{path}: image cache unreadable right after writing it")
    else:
        log.info("image cache: %d images read from %s", len(paths), path)
    where = torch.empty(len(order), dtype=torch.long)
    where[torch.as_tensor(order, dtype=torch.long)] = torch.arange(len(order))
    return rows.take(where)
