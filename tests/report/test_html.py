"""report.html: self-contained, and it works in a real (headless) browser."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

CARD_SCORES = "[...document.querySelectorAll('#cards .card:not([hidden])')].map(c => Number(c.dataset.score))"


def _data(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="fcdd-data">(.*?)</script>', page, re.S)
    assert match, "no embedded data"
    return json.loads(match.group(1))


def _choose(browser, select: str, value: str) -> None:
    browser.evaluate(f"(() => {{ const s = document.getElementById('{select}'); s.value = '{value}'; s.dispatchEvent(new Event('change')); }})()")


def test_page_is_self_contained(report_run):
    page = (Path(report_run.out) / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page must not load anything from the network"
    assert "<link" not in page and "import(" not in page
    data = _data(page)
    stored = torch.load(Path(report_run.out) / "heatmaps.pt", weights_only=True)
    assert len(data["cards"]) == len(stored["scores"])
    card = data["cards"][0]
    assert {"score", "label", "kind", "path", "img", "g", "l", "truth"} <= set(card)
    assert card["img"].startswith("data:image/jpeg;base64,")
    assert [c["path"] for c in data["cards"]] == stored["paths"]
    for name in ("image AUROC", "pixel AUROC", "loss.png", "gallery_test_anomalous_local.png", "ds_preview.png", "fcdd train --config"):
        assert name in page, name


def test_page_in_headless_chromium(report_run, browser, tmp_path):
    out = Path(report_run.out)
    stored = torch.load(out / "heatmaps.pt", weights_only=True)
    scores, labels = stored["scores"].numpy(), stored["labels"].numpy()
    browser.open(out / "report.html")
    assert browser.evaluate("document.documentElement.dataset.ready") == "1"
    assert browser.evaluate("window.__fcddErrors") == []
    assert browser.evaluate("document.querySelectorAll('#cards .card').length") == len(scores)

    descending = browser.evaluate(CARD_SCORES)
    assert descending == sorted(descending, reverse=True)
    np.testing.assert_allclose(descending, np.sort(scores)[::-1], rtol=1e-6)
    _choose(browser, "sort", "score-asc")
    ascending = browser.evaluate(CARD_SCORES)
    assert ascending == sorted(ascending) and ascending != descending
    _choose(browser, "sort", "index")
    assert browser.evaluate("[...document.querySelectorAll('#cards .card')].map(c => c.dataset.path)") == stored["paths"]

    _choose(browser, "filter-label", "1")
    visible = browser.evaluate("[...document.querySelectorAll('#cards .card:not([hidden])')].map(c => c.dataset.label)")
    assert visible == ["1"] * int(labels.sum())
    kind = next(k for k in stored["kinds"] if k != "good")
    _choose(browser, "filter-kind", kind)
    assert browser.evaluate("document.querySelectorAll('#cards .card:not([hidden])').length") == stored["kinds"].count(kind)
    assert f"showing {stored['kinds'].count(kind)} of {len(scores)}" == browser.evaluate("document.getElementById('count').textContent")
    _choose(browser, "filter-label", "0")
    assert browser.evaluate("document.querySelectorAll('#cards .card:not([hidden])').length") == 0
    _choose(browser, "filter-label", "all")
    _choose(browser, "filter-kind", "all")

    before = browser.evaluate("document.querySelector('#cards .card img.overlay').src")
    _choose(browser, "overlay", "l")
    assert browser.evaluate("document.querySelector('#cards .card img.overlay').src") != before
    # every embedded picture decoded
    assert browser.evaluate("[...document.images].filter(i => i.complete && i.naturalWidth === 0).length") == 0

    shot = browser.screenshot(tmp_path / "report.png")
    width, height = Image.open(shot).size
    assert width >= 800 and height > 1000
    assert browser.errors() == []


def test_report_shows_the_thresholds_on_the_test_set_in_calibrated_colours(report_run):
    """Calibrated colours (the same scale as predict and serve) and the stored thresholds' test-set rates."""
    out = Path(report_run.out)
    page = (out / "report.html").read_text()
    thresholds = report_run.metrics["thresholds"]
    assert "Thresholds on the test set" in page and "anomalous verdicts with an empty mask" in page
    assert f"{thresholds['test']['image']['precision']:.4f}" in page
    for key, title in (("pixel_aupro", "pixel AUPRO"), ("pixel_f1_max", "pixel F1-max"), ("image_ap", "image AP")):
        assert title in page and f"{report_run.metrics[key]:.4f}" in page
    layouts = json.loads((out / "galleries.json").read_text())
    calibrated = layouts["gallery_test_anomalous_calibrated"]
    low, high = thresholds["heatmap_range"]
    assert calibrated["normalisation"] == "calibrated" and calibrated["range"] == pytest.approx([low, high])
    assert all([item["lo"], item["hi"]] == pytest.approx([low, high]) for block in calibrated["blocks"] for item in block["items"])
    assert '"c": "data:image' in page  # the cards carry calibrated overlays too


def test_every_json_of_a_run_with_its_report_is_strict(report_run):
    """metrics, history, galleries, plot points: no NaN or Infinity anywhere (strict parsers refuse them)."""

    def refuse(constant: str):
        raise ValueError(f"non-strict JSON constant {constant}")

    files = sorted(Path(report_run.out).rglob("*.json"))
    assert {"metrics.json", "history.json", "galleries.json"} <= {p.name for p in files}
    for path in files:
        json.loads(path.read_text(), parse_constant=refuse)
