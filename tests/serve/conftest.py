"""A real ``fcdd serve`` process on a free loopback port, shared by the server and page tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

MAX_UPLOAD_MB = 0.25


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def server(tiny_run, tmp_path_factory):
    """Base URL of a running server for the tiny run (small limits so that tests can exceed them)."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    handle = log.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "fcdd.cli", "serve", str(tiny_run.out), "--host", "127.0.0.1", "--port", str(port),
         "--device", "cpu", "--max-upload-mb", str(MAX_UPLOAD_MB), "--max-side", "2048", "--log-level", "warning"],
        stdout=handle, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"fcdd serve exited with {process.returncode}:\n{Path(log).read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise TimeoutError(f"fcdd serve did not answer in 60 s:\n{Path(log).read_text()}")
        time.sleep(0.2)
    yield url
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
    handle.close()
