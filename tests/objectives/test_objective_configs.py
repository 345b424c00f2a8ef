"""Every objective option accepts every objective kind's keys, so sweeps over kinds compose."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException

from pirtune.objectives import build_objective, objective_name
from pirtune.paths import CONFIG_DIR

OBJECTIVES = sorted(p.stem for p in (CONFIG_DIR / "objective").glob("*.yaml"))
VGG = "pirtune.objectives.VGGObjective"


def test_the_sweeps_first_composition_takes_vgg_keys_on_the_default_colour_objective(make_cfg):
    # `-m objective=vgg_pool2,vgg_fc8 objective.k=20` first composes with the default
    # objective (color_blue); that failed with "Key 'k' is not in struct".
    cfg = make_cfg("objective.k=20", "objective.filter=3", "objective.weights=random")
    assert cfg.objective._target_ == "pirtune.objectives.ColourObjective"
    assert (cfg.objective.k, cfg.objective.filter) == (20, 3)
    # The colour objective ignores them: same name, same scores as without.
    assert build_objective(cfg.objective).name == objective_name(cfg.objective) == "color_blue"


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_every_objective_option_composes_with_a_sweeps_vgg_and_colour_keys(make_cfg, objective):
    cfg = make_cfg(f"objective={objective}", "objective.k=20", "objective.seed=3")
    spec = cfg.objective
    assert spec.k == 20
    if spec._target_ == VGG:
        # The option's own layer survives; the swept keys reach the VGG objective's name.
        assert spec.layer == objective.removeprefix("vgg_")
        assert objective_name(spec) == f"{objective}_k20_s3"
    else:
        assert spec.layer is None and list(spec.colours)
        assert objective_name(spec) == objective
    # And a colour key on a VGG option (or a VGG key on a colour one) composes too.
    other = make_cfg(f"objective={objective}", "objective.layer=pool1",
                     "objective.colours=[red]").objective
    assert objective_name(other) == ("vgg_pool1_k1_s0" if spec._target_ == VGG else "color_red")


def test_a_key_no_objective_has_still_fails_at_composition(make_cfg):
    with pytest.raises(ConfigCompositionException, match="objective.filters"):
        make_cfg("objective=vgg_pool2", "objective.filters=3")
