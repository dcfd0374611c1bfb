"""The status bar's progress bar and Cancel button: what the running step (open, read a DICOM study)
has done, and a way to stop it. One place for every step, instead of one bar per workflow."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QProgressBar, QToolButton, QWidget

from brainseg_gui.ui.workers import Job


class ActivityBar(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setMaximumWidth(180)
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.progress)
        row.addWidget(self.cancel_button)
        self.job: Job | None = None
        self.setVisible(False)

    def track(self, job: Job, cancel_tip: str | None = None) -> None:
        """Show `job`'s progress (and Cancel when `cancel_tip` says what it stops) until it finishes."""
        self.job = job
        self.progress.setValue(0)
        self.cancel_button.setVisible(cancel_tip is not None)
        self.cancel_button.setToolTip(cancel_tip or "")
        job.signals.progress.connect(lambda fraction, _text: self._progressed(job, fraction))
        job.signals.finished.connect(lambda: self._finished(job))
        self.setVisible(True)
        if job.done:  # it ended on the pool before we listened (a volume handed over ends at once)
            self._finished(job)

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def _progressed(self, job: Job, fraction: float) -> None:
        if job is self.job:
            self.progress.setValue(int(1000 * fraction))

    def _finished(self, job: Job) -> None:
        if job is self.job:
            self.job = None
            self.setVisible(False)
