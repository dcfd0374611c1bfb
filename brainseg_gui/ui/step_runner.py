"""One long step at a time for a workflow with its own panel (the Prepare step): what runs is said
in `busy`, progress and one line of outcome are signals, a failure is one dialog, a cancel one line.

The work is a plain function run by the window's `JobRunner` (see `workers.py`) in a slot of its
own, so only the latest step reports: one the user walked away from (another study opened) changes
nothing.
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
        self.slot = f"step-{id(self)}"  # one step of this workflow at a time, on the viewer's runner

    @property
    def running(self) -> bool:
        return self.job is not None

    def run(self, text: str, fn: Callable[..., Any], done: Callable[[Any], object], *, failure: str,
            cancelled: str = "Cancelled; nothing changed.") -> Job:
        """Start `fn(progress=, cancel=)`; `done(result)` on success, a dialog titled `failure` on error.

        The step is the runner's `slot`: only the latest step reports (the runner drops the rest)."""
        self.busy = text
        self.progress.emit(0.0, text)
        self.job = self.runner.start(
            text, fn, slot=self.slot, on_progress=self.progress.emit,
            on_result=lambda result: self._succeeded(done, result),
            on_error=lambda error: self._failed(failure, error),
            on_cancelled=lambda: self.message.emit(cancelled),
            on_finished=self._finished)
        self.changed.emit()
        return self.job

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.set_busy("Cancelling…")

    def set_busy(self, text: str | None) -> None:
        """Say what the workflow waits for between steps (e.g. the window showing a study)."""
        if text != self.busy:
            self.busy = text
            self.changed.emit()

    def _succeeded(self, done: Callable[[Any], object], result: Any) -> None:
        self.job = None
        self.busy = None
        done(result)
        self.changed.emit()

    def _failed(self, title: str, error: BaseException) -> None:
        self.message.emit(f"{title}; nothing changed.")
        self.show_error(title, str(error))

    def _finished(self) -> None:
        self.job = None
        self.busy = None
        self.changed.emit()
