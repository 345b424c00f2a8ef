"""Where a search moves: the whole latent space, or a k-dimensional slice of it.

A ``SearchSpace`` maps a search's coordinates y [k] to generator latents
z = origin + y·B with B [k, n] orthonormal rows, so distances in coordinates
are distances in the latent space. ``full`` is the whole space (B = I);
``subspace`` takes any directions through a start latent, and
``principal_directions`` finds the GANSpace ones (Härkönen et al. 2020): the
top principal components of the generator's first-layer features over many
samples, carried back to the latent space by least squares. In a few such
directions a person reaches a satisfying image in tens of choices instead of
hundreds, at the price of the images the slice cannot reach.

The image's class is fixed for a session: every candidate is drawn in the
session's class (the person chooses it before searching, as in the web app),
so the class is never part of a four-way choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pirtune.errors import UsageError


@dataclass(frozen=True)
class SearchSpace:
    """Coordinates y [k] ↔ latents z = origin + y·basis [n].

    Attributes:
        origin: the latent at y = 0 [n].
        basis: orthonormal directions [k, n].
    """

    origin: np.ndarray
    basis: np.ndarray

    @property
    def dim(self) -> int:
        return self.basis.shape[0]

    def to_latent(self, coords: np.ndarray) -> np.ndarray:
        """Latents [..., n] of coordinates [..., k]."""
        return self.origin + np.asarray(coords) @ self.basis

    def to_coords(self, latents: np.ndarray) -> np.ndarray:
        """Coordinates [..., k] of latents [..., n] (their projection onto the slice)."""
        return (np.asarray(latents) - self.origin) @ self.basis.T

    @classmethod
    def full(cls, latent_dim: int) -> SearchSpace:
        """The whole latent space: coordinates are latents."""
        return cls(np.zeros(latent_dim), np.eye(latent_dim))

    @classmethod
    def subspace(cls, origin: np.ndarray, directions: np.ndarray) -> SearchSpace:
        """The slice through ``origin`` spanned by ``directions`` [k, n] (orthonormalised)."""
        directions = np.atleast_2d(np.asarray(directions, dtype=np.float64))
        if directions.shape[1] != len(origin) or directions.shape[0] > directions.shape[1]:
            raise UsageError(f"directions of shape {directions.shape} do not span a subspace "
                             f"of the {len(origin)}-dimensional latent space")
        q, r = np.linalg.qr(directions.T)
        if np.min(np.abs(np.diag(r))) < 1e-8:
            raise UsageError("the directions are linearly dependent; give independent ones")
        return cls(np.asarray(origin, dtype=np.float64), q.T * np.sign(np.diag(r))[:, None])


@torch.no_grad()
def principal_directions(generator: nn.Module, k: int, num_samples: int = 4096,
                         seed: int = 0) -> np.ndarray:
    """GANSpace: k latent directions [k, n] along which the generator's features vary most.

    Samples z ~ N(0, I) with uniform classes, takes the generator's first-layer
    features h = fc([z, onehot]), finds their top-k principal components, and
    regresses z on the components' scores; the regression's rows, orthonormalised,
    are the directions (strongest first).
    """
    if not 1 <= k <= generator.latent_dim:
        raise UsageError(f"k={k} must lie in 1..{generator.latent_dim} (the latent size)")
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(num_samples, generator.latent_dim, generator=rng)
    labels = torch.randint(generator.num_classes, (num_samples,), generator=rng)
    features = generator.fc(torch.cat([z, F.one_hot(labels, generator.num_classes).float()], 1))
    centred = features - features.mean(0)
    _, _, components = torch.linalg.svd(centred, full_matrices=False)   # [F', F]
    scores = centred @ components[:k].T                                  # [N, k]
    directions = torch.linalg.lstsq(scores, z).solution                  # [k, n]
    return SearchSpace.subspace(np.zeros(generator.latent_dim), directions.double().numpy()).basis
