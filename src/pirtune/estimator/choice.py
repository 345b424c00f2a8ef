"""A choice model of the web app's picks: a utility per image, fitted by Plackett–Luce.

In a round the page shows the current image in the middle and four
candidates around it; only the candidates can be picked (the current image
is context, not an option), so each answered round is one choice among four.
The model gives every image a utility u(x) (the estimator's backbone with a
scalar head) and the Plackett–Luce likelihood of the pick: the picked image
comes first,

    P(pick i | round) = exp(u_i) / Σ_j exp(u_j),   j over the four candidates,

which for two images is Bradley–Terry, σ(u_i − u_j). Training minimises the
negative log-likelihood over the logged rounds (``choice_nll``).

A person may also answer "these look the same" (``pirtune.search.feedback``):
a tie of all four. The model takes it as Davidson's tie term carried to
Plackett–Luce (the Davidson–Luce model of Firth, Kosmidis and Turner, 2019,
for a tie of the whole set): with π = exp(u) and a learned tie parameter
θ = log δ,

    P(same)   = δ·(Π_j π_j)^{1/4} / D,   P(pick i) = π_i / D,
    D = Σ_j π_j + δ·(Π_j π_j)^{1/4},

a softmax over five logits, the four utilities and θ + mean_j u_j. By the
inequality of arithmetic and geometric means "same" is likeliest when the
four utilities are equal, at δ/(4 + δ), and falls as they spread: the
just-noticeable difference of a person, as a smooth likelihood. The
held-out report and the temperature fit score the rounds with a pick.

The frozen form (``FrozenChoiceModel``) is used wherever a frozen PIR
estimator is (tuning, evaluation). Its reward is on PIR's scale [0, 1]:

    R(x) = mean_m σ(u(x) − u(y_m)),   y_m the images people judged,

the model's probability that a person prefers x to an image drawn at random
from those the log shows, in a Bradley–Terry comparison of the two. 0.5 is an
image as good as a typical judged one. It is differentiable in the image.

A network trained on a few hundred noisy picks is overconfident, so the stage
that fits it also fits a temperature on the held-out rounds
(``pirtune.estimator.calibration``): the frozen model's utilities are s·u, and
its reward uses them, so its probabilities (and the size of the change it
predicts) are on the people's scale, not the network's.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pirtune.data.pir_dataset import read_pir_dataset
from pirtune.errors import UsageError
from pirtune.estimator.frozen import FrozenPIREstimator, estimate_pir, to_unit_float
from pirtune.estimator.module import PAPER_LR
from pirtune.search.feedback import SAME_CODE, Feedback

OptimizerFactory = Callable[..., torch.optim.Optimizer]
CHOICES = 4            # candidates per round (the page's four)
ROUNDS_NAME = "rounds.csv"   # written by pirtune.webapp.export beside pir.csv
REFERENCE_MAX = 4096   # judged images kept as the reward's reference set


def choice_nll(utilities: torch.Tensor, picked: torch.Tensor,
               tie: torch.Tensor | float | None = None) -> torch.Tensor:
    """Mean negative log-likelihood of the answers: Plackett–Luce, with a Davidson tie term.

    Args:
        utilities: [B, K] utilities of each round's K candidates.
        picked: [B] the picked candidate's index, or ``SAME_CODE`` (−1) for "same".
        tie: θ = log δ, the tie parameter (module docstring); ``None``: no tie term,
            and every answer must be a pick.

    Returns:
        Scalar: −mean log P(answer): without a tie term log(exp(u_picked) / Σ_j exp(u_j)).
    """
    same = picked == SAME_CODE
    if tie is None:
        if bool(same.any()):
            raise UsageError('"same" answers need the tie term: pass choice_nll a tie '
                             "parameter (ChoiceModule.tie)")
        return F.cross_entropy(utilities, picked)
    tie = torch.as_tensor(tie, dtype=utilities.dtype, device=utilities.device)
    alike = tie + utilities.mean(dim=1, keepdim=True)                   # [B, 1]
    logits = torch.cat([utilities, alike], dim=1)                       # [B, K + 1]
    return F.cross_entropy(logits, torch.where(same, utilities.shape[1], picked))


def pick_accuracy(scores: torch.Tensor, picked: torch.Tensor) -> float:
    """The share of rounds whose pick has the highest score, ties shared.

    A round whose highest score is shared by m candidates, the pick among
    them, counts 1/m: the expected accuracy when ties are broken at random
    (a binned estimator at temperature 0.01 ties often). Chance is 1/K.
    Rounds answered "same" (``SAME_CODE``) pick nothing and are left out.

    Args:
        scores: [R, K] each round's candidates' scores.
        picked: [R] the picked candidate's index (or ``SAME_CODE``).
    """
    scores, picked = scores[picked != SAME_CODE], picked[picked != SAME_CODE]
    if len(scores) == 0:
        return math.nan
    best = scores == scores.max(1, keepdim=True).values               # [R, K]
    hit = best.gather(1, picked[:, None]).squeeze(1).double()         # [R]
    return float((hit / best.sum(1)).mean())


class ChoiceNetwork(nn.Module):
    """The estimator's backbone with a scalar utility head: images → u [B].

    ``network`` is what ``estimator.network`` builds (a ``PIREstimator``) with
    ``bins=2``; u is the difference of its two logits, a linear scalar head on
    the backbone's features for every backbone the PIR estimator offers.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        if getattr(network, "bins", None) != 2:
            raise UsageError("the choice model's network needs two outputs; build it from "
                             "estimator.network with bins=2 (ChoiceNetwork.from_config)")
        self.network = network
        self.bins = 2

    @classmethod
    def from_config(cls, network_cfg: Any) -> ChoiceNetwork:
        """The utility network from ``estimator.network`` (its bins set to 2)."""
        return cls(instantiate(network_cfg, bins=2))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images float [B, 3, H, W] in [0, 1] → utilities [B]."""
        logits = self.network(images)                                  # [B, 2]
        return logits[:, 1] - logits[:, 0]


@dataclass(frozen=True)
class ChoiceRounds:
    """Answered rounds of the web app: the candidates shown and the pick.

    Attributes:
        images: uint8 [N, 3, H, W], every image shown in an answered round.
        image_ids: [N] their ids in the export.
        slots: int64 [R, 4], each round's candidates as rows of ``images``.
        picked: int64 [R], the answer: the picked slot (0–3), or ``SAME_CODE`` (−1)
            for "these look the same".
        sessions: [R] each round's session id.
    """

    images: torch.Tensor
    image_ids: list[str]
    slots: torch.Tensor
    picked: torch.Tensor
    sessions: list[str]

    def __len__(self) -> int:
        return len(self.picked)

    @property
    def same(self) -> torch.Tensor:
        """bool [R]: the rounds answered "these look the same"."""
        return self.picked == SAME_CODE

    def picks(self) -> ChoiceRounds:
        """The rounds answered with a pick."""
        return self.subset(torch.nonzero(~self.same).flatten())

    def subset(self, rows: torch.Tensor) -> ChoiceRounds:
        """The rounds at ``rows`` (the images stay all)."""
        return ChoiceRounds(self.images, self.image_ids, self.slots[rows], self.picked[rows],
                            [self.sessions[int(i)] for i in rows])

    def split(self, val_fraction: float, seed: int) -> tuple[ChoiceRounds, ChoiceRounds]:
        """(training, held-out) rounds, split by session: a held-out person is unseen.

        ``round(val_fraction · sessions)`` sessions are held out, at least one
        when there are two or more sessions, never all; with one session
        nothing is held out.
        """
        names = sorted(set(self.sessions))
        order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed))
        count = min(len(names) - 1, max(int(val_fraction > 0), round(val_fraction * len(names))))
        held = {names[int(i)] for i in order[:count]}
        mask = torch.tensor([s in held for s in self.sessions], dtype=torch.bool)
        return (self.subset(torch.nonzero(~mask).flatten()),
                self.subset(torch.nonzero(mask).flatten()))


def read_choice_rounds(root: str | Path) -> ChoiceRounds:
    """The answered rounds of an interaction export (``pirtune-export``'s folder)."""
    root = Path(root)
    table = root / ROUNDS_NAME
    if not table.is_file():
        raise UsageError(f"{root} has no {ROUNDS_NAME}: it was exported before rounds were "
                         "kept, or is not the web app's; export the log again "
                         "(pirtune-export, or data.path=<the .db>)")
    records = read_pir_dataset(root)
    index = {image_id: i for i, image_id in enumerate(records.image_ids)}
    slots, picked, sessions = [], [], []
    with table.open() as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                slots.append([index[row[f"slot{k}"]] for k in range(CHOICES)])
                picked.append(Feedback.from_export(row["picked"] or "").to_code())
            except (KeyError, UsageError) as err:
                raise UsageError(f"{table}, line {line}: {err} is not an image of the "
                                 "export or an answer (0–3 or same); export the log "
                                 "again") from err
            sessions.append(row["session_id"])
    if not picked:
        raise UsageError(f"{table} holds no answered rounds; let people pick first")
    return ChoiceRounds(records.images, records.image_ids, torch.tensor(slots),
                        torch.tensor(picked), sessions)


@torch.no_grad()
def round_scores(score: Callable[[torch.Tensor], torch.Tensor], rounds: ChoiceRounds,
                 batch_size: int = 256) -> torch.Tensor:
    """Every round's candidates scored: [R, 4]; ``score`` maps images in [0, 1] to [B]."""
    used = torch.unique(rounds.slots)
    values = torch.empty(len(rounds.images))
    for i in range(0, len(used), batch_size):
        rows = used[i:i + batch_size]
        values[rows] = score(to_unit_float(rounds.images[rows])).float().cpu()
    return values[rounds.slots]


class ChoiceModule(L.LightningModule):
    """Trains a ``ChoiceNetwork`` on batches of (candidates uint8 [B, 4, 3, H, W], answer [B]).

    Logs ``estimate/train/loss`` (``choice_nll`` with the tie term) and per
    validation epoch ``estimate/val/loss`` and ``estimate/val/pick_accuracy``.

    Args:
        network: images → utilities [B].
        optimizer: partial optimizer factory; default Adam with lr 5e-4 (as C.3's estimator).
        tie: the tie parameter's start, θ = log δ (0: "same" has probability 1/5 among
            four equal candidates); it is learned with the network. ``None``: no tie term
            (data without "same" answers), so the likelihood, the parameters and the
            checkpoints are exactly the Plackett–Luce model's of logs before "same" existed.
    """

    def __init__(self, network: ChoiceNetwork, optimizer: OptimizerFactory | None = None,
                 tie: float | None = 0.0) -> None:
        super().__init__()
        self.network = network
        # θ = log δ, the tie term
        self.tie = None if tie is None else nn.Parameter(torch.tensor(float(tie)))
        self.optimizer = optimizer or partial(torch.optim.Adam, lr=PAPER_LR)

    def forward(self, candidates: torch.Tensor) -> torch.Tensor:
        """Candidates [B, K, 3, H, W] (uint8 or float in [0, 1]) → utilities [B, K]."""
        b, k = candidates.shape[:2]
        flat = to_unit_float(candidates.flatten(0, 1))                 # [B·K, 3, H, W]
        return self.network(flat).view(b, k)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer([*self.network.parameters(),
                               *([] if self.tie is None else [self.tie])])

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        candidates, picked = batch
        loss = choice_nll(self(candidates), picked, self.tie)
        self.log("estimate/train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        candidates, picked = batch
        utilities = self(candidates)
        self.log("estimate/val/loss", choice_nll(utilities, picked, self.tie), on_epoch=True)
        self.log("estimate/val/pick_accuracy", pick_accuracy(utilities, picked), on_epoch=True,
                 batch_size=len(picked))


def choice_loader(rounds: ChoiceRounds, batch_size: int, shuffle: bool,
                  seed: int = 0) -> DataLoader:
    """Batches of (candidates [B, 4, 3, H, W] uint8, pick [B])."""
    data = TensorDataset(rounds.images[rounds.slots], rounds.picked)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle,
                      generator=torch.Generator().manual_seed(seed) if shuffle else None)


class FrozenChoiceModel(FrozenPIREstimator):
    """The choice model as used to score and steer: R(x) = mean_m σ(u(x) − u(y_m)) in [0, 1].

    See the module docstring for the scale. No trainable weights, always in
    eval mode; gradients flow to the input images.

    Args:
        network: the trained ``ChoiceNetwork``.
        reference: utilities [M] of the images people judged, as the network gives them.
        config: the ``estimator.network`` config that built its backbone.
        scale: the temperature factor s fitted on held-out rounds
            (``pirtune.estimator.calibration``): every utility this model gives,
            and so its reward, is s times the network's. 1.0: uncalibrated.
    """

    def __init__(self, network: ChoiceNetwork, reference: torch.Tensor,
                 config: dict[str, Any] | None = None, scale: float = 1.0) -> None:
        super().__init__(network, temperature=1.0, config=config)
        if reference.ndim != 1 or len(reference) == 0:
            raise UsageError("the choice model's reward needs the utilities of at least one "
                             "judged image")
        if not (math.isfinite(scale) and scale > 0):
            raise UsageError(f"the choice model's scale {scale} must be a positive number; "
                             "fit it with pirtune.estimator.calibration.calibrate")
        self.register_buffer("reference", reference.detach().float().clone())
        self.scale = float(scale)

    def utilities(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] (or uint8) → calibrated utilities s·u [B]."""
        return self.network(to_unit_float(images)) * self.scale

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] (or uint8) → reward [B] in [0, 1]."""
        u = self.utilities(images)                                     # [B]
        reference = self.reference * self.scale                        # [M]
        return torch.sigmoid(u[:, None] - reference[None, :]).mean(1)  # [B, M] -> [B]


def reference_utilities(network: ChoiceNetwork, images: torch.Tensor,
                        seed: int = 0) -> torch.Tensor:
    """Utilities of the judged images (at most ``REFERENCE_MAX``, drawn with ``seed``)."""
    if len(images) > REFERENCE_MAX:
        rows = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
        images = images[rows[:REFERENCE_MAX]]
    was = network.training
    network.eval()
    with torch.no_grad():
        values = torch.cat([network(to_unit_float(images[i:i + 256]))
                            for i in range(0, len(images), 256)])
    network.train(was)
    return values.cpu()


def fit_choice_model(network_cfg: Any, train: ChoiceRounds, held_out: ChoiceRounds,
                     epochs: int, batch_size: int, seed: int,
                     optimizer: OptimizerFactory | None = None,
                     trainer: L.Trainer | None = None,
                     ckpt_path: str | None = None,
                     reference: ChoiceRounds | None = None,
                     restore_best: bool = False) -> tuple[ChoiceModule, FrozenChoiceModel]:
    """Train a choice model on ``train``, validating on ``held_out`` (if any rounds).

    Returns the module and its frozen form, whose reward's reference is every
    judged image of ``reference`` (default ``train``). With ``restore_best`` the
    weights of the trainer's best checkpoint (its ``ModelCheckpoint`` monitoring
    the validation loss) are the ones kept: early stopping on ``held_out``.
    """
    L.seed_everything(seed, workers=True, verbose=False)
    # The tie term only where someone answered "same": a log of picks alone trains the
    # plain Plackett–Luce model, as before "same" existed.
    same = bool((train.picked == SAME_CODE).any()) or bool((held_out.picked == SAME_CODE).any())
    module = ChoiceModule(ChoiceNetwork.from_config(network_cfg), optimizer,
                          tie=0.0 if same else None)
    fit = trainer or L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False,
                               enable_progress_bar=False, enable_model_summary=False,
                               accelerator="cpu")
    validation = (choice_loader(held_out, batch_size, shuffle=False) if len(held_out)
                  else None)
    fit.fit(module, train_dataloaders=choice_loader(train, batch_size, True, seed),
            val_dataloaders=validation, ckpt_path=ckpt_path)
    best = getattr(fit.checkpoint_callback, "best_model_path", "") if restore_best else ""
    if best:
        saved = torch.load(best, map_location="cpu", weights_only=False)   # our own checkpoint
        module.load_state_dict(saved["state_dict"])
    module = module.cpu()
    reference = train if reference is None else reference
    judged = reference.images[torch.unique(reference.slots)]
    frozen = FrozenChoiceModel(module.network, reference_utilities(module.network, judged, seed),
                               config=None)
    return module, frozen


@dataclass(frozen=True)
class ChoiceReport:
    """How well a model predicts the picks of held-out rounds.

    Attributes:
        rounds: rounds scored.
        sessions: their sessions.
        pick_accuracy: share of rounds whose pick scored highest (ties shared); chance 0.25.
        nll: mean Plackett–Luce negative log-likelihood (NaN for models with no utility).
        Both over the rounds answered with a pick; ``rounds`` counts every round.
        held_out: whether the rounds were held out of training.
    """

    rounds: int
    sessions: int
    pick_accuracy: float
    nll: float
    held_out: bool
    chance: float = 1 / CHOICES


def choice_report(model: FrozenPIREstimator, rounds: ChoiceRounds, held_out: bool) -> ChoiceReport:
    """Score ``rounds`` with any frozen model: a choice model's utilities, else its PIR."""
    if isinstance(model, FrozenChoiceModel):
        utilities = round_scores(model.utilities, rounds)
        picks = rounds.picked != SAME_CODE
        nll = (float(choice_nll(utilities[picks], rounds.picked[picks])) if bool(picks.any())
               else math.nan)
        scores = utilities
    else:
        scores = round_scores(lambda x: estimate_pir(model, x), rounds)
        nll = math.nan
    return ChoiceReport(len(rounds), len(set(rounds.sessions)),
                        pick_accuracy(scores, rounds.picked), nll, held_out)

