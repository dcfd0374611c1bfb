"""File > Open from PACS…: find a study on a PACS node, tick its series, retrieve them and open them.

A node from the user's list (core/pacs_nodes.py, kept with `brainseg pacs nodes add`), the search
fields a PACS browser has (patient name, patient ID, accession, study dates, modality), the studies
found (newest first) and the selected study's series, each with a tick (all ticked). "Retrieve and
open" brings the ticked series into the cache (core/pacs_cache.py: resumable, complete or not at
all) and emits `study_retrieved` with that folder; the window opens it like any DICOM study.

Searches and retrieves run in workers (ui/pacs_tasks.py) with progress and Cancel in the dialog, so
the window never freezes while a PACS answers slowly. A PACS fault is one message in the dialog, which
stays usable. Tests drive it through methods and attributes: `select_node`, `search`, `select_study`,
`set_series_checked`, `retrieve`, `cancel`, `busy`, `error`. "Nodes…" opens the node settings
(ui/pacs_nodes_dialog.py) over it; the node list follows what is changed there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from brainseg_gui.app import pacs_tasks as work
from brainseg_gui.core.pacs_cache import RetrievedStudy
from brainseg_gui.core.pacs_client import SeriesMatch, StudyMatch, StudyQuery
from brainseg_gui.core.pacs_nodes import NodeStore, PacsError
from brainseg_gui.ui.pacs_nodes_dialog import PacsNodesDialog, show_pacs_nodes_dialog
from brainseg_gui.ui.pacs_tables import (
    SERIES_COLUMNS,
    STUDY_COLUMNS,
    fill_table,
    results_table,
    series_cells,
    study_cells,
)
from brainseg_gui.ui.pacs_widgets import ERROR_COLOUR, NodeChoice, NodeCombo, push_button, show_fault
from brainseg_gui.ui.workers import Job, JobRunner

NO_NODES = ("No PACS node yet. Add one with <b>Nodes…</b> above, or in a terminal:<br>"
            "<code>brainseg pacs nodes add NAME --dicomweb URL [--auth basic --user USER]</code><br>"
            "<code>brainseg pacs nodes add NAME --dimse AET@HOST:PORT</code>")


class PacsDialog(NodeChoice, QDialog):
    """Search a PACS node and retrieve the ticked series of one study; `study_retrieved` gives its folder."""

    study_retrieved = Signal(Path)  # the study's folder in the PACS cache

    def __init__(self, runner: JobRunner, parent: QWidget | None = None, store: NodeStore | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("pacsDialog")
        self.setWindowTitle("Open from PACS")
        self.runner = runner
        self.store = store or NodeStore()
        self.studies: list[StudyMatch] = []
        self.series: list[SeriesMatch] = []
        self.series_study: str | None = None  # the study whose series are listed
        self._results_node: str | None = None  # the node the studies listed came from
        self._job: Job | None = None
        self._retrieving = False
        layout = QVBoxLayout(self)
        layout.addLayout(self._build_node_row())
        layout.addWidget(self.no_nodes)
        layout.addLayout(self._build_search())
        layout.addWidget(self._build_tables(), 1)
        layout.addLayout(self._build_footer())
        self.resize(980, 640)
        self.refresh_nodes()

    # ---- building --------------------------------------------------------------------------------
    def _build_node_row(self) -> QHBoxLayout:
        """The node chooser with the chosen node in words, and the hint shown when there is none."""
        row = QHBoxLayout()
        self.node_combo = NodeCombo()
        self.node_combo.setMinimumWidth(180)
        self.node_combo.currentIndexChanged.connect(lambda _index: self._node_changed())
        self.node_info = QLabel()
        self.node_info.setStyleSheet("color: palette(mid)")
        self.no_nodes = QLabel(NO_NODES)
        self.no_nodes.setWordWrap(True)
        self.no_nodes.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(QLabel("PACS node:"))
        row.addWidget(self.node_combo)
        row.addWidget(self.node_info, 1)
        self.nodes_button = push_button("Nodes…", self.edit_nodes)
        self.nodes_button.setToolTip("Add, edit, remove or test PACS nodes")
        row.addWidget(self.nodes_button)
        return row

    def _build_search(self) -> QGridLayout:
        """The search fields; Enter in any of them searches (Search is the default button)."""
        grid = QGridLayout()
        self.patient_name = self._field(grid, (0, 0), "Patient name", "Wildcards * and ? allowed", "Doe*")
        self.patient_id = self._field(grid, (0, 2), "Patient ID", "Wildcards * and ? allowed")
        self.accession = self._field(grid, (0, 4), "Accession", "The accession number of the order")
        self.date_from = self._field(grid, (1, 0), "Study date from", "Empty: any date", "YYYY-MM-DD")
        self.date_to = self._field(grid, (1, 2), "to", "Empty: any date", "YYYY-MM-DD")
        self.modality = self._field(grid, (1, 4), "Modality", "e.g. MR; empty: any modality")
        self.modality.setText("MR")
        self.search_button = QPushButton("Search")
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self.search)
        grid.addWidget(self.search_button, 1, 6)
        return grid

    def _field(self, grid: QGridLayout, at: tuple[int, int], label: str, tip: str, placeholder: str = "") -> QLineEdit:
        """A labelled line edit at grid cell `at` (its label there, the edit to its right)."""
        edit = QLineEdit()
        edit.setPlaceholderText(placeholder)
        edit.setToolTip(tip)
        grid.addWidget(QLabel(label), *at)
        grid.addWidget(edit, at[0], at[1] + 1)
        return edit

    def _build_tables(self) -> QSplitter:
        """Studies above their series; the splitter lets a long series list take the height."""
        self.studies_table = results_table(STUDY_COLUMNS, "Description")
        self.studies_table.itemSelectionChanged.connect(self._study_selected)
        self.series_table = results_table(SERIES_COLUMNS, "Description")
        self.series_table.itemChanged.connect(lambda _item: self._sync())
        series = QWidget()
        column = QVBoxLayout(series)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(QLabel("Series of the selected study (untick those not needed):"))
        column.addWidget(self.series_table, 1)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.studies_table)
        splitter.addWidget(series)
        return splitter

    def _build_footer(self) -> QVBoxLayout:
        """The fault (red, selectable to copy into a ticket), progress with its message, and the buttons."""
        footer = QVBoxLayout()
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.setVisible(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel()
        self.cancel_button = push_button("Cancel", self.cancel)
        self.retrieve_button = push_button("Retrieve and open", self.retrieve)
        self.close_button = push_button("Close", self.reject)
        row = QHBoxLayout()
        row.addWidget(self.progress)
        row.addWidget(self.status, 1)
        for button in (self.cancel_button, self.retrieve_button, self.close_button):
            row.addWidget(button)
        footer.addWidget(self.message)
        footer.addLayout(row)
        return footer

    # ---- nodes -----------------------------------------------------------------------------------
    def edit_nodes(self) -> PacsNodesDialog:
        """The node settings over this dialog; the node list here follows every change made there."""
        return show_pacs_nodes_dialog(self, self.runner, self.store, self.refresh_nodes)

    def _node_changed(self) -> None:
        """Another node: the studies listed came from the last one, so they go."""
        node = self.node
        self.node_info.setText(node.describe() if node is not None else "")
        if (node.name if node is not None else None) != self._results_node:
            self.cancel()
            self._show_studies([], None)
            self._show_error(None)
        self._sync()

    # ---- searching -------------------------------------------------------------------------------
    def query(self) -> StudyQuery:
        """The fields as a query; PacsError at once when a date is not a date or the range is empty."""
        query = StudyQuery(self.patient_name.text().strip(), self.patient_id.text().strip(),
                           self.accession.text().strip(), self.date_from.text().strip(),
                           self.date_to.text().strip(), self.modality.text().strip().upper())
        query.study_date()
        return query

    def search(self) -> Job | None:
        """Find the studies matching the fields on the chosen node, in a worker (None: nothing to do)."""
        node, store = self.node, self.store
        if node is None or self._retrieving:
            return None
        try:
            query = self.query()
        except PacsError as error:
            self._show_error(error)
            return None
        return self._run(f"Searching {node.name}…", lambda **kw: work.search(store, node, query, **kw),
                         lambda studies: self._show_studies(studies, node.name))

    def _show_studies(self, studies: list[StudyMatch], node_name: str | None) -> None:
        """The studies found on `node_name` (None: cleared); the series shown belonged to the last search."""
        self.studies, self._results_node = list(studies), node_name
        fill_table(self.studies_table, [study_cells(s) for s in studies],
              [f"StudyInstanceUID {s.study_uid}" for s in studies])
        self._show_series([], None)
        if node_name is not None:
            self.status.setText(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} found on {node_name}")

    @property
    def study(self) -> StudyMatch | None:
        """The selected study."""
        rows = self.studies_table.selectionModel().selectedRows()
        row = rows[0].row() if rows else -1
        return self.studies[row] if 0 <= row < len(self.studies) else None

    def select_study(self, row: int) -> None:
        """Select a study as a click does: its series are listed in a worker."""
        self.studies_table.selectRow(row)

    def _study_selected(self) -> None:
        """List the selected study's series in a worker; nothing is fetched until Retrieve."""
        study, node, store = self.study, self.node, self.store
        self._show_series([], None)
        if self._retrieving or node is None:
            return
        if study is None:
            self.cancel()
            return
        self._run(f"Listing the series of {study.description or study.study_uid}…",
                  lambda **kw: work.list_series(store, node, study.study_uid, **kw),
                  lambda series: self._show_series(series, study.study_uid))

    def _show_series(self, series: list[SeriesMatch], study_uid: str | None) -> None:
        """The series table, every series ticked (the usual wish is the whole study)."""
        self.series, self.series_study = list(series), study_uid
        fill_table(self.series_table, [series_cells(s) for s in series],
              [f"SeriesInstanceUID {s.series_uid}" for s in series])
        self.series_table.blockSignals(True)
        for row in range(len(series)):
            item = self._tick(row)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
        self.series_table.blockSignals(False)
        if study_uid is not None:
            images = sum(s.instance_count or 0 for s in series)
            self.status.setText(f"{len(series)} series, {images} images: untick those not needed, then Retrieve")
        self._sync()

    def checked_series(self) -> list[str]:
        """The UIDs of the ticked series, in table order."""
        return [match.series_uid for row, match in enumerate(self.series)
                if self._tick(row).checkState() == Qt.CheckState.Checked]

    def set_series_checked(self, series_uid: str, checked: bool) -> None:
        """Tick or untick one series, as a click on its box does."""
        row = next(row for row, match in enumerate(self.series) if match.series_uid == series_uid)
        self._tick(row).setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def _tick(self, row: int) -> QTableWidgetItem:
        """The series row's first cell, which holds its tick (`_show_series` fills every row)."""
        item = self.series_table.item(row, 0)
        if item is None:
            raise IndexError(f"the series table has no row {row}")
        return item

    # ---- retrieving ------------------------------------------------------------------------------
    def retrieve(self) -> Job | None:
        """Bring the ticked series of the selected study into the cache in a worker; `study_retrieved`
        then gives its folder and the dialog closes (None: no study, or no series ticked)."""
        study, node, store, chosen = self.study, self.node, self.store, self.checked_series()
        if study is None or node is None or not chosen or self.series_study != study.study_uid or self._retrieving:
            return None
        return self._run(f"Retrieving {len(chosen)} series from {node.name}…",
                         lambda **kw: work.retrieve(store, node, study.study_uid, chosen, **kw),
                         self._retrieved, retrieving=True)

    def _retrieved(self, result: RetrievedStudy) -> None:
        """Hand the cached folder on and close: the window opens it (series assignment, load)."""
        self._idle()
        self.status.setText(f"Retrieved {result.instances} images ({result.fetched} fetched now, the rest were "
                            "in the cache)")
        self.study_retrieved.emit(result.folder)
        self.accept()

    def cancel(self) -> None:
        """Stop the running search or retrieve at its next check (what arrived stays in the cache)."""
        job = self._job
        if job is not None and not job.token.cancelled:
            job.cancel()
            self.status.setText("Stopping…")

    def done(self, result: int) -> None:
        """Closing the dialog stops what runs; a retrieve keeps what arrived, for the next one to resume."""
        self.cancel()
        super().done(result)

    @property
    def busy(self) -> bool:
        """Whether a search, series listing or retrieve is running."""
        return self._job is not None

    @property
    def error(self) -> str:
        """The fault shown ('' when none)."""
        return self.message.text()

    # ---- plumbing --------------------------------------------------------------------------------
    def _run(self, message: str, fn: Callable[..., Any], on_result: Callable[[Any], None], *,
             retrieving: bool = False) -> Job:
        """One PACS step at a time: a new one stops the running one; progress and Cancel in the footer."""
        self.cancel()
        self._show_error(None)
        self._retrieving = retrieving
        self.status.setText(message)
        self.progress.setValue(0)
        job = self.runner.start(
            message, fn,
            on_progress=lambda fraction, text: self._progress(job, fraction, text),
            on_result=lambda result: on_result(result) if self._current(job) else None,
            on_error=lambda error: self._show_error(error) if job is self._job else None,
            on_cancelled=lambda: self._stopped(job),
            on_finished=lambda: self._idle() if job is self._job else None)
        self._job = job
        self._sync()
        return job

    def _current(self, job: Job) -> bool:
        """Whether `job`'s answer is still wanted: the latest step, and not cancelled."""
        return job is self._job and not job.token.cancelled

    def _progress(self, job: Job, fraction: float, message: str) -> None:
        if self._current(job):
            self.progress.setValue(int(1000 * fraction))
            self.status.setText(message)

    def _stopped(self, job: Job) -> None:
        """Say that Cancel took effect, and that a stopped retrieve is not lost."""
        if job is self._job:
            self.status.setText("Retrieve stopped: what arrived stays in the cache, and retrieving again fetches "
                                "only the rest." if self._retrieving else "Stopped.")

    def _idle(self) -> None:
        """Nothing runs any more: everything is usable again."""
        self._job, self._retrieving = None, False
        self._sync()

    def _show_error(self, error: BaseException | None) -> None:
        """One message for the fault (None: clear it); the dialog itself stays usable."""
        show_fault(self.message, self.status, error)

    def _sync(self) -> None:
        """Enable what makes sense now: only Cancel while retrieving; Retrieve once a study's series are ticked."""
        free, has_node = not self._retrieving, self.node is not None
        for widget in (self.patient_name, self.patient_id, self.accession, self.date_from, self.date_to,
                       self.modality, self.search_button, self.studies_table, self.series_table):
            widget.setEnabled(free and has_node)
        self.node_combo.setEnabled(free and bool(self.nodes))
        self.nodes_button.setEnabled(free)
        study = self.study
        self.retrieve_button.setEnabled(free and has_node and study is not None
                                        and self.series_study == study.study_uid and bool(self.checked_series()))
        self.progress.setVisible(self.busy)
        self.cancel_button.setVisible(self.busy)


def show_pacs_dialog(parent: QWidget, runner: JobRunner, open_folder: Callable[[Path], Any]) -> PacsDialog:
    """The PACS dialog of `parent`, opened window-modal without blocking (`open()`); one per window, so the
    last search is still there when it is opened again. A retrieved study's folder goes to `open_folder`."""
    dialog = parent.findChild(PacsDialog, "pacsDialog")
    if dialog is None:
        dialog = PacsDialog(runner, parent)
        dialog.study_retrieved.connect(open_folder)
    dialog.refresh_nodes()
    dialog.open()
    return dialog
