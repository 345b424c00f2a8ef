"""A verdict per claim of the PIR paper, from saved evaluations.

Each claim is judged by one named test on the evaluations that bear on it,
separately for each tuning method (``tune.method``: the paper's ``gradient``,
``select``, ...), so the paper's method and the default sit side by side.

Verdict rules, the same for every claim:

* **holds**: the statistic has the paper's sign and its test is significant
  at ``LEVEL`` (0.05; per-objective changes use each evaluation's own α, the
  paper's 0.001). Where the paper quantifies a slope, the verdict's ``why``
  says whether the paper's value lies in the 95 % CI.
* **refuted**: significant the other way.
* **not reproduced**: not significant either way (or, for a claim made of two
  parts, one part holds and the other is not reproduced).
* **not testable at this scale**: the evaluations lack the data the test
  needs; ``why`` says what is lacking.

A claim made of two parts (2 and 7) holds when both hold, is refuted when
either is refuted, and is not testable when a part lacks data and none is
refuted. Regressions (4, 5, 6, 8, 10) are ``pirtune.stats.ols``; a control
predictor that takes one value at every point (a share of zeros that is 0
everywhere) is left out and named, not allowed to make the design singular.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.stats

from pirtune.evaluation import Evaluation
from pirtune.objectives.colour import CHANNELS
from pirtune.objectives.vgg import LAYERS
from pirtune.report.entries import Entry, iterated
from pirtune.stats import Change, TooLittleData, mean_change, ols

LEVEL = 0.05  # the test level of every across-objective test (the paper reports t and p)
HOLDS, NOT_REPRODUCED, REFUTED, UNTESTABLE = (
    "holds", "not reproduced", "refuted", "not testable at this scale")
VERDICTS = (HOLDS, NOT_REPRODUCED, REFUTED, UNTESTABLE)
SPARSE_LAYERS = ("pool5", "fc6", "fc7")  # section 4.1: the single-filter weak spot


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: what it says, the paper's figure, and the test used here."""

    number: int
    text: str
    paper: str
    test: str


CLAIMS: dict[int, Claim] = {c.number: c for c in (
    Claim(1, "colour objectives improve", "Fig. 2: all colour objectives improve "
          "(three-colour after 500k steps)",
          "Welch's t per colour objective at its α; holds when every one rises"),
    Claim(2, "most VGG objectives improve; single filters at pool5/fc6/fc7 are the weak spot",
          "Fig. 2, section 4.1",
          "binomial test of the share of significant gains > ½; Welch's t of single-filter "
          "d at pool5/fc6/fc7 vs the other layers"),
    Claim(3, "20-filter sets are more consistent than single filters", "Fig. 2, section 4.1",
          "Brown–Forsythe test of the spread of d, 20-filter sets vs single filters"),
    Claim(4, "with 20 filters the effect declines with layer", "β = −0.13 per layer, t = −7.8",
          "OLS d ~ layer index + initial SD + zero share (20-filter sets)"),
    Claim(5, "the initial SD of the PIR data predicts the gain",
          "β = 0.99, t = 10.6; SD alone explains ~50 % (A.2, Fig. 5)",
          "OLS ΔPIR ~ initial SD + initial mean + zero share"),
    Claim(6, "the system under-estimates its gain", "β = 1.67 (A.1, Fig. 4)",
          "OLS true ΔPIR ~ predicted ΔPIR; holds when the 95 % CI of β lies above 1"),
    Claim(7, "a second iteration improves every pool2 objective, less than the first; "
          "many fc8 objectives get worse", "A.3, Fig. 6",
          "Welch's t of round 2's samples vs round 1's (per-image scores) per objective"),
    Claim(8, "three-colour objectives need far more tuning steps",
          "small gains after 50k steps; 500k needed (section 4.2)",
          "OLS d ~ number of colours at a fixed budget (colour objectives)"),
    Claim(9, "two-colour objectives dim the third colour (the \"trick\")",
          "Fig. 3e, section 4.2",
          "Welch's t of the untargeted colour's share per two-colour objective"),
    Claim(10, "objectives with many near-zero PIRs go with failure", "Fig. 8",
          "OLS d ~ zero share (VGG objectives)"),
)}


@dataclass(frozen=True)
class Verdict:
    """A claim judged on one method's evaluations.

    Attributes:
        claim: the claim's number (``CLAIMS``).
        method: the tuning method whose evaluations were judged.
        verdict: one of ``VERDICTS``.
        statistic: the figures, as the report prints them.
        why: the rule that decided it, or what data are lacking.
        n: evaluations (or objectives) the test used.
        estimate, low, high, p: the test's main estimate, its 95 % CI and p
            (NaN where the test has none).
    """

    claim: int
    method: str
    verdict: str
    statistic: str
    why: str
    n: int = 0
    estimate: float = math.nan
    low: float = math.nan
    high: float = math.nan
    p: float = math.nan

    @property
    def text(self) -> str:
        return CLAIMS[self.claim].text

    @property
    def paper(self) -> str:
        return CLAIMS[self.claim].paper

    @property
    def test(self) -> str:
        return CLAIMS[self.claim].test


def method_of(evaluation: Evaluation) -> str:
    """The tuning method (``pirtune.tuning.<name>``); files from before the seam: gradient."""
    target = str(evaluation.tuning.get("method._target_", "pirtune.tuning.gradient."))
    return target.split(".")[2] if target.startswith("pirtune.tuning.") else target


def _num(value: float, digits: int = 2) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.1e}" if value and abs(value) < 10 ** -digits else f"{value:.{digits}f}"


def _p(value: float) -> str:
    return "n/a" if math.isnan(value) else ("< 1e-300" if value == 0 else f"{value:.2g}")


def _signed(estimate: float, p: float, expected: int) -> str:
    """The rule: the expected sign and p < LEVEL holds, the other sign refutes."""
    if not p < LEVEL:
        return NOT_REPRODUCED
    return HOLDS if np.sign(estimate) == expected else REFUTED


def _untestable(claim: int, method: str, lacking: str, n: int = 0) -> Verdict:
    return Verdict(claim, method, UNTESTABLE, "n/a", lacking, n)


def _combine(parts: Sequence[str]) -> str:
    if all(part == HOLDS for part in parts):
        return HOLDS
    if REFUTED in parts:
        return REFUTED
    return UNTESTABLE if UNTESTABLE in parts else NOT_REPRODUCED


def _vgg(entries: Sequence[Entry]) -> list[Entry]:
    return [e for e in entries if e.evaluation.objective.get("kind") == "vgg"]


def _colour(entries: Sequence[Entry]) -> list[Entry]:
    return [e for e in entries if e.evaluation.objective.get("kind") == "colour"]


def _k(entry: Entry) -> int:
    objective = entry.evaluation.objective
    return int(objective.get("k") or len(objective.get("filters", [])) or 1)


def _d(entries: Sequence[Entry]) -> list[float]:
    return [e.evaluation.change.cohens_d for e in entries]


def _fit(claim: int, method: str, response: Sequence[float], main: str,
         predictors: dict[str, Sequence[float]], expected: int,
         paper_beta: float | None = None) -> Verdict:
    """OLS of ``response`` on ``predictors``; the verdict on ``main``'s coefficient.

    Controls (predictors other than ``main``) that take one value everywhere are
    left out and named.
    """
    constant = [name for name, values in predictors.items()
                if name != main and np.ptp(np.asarray(values, float)) == 0]
    kept = {name: values for name, values in predictors.items() if name not in constant}
    dropped = (f"; left out, the same at every point: {', '.join(constant)}"
               if constant else "")
    try:
        fit = ols(response, kept)
    except TooLittleData as err:
        return _untestable(claim, method, str(err), len(response))
    c = fit.coefficients[main]
    verdict = _signed(c.beta, c.p, expected)
    statistic = (f"β = {_num(c.beta, 3)} [{_num(c.low, 3)}, {_num(c.high, 3)}], "
                 f"t = {_num(c.t)}, p = {_p(c.p)}, n = {fit.n}, R² = {_num(fit.r2)}")
    why = f"{main}'s β {'>' if expected > 0 else '<'} 0 at p < {LEVEL} is the claim"
    if paper_beta is not None:
        inside = c.low <= paper_beta <= c.high
        why += (f"; the paper's β = {paper_beta:g} is {'inside' if inside else 'outside'} "
                "the 95 % CI")
    return Verdict(claim, method, verdict, statistic, why + dropped, fit.n, c.beta, c.low,
                   c.high, c.p)


def _count_changes(changes: Sequence[Change]) -> tuple[int, int]:
    up = sum(c.significant and c.delta > 0 for c in changes)
    down = sum(c.significant and c.delta < 0 for c in changes)
    return up, down


# ------------------------------------------------------------------------- the claims


def colour_improves(entries: Sequence[Entry], method: str) -> Verdict:
    """Claim 1: every colour objective's Welch test at its α shows a gain."""
    colour = _colour(entries)
    if not colour:
        return _untestable(1, method, "no colour objective was evaluated")
    up, down = _count_changes([e.evaluation.change for e in colour])
    d = _d(colour)
    statistic = (f"{up} of {len(colour)} significant gains, {down} significant losses; "
                 f"d {_num(min(d))} to {_num(max(d))}")
    verdict = (HOLDS if up == len(colour) else REFUTED if down > up else NOT_REPRODUCED)
    return Verdict(1, method, verdict, statistic,
                   "holds when every colour objective rises significantly; refuted when more "
                   "fall than rise", len(colour), float(np.mean(d)))


def vgg_mostly_improves(entries: Sequence[Entry], method: str) -> Verdict:
    """Claim 2: most VGG objectives improve (binomial test of the share > ½), and single
    filters at pool5/fc6/fc7 have lower d than single filters elsewhere (Welch's t)."""
    vgg = _vgg(entries)
    if not vgg:
        return _untestable(2, method, "no VGG objective was evaluated")
    up, down = _count_changes([e.evaluation.change for e in vgg])
    share = scipy.stats.binomtest(up, len(vgg), 0.5, alternative="greater")
    most = (HOLDS if share.pvalue < LEVEL else REFUTED if down > len(vgg) / 2
            else NOT_REPRODUCED)
    single = [e for e in vgg if _k(e) == 1]
    sparse = _d([e for e in single if e.evaluation.objective["layer"] in SPARSE_LAYERS])
    dense = _d([e for e in single if e.evaluation.objective["layer"] not in SPARSE_LAYERS])
    parts = f"{up} of {len(vgg)} significant gains (binomial p = {_p(share.pvalue)})"
    if len(sparse) < 2 or len(dense) < 2:
        weak, weak_text = UNTESTABLE, (f"weak spot untestable: {len(sparse)} single filters at "
                                       f"pool5/fc6/fc7 and {len(dense)} elsewhere (2 each needed)")
        estimate = p = math.nan
    else:
        test = scipy.stats.ttest_ind(sparse, dense, equal_var=False)
        estimate, p = float(np.mean(sparse) - np.mean(dense)), float(test.pvalue)
        weak = _signed(estimate, p, -1)
        weak_text = (f"single-filter d at pool5/fc6/fc7 {_num(np.mean(sparse))} vs "
                     f"{_num(np.mean(dense))} elsewhere (Welch t = {_num(float(test.statistic))}, "
                     f"p = {_p(p)}): {weak}")
    return Verdict(2, method, _combine([most, weak]), f"{parts}: {most}; {weak_text}",
                   "holds when both parts hold", len(vgg), estimate, p=p)


def sets_more_consistent(entries: Sequence[Entry], method: str) -> Verdict:
    """Claim 3: d spreads less over 20-filter sets than over single filters
    (Brown–Forsythe: Levene's test about the median)."""
    vgg = _vgg(entries)
    single, sets = _d([e for e in vgg if _k(e) == 1]), _d([e for e in vgg if _k(e) > 1])
    if len(single) < 3 or len(sets) < 3:
        return _untestable(3, method, f"{len(single)} single filters and {len(sets)} filter "
                           "sets; the spread test needs 3 of each", len(single) + len(sets))
    test = scipy.stats.levene(single, sets, center="median")
    ratio = float(np.std(sets, ddof=1) / np.std(single, ddof=1))
    verdict = _signed(ratio - 1, float(test.pvalue), -1)
    return Verdict(3, method, verdict,
                   f"SD of d: sets {_num(float(np.std(sets, ddof=1)))} vs single "
                   f"{_num(float(np.std(single, ddof=1)))} (ratio {_num(ratio)}), "
                   f"Brown–Forsythe W = {_num(float(test.statistic))}, p = {_p(test.pvalue)}, "
                   f"n = {len(single)} + {len(sets)}",
                   "holds when sets spread significantly less", len(single) + len(sets),
                   ratio, p=float(test.pvalue))


def decline_with_layer(entries: Sequence[Entry], method: str) -> Verdict:
    """Claim 4: d of filter sets regressed on the layer's index (pool1 = 0 … fc8 = 7),
    controlling for initial SD and zero share."""
    sets = [e for e in _vgg(entries) if _k(e) > 1]
    if len({e.evaluation.objective["layer"] for e in sets}) < 2:
        return _untestable(4, method, f"filter sets at {len(sets)} evaluations in fewer than "
                           "two layers", len(sets))
    training = [e.evaluation.training_set for e in sets]
    return _fit(4, method, _d(sets), "layer",
                {"layer": [LAYERS.index(e.evaluation.objective["layer"]) for e in sets],
                 "initial_sd": [t.sd for t in training],
                 "zero_share": [t.zero_share for t in training]}, -1, -0.13)


def sd_predicts_gain(entries: Sequence[Entry], method: str) -> Verdict:
    """Claim 5: ΔPIR on the initial SD, controlling for initial mean and zero share (A.2)."""
    training = [e.evaluation.training_set for e in entries]
    verdict = _fit(5, method, [e.evaluation.change.delta for e in entries], "initial_sd",
                   {"initial_sd": [t.sd for t in training],
                    "initial_mean": [t.mean for t in training],
                    "zero_share": [t.zero_share for t in training]}, 1, 0.99)
    if verdict.verdict == UNTESTABLE:
        return verdict
    alone = ols([e.evaluation.change.delta for e in entries],
                {"initial_sd": [t.sd for t in training]})
    return replace(verdict, statistic=f"{verdict.statistic}; SD alone R² = {_num(alone.r2)} "
                                      "(paper ~0.5)")


def underestimates_gain(entries: Sequence[Entry], method: str) -> Verdict:
    """Claim 6: true ΔPIR on predicted ΔPIR (A.1); the claim is β > 1, tested by the CI."""
    found = _fit(6, method, [e.evaluation.change.delta for e in entries], "predicted_delta",
                 {"predicted_delta": [e.evaluation.predicted.delta for e in entries]}, 1,
                 1.67)
    if found.verdict == UNTESTABLE:
        return found
    verdict = (HOLDS if found.low > 1 else REFUTED if found.high < 1 else NOT_REPRODUCED)
    return replace(found, verdict=verdict,
                   why="holds when the 95 % CI of β lies above 1 (the estimator "
                       "under-predicts), refuted when below 1; " + found.why.split("; ", 1)[1])


def _after_scores(entry: Entry) -> np.ndarray | None:
    """The true PIRs of an evaluation's ``after`` set, from its per-image scores file."""
    if entry.evaluation.scores is None:
        return None
    path = entry.path.parent / entry.evaluation.scores
    if not path.is_file():
        return None
    with open(path) as f:
        return np.array([float(r["true_pir"]) for r in csv.DictReader(f) if r["set"] == "after"])


def second_round(entries: Sequence[Entry], method: str) -> Verdict:
    """Claim 7 (A.3): per objective tuned twice, round 2's samples against round 1's.

    Both rounds are evaluated against the same untuned samples, so the second
    round's own gain is the change from round 1's ``after`` set to round 2's
    (Welch's t at the evaluation's α, Cohen's d; per-image scores files). pool2
    holds when every pool2 objective gains significantly and each gain's d is
    below the first round's d; fc8 holds when at least one fc8 objective falls
    significantly, and is refuted when every one rises significantly.
    """
    lines = [group for group in iterated(entries).values()
             if group[0].evaluation.objective.get("layer") in ("pool2", "fc8")]
    steps: dict[str, list[tuple[str, Change, float]]] = {"pool2": [], "fc8": []}
    for group in lines:
        first = next((e for e in group if e.evaluation.round == 1), None)
        second = next((e for e in group if e.evaluation.round == 2), None)
        if first is None or second is None:
            continue
        before, after = _after_scores(first), _after_scores(second)
        if before is None or after is None:
            continue
        steps[first.evaluation.objective["layer"]].append(
            (first.name, mean_change(before, after, first.evaluation.change.alpha),
             first.evaluation.change.cohens_d))
    if not steps["pool2"] or not steps["fc8"]:
        return _untestable(7, method, f"second rounds with per-image scores: "
                           f"{len(steps['pool2'])} at pool2, {len(steps['fc8'])} at fc8 "
                           "(one of each needed)", len(steps["pool2"]) + len(steps["fc8"]))
    pool2_up, pool2_down = _count_changes([c for _, c, _ in steps["pool2"]])
    smaller = all(c.cohens_d < d1 for _, c, d1 in steps["pool2"])
    pool2 = (HOLDS if pool2_up == len(steps["pool2"]) and smaller
             else REFUTED if pool2_down else NOT_REPRODUCED)
    fc8_up, fc8_down = _count_changes([c for _, c, _ in steps["fc8"]])
    fc8 = HOLDS if fc8_down else REFUTED if fc8_up == len(steps["fc8"]) else NOT_REPRODUCED

    def show(layer: str) -> str:
        return ", ".join(f"{name} d {_num(d1)} then {_num(c.cohens_d):s} (p {_p(c.welch.p)})"
                         for name, c, d1 in steps[layer])

    return Verdict(7, method, _combine([pool2, fc8]),
                   f"pool2: {pool2_up} of {len(steps['pool2'])} gain again ({show('pool2')}): "
                   f"{pool2}; fc8: {fc8_down} of {len(steps['fc8'])} fall ({show('fc8')}): {fc8}",
                   "round 1's d, then round 2's own d over round 1's samples; holds when both "
                   "parts hold", len(steps["pool2"]) + len(steps["fc8"]))


def more_colours_harder(entries: Sequence[Entry], method: str) -> Verdict:
    """Claim 8: at one tuning budget, d falls with the number of colours: the objectives
    with more colours would need more steps to reach the same gain."""
    colour = _colour(entries)
    counts = [len(e.evaluation.objective["colours"]) for e in colour]
    budgets = {str({k: v for k, v in e.evaluation.tuning.items() if k != "tuned_from"})
               for e in colour}
    if len(set(counts)) < 2:
        return _untestable(8, method, f"colour objectives with {sorted(set(counts))} colours; "
                           "two counts needed", len(colour))
    if len(budgets) > 1:
        return _untestable(8, method, "the colour objectives were tuned with different "
                           "settings; the test needs one budget", len(colour))
    found = _fit(8, method, _d(colour), "colours", {"colours": counts}, -1)
    d, n_colours = np.array(_d(colour)), np.array(counts)
    means = ", ".join(f"{n} colour{'s' if n > 1 else ''} d {_num(float(d[n_colours == n].mean()))}"
                      for n in sorted(set(counts)))
    return replace(found, statistic=f"{found.statistic}; {means}")


def third_colour_trick(entries: Sequence[Entry], method: str) -> Verdict:
    """Claim 9: every two-colour objective's untargeted colour loses share (Welch's t at α)."""
    pairs = [e for e in _colour(entries) if len(set(e.evaluation.objective["colours"])) == 2]
    scored = [e for e in pairs if e.evaluation.channels is not None]
    if not scored:
        return _untestable(9, method, f"{len(pairs)} two-colour objectives, none with the "
                           "colour shares (evaluations written before `channels`)"
                           if pairs else "no two-colour objective was evaluated")
    changes = []
    for e in scored:
        (third,) = set(CHANNELS) - set(e.evaluation.objective["colours"])
        changes.append((e.name, third, e.evaluation.channels[third]))
    up, down = _count_changes([c for _, _, c in changes])
    verdict = (HOLDS if down == len(changes) else REFUTED if up > down else NOT_REPRODUCED)
    return Verdict(9, method, verdict,
                   "; ".join(f"{name}: {third} share {c.delta:+.4f} (d {_num(c.cohens_d)}, "
                             f"p {_p(c.welch.p)})" for name, third, c in changes),
                   "holds when every two-colour objective's third colour falls significantly",
                   len(changes), float(np.mean([c.cohens_d for _, _, c in changes])))


def zeros_go_with_failure(entries: Sequence[Entry], method: str) -> Verdict:
    """Claim 10 (Fig. 8): d of VGG objectives on the share of near-zero PIRs."""
    vgg = _vgg(entries)
    if not vgg:
        return _untestable(10, method, "no VGG objective was evaluated")
    shares = [e.evaluation.training_set.zero_share for e in vgg]
    if np.ptp(shares) == 0:
        return _untestable(10, method, f"the share of near-zero PIRs is {shares[0]:g} for "
                           f"every one of {len(vgg)} VGG objectives: nothing to regress on",
                           len(vgg))
    return _fit(10, method, _d(vgg), "zero_share", {"zero_share": shares}, -1)


JUDGES: dict[int, Callable[[Sequence[Entry], str], Verdict]] = {
    1: colour_improves, 2: vgg_mostly_improves, 3: sets_more_consistent,
    4: decline_with_layer, 5: sd_predicts_gain, 6: underestimates_gain, 7: second_round,
    8: more_colours_harder, 9: third_colour_trick, 10: zeros_go_with_failure,
}


def by_method(entries: Sequence[Entry]) -> dict[str, list[Entry]]:
    """The entries of each tuning method, the paper's (gradient) first."""
    groups: dict[str, list[Entry]] = {}
    for entry in entries:
        groups.setdefault(method_of(entry.evaluation), []).append(entry)
    return dict(sorted(groups.items(), key=lambda item: (item[0] != "gradient", item[0])))


def judge(entries: Sequence[Entry]) -> list[Verdict]:
    """Every claim's verdict for every method in ``entries``, claim by claim.

    Claim 7 reads every round; the others read round 1 (the paper's first tuning).
    """
    verdicts = []
    for method, group in by_method(entries).items():
        first = [e for e in group if e.evaluation.round == 1]
        for number, judge_one in JUDGES.items():
            verdicts.append(judge_one(group if number == 7 else first, method))
    return sorted(verdicts, key=lambda v: v.claim)


def claims_markdown(verdicts: Sequence[Verdict]) -> list[str]:
    """The claims table (a column per method) and each verdict's figures and reason."""
    if not verdicts:
        return ["No evaluations: no claim can be judged."]
    methods = list(dict.fromkeys(v.method for v in verdicts))
    table = {(v.claim, v.method): v for v in verdicts}
    lines = ["| # | claim | the paper | " + " | ".join(f"tune={m}" for m in methods) + " |",
             "|---:|---|---|" + "---|" * len(methods)]
    for number, claim in CLAIMS.items():
        cells = [f"**{table[number, m].verdict}**" if (number, m) in table else "n/a"
                 for m in methods]
        lines.append(f"| {number} | {claim.text} | {claim.paper} | {' | '.join(cells)} |")
    lacking = sorted({v.claim for v in verdicts if v.verdict == UNTESTABLE})
    lines += ["", "Rules: **holds** when the statistic has the paper's sign and its test is "
              f"significant (p < {LEVEL}; per-objective changes at the evaluation's α), "
              "**refuted** when significant the other way, **not reproduced** when neither, "
              "**not testable at this scale** when the data are lacking "
              "(`pirtune.report.claims`).", "",
              "Lacking data for claims: " + (", ".join(map(str, lacking)) if lacking
                                             else "none") + "."]
    for number, claim in CLAIMS.items():
        lines += ["", f"**{number}. {claim.text}.** Test: {claim.test}. The paper: "
                  f"{claim.paper}."]
        lines += [f"- tune={v.method}: **{v.verdict}**: {v.statistic} ({v.why})"
                  for m in methods if (v := table.get((number, m)))]
    return lines


def verdict_rows(verdicts: Sequence[Verdict]) -> list[dict]:
    """One flat row per verdict (the bench's CSV)."""
    return [{"claim": v.claim, "method": v.method, "verdict": v.verdict, "text": v.text,
             "paper": v.paper, "test": v.test, "statistic": v.statistic, "why": v.why,
             "n": v.n, "estimate": v.estimate, "low": v.low, "high": v.high, "p": v.p}
            for v in verdicts]


def find_verdicts(root: Path) -> list[Verdict]:
    """The verdicts over every evaluation under ``root``."""
    from pirtune.report.entries import find_entries

    return judge(find_entries(root))
