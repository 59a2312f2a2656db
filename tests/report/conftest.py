"""Fixtures for the report tests: one tiny trained run with its report (the headless
``browser`` fixture is shared, in tests/conftest.py)."""

from __future__ import annotations

import pytest

import fcdd


@pytest.fixture(scope="session")
def report_run(synthetic_root, tmp_path_factory, make_tiny_config):
    """A tiny run with report=True; do not modify its folder (copy it)."""
    return fcdd.train(make_tiny_config(synthetic_root, tmp_path_factory.mktemp("report") / "run", report=True))


