"""One orthogonal slice view (axial, coronal or sagittal) of one sequence, with overlays.

Orientation, whatever the file's axis order (arrays are RAS here, see `display_volume`):
radiological convention, the patient's right on the screen's left. Axial: anterior up; coronal:
superior up; sagittal: anterior on the left, superior up. Each image pixel is drawn `spacing` mm
wide, so anisotropic voxels keep their true aspect. Mouse: left click/drag moves the crosshair,
wheel (or Page Up/Down, arrows) steps slices, right drag changes window/level, middle drag pans,
Ctrl+wheel zooms, Home fits the brain in the view (the default framing; linked views fit together,
see `view_link`). With an edit tool chosen (see `ViewerState.tool`), left click/drag edits instead:
the view reports the RAS voxels under the mouse through `edit_pressed` / `edit_moved` /
`edit_released` and shows the brush outline; Ctrl+left still moves the crosshair. With the Click
tool, a right click is reported through `edit_negative` and a left drag shows the box it spans.
The mouse events are routed in `slice_gestures.SliceViewBox`.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QKeyEvent, QPen, QTransform
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsRectItem

from brainseg_gui.app.display_volume import DisplayVolume, brain_box_mm
from brainseg_gui.core.study import SEQUENCE_TITLES, SEQUENCES
from brainseg_gui.ui.overlay import OverlayLayer, SliceImageItem, label_colour
from brainseg_gui.ui.slice_gestures import SliceViewBox
from brainseg_gui.ui.viewer_state import AXIS_OF_PLANE, SOURCES, Tool, ViewerState

#: (left, right, top, bottom) labels of each plane on screen.
EDGE_LABELS = {
    "axial": ("R", "L", "A", "P"),
    "coronal": ("R", "L", "S", "I"),
    "sagittal": ("A", "P", "S", "I"),
}
CROSSHAIR_COLOUR = (255, 214, 0, 170)
BRUSH_COLOUR = (255, 255, 255, 200)


class SliceView(pg.GraphicsView):
    """A slice through the crosshair in one plane; follows `ViewerState` and writes back to it.

    `sequence=None` shows the state's active sequence; a fixed sequence is used by the 2x2 layout.
    """

    hovered = Signal(object)  # RAS voxel under the mouse, or None
    edit_pressed = Signal(str, object)  # plane, RAS voxel where an edit stroke starts
    edit_moved = Signal(object)  # RAS voxel the stroke moved to
    edit_released = Signal()
    edit_negative = Signal(str, object)  # Click tool, right click: plane, RAS voxel
    view_moved = Signal(object)  # this view, after the user zoomed or panned it
    zoom_reset = Signal(object)  # this view, after it fitted the brain (Home): linked views fit too

    def __init__(self, state: ViewerState, plane: str, sequence: str | None = None, parent=None) -> None:
        super().__init__(parent, background="k")
        self.state = state
        self.plane = plane
        self.axis = AXIS_OF_PLANE[plane]
        self.fixed_sequence = sequence
        self.volume: DisplayVolume | None = None
        self.codes: dict[str, np.ndarray | None] = {name: None for name in SOURCES}
        self.editing = False  # an edit stroke is under way in this view
        self._drawn_index: int | None = None  # the slice index the image and overlays show
        self._last_edit: tuple[int, int, int] | None = None
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(160, 160)

        self.box = SliceViewBox(self)
        self.setCentralItem(self.box)
        self.image = SliceImageItem(axisOrder="col-major")
        self.box.addItem(self.image)
        self.layers = {
            "original": OverlayLayer("original", state.fills["original"], z_value=12),
            "truth": OverlayLayer("truth", state.fills["truth"], z_value=11),
            "prediction": OverlayLayer("prediction", state.fills["prediction"], z_value=10),
        }
        for layer in self.layers.values():
            self.box.addItem(layer.item)
        pen = pg.mkPen(CROSSHAIR_COLOUR, width=1)
        self.v_line = pg.InfiniteLine(angle=90, movable=False, pen=pen)
        self.h_line = pg.InfiniteLine(angle=0, movable=False, pen=pen)
        for line in (self.v_line, self.h_line):
            line.setZValue(20)
            self.box.addItem(line, ignoreBounds=True)

        self.brush = QGraphicsEllipseItem()
        brush_pen = QPen(pg.mkColor(BRUSH_COLOUR))
        brush_pen.setCosmetic(True)
        self.brush.setPen(brush_pen)
        self.brush.setZValue(25)
        self.brush.setVisible(False)
        self.box.addItem(self.brush, ignoreBounds=True)
        self.drag_box = QGraphicsRectItem()  # the Click tool's box while the left button drags
        self.drag_box.setPen(brush_pen)
        self.drag_box.setZValue(25)
        self.drag_box.setVisible(False)
        self.box.addItem(self.drag_box, ignoreBounds=True)
        self._press_voxel: tuple[int, int, int] | None = None

        self.edge_labels = [self._label(text, 13, bold=True) for text in EDGE_LABELS[plane]]
        self.title = self._label("", 10, bold=False)
        self.box.sigResized.connect(self._place_labels)
        self.box.sigRangeChangedManually.connect(lambda _axes: self.view_moved.emit(self))
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)

        state.crosshair_changed.connect(self._on_crosshair)
        state.sequence_changed.connect(self._on_sequence)
        state.window_changed.connect(self._on_window)
        state.overlay_changed.connect(self._on_overlay)
        state.edit_changed.connect(self._on_edit_settings)
        self._place_labels()
        self._colour_brush()

    # ---- data --------------------------------------------------------------------------------
    @property
    def sequence(self) -> str:
        return self.fixed_sequence or self.state.sequence

    def set_volume(self, volume: DisplayVolume | None, prediction: np.ndarray | None = None) -> None:
        """Show a new study (or none). `prediction` is a RAS region code volume or None."""
        self.volume = volume
        self.codes = {"truth": volume.truth_code if volume is not None else None, "prediction": prediction,
                      "original": None}
        if volume is None:
            self.image.clear()
            for layer in self.layers.values():
                layer.set_slice(None)
            return
        sh, sv = self._pixel_mm()
        transform = QTransform(-sh, 0.0, 0.0, sv, 0.0, 0.0)  # x flipped: radiological convention
        for item in (self.image, self.brush, self.drag_box, *(layer.item for layer in self.layers.values())):
            item.setTransform(transform)
        self._refresh_slice()
        self._place_crosshair()
        self.reset_zoom()

    def set_prediction(self, code: np.ndarray | None) -> None:
        self.codes["prediction"] = code
        self._refresh_overlays()

    def set_original(self, code: np.ndarray | None) -> None:
        """The AI's own mask (RAS region code), drawn in review mode against the corrected one."""
        self.codes["original"] = code
        self._refresh_overlays()

    def shows(self, box: tuple[slice, slice, slice] | None) -> bool:
        """Whether this view's slice passes through a RAS box (None: anything)."""
        if box is None:
            return True
        index = self.state.crosshair[self.axis]
        return box[self.axis].start <= index < box[self.axis].stop

    def refresh_overlay(self, name: str = "prediction") -> None:
        """Redraw one overlay from its (edited in place) code volume."""
        if self.volume is None:
            return
        code = self.codes[name]
        shown = code is not None and self.state.shown[name]
        self.layers[name].set_slice(self._slice(code) if shown else None)

    def reset_zoom(self) -> None:
        """Fit the brain's box (with a small margin) in the view, at the true aspect: the default framing.

        The box stays the view's target, so it keeps fitting as the view is resized. Linked views then
        fit together at one scale (`ViewLink.fit`, through `zoom_reset`).
        """
        if self.volume is not None:
            box = brain_box_mm(self.volume)
            h, v = self.in_plane_axes
            self.box.setRange(xRange=(-box[h][1], -box[h][0]), yRange=box[v], padding=0)
            self.zoom_reset.emit(self)

    @property
    def in_plane_axes(self) -> tuple[int, int]:
        """RAS axes shown (horizontal, vertical): axial (x, y), coronal (x, z), sagittal (y, z)."""
        return self._plane_axes()

    # ---- gestures (also called by tests) -----------------------------------------------------
    def move_crosshair_to(self, scene_pos: QPointF) -> None:
        voxel = self.voxel_at(scene_pos)
        if voxel is not None:
            self.state.set_crosshair(voxel)

    def step(self, steps: int) -> None:
        self.state.step_slice(self.plane, steps)

    def edit_at(self, scene_pos: QPointF, *, start: bool = False) -> None:
        """Report an edit at a scene position (a press when `start`); outside the image: ignored."""
        voxel = self.voxel_at(scene_pos)
        if voxel is None:
            return
        if start:
            self.editing = True
            self._last_edit = self._press_voxel = voxel
            self.edit_pressed.emit(self.plane, voxel)
        elif self.editing and voxel != self._last_edit:
            self._last_edit = voxel
            self._place_drag_box(voxel)
            self.edit_moved.emit(voxel)

    def finish_edit(self) -> None:
        if self.editing:
            self.editing = False
            self._last_edit = self._press_voxel = None
            self.drag_box.setVisible(False)
            self.edit_released.emit()

    def negative_at(self, scene_pos: QPointF) -> None:
        """The Click tool's right click: report the voxel under it (outside the image: ignored)."""
        voxel = self.voxel_at(scene_pos)
        if voxel is not None:
            self.edit_negative.emit(self.plane, voxel)

    def current_window(self) -> tuple[float, float]:
        return self.state.windows.get(self.sequence, (0.0, 1.0))

    def drag_window(self, start: tuple[float, float], dx: float, dy: float) -> None:
        """Right drag: right widens the window, up brightens (lowers the level); relative to start."""
        low, high = start
        width, level = high - low, (high + low) / 2
        width = max(width * math.exp(dx / 200.0), 1e-3)
        level = level + dy * width / 400.0
        self.state.set_window(self.sequence, level - width / 2, level + width / 2)

    def voxel_at(self, scene_pos: QPointF) -> tuple[int, int, int] | None:
        """RAS voxel under a scene position, the fixed axis at the crosshair; None outside the image."""
        if self.volume is None:
            return None
        self.box.prepareForPaint()
        point = self.image.mapFromScene(scene_pos)
        u, v = math.floor(point.x()), math.floor(point.y())
        w, h = self._plane_size()
        if not (0 <= u < w and 0 <= v < h):
            return None
        voxel = list(self.state.crosshair)
        horizontal, vertical = self._plane_axes()
        voxel[horizontal], voxel[vertical] = u, v
        return voxel[0], voxel[1], voxel[2]

    def widget_pos_of(self, voxel: tuple[int, int, int]) -> QPoint:
        """Where a voxel's centre is in this widget's viewport (for tests driving the mouse)."""
        horizontal, vertical = self._plane_axes()
        self.box.prepareForPaint()  # a view not painted yet has a stale view transform
        scene = self.image.mapToScene(QPointF(voxel[horizontal] + 0.5, voxel[vertical] + 0.5))
        return self.mapFromScene(scene)

    def keyPressEvent(self, ev: QKeyEvent) -> None:
        steps = {Qt.Key.Key_PageUp: 1, Qt.Key.Key_PageDown: -1,
                 Qt.Key.Key_Up: 1, Qt.Key.Key_Down: -1}.get(Qt.Key(ev.key()))
        if steps is not None:
            self.step(steps)
            ev.accept()
        elif Qt.Key.Key_1 <= ev.key() <= Qt.Key.Key_4 and self.volume is not None:
            # also bound as window shortcuts; this path serves a window that is not active
            name = SEQUENCES[ev.key() - Qt.Key.Key_1]
            if name in self.volume.images:
                self.state.set_sequence(name)
            ev.accept()
        elif ev.key() == Qt.Key.Key_Home:
            self.reset_zoom()
            ev.accept()
        else:
            super().keyPressEvent(ev)

    # ---- following the state -----------------------------------------------------------------
    def _on_crosshair(self, _voxel) -> None:
        if self.volume is None:
            return
        if self._slice_index() != self._drawn_index:
            # a step through another plane only moves this view's crosshair lines: its slice
            # (image, overlays, title) stays, so nothing is re-sliced or re-rendered
            self._refresh_slice()
        self._place_crosshair()

    def _on_sequence(self, _name: str) -> None:
        if self.fixed_sequence is None and self.volume is not None:
            self._refresh_image()

    def _on_window(self, name: str) -> None:
        if name == self.sequence and self.volume is not None:
            self.image.setLevels(self.current_window())

    def _on_overlay(self) -> None:
        for name, layer in self.layers.items():
            layer.set_look(self.state.look, self.state.fills[name])
        self._refresh_overlays()
        self._colour_brush()

    def _on_edit_settings(self) -> None:
        if not self.state.tool.paints:
            self.brush.setVisible(False)
        self._colour_brush()
        clicking = self.state.tool is Tool.CLICK
        self.viewport().setCursor(Qt.CursorShape.CrossCursor if clicking else Qt.CursorShape.ArrowCursor)

    def _colour_brush(self) -> None:
        """The brush outline in the colour the painted class is drawn in (white for the eraser)."""
        painting = self.state.tool in (Tool.BRUSH, Tool.THRESHOLD)
        colour = (*label_colour(self.state.label, self.state.look), 230) if painting else BRUSH_COLOUR
        pen = QPen(pg.mkColor(colour))
        pen.setCosmetic(True)
        pen.setWidthF(1.5)
        if pen != self.brush.pen():
            self.brush.setPen(pen)

    def _place_drag_box(self, voxel: tuple[int, int, int]) -> None:
        """The Click tool's drag: outline the in-plane box from the pressed voxel to this one."""
        if self.state.tool is not Tool.CLICK or self._press_voxel is None:
            return
        horizontal, vertical = self._plane_axes()
        a, b = self._press_voxel, voxel
        u0, u1 = sorted((a[horizontal], b[horizontal]))
        v0, v1 = sorted((a[vertical], b[vertical]))
        self.drag_box.setRect(QRectF(u0, v0, u1 - u0 + 1, v1 - v0 + 1))
        self.drag_box.setVisible(True)

    def _place_brush(self, voxel: tuple[int, int, int] | None) -> None:
        """The brush outline, in mm, centred on the voxel under the mouse."""
        if voxel is None or not self.state.tool.paints or self.volume is None:
            self.brush.setVisible(False)
            return
        horizontal, vertical = self._plane_axes()
        sh, sv = self._pixel_mm()
        radius = self.state.brush_mm
        u, v = voxel[horizontal] + 0.5, voxel[vertical] + 0.5
        rx, ry = max(radius / sh, 0.5), max(radius / sv, 0.5)
        self.brush.setRect(QRectF(u - rx, v - ry, 2 * rx, 2 * ry))
        self.brush.setVisible(True)

    # ---- drawing -----------------------------------------------------------------------------
    def _slice(self, volume: np.ndarray) -> np.ndarray:
        index = [slice(None)] * 3
        index[self.axis] = self._slice_index()
        return volume[tuple(index)]

    def _slice_index(self) -> int:
        """The crosshair's index through this view's plane, inside the shown volume: while a new study
        is set up the state still holds the previous study's crosshair, maybe beyond this grid."""
        index = self.state.crosshair[self.axis]
        if self.volume is not None:
            index = min(max(index, 0), self.volume.shape[self.axis] - 1)
        return index

    def _refresh_slice(self) -> None:
        self._drawn_index = self._slice_index()
        self._refresh_image()
        self._refresh_overlays()

    def _refresh_image(self) -> None:
        assert self.volume is not None
        array = self.volume.images.get(self.sequence)
        if array is None:  # a missing sequence: show black, say so in the title
            self.image.setImage(np.zeros(self._plane_size(), np.float32), levels=(0, 1))
        else:
            self.image.setImage(self._slice(array), autoLevels=False, levels=self.current_window())
        self._update_title()

    def _refresh_overlays(self) -> None:
        for name, layer in self.layers.items():
            code = self.codes[name]
            shown = code is not None and self.state.shown[name]
            layer.set_slice(self._slice(code) if shown else None)

    def _place_crosshair(self) -> None:
        sh, sv = self._pixel_mm()
        horizontal, vertical = self._plane_axes()
        self.v_line.setPos(-(self.state.crosshair[horizontal] + 0.5) * sh)
        self.h_line.setPos((self.state.crosshair[vertical] + 0.5) * sv)

    def _update_title(self) -> None:
        name = SEQUENCE_TITLES.get(self.sequence, self.sequence)
        if self.volume is not None and self.sequence not in self.volume.images:
            name += " (missing)"
        index = self._slice_index()
        count = self.volume.shape[self.axis] if self.volume is not None else 0
        self.title.setText(f"{self.plane.capitalize()}  {name}  {index + 1}/{count}")

    def _plane_axes(self) -> tuple[int, int]:
        horizontal, vertical = (a for a in range(3) if a != self.axis)
        return horizontal, vertical

    def _plane_size(self) -> tuple[int, int]:
        shape = self.volume.shape if self.volume is not None else self.state.shape
        horizontal, vertical = self._plane_axes()
        return shape[horizontal], shape[vertical]

    def _pixel_mm(self) -> tuple[float, float]:
        spacing = self.volume.spacing if self.volume is not None else (1.0, 1.0, 1.0)
        horizontal, vertical = self._plane_axes()
        return spacing[horizontal], spacing[vertical]

    def _label(self, text: str, size: int, bold: bool) -> pg.TextItem:
        item = pg.TextItem(text, color=(230, 230, 230) if bold else (200, 200, 160))
        font = item.textItem.font()
        font.setPointSize(size)
        font.setBold(bold)
        item.setFont(font)
        item.setParentItem(self.box)
        item.setZValue(30)
        return item

    def _place_labels(self) -> None:
        rect = self.box.boundingRect()
        w, h = rect.width(), rect.height()
        left, right, top, bottom = self.edge_labels
        left.setAnchor((0, 0.5))
        left.setPos(2, h / 2)
        right.setAnchor((1, 0.5))
        right.setPos(w - 2, h / 2)
        top.setAnchor((0.5, 0))
        top.setPos(w / 2, 2)
        bottom.setAnchor((0.5, 1))
        bottom.setPos(w / 2, h - 2)
        self.title.setAnchor((0, 0))
        self.title.setPos(2, 2)

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        voxel = self.voxel_at(scene_pos)
        self._place_brush(voxel)
        self.hovered.emit(voxel)
