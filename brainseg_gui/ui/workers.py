"""Run long plain functions (load, predict, mesh) on a thread pool and report through Qt signals.

The function is called as ``fn(progress=..., cancel=...)``; it reports ``progress(fraction,
message)`` and raises ``Cancelled`` when its ``CancelToken`` is set. Signals are delivered on the
GUI thread (the signal object lives there), so slots may touch widgets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from brainseg_gui.core.errors import Cancelled
from brainseg_gui.core.progress import CancelToken

log = logging.getLogger(__name__)


class JobSignals(QObject):
    progress = Signal(float, str)
    succeeded = Signal(object)
    failed = Signal(object)  # the exception
    cancelled = Signal()
    finished = Signal()  # after any of the three above


class Job(QRunnable):
    """One run of `fn` on the pool; `cancel()` asks it to stop at its next check."""

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the owner keeps it until `finished`
        self.name = name
        self.fn = fn
        self.token = CancelToken()
        self.signals = JobSignals()
        self.done = False

    def cancel(self) -> None:
        self.token.cancel()

    def run(self) -> None:  # on a pool thread
        try:
            result = self.fn(progress=self._report, cancel=self.token)
        except Cancelled:
            self.signals.cancelled.emit()
        except Exception as error:
            log.exception("%s failed", self.name)
            self.signals.failed.emit(error)
        else:
            self.signals.succeeded.emit(result)
        self.done = True
        self.signals.finished.emit()

    def _report(self, fraction: float, message: str) -> None:
        self.signals.progress.emit(float(fraction), str(message))


class JobRunner(QObject):
    """Starts jobs and keeps them alive until they finish; one pool for the whole viewer."""

    def __init__(self, parent: QObject | None = None, pool: QThreadPool | None = None) -> None:
        super().__init__(parent)
        self.pool = pool or QThreadPool.globalInstance()
        self._running: set[Job] = set()

    def start(self, name: str, fn: Callable[..., Any], *,
              on_result: Callable[[Any], None] | None = None,
              on_error: Callable[[BaseException], None] | None = None,
              on_progress: Callable[[float, str], None] | None = None,
              on_cancelled: Callable[[], None] | None = None,
              on_finished: Callable[[], None] | None = None) -> Job:
        job = Job(name, fn)
        if on_progress:
            job.signals.progress.connect(on_progress)
        if on_result:
            job.signals.succeeded.connect(on_result)
        if on_error:
            job.signals.failed.connect(on_error)
        if on_cancelled:
            job.signals.cancelled.connect(on_cancelled)
        if on_finished:
            job.signals.finished.connect(on_finished)
        job.signals.finished.connect(lambda: self._running.discard(job))
        self._running.add(job)
        self.pool.start(job)
        return job

    @property
    def running(self) -> tuple[Job, ...]:
        return tuple(self._running)

    def cancel_all(self) -> None:
        for job in list(self._running):
            job.cancel()

    def wait(self, msecs: int = 30000) -> bool:
        """Block until the pool is idle (used on close so no thread outlives the window)."""
        return self.pool.waitForDone(msecs)
