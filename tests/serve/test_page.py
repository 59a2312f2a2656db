"""The upload page in headless Chromium: choose a file, the verdict and the overlay appear.

Chromium is driven over the DevTools protocol (``--remote-debugging-port``, one websocket via
``websocket-client``); the page reports its progress in ``document.body.dataset.state``
(idle / busy / done / error). Skipped only when no Chromium is installed.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest


def chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


class Browser:
    """A headless Chromium with one page, spoken to over the DevTools websocket."""

    def __init__(self, binary: str, timeout: float = 60.0) -> None:
        import websocket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.profile = tempfile.mkdtemp(prefix="fcdd-page-test-")
        self.process = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--disable-extensions", f"--remote-debugging-port={port}", "--remote-allow-origins=*",
             f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json() if t["type"] == "page"]
                if pages:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.2)
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"waited {timeout} s for {expression}")

    def choose_file(self, selector: str, path: Path) -> None:
        root = self.send("DOM.getDocument")["root"]["nodeId"]
        node = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self.send("DOM.setFileInputFiles", nodeId=node, files=[str(path)])

    def close(self) -> None:
        if getattr(self, "ws", None):
            self.ws.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    binary = chromium()
    if binary is None:
        pytest.skip("chromium is not installed (scripts/setup.sh test installs it)")
    pytest.importorskip("websocket", reason="websocket-client (test extra) is needed to drive chromium")
    b = Browser(binary)
    yield b
    b.close()


def open_page(browser: Browser, server: str) -> None:
    browser.send("Page.enable")
    browser.send("Runtime.enable")
    browser.send("Page.navigate", url=f"{server}/")
    browser.wait_for("document.readyState === 'complete' && document.body.dataset.state === 'idle'")
    browser.wait_for("document.getElementById('model').textContent.includes('fcdd')")


def test_upload_shows_verdict_and_overlay(browser, server, tiny_run):
    path = next(Path(p) for p, k in zip(tiny_run.evaluation.paths, tiny_run.evaluation.kinds, strict=True) if k != "good")
    open_page(browser, server)
    browser.choose_file("#file", path)
    state = browser.wait_for("['done', 'error'].includes(document.body.dataset.state) && document.body.dataset.state")
    assert state == "done", browser.evaluate("document.getElementById('status').textContent")
    overlay = browser.evaluate("(() => { const i = document.getElementById('overlay'); return [i.complete, i.naturalWidth, i.naturalHeight]; })()")
    assert overlay[0] and overlay[1] >= 64 and overlay[2] >= 64
    assert browser.evaluate("document.getElementById('result').hidden") is False
    verdict = browser.evaluate("document.getElementById('verdict').textContent")
    assert verdict in ("ANOMALOUS", "NOMINAL")
    expected = tiny_run.evaluation.scores[tiny_run.evaluation.paths.index(str(path))]
    shown = float(browser.evaluate("document.getElementById('score').textContent"))
    assert shown == pytest.approx(expected, rel=1e-3)
    errors = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"]
    assert not errors, errors


def test_bad_file_shows_the_error(browser, server, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not an image")
    open_page(browser, server)
    browser.choose_file("#file", bad)
    state = browser.wait_for("['done', 'error'].includes(document.body.dataset.state) && document.body.dataset.state")
    assert state == "error"
    assert "415" in browser.evaluate("document.getElementById('status').textContent")
    assert browser.evaluate("document.getElementById('result').hidden") is True
