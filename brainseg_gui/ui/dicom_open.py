"""Opening a radiologist's DICOM study: index -> choose the study -> check the series -> load.

Indexing and classing run in workers (progress in the status bar, a Cancel button beside it); a
path with several studies shows the study chooser; then the series assignment dialog. Its choice
is staged as a case folder in the user's cache (`dicom_tasks.stage`) and loaded by the window like
any raw case, with the DICOM path (not the cache) in Open recent. Study > Series and sequences…
reopens the dialog for the DICOM study shown, so the assignment can be changed later.

The dialogs open window-modal but without blocking (`open()`), so tests drive them: they arrive
through `chooser_shown` and `dialog_shown`, and `accept()` goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QLabel

from brainseg_gui.app import dicom_tasks as work
from brainseg_gui.app.display_volume import DisplayVolume
from brainseg_gui.app.document import Document
from brainseg_gui.core.dicom_index import DicomIndex
from brainseg_gui.core.prepared_space import PrepareRecord
from brainseg_gui.ui.context import ViewerContext
from brainseg_gui.ui.sequence_bar import SequenceBar
from brainseg_gui.ui.series_table import SeriesAssignmentDialog
from brainseg_gui.ui.slice_view import SEQUENCE_TITLES
from brainseg_gui.ui.study_chooser import StudyChooserDialog
from brainseg_gui.ui.study_loader import StudyLoader
from brainseg_gui.ui.workers import Job

#: The runner's slot of the DICOM steps (index, class, stage): a new one cancels the running one.
SLOT = "dicom"


class DicomOpener(QObject):
    chooser_shown = Signal(object)  # StudyChooserDialog
    dialog_shown = Signal(object)  # SeriesAssignmentDialog
    changed = Signal()  # a DICOM study is (or is no longer) shown, or a step started or ended

    def __init__(self, context: ViewerContext, loader: StudyLoader, sequence_bar: SequenceBar, study_label: QLabel,
                 record: Callable[[], PrepareRecord | None]) -> None:
        super().__init__(context.parent)
        self.context = context
        self.loader = loader
        self.sequence_bar = sequence_bar  # its tooltips say which series each sequence shows
        self.study_label = study_label  # so does the study panel
        self.record = record  # the prepared study's record (a prepared DICOM study is still this study)
        self.current: work.SeriesChoice | None = None  # the DICOM study shown, for Series and sequences…
        self.staged: work.StagedStudy | None = None  # how it was staged (choices, accepted gaps)
        self.segment_missing = False  # the user chose to segment without a missing sequence
        self.chooser: StudyChooserDialog | None = None
        self.dialog: SeriesAssignmentDialog | None = None
        self._pending: tuple[work.SeriesChoice, work.StagedStudy, bool] | None = None
        self._tips = {name: button.toolTip() for name, button in sequence_bar.buttons.items()}
        context.workspace.replaced.connect(self._on_document)

    @property
    def busy(self) -> bool:
        return self.context.runner.current(SLOT) is not None

    # ---- opening ---------------------------------------------------------------------------------
    def open(self, path: Path | str) -> Job:
        """Index `path` in a worker; then the chooser (several studies) and the series dialog."""
        path = Path(path)
        return self._run(f"Reading the DICOM study {path}", lambda **kw: work.index_study(path, **kw),
                         self._indexed, "Could not open the DICOM study")

    def cancel(self) -> None:
        if self.busy:
            self.context.runner.cancel(SLOT)
            self.context.status("Stopped reading the DICOM study.", 8000)
            self.changed.emit()

    def _indexed(self, index: DicomIndex) -> None:
        if len(index.studies) == 1:
            self._classify(index, index.studies[0].uid)
            return
        chooser = StudyChooserDialog(index, self.context.parent)
        chooser.accepted.connect(lambda: self._classify(index, chooser.chosen_uid))
        self.chooser = chooser
        chooser.open()
        self.chooser_shown.emit(chooser)

    def _classify(self, index: DicomIndex, uid: str | None) -> None:
        self.chooser = None
        if uid is not None:
            self._run("Classing the series", lambda **kw: work.classify(index, uid, **kw), self.show_dialog,
                      "Could not read the DICOM study")

    def show_dialog(self, choice: work.SeriesChoice | None = None) -> SeriesAssignmentDialog | None:
        """The series assignment dialog for `choice` (default: the DICOM study shown, as it is staged)."""
        again = choice is None
        choice = choice or self.current
        if choice is None:
            self.context.status("Series and sequences: open a DICOM study first.", 8000)
            return None
        staged = self.staged if again else None
        dialog = SeriesAssignmentDialog(
            choice, self.context.parent, chosen=staged.assignment.chosen if staged is not None else None,
            accept_gaps=staged.accept_gaps if staged is not None else False,
            segment_missing=self.segment_missing if again else False)
        dialog.accepted.connect(lambda: self._stage(choice, dialog))
        dialog.finished.connect(lambda _result: self._closed(dialog))
        self.dialog = dialog
        dialog.open()
        self.dialog_shown.emit(dialog)
        return dialog

    def _closed(self, dialog: SeriesAssignmentDialog) -> None:
        if self.dialog is dialog:
            self.dialog = None

    def _stage(self, choice: work.SeriesChoice, dialog: SeriesAssignmentDialog) -> None:
        if not self.context.confirm_unsaved("use other series"):
            return
        overrides = dialog.overrides()
        accept_gaps, missing_ok = dialog.accept_gaps, dialog.segment_missing
        self._run("Writing the chosen series",
                  lambda **kw: work.stage(choice, overrides, accept_gaps, **kw),
                  lambda staged: self._load(choice, staged, missing_ok), "Could not use these series")

    def _load(self, choice: work.SeriesChoice, staged: work.StagedStudy, missing_ok: bool) -> None:
        self._pending = (choice, staged, missing_ok)
        self.loader.open_staged(staged.folder, choice.source)

    def _on_document(self, document: Document, _old: Document) -> None:
        volume = document.volume
        assert volume is not None
        pending, self._pending = self._pending, None
        if pending is not None and self._in(volume, pending[1].folder):
            self.current, self.staged, self.segment_missing = pending
        elif self.staged is not None and not self._in(volume, self.staged.folder):
            self.current, self.staged, self.segment_missing = None, None, False
        self._describe()
        self.changed.emit()

    def _describe(self) -> None:
        """Say which series each sequence shows: the sequence buttons' tooltips and the study panel."""
        bar = self.sequence_bar
        if self.staged is None:
            for name, button in bar.buttons.items():
                button.setToolTip(self._tips[name])
            return
        assignment = self.staged.assignment
        lines = []
        for name, button in bar.buttons.items():
            series = assignment.series_for(name)
            title = SEQUENCE_TITLES[name]
            what = f"series {series.label}" if series is not None else "missing from the study"
            button.setToolTip(f"{self._tips[name]}: {what}")
            lines.append(f"{title} = {what if series is None else series.label}")
        flags = (["segmented without the missing sequences (flagged)"] if assignment.missing else []) + (
            ["missing slices rebuilt by interpolation (flagged)"] if self.staged.accept_gaps else [])
        text = "DICOM series: " + "; ".join(lines) + "".join(f"<br><span style='color:#c90'>{f}</span>"
                                                            for f in flags)
        lines_shown = self.study_label.text().split("<br>")
        self.study_label.setText("<br>".join([*lines_shown[:1], text, *lines_shown[1:]]))

    def _in(self, volume: DisplayVolume, folder: Path) -> bool:
        """Whether the shown study was read from the staged `folder` (directly, prepared, or mapped back)."""
        record = self.record()
        sources = [Path(e.source) for e in record.sequences.values()] if record is not None else []
        sources += [Path(p) for p in volume.study.sources.values()]
        folder = folder.resolve()
        return any(p.resolve().parent == folder for p in sources)

    # ---- plumbing --------------------------------------------------------------------------------
    def _run(self, message: str, fn: Callable[..., Any], on_result: Callable[[Any], None], failure: str) -> Job:
        """One step at a time: a new one cancels the running one; progress and Cancel in the status bar."""
        context = self.context
        context.status(message, 0)
        job = context.runner.start(
            message, fn, slot=SLOT, failure=failure, on_result=on_result,
            on_progress=lambda _fraction, text: context.status(text, 0),
            on_cancelled=lambda: context.status("Stopped reading the DICOM study.", 8000),
            on_finished=self.changed.emit)
        context.activity.track(job, "Stop reading the DICOM study")
        self.changed.emit()
        return job
