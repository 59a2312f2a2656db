"""``fcdd serve`` under a hostile-but-fair load: a real server process, 8 clients sending good uploads
interleaved with chunked oversize bodies, pixel bombs, truncated images, non-image bytes, EPS and
GIF files and half-sent bodies. Each gets its documented status, the server stays healthy and its
resident memory stays within the bound it states (``fcdd.serve.memory_bound``)."""

from __future__ import annotations

import io
import random
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

MAX_UPLOAD_BYTES = 256 * 1024
MAX_PIXELS = 1_000_000
READ_TIMEOUT_S = 1.5
FLAGS = ("--max-upload-mb", "0.25", "--max-side", "8192", "--max-pixels", str(MAX_PIXELS), "--read-timeout",
         str(READ_TIMEOUT_S), "--decode-slots", "2", "--max-connections", "32", "--log-level", "warning")
#: how much a chunked sender would send if nobody stopped it (the server must answer long before)
CHUNKED_CAP = 32 * 1024 * 1024
BOUNDARY = "fcdd-test-boundary"

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n0 0 moveto 8 8 lineto stroke\nshowpage\n%%EOF\n"


# --- what the clients send ------------------------------------------------------------------------


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def large_good_png() -> bytes:
    """Exactly at the pixel limit (1000 x 1000 RGB), smooth so that it stays under the upload limit."""
    ramp = np.linspace(0, 255, 1000, dtype=np.float32)
    rgb = np.stack([np.add.outer(ramp, ramp) / 2, np.add.outer(ramp, 255 - ramp) / 2, np.tile(ramp, (1000, 1))], axis=-1)
    data = encoded(Image.fromarray(rgb.astype(np.uint8)), optimize=True)
    assert len(data) < MAX_UPLOAD_BYTES
    return data


def multipart(data: bytes, name: str, content_type: str) -> bytes:
    head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n").encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def request_head(port: int, **headers: str) -> bytes:
    lines = ["POST /predict HTTP/1.1", f"Host: 127.0.0.1:{port}",
             f"Content-Type: multipart/form-data; boundary={BOUNDARY}", *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_status(sock: socket.socket, timeout: float = 20.0) -> int:
    """The status code of the answer on a raw socket (0 when the server closed without one)."""
    sock.setblocking(True)
    sock.settimeout(timeout)
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return 0
        data += chunk
    return int(data.split(b" ", 2)[1])


def closed_after(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the server closes the connection (after the rest of its answer)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def send_chunked_oversize(port: int) -> dict:
    """A multipart body without Content-Length, in 64 KiB chunks, until the server answers."""
    payload = b"\x89PNG\r\n\x1a\n" + bytes(64 * 1024 - 8)
    frame = f"{len(payload):x}\r\n".encode() + payload + b"\r\n"
    head = multipart(b"", "endless.png", "image/png").split(b"\r\n--" + BOUNDARY.encode() + b"--")[0]
    pending = bytearray(request_head(port, Transfer_Encoding="chunked") + f"{len(head):x}\r\n".encode() + head + b"\r\n")
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.setblocking(False)
        deadline = time.monotonic() + 20
        while sent < CHUNKED_CAP and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 1.0)
            if readable:
                break
            if writable:
                if not pending:
                    pending += frame
                try:
                    n = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    break
                del pending[:n]
                sent += n
        status = read_status(sock)
        return {"status": status, "sent": sent, "closed": closed_after(sock)}


def send_half(port: int, body: bytes) -> dict:
    """Headers promising the whole body, then only half of it, then silence."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request_head(port, Content_Length=str(len(body))) + body[: len(body) // 2])
        started = time.monotonic()
        status = read_status(sock)
        return {"status": status, "waited": time.monotonic() - started, "closed": closed_after(sock)}


@dataclass
class Job:
    kind: str
    expected: int
    data: bytes = b""
    name: str = "x.png"
    content_type: str = "image/png"


def jobs(tiny_run) -> list[Job]:
    goods = [Path(p).read_bytes() for p in tiny_run.evaluation.paths]
    big = large_good_png()
    good = [Job("good", 200, big if i % 10 == 0 else goods[i % len(goods)]) for i in range(200)]
    sample = goods[0]
    rng = np.random.default_rng(0)
    bomb = encoded(Image.new("L", (8000, 6000)), optimize=True)  # 48 MP in a few tens of KB
    assert len(bomb) < MAX_UPLOAD_BYTES
    gif = encoded(Image.open(io.BytesIO(sample)).convert("P"), "GIF")
    bad = (
        [Job("chunked", 413) for _ in range(6)]
        + [Job("bomb", 413, bomb, "bomb.png") for _ in range(6)]
        + [Job("truncated", 422, sample[: len(sample) // 2], "half.png") for _ in range(6)]
        + [Job("noise", 415, rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(), "noise.png") for _ in range(6)]
        + [Job("eps", 415, EPS, "drawing.eps", "application/octet-stream") for _ in range(5)]
        + [Job("gif", 415, gif, "animation.png") for _ in range(5)]
        + [Job("half", 408, multipart(sample, "slow.png", "image/png")) for _ in range(6)]
    )
    assert len(bad) == 40
    mixed = good + bad
    random.Random(0).shuffle(mixed)
    return mixed


# --- the server's memory --------------------------------------------------------------------------


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


class PeakRSS:
    """The server's peak resident size from now on: the kernel's high-water mark, reset at the
    start where allowed, and a 10 ms sampler as a floor."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            self.reset = True
        except OSError:
            self.reset = False
        self.sampled = status_kib(pid, "VmRSS")
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.done.wait(0.01):
            self.sampled = max(self.sampled, status_kib(self.pid, "VmRSS"))

    def stop(self) -> int:
        self.done.set()
        self.thread.join()
        return max(self.sampled, status_kib(self.pid, "VmHWM")) if self.reset else self.sampled


# --- the test -------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's memory from /proc")
def test_hostile_mix_gets_documented_codes_within_the_memory_bound(tiny_run, launch_server):
    served = launch_server(tiny_run.out, *FLAGS)
    health = httpx.get(f"{served.url}/health").json()
    limits = health["limits"]
    assert (limits["max_pixels"], limits["read_timeout_s"], limits["decode_slots"]) == (MAX_PIXELS, READ_TIMEOUT_S, 2)
    work = jobs(tiny_run)
    local = threading.local()

    def run(job: Job) -> dict:
        if job.kind == "chunked":
            return send_chunked_oversize(served.port)
        if job.kind == "half":
            return send_half(served.port, job.data)
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=served.url, timeout=30)
        response = local.client.post("/predict", files={"file": (job.name, job.data, job.content_type)})
        return {"status": response.status_code, "body": response.json()}

    with ThreadPoolExecutor(max_workers=8) as pool:  # warm up: the idle size includes a few answers
        list(pool.map(run, [j for j in work if j.kind == "good"][:16]))
    idle_kib = status_kib(served.process.pid, "VmRSS")
    peak = PeakRSS(served.process.pid)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, work))
    seconds = time.monotonic() - started
    peak_kib = peak.stop()

    wrong = [(job.kind, job.expected, r["status"], str(r.get("body", ""))[:200]) for job, r in zip(work, results, strict=True)
             if r["status"] != job.expected]
    assert not wrong, wrong
    by_kind = {kind: [r for job, r in zip(work, results, strict=True) if job.kind == kind] for kind in {j.kind for j in work}}
    assert all("score" in r["body"] and r["body"]["verdict"] in ("anomalous", "nominal") for r in by_kind["good"])
    assert all("8000x6000" in r["body"]["detail"] for r in by_kind["bomb"])
    assert all("not a supported image format" in r["body"]["detail"] for r in by_kind["eps"] + by_kind["gif"])
    # answered while the body was still coming, and the connection closed
    assert all(r["sent"] < CHUNKED_CAP and r["closed"] for r in by_kind["chunked"]), by_kind["chunked"]
    assert all(READ_TIMEOUT_S - 0.2 < r["waited"] < READ_TIMEOUT_S + 5 and r["closed"] for r in by_kind["half"]), by_kind["half"]

    after = httpx.get(f"{served.url}/health")
    assert after.status_code == 200 and after.json()["status"] == "ok"
    assert after.json()["images"] >= 200 + 16
    bound = limits["memory_bound_bytes"]
    grown = (peak_kib - idle_kib) * 1024
    print(f"\n{len(work)} requests in {seconds:.1f} s; server RSS idle {idle_kib / 1024:.0f} MiB, peak {peak_kib / 1024:.0f} MiB "
          f"(+{grown / 2**20:.0f} MiB, high-water mark {'reset' if peak.reset else 'sampled'}); stated bound +{bound / 2**20:.0f} MiB; "
          f"chunked senders stopped after at most {max(r['sent'] for r in by_kind['chunked']) / 2**20:.1f} MiB")
    assert grown <= bound


def test_health_shows_no_file_system_path(server, tiny_run):
    text = httpx.get(f"{server}/health").text
    run = Path(tiny_run.out).resolve()
    assert str(run) not in text and str(run.parent) not in text and "snapshot" not in text
    limits = httpx.get(f"{server}/health").json()["limits"]
    assert limits["formats"] == ["PNG", "JPEG", "BMP", "TIFF", "WEBP"] and limits["memory_bound_bytes"] > 0
