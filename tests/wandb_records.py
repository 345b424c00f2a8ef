"""Reading W&B's offline run files (``run-<id>.wandb``), as ``wandb sync`` would.

The file is W&B's transaction log: a 7-byte header (``:W&B``, magic 0xBEE1,
version 0), then LevelDB-log-style chunks in 32 KiB blocks, each chunk a
7-byte header (CRC32, length, type: 1 full, 2 first, 3 middle, 4 last) and
a piece of a serialised ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
HEADER = 7


def records(path: Path) -> Iterator[Any]:
    """Every record in an offline run file, in order."""
    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:HEADER])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), f"{path} is no W&B run file"
    pos, pieces = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # the rest of a block too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if length == 0 and kind == 0:
            pos += left
            continue
        pieces += data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pieces)
            pieces = b""
            yield record


@dataclass
class OfflineRun:
    """What one offline run logged."""

    folder: Path
    id: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history_keys: set[str] = field(default_factory=set)
    files: list[str] = field(default_factory=list)
    artifacts: list[tuple[str, str, dict]] = field(default_factory=list)  # name, type, metadata
    step_metrics: dict[str, str] = field(default_factory=dict)  # metric or glob -> its x-axis
    finished: bool = False

    @classmethod
    def read(cls, folder: Path) -> OfflineRun:
        [log] = folder.glob("run-*.wandb")
        run = cls(folder)
        for record in records(log):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                r = record.run
                run.id, run.group, run.job_type = r.run_id, r.run_group, r.job_type
                run.tags = list(r.tags)
                run.config |= {u.key: json.loads(u.value_json) for u in r.config.update}
            elif kind == "config":
                run.config |= {u.key: json.loads(u.value_json) for u in record.config.update}
            elif kind == "history":
                run.history_keys |= {i.nested_key[0] if i.nested_key else i.key
                                     for i in record.history.item}
            elif kind == "files":
                run.files += [f.path for f in record.files.files]
            elif kind == "artifact":
                a = record.artifact
                run.artifacts.append((a.name, a.type, json.loads(a.metadata or "{}")))
            elif kind == "metric":
                m = record.metric
                run.step_metrics[m.name or m.glob_name] = m.step_metric
            elif kind == "exit":
                run.finished = True
        return run


def offline_runs(wandb_dir: Path) -> list[OfflineRun]:
    """Every offline run under a ``wandb/`` folder (a resumed run has several folders)."""
    return [OfflineRun.read(folder) for folder in sorted(wandb_dir.glob("offline-run-*"))]
