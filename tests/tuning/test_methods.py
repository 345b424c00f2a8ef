"""The tuning methods behind tune.method: what each may and must not change, and its bundle."""

from __future__ import annotations

import pytest
import torch

from pirtune.compose import settings
from pirtune.errors import UsageError
from pirtune.estimator.files import load_estimator, read_estimator_file
from pirtune.models.bundle import (
    LatentPrior,
    Sampler,
    Selector,
    draw_latents,
    load_bundle,
    load_sampler,
    render,
)
from pirtune.tuning import build_method
from pirtune.tuning.distill import (
    DistillModule,
    beta_for_share,
    ess_share,
    tilt_weights,
)
from pirtune.tuning.latent import LatentPriorModule

# -- select --------------------------------------------------------------------------

def test_select_keeps_only_images_the_generator_draws_and_the_best_of_them(
        tune_copy, tiny_generator):
    out = tune_copy("tune=select",
                 "tune.method.calibration=40", "tune.method.acceptance=0.25")
    sampler, meta = load_sampler(out)
    generator, _, _ = load_bundle(tiny_generator)
    assert sampler.method == "select" and meta["sampler"]["seconds_per_image"] > 0
    # G's weights are the start's, exactly.
    for key, value in generator.state_dict().items():
        torch.testing.assert_close(sampler.generator.state_dict()[key], value, rtol=0, atol=0)
    labels = torch.arange(40) % 2
    z = draw_latents(sampler, labels, torch.Generator().manual_seed(3))
    images = render(sampler, z, labels)
    # Pixel-equal to G on the chosen latents: every image is one G draws.
    torch.testing.assert_close(images, render(generator, z, labels), rtol=0, atol=0)
    # Each kept draw reaches its class's threshold, and the kept draws beat plain ones.
    scores = sampler.selector.scores(generator, z, labels)
    assert bool((scores >= sampler.selector.thresholds[labels]).all())
    plain = torch.randn(400, generator.latent_dim, generator=torch.Generator().manual_seed(4))
    plain_labels = torch.arange(400) % 2
    assert scores.mean() > sampler.selector.scores(generator, plain, plain_labels).mean()
    # The same seed gives the same draws.
    torch.testing.assert_close(draw_latents(sampler, labels, torch.Generator().manual_seed(3)), z)


def test_select_keeps_the_asked_share_when_estimates_tie(tiny_generator, estimated):
    """An estimate at temperature 0.01 takes few values: ties at the threshold are kept
    only as often as the acceptance rate asks."""

    class Tied(Selector):
        drawn = 0

        def judge(self, generator, z, labels):
            self.drawn += len(z)
            return (z[:, 0] > 0.5).float(), None   # 1 for about 31 % of draws, else 0

    generator, _, _ = load_bundle(tiny_generator)
    selector = Tied(read_estimator_file(estimated / "estimator.pt"), acceptance=0.1)
    selector.calibrate(generator, 4000, seed=0)
    assert selector.thresholds.tolist() == [1.0, 1.0]
    assert selector.tie_shares.tolist() == pytest.approx([0.1 / 0.31] * 2, abs=0.03)
    selector.drawn = 0
    labels = torch.arange(300) % 2
    z = selector.choose(generator, labels, torch.Generator().manual_seed(1))
    assert bool((z[:, 0] > 0.5).all())
    # 300 kept of about 3,000 drawn (accepting every tie would draw about 970).
    assert 300 / selector.drawn == pytest.approx(0.1, abs=0.02)


def test_select_softmax_rule_picks_by_the_estimate(tiny_generator, estimated):
    generator, _, _ = load_bundle(tiny_generator)
    file = read_estimator_file(estimated / "estimator.pt")
    # A tiny temperature is best-of-n: every pick is its group's highest estimate.
    selector = Selector(file, acceptance=0.25, temperature=1e-9)
    labels = torch.arange(12) % 2
    z = selector.choose(generator, labels, torch.Generator().manual_seed(0))
    rng = torch.Generator().manual_seed(0)
    candidates = torch.randn(12, 4, generator.latent_dim, generator=rng)
    scores = selector.scores(generator, candidates.flatten(0, 1),
                             labels.repeat_interleave(4)).view(12, 4)
    torch.testing.assert_close(z, candidates[torch.arange(12), scores.argmax(1)])


def critic_values(discriminator, generator, z, labels):
    """The discriminator's source value of G's images, computed here without the selector."""
    with torch.no_grad():
        return discriminator.eval()(render(generator, z, labels) * 2 - 1, labels)[0]


def test_select_realism_rejects_what_the_discriminator_rates_least_real(
        tune_copy, tiny_generator):
    out = tune_copy("tune=select", "tune.method.calibration=200",
                    "tune.method.acceptance=0.25", "tune.method.realism=0.5")
    sampler, meta = load_sampler(out)
    generator, discriminator, _ = load_bundle(tiny_generator)
    selector = sampler.selector
    assert meta["sampler"]["realism"] == 0.5 and selector.realism == 0.5
    # The bundle's critic is the start's discriminator, exactly, and it never changed.
    for key, value in discriminator.state_dict().items():
        torch.testing.assert_close(selector.critic.state_dict()[key], value, rtol=0, atol=0)
    # Each class's critic threshold is the median of its critic values: about half of
    # fresh draws reach it.
    plain = torch.randn(2000, generator.latent_dim, generator=torch.Generator().manual_seed(8))
    plain_labels = torch.arange(2000) % 2
    values = critic_values(discriminator, generator, plain, plain_labels)
    admitted = (values >= selector.critic_thresholds[plain_labels]).float()
    for c in range(2):
        assert float(admitted[plain_labels == c].mean()) == pytest.approx(0.5, abs=0.08)
    # Every kept draw is admitted by the critic and reaches the estimate's threshold.
    labels = torch.arange(60) % 2
    z = draw_latents(sampler, labels, torch.Generator().manual_seed(3))
    kept = critic_values(discriminator, generator, z, labels)
    assert bool((kept >= selector.critic_thresholds[labels]).all())
    assert bool((selector.scores(generator, z, labels) >= selector.thresholds[labels]).all())
    # Without realism the same estimator keeps draws the critic would have rejected.
    unfiltered = Selector(selector.estimator_file, 0.25)
    unfiltered.calibrate(generator, 200, seed=0)
    z0 = unfiltered.choose(generator, labels, torch.Generator().manual_seed(3))
    assert bool((critic_values(discriminator, generator, z0, labels)
                 < selector.critic_thresholds[labels]).any())


def test_select_realism_softmax_chooses_among_admitted_draws(tiny_generator, estimated):
    generator, discriminator, _ = load_bundle(tiny_generator)
    selector = Selector(read_estimator_file(estimated / "estimator.pt"), acceptance=0.25,
                        temperature=1e-9, realism=0.5, critic=discriminator)
    selector.calibrate(generator, 200, seed=0)
    labels = torch.arange(12) % 2
    z = selector.choose(generator, labels, torch.Generator().manual_seed(0))
    candidates = torch.randn(12, 4, generator.latent_dim,
                             generator=torch.Generator().manual_seed(0))
    flat = labels.repeat_interleave(4)
    scores = selector.scores(generator, candidates.flatten(0, 1), flat).view(12, 4)
    values = critic_values(discriminator, generator, candidates.flatten(0, 1), flat).view(12, 4)
    admitted = values >= selector.critic_thresholds[labels][:, None]
    best = torch.where(admitted, scores, torch.tensor(-float("inf")))
    best = torch.where(admitted.any(1, keepdim=True), best, scores).argmax(1)
    torch.testing.assert_close(z, candidates[torch.arange(12), best])


def test_a_selector_without_its_critic_is_refused(estimated):
    with pytest.raises(UsageError, match="needs the generator's discriminator"):
        Selector(read_estimator_file(estimated / "estimator.pt"), 0.3, realism=0.2)


# -- latent --------------------------------------------------------------------------

def test_latent_prior_starts_at_the_identity_with_kl_zero():
    prior = LatentPrior(6, 2, form="diagonal")
    eps, labels = torch.randn(5, 6), torch.tensor([0, 1, 1, 0, 1])
    torch.testing.assert_close(prior(eps, labels), eps)
    torch.testing.assert_close(prior.kl(), torch.zeros(2))


def test_latent_kl_matches_the_gaussian_formula_and_passes_a_gradient_check():
    torch.manual_seed(0)
    prior = LatentPrior(3, 2, form="diagonal").double()
    with torch.no_grad():
        prior.mu.normal_()
        prior.log_scale.normal_(0, 0.3)
    # Independent: KL(N(μ, Σ) ‖ N(0, I)) = ½(tr Σ + μᵀμ − d − log det Σ), Σ diagonal.
    for c in range(2):
        sigma = torch.diag((2 * prior.log_scale[c]).exp())
        mu = prior.mu[c]
        expected = 0.5 * (torch.trace(sigma) + mu @ mu - 3 - torch.logdet(sigma))
        torch.testing.assert_close(prior.kl()[c], expected)

    def kl_of(mu, log_scale):
        with torch.no_grad():
            prior.mu.copy_(mu)
            prior.log_scale.copy_(log_scale)
        s2 = (2 * log_scale).exp()
        return 0.5 * (s2 + mu.pow(2) - 1 - 2 * log_scale).sum(1)

    mu = prior.mu.detach().clone().requires_grad_(True)
    log_scale = prior.log_scale.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(kl_of, (mu, log_scale))
    # And the module's own gradient equals finite differences of its own KL.
    prior.zero_grad()
    prior.kl().sum().backward()
    h = 1e-6
    for param in (prior.mu, prior.log_scale):
        numeric = torch.zeros_like(param)
        for index in range(param.numel()):
            with torch.no_grad():
                flat = param.view(-1)
                flat[index] += h
                up = prior.kl().sum()
                flat[index] -= 2 * h
                down = prior.kl().sum()
                flat[index] += h
            numeric.view(-1)[index] = (up - down) / (2 * h)
        torch.testing.assert_close(param.grad, numeric, rtol=1e-5, atol=1e-7)


def test_latent_training_moves_the_prior_and_nothing_else(tiny_generator, estimated):
    generator, discriminator, _ = load_bundle(tiny_generator)
    estimator = load_estimator(estimated / "estimator.pt")
    prior = LatentPrior(generator.latent_dim, generator.num_classes)
    module = LatentPriorModule(generator, discriminator, estimator, prior, beta=0.01, lr=0.05,
                               batch_size=8)
    frozen = {name: p.detach().clone() for name, p in module.named_parameters()
              if not name.startswith("prior.")}
    optimizer = module.configure_optimizers()
    for _ in range(3):
        optimizer.zero_grad()
        loss, parts = module.objective(torch.randn(8, generator.latent_dim),
                                       torch.arange(8) % 2)
        loss.backward()
        optimizer.step()
    assert prior.mu.abs().sum() > 0 and parts["kl"] > 0
    assert not prior.log_scale.requires_grad   # form shift: the scale stays 1
    for name, p in module.named_parameters():
        if name in frozen:
            torch.testing.assert_close(p, frozen[name], rtol=0, atol=0)


def test_latent_bundle_round_trips_and_draws_through_the_prior(tmp_path, tune_copy,
                                                               tiny_generator):
    out = tune_copy("tune=latent",
                 "tune.eval_every=1", "tune.method.lr=0.5")
    sampler, meta = load_sampler(out)
    assert sampler.method == "latent" and meta["sampler"]["form"] == "shift"
    assert sampler.prior.mu.abs().sum() > 0        # it learned
    generator, _, _ = load_bundle(tiny_generator)
    eps, labels = torch.randn(6, generator.latent_dim), torch.arange(6) % 2
    z = eps + sampler.prior.mu[labels]
    torch.testing.assert_close(render(sampler, eps, labels), render(generator, z, labels))
    assert (tmp_path / "run" / "tune_watch.csv").is_file()


# -- distill -------------------------------------------------------------------------

def test_tilt_weights_and_the_share_they_keep_match_numpy():
    import numpy as np

    rewards = torch.tensor([0.1, 0.4, 0.35, 0.9, 0.2])
    w = np.exp(rewards.numpy().astype(float) / 0.2)
    w /= w.sum()
    torch.testing.assert_close(tilt_weights(rewards, 0.2), torch.from_numpy(w))
    assert ess_share(torch.from_numpy(w)) == pytest.approx(1 / (5 * (w ** 2).sum()))
    beta = beta_for_share(rewards, 0.5)
    assert ess_share(tilt_weights(rewards, beta)) == pytest.approx(0.5, abs=1e-5)


def test_distill_never_backpropagates_through_the_estimator(tiny_generator, estimated,
                                                             make_cfg):
    from pirtune.models.tuning import module_from_bundle

    estimator = load_estimator(estimated / "estimator.pt")
    seen: list[bool] = []
    estimator.register_forward_pre_hook(lambda m, args: seen.append(args[0].requires_grad))
    module, _ = module_from_bundle(DistillModule, str(tiny_generator), estimator, 1e-3)
    z, labels = module.sample_latents(4)
    fake = module.generator(z, labels)
    loss, _ = module._generator_objective(fake, labels)
    loss.backward()
    assert not seen      # no loss of the method calls the estimator at all
    assert all(p.grad is None for p in estimator.parameters())


def test_distill_tunes_on_the_tilted_pool_and_writes_a_plain_bundle(tmp_path, tune_copy,
                                                                    tiny_generator):
    out = tune_copy("tune=distill",
                 "tune.method.pool=64", "tune.eval_every=1", "tune.lr=0.01")
    sampler, meta = load_sampler(out)
    assert sampler.method == "plain" and "sampler" not in meta
    before, _, _ = load_bundle(tiny_generator)
    moved = [not torch.equal(a, b) for a, b in zip(before.state_dict().values(),
                                                   sampler.generator.state_dict().values(),
                                                   strict=True)]
    assert any(moved)
    rows = (tmp_path / "run" / "tune_watch.csv").read_text().splitlines()
    assert len(rows) == 1 + 4   # the start and every iteration


def test_select_is_the_default_and_the_papers_gradient_keeps_its_run_names(make_cfg):
    assert settings(make_cfg()).tune.method["_target_"] == "pirtune.tuning.select.SelectMethod"
    for overrides in (["tune=pir"], ["experiment=paper"], ["hparams_search=tune_optuna"]):
        cfg = settings(make_cfg(*overrides))
        assert cfg.tune.method["_target_"] == "pirtune.tuning.gradient.GradientMethod"
        # Runs named before tune.method existed keep their names.
        assert not any(key.startswith("method") for key in cfg.tune.fingerprint())


# -- bad settings --------------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    (["tune.method._target_=pirtune.tuning.nope.Nope"], "tune.method='pirtune.tuning.nope.Nope' "
                                                          "is unknown; choose one of"),
    (["tune=select", "tune.method.temperature=0"], "tune.method.temperature=0"),
    (["tune=select", "tune.method.acceptance=1.5"], r"tune.method.acceptance=1.5 must lie in"),
    (["tune=select", "tune.method.acceptance=0"], r"tune.method.acceptance=0 must lie in"),
    (["tune=select", "tune.method.realism=1.0"], r"tune.method.realism=1.0 must lie in \[0, 1\)"),
    (["tune=select", "tune.method.realism=-0.1"], r"tune.method.realism=-0.1 must lie in"),
    (["tune=select", "tune.method.acceptance=0.95"],
     "tune.method.acceptance=0.95 keeps more than the 0.9 of draws"),
    (["tune=latent", "tune.method.beta=-1"], "tune.method.beta=-1 must be at least 0"),
    (["tune=distill", "tune.method.beta=-0.1"], "tune.method.beta=-0.1 must be positive"),
    (["tune=latent", "tune.reward=conservative"], "needs an ensemble"),
    (["tune=select", "tune.reward=conservative", "estimator.members=3"],
     "tune.method=select ranks draws by the estimate"),
])
def test_bad_method_settings_are_refused_in_one_sentence_before_any_work(make_cfg, overrides,
                                                                         message, tmp_path):
    with pytest.raises(UsageError, match=message) as err:
        settings(make_cfg(*overrides))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_build_method_defaults_to_the_paper():
    assert build_method(None).name == "gradient"


def test_sampler_follows_the_generator_protocol(tiny_generator):
    from pirtune.models.protocol import ImageGenerator

    generator, _, _ = load_bundle(tiny_generator)
    sampler = Sampler(generator, prior=LatentPrior(generator.latent_dim, 2))
    assert isinstance(sampler, ImageGenerator)
    features = sampler.features(torch.zeros(2, generator.latent_dim), torch.tensor([0, 1]))
    assert features.shape[0] == 2


def test_a_second_select_round_selects_afresh_from_the_untouched_generator(
        make_cfg, tiny_generator):
    from pathlib import Path

    from pirtune import train
    loop = ["collect.num_images=24", "collect.impressions=50", "collect.batch_size=12",
            "estimator.epochs=1", "estimator.batch_size=8", "evaluate.num_samples=16",
            "evaluate.batch_size=8"]
    cfg = make_cfg(f"generator_ckpt={tiny_generator}", *loop, "tune=select",
                   "tune.method.calibration=20", "iterations=2")
    train.run(cfg)
    run = Path(cfg.run_dir)
    second, meta = load_sampler(run / "round2" / "tuned.pt")
    assert second.method == "select" and meta["provenance"]["round"] == 2
    # The generator is the untouched one in both rounds; round 2's selector is its own.
    start, _, _ = load_bundle(tiny_generator)
    for key, value in start.state_dict().items():
        torch.testing.assert_close(second.generator.state_dict()[key], value, rtol=0, atol=0)
    assert meta["provenance"]["estimator"] == str(run / "round2" / "estimator.pt")
