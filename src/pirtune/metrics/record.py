"""``quality.json``: one generator's figures beside the real-vs-real floor, as saved and read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pirtune.files import write_json
from pirtune.metrics.quality import Quality, figure_table

QUALITY_NAME = "quality.json"          # a round's tuned generator, or stage=quality's generator
BASE_QUALITY_NAME = "quality_base.json"  # the loop's generator before any tuning
GENERATED, FLOOR = "generated", "floor"


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
    """

    generator: str
    generated: Quality
    floor: Quality
    classes: tuple[str, ...]
    features: dict[str, Any]
    samples: dict[str, int]
    settings: dict[str, Any] = field(default_factory=dict)
    round: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"generator": self.generator, "round": self.round, "classes": list(self.classes),
                "features": self.features, "samples": self.samples, "settings": self.settings,
                GENERATED: self.generated.as_dict(self.classes),
                FLOOR: self.floor.as_dict(self.classes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityRecord:
        classes = tuple(data["classes"])
        return cls(data["generator"], Quality.from_dict(data[GENERATED], classes),
                   Quality.from_dict(data[FLOOR], classes), classes, data["features"],
                   data["samples"], data.get("settings", {}), data.get("round"))

    def table(self, name: str = "generator") -> list[str]:
        """Markdown: a row per figure, the generator's column beside the floor's."""
        return figure_table({name: self.generated, "real-vs-real floor": self.floor},
                            self.classes)


def write_quality(record: QualityRecord, path: str | Path) -> Path:
    """Write ``record`` to ``path`` atomically."""
    return write_json(path, record.as_dict())


def read_quality(path: str | Path) -> QualityRecord:
    """The record saved at ``path``."""
    return QualityRecord.from_dict(json.loads(Path(path).read_text()))
