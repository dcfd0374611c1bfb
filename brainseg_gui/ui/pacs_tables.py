"""How PACS answers read in the PACS dialog: the studies and series tables, dates and names as people
write them. Text only, from core's StudyMatch / SeriesMatch; nothing here talks to a node.
"""

from __future__ import annotations

from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from brainseg_gui.core.pacs_client import SeriesMatch, StudyMatch

STUDY_COLUMNS = ("Date", "Patient", "Patient ID", "Accession", "Description", "Modalities", "Series")
SERIES_COLUMNS = ("Series", "Modality", "Description", "Images")


def dicom_date(text: str) -> str:
    """A DICOM date ('20240315') as people write it ('2024-03-15'); anything else as it is."""
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else text


def person_name(text: str) -> str:
    """A DICOM person name ('Doe^John^^Dr') as people read it ('Doe, John Dr')."""
    family, _, rest = text.partition("^")
    given = " ".join(part for part in rest.split("^") if part)
    return f"{family}, {given}" if family and given else family or given


def study_cells(study: StudyMatch) -> tuple[str, ...]:
    """One row of the studies table, in STUDY_COLUMNS order."""
    series = "?" if study.series_count is None else str(study.series_count)
    return (dicom_date(study.study_date), person_name(study.patient_name), study.patient_id, study.accession,
            study.description, ", ".join(study.modalities), series)


def series_cells(series: SeriesMatch) -> tuple[str, ...]:
    """One row of the series table, in SERIES_COLUMNS order."""
    number = "" if series.number is None else str(series.number)
    images = "?" if series.instance_count is None else str(series.instance_count)
    return (number, series.modality, series.description, images)


def results_table(columns: tuple[str, ...], stretch: str) -> QTableWidget:
    """A read-only table selecting whole rows, its `stretch` column taking the spare width."""
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(list(columns))
    table.verticalHeader().setVisible(False)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(columns.index(stretch), QHeaderView.ResizeMode.Stretch)
    return table


def fill_table(table: QTableWidget, rows: list[tuple[str, ...]], tips: list[str]) -> None:
    """Replace the table's rows (signals blocked: filling is not the user selecting or ticking)."""
    table.blockSignals(True)
    table.clearSelection()
    table.setRowCount(len(rows))
    for row, (cells, tip) in enumerate(zip(rows, tips)):
        for column, text in enumerate(cells):
            item = QTableWidgetItem(text)
            item.setToolTip(tip)
            table.setItem(row, column, item)
    table.blockSignals(False)
