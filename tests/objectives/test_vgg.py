"""VGG objectives (C.4.1–C.4.2) against a separate pass through torchvision's VGG16.

All tests use seeded random weights (no network); 224 px passes use two images.
"""

import logging
import math
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close
from torchvision.models import VGG16_Weights

from pirtune.errors import UsageError
from pirtune.objectives import (
    VGGFeatureBank,
    VGGObjective,
    build_objective,
    load_vgg16,
    pir_from_bank,
    sample_filters,
    score_all,
)
from pirtune.objectives import vgg as vgg_module

SIZES = {"pool1": 64, "pool2": 128, "pool3": 256, "pool4": 512, "pool5": 512,
         "fc6": 4096, "fc7": 4096, "fc8": 1000}


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def reference() -> torch.nn.Module:
    """A plain torchvision VGG16 with the weights the banks below should also get."""
    return load_vgg16("random", seed=0).eval()


@pytest.fixture(scope="module")
def bank224() -> VGGFeatureBank:
    return VGGFeatureBank(weights="random", seed=0)


@pytest.fixture(scope="module")
def bank64() -> VGGFeatureBank:
    return VGGFeatureBank(weights="random", seed=0, input_size=64, layers=("pool1", "pool2"))


def _reference_activations(model: torch.nn.Module, images: torch.Tensor, size: int) -> dict:
    """Every layer's activations from forward hooks on torchvision's own forward."""
    x = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                      antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    pools = [m for m in model.features if isinstance(m, torch.nn.MaxPool2d)]
    modules = dict(zip(["pool1", "pool2", "pool3", "pool4", "pool5"], pools, strict=True))
    modules |= {"fc6": model.classifier[1], "fc7": model.classifier[4], "fc8": model.classifier[6]}
    acts = {}

    def keep(name: str):
        # Cloned, since torchvision's ReLUs work in place and could overwrite a kept tensor.
        return lambda _module, _inputs, out: acts.__setitem__(name, out.clone())

    handles = [m.register_forward_hook(keep(name)) for name, m in modules.items()]
    with torch.no_grad():
        model((x - mean) / std)
    for handle in handles:
        handle.remove()
    return acts


def _reference_pir(act: torch.Tensor, filters: list[int]) -> torch.Tensor:
    per_filter = act.flatten(2).norm(dim=2) if act.ndim == 4 else act.abs()  # ‖VGG_{l,f}(i)‖₂
    return (per_filter[:, filters].square().sum(1) / per_filter.square().sum(1)).sqrt()


def test_bank_matches_torchvision_forward_at_every_layer(bank224, reference):
    images = _images(2, 32)
    sq = score_all(bank224, images, batch_size=1)  # two chunks, concatenated
    acts = _reference_activations(reference, images, 224)
    assert {name: tuple(v.shape) for name, v in sq.items()} == {n: (2, f) for n, f in SIZES.items()}
    for layer, act in acts.items():
        for f in (0, 17, SIZES[layer] - 1):
            assert_close(pir_from_bank(sq[layer], [f]), _reference_pir(act, [f]), msg=layer)
        assert_close(sq[layer], act.square().flatten(2).sum(2) if act.ndim == 4 else act.square(),
                     rtol=1e-4, atol=1e-6, msg=layer)


def test_pool_only_bank_stops_early_and_matches(bank64, reference):
    # The classifier's 120 M weights are not kept when only pool layers are asked for.
    assert sum(p.numel() for p in bank64.parameters()) < 300_000
    images = _images(2, 32, seed=1)
    sq = bank64(images, layers=("pool2",))
    assert list(sq) == ["pool2"]
    act = _reference_activations(reference, images, 64)["pool2"]
    assert_close(pir_from_bank(sq["pool2"], [5, 17]), _reference_pir(act, [5, 17]))
    with pytest.raises(UsageError, match="'fc7'.*pool1, pool2"):
        bank64(images, layers=("fc7",))


def test_sample_filters_is_seeded_distinct_and_in_range():
    a = sample_filters(512, 20, seed=0)
    assert a == sample_filters(512, 20, seed=0)
    assert a != sample_filters(512, 20, seed=1)
    assert len(a) == len(set(a)) == 20
    assert all(0 <= f < 512 for f in a)
    assert sorted(sample_filters(8, 8, seed=3)) == list(range(8))
    with pytest.raises(UsageError, match="k=65"):
        sample_filters(64, 65, seed=0)


def test_objectives_equal_the_papers_formula_on_torchvisions_activations(bank64, reference):
    images = _images(3, 32, seed=2)
    # sqrt(Σ_{f∈F} ‖VGG_f(i)‖² / Σ_f ‖VGG_f(i)‖²) (C.4.1), from hooks on torchvision's forward.
    act = _reference_activations(reference, images, 64)["pool2"]
    single = VGGObjective(layer="pool2", filter=17, weights="random", bank=bank64)
    assert single.name == "vgg_pool2_f17" and single.filters == [17]
    assert_close(single(images), _reference_pir(act, [17]))

    several = VGGObjective(layer="pool2", k=20, seed=4, weights="random", bank=bank64)
    assert several.name == "vgg_pool2_k20_s4"
    assert several.filters == sample_filters(128, 20, seed=4)
    pir = several(images)
    assert_close(pir, _reference_pir(act, several.filters))
    assert not torch.allclose(pir, _reference_pir(act, sample_filters(128, 20, seed=5)))
    assert several.describe()["filters"] == several.filters
    several.train()  # as an enclosing LightningModule would
    assert not any(module.training for module in bank64.modules())


def test_build_objective_passes_the_vgg_settings(bank64, monkeypatch):
    built = []
    # Stands in for a fresh bank, so this test pays for no VGG16 of its own.
    monkeypatch.setattr(vgg_module, "VGGFeatureBank",
                        lambda **kwargs: built.append(kwargs) or bank64)
    objective = build_objective({"_target_": "pirtune.objectives.VGGObjective", "layer": "pool2",
                                 "k": 5, "seed": 2, "filter": None, "weights": "random",
                                 "noise": "elsewhere"})
    assert built == [{"weights": "random", "layers": ("pool2",), "input_size": 224}]
    assert objective.filters == sample_filters(128, 5, seed=2)
    assert objective.describe() == {
        "name": "vgg_pool2_k5_s2", "kind": "vgg", "layer": "pool2",
        "filters": objective.filters, "k": 5, "seed": 2, "weights": "random",
        "weights_seed": 0, "input_size": 64,
    }


def test_objective_is_differentiable_in_the_image(bank64):
    images = _images(2, 32, seed=5).requires_grad_()
    VGGObjective(layer="pool1", filter=3, weights="random", bank=bank64)(images).sum().backward()
    assert torch.isfinite(images.grad).all()
    assert images.grad.abs().sum() > 0


def test_pir_from_bank_is_zero_safe():
    sq = torch.tensor([[0.0, 0.0, 0.0], [4.0, 0.0, 5.0]], requires_grad=True)
    pir = pir_from_bank(sq, [1])
    pir.sum().backward()
    assert_close(pir, torch.zeros(2))
    assert torch.isfinite(sq.grad).all()
    assert pir_from_bank(sq, [0, 2])[1].item() == pytest.approx(1.0)
    assert pir_from_bank(sq, [0])[1].item() == pytest.approx(math.sqrt(4 / 9))


def test_bad_layer_filter_and_weights_name_the_fix(bank64):
    with pytest.raises(UsageError, match="'pool9'.*pool1, pool2, pool3, pool4, pool5, fc6, fc7"):
        VGGObjective(layer="pool9", bank=bank64)
    with pytest.raises(UsageError, match=r"filter 128 .*0\.\.127"):
        VGGObjective(layer="pool2", filter=128, weights="random", bank=bank64)
    with pytest.raises(UsageError, match="weights=imagenet.*weights=random"):
        VGGObjective(layer="pool2", filter=1, bank=bank64)
    with pytest.raises(UsageError, match="'resnet'.*imagenet, random"):
        load_vgg16("resnet", seed=0)
    with pytest.raises(UsageError, match="'pool9'"):
        build_objective({"_target_": "pirtune.objectives.VGGObjective", "layer": "pool9"})


def test_random_weights_are_seeded_and_leave_the_global_rng_alone(bank224, reference, caplog):
    # bank224 was built with seed 0 separately from `reference`: same weights.
    conv = bank224.stages[0].weight
    assert torch.equal(conv, reference.features[0].weight)
    assert torch.equal(bank224.stages[-1].weight, reference.classifier[6].weight)
    state = torch.get_rng_state()
    with caplog.at_level(logging.WARNING, logger="pirtune.objectives.vgg"):
        other = load_vgg16("random", seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(other.features[0].weight, conv)
    assert "random" in caplog.text
    assert bank224.weights == "random"


def _cache_file(torch_home: Path) -> Path:
    return torch_home / "hub" / "checkpoints" / Path(VGG16_Weights.IMAGENET1K_V1.url).name


def test_imagenet_weights_load_from_torchvisions_cache(tmp_path, monkeypatch, reference):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(vgg_module, "fetch_imagenet_state_dict", _no_network)
    # A distinct constant per tensor, each a stride-0 view of one number: the file holds
    # VGG16's every key and shape in a few kB (real weights would be 528 MB).
    planted = {key: torch.tensor(float(i + 1)).expand(tensor.shape)
               for i, (key, tensor) in enumerate(reference.state_dict().items())}
    path = _cache_file(tmp_path)
    path.parent.mkdir(parents=True)
    torch.save(planted, path)
    assert path.stat().st_size < 100_000
    loaded = load_vgg16("imagenet", seed=0).state_dict()
    assert loaded.keys() == planted.keys()
    for key, tensor in planted.items():
        assert torch.equal(loaded[key], tensor), key


def _no_network():
    raise URLError("no network in tests")


def test_missing_imagenet_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(vgg_module, "fetch_imagenet_state_dict", _no_network)
    with pytest.raises(UsageError) as info:
        load_vgg16("imagenet", seed=0)
    message = str(info.value)
    assert str(_cache_file(tmp_path)) in message
    assert "objective.weights=random" in message
    assert VGG16_Weights.IMAGENET1K_V1.url in message
    assert "\n" not in message
