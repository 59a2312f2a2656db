"""Real ``fcdd serve`` processes on free loopback ports: ``server`` (small limits, shared by the server
and page tests) and ``launch_server`` for tests that need their own flags."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

MAX_UPLOAD_MB = 0.25


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    url: str
    port: int
    process: subprocess.Popen
    log: Path


def start(run_dir: Path, log: Path, *flags: str) -> Served:
    """``fcdd serve run_dir *flags`` on a free port, once ``/health`` answers."""
    port = free_port()
    with log.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "fcdd.cli", "serve", str(run_dir), "--host", "127.0.0.1", "--port", str(port),
             "--device", "cpu", *flags],
            stdout=handle, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"fcdd serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return Served(url, port, process, log)
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise TimeoutError(f"fcdd serve did not answer in 60 s:\n{log.read_text()}")
        time.sleep(0.2)


def stop(served: Served) -> None:
    served.process.terminate()
    try:
        served.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        served.process.kill()


@pytest.fixture(scope="session")
def launch_server(tmp_path_factory):
    """``launch_server(run_dir, *flags) -> Served``; every server started is stopped at the end."""
    started: list[Served] = []

    def launch(run_dir: Path, *flags: str) -> Served:
        served = start(Path(run_dir), tmp_path_factory.mktemp("serve") / "serve.log", *flags)
        started.append(served)
        return served

    yield launch
    for served in started:
        stop(served)


@pytest.fixture(scope="session")
def server(tiny_run, launch_server) -> str:
    """Base URL of a running server for the tiny run (small limits so that tests can exceed them)."""
    return launch_server(tiny_run.out, "--max-upload-mb", str(MAX_UPLOAD_MB), "--max-side", "2048",
                         "--log-level", "warning").url
