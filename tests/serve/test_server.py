"""The served model over real HTTP: good, oversized, truncated and non-image uploads, concurrency."""

from __future__ import annotations

import base64
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from fcdd.detector import Detector

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def sample_file(tiny_run, kind: str = "good") -> Path:
    return next(Path(p) for p, k in zip(tiny_run.evaluation.paths, tiny_run.evaluation.kinds, strict=True) if k == kind)


def post(url: str, data: bytes, name: str = "x.png", content_type: str = "image/png") -> httpx.Response:
    return httpx.post(f"{url}/predict", files={"file": (name, data, content_type)}, timeout=30)


def test_health_and_docs(server):
    health = httpx.get(f"{server}/health").json()
    assert health["status"] == "ok"
    assert health["model"]["objective"] == "fcdd" and health["model"]["image_size"] == 32
    assert "/predict" in httpx.get(f"{server}/openapi.json").json()["paths"]
    assert httpx.get(f"{server}/docs").status_code == 200
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and 'id="file"' in page.text
    assert httpx.get(f"{server}/static/app.js").status_code == 200


def test_good_upload_scores_like_the_api(server, tiny_run):
    path = sample_file(tiny_run, "blob")
    response = post(server, path.read_bytes(), path.name)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = Detector.load(tiny_run.out, device="cpu").predict(path)[0]
    assert body["score"] == pytest.approx(expected.score, rel=1e-5, abs=1e-6)
    assert body["verdict"] == expected.verdict and body["verdict"] in ("anomalous", "nominal")
    assert body["threshold"] == pytest.approx(tiny_run.metrics["thresholds"]["image"]["threshold"])
    assert (body["width"], body["height"]) == (64, 64)
    for key in ("overlay_png", "heatmap_png"):
        image = Image.open(io.BytesIO(base64.b64decode(body[key])))
        image.load()
        assert image.format == "PNG" and min(image.size) >= 64


def test_grey_and_jpeg_uploads_are_accepted(server):
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (50, 70), dtype=np.uint8)).save(buffer, format="JPEG")
    response = post(server, buffer.getvalue(), "grey.jpg", "image/jpeg")
    assert response.status_code == 200, response.text
    assert (response.json()["width"], response.json()["height"]) == (70, 50)
    # clients that do not know the type send octet-stream: the bytes decide
    response = post(server, buffer.getvalue(), "grey", "application/octet-stream")
    assert response.status_code == 200


def test_bad_uploads_get_clear_4xx_and_server_stays_healthy(server, tiny_run):
    limit = httpx.get(f"{server}/health").json()["limits"]["max_upload_bytes"]
    good = sample_file(tiny_run).read_bytes()
    too_big = post(server, b"\x89PNG" + bytes(limit * 2))
    assert too_big.status_code == 413 and "limit" in too_big.json()["detail"]
    truncated = post(server, good[: len(good) // 2], "half.png")
    assert truncated.status_code == 422 and "truncated" in truncated.json()["detail"]
    text = post(server, b"hello, not an image", "notes.txt", "text/plain")
    assert text.status_code == 415 and "text/plain" in text.json()["detail"]
    noise = post(server, bytes(range(256)) * 8, "noise.png")
    assert noise.status_code == 415 and "not a supported image format" in noise.json()["detail"]
    buffer = io.BytesIO()
    Image.new("L", (4000, 8)).save(buffer, format="PNG")  # small file, too many pixels a side
    wide = post(server, buffer.getvalue(), "wide.png")
    assert wide.status_code == 413 and "4000x8" in wide.json()["detail"]
    empty = post(server, b"", "empty.png")
    assert empty.status_code == 422
    missing = httpx.post(f"{server}/predict", data={"nothing": "here"})
    assert missing.status_code == 422
    assert httpx.get(f"{server}/health").json()["status"] == "ok"
    assert post(server, good).status_code == 200


def test_concurrent_requests_all_answered(server, tiny_run):
    files = [Path(p).read_bytes() for p in tiny_run.evaluation.paths[:12]]
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda data: post(server, data), files))
    assert [r.status_code for r in responses] == [200] * len(files)
    scores = [r.json()["score"] for r in responses]
    np.testing.assert_allclose(scores, tiny_run.evaluation.scores[:12], rtol=1e-5, atol=1e-6)
    assert httpx.get(f"{server}/health").json()["images"] >= len(files)


# --- in-process: the queue and failures inside the model ---------------------------------------------


def test_full_queue_refuses_and_model_errors_do_not_stop_the_service(tiny_run):
    from fastapi.testclient import TestClient

    from fcdd.serve.app import Batcher, Limits, QueueFull, create_app

    detector = Detector.load(tiny_run.out, device="cpu")
    release = threading.Event()
    original = detector.forward

    def slow(batch):
        release.wait(10)
        return original(batch)

    detector.forward = slow
    batcher = Batcher(detector, Limits(queue_size=2, max_batch=1))
    image = torch.rand(3, 32, 32)
    futures = [batcher.submit(image)]  # taken by the model thread, which then waits
    deadline = time.monotonic() + 10
    while batcher.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    futures += [batcher.submit(image), batcher.submit(image)]
    with pytest.raises(QueueFull):
        batcher.submit(image)
    release.set()
    assert all(f.result(10).score > 0 for f in futures)
    batcher.close()

    calls = {"n": 0}

    def flaky(batch):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated model failure")
        return original(batch)

    detector.forward = flaky
    with TestClient(create_app(detector), raise_server_exceptions=False) as client:
        data = sample_file(tiny_run).read_bytes()
        failed = client.post("/predict", files={"file": ("a.png", data, "image/png")})
        assert failed.status_code == 500 and "RuntimeError" in failed.json()["detail"]
        assert client.post("/predict", files={"file": ("a.png", data, "image/png")}).status_code == 200
