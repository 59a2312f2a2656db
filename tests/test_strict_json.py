"""Every JSON file fcdd writes parses with a strict parser: no NaN or Infinity."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from fcdd.io import atomic_write_json


def strict(text: str):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_become_null_with_a_reason(tmp_path):
    path = atomic_write_json(tmp_path / "m.json", {"a": math.nan, "b": [1.0, math.inf], "c": {"d": -math.inf}, "e": 0.5})
    data = strict(path.read_text())
    assert data["a"] is None and data["b"] == [1.0, None] and data["c"]["d"] is None and data["e"] == 0.5
    assert set(data["null_reasons"]) == {"a", "b[1]", "c.d"}
    assert "infinite" in data["null_reasons"]["c.d"]
    with pytest.raises(ValueError):
        strict('{"x": NaN}')


def test_every_json_of_a_run_folder_is_strict(tiny_run):
    files = sorted(Path(tiny_run.out).rglob("*.json"))
    assert files
    for path in files:
        strict(path.read_text())
