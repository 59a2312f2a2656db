"""Greedy coreset selection (PatchCore's memory-bank subsampling).

PatchCore keeps only a subset of the training patch features as its memory bank, chosen so
that every feature is close to some kept one: the k-centre problem (minimise the covering
radius ``max_i min_j ||x_i - c_j||``). It is NP-hard, but the greedy farthest-point rule
(Gonzalez, 1985) -- start anywhere, then repeatedly add the point farthest from everything
chosen so far -- gives a radius at most twice the optimum. To make each step cheap the
features are first mapped to a few dimensions by a Gaussian random projection, which by the
Johnson-Lindenstrauss lemma keeps pairwise distances within a factor ``1 +- eps``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from fcdd.neighbours.search import TorchSearch

#: rows cast and projected at once by ``greedy_coreset`` (bounds that temporary block)
DEFAULT_CHUNK = 65536


def _check_matrix(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise ValueError(f"{name} must be a 2-D tensor (rows, dims), got {getattr(x, 'shape', type(x))}")


def _working_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def random_projection(features: Tensor, dim: int, seed: int = 0) -> Tensor:
    """``features`` (N, D) times a seeded Gaussian matrix (D, dim) with entries N(0, 1/dim).

    The scaling keeps squared distances unbiased (E||Rx||^2 = ||x||^2). The matrix is drawn on
    the CPU from ``seed``, so the projection is the same on every device; ``greedy_coreset``
    uses this very matrix (before centring, which moves no distance).
    """
    _check_matrix("features", features)
    if dim < 1:
        raise ValueError(f"projection dim must be >= 1, got {dim}")
    dtype = _working_dtype(features)
    return features.to(dtype) @ _projection_matrix(features.shape[1], dim, seed, dtype).to(features.device)


def _projection_matrix(d_in: int, d_out: int, seed: int, dtype: torch.dtype) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(d_in, d_out, generator=generator, dtype=dtype) / math.sqrt(d_out)


def coreset_size(n: int, fraction: float | None = None, size: int | None = None) -> int:
    """How many of ``n`` points to keep: ``size`` (capped at ``n``) or ``round(fraction * n)``, at least 1."""
    if (fraction is None) == (size is None):
        raise ValueError("give exactly one of fraction and size")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be an integer >= 1, got {size!r}")
        return min(size, n)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    return n if fraction == 1.0 else min(n, max(1, round(fraction * n)))


def _prepare(features: Tensor, projection_dim: int | None, seed: int, chunk: int) -> Tensor:
    """The points the selection runs on: projected when wider than ``projection_dim``, centred.

    Centring (subtracting the mean) leaves every distance unchanged but shrinks the norms, which
    keeps the cancellation error of the ``||x||^2 - 2 x.c + ||c||^2`` expansion small.
    """
    dtype = _working_dtype(features)
    if projection_dim is not None and features.shape[1] > projection_dim:
        matrix = _projection_matrix(features.shape[1], projection_dim, seed, dtype).to(features.device)
        points = torch.empty(features.shape[0], projection_dim, dtype=dtype, device=features.device)
        for start in range(0, features.shape[0], chunk):  # cast chunk by chunk: no full-size copy
            torch.mm(features[start : start + chunk].to(dtype), matrix, out=points[start : start + chunk])
    else:
        points = features.to(dtype, copy=True)
    points -= points.mean(dim=0)
    return points


def greedy_coreset(
    features: Tensor,
    fraction: float | None = None,
    size: int | None = None,
    projection_dim: int | None = 128,
    seed: int = 0,
    chunk: int = DEFAULT_CHUNK,
    state: dict | None = None,
    save: Callable[[dict], None] | None = None,
    save_every: int = 2000,
) -> Tensor:
    """Indices (long, on ``features``' device, in selection order) of a greedy k-centre coreset.

    ``features`` (N, D); exactly one of ``fraction`` (in (0, 1]; ``round(fraction * N)`` points,
    at least one) or ``size`` (>= 1; capped at N) says how many to keep. When D exceeds
    ``projection_dim`` the selection runs on a seeded Gaussian random projection to that many
    dimensions (None: never project; the same matrix as ``random_projection``). The first
    centre is a seeded random point; each next one is the point with the largest distance to
    its nearest centre so far. A vector of those nearest-centre distances is updated after each
    pick, with one matrix-vector product per step (``||x||^2 - 2 x.c + ||c||^2`` on centred
    points, clamped at 0), so memory is O(N d) for the working points plus O(N), and time
    O(N k d). ``chunk`` bounds the rows cast and projected at once. Chosen points are never
    picked again, so the indices are distinct even with duplicate features. ``fraction == 1``
    (or ``size >= N``) returns ``arange(N)``.

    Resumable: every ``save_every`` picks ``save(state)`` gets the selection so far (``selected``
    indices and the ``nearest`` distance vector, O(k + N)); passing that ``state`` back with the
    same features and arguments continues where it stopped and gives the same result as an
    uninterrupted run.

    In the (projected) space the result's covering radius is at most twice the optimum over all
    k-subsets (Gonzalez' bound); a projection with distortion ``1 +- eps`` loosens this to
    ``2 (1 + eps) / (1 - eps)`` in the original space.
    """
    _check_matrix("features", features)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
    if projection_dim is not None and (isinstance(projection_dim, bool) or not isinstance(projection_dim, int) or projection_dim < 1):
        raise ValueError(f"projection_dim must be an integer >= 1 or None, got {projection_dim!r}")
    n = features.shape[0]
    if n == 0:
        raise ValueError("features is empty")
    k = coreset_size(n, fraction, size)
    device = features.device
    if k == n:
        return torch.arange(n, device=device)

    with torch.no_grad():
        points = _prepare(features.detach(), projection_dim, seed, chunk)
        norms = points.square().sum(dim=1)
        generator = torch.Generator().manual_seed(seed)
        first = int(torch.randint(n, (1,), generator=generator))
        selected = torch.empty(k, dtype=torch.long, device=device)
        nearest = torch.full((n,), math.inf, dtype=points.dtype, device=device)
        scratch = torch.empty_like(nearest)
        index = torch.tensor(first, device=device)
        done = 0
        if state is not None:
            done = len(state["selected"])
            if done > k or len(state["nearest"]) != n:
                raise ValueError(f"coreset state of {done} picks over {len(state['nearest'])} points does not fit {k} of {n}")
            selected[:done] = state["selected"].to(device)
            nearest.copy_(state["nearest"].to(device, points.dtype))
            index = torch.argmax(nearest)
        for step in range(done, k):
            if save is not None and step > done and step % save_every == 0:
                save({"selected": selected[:step].cpu().clone(), "nearest": nearest.cpu().clone()})
            selected[step] = index  # ``index`` stays on the device: no host sync per step
            centre = points[index]
            torch.addmv(norms, points, centre, alpha=-2.0, out=scratch)
            scratch.add_(norms[index]).clamp_min_(0.0)
            torch.minimum(nearest, scratch, out=nearest)
            nearest[index] = -1.0  # chosen: below every distance, so never chosen again
            index = torch.argmax(nearest)
    return selected


def covering_radius(points: Tensor, centres: Tensor, query_chunk: int = 4096, bank_chunk: int = 8192) -> float:
    """``max_i min_j ||points[i] - centres[j]||``: how far the worst-covered point is from a centre.

    Uses ``TorchSearch`` over ``centres``, so it runs on ``query_chunk x bank_chunk`` blocks
    (memory bounded whatever the sizes) and each reported distance is recomputed exactly from
    the vector difference. 0 when ``points`` is empty.
    """
    _check_matrix("points", points)
    _check_matrix("centres", centres)
    if centres.shape[0] == 0:
        raise ValueError("centres is empty")
    if points.shape[1] != centres.shape[1]:
        raise ValueError(f"points have {points.shape[1]} dims, centres {centres.shape[1]}")
    if points.shape[0] == 0:
        return 0.0
    dtype = torch.float64 if torch.float64 in (points.dtype, centres.dtype) else torch.float32
    search = TorchSearch(centres.detach().to(dtype), query_chunk=query_chunk, bank_chunk=bank_chunk)
    distances, _ = search.search(points.to(dtype), k=1)
    return float(distances.max())
