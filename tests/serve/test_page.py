"""The upload page in headless Chromium: choose a file, the verdict and the overlay appear.

Chromium is the shared ``browser`` fixture (tests/conftest.py); the page reports its progress in ``document.body.dataset.state``
(idle / busy / done / error). Skipped only when no Chromium is installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def open_page(browser, server: str) -> None:
    browser.send("Page.enable")
    browser.send("Runtime.enable")
    browser.send("Page.navigate", url=f"{server}/")
    browser.wait_until("document.readyState === 'complete' && document.body.dataset.state === 'idle'")
    browser.wait_until("document.getElementById('model').textContent.includes('fcdd')")


def test_upload_shows_verdict_and_overlay(browser, server, tiny_run):
    path = next(Path(p) for p, k in zip(tiny_run.evaluation.paths, tiny_run.evaluation.kinds, strict=True) if k != "good")
    open_page(browser, server)
    browser.choose_file("#file", path)
    state = browser.wait_until("['done', 'error'].includes(document.body.dataset.state) && document.body.dataset.state")
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
    state = browser.wait_until("['done', 'error'].includes(document.body.dataset.state) && document.body.dataset.state")
    assert state == "error"
    assert "415" in browser.evaluate("document.getElementById('status').textContent")
    assert browser.evaluate("document.getElementById('result').hidden") is True
