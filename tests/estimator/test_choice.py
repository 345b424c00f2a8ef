"""The choice model: its likelihood, pick accuracy, rounds, training and frozen reward."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from pirtune.data.pir_dataset import write_pir_dataset
from pirtune.errors import UsageError
from pirtune.estimator.choice import (
    ChoiceNetwork,
    ChoiceRounds,
    FrozenChoiceModel,
    choice_loader,
    choice_nll,
    choice_report,
    fit_choice_model,
    pick_accuracy,
    read_choice_rounds,
    round_scores,
)
from pirtune.estimator.files import load_estimator, save_choice_model
from pirtune.search.feedback import SAME_CODE

NETWORK = {"_target_": "pirtune.estimator.network.PIREstimator", "backbone": "small_cnn",
           "bins": 100, "resolution": 16, "pretrained": False}


def test_the_likelihood_is_plackett_luce_by_hand():
    u = torch.tensor([[1.0, 2.0, 0.0, -1.0], [0.5, 0.5, 0.5, 0.5]])
    picked = torch.tensor([1, 3])
    first = -math.log(math.exp(2) / (math.exp(1) + math.exp(2) + 1 + math.exp(-1)))
    second = -math.log(0.25)
    assert float(choice_nll(u, picked)) == pytest.approx((first + second) / 2, rel=1e-6)
    # Two candidates: Bradley–Terry, −log σ(u_i − u_j).
    pair = torch.tensor([[0.3, 1.1]])
    assert float(choice_nll(pair, torch.tensor([0]))) == pytest.approx(
        -math.log(1 / (1 + math.exp(-(0.3 - 1.1)))), rel=1e-6)


def test_pick_accuracy_shares_ties_like_a_count():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(200, 4)).astype(float)   # many ties
    picked = rng.integers(0, 4, size=200)
    expected = 0.0
    for row, pick in zip(scores, picked, strict=True):
        best = np.flatnonzero(row == row.max())
        expected += (pick in best) / len(best)
    assert pick_accuracy(torch.tensor(scores), torch.tensor(picked)) == pytest.approx(
        expected / 200, rel=1e-9)
    assert pick_accuracy(torch.tensor([[0.0, 1, 2, 3]]), torch.tensor([3])) == 1.0


def _rounds(n_rounds: int, sessions: int, seed: int = 0) -> ChoiceRounds:
    """Rounds of four flat-coloured 16 px images; the pick is the bluest."""
    gen = torch.Generator().manual_seed(seed)
    colours = torch.rand(4 * n_rounds, 3, generator=gen)
    images = (colours[:, :, None, None].expand(-1, 3, 16, 16) * 255).round().to(torch.uint8)
    slots = torch.arange(4 * n_rounds).view(n_rounds, 4)
    blue = colours[:, 2] - colours[:, :2].mean(1)
    picked = blue[slots].argmax(1)
    return ChoiceRounds(images.contiguous(), [f"i{i}" for i in range(4 * n_rounds)], slots,
                        picked, [f"s{r % sessions}" for r in range(n_rounds)])


def test_rounds_split_by_session():
    rounds = _rounds(40, sessions=5)
    train, held = rounds.split(0.4, seed=1)
    assert len(train) + len(held) == 40
    assert set(train.sessions).isdisjoint(held.sessions) and len(set(held.sessions)) == 2
    assert torch.equal(held.picked, rounds.picked[[s in set(held.sessions)
                                                   for s in rounds.sessions]])
    alone, nothing = _rounds(8, sessions=1).split(0.4, seed=1)
    assert len(alone) == 8 and len(nothing) == 0


def test_training_moves_the_backbone_and_learns_the_picks():
    rounds = _rounds(96, sessions=8)
    train, held = rounds.split(0.25, seed=0)
    start = ChoiceNetwork.from_config(NETWORK)
    before = {k: v.clone() for k, v in start.state_dict().items()}
    torch.manual_seed(0)
    nll_before = float(choice_nll(round_scores(
        lambda x: start.eval()(x), train), train.picked))
    module, frozen = fit_choice_model(NETWORK, train, held, epochs=6, batch_size=8, seed=0,
                                      optimizer=lambda p: torch.optim.Adam(p, lr=3e-3))
    moved = [k for k, v in module.network.state_dict().items()
             if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any("backbone.0.0.weight" in k for k in moved)
    report = choice_report(frozen, train, held_out=False)
    assert report.nll < nll_before
    assert choice_report(frozen, held, held_out=True).pick_accuracy > 0.5   # chance: 0.25
    # The frozen model's weights do not train further with the module.
    assert not any(p.requires_grad for p in frozen.parameters())


class _Mean(nn.Module):
    """Two 'logits' from the mean pixel: u = 3·mean − 1."""

    bins = 2

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        m = images.mean((1, 2, 3))
        return torch.stack([torch.full_like(m, 1.0), 3 * m], 1)   # u = 3m − 1


def test_the_frozen_reward_is_the_chance_of_beating_a_judged_image(tmp_path):
    reference = torch.tensor([-1.0, 0.0, 0.5, 2.0])
    frozen = FrozenChoiceModel(ChoiceNetwork(_Mean()), reference)
    images = torch.stack([torch.full((3, 4, 4), v) for v in (0.0, 0.5, 1.0)])
    u = 3 * np.array([0.0, 0.5, 1.0]) - 1
    expected = (1 / (1 + np.exp(-(u[:, None] - reference.numpy()[None, :])))).mean(1)
    torch.testing.assert_close(frozen(images), torch.tensor(expected, dtype=torch.float32))
    torch.testing.assert_close(frozen.utilities(images), torch.tensor(u, dtype=torch.float32))


def test_a_fitted_scale_multiplies_utilities_and_the_reward_uses_them():
    reference = torch.tensor([-1.0, 0.0, 0.5, 2.0])
    frozen = FrozenChoiceModel(ChoiceNetwork(_Mean()), reference, scale=0.2)
    images = torch.stack([torch.full((3, 4, 4), v) for v in (0.0, 0.5, 1.0)])
    u = 0.2 * (3 * np.array([0.0, 0.5, 1.0]) - 1)
    expected = (1 / (1 + np.exp(-(u[:, None] - 0.2 * reference.numpy()[None, :])))).mean(1)
    torch.testing.assert_close(frozen.utilities(images), torch.tensor(u, dtype=torch.float32))
    torch.testing.assert_close(frozen(images), torch.tensor(expected, dtype=torch.float32))
    with pytest.raises(UsageError, match="scale"):
        FrozenChoiceModel(ChoiceNetwork(_Mean()), reference, scale=float("nan"))


def test_save_and_load_give_the_same_reward(tmp_path):
    network = ChoiceNetwork.from_config(NETWORK).eval()
    frozen = FrozenChoiceModel(network, torch.tensor([0.1, -0.3]), config=NETWORK, scale=0.37)
    path = save_choice_model(frozen, NETWORK, tmp_path / "estimator.pt")
    again = load_estimator(path)
    assert isinstance(again, FrozenChoiceModel)
    assert again.scale == pytest.approx(0.37)
    images = torch.rand(3, 3, 16, 16)
    torch.testing.assert_close(again(images), frozen(images))


def test_reading_rounds_from_an_export(tmp_path):
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    write_pir_dataset(tmp_path / "old", images, 0, 1, 0)
    with pytest.raises(UsageError, match=re.escape(f"{tmp_path / 'old'} has no rounds.csv")):
        read_choice_rounds(tmp_path / "old")
    folder = tmp_path / "new"
    folder.mkdir()
    (folder / "rounds.csv").write_text(
        "session_id,round,generator,slot0,slot1,slot2,slot3,picked\n"
        "a,1,,img_000000,img_000001,img_000002,img_000003,2\n"
        "a,2,,img_000002,img_000004,img_000001,img_000000,0\n")
    write_pir_dataset(folder, images, 0, 1, 0)
    rounds = read_choice_rounds(folder)
    assert rounds.slots.tolist() == [[0, 1, 2, 3], [2, 4, 1, 0]]
    assert rounds.picked.tolist() == [2, 0] and rounds.sessions == ["a", "a"]


def test_the_tie_term_is_davidson_luce_by_hand():
    """P(same) = δ·(Π π)^{1/4} / (Σ π + δ·(Π π)^{1/4}) and P(pick i) = π_i / (the same sum),
    computed from the π = exp(u) themselves."""
    u = np.array([[1.0, 2.0, 0.0, -1.0], [0.5, 0.5, 0.5, 0.5], [0.3, -0.2, 1.4, 0.0]])
    theta = -0.7
    delta = math.exp(theta)
    nll = []
    for row, answer in zip(u, ["same", "same", 2], strict=True):
        pi = np.exp(row)
        alike = delta * np.prod(pi) ** 0.25
        total = pi.sum() + alike
        nll.append(-math.log((alike if answer == "same" else pi[answer]) / total))
    picked = torch.tensor([SAME_CODE, SAME_CODE, 2])
    assert float(choice_nll(torch.tensor(u), picked, theta)) == pytest.approx(
        np.mean(nll), rel=1e-9)
    # Equal utilities: "same" at δ/(4 + δ), its largest; a spread makes it less likely.
    assert math.exp(-nll[1]) == pytest.approx(delta / (4 + delta), rel=1e-12)
    assert math.exp(-nll[0]) < delta / (4 + delta)
    with pytest.raises(UsageError, match="need the tie term"):
        choice_nll(torch.tensor(u), picked)


def test_training_learns_the_tie_and_scores_picks_only():
    """A third of the rounds answered "same" (in every session): the tie parameter moves,
    and the pick accuracy counts the rounds with a pick."""
    rounds = _rounds(96, sessions=8)
    picked = rounds.picked.clone()
    picked[::3] = SAME_CODE
    rounds = ChoiceRounds(rounds.images, rounds.image_ids, rounds.slots, picked, rounds.sessions)
    assert int(rounds.same.sum()) == 32 and len(rounds.picks()) == 64
    train, held = rounds.split(0.25, seed=0)
    module, frozen = fit_choice_model(NETWORK, train, held, epochs=3, batch_size=8, seed=0,
                                      optimizer=lambda p: torch.optim.Adam(p, lr=3e-3))
    assert float(module.tie.detach()) != 0.0
    report = choice_report(frozen, held, held_out=True)
    assert report.rounds == len(held) and math.isfinite(report.nll)
    assert bool(held.same.any()) and not bool(held.same.all())
    scores = round_scores(frozen.utilities, held)
    assert report.pick_accuracy == pick_accuracy(scores[~held.same], held.picked[~held.same])


def test_picks_alone_train_the_plain_plackett_luce_model():
    """A log without "same" trains no tie parameter: the same parameters, the same loss and
    the same checkpoint keys as before "same" existed."""
    rounds = _rounds(48, sessions=4)
    train, held = rounds.split(0.25, seed=0)
    module, _ = fit_choice_model(NETWORK, train, held, epochs=1, batch_size=8, seed=0)
    assert module.tie is None
    assert not any(key.startswith("tie") for key in module.state_dict())
    candidates, picked = next(iter(choice_loader(train, 8, shuffle=False)))
    with torch.no_grad():
        utilities = module(candidates)
        torch.testing.assert_close(choice_nll(utilities, picked, module.tie),
                                   nn.functional.cross_entropy(utilities, picked))


def test_reading_same_from_an_export(tmp_path):
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    write_pir_dataset(tmp_path, images, 0, 1, 0)
    (tmp_path / "rounds.csv").write_text(
        "session_id,round,generator,prior,slot0,slot1,slot2,slot3,picked\n"
        "a,1,,,img_000000,img_000001,img_000002,img_000003,same\n"
        "a,2,,,img_000002,img_000004,img_000001,img_000000,1\n")
    rounds = read_choice_rounds(tmp_path)
    assert rounds.picked.tolist() == [SAME_CODE, 1] and rounds.same.tolist() == [True, False]
    (tmp_path / "rounds.csv").write_text(
        "session_id,round,generator,prior,slot0,slot1,slot2,slot3,picked\n"
        "a,1,,,img_000000,img_000001,img_000002,img_000003,\n")
    with pytest.raises(UsageError, match="line 2: .* an answer \\(0–3 or same\\)"):
        read_choice_rounds(tmp_path)
