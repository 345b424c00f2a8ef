"""The reward a tuning method climbs: the frozen estimator's, as a small object."""

from __future__ import annotations

import torch
from torch import nn

from pirtune.errors import UsageError
from pirtune.estimator.ensemble import FrozenPIREnsemble, conservative_reward, members_of
from pirtune.estimator.frozen import FrozenPIREstimator

REWARDS = ("mean", "conservative")


class Reward(nn.Module):
    """The estimate of images, or an ensemble's conservative lower bound (tune.reward).

    Args:
        estimator: the frozen estimator; tuning never changes it.
        kind: ``"mean"`` (the estimate; an ensemble's mean) or ``"conservative"``
            (an ensemble's mean − ``lam``·SD, Coste et al. 2024).
        lam: λ of the conservative reward.
    """

    def __init__(self, estimator: FrozenPIREstimator, kind: str = "mean",
                 lam: float = 1.0) -> None:
        super().__init__()
        check_reward(kind, estimator)
        self.estimator = estimator
        self.kind = kind
        self.lam = lam

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The reward [B] and the members' estimates [K, B] of images in [0, 1]."""
        members = members_of(self.estimator, images)
        if self.kind == "conservative":
            return conservative_reward(members, self.lam), members
        return members.mean(0), members


def check_reward(kind: str, estimator: FrozenPIREstimator | None = None) -> None:
    """Refuse an unknown reward, or a conservative one without an ensemble."""
    if kind not in REWARDS:
        raise UsageError(f"tune.reward={kind!r} is unknown; choose mean or conservative")
    if (kind == "conservative" and estimator is not None
            and not isinstance(estimator, FrozenPIREnsemble)):
        raise UsageError("tune.reward=conservative needs an ensemble; estimate with "
                         "estimator.members=3 (or more), or use tune.reward=mean")
