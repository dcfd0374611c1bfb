"""Review mode: the AI's mask (outline) over the corrected one (filled), Dice per region, and a way
to step through the slices where the two differ most.

While review mode is on, the study's own ground truth is hidden (it is drawn as an outline in the
same colours as the AI's mask, so the two could not be told apart); it comes back when review ends.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QDockWidget,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from brainseg_gui.app.document import Workspace
from brainseg_gui.app.editing import Editing
from brainseg_gui.core.labels import REGIONS
from brainseg_gui.core.review import Comparison, difference_slices
from brainseg_gui.ui.viewer_state import AXIS_OF_PLANE, ViewerState

COLUMNS = ("Region", "AI mL", "Corrected mL", "Dice")


class ReviewPanel(QGroupBox):
    @property
    def editing(self) -> Editing:
        """The shown study's editing (a new study, a new one)."""
        return self.workspace.document.editing

    def __init__(self, state: ViewerState, workspace: Workspace, parent=None) -> None:
        super().__init__("Review: AI vs corrected", parent)
        self.state = state
        self.workspace = workspace
        self.comparison: Comparison | None = None
        self.differences: list[tuple[int, int]] = []
        self.position = -1
        self._stale = False
        self._truth_shown: bool | None = None  # the truth overlay's state before review mode hid it
        layout = QVBoxLayout(self)
        self.toggle = QCheckBox("Show the AI mask (outline) over the corrected one (V)")
        self.toggle.toggled.connect(self.set_active)
        layout.addWidget(self.toggle)
        self.table = QTableWidget(len(REGIONS), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setFixedHeight(self.table.horizontalHeader().sizeHint().height() + 3 * 22 + 4)
        layout.addWidget(self.table)
        buttons = QHBoxLayout()
        self.previous_button = QPushButton("◀ Previous difference")
        self.previous_button.setToolTip("Shift+N")
        self.previous_button.clicked.connect(lambda: self.step(-1))
        self.next_button = QPushButton("Next difference ▶")
        self.next_button.setToolTip("N: the slices that differ most come first")
        self.next_button.clicked.connect(lambda: self.step(1))
        buttons.addWidget(self.previous_button)
        buttons.addWidget(self.next_button)
        layout.addLayout(buttons)
        self.where = QLabel("")
        self.where.setWordWrap(True)
        layout.addWidget(self.where)
        workspace.history_changed.connect(self.refresh)
        workspace.session_changed.connect(self.refresh)
        state.layout_changed.connect(self.refresh)
        self.refresh()

    @property
    def active(self) -> bool:
        return self.toggle.isChecked()

    def set_active(self, on: bool) -> None:
        """Review mode on: the AI mask is drawn as an outline over the corrected mask."""
        if self.toggle.isChecked() != on:
            self.toggle.setChecked(on)  # comes back here through `toggled`
            return
        if on and self._truth_shown is None:
            self._truth_shown = self.state.shown["truth"]
            self.state.set_shown("truth", False)
        elif not on and self._truth_shown is not None:
            self.state.set_shown("truth", self._truth_shown)
            self._truth_shown = None
        self.state.set_shown("original", on)
        self.refresh()
        if on:  # once the dock's tab is raised and laid out, or the scroll position is wrong
            self.bring_into_view()
            QTimer.singleShot(0, self.bring_into_view)

    def bring_into_view(self) -> None:
        """Show the panel: raise its dock's tab and scroll the dock down to it (all of it if it fits)."""
        widget = self.parentWidget()
        while widget is not None:
            if isinstance(widget, QScrollArea):
                widget.ensureWidgetVisible(self.next_button, 0, 4)  # the bottom, then the top
                widget.ensureWidgetVisible(self, 0, 0)
            if isinstance(widget, QDockWidget):
                widget.raise_()
                break
            widget = widget.parentWidget()

    @property
    def plane(self) -> str:
        return self.state.main_plane

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._stale:
            self.refresh()

    def refresh(self, force: bool = False) -> None:
        """Recompute Dice and the differing slices (on stroke end, not while painting; ~40 ms on a
        full case, so only while the panel is on screen or review mode is on)."""
        editing = self.editing
        session = editing.session
        if session is not None and not (force or self.isVisible() or self.active):
            self._stale = True
            return
        self._stale = False
        enabled = session is not None
        for widget in (self.toggle, self.table, self.next_button, self.previous_button):
            widget.setEnabled(enabled)
        if session is None or editing.code_ras is None or editing.ai_code_ras is None:
            self.comparison, self.differences, self.position = None, [], -1
            self.where.setText("Segment (or edit) a study to compare the AI mask with the corrected one.")
            self._fill_table()
            return
        self.comparison = session.comparison()
        self.differences = difference_slices(editing.ai_code_ras, editing.code_ras, AXIS_OF_PLANE[self.plane])
        self.position = min(self.position, len(self.differences) - 1)
        self._fill_table()
        if not self.differences:
            self.where.setText("The corrected mask is the AI mask: no voxel differs.")
        else:
            changed = self.comparison.changed
            self.where.setText(f"{changed:,} voxels differ, in {len(self.differences)} {self.plane} slices.")
        self.next_button.setEnabled(bool(self.differences))
        self.previous_button.setEnabled(bool(self.differences))

    def step(self, direction: int) -> tuple[int, int] | None:
        """Go to the next (1) or previous (-1) differing slice, most different first; returns it."""
        if self._stale:
            self.refresh(force=True)
        if not self.differences:
            return None
        self.position = (self.position + direction) % len(self.differences)
        index, count = self.differences[self.position]
        axis = AXIS_OF_PLANE[self.plane]
        voxel = list(self.state.crosshair)
        voxel[axis] = index
        editing = self.editing
        if editing.code_ras is not None and editing.ai_code_ras is not None:
            key: list[slice | int] = [slice(None)] * 3
            key[axis] = index
            rows, cols = np.nonzero(editing.code_ras[tuple(key)] != editing.ai_code_ras[tuple(key)])
            in_plane = [a for a in range(3) if a != axis]
            voxel[in_plane[0]], voxel[in_plane[1]] = int(rows.mean()), int(cols.mean())
        self.state.set_crosshair((voxel[0], voxel[1], voxel[2]))
        self.where.setText(f"{self.plane.capitalize()} slice {index + 1}: {count:,} voxels differ "
                           f"({self.position + 1} of {len(self.differences)}, most first).")
        return index, count

    def _fill_table(self) -> None:
        comparison = self.comparison
        voxel_ml = self.editing.volume.study.grid.voxel_volume_ml if self.editing.volume is not None else 0
        for row, region in enumerate(REGIONS):
            values = (region, "", "", "") if comparison is None else (
                region, f"{comparison.voxels_ai[region] * voxel_ml:.2f}",
                f"{comparison.voxels_corrected[region] * voxel_ml:.2f}", f"{comparison.dice[region]:.3f}")
            for column, text in enumerate(values):
                item = QTableWidgetItem(text)
                if column:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, column, item)

    def cell(self, row: int, column: int) -> str:
        item = self.table.item(row, column)
        return item.text() if item is not None else ""
