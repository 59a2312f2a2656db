"""The HTTP service: ``POST /predict`` (an image in, score, verdict and overlay out), ``GET /health``,
OpenAPI docs at ``/docs`` and a small upload page at ``/``.

One model, many clients: requests are decoded in worker threads, then queued for a single model
thread that runs whatever has arrived (up to ``max_batch`` images) as one batch. The queue is
bounded; when it is full the request gets 503 with ``Retry-After`` instead of piling up. Uploads
are limited in bytes (413), must be an image type (415), must decode completely (422) and must
stay within ``max_side`` / ``max_pixels`` (413).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import queue
import threading
import time
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image

from fcdd.data.base import to_array
from fcdd.detector import Detector, Prediction
from fcdd.overlay import colour_scale, coloured, png_bytes, render_overlay
from fcdd.preprocess import ImageRejected, decode_bytes, display_copy

log = logging.getLogger("fcdd.serve")

STATIC = Path(__file__).resolve().parent / "static"
#: declared upload types that are sniffed rather than refused (clients that do not know the type)
GENERIC_TYPES = ("", "application/octet-stream")
#: HTTP status of each reason an upload is rejected for
REJECTION_STATUS = {"empty": 422, "unknown_format": 415, "too_large": 413, "corrupt": 422}


@dataclass
class Limits:
    max_upload_bytes: int = 20 * 1024 * 1024
    max_side: int = 8192
    max_pixels: int = 40_000_000
    queue_size: int = 32
    max_batch: int = 8
    #: how long the model thread waits for more requests to join a batch
    batch_wait_s: float = 0.002


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


def _b64_png(image) -> str:
    return base64.b64encode(png_bytes(image)).decode("ascii")


def create_app(detector: Detector, limits: Limits | None = None) -> FastAPI:
    limits = limits or Limits()
    batcher = Batcher(detector, limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        batcher.close()

    app = FastAPI(
        lifespan=lifespan,
        title="fcdd anomaly detection",
        description="Upload an image: anomaly score, verdict and an explanation heatmap. Model: "
                    f"{detector.config.objective} / {detector.config.net} at {detector.image_size}x{detector.image_size}.",
        version="1",
    )
    app.state.detector, app.state.batcher, app.state.limits = detector, batcher, limits
    stats = {"requests": 0, "rejected": 0, "started": time.time()}

    @app.middleware("http")
    async def refuse_large_bodies(request: Request, call_next):
        # refuse by the declared length before any of the body is read or spooled
        length = request.headers.get("content-length")
        if request.url.path == "/predict" and length and length.isdigit() and int(length) > limits.max_upload_bytes + 64 * 1024:
            stats["rejected"] += 1
            return JSONResponse({"detail": f"upload of {int(length)} bytes exceeds the limit of {limits.max_upload_bytes} bytes"},
                                status_code=413, headers={"Connection": "close"})
        return await call_next(request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse({"detail": f"internal error: {type(err).__name__}"}, status_code=500)

    def reject(status: int, message: str):
        stats["rejected"] += 1
        return HTTPException(status_code=status, detail=message)

    @app.get("/health", summary="liveness, model and queue")
    def health() -> dict:
        return {
            "status": "ok", "model": detector.describe(), "queue": batcher.pending, "queue_size": limits.queue_size,
            "batches": batcher.batches, "images": batcher.images, "requests": stats["requests"], "rejected": stats["rejected"],
            "limits": {"max_upload_bytes": limits.max_upload_bytes, "max_side": limits.max_side, "max_pixels": limits.max_pixels},
            "uptime_s": round(time.time() - stats["started"], 1),
        }

    @app.post(
        "/predict", summary="score one image",
        responses={413: {"description": "upload or image dimensions too large"}, 415: {"description": "not an image type"},
                   422: {"description": "undecodable or truncated image"}, 503: {"description": "queue full, retry later"}},
    )
    async def predict(
        file: UploadFile = File(..., description="the image (PNG, JPEG, BMP, TIFF, WebP)"),
        images: bool = Query(True, description="include the overlay and heatmap PNGs (base64)"),
    ) -> dict:
        stats["requests"] += 1
        declared = (file.content_type or "").split(";")[0].strip().lower()
        if not (declared.startswith("image/") or declared in GENERIC_TYPES):
            raise reject(415, f"content type {declared!r} is not an image type")
        data = await file.read(limits.max_upload_bytes + 1)
        if len(data) > limits.max_upload_bytes:
            raise reject(413, f"upload exceeds the limit of {limits.max_upload_bytes} bytes")
        started = time.perf_counter()
        try:
            image = await run_in_threadpool(decode_bytes, data, limits.max_pixels, limits.max_side)
        except ImageRejected as err:
            raise reject(REJECTION_STATUS[err.reason], f"{file.filename or 'upload'}: {err}") from None
        tensor, display = await run_in_threadpool(_prepare, detector, image, images)
        try:
            future = batcher.submit(tensor)
        except QueueFull as err:
            stats["rejected"] += 1
            raise HTTPException(503, f"busy: {err}; retry shortly", headers={"Retry-After": "1"}) from None
        prediction: Prediction = await asyncio.wrap_future(future)
        body = {
            "filename": file.filename, "width": image.width, "height": image.height, **prediction.to_dict(),
        }
        if images:
            body.update(await run_in_threadpool(_pictures, detector, prediction, display))
        body["seconds"] = round(time.perf_counter() - started, 4)
        return body

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _prepare(detector: Detector, image, with_display: bool):
    tensor = torch.from_numpy(to_array(image, detector.in_channels, detector.image_size).copy()).float().div_(255.0)
    return tensor, display_copy(image) if with_display else None


def _pictures(detector: Detector, prediction: Prediction, display) -> dict:
    lo, hi = colour_scale(detector, prediction.heatmap)
    heat = coloured(prediction.heatmap, display.size, lo, hi)
    return {
        "overlay_png": _b64_png(render_overlay(display, prediction, lo, hi, caption=False)),
        "heatmap_png": _b64_png(Image.fromarray(heat)),
        "heatmap_range": [lo, hi],
    }


def serve(run: str | Path, host: str = "127.0.0.1", port: int = 8000, device: str = "auto", limits: Limits | None = None,
          threshold: float | None = None, pixel_threshold: float | None = None, log_level: str = "info") -> None:
    import uvicorn

    detector = Detector.load(run, device=device, threshold=threshold, pixel_threshold=pixel_threshold)
    app = create_app(detector, limits)
    print(f"fcdd serve: {detector.config.objective}/{detector.config.net} on {detector.device}; "
          f"page http://{host}:{port}/ , API docs http://{host}:{port}/docs", flush=True)
    # limit_concurrency: beyond this many open connections uvicorn answers 503 itself
    uvicorn.run(app, host=host, port=port, log_level=log_level, limit_concurrency=256, timeout_keep_alive=5)
