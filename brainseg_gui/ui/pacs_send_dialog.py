"""File > Send to PACS…: send the shown mask's DICOM-SEG and SR (and the report) to a PACS node.

The dialog is the confirmation: it names the node (from the user's list, core/pacs_nodes.py), the
patient, study and series the results join (read from the staged DICOM series), the regions' volumes
and the files that will go; "include the report (PDF)" adds the one-page report as an Encapsulated
PDF. Send writes the results into a temporary folder and sends them (`send_results`, in a worker
through the window's JobRunner); core/pacs_send.py logs what the node took, with its UIDs. The
temporary folder is removed whatever happens, and nothing is written near the study's own files.

Success emits `sent` (the window shows the UIDs in its status bar) and closes the dialog; a PACS fault
is one message in the dialog, which stays usable to try again or choose another node. Tests drive it
through `select_node`, `report_box`, `send`, `cancel`, `busy`, `error` and `summary_text`.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from brainseg_gui.core.dicom_results import region_volumes_ml
from brainseg_gui.core.dicom_study import result_flags
from brainseg_gui.core.dicom_volume import read_series_file
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.labels import LabelConvention
from brainseg_gui.core.pacs_nodes import NodeStore
from brainseg_gui.core.pacs_send import send_files
from brainseg_gui.core.progress import CancelToken, ProgressFn
from brainseg_gui.ui.pacs_widgets import ERROR_COLOUR, NodeChoice, NodeCombo, push_button, show_fault
from brainseg_gui.ui.workers import Job, JobRunner

if TYPE_CHECKING:
    from brainseg_gui.app.study_results import ResultsRequest

NO_NODES = "No PACS node yet: add one with <b>File &gt; PACS nodes…</b>, then send from here."
TEMP_PREFIX = "brainseg-send-"


@dataclass(frozen=True)
class SentResults:
    """What one send gave the node: each file's kind (SEG, SR, DOC) with its SOP Instance UID."""

    node: str
    instances: tuple[tuple[str, str], ...]

    @property
    def sop_instance_uids(self) -> list[str]:
        return [uid for _kind, uid in self.instances]

    def describe(self) -> str:
        """One line for the status bar."""
        return f"Sent to {self.node}: " + "; ".join(f"{kind} {uid}" for kind, uid in self.instances)


def send_results(request: ResultsRequest, node_name: str, store: NodeStore, *, with_report: bool,
                 temp_root: Path | None, progress: ProgressFn, cancel: CancelToken) -> SentResults:
    """Write `request`'s SEG + SR (+ the report) into a new temporary folder in `temp_root` (None: the
    system's), send them to `node_name` and log it; the folder is removed afterwards, sent or not."""
    folder = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=temp_root))
    try:
        written, _flags = request.write(folder, with_report=with_report,
                                        progress=lambda f, m: progress(0.7 * f, m), cancel=cancel)
        files = [(kind, path) for kind, path in (("SEG", written.seg), ("SR", written.sr), ("DOC", written.report))
                 if path is not None]
        cancel.raise_if_cancelled()  # the last chance: a send cannot be taken back
        progress(0.75, f"Sending {len(files)} files to {node_name}…")
        sent = send_files(node_name, [path for _kind, path in files], store)
        kinds = [kind for kind, _path in files] if len(sent) == len(files) else ["instance"] * len(sent)
        progress(1.0, f"Sent to {node_name}")
        return SentResults(node_name, tuple(zip(kinds, sent)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def study_facts(series_file: Path) -> list[tuple[str, str]]:
    """(label, text) for the patient, study and series a result joins, from the first DICOM file of the
    staged series `series_file` (its header only)."""
    import pydicom

    data = read_series_file(series_file)
    path = data["frames"][0]["file"]
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as error:  # noqa: BLE001 - pydicom raises many types on a damaged or vanished file
        raise BrainSegError(f"cannot read {path} of the study: {error}") from None

    def text(keyword: str) -> str:
        return str(header.get(keyword, "") or "").replace("^", " ").strip()

    study = " ".join(part for part in (_date(text("StudyDate")), text("StudyDescription")) if part)
    accession = text("AccessionNumber")
    return [("Patient", f"{text('PatientName') or 'Unnamed'} (ID {text('PatientID') or '?'})"),
            ("Study", study + (f", accession {accession}" if accession else "") or "?"),
            ("Study UID", text("StudyInstanceUID")),
            ("On series", f"{text('SeriesNumber')} {text('SeriesDescription')}".strip() or str(data["series_uid"]))]


def _date(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else value


class PacsSendDialog(NodeChoice, QDialog):
    """Choose a node, confirm what will go, send; `sent` gives what the node took."""

    sent = Signal(object)  # SentResults

    def __init__(self, runner: JobRunner, parent: QWidget | None = None, store: NodeStore | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("pacsSendDialog")
        self.setWindowTitle("Send to PACS")
        self.runner = runner
        self.store = store or NodeStore()
        self.temp_root: Path | None = None  # where the temporary folder goes (None: the system's)
        self.request: ResultsRequest | None = None
        self._job: Job | None = None
        layout = QVBoxLayout(self)
        layout.addLayout(self._build_node_row())
        layout.addWidget(self.no_nodes)
        layout.addLayout(self._build_summary())
        layout.addLayout(self._build_footer())
        self.resize(680, self.sizeHint().height())

    # ---- building --------------------------------------------------------------------------------
    def _build_node_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.node_combo = NodeCombo()
        self.node_combo.setMinimumWidth(160)
        self.node_combo.currentIndexChanged.connect(lambda _index: self._node_changed())
        self.node_info = QLabel()
        self.node_info.setStyleSheet("color: palette(mid)")
        self.no_nodes = QLabel(NO_NODES)
        self.no_nodes.setWordWrap(True)
        row.addWidget(QLabel("Send to PACS node:"))
        row.addWidget(self.node_combo)
        row.addWidget(self.node_info, 1)
        return row

    def _build_summary(self) -> QFormLayout:
        """What will be sent: patient, study, series, the regions' volumes, the files (selectable text)."""
        form = QFormLayout()
        self.facts: dict[str, QLabel] = {}
        for name in ("Patient", "Study", "Study UID", "On series", "Regions", "Flagged", "Files"):
            label = QLabel()
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.facts[name] = label
            form.addRow(f"{name}:", label)
        self.facts["Regions"].setToolTip("Volumes of the mask as shown; the SR gives them on the series' own grid")
        self.report_box = QCheckBox("include the report (PDF)")
        self.report_box.setToolTip("Also send the one-page report (overview picture, volumes) as an "
                                   "Encapsulated PDF in the study")
        self.report_box.toggled.connect(lambda _on: self._show_files())
        form.addRow("", self.report_box)
        return form

    def _build_footer(self) -> QVBoxLayout:
        footer = QVBoxLayout()
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.setVisible(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel()
        self.send_button = push_button("Send", self.send)
        self.send_button.setDefault(True)
        self.cancel_button = push_button("Cancel", self.cancel)
        row = QHBoxLayout()
        row.addWidget(self.progress)
        row.addWidget(self.status, 1)
        row.addWidget(self.send_button)
        row.addWidget(self.cancel_button)
        footer.addWidget(self.message)
        footer.addLayout(row)
        return footer

    # ---- what is sent ----------------------------------------------------------------------------
    def set_request(self, request: ResultsRequest) -> None:
        """Show what `request` would send; ignored while a send runs (it keeps its own)."""
        if self.busy:
            return
        self.request = request
        self._show_error(None)
        self.status.setText("")
        self.refresh_nodes()
        try:
            facts = study_facts(request.series_file)
        except BrainSegError as error:
            facts = []
            self._show_error(error)
        for name, text in facts:
            self.facts[name].setText(text)
        volumes = region_volumes_ml(request.labels, LabelConvention.BRATS, request.grid)
        self.facts["Regions"].setText(", ".join(f"{name} {value:.1f} mL" for name, value in volumes.items()))
        flags = result_flags(request.series_file)
        self.facts["Flagged"].setText("; ".join(flags) if flags else "nothing")
        self._show_files()
        self._sync()

    def _show_files(self) -> None:
        files = ["DICOM-SEG (WT, TC, ET)", "SR (volumes)"]
        if self.report_box.isChecked():
            files.append("report (Encapsulated PDF)")
        self.facts["Files"].setText(", ".join(files) + ", as new series of this study")

    @property
    def summary_text(self) -> str:
        """The summary as shown, one 'label: text' line per row (tests, and to copy)."""
        return "\n".join(f"{name}: {label.text()}" for name, label in self.facts.items())

    # ---- nodes -----------------------------------------------------------------------------------
    def _node_changed(self) -> None:
        node = self.node
        self.node_info.setText(node.describe() if node is not None else "")
        self._sync()

    # ---- sending ---------------------------------------------------------------------------------
    def send(self) -> Job | None:
        """Write and send in a worker (None: no node, nothing to send, or a send already running)."""
        node, request, store = self.node, self.request, self.store
        if node is None or request is None or self.busy:
            return None
        with_report, temp_root = self.report_box.isChecked(), self.temp_root
        self._show_error(None)
        self.progress.setValue(0)
        self.status.setText(f"Writing the results for {node.name}…")

        def work(**kw: Any) -> SentResults:
            return send_results(request, node.name, store, with_report=with_report, temp_root=temp_root, **kw)

        job = self.runner.start(
            f"Sending to {node.name}", work,
            on_progress=lambda fraction, text: self._progress(fraction, text),
            on_result=self._sent, on_error=self._show_error,
            on_cancelled=lambda: self.status.setText("Stopped: nothing was sent."),
            on_finished=self._idle)
        self._job = job
        self._sync()
        return job

    def _sent(self, result: SentResults) -> None:
        self.status.setText(result.describe())
        self.sent.emit(result)
        if self.isVisible():
            self.accept()

    def cancel(self) -> None:
        """While sending: stop before anything goes (once sending, it completes); else close."""
        job = self._job
        if job is None:
            self.reject()
        elif not job.token.cancelled:
            job.cancel()
            self.status.setText("Stopping…")

    def done(self, result: int) -> None:
        """Closing stops a send that has not started sending; one under way completes and is still reported."""
        job = self._job
        if job is not None and result != QDialog.DialogCode.Accepted:
            job.cancel()
        super().done(result)

    @property
    def busy(self) -> bool:
        return self._job is not None

    @property
    def error(self) -> str:
        """The fault shown ('' when none)."""
        return self.message.text()

    # ---- plumbing --------------------------------------------------------------------------------
    def _progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(1000 * fraction))
        self.status.setText(message)

    def _idle(self) -> None:
        self._job = None
        self._sync()

    def _show_error(self, error: BaseException | None) -> None:
        """One message for the fault (None: clear it); the dialog itself stays usable."""
        show_fault(self.message, self.status, error)

    def _sync(self) -> None:
        free = not self.busy
        self.node_combo.setEnabled(free and bool(self.nodes))
        self.report_box.setEnabled(free)
        self.send_button.setEnabled(free and self.node is not None and self.request is not None)
        self.progress.setVisible(self.busy)
