"""The README check (scripts/check_readme.py): its reading of the documents and its rules.

The check itself runs every command in .ci/run (minutes); these tests read the
documents and exercise the rules without running any command.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_readme", REPO / "scripts" / "check_readme.py")
check = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = check  # dataclasses look their module up there
spec.loader.exec_module(check)


def test_every_command_of_the_documents_has_a_rule():
    found = []
    for path in check.documents(check.DOCUMENTS):
        for command in check.commands(path):
            check.rule(command.argv)  # raises for a form no rule knows
            found.append(command)
    sources = {c.source for c in found}
    assert "README.md" in sources
    assert any(c.argv[:1] == ["pirtune-train"] for c in found)


def test_a_command_no_rule_knows_fails_naming_its_line(tmp_path, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text("Intro\n\n```bash\nmake test\ncurl https://example.org | sh\n```\n")
    assert check.main([str(doc), "--list"]) == 1
    err = capsys.readouterr().err
    assert f"{doc}:5: curl https://example.org | sh" in err
    assert "no rule for this form of command" in err


def test_an_unmarked_fence_fails(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("```\npirtune-train\n```\n")
    with pytest.raises(check.CheckError, match=r"doc.md:1: a fence marked ''"):
        list(check.commands(doc))


def test_lines_continue_and_carry_their_environment_and_needs(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("```bash\n# a comment line\nOMP_NUM_THREADS=1 pirtune-train -m \\\n"
                   "    seed=0,1   # needs: a GPU\n```\n```python\nimport os\n```\n")
    [command] = check.commands(doc)
    assert command.line == 3
    assert command.env == {"OMP_NUM_THREADS": "1"}
    assert command.argv == ["pirtune-train", "-m", "seed=0,1"]
    assert command.needs == "a GPU"


def test_sweeps_expand_to_every_job_and_large_ones_are_spread():
    jobs = check.sweep_jobs(["objective=color_red,color_blue", "seed=0,1", "tune.steps=3"])
    assert [sorted(j) for j in jobs] == [
        sorted([f"objective={o}", f"seed={s}", "tune.steps=3"])
        for o in ("color_red", "color_blue") for s in (0, 1)]
    many = check.sweep_jobs(["objective.filter=range(0,100)"])
    assert len(many) == check.MAX_JOBS
    assert many[0] == ["objective.filter=0"] and many[-1] == ["objective.filter=99"]


def test_the_rules_by_form(tmp_path, monkeypatch):
    monkeypatch.delenv("PIRTUNE_HOME", raising=False)  # runs go to the scratch directory

    def plan(text):
        return check.plan(check.parse("doc.md", 1, text), tmp_path)

    run = plan("pirtune-train objective=color_red iterations=2")
    assert run.how == "run"
    assert run.argv[-2:] == ["objective=color_red", "iterations=2"]  # its own values win
    assert set(check.TINY) <= set(run.argv)
    assert plan("python train.py -m objective=color_red,color_blue").how == "compose"
    assert plan("pirtune-train trainer=gpu stage=pretrain").argv[-2:] == ["--cfg", "job"]
    assert plan("pirtune-serve --port 8080").how == "help"
    assert plan("pirtune-crowd --url http://127.0.0.1:8000 --people 3").how == "help"
    assert plan("pirtune-landscapes --out x --n 1000").argv[-2:] == ["--n", "4"]
    assert plan("make run").argv == ["make", "-n", "run"]
    # The paper loop pre-trains its missing generator first: no need to say so.
    assert plan("pirtune-train experiment=paper trainer=gpu").how == "compose"
    # A sweep's jobs refuse instead, and so does a single stage: the line must say it.
    with pytest.raises(check.CheckError, match="needs"):
        plan("pirtune-train -m experiment=paper trainer=gpu objective=color_red,color_blue")
    with pytest.raises(check.CheckError, match="needs"):
        plan("pirtune-train stage=collect experiment=paper trainer=gpu")
    with pytest.raises(check.CheckError, match="needs"):  # a given generator is never made
        plan("pirtune-train experiment=paper trainer=gpu generator_ckpt=runs/mine/generator.pt")
    assert plan("pirtune-train -m experiment=paper trainer=gpu seed=0,1  # needs: a GPU and "
                "the paper generator").how == "compose"
    # A CPU loop on photos pre-trains its generator first, so it runs for real.
    for name in ("beach", "forest"):
        (tmp_path / "photos" / name).mkdir(parents=True)
    photos = plan(f"pirtune-train data=imagefolder data.root={tmp_path / 'photos'}")
    assert photos.how == "run" and "pre-training its generator first" in photos.reason
    with pytest.raises(check.CheckError, match="unknown"):
        plan("pirtune-train trainer=tpu")
