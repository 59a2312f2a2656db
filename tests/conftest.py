"""Shared fixtures: a small generated MVTec-layout set and a tiny, fast configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from fcdd.config import Config
from fcdd.data.synthetic import generate

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """gravel textures, 64 px: 24 train, 6 good + 3 per defect type in test."""
    return generate(tmp_path_factory.mktemp("synthetic"), "gravel", size=64, n_train=24, n_test_good=6, n_test_per_defect=3)


@pytest.fixture
def tiny_config(synthetic_root, tmp_path) -> Config:
    return Config(
        dataset="mvtec", data=str(synthetic_root), image_size=32, net="cnn32", width=0.25, pretrained="none",
        epochs=2, batch_size=8, eval_batch_size=16, out=str(tmp_path / "run"), report=False, holdout=0.2,
    )


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
    """One trained 2-epoch cnn32 run at 32 px without report, shared by the use-a-model tests; read only."""
    import fcdd

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    config = Config(
        dataset="mvtec", data=str(synthetic_root), image_size=32, net="cnn32", width=0.25, pretrained="none",
        epochs=2, batch_size=8, eval_batch_size=16, out=str(out), report=False, holdout=0.2, device="cpu",
    )
    return fcdd.train(config)
