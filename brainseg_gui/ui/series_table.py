"""The series assignment dialog: which series of a DICOM study is T1, T1ce, T2 and FLAIR.

A radiologist checks the automatic choice the way ITK-SNAP or 3D Slicer let one pick series: one
row per series with a thumbnail of its middle slice, number and description, plane, 2D/3D, slices,
spacing, TR/TE/TI, the automatic class with its confidence and evidence, and a "Use as" drop-down
(one row per sequence: choosing a sequence on one row sets the row that held it back to other).
Below, the chosen four in words with the rule that picked them, what is missing, and the two
consents the choice may need: segmenting without a sequence, and rebuilding missing slices.

Everything a test needs is a method or attribute (`set_class`, `overrides`, `can_accept`,
`missing_ok`, `gaps_ok`, `accept`); the dialog reads no pixels (thumbnails come from the worker).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QBrush, QColor, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from brainseg_gui.app.dicom_tasks import SeriesChoice, why_unusable
from brainseg_gui.core.dicom_classify import CLASSES, OTHER, Assignment, reassign
from brainseg_gui.core.dicom_index import DicomSeries
from brainseg_gui.core.dicom_study import gap_problems
from brainseg_gui.core.study import SEQUENCES
from brainseg_gui.ui.slice_view import SEQUENCE_TITLES

COLUMNS = ("", "Series", "Plane", "Slices", "Spacing (mm)", "TR / TE / TI (ms)", "Class (automatic)", "Use as",
           "Problems")
USE_COLUMN = COLUMNS.index("Use as")
CLASS_TITLES = {**SEQUENCE_TITLES, OTHER: "other"}
PROBLEM_COLOUR = "#d33"
MISSING_TEXT = "Segment with what is there (the model's modality dropout; the result is flagged)"
GAPS_TEXT = "Rebuild the missing slices by interpolation (flagged)"


def series_facts(series: DicomSeries) -> dict[str, str]:
    """The table's text of one series: plane and 2D/3D, slices, spacing, timing."""
    summary = series.summary()
    spacing = summary["pixel_spacing_mm"]
    between = summary["slice_spacing_mm"]
    in_plane = f"{_num(spacing[1])} × {_num(spacing[0])}" if spacing else "?"
    timing = " / ".join(_num(summary[k], 4) for k in ("tr_ms", "te_ms", "ti_ms"))
    plane = " ".join(p for p in (summary["acquisition"], summary["plane"]) if p) or "?"
    return {"plane": plane, "slices": str(summary["slices"]), "spacing": f"{in_plane} × {_num(between)}",
            "timing": timing, "thickness": _num(between)}


def _num(value: object, digits: int = 3) -> str:
    return "–" if value is None else f"{float(value):.{digits}g}"  # type: ignore[arg-type]


def gray_pixmap(pixels: np.ndarray) -> QPixmap:
    """A (rows, columns) uint8 array as a pixmap (copied: the QImage does not own the array)."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape
    image = QImage(pixels.data, width, height, width, QImage.Format.Format_Grayscale8)
    return QPixmap.fromImage(image.copy())


class SeriesAssignmentDialog(QDialog):
    """Review and change which series each sequence uses; `overrides()` is the user's choice."""

    def __init__(self, choice: SeriesChoice, parent: QWidget | None = None, *,
                 chosen: Mapping[str, str] | None = None, accept_gaps: bool = False,
                 segment_missing: bool = False) -> None:
        super().__init__(parent)
        self.choice = choice
        self.auto: Assignment = choice.assignment
        self.series: list[DicomSeries] = list(self.auto.study.series)
        self.unusable = {s.uid: why_unusable(self.auto, s) for s in self.series}
        study = self.auto.study
        self.setWindowTitle(f"Series and sequences — {study.label}")
        layout = QVBoxLayout(self)
        patient = study.patient_name.replace("^", " ").strip() or study.patient_id or "Unnamed patient"
        heading = QLabel(f"<b>{patient}</b> — "
                         f"{_date(study.date)} — {study.description or 'no description'} — "
                         f"{len(self.series)} series. Check which series is each sequence; the model needs "
                         "T1, T1ce, T2 and FLAIR.")
        heading.setWordWrap(True)
        layout.addWidget(heading)
        self.table = self._build_table(self.auto.chosen if chosen is None else chosen)
        layout.addWidget(self.table, 1)
        self.details = _wrapping_label("detailsLabel")
        layout.addWidget(self.details)
        self.summary = _wrapping_label("summaryLabel")
        layout.addWidget(self.summary)
        self.missing_label = _wrapping_label("missingLabel")
        layout.addWidget(self.missing_label)
        self.missing_ok = QCheckBox(MISSING_TEXT)
        self.missing_ok.setChecked(segment_missing)
        layout.addWidget(self.missing_ok)
        self.gaps_label = _wrapping_label("gapsLabel")
        layout.addWidget(self.gaps_label)
        self.gaps_ok = QCheckBox(GAPS_TEXT)
        self.gaps_ok.setChecked(accept_gaps)
        layout.addWidget(self.gaps_ok)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button: QPushButton = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Use these series")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self.missing_ok.toggled.connect(lambda _on: self.refresh())
        self.gaps_ok.toggled.connect(lambda _on: self.refresh())
        self.table.currentCellChanged.connect(lambda row, *_: self._show_details(row))
        self.resize(1180, 700)
        self.refresh()
        if self.series:
            self.table.selectRow(0)

    # ---- the table -------------------------------------------------------------------------------
    def _build_table(self, preset: Mapping[str, str]) -> QTableWidget:
        table = QTableWidget(len(self.series), len(COLUMNS))
        table.setHorizontalHeaderLabels(list(COLUMNS))
        table.verticalHeader().setVisible(False)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setIconSize(QSize(56, 56))
        chosen = {uid: name for name, uid in preset.items()}
        self.combos: dict[str, QComboBox] = {}
        for row, series in enumerate(self.series):
            found = self.auto.classes[series.uid]
            facts = series_facts(series)
            thumb = QTableWidgetItem()
            pixels = self.choice.thumbnails.get(series.uid)
            if pixels is not None:
                thumb.setData(Qt.ItemDataRole.DecorationRole, gray_pixmap(pixels).scaled(
                    56, 56, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation))
            table.setItem(row, 0, thumb)
            evidence = "\n".join(found.evidence) or "no evidence recorded"
            what = CLASS_TITLES[found.sequence] + (f" ({found.reason})" if found.reason else "")
            texts = (series.label, facts["plane"], facts["slices"], facts["spacing"], facts["timing"],
                     f"{what}, {found.confidence:.2f}")
            for column, text in enumerate(texts, start=1):
                item = QTableWidgetItem(text)
                item.setToolTip(evidence if column == COLUMNS.index("Class (automatic)") else text)
                table.setItem(row, column, item)
            combo = QComboBox()
            for name in CLASSES:
                combo.addItem(CLASS_TITLES[name], name)
            why = self.unusable[series.uid]
            if why is not None:
                for index, name in enumerate(CLASSES):
                    if name != OTHER:
                        combo.model().item(index).setEnabled(False)  # type: ignore[attr-defined]
                combo.setToolTip(f"Cannot be used as a sequence: {why}")
            combo.setCurrentIndex(CLASSES.index(chosen.get(series.uid, OTHER) if why is None else OTHER))
            combo.currentIndexChanged.connect(lambda _i, uid=series.uid: self._changed(uid))
            table.setCellWidget(row, USE_COLUMN, combo)
            self.combos[series.uid] = combo
            problems = list(series.geometry_problems())
            if why is not None and not any(why.startswith(p) for p in problems):
                problems.append(f"cannot be used: {why}")
            problem = QTableWidgetItem("; ".join(problems))
            problem.setForeground(QBrush(QColor(PROBLEM_COLOUR)))
            problem.setToolTip("\n".join(problems))
            table.setItem(row, len(COLUMNS) - 1, problem)
            table.setRowHeight(row, 62)
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COLUMNS.index("Series"), QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        return table

    def _changed(self, uid: str) -> None:
        name = self.use_as(uid)
        if name != OTHER:  # one row per sequence: the row that held it goes back to other
            for other, combo in self.combos.items():
                if other != uid and combo.currentData() == name:
                    combo.blockSignals(True)
                    combo.setCurrentIndex(CLASSES.index(OTHER))
                    combo.blockSignals(False)
        self.refresh()

    # ---- what tests and the opener call ------------------------------------------------------------
    def row_of(self, key: int | str) -> DicomSeries:
        """A series by row index, SeriesInstanceUID or series number (as text)."""
        if isinstance(key, int):
            return self.series[key]
        for series in self.series:
            if series.uid == key or str(series.header.series_number) == key:
                return series
        raise KeyError(f"no series {key!r} in the table")

    def set_class(self, key: int | str, sequence: str) -> None:
        """Use the series (row, UID or number) as `sequence` (t1, t1ce, t2, flair or other)."""
        series = self.row_of(key)
        if sequence != OTHER and self.unusable[series.uid] is not None:
            raise ValueError(f"series {series.label} cannot be used: {self.unusable[series.uid]}")
        self.combos[series.uid].setCurrentIndex(CLASSES.index(sequence))

    def use_as(self, key: int | str) -> str:
        return str(self.combos[self.row_of(key).uid].currentData())

    def overrides(self) -> dict[str, str | None]:
        """{sequence: SeriesInstanceUID or None} for all four sequences, as `reassign` takes it."""
        out: dict[str, str | None] = {name: None for name in SEQUENCES}
        for uid, combo in self.combos.items():
            if combo.currentData() in out:
                out[combo.currentData()] = uid
        return out

    def preview(self) -> Assignment:
        """The assignment the user's choices make."""
        return reassign(self.auto, self.overrides())

    @property
    def missing(self) -> list[str]:
        return [name for name, uid in self.overrides().items() if uid is None]

    def blockers(self) -> list[str]:
        """Why OK is disabled (empty when it is not)."""
        out = []
        if len(self.missing) == len(SEQUENCES):
            out.append("Choose at least one series.")
        elif self.missing and not self.missing_ok.isChecked():
            out.append("Tick 'Segment with what is there' or choose the missing sequences.")
        if gap_problems(self.preview()) and not self.gaps_ok.isChecked():
            out.append("Tick 'Rebuild the missing slices' or choose other series.")
        return out

    @property
    def accept_gaps(self) -> bool:
        """Rebuild missing slices: ticked, and a chosen series needs it."""
        return self.gaps_ok.isChecked() and bool(gap_problems(self.preview()))

    @property
    def segment_missing(self) -> bool:
        """Segment without the missing sequences: ticked, and one is missing."""
        return self.missing_ok.isChecked() and bool(self.missing)

    @property
    def can_accept(self) -> bool:
        return not self.blockers()

    def accept(self) -> None:
        if self.can_accept:
            super().accept()

    # ---- the words below the table ------------------------------------------------------------------
    def refresh(self) -> None:
        """Summary, missing sequences, gaps and the OK button follow the choices."""
        overrides = self.overrides()
        lines = []
        for name in SEQUENCES:
            uid = overrides[name]
            if uid is None:
                continue
            series = self.row_of(uid)
            found = self.auto.classes[uid]
            facts = series_facts(series)
            acquisition = series.header.acquisition_type or "2D"
            if self.auto.chosen.get(name) == uid:
                why = self.auto.reasons.get(name, "")
                confidence = f"confidence {found.confidence:.2f}"
            else:
                why = "chosen by you"
                confidence = (f"confidence {found.confidence:.2f}" if found.sequence == name else
                              f"classed automatically as {CLASS_TITLES[found.sequence]} ({found.confidence:.2f})")
            rule = f" — {why}" if why and why != "the only candidate" else ""
            lines.append(f"<b>{SEQUENCE_TITLES[name]}</b>: series {series.label} ({acquisition}, "
                         f"{facts['thickness']} mm), {confidence}{rule}")
        self.summary.setText("<br>".join(lines) or "No series chosen.")
        missing = self.missing
        if missing:
            names = ", ".join(SEQUENCE_TITLES[n] for n in missing)
            verb = "is" if len(missing) == 1 else "are"
            self.missing_label.setText(
                f"<span style='color:{PROBLEM_COLOUR}'>{names} {verb} missing: no series of this study is chosen "
                f"for {'it' if len(missing) == 1 else 'them'}.</span> Choose a series above, or segment without "
                f"{'it' if len(missing) == 1 else 'them'}: less reliable, and the result says so.")
        self.missing_label.setVisible(bool(missing))
        self.missing_ok.setVisible(bool(missing))
        gaps = gap_problems(self.preview())
        if gaps:
            self.gaps_label.setText("<br>".join(
                f"<span style='color:{PROBLEM_COLOUR}'>{SEQUENCE_TITLES[n]}: series "
                f"{self.row_of(overrides[n] or '').label} has {'; '.join(p)}.</span>"  # type: ignore[arg-type]
                for n, p in gaps.items()))
        self.gaps_label.setVisible(bool(gaps))
        self.gaps_ok.setVisible(bool(gaps))
        blockers = self.blockers()
        self.ok_button.setEnabled(not blockers)
        self.ok_button.setToolTip(" ".join(blockers))
        self._show_details(self.table.currentRow())

    def _show_details(self, row: int) -> None:
        if not 0 <= row < len(self.series):
            self.details.setText("Select a series to see why it was classed so.")
            return
        series = self.series[row]
        found = self.auto.classes[series.uid]
        vendor = series.summary()["vendor"]
        text = (f"<b>Series {series.label}</b>{' (' + vendor + ')' if vendor else ''}: classed "
                f"{CLASS_TITLES[found.sequence]}{' — ' + found.reason if found.reason else ''}, confidence "
                f"{found.confidence:.2f}. Evidence: {'; '.join(found.evidence) or 'none recorded'}.")
        if self.unusable[series.uid]:
            text += f" <span style='color:{PROBLEM_COLOUR}'>Cannot be used: {self.unusable[series.uid]}.</span>"
        self.details.setText(text)


def _wrapping_label(name: str) -> QLabel:
    label = QLabel("")
    label.setObjectName(name)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText)
    return label


def _date(value: str) -> str:
    """DICOM DA (20240315) as 2024-03-15."""
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else (value or "no date")


def thumbnails_shown(dialog: SeriesAssignmentDialog) -> Mapping[str, bool]:
    """Whether each row shows a thumbnail (for tests and the accessibility check)."""
    return {s.uid: dialog.table.item(row, 0).data(Qt.ItemDataRole.DecorationRole) is not None
            for row, s in enumerate(dialog.series)}
