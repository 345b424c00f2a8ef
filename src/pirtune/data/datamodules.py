"""LightningDataModules: the images a GAN learns from, and the PIR data an estimator learns from.

``ImageDataModule`` serves either the embedded procedural landscapes
(``root=None``) or any ImageFolder of real photos (``root=<folder>``). Both
paths yield uint8 images [B, 3, R, R] and class indices; the conversion to
the generator's [-1, 1] range and the random horizontal flip happen once per
batch on the training device (``to_model_input``), so a batch costs the same
on both paths and the procedural set is held in memory as uint8 (64×64: 12 KiB
per image). ``PIRDataModule`` serves a seeded train/validation split of PIR
datasets (``pirtune.data.pir_dataset``) to the estimator.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision import datasets
from torchvision.transforms import v2

from pirtune.data import procedural
from pirtune.data.pir_dataset import PIRRecords, read_pir_datasets
from pirtune.errors import UsageError
from pirtune.files import atomic_write

log = logging.getLogger(__name__)


def _load_checked(path: str) -> Image.Image:
    """Open an image for ImageFolder, naming the file when it cannot be read."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as err:
        raise UsageError(f"cannot read image {path} ({err}); remove or replace the file") from err


def check_imagefolder(root: Path) -> None:
    """Fail early, naming the path, on a missing or empty folder or an unreadable image."""
    if not root.is_dir():
        raise UsageError(
            f"image folder {root} does not exist; give data.root=<folder with one "
            "sub-folder per class>, or data.root=null for the procedural landscapes"
        )
    has_classes = any(entry.is_dir() for entry in root.iterdir())
    folder = datasets.ImageFolder(str(root), allow_empty=True) if has_classes else None
    if folder is None or not folder.samples:
        raise UsageError(
            f"image folder {root} holds no images; put images in <root>/<class>/*.png|jpg"
        )
    for path, _ in folder.samples:
        try:
            with Image.open(path) as image:
                image.verify()  # reads headers only: cheap even for large folders
        except (OSError, UnidentifiedImageError) as err:
            raise UsageError(
                f"cannot read image {path} ({err}); remove or replace the file"
            ) from err


def folder_classes(root: str | os.PathLike | None) -> int:
    """The classes of an ImageFolder: its sub-folders (0 when ``root`` is no folder).

    ``conf/data/imagefolder.yaml`` takes ``data.num_classes`` from it; a folder
    that does not exist is reported when the data module is set up.
    """
    if root is None or not Path(root).expanduser().is_dir():
        return 0
    return sum(entry.is_dir() for entry in Path(root).expanduser().iterdir())


class ImageDataModule(L.LightningDataModule):
    """Images and classes for ACGAN training.

    Args:
        root: an ImageFolder (``<root>/<class>/<image>``) of real photos, or
            ``None`` for the procedural mountains and coasts.
        num_classes: classes the model expects; checked against the folder.
        resolution: image side in pixels (photos are resized and centre-cropped).
        num_images: procedural scenes to render (ignored for a folder).
        batch_size: images per batch (per device under DDP).
        num_workers: DataLoader workers.
        seed: seed of the procedural scenes.
        hflip: flip half the images left-right at random.
        cache_dir: where rendered procedural sets are kept between runs, or ``None``.
    """

    def __init__(
        self,
        root: str | None = None,
        num_classes: int = 2,
        resolution: int = 64,
        num_images: int = 8192,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        hflip: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        if num_images < 1 and root is None:
            raise UsageError(f"data.num_images={num_images} must be at least 1")
        if batch_size < 1:
            raise UsageError(f"data.batch_size={batch_size} must be at least 1")
        self.root = Path(root).expanduser() if root is not None else None
        self.num_classes = num_classes
        self.resolution = resolution
        self.num_images = num_images
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.hflip = hflip
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.train_set: Dataset | None = None

    # -- building the training set -------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Render (or load from cache) the procedural set, or index the folder."""
        if self.train_set is not None:
            return
        self.train_set = self._folder() if self.root is not None else self._procedural()

    def _folder(self) -> Dataset:
        assert self.root is not None
        check_imagefolder(self.root)
        transform = v2.Compose([
            v2.PILToTensor(),
            v2.Resize(self.resolution, antialias=True),
            v2.CenterCrop(self.resolution),
        ])
        folder = datasets.ImageFolder(str(self.root), transform=transform, loader=_load_checked)
        if len(folder.classes) != self.num_classes:
            raise UsageError(
                f"image folder {self.root} has {len(folder.classes)} classes "
                f"({', '.join(folder.classes)}) but data.num_classes={self.num_classes}; "
                "set data.num_classes to match"
            )
        return folder

    def _cache_file(self) -> Path | None:
        if self.cache_dir is None:
            return None
        # The renderer's source is part of the key, so an edited renderer never
        # serves stale scenes.
        source = hashlib.sha256()
        for path in sorted(Path(procedural.__file__).parent.glob("*.py")):
            source.update(path.name.encode() + b"\0" + path.read_bytes())
        key = source.hexdigest()[:12]
        name = f"landscapes-n{self.num_images}-r{self.resolution}-s{self.seed}-{key}.pt"
        return self.cache_dir / name

    def _procedural(self) -> Dataset:
        cache = self._cache_file()
        if cache is not None and cache.exists():
            images, labels = torch.load(cache, weights_only=True)
        else:
            labels = torch.arange(self.num_images) % self.num_classes
            seeds = [self.seed * 1_000_003 + i for i in range(self.num_images)]
            log.info("rendering %d procedural landscapes at %d px", self.num_images,
                     self.resolution)
            images = (procedural.render_batch(seeds, labels.tolist(), self.resolution) * 255)
            images = images.round().to(torch.uint8)
            if cache is not None:
                # Parallel sweep jobs may render the same set at once: each writes
                # its own temporary file, and either rename leaves a whole cache.
                with atomic_write(cache) as f:
                    torch.save((images, labels), f)
        return TensorDataset(images, labels)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    # -- per-batch conversion on the device --------------------------------------------
    def to_model_input(self, batch: tuple[torch.Tensor, torch.Tensor]):
        """uint8 images [B, 3, R, R] → float in [-1, 1], randomly flipped; labels unchanged."""
        images, labels = batch
        images = images.float().div_(127.5).sub_(1.0)
        if self.hflip:
            flip = torch.rand(images.shape[0], device=images.device) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        return images, labels

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        return self.to_model_input(batch)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random split of ``range(n)`` into sorted (train, val) index tensors.

    The validation part has ``round(n · val_fraction)`` items, at least one when
    ``val_fraction > 0``; the training part keeps at least one.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise UsageError(f"val_fraction={val_fraction} must be in [0, 1)")
    n_val = round(n * val_fraction)
    if val_fraction > 0:
        n_val = max(n_val, 1)
    if n - n_val < 1:
        raise UsageError(
            f"{n} images leave none for training with val_fraction={val_fraction}; "
            "collect more images or lower val_fraction"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def bootstrap_indices(n: int, seed: int) -> torch.Tensor:
    """n indices drawn with replacement from [0, n), by a generator seeded with ``seed``."""
    if n < 1:
        raise UsageError(f"cannot resample {n} images; the estimator needs at least one")
    return torch.randint(n, (n,), generator=torch.Generator().manual_seed(seed))


class PIRDataModule(L.LightningDataModule):
    """Batches of (images, observed PIR, true PIR or NaN) from a PIR dataset directory.

    Loaders yield uint8 images; ``on_after_batch_transfer`` turns them into float
    [0, 1] on the training device, so the dataset stays in memory as uint8.

    Args:
        root: the PIR dataset directory (``read_pir_dataset``), or several, joined
            with ``concat_records`` (e.g. every round's samples, PIR paper A.3).
        val_fraction: share held out for validation, in [0, 1).
        batch_size: images per batch.
        seed: seed of the train/validation split.
        num_workers: DataLoader workers.
        impressions: batches also carry each image's impressions (int64 [B]), as
            soft (HL-Gauss) targets need.
        bootstrap: ``None``, or the seed of a bootstrap resample of the training
            split (an ensemble member's data); validation stays as it is.
    """

    def __init__(self, root: str | Sequence[str], val_fraction: float = 0.2, batch_size: int = 64,
                 seed: int = 0, num_workers: int = 0, impressions: bool = False,
                 bootstrap: int | None = None) -> None:
        super().__init__()
        if batch_size < 1:
            raise UsageError(f"batch_size={batch_size} must be at least 1")
        if not 0.0 <= val_fraction < 1.0:
            raise UsageError(f"val_fraction={val_fraction} must be in [0, 1)")
        roots = [root] if isinstance(root, (str, os.PathLike)) else list(root)
        self.roots = [Path(r).expanduser() for r in roots]
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.impressions = impressions
        self.bootstrap = bootstrap
        self.records: PIRRecords | None = None
        self.train_records: PIRRecords | None = None
        self.val_records: PIRRecords | None = None

    def setup(self, stage: str | None = None) -> None:
        """Reads the directory and splits it (once)."""
        if self.records is not None:
            return
        self.records = read_pir_datasets(self.roots)
        train, val = split_indices(len(self.records), self.val_fraction, self.seed)
        self.train_records = self.records.subset(train)
        self.val_records = self.records.subset(val)

    def _tensors(self, records: PIRRecords, train: bool) -> TensorDataset:
        true = (torch.full((len(records),), float("nan")) if records.true_pir is None
                else records.true_pir)
        tensors = [records.images, records.observed_pir, true]
        if self.impressions:
            tensors.append(records.impressions)
        if train and self.bootstrap is not None and len(records):
            picked = bootstrap_indices(len(records), self.bootstrap)
            tensors = [t[picked] for t in tensors]
        return TensorDataset(*tensors)

    def _loader(self, records: PIRRecords, train: bool) -> DataLoader:
        return DataLoader(
            self._tensors(records, train),
            batch_size=self.batch_size,
            shuffle=train,
            # A last batch of one image breaks BatchNorm in training mode.
            drop_last=train and len(records) > self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        self.setup()
        assert self.train_records is not None
        return self._loader(self.train_records, train=True)

    def val_dataloader(self) -> DataLoader | list:
        self.setup()
        assert self.val_records is not None
        # No held-out images (val_fraction=0): Lightning skips validation.
        return self._loader(self.val_records, train=False) if len(self.val_records) else []

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, *rest = batch
        return images.float().div_(255.0), *rest
