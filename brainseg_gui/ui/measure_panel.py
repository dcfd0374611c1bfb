"""The Measure panel: the study's rulers and ROIs, ROI statistics per sequence, the RANO measurement.

It shows and changes the open study's `app.measurements.Measurements` (the views draw it through
`measure_overlay.MeasureOverlay`). Statistics and RANO read the mask the user picks: the edited
segmentation the views draw (`ViewGrid.prediction`) or the study's ground truth. The main window
builds it with `attach_measurements` and hands it each new study's model (`set_measurements`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from brainseg_gui.app.measurements import Measurements
from brainseg_gui.app.region_codes import REGION_NAMES
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.measurements import RoiStatistics, voxel_volume_ml
from brainseg_gui.core.orientation import PLANE_OF_AXIS
from brainseg_gui.ui.measure_overlay import MeasureOverlay
from brainseg_gui.ui.slice_view import SEQUENCE_TITLES
from brainseg_gui.ui.view_grid import ViewGrid
from brainseg_gui.ui.viewer_state import Tool, ViewerState

#: Mask sources of the statistics and RANO: the segmentation the views draw, the study's labels.
MASKS = {"prediction": "Segmentation", "truth": "Ground truth"}
SELECTED_ROI = "selected ROI"
STAT_COLUMNS = ("Mean", "SD", "Min", "Max")

ErrorReporter = Callable[[str, str], object]  # (title, one-line message)


class MeasurePanel(QWidget):
    def __init__(self, overlay: MeasureOverlay, report_error: ErrorReporter | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.overlay = overlay
        self.grid: ViewGrid = overlay.grid
        self.state: ViewerState = overlay.state
        self.report_error = report_error or (lambda title, text: QMessageBox.warning(self, title, text))
        self.measurements: Measurements | None = None
        self._rano_note: str | None = None  # why there is no RANO measurement, after a try
        outer = QVBoxLayout(self)

        tools = QHBoxLayout()
        self.tool_buttons: dict[Tool, QToolButton] = {}
        for tool, title in ((Tool.RULER, "Ruler"), (Tool.ROI, "Ellipse ROI")):
            button = QToolButton()
            button.setText(title)
            button.setCheckable(True)
            button.setToolTip(f"{title}: drag on a slice to draw; drag its ends to adjust")
            button.clicked.connect(lambda on, t=tool: self.state.set_tool(t if on else Tool.NAVIGATE))
            tools.addWidget(button)
            self.tool_buttons[tool] = button
        tools.addStretch(1)
        tools.addWidget(QLabel("Mask"))
        self.mask_box = QComboBox()
        for key, title in MASKS.items():
            self.mask_box.addItem(title, key)
        self.mask_box.currentIndexChanged.connect(lambda _i: self.refresh_statistics())
        tools.addWidget(self.mask_box)
        outer.addLayout(tools)

        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["", "Slice", "Size"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.itemSelectionChanged.connect(self._on_selection)
        outer.addWidget(self.table, 1)
        buttons = QHBoxLayout()
        for title, slot in (("Delete", self.delete_selected), ("Clear all", self.clear_all),
                            ("Save…", self._save_dialog), ("Load…", self._load_dialog)):
            button = QPushButton(title)
            button.clicked.connect(slot)
            buttons.addWidget(button)
        outer.addLayout(buttons)

        stats = QGroupBox("Statistics")
        stats_layout = QVBoxLayout(stats)
        row = QHBoxLayout()
        row.addWidget(QLabel("Inside"))
        self.region_box = QComboBox()
        self.region_box.addItem("the selected ROI", SELECTED_ROI)
        for name in REGION_NAMES:
            self.region_box.addItem(name, name)
        self.region_box.currentIndexChanged.connect(lambda _i: self.refresh_statistics())
        row.addWidget(self.region_box, 1)
        stats_layout.addLayout(row)
        self.stats_table = QTableWidget(0, len(STAT_COLUMNS))
        self.stats_table.setHorizontalHeaderLabels(list(STAT_COLUMNS))
        self.stats_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.stats_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.stats_table.horizontalHeader().sizeHint().height()
        self.stats_table.setMaximumHeight(header + 4 * self.stats_table.verticalHeader().defaultSectionSize() + 4)
        stats_layout.addWidget(self.stats_table)
        self.stats_label = QLabel("")
        stats_layout.addWidget(self.stats_label)
        outer.addWidget(stats)

        rano = QGroupBox("RANO (enhancing tumour)")
        rano_layout = QVBoxLayout(rano)
        self.rano_button = QPushButton("Measure ET (RANO)")
        self.rano_button.setToolTip("Longest ET diameter on the axial slice where it is largest, and the longest "
                                    "diameter perpendicular to it; drag the ends in the axial view to adjust")
        self.rano_button.clicked.connect(self.measure_rano)
        rano_layout.addWidget(self.rano_button)
        self.rano_label = QLabel("Not measured")
        self.rano_label.setWordWrap(True)
        self.rano_label.setMinimumHeight(4 * self.rano_label.fontMetrics().lineSpacing())
        self.rano_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        rano_layout.addWidget(self.rano_label)
        outer.addWidget(rano)

        overlay.item_drawn.connect(self.select)
        # the model outlives the panel (the Document owns it): no event may reach a deleted widget
        self.destroyed.connect(lambda: self.measurements is not None and self.measurements.changed.disconnect(
            self.refresh))
        self.state.edit_changed.connect(self._sync_tools)
        self._sync_tools()
        self.set_measurements(overlay.measurements)

    # ---- the model ------------------------------------------------------------------------------
    def set_measurements(self, measurements: Measurements | None) -> None:
        """Show another study's measurements (None: no study); the views follow."""
        if self.measurements is not None:
            self.measurements.changed.disconnect(self.refresh)
        self.measurements = measurements
        self._rano_note = None
        if measurements is not None:
            measurements.changed.connect(self.refresh)
        if self.overlay.measurements is not measurements:
            self.overlay.set_measurements(measurements)
        self.refresh()
        self.refresh_statistics()

    def refresh(self) -> None:
        """Redraw the list, the statistics and the RANO values from the model."""
        selected = self.selected_id()
        model = self.measurements
        rows: list[tuple[int, str, str, str]] = []
        if model is not None:
            for ruler_id, ruler in model.rulers.items():
                axis = ruler.axis()
                where = f"{PLANE_OF_AXIS[axis]} {round(ruler.a[axis]) + 1}" if axis is not None else "oblique"
                rows.append((ruler_id, f"Ruler {ruler_id}", where, f"{model.length_mm(ruler_id):.1f} mm"))
            volume_ml = self._voxel_ml()
            for roi_id, roi in model.ellipses.items():
                size = roi.slice_mask(model.shape).sum() * volume_ml
                rows.append((roi_id, f"ROI {roi_id}", f"{PLANE_OF_AXIS[roi.axis]} {roi.index + 1}", f"{size:.2f} ml"))
        rows.sort()
        self.table.blockSignals(True)
        self.table.setRowCount(len(rows))
        for index, (item_id, *texts) in enumerate(rows):
            for column, text in enumerate(texts):
                cell = QTableWidgetItem(text)
                cell.setData(Qt.ItemDataRole.UserRole, item_id)
                self.table.setItem(index, column, cell)
            if item_id == selected:
                self.table.selectRow(index)
        self.table.blockSignals(False)
        if self.region_box.currentData() == SELECTED_ROI:  # a label region's do not change with the model
            self.refresh_statistics()
        self._show_rano()

    def selected_id(self) -> int | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        return self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole)

    def select(self, item_id: int) -> None:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(Qt.ItemDataRole.UserRole) == item_id:
                self.table.selectRow(row)
                return

    def delete_selected(self) -> None:
        item_id = self.selected_id()
        if item_id is not None and self.measurements is not None:
            self.measurements.remove(item_id)

    def clear_all(self) -> None:
        if self.measurements is not None:
            self.measurements.clear()

    # ---- statistics -----------------------------------------------------------------------------
    def mask_code(self) -> np.ndarray | None:
        """The RAS region-code volume the statistics and RANO read (None when that mask is absent)."""
        volume = self.grid.volume
        if self.mask_box.currentData() == "truth":
            return volume.truth_code if volume is not None else None
        return self.grid.prediction

    def statistics(self) -> RoiStatistics | None:
        """Statistics of the chosen region, or None with the reason shown in the panel."""
        model, volume = self.measurements, self.grid.volume
        if model is None or volume is None or tuple(volume.shape) != model.shape:
            return None
        region = self.region_box.currentData()
        if region == SELECTED_ROI:
            item_id = self.selected_id()
            if item_id is None or item_id not in model.ellipses:
                self.stats_label.setText("Select an ellipse ROI above, or a label region")
                return None
            return model.ellipse_statistics(item_id, volume.images)
        code = self.mask_code()
        if code is None:
            self.stats_label.setText(f"No {self.mask_box.currentText().lower()} to measure in")
            return None
        return model.region_statistics(code, region, volume.images)

    def refresh_statistics(self) -> None:
        """Recompute the statistics (also after the mask was edited: the window calls this)."""
        self.stats_label.setText("")
        stats = self.statistics()
        names = list(stats.sequences) if stats is not None else []
        self.stats_table.setRowCount(len(names))
        self.stats_table.setVerticalHeaderLabels([SEQUENCE_TITLES.get(n, n) for n in names])
        for row, name in enumerate(names):
            assert stats is not None
            s = stats.sequences[name]
            for column, value in enumerate((s.mean, s.sd, s.minimum, s.maximum)):
                self.stats_table.setItem(row, column, QTableWidgetItem(f"{value:.1f}"))
        if stats is not None:
            self.stats_label.setText(f"{stats.voxels} voxels, {stats.volume_ml:.2f} ml")

    # ---- RANO -----------------------------------------------------------------------------------
    def measure_rano(self) -> None:
        """Measure ET in the chosen mask and show its slice in the axial views."""
        model, code = self.measurements, self.mask_code()
        if model is None or code is None:
            self._rano_note = f"No {self.mask_box.currentText().lower()} to measure"
            self._show_rano()
            return
        self._rano_note = "No enhancing tumour (ET) in the mask: nothing to measure"
        measurement = model.measure_rano(code)  # ~0.1 s on a full case: no worker needed
        self._show_rano()
        if measurement is None:
            return
        x, y, _z = self.state.crosshair
        self.state.set_crosshair((x, y, measurement.slice_z))

    def _show_rano(self) -> None:
        rano = self.measurements.rano if self.measurements is not None else None
        if rano is None:
            self.rano_label.setText(self._rano_note or "Not measured")
            return
        how = "adjusted by hand" if rano.adjusted else "automatic"
        self.rano_label.setText(
            f"Axial slice {rano.slice_z + 1} ({how})\n"
            f"Longest diameter: {rano.long_mm:.1f} mm\n"
            f"Perpendicular: {rano.short_mm:.1f} mm (angle {rano.angle_deg:.0f}°)\n"
            f"Product: {rano.product_mm2:.0f} mm²")

    # ---- files ----------------------------------------------------------------------------------
    def save_to(self, path: Path) -> bool:
        if self.measurements is None:
            return False
        try:
            self.measurements.save(path)
        except (BrainSegError, OSError) as error:
            self.report_error("Could not save the measurements", str(error))
            return False
        return True

    def load_from(self, path: Path) -> bool:
        if self.measurements is None:
            return False
        try:
            self.measurements.load(path)
        except BrainSegError as error:
            self.report_error("Could not load the measurements", str(error))
            return False
        return True

    def _save_dialog(self) -> None:
        volume = self.grid.volume
        name = f"{volume.study.case_id}_measurements.json" if volume is not None else "measurements.json"
        path, _ = QFileDialog.getSaveFileName(self, "Save the measurements", name, "Measurements (*.json)")
        if path:
            self.save_to(Path(path))

    def _load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load measurements", "", "Measurements (*.json)")
        if path:
            self.load_from(Path(path))

    # ---- following the state --------------------------------------------------------------------
    def _on_selection(self) -> None:
        """Show the selected measurement's slice, and its statistics when it is an ROI."""
        item_id, model = self.selected_id(), self.measurements
        if item_id is None or model is None:
            return
        voxel = list(self.state.crosshair)
        if item_id in model.ellipses:
            roi = model.ellipses[item_id]
            voxel[roi.axis] = roi.index
            self.region_box.setCurrentIndex(0)
        elif item_id in model.rulers:
            ruler = model.rulers[item_id]
            axis = ruler.axis()
            if axis is not None:
                voxel[axis] = round(ruler.a[axis])
        self.state.set_crosshair((voxel[0], voxel[1], voxel[2]))
        self.refresh_statistics()

    def _sync_tools(self) -> None:
        for tool, button in self.tool_buttons.items():
            button.setChecked(self.state.tool is tool)

    def _voxel_ml(self) -> float:
        return voxel_volume_ml(self.measurements.affine) if self.measurements is not None else 0.0


def attach_measurements(grid: ViewGrid, state: ViewerState, measurements: Measurements | None = None,
                        report_error: ErrorReporter | None = None) -> MeasurePanel:
    """Draw `measurements` on `grid`'s views, enable the Ruler and Ellipse ROI tools there, and return
    the Measure panel (to put in a dock). On each new study call `panel.set_measurements(...)` with
    its model; after the mask is edited, `panel.refresh_statistics()`."""
    overlay = MeasureOverlay(grid, state, measurements)
    return MeasurePanel(overlay, report_error)
