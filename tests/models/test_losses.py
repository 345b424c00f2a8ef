"""ACGAN losses against an independent computation of the paper's formulas."""

import math

import pytest
import torch

from pirtune.models.losses import discriminator_loss, generator_loss


def _p_real(a: float) -> float:
    # C.2: the source head ends in tanh; its value s in (-1, 1) is read as P(real) = (1 + s) / 2.
    return (1 + math.tanh(a)) / 2


def _ce(logits: list[float], label: int) -> float:
    return -(logits[label] - math.log(sum(math.exp(v) for v in logits)))


def test_discriminator_loss_matches_the_formula():
    real, fake = [0.3, -1.2], [0.7, -0.1]
    logits, labels = [[2.0, -1.0], [0.5, 0.25]], [0, 1]
    loss = discriminator_loss(torch.tensor(real), torch.tensor(fake), torch.tensor(logits),
                              torch.tensor(labels), w_real_class=1.0)
    l_real = sum(math.log(_p_real(a)) for a in real) / 2
    l_fake = sum(math.log(1 - _p_real(a)) for a in fake) / 2
    l_class = -sum(_ce(lg, y) for lg, y in zip(logits, labels, strict=True)) / 2
    assert loss.total.item() == pytest.approx(-(l_real + l_fake + l_class), rel=1e-6)
    assert loss.real.item() == pytest.approx(-l_real, rel=1e-6)


def test_generator_loss_weights_the_class_term():
    fake, logits, labels = [0.4, -0.9], [[0.1, 0.2], [1.0, -2.0]], [1, 0]
    loss = generator_loss(torch.tensor(fake), torch.tensor(logits), torch.tensor(labels),
                          w_fake_class=1.5)
    fools = sum(math.log(_p_real(a)) for a in fake) / 2
    l_class = -sum(_ce(lg, y) for lg, y in zip(logits, labels, strict=True)) / 2
    assert loss.total.item() == pytest.approx(-(fools + 1.5 * l_class), rel=1e-6)
    assert loss.fake_class.item() == pytest.approx(-l_class, rel=1e-6)


def test_extreme_scores_stay_finite():
    big = torch.tensor([80.0, -80.0])
    loss = discriminator_loss(big, big, torch.zeros(2, 2), torch.tensor([0, 1]))
    assert torch.isfinite(loss.total)


def test_twin_classifier_terms_match_tac_gan():
    # TAC-GAN (Gong et al. 2019): D adds the twin's CE on the fakes' intended classes;
    # G's class term is CE(classifier) − CE(twin).
    real, fake = [0.3, -1.2], [0.7, -0.1]
    logits, labels = [[2.0, -1.0], [0.5, 0.25]], [0, 1]
    twin, fake_labels = [[0.2, 1.1], [-0.4, 0.9]], [1, 0]
    d = discriminator_loss(torch.tensor(real), torch.tensor(fake), torch.tensor(logits),
                           torch.tensor(labels), w_real_class=0.5,
                           fake_twin_logits=torch.tensor(twin),
                           fake_labels=torch.tensor(fake_labels))
    plain = discriminator_loss(torch.tensor(real), torch.tensor(fake), torch.tensor(logits),
                               torch.tensor(labels), w_real_class=0.5)
    twin_ce = sum(_ce(lg, y) for lg, y in zip(twin, fake_labels, strict=True)) / 2
    assert d.fake_twin.item() == pytest.approx(twin_ce, rel=1e-6)
    assert d.total.item() == pytest.approx(plain.total.item() + 0.5 * twin_ce, rel=1e-6)

    g = generator_loss(torch.tensor(fake), torch.tensor(logits), torch.tensor(fake_labels),
                       w_fake_class=1.5, fake_twin_logits=torch.tensor(twin))
    fools = sum(math.log(_p_real(a)) for a in fake) / 2
    class_ce = sum(_ce(lg, y) for lg, y in zip(logits, fake_labels, strict=True)) / 2
    assert g.fake_class.item() == pytest.approx(class_ce - twin_ce, rel=1e-6)
    assert g.total.item() == pytest.approx(-fools + 1.5 * (class_ce - twin_ce), rel=1e-6)
