"""Measurement items drawn over a slice view: rulers, ellipse ROIs and the RANO axes, all draggable.

Each item is drawn by one `measure_overlay.ViewMeasureLayer` (one per slice view) from the study's
`app.measurements.Measurements`. Items live in the view box's coordinates (millimetres, x flipped;
the layer maps them to float RAS voxels through the image item's transform), so handles and
ellipses keep the true aspect of anisotropic voxels. Dragging a handle writes the new points to the
model; the model announces the change and every view redraws from it (pyqtgraph's LineSegmentROI and
EllipseROI do the dragging).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt

from brainseg_gui.app.measurements import Measurements
from brainseg_gui.core.measurements import EllipseRoi, Point, RanoMeasurement, Ruler, Segment, distance_mm


class ViewMeasureLayer(Protocol):
    """What an item needs of the layer that draws it (measure_overlay.ViewMeasureLayer): the slice
    view (its view box and in-plane axes), the model, and the mapping between view and voxels."""

    view: Any  # ui.slice_view.SliceView
    overlay: Any  # measure_overlay.MeasureOverlay: `.measurements`

    def to_view(self, point: Point) -> QPointF: ...
    def to_voxel(self, position: QPointF, clamp: bool = True) -> Point: ...

RULER_COLOUR = (0, 229, 255)
ELLIPSE_COLOUR = (200, 150, 255)
RANO_LONG_COLOUR = (255, 255, 255)
RANO_SHORT_COLOUR = (255, 120, 220)
_Z = 26  # above the overlays (10-12), crosshair (20) and brush (25)


def _set_interactive(roi: pg.ROI, on: bool, *, movable: bool, removable: bool) -> None:
    """Let a ROI and its handles take the mouse, or make it a picture only: with a brush or the Click
    tool a stroke over a ruler must paint, not drag it. (pyqtgraph offers drags to disabled items
    on hover, so disabling is not enough: the ROI drops its buttons and its handles are hidden.)"""
    roi.translatable = on and movable
    roi.removable = on and removable
    roi.setAcceptedMouseButtons(Qt.MouseButton.AllButtons if on else Qt.MouseButton.NoButton)
    for handle in roi.getHandles():
        handle.setVisible(on)


def _pens(colour: tuple[int, int, int]) -> dict[str, object]:
    """One colour per kind of measurement, hovered or not (pyqtgraph's default hover is yellow, the
    crosshair's colour): hovering thickens the line and lightens the handles instead."""
    light = tuple(min(255, c + 90) for c in colour)
    return {"pen": pg.mkPen(colour, width=2), "hoverPen": pg.mkPen(colour, width=3),
            "handlePen": pg.mkPen(colour, width=1.5), "handleHoverPen": pg.mkPen(light, width=2)}


def _text(colour: tuple[int, int, int]) -> pg.TextItem:
    item = pg.TextItem("", color=colour, fill=(0, 0, 0, 150), anchor=(0, 1.1))
    item.setZValue(_Z + 2)
    return item


class _Segment:
    """A line with two draggable ends (pyqtgraph's LineSegmentROI) and a length label."""

    def __init__(self, layer: ViewMeasureLayer, colour: tuple[int, int, int], moved: Callable[[], None],
                 *, movable: bool) -> None:
        self.layer = layer
        self._moved = moved
        self._updating = False
        self.movable, self.removable = movable, False
        self.roi = pg.LineSegmentROI([[0, 0], [1, 1]], movable=movable, rotatable=False, resizable=False,
                                     **_pens(colour))
        self.roi.setZValue(_Z)
        self.label = _text(colour)
        layer.view.box.addItem(self.roi, ignoreBounds=True)
        layer.view.box.addItem(self.label, ignoreBounds=True)
        self.roi.sigRegionChanged.connect(self._on_changed)

    def ends(self) -> Segment:
        handles = self.roi.getHandles()
        a, b = (self.layer.to_voxel(self.roi.mapToParent(handle.pos())) for handle in handles)
        return a, b

    def place(self, segment: Segment, text: str, *, below: bool = False) -> None:
        """Put the ends on two voxels and the label by the upper end (`below`: under the lower one)."""
        targets = [self.layer.to_view(point) for point in segment]
        self._updating = True
        try:
            for handle, target in zip(self.roi.getHandles(), targets):
                current = self.roi.mapToParent(handle.pos())
                if math.hypot(current.x() - target.x(), current.y() - target.y()) > 1e-6:
                    self.roi.movePoint(handle, target, finish=False)
        finally:
            self._updating = False
        self.label.setText(text)
        upper = max(targets, key=lambda p: p.y())  # view y grows upwards
        self.label.setPos(min(targets, key=lambda p: p.y()) if below else upper)
        self.label.setAnchor((0, -0.1) if below else (0, 1.1))

    def _on_changed(self, _roi) -> None:
        if not self._updating:
            self._moved()

    def set_interactive(self, on: bool) -> None:
        _set_interactive(self.roi, on, movable=self.movable, removable=self.removable)

    def remove(self) -> None:
        box = self.layer.view.box
        for item in (self.roi, self.label):
            if item.scene() is not None:
                box.removeItem(item)


class RulerItem:
    """One ruler: a cyan line, both ends draggable, the whole line movable, its length in mm."""

    def __init__(self, layer: ViewMeasureLayer, ruler_id: int) -> None:
        self.layer, self.ruler_id = layer, ruler_id
        self.segment = _Segment(layer, RULER_COLOUR, self._moved, movable=True)
        self.segment.removable = True
        self.segment.roi.sigRemoveRequested.connect(lambda _roi: self._model().remove(ruler_id))

    def _model(self) -> Measurements:
        model = self.layer.overlay.measurements
        assert model is not None
        return model

    def show(self, ruler: Ruler) -> None:
        self.segment.place((ruler.a, ruler.b), f"{distance_mm(self._model().affine, ruler.a, ruler.b):.1f} mm")

    def _moved(self) -> None:
        model = self.layer.overlay.measurements
        if model is not None and self.ruler_id in model.rulers:
            model.set_ruler(self.ruler_id, *self.segment.ends())

    def set_interactive(self, on: bool) -> None:
        self.segment.set_interactive(on)

    def remove(self) -> None:
        self.segment.remove()


class _AxisEllipseROI(pg.EllipseROI):
    """An ellipse with two corner scale handles and no rotation: ROIs stay axis-aligned in voxels."""

    def _addHandles(self) -> None:
        self.addScaleHandle([1, 1], [0, 0])
        self.addScaleHandle([0, 0], [1, 1])


class EllipseItem:
    """One ellipse ROI: moved by dragging it, resized by its two corner handles."""

    def __init__(self, layer: ViewMeasureLayer, roi_id: int) -> None:
        self.layer, self.roi_id = layer, roi_id
        self._updating = False
        self.roi = _AxisEllipseROI([0, 0], [1, 1], rotatable=False, resizable=False, removable=True,
                                   **_pens(ELLIPSE_COLOUR))
        self.roi.setZValue(_Z)
        self.label = _text(ELLIPSE_COLOUR)
        layer.view.box.addItem(self.roi, ignoreBounds=True)
        layer.view.box.addItem(self.label, ignoreBounds=True)
        self.roi.sigRegionChanged.connect(self._moved)
        self.roi.sigRemoveRequested.connect(lambda _roi: self._remove_from_model())

    def show(self, ellipse: EllipseRoi) -> None:
        (ch, cv), (rh, rv) = ellipse.centre, ellipse.radii
        h, v = self.layer.view.in_plane_axes
        corners = []
        for du, dv in ((-rh, -rv), (rh, rv)):
            point = [0.0, 0.0, 0.0]
            point[h], point[v] = ch + du, cv + dv
            corners.append(self.layer.to_view((point[0], point[1], point[2])))
        left, right = sorted(c.x() for c in corners)
        bottom, top = sorted(c.y() for c in corners)
        self._updating = True
        try:
            now = (self.roi.pos().x(), self.roi.pos().y(), self.roi.size().x(), self.roi.size().y())
            if max(abs(a - b) for a, b in zip(now, (left, bottom, right - left, top - bottom))) > 1e-6:
                self.roi.setPos(QPointF(left, bottom), update=False, finish=False)
                self.roi.setSize(QPointF(right - left, top - bottom), finish=False)
        finally:
            self._updating = False
        self.label.setText(f"ROI {self.roi_id}")
        self.label.setPos(QPointF(right, top))

    def _moved(self, _roi) -> None:
        model = self.layer.overlay.measurements
        if self._updating or model is None or self.roi_id not in model.ellipses:
            return
        pos, size = self.roi.pos(), self.roi.size()
        a = self.layer.to_voxel(QPointF(pos.x(), pos.y()), clamp=False)
        b = self.layer.to_voxel(QPointF(pos.x() + size.x(), pos.y() + size.y()), clamp=False)
        h, v = self.layer.view.in_plane_axes
        old = model.ellipses[self.roi_id]
        model.set_ellipse(self.roi_id, EllipseRoi(old.axis, old.index, ((a[h] + b[h]) / 2, (a[v] + b[v]) / 2),
                                                  (abs(b[h] - a[h]) / 2, abs(b[v] - a[v]) / 2)))

    def _remove_from_model(self) -> None:
        if self.layer.overlay.measurements is not None:
            self.layer.overlay.measurements.remove(self.roi_id)

    def set_interactive(self, on: bool) -> None:
        _set_interactive(self.roi, on, movable=True, removable=True)

    def remove(self) -> None:
        for item in (self.roi, self.label):
            if item.scene() is not None:
                self.layer.view.box.removeItem(item)


class RanoItem:
    """The RANO long axis (white) and perpendicular axis (pink); dragging an end re-measures."""

    def __init__(self, layer: ViewMeasureLayer) -> None:
        self.layer = layer
        self.long = _Segment(layer, RANO_LONG_COLOUR, self._moved, movable=False)
        self.short = _Segment(layer, RANO_SHORT_COLOUR, self._moved, movable=False)

    def show(self, rano: RanoMeasurement) -> None:
        self.long.place(rano.long_axis, f"{rano.long_mm:.1f} mm")
        self.short.place(rano.short_axis, f"{rano.short_mm:.1f} mm", below=True)  # apart from the long's

    def _moved(self) -> None:
        model = self.layer.overlay.measurements
        if model is not None and model.rano is not None:
            model.adjust_rano(self.long.ends(), self.short.ends())

    def set_interactive(self, on: bool) -> None:
        self.long.set_interactive(on)
        self.short.set_interactive(on)

    def remove(self) -> None:
        self.long.remove()
        self.short.remove()
