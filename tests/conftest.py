"""Shared fixtures: a small generated MVTec-layout set, tiny fast configurations and runs, and a
headless Chromium driven over the DevTools protocol (``--remote-debugging-port``, one websocket
via ``websocket-client``) for the report and web-page tests."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from fcdd.config import Config
from fcdd.data.synthetic import generate

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """gravel textures, 64 px: 24 train, 6 good + 3 per defect type in test."""
    return generate(tmp_path_factory.mktemp("synthetic"), "gravel", size=64, n_train=24, n_test_good=6, n_test_per_defect=3)


@pytest.fixture(scope="session")
def two_categories(tmp_path_factory) -> Path:
    """A folder of two generated categories (gravel, grass; 48 px) for the class-grid tests; read only."""
    root = tmp_path_factory.mktemp("cats")
    for texture in ("gravel", "grass"):
        generate(root, texture, size=48, n_train=16, n_test_good=4, n_test_per_defect=2)
    return root


def tiny(synthetic_root: Path, out: Path, **changes) -> Config:
    """The fast test setting: cnn32 at width 0.25, 32 px, 2 epochs, on the synthetic set."""
    options = dict(
        dataset="mvtec", data=str(synthetic_root), image_size=32, net="cnn32", width=0.25, pretrained="none",
        epochs=2, batch_size=8, eval_batch_size=16, out=str(out), report=False, holdout=0.2, device="cpu",
    )
    return Config(**{**options, **changes})


@pytest.fixture(scope="session")
def make_tiny_config():
    """``tiny`` for fixtures in other folders (conftest modules are not importable)."""
    return tiny


@pytest.fixture
def tiny_config(synthetic_root, tmp_path) -> Config:
    return tiny(synthetic_root, tmp_path / "run")


@pytest.fixture
def shared_data():
    """``shared_data(name)``: a real data set folder beside the repo, or skip the test."""

    def find(name: str) -> Path:
        path = SHARED_DATA / name
        if not path.is_dir():
            pytest.skip(f"real data {path} not available")
        return path

    return find


@pytest.fixture(scope="session")
def tiny_run(synthetic_root, tmp_path_factory):
    """One trained tiny run without report, shared by the use-a-model tests; read only."""
    import fcdd

    return fcdd.train(tiny(synthetic_root, tmp_path_factory.mktemp("tiny_run") / "run"))


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Chromium:
    def __init__(self, binary: str, width: int = 1280, height: int = 900, timeout: float = 60.0) -> None:
        import websocket  # websocket-client, in the test extra

        self.timeout = timeout
        self.profile = Path(tempfile.mkdtemp(prefix="fcdd-chromium-"))
        self.process = subprocess.Popen(
            [
                binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                "--disable-dev-shm-usage", "--remote-allow-origins=*", "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        port = self._port()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as response:
            targets = json.load(response)
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True)
        self._id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")

    def _port(self) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with code {self.process.returncode}")
            if marker.is_file() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            time.sleep(0.1)
        raise TimeoutError("chromium did not open its DevTools port")

    def send(self, method: str, **params) -> dict:
        self._id += 1
        ident = self._id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str) -> dict:
        for message in self.events:
            if message.get("method") == event:
                return message
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            self.events.append(message)
            if message.get("method") == event:
                return message
        raise TimeoutError(f"no {event} within {self.timeout} s")

    def open(self, path: Path) -> None:
        self.events.clear()
        self.send("Page.navigate", url=Path(path).resolve().as_uri())
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} raised {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_until(self, expression: str, timeout: float = 30.0):
        """Poll a JavaScript expression until it is truthy; returns its value."""
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

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads seen since the last ``open``."""
        found = []
        for message in self.events:
            method, params = message.get("method"), message.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(params.get("exceptionDetails", {}))[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                found.append(params["entry"].get("text", ""))
        return found

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        params = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", **params)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:  # noqa: BLE001 - the browser may already be gone
            pass
        try:
            self.ws.close()
        finally:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (scripts/setup.sh test installs it)")
    pytest.importorskip("websocket", reason="websocket-client is in the test extra")
    chrome = Chromium(binary)
    try:
        yield chrome
    finally:
        chrome.close()
