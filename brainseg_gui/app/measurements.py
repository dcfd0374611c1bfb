"""The measurements made on one open study: rulers, ellipse ROIs and the RANO measurement.

Owned by the study's Document (a new study gets a new `Measurements`, so nothing measured on one
study is drawn on the next). Views and the Measure panel change it through these methods and
redraw on `changed`; no Qt here (psygnal events), so it is tested without a display. Ruler and
ROI ids are unique within one study and never reused, so a view can keep an item per id.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from psygnal import Signal

from brainseg_gui.app.region_codes import region_mask
from brainseg_gui.core.atomic import write_atomic
from brainseg_gui.core.measurements import (
    EllipseRoi,
    MeasurementSet,
    Point,
    RanoMeasurement,
    RoiStatistics,
    Ruler,
    Segment,
    distance_mm,
    ellipse_statistics,
    rano_from_axes,
    read_measurements,
    roi_statistics,
    voxel_volume_ml,
)
from brainseg_gui.core.rano import rano

log = logging.getLogger(__name__)

class Measurements:
    """Rulers, ellipse ROIs and the RANO measurement of one study's RAS grid.

    shape: the RAS grid's (x, y, z) size; affine: its RAS voxel -> world mm affine
    (`DisplayVolume.shape` / `.ras_affine`). Setters that change nothing emit nothing, so a view
    that writes back what it shows cannot loop.
    """

    changed = Signal()

    def __init__(self, shape: tuple[int, int, int], affine: np.ndarray) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.affine = np.array(affine, dtype=float)
        self._rulers: dict[int, Ruler] = {}
        self._ellipses: dict[int, EllipseRoi] = {}
        self._rano: RanoMeasurement | None = None
        self._next_id = 1

    @classmethod
    def for_volume(cls, volume: Any) -> Measurements:
        """Measurements on a DisplayVolume's grid (anything with `shape` and `ras_affine`)."""
        return cls(volume.shape, volume.ras_affine)

    # ---- reading ------------------------------------------------------------------------------
    @property
    def rulers(self) -> Mapping[int, Ruler]:
        return MappingProxyType(self._rulers)

    @property
    def ellipses(self) -> Mapping[int, EllipseRoi]:
        return MappingProxyType(self._ellipses)

    @property
    def rano(self) -> RanoMeasurement | None:
        return self._rano

    @property
    def empty(self) -> bool:
        return not (self._rulers or self._ellipses or self._rano)

    def length_mm(self, ruler_id: int) -> float:
        ruler = self._rulers[ruler_id]
        return distance_mm(self.affine, ruler.a, ruler.b)

    def ellipse_statistics(self, roi_id: int, images: Mapping[str, np.ndarray]) -> RoiStatistics:
        """Per-sequence statistics inside an ellipse ROI (images: RAS arrays on this grid)."""
        return ellipse_statistics(self._ellipses[roi_id], images, self.shape, self.affine)

    def region_statistics(self, code: np.ndarray, region: str, images: Mapping[str, np.ndarray]) -> RoiStatistics:
        """Per-sequence statistics inside a label region of a RAS region-code volume."""
        return roi_statistics(images, region_mask(code, region), voxel_volume_ml(self.affine))

    # ---- changing -----------------------------------------------------------------------------
    def add_ruler(self, a: Point, b: Point) -> int:
        ruler_id = self._new_id()
        self._rulers[ruler_id] = Ruler(_point(a), _point(b))
        self.changed.emit()
        return ruler_id

    def set_ruler(self, ruler_id: int, a: Point, b: Point) -> None:
        ruler = Ruler(_point(a), _point(b))
        if self._rulers[ruler_id] != ruler:
            self._rulers[ruler_id] = ruler
            self.changed.emit()

    def move_point(self, ruler_id: int, end: int, point: Point) -> None:
        """Move one end (0: a, 1: b) of a ruler."""
        ruler = self._rulers[ruler_id]
        a, b = (point, ruler.b) if end == 0 else (ruler.a, point)
        self.set_ruler(ruler_id, a, b)

    def add_ellipse(self, roi: EllipseRoi) -> int:
        roi_id = self._new_id()
        self._ellipses[roi_id] = roi
        self.changed.emit()
        return roi_id

    def set_ellipse(self, roi_id: int, roi: EllipseRoi) -> None:
        if self._ellipses[roi_id] != roi:
            self._ellipses[roi_id] = roi
            self.changed.emit()

    def remove(self, item_id: int) -> None:
        """Remove a ruler or ellipse ROI (an unknown id is ignored: it was removed already)."""
        if self._rulers.pop(item_id, None) is not None or self._ellipses.pop(item_id, None) is not None:
            self.changed.emit()

    def clear(self) -> None:
        if not self.empty:
            self._rulers.clear()
            self._ellipses.clear()
            self._rano = None
            self.changed.emit()

    def set_rano(self, measurement: RanoMeasurement | None) -> None:
        if measurement != self._rano:
            self._rano = measurement
            self.changed.emit()

    def measure_rano(self, code: np.ndarray) -> RanoMeasurement | None:
        """Measure ET automatically in a RAS region-code volume; None (and the old one removed) when
        the mask has no ET. Replaces a measurement the user adjusted."""
        if tuple(code.shape) != self.shape:
            raise ValueError(f"the mask's shape {code.shape} is not this study's grid {self.shape}")
        measurement = rano(region_mask(code, "ET"), self.affine)
        self.set_rano(measurement)
        return measurement

    def adjust_rano(self, long_axis: Segment, short_axis: Segment) -> None:
        """The user moved an end of the RANO axes: lengths and product are recomputed in mm."""
        self.set_rano(rano_from_axes(self.affine, long_axis, short_axis, adjusted=True))

    # ---- files --------------------------------------------------------------------------------
    def snapshot(self) -> MeasurementSet:
        return MeasurementSet((self.shape[0], self.shape[1], self.shape[2]),
                              tuple(tuple(float(v) for v in row) for row in self.affine),
                              tuple(self._rulers.values()), tuple(self._ellipses.values()), self._rano)

    def save(self, path: Path) -> Path:
        """Write every measurement as JSON, all or nothing (the grid is kept for checking on load)."""
        return write_atomic(Path(path), self.snapshot().to_json())

    def load(self, path: Path) -> None:
        """Replace the measurements with a saved file's; a file of another grid or a damaged one
        raises MeasurementError with one line naming the file and the problem."""
        saved = read_measurements(Path(path), self.shape, self.affine)
        self._rulers = {self._new_id(): ruler for ruler in saved.rulers}
        self._ellipses = {self._new_id(): roi for roi in saved.ellipses}
        self._rano = saved.rano
        self.changed.emit()

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1


def _point(values: Any) -> Point:
    x, y, z = (float(v) for v in values)
    return x, y, z
