"""PIR datasets on disk: one format for simulated users and for real people.

A PIR dataset is a directory::

    pir.csv        image_id,class,impressions,positives[,true_pir]  (one row per image)
    images/        <image_id>.png, 8-bit RGB, all the same size
    latents.pt     optional: {image_id: float tensor [latent_dim]}, the generator's z
    meta.json      optional: free-form provenance (objective, checkpoint, seed, ...)

``true_pir`` is present only for simulated data, where the objective is known;
a web app logging real people writes the same table without it. The observed
PIR is ``positives / impressions`` (2.2). ``pir.csv`` is written last and by
rename, so a directory without a table is an interrupted write, never a
smaller dataset.

``pirtune.data.datamodules.PIRDataModule`` serves a seeded train/validation
split of such directories to the estimator (``pirtune.estimator``).
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from pirtune.errors import UsageError
from pirtune.files import atomic_write, write_text

log = logging.getLogger(__name__)

TABLE = "pir.csv"
IMAGES = "images"
LATENTS = "latents.pt"
META = "meta.json"
COLUMNS = ("image_id", "class", "impressions", "positives")
TRUE_PIR = "true_pir"
_HEADERS = (COLUMNS, (*COLUMNS, TRUE_PIR))
# PIL modes of 8-bit PNGs; grey, palette and alpha images are converted to RGB.
_EIGHT_BIT_MODES = ("RGB", "RGBA", "L", "LA", "P", "PA", "1")


def _expected_header() -> str:
    return f"'{','.join(COLUMNS)}' or '{','.join(_HEADERS[1])}'"


def check_image_id(image_id: str, where: str) -> None:
    """Rejects ids that cannot be a plain file name inside ``images/``."""
    if (
        not image_id
        or image_id in (".", "..")
        or any(c in image_id for c in "/\\\0")
        or image_id != image_id.strip()
    ):
        raise UsageError(
            f"{where}: image_id {image_id!r} is not a plain file name; use a non-empty id "
            "without path separators or surrounding spaces"
        )


def _check_counts(where: str, impressions: int, positives: int) -> None:
    """One image's counts: shown at least once, clicked between 0 and that often."""
    if impressions < 1:
        raise UsageError(
            f"{where}: impressions={impressions}; every image needs at least 1 impression "
            "(drop images that were never shown)"
        )
    if positives < 0:
        raise UsageError(f"{where}: positives={positives} is negative; counts start at 0")
    if positives > impressions:
        raise UsageError(
            f"{where}: positives={positives} exceeds impressions={impressions}; an image "
            "cannot be clicked more often than it was shown"
        )


def _check_pir(where: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:  # also false for NaN
        raise UsageError(f"{where}: true_pir={value} is outside [0, 1]; PIRs are probabilities")


@dataclass(frozen=True, eq=False)
class PIRRecords:
    """A PIR dataset in memory: one entry per image, checked on construction.

    Attributes:
        image_ids: unique ids, also the image file names without ``.png``.
        images: uint8 [N, 3, H, W].
        classes: int64 [N], the generator class each image was drawn for.
        impressions: int64 [N], times each image was shown (at least 1).
        positives: int64 [N], clicks, between 0 and ``impressions``.
        true_pir: float32 [N] in [0, 1] for simulated data, else ``None``.
        latents: float [N, latent_dim], the generator latents, or ``None``.
        meta: free-form provenance (JSON-serialisable).
    """

    image_ids: list[str]
    images: torch.Tensor
    classes: torch.Tensor
    impressions: torch.Tensor
    positives: torch.Tensor
    true_pir: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.image_ids)
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise UsageError(
                f"images must be uint8 [N, 3, H, W], got {self.images.dtype} "
                f"{tuple(self.images.shape)}; convert with (x * 255).round().to(torch.uint8)"
            )
        named = {"images": self.images, "classes": self.classes,
                 "impressions": self.impressions, "positives": self.positives}
        if self.true_pir is not None:
            named["true_pir"] = self.true_pir
        if self.latents is not None:
            named["latents"] = self.latents
        for name, tensor in named.items():
            if tensor.ndim == 0 or tensor.shape[0] != n:
                raise UsageError(
                    f"{name} has shape {tuple(tensor.shape)} but there are {n} image ids; "
                    "pass one entry per image"
                )
        for name in ("classes", "impressions", "positives"):
            tensor = named[name]
            if tensor.dtype != torch.int64 or tensor.ndim != 1:
                raise UsageError(
                    f"{name} must be int64 [N], got {tensor.dtype} {tuple(tensor.shape)}"
                )
        if self.latents is not None and self.latents.ndim != 2:
            raise UsageError(
                f"latents must be [N, latent_dim], got {tuple(self.latents.shape)}"
            )
        seen: dict[str, int] = {}
        for i, image_id in enumerate(self.image_ids):
            where = f"image {i + 1}"
            check_image_id(image_id, where)
            if image_id in seen:
                raise UsageError(
                    f"{where}: image_id {image_id!r} repeats image {seen[image_id] + 1}; "
                    "ids must be unique"
                )
            seen[image_id] = i
        bad = (self.impressions < 1) | (self.positives < 0) | (self.positives > self.impressions)
        if self.true_pir is not None:
            bad |= ~((self.true_pir >= 0) & (self.true_pir <= 1))  # catches NaN too
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0])
            where = f"image {i + 1} (image_id {self.image_ids[i]!r})"
            _check_counts(where, int(self.impressions[i]), int(self.positives[i]))
            if self.true_pir is not None:
                _check_pir(where, float(self.true_pir[i]))
        if bool((self.classes < 0).any()):
            i = int(torch.nonzero(self.classes < 0)[0])
            raise UsageError(
                f"image {i + 1} (image_id {self.image_ids[i]!r}): class={int(self.classes[i])} "
                "is negative; classes are indices from 0"
            )

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def observed_pir(self) -> torch.Tensor:
        """positives / impressions, float32 [N] in [0, 1]."""
        return self.positives.to(torch.float32) / self.impressions.to(torch.float32)

    def zero_share(self, bins: int = 100) -> float:
        """Share of observed PIRs that fall in the first of ``bins`` equal bins on [0, 1].

        These are the PIRs that are "zero to within the bin width" of the estimator
        (C.4.2), where many of them went with failures to improve PIR. Compared in
        integers (positives·bins < impressions), so a PIR on a bin edge is exact.
        """
        if bins < 1:
            raise UsageError(f"bins={bins} must be at least 1")
        if len(self) == 0:
            return 0.0
        return float((self.positives * bins < self.impressions).to(torch.float64).mean())

    def subset(self, indices: torch.Tensor | Sequence[int]) -> PIRRecords:
        """The records at ``indices`` (in that order), meta shared."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return PIRRecords(
            image_ids=[self.image_ids[i] for i in idx.tolist()],
            images=self.images[idx],
            classes=self.classes[idx],
            impressions=self.impressions[idx],
            positives=self.positives[idx],
            true_pir=None if self.true_pir is None else self.true_pir[idx],
            latents=None if self.latents is None else self.latents[idx],
            meta=self.meta,
        )


# -- writing ---------------------------------------------------------------------------

def _as_counts(name: str, values: torch.Tensor | int | Sequence[int], n: int) -> torch.Tensor:
    tensor = torch.as_tensor(values)
    if tensor.ndim == 0:
        tensor = tensor.expand(n)  # one count for every image
    if tensor.is_floating_point():
        if not torch.equal(tensor, tensor.round()):
            raise UsageError(f"{name} must be whole numbers; round or cast them to int")
    elif tensor.dtype == torch.bool:
        raise UsageError(f"{name} must be integer counts, got booleans")
    return tensor.to(torch.int64)


def write_pir_dataset(
    root: str | os.PathLike,
    images_uint8: torch.Tensor,
    classes: torch.Tensor | int | Sequence[int],
    impressions: torch.Tensor | int | Sequence[int],
    positives: torch.Tensor | int | Sequence[int],
    true_pir: torch.Tensor | None = None,
    latents: torch.Tensor | None = None,
    image_ids: Sequence[str] | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Writes a PIR dataset directory; ``pir.csv`` goes last, by rename.

    Args:
        root: the directory; created if missing, refused if it already has a table.
        images_uint8: uint8 [N, 3, H, W].
        classes: class index per image [N] (or one int for all).
        impressions: times each image was shown [N] (or one int for all), at least 1.
        positives: clicks per image [N], between 0 and its impressions.
        true_pir: simulated PIR per image [N] in [0, 1] (stored as float32), or ``None``.
        latents: generator latent per image [N, latent_dim], or ``None``.
        image_ids: unique file-name-safe ids; default ``img_000000``, ``img_000001``, ...
        meta: JSON-serialisable provenance, written to ``meta.json``.

    Returns:
        The dataset directory.

    Raises:
        UsageError: on inconsistent or invalid inputs, or an existing ``pir.csv``.
    """
    root = Path(root)
    n = int(images_uint8.shape[0])
    ids = [f"img_{i:06d}" for i in range(n)] if image_ids is None else list(image_ids)
    records = PIRRecords(
        image_ids=ids,
        images=images_uint8.detach().cpu(),
        classes=_as_counts("classes", classes, n),
        impressions=_as_counts("impressions", impressions, n),
        positives=_as_counts("positives", positives, n),
        true_pir=None if true_pir is None else true_pir.detach().cpu().to(torch.float32),
        latents=None if latents is None else latents.detach().cpu(),
        meta=dict(meta or {}),
    )
    return write_records(root, records)


def write_records(root: str | os.PathLike, records: PIRRecords) -> Path:
    """Writes ``records`` as a PIR dataset directory (see ``write_pir_dataset``)."""
    root = Path(root)
    if (root / TABLE).exists():
        raise UsageError(
            f"{root / TABLE} already exists; write to a new directory (concat_records "
            "joins old and new samples) or delete the old dataset first"
        )
    try:
        meta_text = json.dumps(records.meta, indent=2, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise UsageError(f"meta cannot be written as JSON ({err}); pass plain "
                         "str/int/float/list/dict values") from err
    (root / IMAGES).mkdir(parents=True, exist_ok=True)
    for image_id, image in zip(records.image_ids, records.images, strict=True):
        pixels = image.permute(1, 2, 0).contiguous().numpy()  # [3, H, W] -> [H, W, 3]
        Image.fromarray(pixels).save(root / IMAGES / f"{image_id}.png", format="PNG")
    if records.latents is not None:
        table = {i: z.clone() for i, z in zip(records.image_ids, records.latents, strict=True)}
        with atomic_write(root / LATENTS) as f:
            torch.save(table, f)
    write_text(root / META, meta_text + "\n")
    with atomic_write(root / TABLE, "w") as f:
        writer = csv.writer(f)
        writer.writerow(_HEADERS[records.true_pir is not None])
        rows = zip(records.image_ids, records.classes.tolist(),
                   records.impressions.tolist(), records.positives.tolist(), strict=True)
        for i, row in enumerate(rows):
            if records.true_pir is not None:
                # repr round-trips the float32 value exactly.
                row = (*row, repr(float(records.true_pir[i])))
            writer.writerow(row)
    return root


# -- reading ---------------------------------------------------------------------------

def _parse_int(where: str, name: str, text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise UsageError(f"{where}: {name}={text!r} is not a whole number") from None
    if value < 0:
        raise UsageError(f"{where}: {name}={value} is negative; counts start at 0")
    return value


def _read_table(table: Path) -> tuple[list[str], list[int], list[int], list[int],
                                      list[float] | None]:
    ids: list[str] = []
    classes: list[int] = []
    impressions: list[int] = []
    positives: list[int] = []
    pirs: list[float] = []
    first_row: dict[str, int] = {}
    # utf-8-sig: a table saved from a spreadsheet may start with a byte-order mark.
    with table.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = tuple(name.strip() for name in next(reader, []))
        if header not in _HEADERS:
            missing = [c for c in COLUMNS if c not in header]
            extra = [c for c in header if c not in _HEADERS[1]]
            detail = (f"missing {missing}" if missing else "") + (
                f"{'; ' if missing else ''}unexpected {extra}" if extra else "")
            raise UsageError(
                f"{table}: header {','.join(header)!r} is not {_expected_header()}"
                f"{' (' + detail + ')' if detail else ' (columns out of order)'}; "
                "fix the first line"
            )
        has_pir = len(header) == len(_HEADERS[1])
        row_no = 0
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue  # blank lines, e.g. a trailing newline
            row_no += 1
            image_id = cells[0] if cells else ""
            where = f"{table} row {row_no} (image_id {image_id!r})"
            if len(cells) != len(header):
                raise UsageError(
                    f"{where}: {len(cells)} fields, expected {len(header)} ({','.join(header)})"
                )
            check_image_id(image_id, where)
            if image_id in first_row:
                raise UsageError(
                    f"{where}: duplicate image_id, first seen in row {first_row[image_id]}; "
                    "ids must be unique"
                )
            first_row[image_id] = row_no
            shown = _parse_int(where, "impressions", cells[2])
            clicked = _parse_int(where, "positives", cells[3])
            _check_counts(where, shown, clicked)
            ids.append(image_id)
            classes.append(_parse_int(where, "class", cells[1]))
            impressions.append(shown)
            positives.append(clicked)
            if has_pir:
                try:
                    value = float(cells[4])
                except ValueError:
                    raise UsageError(f"{where}: true_pir={cells[4]!r} is not a number") from None
                _check_pir(where, value)
                pirs.append(value)
    if not ids:
        raise UsageError(f"{table} has a header but no rows; a PIR dataset needs images")
    return ids, classes, impressions, positives, (pirs if has_pir else None)


def _read_images(root: Path, ids: list[str]) -> torch.Tensor:
    images = []
    for row_no, image_id in enumerate(ids, start=1):
        path = root / IMAGES / f"{image_id}.png"
        where = f"{root / TABLE} row {row_no} (image_id {image_id!r})"
        if not path.is_file():
            raise UsageError(f"{where}: image file {path} is missing; add it or drop the row")
        try:
            with Image.open(path) as pil:
                if pil.format != "PNG" or pil.mode not in _EIGHT_BIT_MODES:
                    raise UsageError(
                        f"{where}: image file {path} is a {pil.format} in mode {pil.mode}; "
                        "save it as an 8-bit RGB PNG"
                    )
                pixels = np.asarray(pil.convert("RGB"))  # [H, W, 3] uint8
        except (OSError, UnidentifiedImageError) as err:
            raise UsageError(
                f"{where}: cannot read image file {path} ({err}); it must be an 8-bit RGB PNG"
            ) from err
        image = torch.from_numpy(pixels.copy()).permute(2, 0, 1)  # -> [3, H, W]
        if images and image.shape != images[0].shape:
            raise UsageError(
                f"{where}: image file {path} is {tuple(image.shape[1:])} (H, W) but "
                f"{root / IMAGES / (ids[0] + '.png')} is {tuple(images[0].shape[1:])}; "
                "all images of a dataset must be the same size"
            )
        images.append(image)
    return torch.stack(images)  # [N, 3, H, W]


def _read_latents(root: Path, ids: list[str]) -> torch.Tensor | None:
    path = root / LATENTS
    if not path.exists():
        return None
    try:
        table = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt file
        raise UsageError(f"cannot read {path} ({err}); rewrite it or delete it") from err
    if not isinstance(table, dict):
        raise UsageError(f"{path} holds {type(table).__name__}, expected {{image_id: tensor}}")
    latents = []
    for row_no, image_id in enumerate(ids, start=1):
        if image_id not in table:
            raise UsageError(
                f"{path} has no latent for {root / TABLE} row {row_no} (image_id "
                f"{image_id!r}); add it, or delete {LATENTS} if latents are unknown"
            )
        z = torch.as_tensor(table[image_id])
        if z.ndim != 1 or (latents and z.shape != latents[0].shape):
            raise UsageError(
                f"{path}: latent of image_id {image_id!r} has shape {tuple(z.shape)}; "
                f"expected one vector per image{f' of {latents[0].shape[0]}' if latents else ''}"
            )
        latents.append(z)
    return torch.stack(latents)  # [N, latent_dim]


def _read_meta(root: Path) -> dict[str, Any]:
    path = root / META
    if not path.exists():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot parse {path} ({err}); fix or delete it") from err
    if not isinstance(meta, dict):
        raise UsageError(f"{path} holds a {type(meta).__name__}; expected a JSON object")
    return meta


def read_pir_dataset(root: str | os.PathLike) -> PIRRecords:
    """Loads and checks a PIR dataset directory.

    Raises:
        UsageError: naming the file, or the table row (1-based, header excluded)
            and image_id, of the first problem found.
    """
    root = Path(root)
    table = root / TABLE
    if not table.is_file():
        hint = (" (images/ exists: an interrupted write?)" if (root / IMAGES).is_dir() else "")
        raise UsageError(
            f"{table} does not exist{hint}; a PIR dataset is a directory with {TABLE} and "
            f"{IMAGES}/, written by write_pir_dataset"
        )
    ids, classes, impressions, positives, pirs = _read_table(table)
    return PIRRecords(
        image_ids=ids,
        images=_read_images(root, ids),
        classes=torch.tensor(classes, dtype=torch.int64),
        impressions=torch.tensor(impressions, dtype=torch.int64),
        positives=torch.tensor(positives, dtype=torch.int64),
        true_pir=None if pirs is None else torch.tensor(pirs, dtype=torch.float32),
        latents=_read_latents(root, ids),
        meta=_read_meta(root),
    )


def concat_records(a: PIRRecords, b: PIRRecords) -> PIRRecords:
    """Joins two datasets, e.g. old samples and those from the tuned generator.

    ``true_pir`` and ``latents`` survive only if both sides have them (a warning is
    logged otherwise); ``meta`` becomes ``{"concat_of": [a.meta, b.meta]}``.

    Raises:
        UsageError: if ids collide, or image sizes or latent sizes differ.
    """
    clash = sorted(set(a.image_ids) & set(b.image_ids))
    if clash:
        raise UsageError(
            f"{len(clash)} image ids are in both datasets (e.g. {clash[:3]}); give the new "
            "samples distinct ids, e.g. a per-round prefix"
        )
    if a.images.shape[1:] != b.images.shape[1:]:
        raise UsageError(
            f"images are {tuple(a.images.shape[1:])} and {tuple(b.images.shape[1:])}; "
            "resample both datasets at one resolution"
        )

    def join(name: str, x: torch.Tensor | None, y: torch.Tensor | None) -> torch.Tensor | None:
        if x is not None and y is not None:
            if x.shape[1:] != y.shape[1:]:
                raise UsageError(f"{name} have shapes {tuple(x.shape[1:])} and "
                                 f"{tuple(y.shape[1:])} per image; they cannot be joined")
            return torch.cat([x, y])
        if x is not None or y is not None:
            log.warning("only one dataset has %s; the joined dataset has none", name)
        return None

    return PIRRecords(
        image_ids=[*a.image_ids, *b.image_ids],
        images=torch.cat([a.images, b.images]),
        classes=torch.cat([a.classes, b.classes]),
        impressions=torch.cat([a.impressions, b.impressions]),
        positives=torch.cat([a.positives, b.positives]),
        true_pir=join("true_pir", a.true_pir, b.true_pir),
        latents=join("latents", a.latents, b.latents),
        meta={"concat_of": [a.meta, b.meta]},
    )


def read_pir_datasets(roots: Sequence[str | os.PathLike]) -> PIRRecords:
    """Several PIR datasets as one (``concat_records``), e.g. every round's samples."""
    if not roots:
        raise UsageError("no PIR dataset given; pass at least one dataset directory")
    return functools.reduce(concat_records, map(read_pir_dataset, roots))


# -- serving the estimator ----------------------------------------------------------------
