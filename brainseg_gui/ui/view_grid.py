"""The central area: the slice views arranged by the state's layout (1x3, 2x2, single).

1x3: axial, coronal, sagittal of the active sequence. 2x2: the main plane once per sequence.
Single: the main plane of the active sequence. Views are rebuilt on a layout change; each one
follows the shared `ViewerState`, so the crosshair stays linked across all of them; while
`state.link_views` is on, zoom and pan are linked too (`view_link.ViewLink`), and a new layout or
study opens with the brain fitted in every view.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGridLayout, QLabel, QStackedLayout, QWidget

from brainseg_gui.app.display_volume import DisplayVolume
from brainseg_gui.core.study import SEQUENCES
from brainseg_gui.ui.slice_view import SliceView
from brainseg_gui.ui.view_link import ViewLink
from brainseg_gui.ui.viewer_state import PLANES, Layout, ViewerState


class ViewGrid(QWidget):
    hovered = Signal(object)  # RAS voxel under the mouse in any view, or None
    edit_pressed = Signal(str, object)  # from any view: plane, RAS voxel
    edit_moved = Signal(object)
    edit_released = Signal()
    edit_negative = Signal(str, object)  # the Click tool's right click: plane, RAS voxel
    views_rebuilt = Signal()  # the views were replaced (layout or study): overlays re-attach (measure_items)

    def __init__(self, state: ViewerState, placeholder: QWidget | None = None, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.volume: DisplayVolume | None = None
        self.prediction: np.ndarray | None = None
        self.original: np.ndarray | None = None
        self.views: list[SliceView] = []
        self.link = ViewLink(state, self)
        self._stack = QStackedLayout(self)
        self._placeholder = placeholder or QLabel("No study open")
        self._grid_host = QWidget()
        self._grid = QGridLayout(self._grid_host)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(3)
        self._stack.addWidget(self._placeholder)
        self._stack.addWidget(self._grid_host)
        state.layout_changed.connect(self._rebuild)
        self._rebuild()

    def set_volume(self, volume: DisplayVolume | None) -> None:
        self.volume = volume
        self.prediction = None
        self.original = None
        self._rebuild()

    def set_prediction(self, code: np.ndarray | None) -> None:
        self.prediction = code
        for view in self.views:
            view.set_prediction(code)

    def set_original(self, code: np.ndarray | None) -> None:
        """The AI's unedited mask (RAS region code) for review mode."""
        self.original = code
        for view in self.views:
            view.set_original(code)

    def refresh_prediction(self, box: tuple[slice, slice, slice] | None = None) -> None:
        """Redraw the edited mask in the views whose slice passes through a RAS box (None: all)."""
        for view in self.views:
            if view.shows(box):
                view.refresh_overlay("prediction")

    def view(self, plane: str, sequence: str | None = None) -> SliceView:
        """The shown view of a plane (and, in 2x2, of a sequence); KeyError when not shown."""
        for view in self.views:
            if view.plane == plane and (sequence is None or view.sequence == sequence):
                return view
        raise KeyError(f"no {plane} view{' of ' + sequence if sequence else ''} in layout {self.state.layout.value}")

    def _rebuild(self) -> None:
        self.link.set_views([])
        for view in self.views:
            self._grid.removeWidget(view)
            view.hide()
            for signal in (view.hovered, view.edit_pressed, view.edit_moved, view.edit_released,
                           view.edit_negative):
                signal.disconnect()
            view.set_volume(None)  # until deleted it still follows the state: the next study's crosshair
            view.deleteLater()
        self.views = []
        if self.volume is None:
            self._stack.setCurrentWidget(self._placeholder)
            self.views_rebuilt.emit()
            return
        layout = self.state.layout
        if layout is Layout.ROW:
            specs = [(plane, None, 0, column) for column, plane in enumerate(PLANES)]
        elif layout is Layout.GRID:
            specs = [(self.state.main_plane, name, index // 2, index % 2) for index, name in enumerate(SEQUENCES)]
        else:
            specs = [(self.state.main_plane, None, 0, 0)]
        for plane, sequence, row, column in specs:
            view = SliceView(self.state, plane, sequence)
            view.hovered.connect(self.hovered)
            view.edit_pressed.connect(self.edit_pressed)
            view.edit_moved.connect(self.edit_moved)
            view.edit_released.connect(self.edit_released)
            view.edit_negative.connect(self.edit_negative)
            self._grid.addWidget(view, row, column)
            view.set_volume(self.volume, self.prediction)
            if self.original is not None:
                view.set_original(self.original)
            self.views.append(view)
        self._stack.setCurrentWidget(self._grid_host)
        self.link.set_views(self.views)
        self.views_rebuilt.emit()
