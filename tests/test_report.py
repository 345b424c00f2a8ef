"""pirtune-report on synthetic evaluations: sections, figures, table, regressions, CLI."""

from __future__ import annotations

import dataclasses
import logging
import re
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torchvision.utils import save_image

from pirtune import report
from pirtune.evaluation import Evaluation, TrainingSet, load_evaluations, write_evaluation
from pirtune.paths import CONFIG_DIR
from pirtune.stats import mean_change


def colour(*colours: str) -> dict:
    return {"name": "color_" + "_".join(colours), "kind": "colour", "colours": list(colours)}


def vgg(layer: str, k: int = 1, weights: str = "imagenet") -> dict:
    name = f"vgg_{layer}_f3" if k == 1 else f"vgg_{layer}_k{k}_s0"
    return {"name": name, "kind": "vgg", "layer": layer, "filters": list(range(3, 3 + k)),
            "k": k, "seed": 0, "weights": weights}


# objective, true shift, estimated shift, training set (mean, SD, zero share)
FIRST_ROUND = [
    (colour("blue"), 0.10, 0.06, (0.30, 0.05, 0.00)),
    (colour("red", "blue"), 0.06, 0.05, (0.25, 0.10, 0.10)),
    (vgg("pool2"), 0.08, 0.03, (0.40, 0.15, 0.05)),
    (vgg("fc8"), 0.03, 0.02, (0.20, 0.20, 0.30)),
    (vgg("fc7", k=20), 0.05, 0.04, (0.35, 0.12, 0.02)),
    (vgg("pool5"), 0.00, 0.01, (0.10, 0.08, 0.90)),  # not significant
]


def make_evaluation(objective: dict, shift: float, predicted_shift: float,
                    training: tuple[float, float, float], round: int = 1,
                    seed: int = 0) -> Evaluation:
    rng = np.random.default_rng(seed)
    mean, sd, zero_share = training
    return Evaluation(
        objective=objective, round=round, scale="cpu", estimator_backbone="small_cnn",
        change=mean_change(rng.normal(0.3, 0.1, 200), rng.normal(0.3 + shift, 0.1, 200)),
        predicted=mean_change(rng.normal(0.2, 0.05, 200),
                              rng.normal(0.2 + predicted_shift, 0.05, 200)),
        training_set=TrainingSet(n=100, mean=mean, sd=sd, zero_share=zero_share),
        generator_before="acgan.pt", generator_after="tuned.pt",
        grids={"before": "eval_before.png", "after": "eval_after.png"},
        tuning={"steps": 20, "w_pir": 1000.0, "lr": 1e-6},
    )


def write_run(folder: Path, evaluation: Evaluation, grids: bool) -> Path:
    folder.mkdir(parents=True)
    if grids:
        for name in evaluation.grids.values():
            save_image(torch.rand(4, 3, 8, 8), folder / name, nrow=2)
    return write_evaluation(evaluation, folder / "evaluation.json")


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A sweep folder whose jobs link their runs, one objective iterated, one run linked twice."""
    runs, sweep = tmp_path / "runs", tmp_path / "multirun"
    for i, (objective, *numbers) in enumerate(FIRST_ROUND):
        run = runs / f"cpu-{objective['name']}"
        write_run(run, make_evaluation(objective, *numbers, seed=i),
                  grids=objective["kind"] == "colour")
        (sweep / str(i)).mkdir(parents=True)
        (sweep / str(i) / "run").symlink_to(run, target_is_directory=True)
    (sweep / "6").mkdir()
    (sweep / "6" / "run").symlink_to(runs / "cpu-color_blue", target_is_directory=True)
    write_run(runs / "cpu-vgg_pool2_f3" / "round2",
              make_evaluation(vgg("pool2"), 0.04, 0.02, (0.45, 0.16, 0.04), round=2, seed=9),
              grids=False)
    return sweep


def sections(markdown: str) -> dict[str, str]:
    """Body of each ``##`` section by its heading line."""
    parts = re.split(r"^(## .*)$", markdown, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def links(markdown: str) -> list[str]:
    return [urllib.parse.unquote(target) for target in re.findall(r"!\[[^]]*\]\(([^)]+)\)",
                                                                   markdown)]


def table_rows(body: str) -> list[list[str]]:
    rows = [line.strip("|").split(" | ") for line in body.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows[1:]]  # without the header


def first_round_evaluations(root: Path) -> list[report.Entry]:
    return report.first_round(report.find_entries(root))


def test_report_has_every_section_and_figure(sweep):
    path = report.write_report(sweep)
    assert path == sweep / "report.md"
    markdown = path.read_text()
    assert markdown.startswith("# PIR report: multirun")
    assert list(sections(markdown)) == list(report.HEADINGS.values())
    figures = sorted((sweep / "report").glob("*.png"))
    assert [p.name for p in figures] == sorted(report.FIGURES.values())
    targets = links(markdown)
    for figure in figures:
        assert f"report/{figure.name}" in targets
    # Every image link resolves from the sweep folder, the grids through the jobs' links.
    assert all((sweep / target).is_file() for target in targets)
    grid_links = [t for t in targets if t.endswith(("eval_before.png", "eval_after.png"))]
    assert sorted(grid_links) == [f"{i}/run/eval_{when}.png"
                                  for i in (0, 1) for when in ("after", "before")]
    header = sections(markdown)[report.HEADINGS["run"]]
    assert "CPU-sized" in header and "`small_cnn`" in header and "ImageNet" in header
    assert "6 objectives, rounds 1, 2: 7 evaluations" in header and "α = 0.001" in header
    assert "iterations=2" not in sections(markdown)[report.HEADINGS["6"]]
    # No run of the sweep scored its generators: the section says where the figures come from.
    assert "No quality.json was found" in sections(markdown)[report.HEADINGS["quality"]]


def test_two_runs_of_one_objective_are_told_apart(tmp_path):
    for i, seed in enumerate((0, 1)):
        evaluation = make_evaluation(colour("blue"), 0.1, 0.05, (0.3, 0.05, 0.0), seed=i)
        evaluation = dataclasses.replace(evaluation, run=f"cpu-color_blue-s{seed}",
                                         seeds={"seed": seed, "evaluate": 1000})
        write_run(tmp_path / f"s{seed}", evaluation, grids=False)
    markdown = report.write_report(tmp_path).read_text()
    assert "- Seeds: evaluate 1000; seed 0, 1" in sections(markdown)[report.HEADINGS["run"]]
    rows = table_rows(sections(markdown)[report.HEADINGS["table"]])
    assert sorted(row[-1] for row in rows) == ["cpu-color_blue-s0", "cpu-color_blue-s1"]


def test_table_has_one_row_per_evaluation_with_its_numbers(sweep):
    markdown = report.write_report(sweep).read_text()
    rows = table_rows(sections(markdown)[report.HEADINGS["table"]])
    # color_blue is linked by two jobs but is one evaluation.
    evaluations = {(e.objective["name"], e.round): e
                   for path, e in load_evaluations(sweep) if "multirun" in str(path)}
    assert len(rows) == len(evaluations) == 7
    assert {(row[0], int(row[2])) for row in rows} == set(evaluations)
    for row in rows:
        change = evaluations[row[0], int(row[2])].change
        assert float(row[4]) == pytest.approx(change.cohens_d, abs=5e-4)
        assert float(row[7]) == pytest.approx(change.welch.p, rel=5e-3)
        assert row[8] == ("yes" if change.significant else "no")
    assert rows[0][:3] == ["color_blue", "colour / 1 colour", "1"]
    # Panels in the paper's order: colour, single VGG filters by layer, then k filters.
    assert [row[0] for row in rows] == ["color_blue", "color_red_blue", "vgg_pool2_f3",
                                        "vgg_pool2_f3", "vgg_pool5_f3", "vgg_fc8_f3",
                                        "vgg_fc7_k20_s0"]
    assert "no" in {row[8] for row in rows} and "yes" in {row[8] for row in rows}


def test_variability_fit_matches_numpy_least_squares(sweep):
    entries = first_round_evaluations(sweep)
    fit = report.variability_fit(entries)
    sets = [e.evaluation.training_set for e in entries]
    X = np.column_stack([np.ones(len(sets)), [s.sd for s in sets], [s.mean for s in sets],
                         [s.zero_share for s in sets]])
    y = np.array([e.evaluation.change.delta for e in entries])
    beta, rss, *_ = np.linalg.lstsq(X, y, rcond=None)
    df = len(y) - X.shape[1]
    se = np.sqrt(rss[0] / df * np.diag(np.linalg.inv(X.T @ X)))
    t = beta / se
    assert fit.n == 6 and list(fit.coefficients) == ["intercept", "initial_sd", "initial_mean",
                                                     "zero_share"]
    assert [c.beta for c in fit.coefficients.values()] == pytest.approx(beta, rel=1e-9)
    assert [c.t for c in fit.coefficients.values()] == pytest.approx(t, rel=1e-9)
    assert [c.p for c in fit.coefficients.values()] == pytest.approx(
        2 * scipy.stats.t.sf(np.abs(t), df), rel=1e-9)
    assert fit.r2 == pytest.approx(1 - rss[0] / ((y - y.mean()) ** 2).sum())
    body = sections(report.write_report(sweep).read_text())[report.HEADINGS["5"]]
    assert f"| initial_sd | {beta[1]:.4f} | {t[1]:.2f} |" in body


def test_introspection_slope_matches_numpy(sweep):
    entries = first_round_evaluations(sweep)
    fit = report.introspection_fit(entries)
    slope, intercept = np.polyfit([e.evaluation.predicted.delta for e in entries],
                                  [e.evaluation.change.delta for e in entries], 1)
    assert fit.coefficients["predicted_delta"].beta == pytest.approx(slope, rel=1e-9)
    assert fit.coefficients["intercept"].beta == pytest.approx(intercept, rel=1e-9, abs=1e-12)
    body = sections(report.write_report(sweep).read_text())[report.HEADINGS["4"]]
    assert f"n = 6, R² = {fit.r2:.3f}): β = {slope:.3f}" in body


def test_iterated_objectives_are_paired_across_rounds(sweep):
    paths = report.iterated(report.find_entries(sweep))
    assert list(paths) == ["vgg_pool2_f3"]
    assert [e.evaluation.round for e in paths["vgg_pool2_f3"]] == [1, 2]


def test_a_single_evaluation_still_gives_every_section(tmp_path):
    run = tmp_path / "cpu-color_blue"
    write_run(run, make_evaluation(*FIRST_ROUND[0]), grids=False)
    markdown = report.write_report(run).read_text()
    body = sections(markdown)
    assert list(body) == list(report.HEADINGS.values())
    assert len(table_rows(body[report.HEADINGS["table"]])) == 1
    assert "no VGG objectives" in body[report.HEADINGS["run"]]
    assert "(no before grid)" in body[report.HEADINGS["3"]]
    assert "needs at least 3 points, and there is 1" in body[report.HEADINGS["4"]]
    assert "needs at least 5 points, and there is 1" in body[report.HEADINGS["5"]]
    assert "`iterations=2`" in body[report.HEADINGS["6"]]
    drawn = {p.name for p in (run / "report").glob("*.png")}
    assert drawn == set(report.FIGURES.values()) - {report.FIGURES["6"]}
    assert all((run / target).is_file() for target in links(markdown))


def test_cli_writes_the_report_and_prints_its_path(sweep, capsys):
    report.main([str(sweep)])
    assert capsys.readouterr().out == f"{sweep / 'report.md'}\n"
    assert (sweep / "report.md").is_file()


@pytest.mark.parametrize("make_dir", [False, True], ids=["missing", "without-evaluations"])
def test_cli_error_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, make_dir):
    target = tmp_path / "runs" / "nothing"
    if make_dir:
        target.mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(target)])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("pirtune-report: error: ")
    assert str(target) in captured.err
    assert (list(target.iterdir()) == []) if make_dir else not target.exists()


def test_sweep_callback_from_its_config_writes_one_report(sweep, tmp_path, caplog):
    callbacks = OmegaConf.load(CONFIG_DIR / "hydra" / "callbacks" / "report.yaml")
    callback = instantiate(callbacks.report)
    assert isinstance(callback, report.SweepReport)
    callback.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert (sweep / "report.md").is_file()
    empty = tmp_path / "empty-sweep"
    empty.mkdir()
    with caplog.at_level(logging.WARNING, logger="pirtune.report"):
        callback.on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(empty)}}}))
    assert "no evaluation.json" in caplog.text and list(empty.iterdir()) == []


def test_same_latents_show_each_scene_before_and_after(tiny_generator, tmp_path):
    """Every panel draws the same (z, c): a bundle against itself gives identical grids,
    a moved generator changes them, and the figure is written."""
    from torchvision.io import read_image

    from pirtune.models.bundle import draw, load_bundle
    from pirtune.report.figures import latent_grid, same_latents

    generator = load_bundle(tiny_generator)[0]
    images, labels = draw(generator, 6, seed=3)
    again, labels_again = draw(generator, 6, seed=3)
    assert torch.equal(images, again) and torch.equal(labels, labels_again)
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]          # balanced classes
    assert not torch.equal(images, draw(generator, 6, seed=4)[0])
    grid = latent_grid(tiny_generator, n=4, seed=0)
    assert torch.equal(grid, latent_grid(tiny_generator, n=4, seed=0))
    # A generator with other weights draws other images from the same latents.
    generator, discriminator, meta = load_bundle(tiny_generator)
    with torch.no_grad():
        for p in generator.parameters():
            p.add_(0.5)
    moved = tmp_path / "moved.pt"
    torch.save({**torch.load(tiny_generator, weights_only=False),
                "generator": generator.state_dict()}, moved)
    assert not torch.equal(grid, latent_grid(moved, n=4, seed=0))
    path = same_latents([(tiny_generator, "before"), (moved, "after")], tmp_path / "ba.png")
    picture = read_image(str(path))
    assert picture.shape[0] in (3, 4) and picture.shape[2] > picture.shape[1]   # side by side
