"""Measurements on every slice view of a grid: one layer per view, and drawing with the mouse.

One `MeasureOverlay` per `ViewGrid` keeps a `ViewMeasureLayer` on each shown `SliceView` (re-made
when the grid rebuilds its views) and redraws the layers from the study's
`app.measurements.Measurements` whenever it, the slice or the tool changes (items: measure_items.py).

With the Ruler or Ellipse ROI tool, a left drag over the image draws a new one: a transparent item
over the image (`_DrawCatcher`) takes the drag before the view box, so the slice view's own
gestures (crosshair, edits) need no change. Ctrl+left still moves the crosshair.
"""

from __future__ import annotations

from collections.abc import Callable

import pyqtgraph as pg
from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtWidgets import QGraphicsItem

from brainseg_gui.app.measurements import Measurements
from brainseg_gui.core.measurements import EllipseRoi, Point, Ruler
from brainseg_gui.ui.measure_items import EllipseItem, RanoItem, RulerItem
from brainseg_gui.ui.slice_view import SliceView
from brainseg_gui.ui.view_grid import ViewGrid
from brainseg_gui.ui.viewer_state import Tool, ViewerState

#: Tools that draw measurements, and those during which measurements can be dragged.
DRAWING_TOOLS = (Tool.RULER, Tool.ROI)
EDITABLE_WITH = (Tool.NAVIGATE, Tool.RULER, Tool.ROI)
#: A drawn ruler shorter than this (mm), or an ellipse narrower (voxels), was a click: dropped.
MIN_RULER_MM = 0.5
MIN_ELLIPSE_VOXELS = 0.5


class ViewMeasureLayer:
    """The measurement items of one slice view: those lying in its current slice."""

    def __init__(self, view: SliceView, overlay: MeasureOverlay) -> None:
        self.view = view
        self.overlay = overlay
        self.rulers: dict[int, RulerItem] = {}
        self.ellipses: dict[int, EllipseItem] = {}
        self.rano: RanoItem | None = None
        self.catcher = _DrawCatcher(self)
        view.box.addItem(self.catcher, ignoreBounds=True)

    # ---- voxel <-> view-box coordinates ------------------------------------------------------
    def slice_index(self) -> int:
        shape = self.view.volume.shape if self.view.volume is not None else self.view.state.shape
        return min(max(self.view.state.crosshair[self.view.axis], 0), shape[self.view.axis] - 1)

    def to_view(self, point: Point) -> QPointF:
        """Float RAS voxel -> view-box coordinates (voxel centres are the image's pixel centres)."""
        h, v = self.view.in_plane_axes
        return self.view.image.mapToParent(QPointF(point[h] + 0.5, point[v] + 0.5))

    def to_voxel(self, position: QPointF, clamp: bool = True) -> Point:
        """View-box coordinates -> float RAS voxel on this view's slice (kept inside the image)."""
        pixel = self.view.image.mapFromParent(position)
        h, v = self.view.in_plane_axes
        point = [0.0, 0.0, 0.0]
        point[self.view.axis] = float(self.slice_index())
        point[h], point[v] = pixel.x() - 0.5, pixel.y() - 0.5
        if clamp and self.view.volume is not None:
            for axis in (h, v):
                point[axis] = min(max(point[axis], -0.5), self.view.volume.shape[axis] - 0.5)
        return point[0], point[1], point[2]

    def shows(self, point: Point) -> bool:
        """Whether a point lies in this view's current slice."""
        return round(point[self.view.axis]) == self.slice_index()

    # ---- redrawing -----------------------------------------------------------------------------
    def sync(self, model: Measurements | None) -> None:
        volume = self.view.volume
        if model is None or volume is None or tuple(volume.shape) != model.shape:
            model = None
        self.catcher.fit()
        rulers = {} if model is None else {i: r for i, r in model.rulers.items() if self._ruler_shown(r)}
        ellipses = {} if model is None else {
            i: e for i, e in model.ellipses.items() if e.axis == self.view.axis and e.index == self.slice_index()}
        self._sync_kind(self.rulers, rulers, lambda i: RulerItem(self, i))
        self._sync_kind(self.ellipses, ellipses, lambda i: EllipseItem(self, i))
        rano = model.rano if model is not None else None
        if rano is not None and self.view.axis == 2 and rano.slice_z == self.slice_index():
            if self.rano is None:
                self.rano = RanoItem(self)
            self.rano.show(rano)
        elif self.rano is not None:
            self.rano.remove()
            self.rano = None
        self.set_interactive(self.view.state.tool in EDITABLE_WITH)

    def _ruler_shown(self, ruler: Ruler) -> bool:
        axis = self.view.axis
        return ruler.a[axis] == ruler.b[axis] and self.shows(ruler.a)

    def _sync_kind(self, items: dict, wanted: dict, make: Callable[[int], object]) -> None:
        for item_id in [i for i in items if i not in wanted]:
            items.pop(item_id).remove()
        for item_id, value in wanted.items():
            if item_id not in items:
                items[item_id] = make(item_id)
            items[item_id].show(value)

    def set_interactive(self, on: bool) -> None:
        """Handles follow the mouse only with the navigate and measuring tools (not over a brush stroke)."""
        for item in (*self.rulers.values(), *self.ellipses.values(), *([self.rano] if self.rano else [])):
            item.set_interactive(on)


class _DrawCatcher(pg.GraphicsObject):
    """Invisible, over the image: takes left drags while a measuring tool is chosen, else lets them by."""

    def __init__(self, layer: ViewMeasureLayer) -> None:
        super().__init__()
        self.layer = layer
        self._rect = QRectF()
        self._drawing: int | None = None  # id of the ruler or ellipse being drawn
        self._start: Point | None = None
        self._tool = Tool.RULER  # what this drag draws (the tool when it started)
        self.setZValue(15)
        # it draws nothing: without this flag Qt would call paint() for it at every repaint of the image
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemHasNoContents)

    def fit(self) -> None:
        image = self.layer.view.image
        rect = image.mapRectToParent(image.boundingRect()) if self.layer.view.volume is not None else QRectF()
        if rect != self._rect:
            self.prepareGeometryChange()
            self._rect = rect

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter, option, widget=None) -> None:
        pass

    def _takes(self, ev) -> bool:
        return (ev.button() == Qt.MouseButton.LeftButton and self.layer.view.state.tool in DRAWING_TOOLS
                and not ev.modifiers() & Qt.KeyboardModifier.ControlModifier
                and self.layer.overlay.measurements is not None)

    def mouseClickEvent(self, ev) -> None:
        if self._takes(ev):
            ev.accept()  # a click draws nothing, and must not move the crosshair or edit either
        else:
            ev.ignore()

    def mouseDragEvent(self, ev) -> None:
        if ev.isStart() and not self._takes(ev):
            ev.ignore()  # the rest of this drag goes to the view box (crosshair, edit, window)
            return
        ev.accept()
        model = self.layer.overlay.measurements
        if model is None:
            return
        point = self.layer.to_voxel(ev.pos())
        if ev.isStart():
            self._start = self.layer.to_voxel(ev.buttonDownPos())
            self._tool = self.layer.view.state.tool
            if self._tool is Tool.RULER:
                self._drawing = model.add_ruler(self._start, point)
        elif self._start is not None:
            self._draw_to(model, point)
        if ev.isFinish():
            self._finish(model)

    def _draw_to(self, model: Measurements, point: Point) -> None:
        assert self._start is not None
        if self._tool is Tool.RULER:
            if self._drawing in model.rulers:  # (unless removed meanwhile, from the panel)
                model.move_point(self._drawing, 1, point)
            return
        h, v = self.layer.view.in_plane_axes
        roi = EllipseRoi(self.layer.view.axis, self.layer.slice_index(),
                         ((self._start[h] + point[h]) / 2, (self._start[v] + point[v]) / 2),
                         (abs(point[h] - self._start[h]) / 2, abs(point[v] - self._start[v]) / 2))
        if self._drawing is None:
            self._drawing = model.add_ellipse(roi)
        elif self._drawing in model.ellipses:
            model.set_ellipse(self._drawing, roi)

    def _finish(self, model: Measurements) -> None:
        drawn, self._drawing, self._start = self._drawing, None, None
        if drawn in model.rulers:
            if model.length_mm(drawn) < MIN_RULER_MM:
                model.remove(drawn)
            else:
                self.layer.overlay.drawn(drawn)
        elif drawn in model.ellipses:
            if min(model.ellipses[drawn].radii) < MIN_ELLIPSE_VOXELS:
                model.remove(drawn)
            else:
                self.layer.overlay.drawn(drawn)


class MeasureOverlay(QObject):
    """Draws one study's measurements on every view of a grid and lets the user draw and drag them.

    `set_measurements` switches to another study's model (None: draw nothing). `item_drawn(id)` is
    emitted when the user finishes drawing a ruler or ROI (the panel selects it).
    """

    item_drawn = Signal(int)

    def __init__(self, grid: ViewGrid, state: ViewerState, measurements: Measurements | None = None) -> None:
        super().__init__(grid)
        self.grid = grid
        self.state = state
        self.measurements: Measurements | None = None
        self.layers: dict[SliceView, ViewMeasureLayer] = {}
        grid.views_rebuilt.connect(self._attach)
        state.crosshair_changed.connect(self.sync)
        state.edit_changed.connect(self._on_tool)
        self._attach()
        self.set_measurements(measurements)
        # the model outlives the grid (the Document owns it): no event may reach deleted views
        self.destroyed.connect(lambda: self.measurements is not None and self.measurements.changed.disconnect(
            self.sync))

    def set_measurements(self, measurements: Measurements | None) -> None:
        if self.measurements is not None:
            self.measurements.changed.disconnect(self.sync)
        self.measurements = measurements
        if measurements is not None:
            measurements.changed.connect(self.sync)
        self.sync()

    def layer(self, view: SliceView) -> ViewMeasureLayer:
        return self.layers[view]

    def sync(self, *_args: object) -> None:
        for layer in self.layers.values():
            layer.sync(self.measurements)

    def drawn(self, item_id: int) -> None:
        self.item_drawn.emit(item_id)

    def _attach(self) -> None:
        shown = set(self.grid.views)
        for view in [v for v in self.layers if v not in shown]:
            del self.layers[view]  # its items go with the view (deleted by the grid)
        for view in self.grid.views:
            if view not in self.layers:
                self.layers[view] = ViewMeasureLayer(view, self)
        self._on_tool()

    def _on_tool(self) -> None:
        drawing = self.state.tool in DRAWING_TOOLS
        for layer in self.layers.values():
            if drawing:
                layer.view.viewport().setCursor(Qt.CursorShape.CrossCursor)
        self.sync()
