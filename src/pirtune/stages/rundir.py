"""Run directories and rounds: where a stage reads and writes, and what it ran with.

A ``Run`` is one run directory and the settings every stage of it shares
(its trainer, loggers, name and tags); a ``Round`` one round of the PIR loop
in it. Round 1 starts from ``generator_ckpt`` and lives in the run directory
itself; round r > 1 (the paper's iteration, A.3) lives in ``round<r>/``,
collects from round r−1's tuned generator, learns from every round's PIR
data so far, and is judged against ``generator_ckpt`` again.

Each stage keeps a *record* in ``<dir>/.pirtune/<stage>.json``: the
fingerprint of the config section it ran with and the id of its W&B run. A
stage given a different config than its record refuses to run, naming the
keys that differ; the same config skips a finished stage and resumes an
unfinished one (in the same W&B run).
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pirtune.errors import UsageError
from pirtune.files import write_json

log = logging.getLogger(__name__)

BUNDLE_NAME = "generator.pt"
ESTIMATOR_NAME = "estimator.pt"
TUNED_NAME = "tuned.pt"
RECORD_DIR = ".pirtune"


@dataclass(frozen=True)
class Run:
    """One run directory and what its stages share.

    Attributes:
        dir: the run directory.
        name: the run's name (W&B's group).
        scale: "cpu" or "paper".
        objective: the objective's name, for the PIR-loop stages.
        trainer: the Trainer's config (``_target_`` and arguments).
        loggers: the loggers' configs by name (CSV, W&B).
        progress: whether a progress bar is shown.
        seeds: the seeds the config sets, by key (the report's header).
        config: the whole resolved config: W&B's run config, never read by a stage.
        command: the command line that reproduces the run.
    """

    dir: Path
    name: str
    scale: str
    objective: str | None = None
    trainer: dict[str, Any] = field(default_factory=dict)
    loggers: dict[str, Any] = field(default_factory=dict)
    progress: bool = False
    seeds: dict[str, int] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    command: str = "pirtune-train"


@dataclass(frozen=True)
class Round:
    """Where one round of the PIR loop reads and writes.

    Attributes:
        run: the run the round belongs to.
        index: 1 for the first round.
        dir: the run directory (round 1) or ``<run dir>/round<index>``.
        start: the generator bundle the round collects from and tunes.
        baseline: the generator before any tuning, which evaluations compare with.
        pir_data: the PIR dataset the round collects.
        datasets: every round's PIR dataset up to this one: the estimator's data.
    """

    run: Run
    index: int
    dir: Path
    start: Path
    baseline: Path
    pir_data: Path
    datasets: tuple[Path, ...]

    @property
    def tuned(self) -> Path:
        return self.dir / TUNED_NAME

    @property
    def estimator(self) -> Path:
        return self.dir / ESTIMATOR_NAME


def rounds(run: Run, count: int, generator: str | Path, pir_data: str | Path) -> list[Round]:
    """The first ``count`` rounds of ``run``, round 1 starting from ``generator``."""
    if count < 1:
        raise UsageError(f"round={count} must be at least 1")
    baseline, first_data = Path(generator), Path(pir_data)
    found = [Round(run, 1, run.dir, baseline, baseline, first_data, (first_data,))]
    for index in range(2, count + 1):
        here, previous = run.dir / f"round{index}", found[-1]
        found.append(Round(run, index, here, previous.tuned, baseline, here / "pir_data",
                           (*previous.datasets, here / "pir_data")))
    return found


@dataclass(frozen=True)
class StageRecord:
    """What a stage ran with in a folder: its config fingerprint and its W&B run's id."""

    path: Path
    fingerprint: dict[str, Any]
    wandb_id: str

    @classmethod
    def read(cls, path: Path) -> StageRecord | None:
        if not path.is_file():
            return None
        saved = json.loads(path.read_text())
        return cls(path, saved["fingerprint"], saved["wandb_id"])

    def write(self) -> None:
        write_json(self.path, {"fingerprint": self.fingerprint, "wandb_id": self.wandb_id})


def _comparable(fingerprint: dict[str, Any]) -> dict[str, Any]:
    # A JSON round trip, so tuples and lists (and int/float keys) compare as stored.
    return json.loads(json.dumps(fingerprint, default=str))


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    keys = sorted(set(old) | set(new))
    missing = "(unset)"
    return [f"{key}: {old.get(key, missing)!r} -> {new.get(key, missing)!r}"
            for key in keys if old.get(key, missing) != new.get(key, missing)]


def begin_stage(stage: str, folder: Path, fingerprint: dict[str, Any], output: Path,
                own: tuple[Path, ...] = (), again: bool = False,
                extendable: tuple[str, ...] = ()) -> StageRecord | None:
    """Check a stage against its record in ``folder``; ``None`` when it is already done.

    Args:
        stage: the stage's name.
        folder: the run or round directory the stage works in.
        fingerprint: the config the stage runs with (its section's settings and inputs).
        output: the file whose existence means the stage is done.
        own: the stage's other files (checkpoints), named in the refusal's fix.
        again: run even when ``output`` exists (pre-training from a given checkpoint).
        extendable: keys that may change while the stage is unfinished (a training
            length: resuming with more iterations trains on); once ``output``
            exists they are compared like the rest.

    Returns:
        The record to run under (the same W&B id when the stage resumes; not yet
        written), or
        ``None`` when ``output`` exists and was made with this config.

    Raises:
        UsageError: the stage ran here with a different config; the message names
            the differing keys and the fix.
    """
    path = folder / RECORD_DIR / f"{stage}.json"
    fingerprint = _comparable(fingerprint)
    record = StageRecord.read(path)
    if record is not None and not output.exists() and record.fingerprint != fingerprint:
        same = {key: value for key, value in fingerprint.items() if key not in extendable}
        if {k: v for k, v in record.fingerprint.items() if k not in extendable} == same:
            log.info("%s: continuing to %s", stage, ", ".join(
                f"{key}={fingerprint[key]}" for key in extendable if key in fingerprint))
            record = StageRecord(path, fingerprint, record.wandb_id)
    if record is not None and record.fingerprint != fingerprint:
        differences = _differences(record.fingerprint, fingerprint)
        shown = "; ".join(differences[:4]) + ("; …" if len(differences) > 4 else "")
        files = ", ".join(str(p) for p in (output, *own, path))
        raise UsageError(f"{stage} in {folder} ran with a different config ({shown}); give "
                         f"the run another name=<name>, or delete {files} to redo the stage")
    if output.exists() and not again:
        log.info("%s: already done (%s)", stage, output)
        return None
    # Written when the stage starts its work (``tracking.track``), so a stage
    # that stops on bad input leaves no record to refuse the corrected command.
    return record or StageRecord(path, fingerprint, secrets.token_hex(4))


def artifact_name(run: Run, path: Path) -> str:
    """A W&B artifact name for a file or folder: its place in the run, else its own name.

    Files of this run are ``<run name>-<relative path>``; a file from elsewhere
    is ``<its folder>-<stem>``, which is the name its own run gave it when that
    run kept its default directory (``runs/<name>``), so lineage across runs
    joins (a generator pre-trained in ``runs/cpu-pretrain-29b5aaf2`` is
    ``cpu-pretrain-29b5aaf2-generator`` to every run that tunes it).
    """
    path = path.resolve()
    try:
        parts = path.relative_to(run.dir.resolve()).with_suffix("").parts
        stem = "-".join((run.name, *parts))
    except ValueError:
        stem = f"{path.parent.name}-{path.with_suffix('').name}"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
