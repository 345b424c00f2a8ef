"""PIR datasets on disk: round trip, every bad input named, zero share, concat, split, bootstrap."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from PIL import Image

from pirtune.data.datamodules import PIRDataModule, bootstrap_indices
from pirtune.data.pir_dataset import (
    PIRRecords,
    concat_records,
    read_pir_dataset,
    write_pir_dataset,
)
from pirtune.errors import UsageError

N = 4


def _arrays(n: int = N, seed: int = 0, size: int = 8) -> dict:
    g = torch.Generator().manual_seed(seed)
    impressions = torch.randint(1, 50, (n,), generator=g)
    return {
        "images_uint8": torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),
        "classes": torch.arange(n) % 2,
        "impressions": impressions,
        "positives": (impressions * torch.rand(n, generator=g)).long(),
        "true_pir": torch.rand(n, generator=g),
        "latents": torch.randn(n, 5, generator=g),
    }


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_pir_dataset(tmp_path / "pir", **_arrays(),
                             meta={"objective": "blue", "seed": 3, "nested": {"a": [1, 2]}})


def test_round_trip_is_identical(dataset):
    arrays = _arrays()
    records = read_pir_dataset(dataset)
    assert records.image_ids == [f"img_{i:06d}" for i in range(N)]
    torch.testing.assert_close(records.images, arrays["images_uint8"], rtol=0, atol=0)
    for name in ("classes", "impressions", "positives"):
        assert getattr(records, name).dtype == torch.int64
        torch.testing.assert_close(getattr(records, name), arrays[name], rtol=0, atol=0)
    torch.testing.assert_close(records.true_pir, arrays["true_pir"], rtol=0, atol=0)
    torch.testing.assert_close(records.latents, arrays["latents"], rtol=0, atol=0)
    assert records.meta == {"objective": "blue", "seed": 3, "nested": {"a": [1, 2]}}
    torch.testing.assert_close(records.observed_pir,
                               arrays["positives"] / arrays["impressions"])
    header = (dataset / "pir.csv").read_text().splitlines()[0]
    assert header == "image_id,class,impressions,positives,true_pir"


def test_real_user_data_without_optional_parts(tmp_path):
    arrays = _arrays()
    root = write_pir_dataset(tmp_path / "web", arrays["images_uint8"], arrays["classes"],
                             arrays["impressions"], arrays["positives"],
                             image_ids=["a", "b", "c", "d"])
    assert (root / "pir.csv").read_text().splitlines()[0] == "image_id,class,impressions,positives"
    assert not (root / "latents.pt").exists()
    records = read_pir_dataset(root)
    assert records.image_ids == ["a", "b", "c", "d"]
    assert records.true_pir is None and records.latents is None and records.meta == {}


def test_writing_over_a_dataset_is_refused(dataset):
    with pytest.raises(UsageError, match="already exists"):
        write_pir_dataset(dataset, **_arrays())


@pytest.mark.parametrize("change, match", [
    ({"positives": torch.tensor([1, 99, 1, 1])}, r"image 2 .*positives=99 exceeds"),
    ({"impressions": torch.tensor([3, 0, 3, 3]), "positives": torch.tensor([1, 0, 1, 1])},
     r"image 2 .*impressions=0"),
    ({"true_pir": torch.tensor([0.1, 1.5, 0.1, 0.1])}, r"image 2 .*true_pir=1.5"),
    ({"image_ids": ["a", "b/c", "d", "e"]}, r"'b/c' is not a plain file name"),
    ({"image_ids": ["a", "b", "a", "e"]}, r"image 3: image_id 'a' repeats image 1"),
    ({"classes": torch.tensor([0, 1])}, r"classes has shape \(2,\) but there are 4"),
    ({"images_uint8": torch.rand(N, 3, 8, 8)}, "must be uint8"),
])
def test_writing_bad_arrays_is_refused(tmp_path, change, match):
    arrays = {**_arrays(), **change}
    with pytest.raises(UsageError, match=match):
        write_pir_dataset(tmp_path / "bad", **arrays)
    assert not (tmp_path / "bad" / "pir.csv").exists()


def _edit_row(root: Path, row: int, column: str, value: str) -> None:
    lines = (root / "pir.csv").read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index(column)] = value
    lines[row] = ",".join(cells)
    (root / "pir.csv").write_text("\n".join(lines) + "\n")


ROW2 = r"pir\.csv row 2 \(image_id 'img_000001'\)"


@pytest.mark.parametrize("column, value, match", [
    ("impressions", "12.5", ROW2 + ": impressions='12.5' is not a whole number"),
    ("positives", "many", ROW2 + ": positives='many' is not a whole number"),
    ("positives", "-1", ROW2 + ": positives=-1 is negative"),
    ("impressions", "0", ROW2 + ": impressions=0"),
    ("positives", "1000000", ROW2 + ": positives=1000000 exceeds"),
    ("true_pir", "1.01", ROW2 + ": true_pir=1.01 is outside"),
    ("true_pir", "nan", ROW2 + ": true_pir=nan is outside"),
    ("class", "x", ROW2 + ": class='x'"),
])
def test_bad_cells_name_the_row(dataset, column, value, match):
    _edit_row(dataset, 2, column, value)
    with pytest.raises(UsageError, match=match):
        read_pir_dataset(dataset)


def test_duplicate_id_names_both_rows(dataset):
    _edit_row(dataset, 3, "image_id", "img_000000")
    with pytest.raises(UsageError, match=r"row 3 \(image_id 'img_000000'\).*first seen in row 1"):
        read_pir_dataset(dataset)


@pytest.mark.parametrize("header, match", [
    ("image_id,cls,impressions,positives", r"missing \['class'\]; unexpected \['cls'\]"),
    ("image_id,class,impressions", r"missing \['positives'\]"),
    ("image_id,class,impressions,positives,true_pir,note", r"unexpected \['note'\]"),
    ("class,image_id,impressions,positives", "columns out of order"),
])
def test_wrong_header_says_what_is_expected(dataset, header, match):
    lines = (dataset / "pir.csv").read_text().splitlines()
    (dataset / "pir.csv").write_text("\n".join([header, *lines[1:]]) + "\n")
    with pytest.raises(UsageError, match="'image_id,class,impressions,positives'") as err:
        read_pir_dataset(dataset)
    assert err.match(match)


def test_missing_table_names_the_file(dataset):
    (dataset / "pir.csv").unlink()
    with pytest.raises(UsageError, match=rf"{dataset / 'pir.csv'} does not exist .*interrupted"):
        read_pir_dataset(dataset)


def _png(root: Path, image_id: str) -> Path:
    return root / "images" / f"{image_id}.png"


def test_missing_image_names_row_and_path(dataset):
    _png(dataset, "img_000002").unlink()
    with pytest.raises(UsageError, match=rf"row 3 .*{_png(dataset, 'img_000002')} is missing"):
        read_pir_dataset(dataset)


def test_sixteen_bit_image_is_refused(dataset):
    Image.new("I;16", (8, 8)).save(_png(dataset, "img_000001"))
    with pytest.raises(UsageError, match=r"row 2 .*img_000001\.png is a PNG in mode I;16"):
        read_pir_dataset(dataset)


def test_grey_image_is_read_as_rgb(dataset):
    Image.new("L", (8, 8), color=7).save(_png(dataset, "img_000001"))
    torch.testing.assert_close(read_pir_dataset(dataset).images[1],
                               torch.full((3, 8, 8), 7, dtype=torch.uint8))


def test_unreadable_image_names_the_path(dataset):
    _png(dataset, "img_000001").write_bytes(b"not a png")
    with pytest.raises(UsageError, match=rf"cannot read image file {_png(dataset, 'img_000001')}"):
        read_pir_dataset(dataset)


def test_image_of_another_size_names_both_files(dataset):
    Image.new("RGB", (8, 9)).save(_png(dataset, "img_000003"))  # (W, H)
    with pytest.raises(UsageError,
                       match=r"img_000003\.png is \(9, 8\) .*img_000000\.png is \(8, 8\)"):
        read_pir_dataset(dataset)


def test_latents_missing_an_id_names_file_and_id(dataset):
    table = torch.load(dataset / "latents.pt")
    del table["img_000002"]
    torch.save(table, dataset / "latents.pt")
    with pytest.raises(UsageError, match=r"latents\.pt has no latent for .*row 3 \(image_id "
                                         r"'img_000002'\)"):
        read_pir_dataset(dataset)


def _records(impressions: list[int], positives: list[int], ids: list[str],
             true_pir: list[float] | None = None) -> PIRRecords:
    n = len(ids)
    return PIRRecords(
        image_ids=ids,
        images=torch.zeros(n, 3, 4, 4, dtype=torch.uint8),
        classes=torch.zeros(n, dtype=torch.int64),
        impressions=torch.tensor(impressions),
        positives=torch.tensor(positives),
        true_pir=None if true_pir is None else torch.tensor(true_pir),
    )


def test_zero_share_counts_the_first_bin_only():
    # Observed PIRs 0, 0.009, 0.01, 0, 0.01, 0.5: the first 100th-bin is [0, 0.01).
    records = _records([1000, 1000, 100, 10, 1000, 2], [0, 9, 1, 0, 10, 1], list("abcdef"))
    assert records.zero_share() == pytest.approx(3 / 6)
    assert records.zero_share(bins=10) == pytest.approx(5 / 6)  # [0, 0.1)
    assert records.zero_share(bins=1000) == pytest.approx(2 / 6)  # [0, 0.001)


def test_concat_joins_and_refuses_colliding_ids():
    a = _records([10, 10], [1, 2], ["a", "b"], [0.1, 0.2])
    b = _records([20], [5], ["c"], [0.3])
    joined = concat_records(a, b)
    assert joined.image_ids == ["a", "b", "c"]
    torch.testing.assert_close(joined.impressions, torch.tensor([10, 10, 20]))
    torch.testing.assert_close(joined.true_pir, torch.tensor([0.1, 0.2, 0.3]))
    assert joined.images.shape == (3, 3, 4, 4)
    # Real users' data has no true PIR, so the joined set has none.
    assert concat_records(a, _records([20], [5], ["c"])).true_pir is None
    with pytest.raises(UsageError, match=r"1 image ids are in both datasets .*\['b'\]"):
        concat_records(a, _records([20], [5], ["b"]))


def test_datamodule_split_is_seeded_disjoint_and_serves_unit_floats(tmp_path):
    root = write_pir_dataset(tmp_path / "pir", **_arrays(n=20))

    def split(seed: int) -> tuple[list[str], list[str]]:
        dm = PIRDataModule(str(root), val_fraction=0.2, batch_size=8, seed=seed)
        dm.setup()
        return dm.train_records.image_ids, dm.val_records.image_ids

    train, val = split(0)
    assert len(val) == 4 and len(train) == 16
    assert not set(train) & set(val)
    assert sorted(train + val) == [f"img_{i:06d}" for i in range(20)]
    assert split(0) == (train, val)
    assert split(1)[1] != val

    dm = PIRDataModule(str(root), batch_size=8)
    dm.setup()
    images, observed, true = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert images.dtype == torch.float32 and images.shape == (4, 3, 8, 8)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    torch.testing.assert_close(observed, dm.val_records.observed_pir)
    torch.testing.assert_close(true, dm.val_records.true_pir)


def test_datamodule_without_true_pir_serves_nan(tmp_path):
    arrays = _arrays(n=6)
    del arrays["true_pir"]
    dm = PIRDataModule(str(write_pir_dataset(tmp_path / "web", **arrays)), batch_size=8)
    dm.setup()
    _, _, true = next(iter(dm.train_dataloader()))
    assert bool(torch.isnan(true).all())


@pytest.mark.filterwarnings("ignore:Total length of `list` across ranks is zero")
def test_datamodule_without_validation_share_skips_validation(tmp_path):
    from pirtune.estimator import PIREstimator, PIREstimatorModule

    dm = PIRDataModule(str(write_pir_dataset(tmp_path / "pir", **_arrays(n=6))),
                       val_fraction=0.0, batch_size=4)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(PIREstimatorModule(PIREstimator(resolution=8)), datamodule=dm)
    assert len(dm.val_records) == 0
    assert "estimate/train/loss" in trainer.callback_metrics
    assert "estimate/val/mae" not in trainer.callback_metrics


@pytest.mark.parametrize("val_fraction", [-0.1, 1.0])
def test_bad_val_fraction_is_refused(val_fraction):
    with pytest.raises(UsageError, match=f"val_fraction={val_fraction}"):
        PIRDataModule("unused", val_fraction=val_fraction)


def test_bootstrap_resamples_are_seeded_with_replacement_and_differ():
    a, b = bootstrap_indices(200, 0), bootstrap_indices(200, 1)
    assert torch.equal(a, bootstrap_indices(200, 0))
    assert not torch.equal(a, b)
    assert int(a.min()) >= 0 and int(a.max()) < 200 and len(a.unique()) < 200
    with pytest.raises(UsageError, match="cannot resample 0 images"):
        bootstrap_indices(0, 0)


def test_one_count_for_every_image_is_broadcast(tmp_path):
    images = torch.zeros(3, 3, 4, 4, dtype=torch.uint8)
    records = read_pir_dataset(write_pir_dataset(tmp_path / "pir", images, 1, 1000, [0, 5, 9]))
    torch.testing.assert_close(records.classes, torch.tensor([1, 1, 1]))
    torch.testing.assert_close(records.impressions, torch.tensor([1000, 1000, 1000]))
