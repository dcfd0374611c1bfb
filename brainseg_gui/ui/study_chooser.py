"""The study chooser: a DICOM path (a CD, a PACS export) can hold several studies; pick one.

One row per study with patient, date, description and series count, as a PACS browser lists them.
`select(row)` and `chosen_uid` let tests drive it without a click.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from brainseg_gui.core.dicom_index import DicomIndex

COLUMNS = ("Patient", "Date", "Description", "Series")


class StudyChooserDialog(QDialog):
    """Which study of `index` to open; `chosen_uid` is the selected one (the first by default)."""

    def __init__(self, index: DicomIndex, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.index = index
        self.setWindowTitle("Choose a study")
        layout = QVBoxLayout(self)
        note = QLabel(f"{index.root} holds {len(index.studies)} studies. Which one should be opened?")
        note.setWordWrap(True)
        layout.addWidget(note)
        self.table = QTableWidget(len(index.studies), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        for row, study in enumerate(index.studies):
            patient = " ".join(p for p in (study.patient_name.replace("^", " ").strip(), f"({study.patient_id})"
                                           if study.patient_id else "") if p) or "unnamed"
            date = (f"{study.date[:4]}-{study.date[4:6]}-{study.date[6:8]}" if len(study.date) == 8
                    else study.date or "no date")
            for column, text in enumerate((patient, date, study.description or study.accession or "no description",
                                           str(len(study.series)))):
                item = QTableWidgetItem(text)
                item.setToolTip(f"StudyInstanceUID {study.uid}")
                self.table.setItem(row, column, item)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.cellDoubleClicked.connect(lambda *_: self.accept())
        layout.addWidget(self.table, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(720, 320)
        self.select(0)

    def select(self, row: int) -> None:
        self.table.selectRow(row)

    @property
    def chosen_uid(self) -> str | None:
        row = self.table.currentRow()
        return self.index.studies[row].uid if 0 <= row < len(self.index.studies) else None
