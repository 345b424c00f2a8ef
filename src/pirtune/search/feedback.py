"""A person's answer to a round: "pick i" (0–3) or "these look the same".

One definition for every place an answer goes: the searches' ``choose``,
the page and the API, the interaction log, the export and the choice model.
Each has its own encoding, written here once:

======================  ======================  ===========================
where                   pick i                  "same"
======================  ======================  ===========================
Python                  ``Feedback.pick(i)``    ``Feedback.same()`` / ``SAME``
API request (JSON)      ``{"round", "index"}``  ``{"round", "same": true}``
API history (JSON)      ``i``                   ``"same"``
log (``choices``)       ``slot = i, same = 0``  ``slot = NULL, same = 1``
export (``rounds.csv``  ``"i"``                 ``"same"``
column ``picked``)
choice model (tensors)  ``i``                   ``SAME_CODE`` (−1)
======================  ======================  ===========================

The encodings of "same" are chosen so that a reader written before it
existed fails loudly instead of reading a pick: ``int("same")`` raises, a
NULL slot is no index, and −1 is no valid tensor index for ``gather``
(never −100, which ``cross_entropy`` would silently ignore).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pirtune.errors import UsageError

CHOICES = 4           # candidates a round shows
SAME_TEXT = "same"    # the API's history and the export's encoding of "same"
SAME_CODE = -1        # the choice model's tensor encoding of "same"


def _index(index: Any) -> int:
    """``index`` as a candidate's index 0–3, or a ``UsageError`` naming it."""
    if (isinstance(index, bool | np.bool_) or not isinstance(index, int | np.integer)
            or not 0 <= index < CHOICES):
        raise UsageError(f"choice {index!r} is not a candidate; pick 0, 1, 2 or 3, or "
                         f"answer {SAME_TEXT!r}")
    return int(index)


@dataclass(frozen=True)
class Feedback:
    """An answer: ``index`` 0–3 for a pick, ``None`` for "these look the same".

    Build one with ``Feedback.pick(i)``, ``Feedback.same()`` or ``as_feedback``;
    the constructor checks the index like they do.
    """

    index: int | None

    def __post_init__(self) -> None:
        if self.index is not None:
            object.__setattr__(self, "index", _index(self.index))

    @classmethod
    def pick(cls, index: int) -> Feedback:
        """The person picked candidate ``index`` (0–3: +u, −u, +v, −v); never None."""
        return cls(_index(index))

    @classmethod
    def same(cls) -> Feedback:
        """The person said the four candidates look the same."""
        return cls(None)

    @property
    def is_same(self) -> bool:
        return self.index is None

    def __str__(self) -> str:
        return SAME_TEXT if self.index is None else str(self.index)

    # -- encodings ---------------------------------------------------------------------

    def to_json(self) -> int | str:
        """The history's JSON value: the index, or ``"same"``."""
        return SAME_TEXT if self.index is None else self.index

    def to_db(self) -> tuple[int | None, int]:
        """The log's ``(slot, same)`` columns."""
        return (None, 1) if self.index is None else (self.index, 0)

    @classmethod
    def from_db(cls, slot: int | None, same: int) -> Feedback:
        """The answer the log's ``(slot, same)`` columns hold."""
        if same:
            return cls.same()
        return cls.pick(slot)

    def to_export(self) -> str:
        """The export's ``picked`` cell: ``"0"``–``"3"``, or ``"same"``."""
        return str(self)

    @classmethod
    def from_export(cls, cell: str) -> Feedback:
        """The answer an export's ``picked`` cell holds; ``UsageError`` for anything else."""
        text = cell.strip()
        if text == SAME_TEXT:
            return cls.same()
        if text not in {str(i) for i in range(CHOICES)}:
            raise UsageError(f"{cell!r} is not an answer; a round's answer is 0, 1, 2, 3 or "
                             f"{SAME_TEXT!r}")
        return cls.pick(int(text))

    def to_code(self) -> int:
        """The choice model's integer code: the index, or ``SAME_CODE``."""
        return SAME_CODE if self.index is None else self.index


SAME = Feedback.same()


def as_feedback(answer: Any) -> Feedback:
    """A ``Feedback`` from a ``Feedback``, an index 0–3 or the text ``"same"``.

    Raises:
        UsageError: anything else (a boolean, a float, 4, "two"), naming the value.
    """
    if isinstance(answer, Feedback):
        return answer
    if isinstance(answer, str):
        if answer == SAME_TEXT:
            return SAME
        raise UsageError(f"answer {answer!r} is not one; pick 0, 1, 2 or 3, or answer "
                         f"{SAME_TEXT!r}")
    return Feedback.pick(answer)
