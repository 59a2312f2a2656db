"""Greedy k-centre coreset: Gonzalez' factor-2 guarantee against a brute-force optimum."""

from __future__ import annotations

import itertools

import pytest
import torch

from fcdd.neighbours import coreset_size, covering_radius, greedy_coreset, random_projection


def optimal_radius(points: torch.Tensor, k: int) -> float:
    """The smallest covering radius over all k-subsets of ``points`` (brute force)."""
    dist = torch.cdist(points.double(), points.double())
    subsets = torch.tensor(list(itertools.combinations(range(points.shape[0]), k)))
    best = float("inf")
    for block in subsets.split(8192):
        radius = dist[block].min(dim=1).values.max(dim=1).values  # (subsets, k, N) -> (subsets,)
        best = min(best, float(radius.min()))
    return best


def radius_of(points: torch.Tensor, indices: torch.Tensor) -> float:
    return covering_radius(points.double(), points[indices].double())


@pytest.mark.parametrize("dims", [2, 8])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_is_within_twice_the_optimum(dims, seed):
    points = torch.randn(40, dims, generator=torch.Generator().manual_seed(100 + dims))
    k = 4
    chosen = greedy_coreset(points, size=k, projection_dim=None, seed=seed)
    assert chosen.dtype == torch.long and chosen.shape == (k,) and chosen.unique().numel() == k
    optimum = optimal_radius(points, k)
    greedy = radius_of(points, chosen)
    assert optimum - 1e-9 <= greedy <= 2 * optimum + 1e-6


def test_greedy_follows_the_farthest_point_rule():
    points = torch.randn(30, 5, generator=torch.Generator().manual_seed(3))
    chosen = greedy_coreset(points, size=6, projection_dim=None, seed=4).tolist()
    for step in range(1, len(chosen)):
        nearest = torch.cdist(points, points[chosen[:step]]).min(dim=1).values
        assert nearest[chosen[step]] == pytest.approx(float(nearest.max()), rel=1e-5)


def test_projection_keeps_the_selection_quality():
    """With D > projection_dim the greedy runs on ``random_projection``'s points, so:

    - it selects exactly what the unprojected greedy selects on those projected points;
    - in the projected space the factor-2 bound holds exactly;
    - in the original space the radius is within 2 (1 + eps) / (1 - eps) of the optimum, with eps
      the projection's largest relative distortion of a pairwise distance, measured here.
    """
    points = torch.randn(40, 64, generator=torch.Generator().manual_seed(7))
    k, dim = 4, 16
    chosen = greedy_coreset(points, size=k, projection_dim=dim, seed=5)
    projected = random_projection(points, dim, seed=5)
    assert torch.equal(chosen, greedy_coreset(projected, size=k, projection_dim=None, seed=5))

    assert radius_of(projected, chosen) <= 2 * optimal_radius(projected, k) + 1e-6

    pairs = torch.triu_indices(40, 40, offset=1)
    original = torch.cdist(points.double(), points.double())[pairs[0], pairs[1]]
    mapped = torch.cdist(projected.double(), projected.double())[pairs[0], pairs[1]]
    eps = float((mapped / original - 1).abs().max())
    assert eps < 1
    assert radius_of(points, chosen) <= 2 * (1 + eps) / (1 - eps) * optimal_radius(points, k) + 1e-6


def test_projection_still_finds_every_cluster():
    """Four far-apart clusters in 256 dims, projected to 16: one centre lands in each."""
    generator = torch.Generator().manual_seed(11)
    centres = 20 * torch.randn(4, 256, generator=generator)
    labels = torch.arange(4).repeat_interleave(50)
    points = centres[labels] + torch.randn(200, 256, generator=generator)
    for seed in range(3):
        chosen = greedy_coreset(points, size=4, projection_dim=16, seed=seed)
        assert sorted(labels[chosen].tolist()) == [0, 1, 2, 3]


def test_fraction_one_and_large_sizes_return_everything():
    points = torch.randn(17, 3)
    assert torch.equal(greedy_coreset(points, fraction=1.0), torch.arange(17))
    assert torch.equal(greedy_coreset(points, size=17), torch.arange(17))
    assert torch.equal(greedy_coreset(points, size=100), torch.arange(17))


def test_fraction_sets_the_size():
    points = torch.randn(40, 3)
    assert greedy_coreset(points, fraction=0.1).shape == (4,)
    assert greedy_coreset(points, fraction=0.001).shape == (1,)
    assert coreset_size(30, fraction=0.1) == 3
    assert coreset_size(10, size=3) == 3


def test_deterministic_by_seed():
    points = torch.randn(200, 300, generator=torch.Generator().manual_seed(0))
    first = greedy_coreset(points, size=20, seed=3)
    assert torch.equal(first, greedy_coreset(points, size=20, seed=3))
    others = [greedy_coreset(points, size=20, seed=s) for s in range(5)]
    assert any(not torch.equal(others[0], other) for other in others[1:])


def test_chunked_projection_matches():
    points = torch.randn(100, 40, generator=torch.Generator().manual_seed(1))
    assert torch.equal(greedy_coreset(points, size=10, projection_dim=8, chunk=7), greedy_coreset(points, size=10, projection_dim=8))


def test_duplicates_give_distinct_indices():
    points = torch.zeros(10, 3)
    points[:3] = 1.0
    chosen = greedy_coreset(points, size=6, projection_dim=None)
    assert chosen.unique().numel() == 6
    assert {float(points[i, 0]) for i in chosen[:2]} == {0.0, 1.0}


@pytest.mark.parametrize(
    "options",
    [
        dict(fraction=0.0), dict(fraction=-0.5), dict(fraction=1.5), dict(size=0), dict(size=-2), dict(size=2.5),
        dict(), dict(fraction=0.5, size=3), dict(size=2, projection_dim=0), dict(size=2, chunk=0),
    ],
)
def test_argument_errors(options):
    with pytest.raises(ValueError):
        greedy_coreset(torch.randn(10, 4), **options)


def test_shape_errors():
    with pytest.raises(ValueError):
        greedy_coreset(torch.randn(10), size=2)
    with pytest.raises(ValueError):
        greedy_coreset(torch.randn(0, 4), size=2)
    with pytest.raises(ValueError):
        covering_radius(torch.randn(5, 3), torch.randn(2, 4))
    with pytest.raises(ValueError):
        covering_radius(torch.randn(5, 3), torch.randn(0, 3))


def test_covering_radius_matches_brute_force():
    generator = torch.Generator().manual_seed(2)
    points, centres = torch.randn(37, 6, generator=generator), torch.randn(11, 6, generator=generator)
    expected = float(torch.cdist(points.double(), centres.double()).min(dim=1).values.max())
    assert covering_radius(points, centres, query_chunk=4, bank_chunk=3) == pytest.approx(expected, abs=1e-5)
    assert covering_radius(centres, centres) == 0.0


def test_resumed_selection_equals_an_uninterrupted_one():
    from fcdd.neighbours.coreset import greedy_coreset

    points = torch.randn(500, 24, generator=torch.Generator().manual_seed(3))
    saved = []
    full = greedy_coreset(points, size=60, projection_dim=8, seed=1, save=saved.append, save_every=10)
    assert [len(s["selected"]) for s in saved] == [10, 20, 30, 40, 50]
    for state in (saved[0], saved[3]):
        assert torch.equal(greedy_coreset(points, size=60, projection_dim=8, seed=1, state=state), full)
    with pytest.raises(ValueError, match="does not fit"):
        greedy_coreset(points[:100], size=60, projection_dim=8, seed=1, state=saved[0])
