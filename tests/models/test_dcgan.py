"""A second generator behind the protocol: the DCGAN through every stage and the search."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from pirtune import train
from pirtune.evaluation import load_evaluations
from pirtune.models.bundle import load_bundle, render
from pirtune.models.dcgan import DCGANDiscriminator, DCGANGenerator
from pirtune.models.networks import Generator
from pirtune.models.protocol import ImageGenerator
from pirtune.search import PreferenceSearch, SearchSpace, SimulatedPerson, principal_directions
from pirtune.search.session import simulate
from pirtune.webapp import InteractionLog
from pirtune.webapp.app import create_app

LOOP = ["tune=pir", "collect.num_images=24", "collect.impressions=50", "collect.batch_size=12",
        "estimator.epochs=1", "estimator.batch_size=8", "tune.steps=3", "tune.checkpoint_every=1",
        "evaluate.num_samples=16", "evaluate.batch_size=8"]


def test_both_generators_follow_the_protocol():
    z = torch.randn(3, 64, requires_grad=True)
    for generator in (Generator(num_classes=2, resolution=16, width=0.125),
                      DCGANGenerator(resolution=16, width=0.125)):
        assert isinstance(generator, ImageGenerator)
        images = generator.images(z, torch.tensor([0, 0, 0]))
        assert images.shape == (3, 3, 16, 16)
        assert float(images.min()) >= 0 and float(images.max()) <= 1
        images.sum().backward()  # differentiable in z: tuning and search need it
        assert z.grad is not None and bool(z.grad.abs().sum() > 0)
        z.grad = None
    # The DCGAN ignores the class it is given.
    dcgan = DCGANGenerator(resolution=16, width=0.125).eval()
    torch.testing.assert_close(dcgan.images(z, torch.tensor([0, 1, 5])),
                               dcgan.images(z, torch.tensor([0, 0, 0])))
    source, logits = DCGANDiscriminator(num_classes=2, resolution=16, width=0.125)(
        torch.rand(3, 3, 16, 16))
    assert source.shape == (3,) and logits.shape == (3, 2)


@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory, tiny_overrides):
    """A DCGAN pre-trained for two iterations, then the whole loop from it."""
    from hydra import compose, initialize_config_dir

    from pirtune.paths import CONFIG_DIR

    root = tmp_path_factory.mktemp("dcgan")

    def cfg(*overrides):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name="train",
                           overrides=[*tiny_overrides, "model=dcgan", *overrides])

    generator = train.run(cfg(f"run_dir={root / 'cpu-pretrain'}", "pretrain.iterations=2"),
                          "pretrain")
    loop = cfg(f"run_dir={root / 'loop'}", f"generator_ckpt={generator}", "objective=color_red",
               *LOOP)
    train.run(loop)
    return generator, root / "loop"


def test_the_dcgan_runs_collect_estimate_tune_evaluate(dcgan_run):
    base_path, run = dcgan_run
    base, _, _ = load_bundle(base_path)
    tuned, discriminator, meta = load_bundle(run / "tuned.pt")
    assert isinstance(tuned, DCGANGenerator) and isinstance(discriminator, DCGANDiscriminator)
    assert meta["iteration"] == 3
    # Tuning moved the generator's weights.
    moved = [name for name, p in tuned.state_dict().items()
             if p.is_floating_point() and not torch.equal(p, base.state_dict()[name])]
    assert "fc.weight" in moved
    [(_, evaluation)] = load_evaluations(run)
    assert evaluation.change.n_after == 16 and evaluation.objective["name"] == "color_red"
    assert (run / "report.md").is_file()


def test_the_search_and_the_web_app_take_the_dcgan(dcgan_run, tmp_path):
    generator, _, _ = load_bundle(dcgan_run[0])
    generator.eval()
    directions = principal_directions(generator, k=4, num_samples=256)
    np.testing.assert_allclose(directions @ directions.T, np.eye(4), atol=1e-6)
    space = SearchSpace.subspace(np.zeros(64), directions)
    person = SimulatedPerson(np.random.default_rng(1).standard_normal(4))
    session = simulate(PreferenceSearch(start=np.zeros(4)), person, radius=0.5, max_rounds=30)
    assert session.distances[-1] < session.distances[0]
    images = render(generator, torch.from_numpy(space.to_latent(session.path[-4:])).float(),
                    torch.zeros(4, dtype=torch.long))
    assert images.shape == (4, 3, 16, 16)

    client = TestClient(create_app(generator, InteractionLog(tmp_path / "log.db")))
    state = client.post("/api/sessions", json={"algorithm": "preference", "k": 4}).json()
    assert len(state["candidates"]) == 4
    image = client.get(state["candidates"][0])
    assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_dcgan_discriminator_takes_the_cpu_experiments_head_setting():
    torch.manual_seed(0)
    plain = DCGANDiscriminator(num_classes=1, resolution=16, width=0.25)
    torch.manual_seed(0)
    projection = DCGANDiscriminator(num_classes=1, resolution=16, width=0.25,
                                    head="projection")
    images = torch.rand(3, 3, 16, 16)
    torch.testing.assert_close(plain(images)[0], projection(images)[0])
    with pytest.raises(ValueError, match="model.discriminator.head='tac'"):
        DCGANDiscriminator(num_classes=1, resolution=16, head="tac")
