"""The viewer's one mechanism for long work: plain functions (load, predict, mesh) on a thread pool,
reported through Qt signals on the GUI thread.

The function is called as ``fn(progress=..., cancel=...)``; it reports ``progress(fraction,
message)`` and raises ``Cancelled`` when its ``CancelToken`` is set. A job started with `on_event`
also gets ``emit`` for richer reports (the fine-tune run's steps and epochs). Signals are delivered on the
GUI thread (the signal object lives there), so slots may touch widgets.

A job may take a `slot` (e.g. "open", "segment"): starting another job in the slot cancels the
running one, and only the latest job of a slot reports, so a result the user walked away from
(another study opened meanwhile) changes nothing. A job given a `failure` title and no `on_error`
reports its error through the runner's `ErrorReporter`, the one route to the user.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from brainseg_gui.core.errors import Cancelled
from brainseg_gui.core.progress import CancelToken
from brainseg_gui.ui.errors import ErrorReporter

log = logging.getLogger(__name__)


class JobSignals(QObject):
    progress = Signal(float, str)
    succeeded = Signal(object)
    failed = Signal(object)  # the exception
    cancelled = Signal()
    finished = Signal()  # after any of the three above
    event = Signal(object)  # anything else the function reports (a job started with `on_event`)


class Job(QRunnable):
    """One run of `fn` on the pool; `cancel()` asks it to stop at its next check."""

    def __init__(self, name: str, fn: Callable[..., Any], *, with_events: bool = False) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the owner keeps it until `finished`
        self.name = name
        self.fn = fn
        self.with_events = with_events  # fn also takes `emit`, for events other than progress
        self.token = CancelToken()
        self.signals = JobSignals()
        self.done = False

    def cancel(self) -> None:
        self.token.cancel()

    def run(self) -> None:  # on a pool thread
        try:
            if self.with_events:
                result = self.fn(progress=self._report, cancel=self.token, emit=self.signals.event.emit)
            else:
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


#: Threads of a runner's pool at least (jobs that mostly wait must not take every thread).
MIN_THREADS = 8


class JobRunner(QObject):
    """Starts jobs and keeps them alive until they finish; one pool for the whole viewer."""

    def __init__(self, parent: QObject | None = None, pool: QThreadPool | None = None,
                 errors: ErrorReporter | None = None) -> None:
        super().__init__(parent)
        if pool is None:
            # A pool of its own, wider than the cores: some jobs wait most of their life (the fine-tune
            # watcher for hours, a DICOM retrieve on the network) and must not keep a study from opening.
            pool = QThreadPool(self)
            pool.setMaxThreadCount(max(MIN_THREADS, QThreadPool.globalInstance().maxThreadCount()))
        self.pool = pool
        self.errors = errors
        self._running: set[Job] = set()
        self._slots: dict[str, Job] = {}

    def start(self, name: str, fn: Callable[..., Any], *,
              on_result: Callable[[Any], None] | None = None,
              on_error: Callable[[BaseException], None] | None = None,
              on_progress: Callable[[float, str], None] | None = None,
              on_cancelled: Callable[[], None] | None = None,
              on_finished: Callable[[], None] | None = None,
              on_event: Callable[[Any], None] | None = None,
              slot: str | None = None, failure: str | None = None) -> Job:
        job = Job(name, fn, with_events=on_event is not None)
        if not shiboken6.isValid(self.pool):  # the viewer is gone (a late timer): nothing to run it for
            log.debug("%s not started: the runner's window is closed", name)
            return job
        if slot is not None:
            self.cancel(slot)
            self._slots[slot] = job

        def latest(callback: Callable[..., None]) -> Callable[..., None]:
            """Only the slot's latest job reports (a job without a slot always does), and nothing
            reaches a viewer that is gone (PySide does not drop a lambda with its window)."""
            return lambda *args: callback(*args) if self._reports(job, slot) else None

        if on_error is None and failure is not None:
            on_error = lambda error: self.report(failure, error)
        if on_progress:
            job.signals.progress.connect(latest(on_progress))
        if on_result:
            job.signals.succeeded.connect(latest(on_result))
        if on_error:
            job.signals.failed.connect(latest(on_error))
        if on_cancelled:
            job.signals.cancelled.connect(latest(on_cancelled))
        if on_event:
            job.signals.event.connect(latest(on_event))
        job.signals.finished.connect(lambda: self._done(job, slot, on_finished))
        self._running.add(job)
        self.pool.start(job)
        return job

    def current(self, slot: str) -> Job | None:
        """The slot's running job, or None."""
        return self._slots.get(slot)

    def cancel(self, slot: str) -> None:
        """Ask the slot's job to stop; it will not report any more."""
        job = self._slots.pop(slot, None)
        if job is not None:
            job.cancel()

    def report(self, title: str, error: BaseException | str) -> None:
        """A failure to the user through the one error route (logged when there is none)."""
        if self.errors is not None:
            self.errors.show(title, str(error))
        else:
            log.error("%s: %s", title, error)

    def _reports(self, job: Job, slot: str | None) -> bool:
        """Whether `job` may still tell its owner anything."""
        return shiboken6.isValid(self) and (slot is None or self._slots.get(slot) is job)

    def _done(self, job: Job, slot: str | None, on_finished: Callable[[], None] | None) -> None:
        """The job ended: it leaves its slot first (so `current` is None for whoever is told)."""
        self._running.discard(job)
        latest = self._reports(job, slot)
        if slot is not None and self._slots.get(slot) is job:
            del self._slots[slot]
        if on_finished is not None and latest:
            on_finished()

    @property
    def running(self) -> tuple[Job, ...]:
        return tuple(self._running)

    def cancel_all(self) -> None:
        for job in list(self._running):
            job.cancel()

    def wait(self, msecs: int = 30000) -> bool:
        """Block until the pool is idle (used on close so no thread outlives the window)."""
        return self.pool.waitForDone(msecs)
