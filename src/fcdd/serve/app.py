"""The HTTP service: ``POST /predict`` (an image in, score, verdict and overlay out), ``GET /health``,
OpenAPI docs at ``/docs`` and a small upload page at ``/``.

One model, many clients: requests are decoded in worker threads, then queued for a single model
thread that runs whatever has arrived (up to ``max_batch`` images) as one batch. The queue is
bounded; when it is full the request gets 503 with ``Retry-After`` instead of piling up.

Uploads are untrusted, so every limit holds while the request is still arriving:

- the body is counted as it is read (``BodyGuard``, chunked bodies too): past ``max_upload_bytes``
  plus the multipart framing the answer is 413 at once, before the rest is read or spooled;
- a body not complete ``read_timeout_s`` after the request began gets 408 (half-sent, trickling);
  both answers close the connection;
- the image must be one of ``UPLOAD_FORMATS`` (PNG, JPEG, BMP, TIFF, WebP) as detected from the
  bytes, and of an image (or unknown) content type, else 415; no other PIL plugin sees the data;
- its dimensions, read from the header before decoding, must be within ``max_side`` and
  ``max_pixels`` (413); it must decode completely (422);
- at most ``decode_slots`` images are decoded or overlays drawn at once, on a pool of that many
  threads (so their large buffers also come from, and go back to, only those threads' malloc
  arenas: RSS cannot keep one decode's worth per thread that ever decoded).

Memory bound (``fcdd.serve.memory_bound``): above the idle process (model loaded, one full batch
run) the server holds at most

- ``decode_slots x (max(max_pixels x 20 B, 32 MiB) + max_upload_bytes)`` for decoding and drawing,
- ``+ max_connections x 3 MiB`` for uploads arriving (in memory up to 1 MiB each, larger ones are
  spooled to disk) and answers leaving,
- ``+ (queue_size + max_batch + decode_slots) x (input tensor + 1 MiB display copy)`` for decoded
  requests waiting for the model;

with the defaults (2 slots, 16.8 MP, 20 MiB uploads, 64 connections, queue 32, batch 8) about
0.9 GiB.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image

from fcdd.data.shape import Size
from fcdd.data.shape import describe as describe_shape
from fcdd.detector import Detector, Prediction
from fcdd.overlay import colour_scale, coloured, png_bytes, render_overlay
from fcdd.preprocess import UPLOAD_FORMATS, ImageRejected, decode_bytes, format_names, prepare_decoded
from fcdd.serve import Limits, bound_text, memory_bound

log = logging.getLogger("fcdd.serve")

STATIC = Path(__file__).resolve().parent / "static"
#: declared upload types that are sniffed rather than refused (clients that do not know the type)
GENERIC_TYPES = ("", "application/octet-stream")
#: HTTP status of each reason an upload is rejected for
REJECTION_STATUS = {"empty": 422, "unknown_format": 415, "too_large": 413, "corrupt": 422}
#: multipart framing allowed on top of ``max_upload_bytes`` (boundary, part headers, other fields)
MULTIPART_SLACK = 64 * 1024

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
DISCONNECT: Message = {"type": "http.disconnect"}

__all__ = ["Batcher", "BodyGuard", "Limits", "QueueFull", "create_app", "memory_bound", "serve"]


# --- the request body, limited while it arrives -----------------------------------------------------


def declared_length(scope: dict) -> int | None:
    """The request's Content-Length, or None (absent, chunked or malformed)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def send_refusal(send: Send, status: int, detail: str) -> None:
    """A JSON error that closes the connection: the rest of the body is never read."""
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class BodyGuard:
    """ASGI middleware: a request body may have at most ``max_bytes`` and must have arrived
    ``timeout_s`` after the request began.

    It counts the bytes of the ``http.request`` messages as the app reads them, so a chunked body
    without Content-Length is refused with 413 as soon as it passes the limit (not after being
    spooled whole), and a stalled body gets 408. After such an answer the app sees the client as
    gone and whatever it sends is dropped."""

    def __init__(self, app, max_bytes: int, timeout_s: float, on_refusal: Callable[[int], None] | None = None) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s
        self.on_refusal = on_refusal or (lambda status: None)

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = declared_length(scope)
        if length is not None and length > self.max_bytes:
            self.on_refusal(413)
            await send_refusal(send, 413, f"upload of {length} bytes exceeds the limit of {self.max_bytes} bytes")
            return
        await _GuardedRequest(self, receive, send).run(scope)


class _GuardedRequest:
    """One request under a ``BodyGuard``: its byte count, deadline and whether the guard answered."""

    def __init__(self, guard: BodyGuard, receive: Receive, send: Send) -> None:
        self.guard, self._receive, self._send = guard, receive, send
        self.deadline = time.monotonic() + guard.timeout_s
        self.received = 0
        self.complete = False
        self.started = False
        self.answered = False

    async def run(self, scope: dict) -> None:
        try:
            await self.guard.app(scope, self.receive, self.send)
        except Exception:
            if not self.answered:
                raise
            log.debug("request ended after its body was refused", exc_info=True)

    async def receive(self) -> Message:
        if self.answered:
            return DISCONNECT
        if self.complete:  # only a disconnect can come now; waiting for it has no deadline
            return await self._receive()
        try:
            message = await asyncio.wait_for(self._receive(), max(0.0, self.deadline - time.monotonic()))
        except asyncio.TimeoutError:
            return await self.refuse(408, f"the request body did not arrive within {self.guard.timeout_s:g} s")
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.guard.max_bytes:
                return await self.refuse(413, f"upload exceeds the limit of {self.guard.max_bytes} bytes")
            self.complete = not message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        if self.answered:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def refuse(self, status: int, detail: str) -> Message:
        if not self.started:
            self.answered = True
            self.guard.on_refusal(status)
            await send_refusal(self._send, status, detail)
        return DISCONNECT


# --- the model thread ------------------------------------------------------------------------------


class QueueFull(RuntimeError):
    pass


class Batcher:
    """A single model thread fed by a bounded queue; requests that arrive together share a batch."""

    def __init__(self, detector: Detector, limits: Limits) -> None:
        self.detector = detector
        self.limits = limits
        self.queue: queue.Queue = queue.Queue(maxsize=limits.queue_size)
        self.batches = 0
        self.images = 0
        self.thread = threading.Thread(target=self._loop, name="fcdd-model", daemon=True)
        self.thread.start()

    def submit(self, image: torch.Tensor) -> Future:
        future: Future = Future()
        try:
            self.queue.put_nowait((image, future))
        except queue.Full:
            raise QueueFull(f"{self.limits.queue_size} requests are already waiting") from None
        return future

    @property
    def pending(self) -> int:
        return self.queue.qsize()

    def _take(self) -> list:
        first = self.queue.get()
        if first is None:
            return [None]
        items = [first]
        deadline = time.monotonic() + self.limits.batch_wait_s
        while len(items) < self.limits.max_batch:
            try:
                item = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                self.queue.put(None)
                break
            items.append(item)
        return items

    def _loop(self) -> None:
        while True:
            items = self._take()
            if items == [None]:
                return
            live = [(image, future) for image, future in items if future.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                scores, heatmaps = self.detector.forward(torch.stack([image for image, _ in live]))
                predictions = self.detector.predictions(scores, heatmaps)
            except Exception as err:  # noqa: BLE001 - hand the failure to every waiting request, keep serving
                log.exception("model failed on a batch of %d", len(live))
                for _, future in live:
                    future.set_exception(err)
                continue
            self.batches += 1
            self.images += len(live)
            for (_, future), prediction in zip(live, predictions, strict=True):
                future.set_result(prediction)

    def close(self) -> None:
        try:
            self.queue.put(None, timeout=1)
        except queue.Full:
            pass


# --- decoding and drawing, a few at a time ---------------------------------------------------------


@dataclass
class Decoded:
    """What a request keeps of its upload: the model input, the display copy and the original size."""

    tensor: torch.Tensor
    display: Image.Image | None
    width: int
    height: int


def decode_upload(source: BinaryIO | bytes, limits: Limits, channels: int, size: Size, with_display: bool) -> Decoded:
    """Check, decode and shrink one upload; the full-size image exists only inside this call."""
    image = decode_bytes(source, limits.max_pixels, limits.max_side, UPLOAD_FORMATS)
    try:
        tensor, display = prepare_decoded(image, channels, size, with_display)
        return Decoded(tensor, display, image.width, image.height)
    finally:
        image.close()


class ImageWorkers:
    """A pool of ``n`` threads for decoding and drawing. It bounds the images in memory at once, and
    their large buffers are allocated and freed in those threads' malloc arenas only, so memory
    freed after one decode is reused by the next instead of being kept per thread. A new pool is
    made at each start-up (a test client may start the app more than once)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pool: ThreadPoolExecutor | None = None

    async def run(self, fn: Callable, *args):
        """``fn(*args)`` on the pool, waiting for a free thread."""
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=self.n, thread_name_prefix="fcdd-image")
        return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(fn, *args))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None


def _b64_png(image) -> str:
    return base64.b64encode(png_bytes(image)).decode("ascii")


def _pictures(detector: Detector, prediction: Prediction, display) -> dict:
    lo, hi = colour_scale(detector, prediction.heatmap)
    heat = coloured(prediction.heatmap, display.size, lo, hi)
    return {
        "overlay_png": _b64_png(render_overlay(display, prediction, lo, hi, caption=False)),
        "heatmap_png": _b64_png(Image.fromarray(heat)),
        "heatmap_range": [lo, hi],
    }


# --- the app ---------------------------------------------------------------------------------------


def public_limits(limits: Limits, detector: Detector) -> dict:
    """The limits a client may want to know, with the formats and the memory bound."""
    return {**asdict(limits), "formats": list(UPLOAD_FORMATS),
            "memory_bound_bytes": memory_bound(limits, detector.in_channels, detector.image_shape)}


def public_model(detector: Detector) -> dict:
    """``Detector.describe`` without the snapshot's location: no file-system path reaches a client."""
    return {key: value for key, value in detector.describe().items() if key != "snapshot"}


def create_app(detector: Detector, limits: Limits | None = None) -> FastAPI:
    limits = limits or Limits()
    batcher = Batcher(detector, limits)
    workers = ImageWorkers(limits.decode_slots)
    stats = {"requests": 0, "rejected": 0, "started": time.time()}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        workers.close()
        batcher.close()

    app = FastAPI(
        lifespan=lifespan,
        title="fcdd anomaly detection",
        description="Upload an image: anomaly score, verdict and an explanation heatmap. Model: "
                    f"{detector.config.objective} / {detector.config.net} at {describe_shape(detector.image_shape)} (height x width). "
                    f"Accepted formats: {format_names(UPLOAD_FORMATS)}.",
        version="1",
    )
    app.state.detector, app.state.batcher, app.state.limits = detector, batcher, limits

    def count_refusal(status: int) -> None:
        stats["rejected"] += 1

    app.add_middleware(BodyGuard, max_bytes=limits.max_upload_bytes + MULTIPART_SLACK, timeout_s=limits.read_timeout_s,
                       on_refusal=count_refusal)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse({"detail": f"internal error: {type(err).__name__}"}, status_code=500)

    def reject(status: int, message: str):
        stats["rejected"] += 1
        return HTTPException(status_code=status, detail=message)

    @app.get("/health", summary="liveness, model, queue and limits")
    def health() -> dict:
        return {
            "status": "ok", "model": public_model(detector), "queue": batcher.pending, "queue_size": limits.queue_size,
            "batches": batcher.batches, "images": batcher.images, "requests": stats["requests"], "rejected": stats["rejected"],
            "limits": public_limits(limits, detector), "uptime_s": round(time.time() - stats["started"], 1),
        }

    @app.post(
        "/predict", summary="score one image",
        responses={408: {"description": "the upload did not arrive in time"},
                   413: {"description": "upload or image dimensions too large"},
                   415: {"description": f"not an image type, or not {format_names(UPLOAD_FORMATS)}"},
                   422: {"description": "undecodable or truncated image"}, 503: {"description": "queue full, retry later"}},
    )
    async def predict(
        file: UploadFile = File(..., description=f"the image ({format_names(UPLOAD_FORMATS)})"),
        images: bool = Query(True, description="include the overlay and heatmap PNGs (base64)"),
    ) -> dict:
        stats["requests"] += 1
        declared = (file.content_type or "").split(";")[0].strip().lower()
        if not (declared.startswith("image/") or declared in GENERIC_TYPES):
            raise reject(415, f"content type {declared!r} is not an image type")
        if file.size is not None and file.size > limits.max_upload_bytes:
            raise reject(413, f"upload exceeds the limit of {limits.max_upload_bytes} bytes")
        started = time.perf_counter()
        try:
            decoded = await workers.run(decode_upload, file.file, limits, detector.in_channels, detector.image_shape, images)
        except ImageRejected as err:
            raise reject(REJECTION_STATUS[err.reason], f"{file.filename or 'upload'}: {err}") from None
        try:
            future = batcher.submit(decoded.tensor)
        except QueueFull as err:
            stats["rejected"] += 1
            raise HTTPException(503, f"busy: {err}; retry shortly", headers={"Retry-After": "1"}) from None
        prediction: Prediction = await asyncio.wrap_future(future)
        body = {"filename": file.filename, "width": decoded.width, "height": decoded.height, **prediction.to_dict()}
        if images:
            body.update(await workers.run(_pictures, detector, prediction, decoded.display))
        body["seconds"] = round(time.perf_counter() - started, 4)
        return body

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


# --- the process -----------------------------------------------------------------------------------


def serve(run: str | Path, host: str = "127.0.0.1", port: int = 8000, device: str = "auto", limits: Limits | None = None,
          threshold: float | None = None, pixel_threshold: float | None = None, log_level: str = "info") -> None:
    import uvicorn

    limits = limits or Limits()
    detector = Detector.load(run, device=device, threshold=threshold, pixel_threshold=pixel_threshold)
    # one full batch now, so that the idle size the memory bound is stated over includes it
    detector.forward(torch.zeros(limits.max_batch, detector.in_channels, *detector.image_shape))
    app = create_app(detector, limits)
    print(f"fcdd serve: {detector.config.objective}/{detector.config.net} on {detector.device}; "
          f"page http://{host}:{port}/ , API docs http://{host}:{port}/docs; "
          f"{bound_text(limits, detector.in_channels, detector.image_shape)}", flush=True)
    # limit_concurrency: beyond this many open connections uvicorn answers 503 itself
    uvicorn.run(app, host=host, port=port, log_level=log_level, limit_concurrency=limits.max_connections, timeout_keep_alive=5)
