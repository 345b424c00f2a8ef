"""``quality.json``: one generator's figures beside the real-vs-real floor and, with a true
objective, against the tilted real set (``pirtune.metrics.tilted``), as saved and read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pirtune.files import write_json
from pirtune.metrics.quality import Quality, cells_table
from pirtune.metrics.tilted import TiltedQuality

QUALITY_NAME = "quality.json"          # a round's tuned generator, or stage=quality's generator
BASE_QUALITY_NAME = "quality_base.json"  # the loop's generator before any tuning
GENERATED, FLOOR, TILTED = "generated", "floor", "tilted"


@dataclass(frozen=True)
class QualityRecord:
    """What ``stage=quality`` measured.

    Attributes:
        generator: the bundle scored.
        generated: its samples against the first real set.
        floor: the second real set against the first (what a perfect generator scores).
        classes: class names, by class index (class accuracy is keyed by them in the file).
        features: the feature space (``landscape`` or ``inception``) and its size.
        samples: images per set: ``generated``, ``real`` (the reference) and ``floor``.
        settings: k, KID's subsets, the seed, and where the real images came from.
        round: the PIR loop's round whose tuned generator this is; 0 before tuning;
            ``None`` outside the loop.
        tilted: its samples against the real images tilted to their mean true PIR;
            ``None`` without a true objective, or when the tilt was refused.
        tilted_note: why ``tilted`` is ``None`` (the refusal's sentence); ``None`` beside
            a tilted entry, and in files written before it existed.
    """

    generator: str
    generated: Quality
    floor: Quality
    classes: tuple[str, ...]
    features: dict[str, Any]
    samples: dict[str, int]
    settings: dict[str, Any] = field(default_factory=dict)
    round: int | None = None
    tilted: TiltedQuality | None = None
    tilted_note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"generator": self.generator, "round": self.round, "classes": list(self.classes),
                "features": self.features, "samples": self.samples, "settings": self.settings,
                GENERATED: self.generated.as_dict(self.classes),
                FLOOR: self.floor.as_dict(self.classes),
                TILTED: None if self.tilted is None else self.tilted.as_dict(),
                "tilted_note": self.tilted_note}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityRecord:
        classes = tuple(data["classes"])
        tilted = data.get(TILTED)
        return cls(data["generator"], Quality.from_dict(data[GENERATED], classes),
                   Quality.from_dict(data[FLOOR], classes), classes, data["features"],
                   data["samples"], data.get("settings", {}), data.get("round"),
                   None if tilted is None else TiltedQuality.from_dict(tilted),
                   data.get("tilted_note"))

    def cells(self, name: str = "generator") -> dict[str, dict[str, str]]:
        """Table cells by column and figure: the generator, the floor, and the generator
        against the tilted real set when there is one (its FID, precision, recall, mean
        true PIR, β and ESS)."""
        columns = {name: self.generated.cells(self.classes),
                   "real-vs-real floor": self.floor.cells(self.classes)}
        if self.tilted is not None:
            columns[name]["mean true PIR"] = f"{self.tilted.generated_pir:.3f}"
            columns[f"{name} vs tilted real"] = self.tilted.cells()
        return columns

    def table(self, name: str = "generator") -> list[str]:
        """Markdown: a row per figure, the generator's column beside the floor's and the
        tilted real set's; below it, why there is no tilted column when there is none."""
        lines = cells_table(self.cells(name))
        if self.tilted is None and self.tilted_note is not None:
            lines += ["", f"No tilted real set: {self.tilted_note}."]
        return lines


def write_quality(record: QualityRecord, path: str | Path) -> Path:
    """Write ``record`` to ``path`` atomically."""
    return write_json(path, record.as_dict())


def read_quality(path: str | Path) -> QualityRecord:
    """The record saved at ``path``."""
    return QualityRecord.from_dict(json.loads(Path(path).read_text()))
