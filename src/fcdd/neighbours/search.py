"""Exact k-nearest-neighbour search from query vectors to a memory bank (L2 distances).

Two backends with one convention -- ``search(queries (M, D), k) -> (distances (M, k),
indices (M, k))``, distances Euclidean (not squared) and sorted ascending:

- ``TorchSearch``: blockwise matrix products in torch, on whatever device the bank lives;
- ``FaissSearch``: faiss' exact ``IndexFlatL2`` on the CPU, when the optional ``faiss``
  package (``fcdd[faiss]``, i.e. faiss-cpu) is installed.

``make_search`` picks one; a new backend is one entry in ``BACKENDS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

try:  # optional: faiss-cpu, the ``fcdd[faiss]`` extra
    import faiss
except ImportError:  # pragma: no cover - depends on the environment
    faiss = None

#: whether the faiss backend is available
HAS_FAISS = faiss is not None

#: ``make_search(backend="auto")`` uses faiss (when installed) for CPU banks with more rows than this
AUTO_FAISS_MIN_ROWS = 200_000


class NeighbourSearch(Protocol):
    """What every backend offers."""

    size: int
    dim: int

    def search(self, queries: Tensor, k: int = 1) -> tuple[Tensor, Tensor]: ...


def _check_bank(bank: Tensor) -> None:
    if not isinstance(bank, Tensor) or bank.dim() != 2:
        raise ValueError(f"bank must be a 2-D tensor (rows, dims), got {getattr(bank, 'shape', type(bank))}")
    if bank.shape[0] == 0:
        raise ValueError("bank is empty")


def _check_query(queries: Tensor, dim: int, size: int, k: int) -> None:
    if not isinstance(queries, Tensor) or queries.dim() != 2:
        raise ValueError(f"queries must be a 2-D tensor (rows, dims), got {getattr(queries, 'shape', type(queries))}")
    if queries.shape[1] != dim:
        raise ValueError(f"queries have {queries.shape[1]} dims, the bank {dim}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if k > size:
        raise ValueError(f"k={k} exceeds the bank's {size} rows")


class TorchSearch:
    """Exact L2 search in torch, blockwise over queries and bank.

    Squared distances of a block come from ``||q||^2 - 2 q.b + ||b||^2`` (one matrix product,
    clamped at 0 against rounding); the best ``k`` of each bank block are merged into a running
    top-k, and with ``refine`` the ``k`` winners' distances are then recomputed directly from
    ``q - b``, which removes the expansion's cancellation error (a query equal to a bank row
    gets exactly 0). Results are sorted ascending; ties go to either index.

    Memory: besides the bank itself and its N row norms, one call holds at most about

        s * query_chunk * bank_chunk        the distance block (dominant)
        + s * query_chunk * D * 2           the query chunk (when it must be moved or cast) and
                                            one refinement difference
        + s * query_chunk * k * 15          running, block and merged top-k (values, int64 indices)

    bytes, with ``s`` the element size (4 for float32), plus torch's ``topk`` workspace on the
    block. With the defaults (4096 x 8192 float32) the distance block is 128 MiB, so a call
    stays well under 256 MiB for any D up to a few thousand; lower the chunks to trade speed
    for memory. Queries are moved to the bank's device chunk by chunk; results come back on
    that device.
    """

    def __init__(self, bank: Tensor, query_chunk: int = 4096, bank_chunk: int = 8192, refine: bool = True) -> None:
        _check_bank(bank)
        if query_chunk < 1 or bank_chunk < 1:
            raise ValueError(f"chunk sizes must be >= 1, got query_chunk={query_chunk}, bank_chunk={bank_chunk}")
        dtype = torch.float64 if bank.dtype == torch.float64 else torch.float32
        self.bank = bank.detach().to(dtype)
        # a reduction, not ``square().sum()``: that would hold a squared copy of the whole bank
        self.bank_norms = torch.linalg.vector_norm(self.bank, dim=1).square_()
        self.query_chunk, self.bank_chunk, self.refine = query_chunk, bank_chunk, refine
        self.size, self.dim = self.bank.shape

    @property
    def device(self) -> torch.device:
        return self.bank.device

    @torch.no_grad()
    def search(self, queries: Tensor, k: int = 1) -> tuple[Tensor, Tensor]:
        """``(distances (M, k), indices (M, k))`` of each query's ``k`` nearest bank rows."""
        _check_query(queries, self.dim, self.size, k)
        m = queries.shape[0]
        distances = torch.empty(m, k, dtype=self.bank.dtype, device=self.device)
        indices = torch.empty(m, k, dtype=torch.long, device=self.device)
        for start in range(0, m, self.query_chunk):
            q = queries[start : start + self.query_chunk].detach().to(device=self.device, dtype=self.bank.dtype)
            d, i = self._search_chunk(q, k)
            distances[start : start + q.shape[0]] = d
            indices[start : start + q.shape[0]] = i
        return distances, indices

    def _search_chunk(self, q: Tensor, k: int) -> tuple[Tensor, Tensor]:
        q_norms = q.square().sum(dim=1, keepdim=True)
        best = torch.full((q.shape[0], k), float("inf"), dtype=q.dtype, device=q.device)
        best_index = torch.zeros((q.shape[0], k), dtype=torch.long, device=q.device)
        for start in range(0, self.size, self.bank_chunk):
            b = self.bank[start : start + self.bank_chunk]
            # ||b||^2 - 2 q.b + ||q||^2, written into one (query_chunk, bank_chunk) block
            block = torch.addmm(self.bank_norms[start : start + b.shape[0]].unsqueeze(0), q, b.T, alpha=-2.0)
            block.add_(q_norms).clamp_min_(0.0)
            values, where = torch.topk(block, min(k, b.shape[0]), dim=1, largest=False, sorted=False)
            del block
            merged = torch.cat([best, values], dim=1)
            merged_index = torch.cat([best_index, where + start], dim=1)
            best, pick = torch.topk(merged, k, dim=1, largest=False, sorted=False)
            best_index = merged_index.gather(1, pick)
        if self.refine:  # one neighbour rank at a time: a (query_chunk, D) difference
            best = torch.stack([self.bank[best_index[:, j]].sub_(q).square_().sum(dim=1) for j in range(k)], dim=1)
        best, order = torch.sort(best, dim=1)
        return best.sqrt_(), best_index.gather(1, order)


class FaissSearch:
    """Exact L2 search with faiss' ``IndexFlatL2`` (CPU, float32), same convention as ``TorchSearch``.

    faiss returns squared distances; they are clamped at 0 and square-rooted here. Results are
    CPU tensors (distances float32, indices int64). The index holds a float32 copy of the bank.
    """

    def __init__(self, bank: Tensor) -> None:
        if not HAS_FAISS:
            raise ImportError("the faiss backend needs the faiss package: pip install 'fcdd[faiss]' (faiss-cpu)")
        _check_bank(bank)
        self.size, self.dim = bank.shape
        self.index = faiss.IndexFlatL2(self.dim)
        self.index.add(_as_faiss(bank))

    def search(self, queries: Tensor, k: int = 1) -> tuple[Tensor, Tensor]:
        """``(distances (M, k), indices (M, k))`` of each query's ``k`` nearest bank rows."""
        _check_query(queries, self.dim, self.size, k)
        squared, indices = self.index.search(_as_faiss(queries), k)
        distances = torch.from_numpy(squared).clamp_min_(0.0).sqrt_()
        return distances, torch.from_numpy(indices).long()


def _as_faiss(x: Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to(device="cpu", dtype=torch.float32).numpy())


#: backend name -> factory taking the bank (and backend-specific keyword options)
BACKENDS: dict[str, Callable[..., NeighbourSearch]] = {"torch": TorchSearch, "faiss": FaissSearch}


def make_search(bank: Tensor, backend: str = "auto", **options) -> NeighbourSearch:
    """A search over ``bank`` (N, D) with the named backend.

    "auto" uses faiss when it is installed, the bank is on the CPU and has more than
    ``AUTO_FAISS_MIN_ROWS`` rows (where faiss' blocked BLAS search pays off); otherwise torch,
    which is also the one to use for banks on a GPU. "faiss" without faiss installed raises
    ImportError. ``options`` go to the backend's constructor (e.g. ``query_chunk`` for torch).
    """
    if backend == "auto":
        _check_bank(bank)
        big_cpu_bank = bank.device.type == "cpu" and bank.shape[0] > AUTO_FAISS_MIN_ROWS
        backend = "faiss" if HAS_FAISS and big_cpu_bank else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"unknown search backend {backend!r}; choose 'auto' or one of {sorted(BACKENDS)}")
    return BACKENDS[backend](bank, **options)
