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


class PrincipalDirections:
    """GANSpace (Härkönen et al. 2020): the latent directions along which a generator's
    first-layer features vary most, for any number of them from one PCA.

    Samples z ~ N(0, I) with uniform classes, takes the generator's first-layer
    features h (``generator.features``: the ACGAN's fc([z, onehot])) and their
    principal components (one SVD, the
    costly part); ``directions(k)`` regresses z on the top-k components' scores,
    and the regression's rows, orthonormalised, are the directions (strongest
    first). A server computes it once and serves every session's k from it.
    """

    @torch.no_grad()
    def __init__(self, generator: nn.Module, num_samples: int = 4096, seed: int = 0) -> None:
        self.latent_dim = generator.latent_dim
        rng = torch.Generator().manual_seed(seed)
        self._z = torch.randn(num_samples, generator.latent_dim, generator=rng)
        labels = torch.randint(generator.num_classes, (num_samples,), generator=rng)
        features = generator.features(self._z, labels)  # pirtune.models.protocol
        self._centred = features - features.mean(0)
        _, _, self._components = torch.linalg.svd(self._centred, full_matrices=False)  # [F', F]

    def directions(self, k: int) -> np.ndarray:
        """The k strongest directions [k, n], orthonormal."""
        if not 1 <= k <= self.latent_dim:
            raise UsageError(f"k={k} must lie in 1..{self.latent_dim} (the latent size)")
        scores = self._centred @ self._components[:k].T                       # [N, k]
        directions = torch.linalg.lstsq(scores, self._z).solution              # [k, n]
        return SearchSpace.subspace(np.zeros(self.latent_dim),
                                    directions.double().numpy()).basis


def principal_directions(generator: nn.Module, k: int, num_samples: int = 4096,
                         seed: int = 0) -> np.ndarray:
    """GANSpace: k latent directions [k, n] (see ``PrincipalDirections``)."""
    if not 1 <= k <= generator.latent_dim:  # before the costly PCA
        raise UsageError(f"k={k} must lie in 1..{generator.latent_dim} (the latent size)")
    return PrincipalDirections(generator, num_samples, seed).directions(k)
