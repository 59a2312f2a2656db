"""``fcdd serve``: a FastAPI service and upload page for a trained model (needs the ``serve`` extra;
the service is ``fcdd.serve.app``).

Here, without FastAPI: the service's ``Limits`` and the memory bound they give
(``memory_bound``), so that ``fcdd serve --help`` can state it. Above the idle process (model
loaded, one full batch run) the server holds at most

    decode_slots x (max(max_pixels x 20 B, 32 MiB) + max_upload_bytes)  images decoded or drawn
    + max_connections x 3 MiB                                           uploads arriving, answers leaving
    + (queue + max_batch + decode_slots) x (input + 1 MiB)              requests waiting for the model

With the defaults (2 slots, 16.8 MP, 20 MiB uploads, 64 connections, queue 32, batch 8) that is
about 0.9 GiB.
"""

from __future__ import annotations

from dataclasses import dataclass

from fcdd.data.shape import Size, as_shape
from fcdd.preprocess import DISPLAY_SIDE, MAX_UPLOAD_PIXELS

MiB = 1024 * 1024
#: peak bytes one decode holds per pixel: the decoder's buffers, the image and one converted copy
#: (measured at 16 MP: WebP ~19, progressive CMYK JPEG 12, TIFF 9-10, PNG / BMP / JPEG 6-9)
BYTES_PER_PIXEL = 20
#: peak bytes of drawing one overlay and heatmap (<= 512 px a side; the colour map works in float64)
RENDER_BYTES = 32 * MiB
#: bytes one open connection may hold: its in-memory multipart spool (Starlette rolls a file over
#: 1 MiB to disk), socket buffers, and its answer with two base64 PNGs
CONNECTION_BYTES = 3 * MiB
#: a display copy kept for the overlay (<= 512 x 512; PIL keeps RGB in 4 bytes a pixel)
DISPLAY_BYTES = DISPLAY_SIDE * DISPLAY_SIDE * 4


@dataclass
class Limits:
    """What one request may cost and how many may be in the server at once (the bound above)."""

    max_upload_bytes: int = 20 * 1024 * 1024
    max_side: int = 8192
    #: decoded size, checked from the image header before any pixel is decoded
    max_pixels: int = MAX_UPLOAD_PIXELS
    queue_size: int = 32
    max_batch: int = 8
    #: how long the model thread waits for more requests to join a batch
    batch_wait_s: float = 0.002
    #: images decoded (or overlays drawn) at once; with ``max_pixels`` it bounds the memory
    decode_slots: int = 2
    #: seconds a request body may take to arrive in full; 408 after
    read_timeout_s: float = 30.0
    #: open connections the server keeps; beyond them uvicorn answers 503 itself
    max_connections: int = 64


def memory_bound(limits: Limits, channels: int = 3, image_size: Size = 224) -> int:
    """Bytes the server may hold above its idle size under any mix of requests (see above)."""
    # a decoder may also hold the whole upload (WebP reads its file into memory)
    decoding = limits.decode_slots * (max(limits.max_pixels * BYTES_PER_PIXEL, RENDER_BYTES) + limits.max_upload_bytes)
    connections = limits.max_connections * CONNECTION_BYTES
    height, width = as_shape(image_size)
    tensor = channels * height * width * 4
    waiting = (limits.queue_size + limits.max_batch + limits.decode_slots) * (tensor + DISPLAY_BYTES)
    return decoding + connections + waiting


def bound_text(limits: Limits, channels: int = 3, image_size: Size = 224) -> str:
    """The bound as one sentence with its terms, for ``--help`` and the start-up line."""
    return (f"memory above the idle server stays under {memory_bound(limits, channels, image_size) / MiB:,.0f} MiB: "
            f"decode slots ({limits.decode_slots}) x (max(max pixels ({limits.max_pixels:,}) x {BYTES_PER_PIXEL} B, "
            f"{RENDER_BYTES // MiB} MiB) + max upload) + connections ({limits.max_connections}) x {CONNECTION_BYTES // MiB} MiB + "
            f"(queue {limits.queue_size} + batch {limits.max_batch} + slots) x (input + {DISPLAY_BYTES / MiB:.0f} MiB)")
