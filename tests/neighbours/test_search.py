"""Nearest-neighbour search: the chunked torch search against cdist, faiss against torch."""

from __future__ import annotations

import pytest
import torch

from fcdd.neighbours import FaissSearch, TorchSearch, make_search
from fcdd.neighbours import search as search_module


def data(m: int = 53, n: int = 41, d: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(m, d, generator=generator), torch.randn(n, d, generator=generator)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("refine", [True, False])
def test_torch_search_matches_cdist(k, refine):
    queries, bank = data()
    # 53 queries in chunks of 7 and 41 bank rows in chunks of 5 (the last has 1 row, fewer than k)
    search = TorchSearch(bank, query_chunk=7, bank_chunk=5, refine=refine)
    distances, indices = search.search(queries, k=k)
    assert distances.shape == indices.shape == (53, k) and indices.dtype == torch.long
    full = torch.cdist(queries.double(), bank.double())
    expected = full.topk(k, dim=1, largest=False).values
    assert torch.allclose(distances.double(), expected, atol=1e-4, rtol=0)
    assert torch.allclose(full.gather(1, indices), distances.double(), atol=1e-4, rtol=0)
    assert bool((distances[:, 1:] >= distances[:, :-1]).all())


def test_torch_search_bank_rows_find_themselves():
    _, bank = data(n=30, d=16)
    distances, indices = TorchSearch(100 + bank, query_chunk=4, bank_chunk=6).search(100 + bank, k=1)
    assert torch.equal(indices[:, 0], torch.arange(30))
    assert float(distances.max()) == 0.0  # refined: exact despite the large norms


def test_torch_search_keeps_float64():
    queries, bank = data()
    distances, _ = TorchSearch(bank.double()).search(queries.double(), k=2)
    assert distances.dtype == torch.float64
    expected = torch.cdist(queries.double(), bank.double()).topk(2, dim=1, largest=False).values
    assert torch.allclose(distances, expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("k", [0, 42, 1.5])
def test_search_rejects_bad_k(k):
    queries, bank = data()
    with pytest.raises(ValueError):
        TorchSearch(bank).search(queries, k=k)


def test_search_rejects_bad_shapes():
    queries, bank = data()
    with pytest.raises(ValueError):
        TorchSearch(bank).search(queries[:, :3])
    with pytest.raises(ValueError):
        TorchSearch(bank[0])
    with pytest.raises(ValueError):
        TorchSearch(bank[:0])
    with pytest.raises(ValueError):
        TorchSearch(bank, query_chunk=0)


@pytest.mark.parametrize("k", [1, 3])
def test_faiss_agrees_with_torch(k):
    """Same distances within 1e-4 (both float32); each faiss index is at its reported distance."""
    pytest.importorskip("faiss")
    queries, bank = data(m=200, n=500, d=24, seed=1)
    torch_d, _ = TorchSearch(bank, query_chunk=64, bank_chunk=128).search(queries, k=k)
    faiss_d, faiss_i = FaissSearch(bank).search(queries, k=k)
    assert faiss_d.shape == faiss_i.shape == (200, k) and faiss_i.dtype == torch.long
    assert torch.allclose(faiss_d, torch_d, atol=1e-4, rtol=0)
    full = torch.cdist(queries.double(), bank.double())
    assert torch.allclose(full.gather(1, faiss_i), faiss_d.double(), atol=1e-4, rtol=0)


def test_make_search_backends(monkeypatch):
    _, bank = data()
    assert isinstance(make_search(bank), TorchSearch)  # small bank: torch
    chosen = make_search(bank, "torch", query_chunk=3)
    assert isinstance(chosen, TorchSearch) and chosen.query_chunk == 3
    with pytest.raises(ValueError, match="unknown search backend"):
        make_search(bank, "annoy")
    if search_module.HAS_FAISS:
        assert isinstance(make_search(bank, "faiss"), FaissSearch)
        monkeypatch.setattr(search_module, "AUTO_FAISS_MIN_ROWS", 10)
        assert isinstance(make_search(bank), FaissSearch)
    monkeypatch.setattr(search_module, "HAS_FAISS", False)
    assert isinstance(make_search(bank), TorchSearch)
    with pytest.raises(ImportError, match="faiss"):
        make_search(bank, "faiss")
