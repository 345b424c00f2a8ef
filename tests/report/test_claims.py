"""The claim verdicts on synthetic evaluations with planted effects: a planted slope is
recovered within its CI, a planted null is "not reproduced", a planted opposite is
"refuted", and missing data is "not testable at this scale"."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from pirtune.evaluation import Evaluation, TrainingSet
from pirtune.objectives.vgg import LAYERS
from pirtune.report.claims import (
    CLAIMS,
    HOLDS,
    NOT_REPRODUCED,
    REFUTED,
    UNTESTABLE,
    claims_markdown,
    decline_with_layer,
    judge,
    method_of,
    more_colours_harder,
    sd_predicts_gain,
    second_round,
    sets_more_consistent,
    third_colour_trick,
    underestimates_gain,
    zeros_go_with_failure,
)
from pirtune.report.entries import Entry
from pirtune.stats import Change, WelchTest

SELECT = {"method._target_": "pirtune.tuning.select.SelectMethod"}


def _change(d: float, delta: float | None = None, p: float | None = None) -> Change:
    """A change of Cohen's d ``d`` (SD 0.1) whose p follows from d at n = 1000 unless given."""
    delta = 0.1 * d if delta is None else delta
    t = d * math.sqrt(500)
    p = float(2 * scipy.stats.norm.sf(abs(t))) if p is None else p
    return Change(1000, 1000, 0.5, 0.5 + delta, 0.1, 0.1, delta, d, WelchTest(t, 1998.0, p),
                  0.001, p < 0.001)


def _entry(objective: dict, change: Change, *, predicted: float = 0.0, sd: float = 0.1,
           mean: float = 0.3, zero_share: float = 0.0, round: int = 1, tuning=None,
           channels=None, path: Path = Path("x/evaluation.json"), scores=None) -> Entry:
    evaluation = Evaluation(
        objective=objective, round=round, scale="cpu", estimator_backbone="small_cnn",
        change=change, predicted=_change(0.0, predicted, 0.5),
        training_set=TrainingSet(1000, mean, sd, zero_share), generator_before="a",
        generator_after="b", grids={}, tuning=tuning or {"steps": 400}, scores=scores,
        channels=channels)
    return Entry(path, evaluation)


def _vgg(layer: str, k: int = 20, seed: int = 0) -> dict:
    return {"name": f"vgg_{layer}_k{k}_s{seed}", "kind": "vgg", "layer": layer, "k": k,
            "filters": list(range(k))}


def _colour(*colours: str) -> dict:
    return {"name": "color_" + "_".join(colours), "kind": "colour", "colours": list(colours)}


def _layer_sets(slope: float, rng: np.random.Generator, noise: float = 0.05) -> list[Entry]:
    """20-filter sets at every layer, three seeds each: d = 1.2 + slope·layer + 0.5·SD + noise."""
    entries = []
    for i, layer in enumerate(LAYERS):
        for seed in range(3):
            sd = float(rng.uniform(0.02, 0.2))
            d = 1.2 + slope * i + 0.5 * sd + float(rng.normal(0, noise))
            entries.append(_entry(_vgg(layer, 20, seed), _change(d), sd=sd,
                                  zero_share=float(rng.uniform(0, 0.3))))
    return entries


def test_a_planted_layer_slope_is_recovered_within_its_ci():
    verdict = decline_with_layer(_layer_sets(-0.13, np.random.default_rng(0)), "gradient")
    assert verdict.verdict == HOLDS
    assert verdict.low < -0.13 < verdict.high
    assert verdict.estimate == pytest.approx(-0.13, abs=0.03)
    assert "the paper's β = -0.13 is inside the 95 % CI" in verdict.why


def test_a_planted_rise_with_layer_is_refuted():
    verdict = decline_with_layer(_layer_sets(+0.13, np.random.default_rng(1)), "gradient")
    assert verdict.verdict == REFUTED and verdict.estimate > 0


def test_a_planted_null_is_not_reproduced():
    rng = np.random.default_rng(2)
    entries = [_entry(_vgg("pool2", 20, s), _change(0.5, float(rng.normal(0.02, 0.01))),
                      sd=float(rng.uniform(0.02, 0.2)), mean=float(rng.uniform(0.1, 0.5)),
                      zero_share=float(rng.uniform(0, 0.3))) for s in range(30)]
    verdict = sd_predicts_gain(entries, "gradient")
    assert verdict.verdict == NOT_REPRODUCED
    assert verdict.low < 0 < verdict.high
    assert decline_with_layer(_layer_sets(0.0, np.random.default_rng(3)),
                              "gradient").verdict == NOT_REPRODUCED


def test_the_introspection_slope_holds_only_above_one():
    rng = np.random.default_rng(4)
    predicted = rng.uniform(0.0, 0.05, 25)

    def entries(beta: float) -> list[Entry]:
        return [_entry(_colour("blue"), _change(1.0, beta * p + float(rng.normal(0, 0.002))),
                       predicted=float(p)) for p in predicted]

    under = underestimates_gain(entries(1.67), "gradient")
    assert under.verdict == HOLDS and under.low < 1.67 < under.high
    assert underestimates_gain(entries(1.0), "gradient").verdict == NOT_REPRODUCED
    assert underestimates_gain(entries(0.5), "gradient").verdict == REFUTED


def test_a_constant_control_is_left_out_and_named():
    entries = _layer_sets(-0.13, np.random.default_rng(5))
    flat = [Entry(e.path, Evaluation(**{**e.evaluation.__dict__, "training_set":
                                        TrainingSet(1000, 0.3, e.evaluation.training_set.sd,
                                                    0.0)})) for e in entries]
    verdict = decline_with_layer(flat, "gradient")
    assert verdict.verdict == HOLDS
    assert "left out, the same at every point: zero_share" in verdict.why


def test_missing_data_is_not_testable_and_says_what_lacks():
    one_layer = [_entry(_vgg("pool2"), _change(1.0))]
    assert decline_with_layer(one_layer, "gradient").verdict == UNTESTABLE
    no_zeros = zeros_go_with_failure([_entry(_vgg(layer), _change(1.0)) for layer in LAYERS],
                                     "gradient")
    assert no_zeros.verdict == UNTESTABLE and "near-zero PIRs is 0" in no_zeros.why
    assert sets_more_consistent(one_layer, "gradient").verdict == UNTESTABLE
    assert second_round(one_layer, "gradient").verdict == UNTESTABLE
    old = third_colour_trick([_entry(_colour("green", "red"), _change(1.0))], "gradient")
    assert old.verdict == UNTESTABLE and "before `channels`" in old.why
    assert more_colours_harder([_entry(_colour("blue"), _change(1.0))],
                               "gradient").verdict == UNTESTABLE


def test_sets_spread_less_than_single_filters():
    rng = np.random.default_rng(6)
    entries = [_entry(_vgg(layer, 1, s), _change(float(rng.normal(0.6, 0.5))))
               for layer in LAYERS for s in range(2)]
    entries += [_entry(_vgg(layer, 20, s), _change(float(rng.normal(0.6, 0.08))))
                for layer in LAYERS for s in range(2)]
    assert sets_more_consistent(entries, "gradient").verdict == HOLDS


def test_more_colours_and_the_third_colour():
    dims = {"blue": 1.6, "red": 1.5, "green": 1.4, "red_blue": 1.0, "green_red": 0.9,
            "green_blue_red": 0.2}
    entries = [_entry(_colour(*name.split("_")), _change(d)) for name, d in dims.items()]
    assert more_colours_harder(entries, "gradient").verdict == HOLDS
    falls = {"red": _change(0.1), "green": _change(0.2), "blue": _change(-0.8)}
    rises = {"red": _change(0.1), "green": _change(0.2), "blue": _change(0.8)}
    trick = third_colour_trick([_entry(_colour("green", "red"), _change(1.0), channels=falls)],
                               "gradient")
    assert trick.verdict == HOLDS and "blue share -0.0800" in trick.statistic
    assert third_colour_trick([_entry(_colour("green", "red"), _change(1.0), channels=rises)],
                              "gradient").verdict == REFUTED


def _scores(path: Path, after: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["set", "seed", "index", "class", "true_pir", "estimated_pir"])
        writer.writerows(["after", 1, i, 0, repr(float(v)), 0.0] for i, v in enumerate(after))
    return path.name


def test_a_second_round_read_from_the_scores(tmp_path):
    rng = np.random.default_rng(7)
    entries = []
    # pool2 gains again, less than at first; fc8 falls back.
    for layer, first, second in (("pool2", 0.30, 0.33), ("fc8", 0.30, 0.27)):
        for index, mean in ((1, first), (2, second)):
            folder = tmp_path / layer / f"round{index}"
            name = _scores(folder / "scores.csv", rng.normal(mean, 0.1, 1000))
            entries.append(_entry(_vgg(layer, 1), _change(1.0), round=index,
                                  path=folder / "evaluation.json", scores=name))
    verdict = second_round(entries, "gradient")
    assert verdict.verdict == HOLDS, verdict.statistic
    assert "pool2: 1 of 1 gain again" in verdict.statistic


def test_judge_sets_methods_side_by_side_and_lists_what_lacks():
    rng = np.random.default_rng(8)
    paper = _layer_sets(-0.13, rng)
    default = [Entry(e.path, Evaluation(**{**e.evaluation.__dict__, "tuning": SELECT}))
               for e in _layer_sets(0.0, rng)]
    assert method_of(default[0].evaluation) == "select"
    assert method_of(paper[0].evaluation) == "gradient"
    verdicts = judge(paper + default)
    assert len(verdicts) == 2 * len(CLAIMS)
    four = {v.method: v.verdict for v in verdicts if v.claim == 4}
    assert four == {"gradient": HOLDS, "select": NOT_REPRODUCED}
    text = "\n".join(claims_markdown(verdicts))
    assert "| # | claim | the paper | tune=gradient | tune=select |" in text
    assert "Lacking data for claims: 1, 2, 3, 6, 7, 8, 9." in text
