"""The study's Measurements model without a display: events, ids, regions, RANO, save and load."""

from __future__ import annotations

import numpy as np
import pytest

from brainseg_gui.app.measurements import Measurements
from brainseg_gui.app.region_codes import BRATS_LABEL_CODE, region_mask
from brainseg_gui.core.measurements import EllipseRoi, MeasurementError

AFFINE = np.array([[1.5, 0, 0, -29.25], [0, 1.5, 0, -35.25], [0, 0, 4.0, -38.0], [0, 0, 0, 1.0]])
SHAPE = (40, 48, 20)


@pytest.fixture
def model() -> tuple[Measurements, list[int]]:
    measurements = Measurements(SHAPE, AFFINE)
    events: list[int] = []
    measurements.changed.connect(lambda: events.append(1))
    return measurements, events


def _code() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    labels[10:20, 10:20, 5:8] = 2  # ED
    labels[12:18, 12:18, 5:8] = 1  # NCR
    labels[14:17, 13:17, 6] = 4  # ET, one slice, 3 x 4 voxels = 4.5 x 6 mm
    return BRATS_LABEL_CODE[labels]


def test_rulers_events_and_ids(model) -> None:
    measurements, events = model
    first = measurements.add_ruler((0, 0, 3), (4, 0, 3))
    second = measurements.add_ruler((1, 1, 3), (1, 5, 3))
    assert first != second and len(events) == 2
    assert measurements.length_mm(first) == pytest.approx(6.0)
    measurements.move_point(first, 1, (0, 0, 5))  # now along z: 2 slices of 4 mm
    assert measurements.length_mm(first) == pytest.approx(8.0) and len(events) == 3
    measurements.move_point(first, 1, (0, 0, 5))  # nothing changed: no event
    assert len(events) == 3
    measurements.remove(first)
    measurements.remove(first)
    assert list(measurements.rulers) == [second] and len(events) == 4
    third = measurements.add_ruler((0, 0, 0), (1, 0, 0))
    assert third not in (first, second)  # ids are never reused
    measurements.clear()
    assert measurements.empty and len(events) == 6


def test_region_masks_follow_the_region_code() -> None:
    code = _code()
    labels_back = np.where(region_mask(code, "ET"), 4, np.where(region_mask(code, "NCR"), 1,
                                                                np.where(region_mask(code, "ED"), 2, 0)))
    assert set(np.unique(labels_back)) == {0, 1, 2, 4}
    assert region_mask(code, "WT").sum() == 10 * 10 * 3
    assert region_mask(code, "TC").sum() == 6 * 6 * 3
    with pytest.raises(ValueError, match="unknown region"):
        region_mask(code, "XX")


def test_statistics_of_an_ellipse_and_a_region(model) -> None:
    measurements, _events = model
    images = {"t1": np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)}
    roi_id = measurements.add_ellipse(EllipseRoi(2, 6, (15.0, 15.0), (3.0, 2.0)))
    stats = measurements.ellipse_statistics(roi_id, images)
    mask = measurements.ellipses[roi_id].mask(SHAPE)
    assert stats.voxels == int(mask.sum()) and stats.sequences["t1"].mean == pytest.approx(images["t1"][mask].mean())
    region = measurements.region_statistics(_code(), "ET", images)
    assert region.voxels == 12 and region.volume_ml == pytest.approx(12 * 9e-3)


def test_rano_auto_then_adjusted(model) -> None:
    measurements, events = model
    measured = measurements.measure_rano(_code())
    assert measured is not None and measured.slice_z == 6 and not measured.adjusted
    assert measured.long_mm >= measured.short_mm
    (p, q), short = measured.long_axis, measured.short_axis
    measurements.adjust_rano((p, (q[0] + 2, q[1], q[2])), short)
    assert measurements.rano is not None and measurements.rano.adjusted
    assert measurements.rano.long_mm != pytest.approx(measured.long_mm)
    code = _code()
    code[code & 4 != 0] = 3
    assert measurements.measure_rano(code) is None and measurements.rano is None
    with pytest.raises(ValueError, match="grid"):
        measurements.measure_rano(np.zeros((2, 2, 2), np.uint8))
    assert len(events) == 3


def test_save_and_load(model, tmp_path) -> None:
    measurements, _events = model
    measurements.add_ruler((1.0, 2.0, 3.0), (4.5, 2.0, 3.0))
    measurements.add_ellipse(EllipseRoi(0, 5, (10.0, 4.0), (3.0, 1.5)))
    measurements.measure_rano(_code())
    path = measurements.save(tmp_path / "case_measurements.json")
    again = Measurements(SHAPE, AFFINE)
    again.load(path)
    assert list(again.rulers.values()) == list(measurements.rulers.values())
    assert list(again.ellipses.values()) == list(measurements.ellipses.values())
    assert again.rano == measurements.rano
    assert not list(tmp_path.glob(".*"))  # no temporary left behind


@pytest.mark.parametrize("problem", ["missing", "damaged", "other grid", "other position"])
def test_a_bad_file_raises_one_line_and_changes_nothing(model, tmp_path, problem) -> None:
    measurements, _events = model
    kept = measurements.add_ruler((0, 0, 0), (1, 0, 0))
    path = tmp_path / "m.json"
    if problem == "damaged":
        path.write_text('{"format": "brainseg-measurements", "version": 1, "grid": 3}')
    elif problem == "other grid":
        Measurements((10, 10, 10), AFFINE).save(path)
    elif problem == "other position":
        shifted = AFFINE.copy()
        shifted[0, 3] += 5
        Measurements(SHAPE, shifted).save(path)
    with pytest.raises(MeasurementError) as error:
        measurements.load(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    assert list(measurements.rulers) == [kept]
