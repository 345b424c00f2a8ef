"""Check that every shell command in the README and docs/*.md works as written.

    .venv/bin/python scripts/check_readme.py          # README.md and docs/*.md (.ci/run)
    .venv/bin/python scripts/check_readme.py --list   # what each command gets; runs none

The convention the documents keep:

- A shell command lives in a fenced block marked ``bash``, one command per
  line; a trailing backslash continues it, and ``# ...`` after it is a comment.
  Every other fence must be marked ``python`` or ``text``, so no command hides
  in an unmarked block; those are not run.
- A command that needs something this check cannot provide (a GPU, a cluster,
  a pre-trained paper generator, a log of people's picks) says so at the end
  of its line: ``# needs: <what>``. The reader sees it; the check composes
  the command instead of running it.

How each command form is checked (``plan``; a form no rule knows fails the
check, so nothing is skipped silently). Commands run as a user with the
venv active would run them (its ``bin`` first on PATH), in a scratch
directory that holds links to the checkout's files, so whatever they write
(``runs/``, ``data/``) goes there and every command sees what the ones
before it in the same file wrote:

- ``pirtune-train``, ``python train.py``, ``python -m pirtune.train``: the
  overrides are checked for unknown group options and every job of a sweep
  (up to ``MAX_JOBS``, spread evenly) is composed and resolved in process
  (``compose_jobs``). The command then
  **runs for real** with ``TINY`` in front of its own overrides (its own
  values win) when it is one CPU job on one device with no placeholder
  (``<...>``, ``/path/to/``) and no ``needs:``; otherwise the command itself
  runs with ``--cfg job`` (its first job, for a sweep), which composes it
  through the console script and prints the config. A stage that reads a
  generator checkpoint that is not there fails unless the line says
  ``# needs:``, or the command is a loop of one job whose ``generator_ckpt``
  is what ``stage=pretrain`` with its settings writes (``experiment=paper``,
  photos in ``data.root``): ``pirtune-train`` pre-trains that one first
  (``pretrains_first``). A sweep's jobs do not, so a sweep needs the line.
- ``pirtune-landscapes``, ``pirtune-report``, ``pirtune-export``: run for
  real (``pirtune-landscapes`` with ``--n 4`` after its own arguments) unless
  they have a placeholder or ``needs:``; then ``--help``, and every
  ``--option`` the line uses must be in the help text.
- ``pirtune-serve`` (a server that runs until stopped) and ``pirtune-crowd``
  (which needs one): ``--help``, and every ``--option`` the line uses must be
  in the help text.
- ``python scripts/<name>.py``, ``.venv/bin/python scripts/<name>.py``
  (benchmarks and launchers that take minutes and write committed files):
  ``--help`` and its options, as above.
- ``make <target>``: ``make -n <target>`` (the target exists; nothing runs:
  ``make run`` and ``make test`` take minutes, and ``.ci/run`` runs
  ``make test`` itself).
- ``pytest ...`` (``.venv/bin/pytest``): ``--collect-only`` with its options.
  ``.venv/bin/<program>`` is the program in the venv the check runs in.
- ``source .venv/bin/activate``: the venv's activate script exists.
- ``VAR=value`` before any of these: set in the command's environment.

Real runs go one after another in the documents' order; the other checks
run ``--jobs`` (2) at a time beside them. Exit status 1 names the file and
line of every command that failed, with the end of its output.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = ["README.md", "docs/*.md"]
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
NOT_COMMANDS = {"python", "text"}  # fences that hold no shell commands
NEEDS = re.compile(r"#\s*needs:\s*(.+)$")
PLACEHOLDER = re.compile(r"<[^>]*>|/path/to/")
TRAIN_FORMS = (["pirtune-train"], ["python", "train.py"], ["python", "-m", "pirtune.train"])
# A run of seconds: every count that sizes a stage, shrunk. The command's own
# overrides come after these, so what the command sets is what runs.
TINY = [
    "pretrain.iterations=2", "pretrain.checkpoint_every=1", "pretrain.sample_every=1",
    "pretrain.quality_samples=8", "sample.per_class=2",
    "data.num_images=32", "data.batch_size=8", "data.cache_dir=null",
    "collect.num_images=16", "collect.impressions=20", "collect.batch_size=8",
    "estimator.epochs=1", "estimator.batch_size=8",
    "tune.steps=2", "tune.checkpoint_every=1",
    "evaluate.num_samples=16", "evaluate.batch_size=8",
    "quality.samples=16", "quality.kid_subsets=5", "quality.batch_size=16",
    "logger=csv", "progress=false",
]
SECONDS = 600  # the most any one command may take
MAX_JOBS = 8   # jobs of one sweep composed (spread evenly; a sweep may have hundreds)


@dataclass
class Command:
    """One shell command of a document: where it is, its words and its environment."""

    source: str
    line: int
    text: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    needs: str | None = None

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass
class Step:
    """What the check does with a command: ``argv`` in ``cwd``, and why."""

    how: str          # run, compose, help, dry-run, collect, exists
    argv: list[str]
    reason: str
    in_scratch: bool = True
    options: list[str] = field(default_factory=list)  # must appear in the output (help)
    exists: Path | None = None


class CheckError(Exception):
    """A command the check cannot accept (unknown form, unmarked need, bad block)."""


# -- reading the documents ---------------------------------------------------------------

def commands(path: Path) -> Iterator[Command]:
    """Every command of ``path``'s ``bash`` blocks; an unmarked fence is an error."""
    source = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
    lines = path.read_text().splitlines()
    fence: str | None = None
    pending, start = "", 0
    for number, line in enumerate(lines, 1):
        match = FENCE.match(line)
        if match and fence is None:
            fence = match.group(2)
            if fence != "bash" and fence not in NOT_COMMANDS:
                raise CheckError(f"{source}:{number}: a fence marked '{fence}'; mark it bash "
                                 f"(commands) or one of {sorted(NOT_COMMANDS)}")
            continue
        if match and not match.group(2):
            fence = None
            continue
        if fence != "bash":
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        if text and not text.startswith("#"):
            yield parse(source, start, text)
    if fence is not None:
        raise CheckError(f"{source}: a fence is never closed")


def parse(source: str, line: int, text: str) -> Command:
    """Split a command line into its environment, words and ``needs:`` note."""
    needs = NEEDS.search(text)
    words = shlex.split(text, comments=True)
    env = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    return Command(source, line, text, words, env, needs.group(1).strip() if needs else None)


# -- what each form gets -----------------------------------------------------------------

def train_args(argv: list[str]) -> list[str] | None:
    """The overrides of a training command, or None when it is not one."""
    for form in TRAIN_FORMS:
        if argv[: len(form)] == form:
            return argv[len(form):]
    return None


def sweep_jobs(args: list[str]) -> list[list[str]]:
    """Each job's overrides: discrete sweeps expanded, an interval taken at its start.

    A sweep of more than ``MAX_JOBS`` jobs gives that many, spread evenly over
    its jobs, the first and the last included.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep

    choices = []
    for override in OverridesParser.create().parse_overrides(args):
        key = override.get_key_element()
        if not override.is_sweep_override():
            choices.append([override.input_line])
        elif isinstance(override.value(), IntervalSweep):
            choices.append([f"{key}={override.value().start}"])
        else:
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
    jobs = [list(job) for job in itertools.product(*choices)]
    if len(jobs) <= MAX_JOBS:
        return jobs
    spread = {round(i * (len(jobs) - 1) / (MAX_JOBS - 1)) for i in range(MAX_JOBS)}
    return [jobs[i] for i in sorted(spread)]


def compose_jobs(args: list[str], scratch: Path) -> list:
    """Compose and resolve every job of a training command in process; return the configs.

    The same checks ``pirtune-train`` makes before a stage runs: group options
    that exist, Hydra's composition over the typed schema, and the typed
    sections (``pirtune.compose.settings``).
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    from pirtune.compose import check_group_overrides, register_resolvers, settings
    from pirtune.errors import UsageError
    from pirtune.paths import CONFIG_DIR

    register_resolvers()
    try:
        check_group_overrides(args)
    except UsageError as err:
        raise CheckError(f"pirtune-train: error: {err}") from err
    configs = []
    cwd = os.getcwd()
    os.chdir(scratch)  # relative paths (runs/...) resolve where the command runs
    try:
        for job in sweep_jobs(args):
            with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
                cfg = compose(config_name="train", overrides=job, return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)
            mode = str(cfg.hydra.mode)
            with open_dict(cfg):
                del cfg["hydra"]
            try:
                settings(cfg)
            except UsageError as err:
                raise CheckError(f"pirtune-train: error: {err}") from err
            configs.append((OmegaConf.to_container(cfg, resolve=True), mode))
    finally:
        os.chdir(cwd)
    return configs


def pretrains_first(overrides: list[str], generator: str, scratch: Path) -> bool:
    """True when ``generator`` is the bundle ``stage=pretrain`` with the same settings writes.

    Then ``pirtune-train``'s loop pre-trains it first when it is missing
    (``pirtune.train.run``); any other missing generator stops the command.
    """
    from pirtune.stages.rundir import BUNDLE_NAME

    first = [a for a in sweep_jobs(overrides)[0] if a.partition("=")[0].lstrip("+") != "stage"]
    [(pretraining, _)] = compose_jobs([*first, "stage=pretrain"], scratch)
    bundle = scratch / pretraining["run_dir"] / BUNDLE_NAME
    return bundle.resolve() == (scratch / generator).resolve()


def rule(argv: list[str]) -> str:
    """The name of the rule for a command's form; a form no rule knows is an error."""
    if train_args(argv) is not None:
        return "train"
    program = argv[0] if argv else ""
    if program in ("pirtune-landscapes", "pirtune-report", "pirtune-export", "pirtune-serve",
                   "pirtune-crowd"):
        return program
    if (Path(program).name == "python" and len(argv) > 1
            and re.fullmatch(r"scripts/[\w/]+\.py", argv[1])):
        return "script"
    if program == "make" and len(argv) == 2:
        return "make"
    if Path(program).name == "pytest":
        return "pytest"
    if argv == ["source", ".venv/bin/activate"]:
        return "activate"
    raise CheckError(f"no rule for this form of command: {' '.join(argv[:3])} …; "
                     "add one to scripts/check_readme.py (rule and plan)")


def plan(command: Command, scratch: Path) -> Step:
    """What the check does with ``command`` (see the module docstring); unknown forms fail."""
    argv = command.argv
    kind = rule(argv)
    placeholder = next((a for a in argv if PLACEHOLDER.search(a)), None)
    options = [a.split("=")[0] for a in argv if a.startswith("--")]
    if kind == "train":
        args = train_args(argv)
        multirun = bool({"-m", "--multirun"} & set(args))
        overrides = [a for a in args if a not in ("-m", "--multirun")]
        configs = compose_jobs(overrides, scratch)
        cfg, mode = configs[0]
        multirun = multirun or mode.endswith("MULTIRUN")
        generator = cfg.get("generator_ckpt")
        reads_generator = cfg["stage"] != "pretrain"
        missing = (reads_generator and generator and not PLACEHOLDER.search(str(generator))
                   and not (scratch / generator).exists())
        pretrains = (missing and not multirun and cfg["stage"] == "loop"
                     and pretrains_first(overrides, generator, scratch))
        if missing and not pretrains and not command.needs:
            raise CheckError(f"{cfg['stage']} reads generator_ckpt={generator}, which is not "
                             "there; say what the command needs: '# needs: <what>'")
        trainer = cfg["trainer"]
        why_not = (
            f"needs {command.needs}" if command.needs
            else f"placeholder {placeholder}" if placeholder
            else f"a sweep of {len(configs)} job(s)" if multirun
            else f"trainer.accelerator={trainer['accelerator']}" if trainer["accelerator"] != "cpu"
            else f"trainer.devices={trainer['devices']}" if trainer["devices"] != 1
            else None)
        form = argv[: len(argv) - len(args)]
        if why_not is None:
            return Step("run", [*form, *TINY, *overrides], "one CPU job: a tiny real run"
                        + (", pre-training its generator first" if pretrains else ""))
        first = sweep_jobs(overrides)[0]
        return Step("compose", [*form, *first, "--cfg", "job"], why_not)
    program = argv[0]
    if kind in ("pirtune-landscapes", "pirtune-report", "pirtune-export"):
        if command.needs or placeholder:
            reason = f"needs {command.needs}" if command.needs else f"placeholder {placeholder}"
            return Step("help", [program, "--help"], reason, options=options)
        extra = ["--n", "4"] if program == "pirtune-landscapes" else []
        return Step("run", [*argv, *extra], "a real run" + (" of 4 images" if extra else ""))
    if kind == "pirtune-serve":
        return Step("help", [program, "--help"], "a server runs until stopped", options=options)
    if kind == "pirtune-crowd":
        return Step("help", [program, "--help"], "it needs a running pirtune-serve",
                    options=options)
    if kind == "script":
        return Step("help", argv[:2] + ["--help"], "a script that takes minutes",
                    in_scratch=False, options=options)
    if kind == "make":
        return Step("dry-run", ["make", "-n", argv[1]], "make targets take minutes",
                    in_scratch=False)
    if kind == "pytest":
        return Step("collect", [program, *argv[1:], "--collect-only", "-q"],
                    "the suite itself runs in make test", in_scratch=False)
    venv = Path(sys.executable).parent.parent  # kind == "activate"
    return Step("exists", [], "activation", exists=venv / "bin" / "activate")


# -- running -----------------------------------------------------------------------------

def scratch_dir(root: Path) -> Path:
    """A directory that looks like the checkout (links to its files) but keeps new files."""
    for entry in REPO.iterdir():
        if entry.name not in {"runs", "data", ".cache", "outputs", "multirun", ".git"}:
            (root / entry.name).symlink_to(entry)
    return root


def environment(command: Command, scratch: Path) -> dict[str, str]:
    """The environment of a user with the venv active, plus the command's own variables."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "VIRTUAL_ENV": str(bin_dir.parent), "WANDB_MODE": "offline",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.update(command.env)
    return env


def execute(command: Command, step: Step, scratch: Path) -> str | None:
    """Carry out ``step``; return None on success, or what went wrong."""
    if step.how == "exists":
        return None if step.exists.is_file() else f"{step.exists} does not exist"
    env = environment(command, scratch)
    argv = list(step.argv)
    if argv[0].startswith(".venv/bin/"):  # the venv this check runs in is the user's .venv
        argv[0] = str(Path(sys.executable).parent / Path(argv[0]).name)
    program = shutil.which(argv[0], path=env["PATH"])
    if program is None:
        return f"{step.argv[0]}: command not found (is the venv set up? make test)"
    try:
        done = subprocess.run(argv, cwd=scratch if step.in_scratch else REPO, env=env,
                              capture_output=True, text=True, timeout=SECONDS)
    except subprocess.TimeoutExpired:
        return f"took more than {SECONDS} s"
    output = done.stdout + done.stderr
    if done.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        return f"exit status {done.returncode}:\n{tail}"
    missing = [o for o in step.options if o not in output]
    if missing:
        return f"{step.argv[0]} has no option {', '.join(missing)}"
    return None


def documents(names: list[str]) -> list[Path]:
    """The documents to check, README.md first."""
    paths: list[Path] = []
    for name in names:
        found = sorted(REPO.glob(name)) if any(c in name for c in "*?[") else [Path(name)]
        paths += [p if p.is_absolute() else REPO / p for p in found]
    return paths


def report(command: Command, step: Step, problem: str | None, seconds: float) -> str | None:
    """Print one command's outcome; return the failure message, or None."""
    status = "ok  " if problem is None else "FAIL"
    print(f"{status} {step.how:8} {seconds:5.1f} s {command.where}: {command.text}  "
          f"[{step.reason}]", flush=True)
    if problem is None:
        return None
    print("    " + problem.replace("\n", "\n    "), flush=True)
    return f"{command.where}: {command.text}\n    " + problem.replace("\n", "\n    ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("documents", nargs="*", default=DOCUMENTS)
    parser.add_argument("--list", action="store_true", help="say what each command gets; run none")
    parser.add_argument("--jobs", type=int, default=2,
                        help="checks that only compose or ask for --help, run side by side")
    args = parser.parse_args(argv)
    failures: list[str] = []
    begin = time.perf_counter()
    os.environ.pop("PIRTUNE_HOME", None)  # runs go to ./runs of each scratch directory

    def timed(command: Command, step: Step, scratch: Path) -> tuple[str | None, float]:
        start = time.perf_counter()
        return execute(command, step, scratch), time.perf_counter() - start

    # Real runs go one after another, in the documents' order (a command may read
    # what an earlier one wrote); the other checks read nothing a command writes.
    with (tempfile.TemporaryDirectory(prefix="readme-check-") as tmp,
          ThreadPoolExecutor(max_workers=args.jobs) as pool):
        pending = []
        for path in documents(args.documents):
            scratch = Path(tmp) / f"{len(list(Path(tmp).iterdir()))}-{path.stem}"
            scratch.mkdir()
            scratch_dir(scratch)
            try:
                found = list(commands(path))
            except CheckError as err:
                failures.append(str(err))
                print(f"FAIL {err}")
                continue
            for command in found:
                try:
                    step = plan(command, scratch)
                except Exception as err:  # a rule refused it, or Hydra could not compose it
                    why = str(err).replace("\n", "\n    ")
                    failures.append(f"{command.where}: {command.text}\n    {why}")
                    print(f"FAIL {command.where}: {command.text}\n    {why}")
                    continue
                if args.list:
                    print(f"{step.how:8} {command.where}: {command.text}  [{step.reason}]")
                elif step.how == "run":
                    failures.append(report(command, step, *timed(command, step, scratch)))
                else:
                    pending.append((command, step, pool.submit(timed, command, step, scratch)))
        for command, step, future in pending:
            failures.append(report(command, step, *future.result()))
    failures = [f for f in failures if f is not None]
    print(f"{len(failures)} failed; {time.perf_counter() - begin:.0f} s")
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
