"""The fine-tune run as Qt signals: `ml.finetune_job.FinetuneJob` (a spawned process) polled by a timer.

Training runs in its own process, so the GUI stays responsive and Cancel can always stop it (the
child stops at its next step, or is killed after a grace period). This module is the one place that
knows the ml side's event types; the panel only sees the signals below.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

log = logging.getLogger(__name__)

#: How often the GUI collects the child's events.
POLL_MS = 150
#: Seconds the child has to stop on its own after Cancel before it is killed.
CANCEL_GRACE_S = 5.0
#: Polls that must find the process gone, and no last event, before the run counts as crashed.
DEAD_POLLS = 3
#: Seconds a child that has sent its last event may take to exit before it is terminated.
EXIT_WAIT_S = 10.0


class FinetuneWorker(QObject):
    """Starts one run at a time; signals arrive on the GUI thread."""

    started = Signal(object)  # ml Started: device, base model, cases, epochs...
    progress = Signal(float, str)  # fraction of the whole job, message
    evaluated = Signal(str, object)  # "before" | "after", ValidationMetrics
    step_done = Signal(object)  # ml StepDone: each training step (at most ten a second)
    epoch_done = Signal(object)  # ml EpochDone
    notice = Signal(str, str)  # kind ("collapse" | "early_stop" | ...), text
    finished = Signal(object)  # ml FinetuneResult (the staged model)
    failed = Signal(str, str)  # kind ("error" | "crash"), message
    cancelled = Signal()
    stopped = Signal()  # after finished, failed or cancelled: the process is gone

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.job: Any = None
        self.out_dir: Path | None = None
        self.started_at = 0.0
        self._cancel_asked = False
        self._dead_polls = 0
        self._final: Callable[[], None] | None = None
        self._final_at = 0.0
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.poll)

    @property
    def running(self) -> bool:
        return self.job is not None

    def start(self, train: Sequence[Any], val: Sequence[Any], out_dir: Path, *, base_model: Path | None,
              settings: Any) -> None:
        """Spawn the training process (returns at once; raises if one is already running)."""
        from brainseg_gui.ml.finetune_job import FinetuneJob

        if self.job is not None:
            raise RuntimeError("a fine-tune run is already running")
        self.out_dir = Path(out_dir)
        self._cancel_asked = False
        self._dead_polls = 0
        self._final = None
        self.started_at = time.monotonic()
        self.job = FinetuneJob.start(list(train), list(val), self.out_dir, base_model=base_model,
                                     settings=settings)
        self._timer.start()

    def cancel(self) -> None:
        """Ask the run to stop now; the process is killed if it has not stopped after the grace period."""
        if self.job is not None and not self._cancel_asked:
            self._cancel_asked = True
            self.job.cancel(grace_s=CANCEL_GRACE_S)

    def poll(self) -> None:
        """Deliver the child's events as signals; report the end only once the process is gone."""
        job = self.job
        if job is None:
            return
        if self._final is None:
            for event in job.poll():
                self._final = self._deliver(event)
                if self.job is None:  # finished
                    return
                if self._final is not None:
                    self._final_at = time.monotonic()
                    break
        if self._final is not None:
            if job.running and time.monotonic() - self._final_at < EXIT_WAIT_S:
                return  # the child said its last word and is exiting: wait for it to be gone
            if job.running:
                job.cancel(grace_s=0.0)  # lingering after its last word: terminate it
            self._end(self._final)
            return
        if job.running:
            self._dead_polls = 0
            return
        self._dead_polls += 1
        if self._dead_polls < DEAD_POLLS:  # its last events may still be on their way
            return
        # ended without a last word: killed after Cancel, or crashed hard (e.g. out of memory)
        code = getattr(getattr(job, "_process", None), "exitcode", None)
        if self._cancel_asked:
            self._end(self.cancelled.emit)
        else:
            self._end(lambda: self.failed.emit(
                "crash", f"the training process stopped unexpectedly (exit code {code})"))

    def _deliver(self, event: Any) -> Callable[[], None] | None:
        """Emit the signal for one event; for the last event, return the emit to run once it has exited."""
        kind = type(event).__name__
        if kind == "Progress":
            self.progress.emit(float(event.fraction), str(event.message))
        elif kind == "Started":
            self.started.emit(event)
        elif kind == "Evaluated":
            self.evaluated.emit(str(event.stage), event.metrics)
        elif kind == "StepDone":
            self.step_done.emit(event)
        elif kind == "EpochDone":
            self.epoch_done.emit(event)
        elif kind == "Notice":
            self.notice.emit(str(event.kind), str(event.text))
        elif kind == "Finished":  # the run is over and its model written: no need to wait for the exit
            self._end(lambda: self.finished.emit(event.result))
            return None
        elif kind == "Failed":
            if event.kind == "cancelled":
                return self.cancelled.emit
            return lambda: self.failed.emit(str(event.kind), str(event.message))
        else:
            log.debug("fine-tune event ignored: %r", event)
        return None

    def _end(self, emit: Callable[[], None]) -> None:
        self._timer.stop()
        self.job = None
        self._final = None
        emit()
        self.stopped.emit()

    def shutdown(self, wait_s: float = CANCEL_GRACE_S + 2) -> None:
        """Stop a run for good (window closing): cancel, then wait for the process to end."""
        job = self.job
        if job is None:
            return
        self.cancel()
        try:
            job.wait(timeout=wait_s)
        except Exception:  # closing: nothing to show any more
            log.exception("fine-tune process did not stop cleanly")
        self._timer.stop()
        self.job = None
