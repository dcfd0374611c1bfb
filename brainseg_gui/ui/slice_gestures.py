"""The slice view's mouse gestures: a pyqtgraph ViewBox that drives the viewer instead of panning.

Left click/drag moves the crosshair or, with an edit tool (and without Ctrl), edits; with the Click
tool a right click is a negative click; right drag sets window/level, middle drag pans, the wheel
steps slices and Ctrl+wheel zooms. The view (`SliceView`) does the work; this only routes events.
"""

from __future__ import annotations

from typing import Protocol

import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt

from brainseg_gui.ui.viewer_state import Tool, ViewerState


class GestureTarget(Protocol):
    """What the gestures drive (ui.slice_view.SliceView), named here so this module need not import it."""

    state: ViewerState
    editing: bool

    def negative_at(self, scene_pos: QPointF) -> None: ...
    def edit_at(self, scene_pos: QPointF, *, start: bool = False) -> None: ...
    def finish_edit(self) -> None: ...
    def move_crosshair_to(self, scene_pos: QPointF) -> None: ...
    def current_window(self) -> tuple[float, float]: ...
    def drag_window(self, start: tuple[float, float], dx: float, dy: float) -> None: ...
    def step(self, steps: int) -> None: ...


class SliceViewBox(pg.ViewBox):
    """A ViewBox whose mouse gestures drive the viewer instead of the default pan/zoom."""

    def __init__(self, view: GestureTarget) -> None:
        super().__init__(lockAspect=True, enableMenu=False, invertY=False)
        self._view = view
        self._drag_window: tuple[float, float] | None = None

    def _edits(self, ev) -> bool:
        """Left button with an edit tool (and without Ctrl, which keeps the crosshair)."""
        return (self._view.state.tool is not Tool.NAVIGATE
                and not ev.modifiers() & Qt.KeyboardModifier.ControlModifier)

    def mouseClickEvent(self, ev) -> None:
        if ev.button() == Qt.MouseButton.RightButton and self._view.state.tool is Tool.CLICK and self._edits(ev):
            ev.accept()
            self._view.negative_at(ev.scenePos())
        elif ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            if self._edits(ev):
                self._view.edit_at(ev.scenePos(), start=True)
                self._view.finish_edit()
            else:
                self._view.move_crosshair_to(ev.scenePos())
        else:
            ev.ignore()

    def mouseDragEvent(self, ev, axis=None) -> None:
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            if self._edits(ev) or self._view.editing:
                if ev.isStart():
                    self._view.edit_at(ev.buttonDownScenePos(), start=True)
                self._view.edit_at(ev.scenePos())
                if ev.isFinish():
                    self._view.finish_edit()
            else:
                self._view.move_crosshair_to(ev.scenePos())
        elif ev.button() == Qt.MouseButton.RightButton:
            ev.accept()
            if ev.isStart():
                self._drag_window = self._view.current_window()
            if self._drag_window is not None:
                delta = ev.screenPos() - ev.buttonDownScreenPos()
                self._view.drag_window(self._drag_window, delta.x(), delta.y())
            if ev.isFinish():
                self._drag_window = None
        elif ev.button() == Qt.MouseButton.MiddleButton:
            super().mouseDragEvent(ev, axis)  # pan
        else:
            ev.ignore()

    def wheelEvent(self, ev, axis=None) -> None:
        if ev.modifiers() & Qt.KeyboardModifier.ControlModifier:
            super().wheelEvent(ev, axis)
            return
        ev.accept()
        delta = ev.delta()
        if delta:
            self._view.step(1 if delta > 0 else -1)
