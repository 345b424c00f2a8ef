"""quality.json: the record round-trips, with the tilted real set, without it, and from
files written before it existed."""

from __future__ import annotations

import dataclasses
import json

from pirtune.metrics import Quality, TiltedQuality
from pirtune.metrics.record import QualityRecord, read_quality, write_quality

CLASSES = ("coast", "mountain")
GENERATED = Quality(12.5, 0.004, 0.001, 0.71, 0.42, 0.93, 0.81, {0: 0.9, 1: 0.75})
FLOOR = Quality(3.25, 0.0001, 0.0005, 0.76, 0.77, 1.01, 0.97, {0: 1.0, 1: 0.97})
TILTED = TiltedQuality(beta=3.5, ess=412.25, ess_share=0.103, fid=9.75, precision=0.74,
                       recall=0.51, generated_pir=0.41, tilted_pir=0.41, real_pir=0.29,
                       pool=4000, resampled=2000, distinct=1620, generated=2000)
REFUSAL = ("the generated mean PIR 0.9100 is beyond what the real data hold: no tilt of the "
           "4000 real images reaches it")


def _record(**tilt) -> QualityRecord:
    return QualityRecord("runs/x/tuned.pt", GENERATED, FLOOR, CLASSES,
                         {"name": "landscape", "dim": 128},
                         {"generated": 2000, "real": 2000, "floor": 2000},
                         {"k": 5, "objective": "color_blue"}, round=1, **tilt)


def test_the_record_round_trips_with_and_without_the_tilted_set(tmp_path):
    for record in (_record(tilted=TILTED), _record(tilted_note=REFUSAL), _record()):
        path = write_quality(record, tmp_path / "quality.json")
        assert read_quality(path) == record
    saved = json.loads((tmp_path / "quality.json").read_text())
    assert saved["tilted"] is None and saved["tilted_note"] is None


def test_files_before_the_tilted_set_still_read(tmp_path):
    old = _record().as_dict()
    del old["tilted"], old["tilted_note"]
    (tmp_path / "quality.json").write_text(json.dumps(old))
    assert read_quality(tmp_path / "quality.json") == _record()
    assert _record().table() == [
        "| figure | generator | real-vs-real floor |", "|---|---:|---:|",
        "| FID | 12.500 | 3.250 |", "| KID ×10³ ± SD | 4.00 ± 1.00 | 0.10 ± 0.50 |",
        "| precision | 0.710 | 0.760 |", "| recall | 0.420 | 0.770 |",
        "| density | 0.930 | 1.010 |", "| coverage | 0.810 | 0.970 |",
        "| class acc. coast | 0.900 | 1.000 |", "| class acc. mountain | 0.750 | 0.970 |"]


def test_the_table_shows_the_tilted_figures_beside_the_untilted_ones():
    table = _record(tilted=TILTED).table()
    assert table[0] == ("| figure | generator | real-vs-real floor | generator vs tilted real |")
    assert "| precision | 0.710 | 0.760 | 0.740 |" in table
    assert "| recall | 0.420 | 0.770 | 0.510 |" in table
    assert "| FID | 12.500 | 3.250 | 9.750 |" in table
    assert "| density | 0.930 | 1.010 | – |" in table
    assert "| mean true PIR | 0.410 | – | 0.410 (untilted 0.290) |" in table
    assert "| ESS | – | – | 412 of 4000 (10.3 %) |" in table
    assert table[-1] == "| ESS | – | – | 412 of 4000 (10.3 %) |"
    assert _record(tilted_note=REFUSAL).table()[-1] == f"No tilted real set: {REFUSAL}."
    # The figures themselves are the dataclass's, by name.
    assert _record(tilted=TILTED).as_dict()["tilted"] == dataclasses.asdict(TILTED)
