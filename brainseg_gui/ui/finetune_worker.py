"""The fine-tune run as Qt signals: `ml.finetune_job.FinetuneJob` (a spawned process) watched by a
job of the viewer's one `JobRunner`.

Training runs in its own process, so the GUI stays responsive and Cancel can always stop it (the
child stops at its next step, or is killed after a grace period). Watching it (collecting its
events, noticing a crash, enforcing the cancel) is a plain loop, `watch_process`, run on the
runner's pool like every other long step, with the runner's cancel token; its events come back to
the GUI thread through the job's event channel. This module is the one place that knows the ml
side's event types; the panel only sees the signals below.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from brainseg_gui.core.errors import BrainSegError, Cancelled
from brainseg_gui.core.progress import CancelToken
from brainseg_gui.ui.workers import Job, JobRunner

log = logging.getLogger(__name__)

#: How often the watcher collects the child's events.
POLL_S = 0.15
#: Seconds the child has to stop on its own after Cancel before it is killed.
CANCEL_GRACE_S = 5.0
#: Polls that must find the process gone, and no last event, before the run counts as crashed.
DEAD_POLLS = 3
#: Seconds a child that has sent its last event may take to exit before it is terminated.
EXIT_WAIT_S = 10.0
#: The runner's slot of the fine-tune run (one at a time).
SLOT = "finetune"


class RunFailed(BrainSegError):
    """The fine-tune run ended without a model: `kind` is "error" (said by the child) or "crash"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def watch_process(job: Any, *, progress: Callable[[float, str], None], cancel: CancelToken,
                  emit: Callable[[Any], None], grace_s: float | None = None) -> Any:
    """Forward the child's events to `emit` until it ends; its result, or RunFailed / Cancelled.

    Runs on a pool thread, the only one that reaps the child (see FinetuneJob._ended_within)."""
    cancel_asked, dead_polls = False, 0
    final: Any = None
    final_at = 0.0
    while True:
        if cancel.cancelled and not cancel_asked:
            cancel_asked = True
            job.cancel(grace_s=CANCEL_GRACE_S if grace_s is None else grace_s)
        if final is None:
            for event in job.poll():
                kind = type(event).__name__
                if kind == "Finished":  # the model is written: no need to wait for the exit
                    return event.result
                if kind == "Failed":
                    final, final_at = event, time.monotonic()
                    break
                emit(event)
        if final is not None:
            if job.running and time.monotonic() - final_at < EXIT_WAIT_S:
                time.sleep(POLL_S)  # the child said its last word and is exiting: wait for it to be gone
                continue
            if job.running:
                job.cancel(grace_s=0.0)  # lingering after its last word: terminate it
            if final.kind == "cancelled":
                raise Cancelled("fine-tune cancelled")
            raise RunFailed(str(final.kind), str(final.message))
        if job.running:
            dead_polls = 0
        else:
            dead_polls += 1
            if dead_polls >= DEAD_POLLS:  # ended without a last word: killed after Cancel, or crashed hard
                if cancel_asked:
                    raise Cancelled("fine-tune cancelled")
                code = getattr(getattr(job, "_process", None), "exitcode", None)
                raise RunFailed("crash", f"the training process stopped unexpectedly (exit code {code})")
        time.sleep(POLL_S)


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

    def __init__(self, parent: QObject | None = None, runner: JobRunner | None = None) -> None:
        super().__init__(parent)
        self.runner = runner or JobRunner(self)  # the viewer's, when the window gives it
        self.job: Any = None  # the FinetuneJob (child process) while it runs
        self.watcher: Job | None = None  # the runner's job that watches it
        self.out_dir: Path | None = None
        self.started_at = 0.0
        self.holding = False  # events are kept back (tests: the panel must not need them to look alive)
        self._held: list[Any] = []

    @property
    def running(self) -> bool:
        return self.job is not None

    def start(self, train: Sequence[Any], val: Sequence[Any], out_dir: Path, *, base_model: Path | None,
              settings: Any) -> None:
        """Spawn the training process and its watcher (returns at once; raises if one is running)."""
        from brainseg_gui.ml.finetune_job import FinetuneJob

        if self.job is not None:
            raise RuntimeError("a fine-tune run is already running")
        self.out_dir = Path(out_dir)
        self.started_at = time.monotonic()
        job = self.job = FinetuneJob.start(list(train), list(val), self.out_dir, base_model=base_model,
                                           settings=settings)
        self.watcher = self.runner.start(
            "Fine-tuning", lambda **kw: watch_process(job, **kw), slot=SLOT, on_event=self._receive,
            on_result=lambda result: self._end(lambda: self.finished.emit(result)),
            on_error=self._failed, on_cancelled=lambda: self._end(self.cancelled.emit))

    def cancel(self) -> None:
        """Ask the run to stop now; the process is killed if it has not stopped after the grace period."""
        if self.watcher is not None:
            self.watcher.cancel()

    def hold_events(self, hold: bool) -> None:
        """Keep the child's events back (True) or deliver them, and those held, again (False)."""
        self.holding = hold
        if not hold:
            held, self._held = self._held, []
            for event in held:
                self._deliver(event)

    def _receive(self, event: Any) -> None:
        if self.holding:
            self._held.append(event)
        else:
            self._deliver(event)

    def _deliver(self, event: Any) -> None:
        """Emit the signal for one event of the child."""
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
        else:
            log.debug("fine-tune event ignored: %r", event)

    def _failed(self, error: BaseException) -> None:
        kind = error.kind if isinstance(error, RunFailed) else "crash"
        self._end(lambda: self.failed.emit(kind, str(error)))

    def _end(self, emit: Callable[[], None]) -> None:
        self.hold_events(False)  # what arrived before the end is shown first
        self.job = None
        self.watcher = None
        emit()
        self.stopped.emit()

    def shutdown(self, wait_s: float = CANCEL_GRACE_S + 2) -> None:
        """Stop a run for good (window closing): cancel, then wait for the watcher (and the process) to end."""
        watcher = self.watcher
        if watcher is None:
            return
        watcher.cancel()
        deadline = time.monotonic() + wait_s + 1.0
        while not watcher.done and time.monotonic() < deadline:
            time.sleep(0.05)
        if not watcher.done:
            log.warning("fine-tune process did not stop cleanly")
        self.job = None
        self.watcher = None
