"""The README's "Use a trained model" example runs as printed, on a tiny trained run, and
``fcdd.load`` takes each of the three things the README says it takes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import fcdd
from fcdd.rundir import SNAPSHOT

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    """The first ``python`` code block of the section "Use a trained model"."""
    text = README.read_text()
    section = text[text.index("## Use a trained model"):]
    end = section.find("\n## ")
    section = section if end < 0 else section[:end]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "README.md: no ```python block under 'Use a trained model'"
    return blocks[0]


def test_readme_example_runs_on_a_trained_run(tiny_run, synthetic_root, monkeypatch, capsys):
    code = readme_example()
    assert 'os.environ.get("FCDD_RUN"' in code and 'os.environ.get("FCDD_IMAGES"' in code  # the placeholders
    monkeypatch.setenv("FCDD_RUN", str(tiny_run.out))
    monkeypatch.setenv("FCDD_IMAGES", str(synthetic_root / "test" / "scratch"))
    namespace: dict = {}
    exec(compile(code, str(README) + " (Use a trained model)", "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    images = namespace["images"]
    assert len(images) == 3 and len(printed) == len(images) + 1
    assert all(re.match(r"\S+\.png: score \d+\.\d{3} -> (anomalous|nominal) \(", line) for line in printed[:-1])
    assert namespace["scores"].shape == (3,) and namespace["maps"].shape == (1, 1, 32, 32)
    assert "verdict" in printed[-1]


@pytest.mark.parametrize("source", ["run", "folder", "snapshot"])
def test_load_takes_a_run_a_folder_or_a_snapshot(tiny_run, synthetic_root, source):
    given = {"run": tiny_run, "folder": tiny_run.out, "snapshot": tiny_run.out / SNAPSHOT}[source]
    detector = fcdd.load(given, device="cpu")
    assert isinstance(detector, fcdd.Detector)
    images = sorted((synthetic_root / "test" / "good").glob("*.png"))[:2]
    predictions = detector.predict(images)
    assert all(isinstance(p, fcdd.Prediction) for p in predictions)
    reference = fcdd.load(tiny_run.out / SNAPSHOT, device="cpu").score(images)
    assert torch.allclose(torch.tensor([p.score for p in predictions], dtype=reference.dtype), reference)
    assert detector.threshold == pytest.approx(tiny_run.metrics["thresholds"]["image"]["threshold"])
