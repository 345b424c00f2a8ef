"""One tracked run per stage and round: CSV metrics and a W&B run, finished at the end.

``track`` instantiates the configured loggers for one stage: the CSV logger
writes ``logs/<stage>/[round<r>/]metrics.csv``; the W&B logger opens a run
in the run's group (``group`` = the run name, ``job_type`` = the stage, tags
for objective, round and scale, the resolved config and the stage's
parameter counts as its config), resumes it when the stage resumes (the id
in the stage's record), and ``finish()``-es it when the stage ends, so no two
stages or sweep jobs share a W&B run. Without a W&B logger (``logger=csv``)
the media, table and artifact calls do nothing.

W&B cannot record an artifact's use offline, so every artifact's metadata
names the artifacts it was made from (``inputs``); online runs also call
``use_artifact``, which draws the lineage graph.

The W&B run is started here and handed to Lightning's ``WandbLogger``
(``experiment=``): the logger would start it with ``anonymous=None``, which
W&B answers with a deprecation warning on every stage, and would switch
offline mode through the process-wide ``WANDB_MODE``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.utils import get_class, instantiate
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from torch import nn

from pirtune.stages.rundir import Round, Run, StageRecord, artifact_name

log = logging.getLogger(__name__)


def parameter_counts(**networks: nn.Module) -> dict[str, int]:
    """``params/<name>``: the number of parameters of each network."""
    return {f"params/{name}": sum(p.numel() for p in net.parameters())
            for name, net in networks.items()}


class StageTracker:
    """The loggers of one stage and round, and W&B's media, tables and artifacts.

    Args:
        loggers: the stage's Lightning loggers (give them to its Trainer).
        run: the run (for artifact names).
    """

    def __init__(self, loggers: list[Logger], run: Run) -> None:
        self.loggers = loggers
        self.run = run
        wandb_loggers = [lg for lg in loggers if isinstance(lg, WandbLogger)]
        self._wandb = wandb_loggers[0] if wandb_loggers else None

    @property
    def wandb(self) -> Any | None:
        """The stage's W&B run on the main process, else ``None``."""
        if self._wandb is None or rank_zero_only.rank != 0:
            return None
        return self._wandb.experiment

    def config(self, values: dict[str, Any]) -> None:
        """Add ``values`` (e.g. parameter counts) to the W&B run's config."""
        if self.wandb is not None:
            self.wandb.config.update(values, allow_val_change=True)

    @staticmethod
    def _step(step: int | None) -> dict[str, int]:
        # Lightning's WandbLogger makes this key every metric's x-axis; its
        # value is the stage's iteration (one per D+G pair or batch).
        return {} if step is None else {"trainer/global_step": step}

    def metrics(self, values: dict[str, float], step: int) -> None:
        """Log ``values`` at ``step`` to every logger."""
        for logger in self.loggers:
            logger.log_metrics(values, step)
            logger.save()

    def images(self, key: str, paths: Sequence[Path], step: int | None = None,
               captions: Sequence[str] | None = None) -> None:
        """Log image files under ``key`` to W&B."""
        if self.wandb is not None:
            import wandb

            images = [wandb.Image(str(p), caption=c)
                      for p, c in zip(paths, captions or [None] * len(paths), strict=True)]
            self.wandb.log({key: images, **self._step(step)})

    def table(self, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
              image_columns: Sequence[str] = ()) -> None:
        """Log a ``wandb.Table``; values in ``image_columns`` are image files or arrays."""
        if self.wandb is None:
            return
        import wandb

        index = {columns.index(c) for c in image_columns}
        data = [[wandb.Image(str(v) if isinstance(v, Path) else v) if i in index else v
                 for i, v in enumerate(row)] for row in rows]
        self.wandb.log({key: wandb.Table(columns=list(columns), data=data)})

    def artifact(self, path: Path, kind: str, inputs: Sequence[Path] = (),
                 metadata: dict[str, Any] | None = None) -> str:
        """Log a file or folder as an artifact of type ``kind``, made from ``inputs``.

        Returns the artifact's name (``artifact_name``).
        """
        name = artifact_name(self.run, path)
        if self.wandb is None:
            return name
        import wandb

        uses = [(artifact_name(self.run, p), p) for p in inputs]
        artifact = wandb.Artifact(name, type=kind,
                                  metadata={**(metadata or {}), "path": str(path),
                                            "inputs": [n for n, _ in uses]})
        _add(artifact, path)
        if not self.wandb.settings._offline:
            for used, used_path in uses:
                source = wandb.Artifact(used, type=_kind_of(used_path))
                _add(source, used_path)
                self.wandb.use_artifact(source)
        self.wandb.log_artifact(artifact)
        return name


def _add(artifact: Any, path: Path) -> None:
    """Add a file, or each file of a folder under its relative path, to a W&B artifact."""
    # Not add_dir: it prints "Adding directory to artifact ... Done." whatever the settings.
    if path.is_dir():
        for file in sorted(f for f in path.rglob("*") if f.is_file()):
            artifact.add_file(str(file), name=file.relative_to(path).as_posix())
    else:
        artifact.add_file(str(path))


def _kind_of(path: Path) -> str:
    """The artifact type of a stage's file, by its name."""
    if path.is_dir():
        return "pir-dataset"
    return "estimator" if path.name == "estimator.pt" else "generator"


def _tags(run: Run, stage: str, rnd: Round | None) -> list[str]:
    tags = [f"scale:{run.scale}", f"stage:{stage}"]
    if run.objective:
        tags.append(f"objective:{run.objective}")
    if rnd is not None:
        tags.append(f"round:{rnd.index}")
    return tags


def _csv_version(folder: Path, version: str) -> str:
    """``version``, or ``<version>-part<k>`` for a resumed stage: no CSV is overwritten."""
    found, part = version, 1
    while (folder / found / "metrics.csv").exists():
        part += 1
        found = f"{version}-part{part}" if version else f"part{part}"
    return found


def _logger(spec: dict[str, Any], run: Run, stage: str, rnd: Round | None,
            record: StageRecord | None) -> Logger:
    target = spec.get("_target_", "")
    suffix = "" if rnd is None else f"round{rnd.index}"
    if target.endswith("CSVLogger"):
        return instantiate(spec, save_dir=str(run.dir), name=f"logs/{stage}",
                           version=_csv_version(run.dir / "logs" / stage, suffix))
    if target.endswith("WandbLogger"):
        title = f"{run.name}/{stage}" + (f"/{suffix}" if suffix else "")
        return _wandb_logger(spec, run.dir, dict(
            name=title, group=run.name, job_type=stage, tags=_tags(run, stage, rnd),
            id=None if record is None else record.wandb_id, resume="allow"))
    return instantiate(spec)


# WandbLogger's own arguments; the rest of logger.wandb are wandb.init's, as in Lightning.
_LOGGER_ARGS = ("log_model", "prefix", "checkpoint_name", "add_file_policy")


def _wandb_logger(spec: dict[str, Any], folder: Path, stage_init: dict[str, Any]) -> Logger:
    """``spec``'s WandbLogger around a W&B run started with ``stage_init`` in ``folder``."""
    options = instantiate({k: v for k, v in spec.items() if k != "_target_"}, _convert_="all")
    logger_args = {k: options.pop(k) for k in _LOGGER_ARGS if k in options}
    for lightning_only in ("save_dir", "anonymous"):
        options.pop(lightning_only, None)
    if options.pop("offline", False):
        options["mode"] = "offline"
    init = {**options, **stage_init, "dir": str(folder)}
    experiment = None
    if rank_zero_only.rank == 0:  # DDP's other processes get Lightning's dummy run
        import wandb

        experiment = wandb.init(**init)
        # The step axis WandbLogger defines when it starts the run itself.
        experiment.define_metric("trainer/global_step")
        experiment.define_metric("*", step_metric="trainer/global_step", step_sync=True)
    return get_class(spec["_target_"])(experiment=experiment, save_dir=str(folder),
                                       name=init["name"], project=init.get("project"),
                                       id=init["id"], **logger_args)


@contextlib.contextmanager
def track(run: Run, stage: str, rnd: Round | None = None,
          record: StageRecord | None = None) -> Iterator[StageTracker]:
    """The stage's loggers for the duration of the stage; W&B's run finished at the end.

    Args:
        run: the run.
        stage: the stage's name (W&B's ``job_type``, the CSV folder).
        rnd: the round of a PIR-loop stage.
        record: the stage's record, written now; its W&B id a resumed stage continues.
    """
    if record is not None and rank_zero_only.rank == 0:  # DDP's other processes log nothing
        record.write()
    tracker = StageTracker([_logger(dict(spec), run, stage, rnd, record)
                            for spec in run.loggers.values()], run)
    # Not through wandb.init's config: instantiate would build the tree's _target_s.
    tracker.config(run.config)
    try:
        yield tracker
    finally:
        for logger in tracker.loggers:
            if isinstance(logger, WandbLogger):
                if rank_zero_only.rank == 0:
                    logger.experiment.finish()
            else:
                logger.save()
