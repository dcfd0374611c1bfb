"""Segmentation controls and results: Segment / Cancel, progress, device and model version, and a
table of region volumes (mL) with Dice and HD95 against the ground truth when there is one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from brainseg_gui import RESEARCH_USE_NOTE
from brainseg_gui.app.tasks import Segmentation
from brainseg_gui.core.labels import REGIONS

#: Short form for the status bar; the panel shows the package's full note.
RESEARCH_NOTE = "Research use only, not for diagnosis"
COLUMNS = ("Region", "Pred. mL", "Truth mL", "Dice", "HD95 mm")


class SegmentPanel(QGroupBox):
    segment_requested = Signal()
    cancel_requested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__("Segmentation", parent)
        layout = QVBoxLayout(self)
        buttons = QHBoxLayout()
        self.segment_button = QPushButton("Segment")
        self.segment_button.setToolTip("Run the model on this study (Ctrl+R)")
        self.segment_button.clicked.connect(self.segment_requested)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_requested)
        buttons.addWidget(self.segment_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setVisible(False)
        layout.addWidget(self.progress)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        self.device_label = QLabel("Device: chosen when the model loads (GPU if present, else CPU)")
        self.device_label.setWordWrap(True)
        self.model_label = QLabel("Model: not loaded yet")
        self.model_label.setWordWrap(True)
        self.model_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.device_label)
        layout.addWidget(self.model_label)
        self.table = QTableWidget(len(REGIONS), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setFixedHeight(self.table.horizontalHeader().sizeHint().height() + 3 * 22 + 4)
        layout.addWidget(self.table)
        self.rano_label = QLabel("")  # the RANO measurement of the enhancing tumour (Measure tab)
        self.rano_label.setWordWrap(True)
        self.rano_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.rano_label)
        self.note = QLabel(RESEARCH_USE_NOTE)
        self.note.setObjectName("researchNote")
        self.note.setWordWrap(True)
        layout.addWidget(self.note)
        self.set_enabled_for_study(False)
        self.show_truth_volumes(None)

    def set_enabled_for_study(self, has_study: bool) -> None:
        self.segment_button.setEnabled(has_study)

    def clear(self) -> None:
        """A new study: no result, no message, no progress of the previous one."""
        self.stopped("")
        self.show_truth_volumes(None)
        self.show_rano(None)

    def show_rano(self, rano: Any) -> None:
        """The bidimensional ET measurement (core.measurements.RanoMeasurement), or nothing."""
        if rano is None:
            self.rano_label.setText("")
            return
        how = "adjusted by hand" if rano.adjusted else "automatic"
        self.rano_label.setText(f"RANO (ET, axial slice {rano.slice_z + 1}, {how}): {rano.long_mm:.1f} × "
                                f"{rano.short_mm:.1f} mm = {rano.product_mm2:.0f} mm²")

    def started(self) -> None:
        self.segment_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.message.setText("Starting…")

    def report(self, fraction: float, message: str) -> None:
        self.progress.setValue(round(1000 * min(max(fraction, 0.0), 1.0)))
        self.message.setText(message)

    def stopped(self, message: str) -> None:
        """After success, failure or cancel: progress hidden, one line of outcome. The owner enables
        Segment again once the worker has really finished."""
        self.cancel_button.setEnabled(False)
        self.progress.setVisible(False)
        self.message.setText(message)

    def show_model(self, version: str, device: str) -> None:
        self.model_label.setText(f"Model version: {version}")
        self.device_label.setText(f"Device: {device}")

    def show_truth_volumes(self, volumes: Mapping[str, float] | None) -> None:
        """A fresh table: truth volumes (if any), nothing predicted yet."""
        for row, region in enumerate(REGIONS):
            truth = "" if volumes is None else f"{volumes[region]:.2f}"
            self._set_row(row, (region, "", truth, "", ""))

    def show_result(self, result: Segmentation, truth_volumes: Mapping[str, float] | None) -> None:
        for row, region in enumerate(REGIONS):
            metric: Any = result.metrics[region] if result.metrics is not None else None
            self._set_row(row, (
                region,
                f"{result.volumes_ml[region]:.2f}",
                "" if truth_volumes is None else f"{truth_volumes[region]:.2f}",
                "" if metric is None else f"{metric.dice:.3f}",
                "" if metric is None else f"{metric.hd95:.1f}",
            ))
        self.show_model(result.model_version, result.device)

    def cell(self, row: int, column: int) -> str:
        item = self.table.item(row, column)
        return item.text() if item is not None else ""

    def _set_row(self, row: int, values: tuple[str, ...]) -> None:
        for column, text in enumerate(values):
            item = QTableWidgetItem(text)
            if column:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(row, column, item)
