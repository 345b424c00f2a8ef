"""Search spaces, simulated people and the bound, against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pirtune.errors import UsageError
from pirtune.models.networks import Generator
from pirtune.search import SearchSpace, SimulatedPerson, principal_directions, rounds_lower_bound


def test_a_subspace_maps_coordinates_to_latents_and_back():
    rng = np.random.default_rng(0)
    origin, directions = rng.standard_normal(10), rng.standard_normal((3, 10))
    space = SearchSpace.subspace(origin, directions)
    np.testing.assert_allclose(space.basis @ space.basis.T, np.eye(3), atol=1e-12)
    # The slice spans the given directions.
    _, residual, *_ = np.linalg.lstsq(space.basis.T, directions.T, rcond=None)
    np.testing.assert_allclose(residual, 0, atol=1e-20)
    coords = rng.standard_normal((5, 3))
    np.testing.assert_allclose(space.to_coords(space.to_latent(coords)), coords, atol=1e-12)
    # Distances in coordinates are distances between latents.
    a, b = space.to_latent(coords[:2])
    assert np.linalg.norm(a - b) == pytest.approx(np.linalg.norm(coords[0] - coords[1]))
    full = SearchSpace.full(4)
    np.testing.assert_array_equal(full.to_latent(np.arange(4.0)), np.arange(4.0))
    with pytest.raises(UsageError, match="linearly dependent"):
        SearchSpace.subspace(origin, np.stack([directions[0], 2 * directions[0]]))


def test_principal_directions_are_orthonormal_latent_directions_strongest_first():
    torch.manual_seed(0)
    generator = Generator(latent_dim=16, num_classes=2, resolution=16, width=0.125).eval()
    directions = principal_directions(generator, 4, num_samples=512)
    assert directions.shape == (4, 16)
    np.testing.assert_allclose(directions @ directions.T, np.eye(4), atol=1e-9)
    # Moving along the first direction changes the first-layer features more than the last.
    z = torch.zeros(1, 16)
    onehot = torch.tensor([[1.0, 0.0]])
    with torch.no_grad():
        base = generator.fc(torch.cat([z, onehot], 1))
        moved = [(generator.fc(torch.cat([z + torch.as_tensor(d, dtype=torch.float32), onehot],
                                         1)) - base).norm() for d in directions]
    assert moved[0] > moved[-1]
    with pytest.raises(UsageError, match="k=17"):
        principal_directions(generator, 17)


def test_people_pick_the_nearest_exactly_or_with_bradley_terry_odds():
    target = np.zeros(2)
    points = np.array([[1.0, 0], [0, 2.0], [-3.0, 0], [0, -4.0]])
    assert SimulatedPerson(target).pick(points) == 0
    # In a feature space that swaps the axes and stretches the first, another is nearest.
    person = SimulatedPerson(target, features=lambda p: p * np.array([10.0, 1.0]))
    assert person.pick(points) == 1
    noisy = SimulatedPerson(target, temperature=1.0, seed=0)
    picks = np.bincount([noisy.pick(points) for _ in range(20000)], minlength=4) / 20000
    expected = np.exp(-np.array([1, 2, 3, 4.0]))
    np.testing.assert_allclose(picks, expected / expected.sum(), atol=0.01)
    random = SimulatedPerson(target, random_share=1.0, seed=0)
    picks = np.bincount([random.pick(points) for _ in range(20000)], minlength=4) / 20000
    np.testing.assert_allclose(picks, 0.25, atol=0.01)


def test_the_bound_is_bits_needed_over_two_bits_per_answer():
    n = 8
    assert rounds_lower_bound(n, math.sqrt(2 * n), 0.05 * math.sqrt(n)) == pytest.approx(
        8 * math.log2(math.sqrt(2) / 0.05) / 2)
    assert rounds_lower_bound(64, 2.0, 1.0) == 32
    with pytest.raises(ValueError, match="r0 > r > 0"):
        rounds_lower_bound(8, 0.1, 0.2)
