"""One long step at a time for a workflow with its own panel (the Prepare step): what runs is said
in `busy`, progress and one line of outcome are signals, a failure is one dialog, a cancel one line.

The work is a plain function run by the window's `JobRunner` (see `workers.py`); only the latest
step reports, so a step the user walked away from (another study opened) changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from brainseg_gui.ui.workers import Job, JobRunner


class StepRunner(QObject):
    changed = Signal()  # busy or not, what runs
    progress = Signal(float, str)
    message = Signal(str)  # one line of outcome for the user

    def __init__(self, runner: JobRunner, show_error: Callable[[str, str], object],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.show_error = show_error
        self.busy: str | None = None  # what runs (or what the workflow waits for), for the panel
        self.job: Job | None = None

    @property
    def running(self) -> bool:
        return self.job is not None

    def run(self, text: str, fn: Callable[..., Any], done: Callable[[Any], object], *, failure: str,
            cancelled: str = "Cancelled; nothing changed.") -> Job:
        """Start `fn(progress=, cancel=)`; `done(result)` on success, a dialog titled `failure` on error."""
        self.busy = text
        self.progress.emit(0.0, text)
        job = self.runner.start(
            text, fn,
            on_progress=lambda f, m: self._progressed(job, f, m),
            on_result=lambda result: self._succeeded(job, done, result),
            on_error=lambda error: self._failed(job, failure, error),
            on_cancelled=lambda: self._cancelled(job, cancelled),
            on_finished=lambda: self._finished(job))
        self.job = job
        self.changed.emit()
        return job

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.set_busy("Cancelling…")

    def set_busy(self, text: str | None) -> None:
        """Say what the workflow waits for between steps (e.g. the window showing a study)."""
        if text != self.busy:
            self.busy = text
            self.changed.emit()

    def _progressed(self, job: Job, fraction: float, text: str) -> None:
        if job is self.job:
            self.progress.emit(fraction, text)

    def _succeeded(self, job: Job, done: Callable[[Any], object], result: Any) -> None:
        if job is self.job:
            self.job = None
            self.busy = None
            done(result)
            self.changed.emit()

    def _failed(self, job: Job, title: str, error: BaseException) -> None:
        if job is self.job:
            self.message.emit(f"{title}; nothing changed.")
            self.show_error(title, str(error))

    def _cancelled(self, job: Job, text: str) -> None:
        if job is self.job:
            self.message.emit(text)

    def _finished(self, job: Job) -> None:
        if job is self.job:
            self.job = None
            self.busy = None
            self.changed.emit()
