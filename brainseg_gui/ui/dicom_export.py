"""Export > DICOM-SEG and SR for this study: the mask goes back to the radiologist's study as DICOM.

The SEG (WT/TC/ET) and the SR (region volumes) are written on the grid of the study's T1ce series
(`core.dicom_results`), so a PACS viewer lays them over the images the scanner made. The mask is
taken from what the window shows: on the prepared study it is mapped back through the inverse
registration; in the scanner-space view it is already on a series' grid and written there; on the
study as opened (not prepared) it is resampled from the display grid. Nothing is ever written into
the DICOM study's own folders. Missing sequences and rebuilt slices are flagged in the SR.

File > Send to PACS… writes the same results (and, when asked, the report as an Encapsulated PDF)
into a temporary folder and sends them to a PACS node (ui/pacs_send_dialog.py); both take the mask
as a `ResultsRequest`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox

from brainseg_gui.app.study_results import ResultsRequest, ResultsSource, inside
from brainseg_gui.core.dicom_results import WrittenResults
from brainseg_gui.core.dicom_study import dicom_inputs
from brainseg_gui.core.dicom_volume import SERIES_FILE_SUFFIX
from brainseg_gui.core.study import SEQUENCES
from brainseg_gui.ui.context import ViewerContext
from brainseg_gui.ui.pacs_send_dialog import PacsSendDialog, SentResults
from brainseg_gui.ui.prepare_controller import PrepareController, Stage
from brainseg_gui.ui.workers import Job


class DicomResultsExporter(QObject):
    """The File menu's DICOM-SEG + SR export, and Send to PACS…, for a study opened from DICOM."""

    written = Signal(object)  # WrittenResults
    sent = Signal(object)  # SentResults

    def __init__(self, context: ViewerContext, prepare: PrepareController) -> None:
        super().__init__(context.parent)
        self.context = context
        self.prepare = prepare  # which grid the mask is on (prepared, scanner view, as opened)
        self.last: WrittenResults | None = None
        self.last_message: str | None = None
        self.ask_folder: Callable[[Path], Path | None] = self._ask_folder  # tests answer by themselves
        self.send_dialog: PacsSendDialog | None = None  # made on first use, kept: a send may outlive it
        self._job: Job | None = None

    def source(self) -> ResultsSource | None:
        """The DICOM series behind the shown study, or None when it did not come from a DICOM study."""
        volume, prepare = self.context.volume, self.prepare
        if volume is None or prepare.stage is Stage.REVIEW:
            return None
        record = prepare.record
        if record is not None:
            files = {n: Path(e.source) for n, e in record.sequences.items() if Path(e.source).suffix == SERIES_FILE_SUFFIX}
        else:
            files = {n: Path(p) for n, p in volume.study.sources.items()
                     if n in SEQUENCES and Path(p).suffix == SERIES_FILE_SUFFIX}
        if not files:
            return None
        scanner = prepare.scanner.sequence if prepare.stage is Stage.SCANNER and prepare.scanner else None
        if scanner is not None and scanner not in files:
            return None
        return ResultsSource(files, record, scanner)

    @property
    def can_export(self) -> bool:
        return self._job is None and self.context.editing.session is not None and self.source() is not None

    def request(self) -> ResultsRequest | None:
        """The mask shown as it is now and its DICOM series, or None without a DICOM study and a mask."""
        editing, volume, source = self.context.editing, self.context.volume, self.source()
        session = editing.session
        if source is None or session is None or volume is None:
            return None
        return ResultsRequest(source, session.snapshot(), volume.study.grid, editing.model_version,
                              bool(session.modified))

    def ask_send(self) -> PacsSendDialog | None:
        """File > Send to PACS…: the send dialog for the mask shown, window-modal without blocking (`open()`)."""
        if self._job is not None:  # an export is being written (the menu item is disabled meanwhile)
            return None
        request = self.request()
        if request is None:
            self.context.show_error("Nothing to send", "Open a DICOM study and segment it first.")
            return None
        dialog = self.send_dialog
        if dialog is None:
            dialog = self.send_dialog = PacsSendDialog(self.context.runner, self.context.parent)
            dialog.sent.connect(self._sent)
        dialog.set_request(request)
        dialog.open()
        return dialog

    def _sent(self, result: SentResults) -> None:
        """What the node took, with its UIDs, in the status bar (the send is logged in core)."""
        self.context.status(result.describe(), 30000)
        self.sent.emit(result)

    def ask_export(self) -> Job | None:
        source = self.source()
        if source is None or self.context.editing.session is None:
            self.context.show_error("Nothing to export", "Open a DICOM study and segment it first.")
            return None
        saved = str(self.context.settings.value("export/folder", "") or "")
        start = Path(saved) if saved and Path(saved).is_dir() else Path.home()
        folder = self.ask_folder(start / f"{source.case_id}_brainseg")
        return self.export(folder) if folder is not None else None

    def export(self, out_dir: Path | str) -> Job | None:
        """Write SEG + SR of the edited mask into `out_dir` in a worker; a dialog says what was written."""
        context, session, request = self.context, self.context.editing.session, self.request()
        if request is None or session is None or self._job is not None:
            return None
        out = Path(out_dir)
        study_folder = inside(out, dicom_inputs(request.series_file))
        if study_folder is not None:
            context.show_error("Choose another folder",
                              f"{out} lies inside the DICOM study ({study_folder}). BrainSeg never writes into a "
                              "study's own folders: choose a folder outside it.")
            return None
        revision = session.revision

        def work(**kw: Any) -> tuple[WrittenResults, list[str]]:
            return request.write(out, **kw)

        self._job = context.runner.start(
            "Writing DICOM-SEG and SR", work, on_result=lambda done: self._written(*done, session, revision),
            failure="Could not write the DICOM results", on_finished=self._finished)
        context.status(f"Writing the DICOM-SEG and SR into {out}…", 0)
        return self._job

    def _written(self, result: WrittenResults, flags: list[str], session: Any, revision: int) -> None:
        context = self.context
        self.last = result
        context.settings.setValue("export/folder", str(result.seg.parent.parent))
        editing = context.editing
        if editing.session is session:
            editing.mark_saved(result.seg)
            if session.revision != revision:  # painted on while it was written
                editing.saved_revision = revision
        volumes = ", ".join(f"{name} {value:.1f} mL" for name, value in result.volumes_ml.items())
        self.last_message = (f"Written into {result.seg.parent}:\n• {result.seg.name} (DICOM-SEG: WT, TC, ET; "
                             f"series {result.series_uid})\n• {result.sr.name} (SR: {volumes})"
                             + ("\n\nFlagged: " + "; ".join(flags) if flags else ""))
        box = QMessageBox(QMessageBox.Icon.Information, "DICOM results written", self.last_message,
                          QMessageBox.StandardButton.Ok, context.parent)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        context.status(f"Wrote {result.seg.name} and {result.sr.name}", 8000)
        self.written.emit(result)

    def _finished(self) -> None:
        self._job = None

    def _ask_folder(self, suggested: Path) -> Path | None:
        chosen = QFileDialog.getExistingDirectory(
            self.context.parent, "Write the DICOM-SEG and SR into which folder?", str(suggested.parent))
        return Path(chosen) if chosen else None

