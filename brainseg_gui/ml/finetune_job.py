"""A fine-tune in its own process, for the GUI: start, poll events, cancel at any moment.

The child ("spawn": nothing of the GUI's Qt state is inherited) runs `finetune()` and sends every
event through a queue (a `StepDone` per training step, throttled in ml/finetune_events.py), plus
`Progress` (throttled), and a last `Finished(result)` or
`Failed(kind, message)`. Cancel sets a flag the child checks between training steps; a child still
running after the grace period is terminated, then killed. The new model only ever lives in the
run's staging folder, so killing the child cannot harm the active or shipped model.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import queue as queue_module
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from brainseg_gui.core.cases import CaseFiles
from brainseg_gui.ml.finetune import CaseInput, FinetuneResult, FinetuneSettings

log = logging.getLogger(__name__)

#: Most Progress events a second (the training loop may report hundreds of steps a second on a GPU).
PROGRESS_PER_SECOND = 10
#: How often the child checks whether the parent asked it to stop (seconds).
CANCEL_POLL_S = 0.2


@dataclass(frozen=True)
class Progress:
    fraction: float
    message: str


@dataclass(frozen=True)
class Finished:
    result: FinetuneResult


@dataclass(frozen=True)
class Failed:
    kind: Literal["cancelled", "error", "crash"]
    message: str


def _portable(item: CaseInput) -> Any:
    """CaseFiles holds a mappingproxy, which does not pickle: send its fields instead."""
    if isinstance(item, CaseFiles):
        values = {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
        values["files"] = dict(item.files)
        return ("CaseFiles", values)
    return Path(item)


def _restore(item: Any) -> CaseInput:
    if isinstance(item, tuple) and item and item[0] == "CaseFiles":
        return CaseFiles(**item[1])
    return Path(item)


def _child(events: Any, cancel_flag: Any, train: list[Any], val: list[Any], out_dir: Path,
           base_model: Path | None, settings: FinetuneSettings | None) -> None:
    """The child process: run the fine-tune, report everything through `events`."""
    from brainseg_gui.core.errors import BrainSegError, Cancelled
    from brainseg_gui.core.progress import CancelToken
    from brainseg_gui.ml.finetune import finetune

    logging.basicConfig(level=logging.INFO, format="%(asctime)s finetune %(levelname)s %(message)s")
    token = CancelToken()

    def watch() -> None:
        # Polling a lock-free shared flag, not waiting on a multiprocessing.Event: a process that
        # exits while waiting on an Event leaves its parent's Event.set() blocked for ever.
        while not cancel_flag.value:
            time.sleep(CANCEL_POLL_S)
        token.cancel()

    threading.Thread(target=watch, daemon=True).start()
    last = [0.0]

    def progress(fraction: float, message: str) -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0 / PROGRESS_PER_SECOND or fraction >= 1.0:
            last[0] = now
            events.put(Progress(float(fraction), str(message)))

    try:
        result = finetune([_restore(i) for i in train], [_restore(i) for i in val], out_dir,
                          base_model=base_model, settings=settings, progress=progress, cancel=token,
                          on_event=events.put)
        events.put(Finished(result))
    except Cancelled:
        events.put(Failed("cancelled", "cancelled by the user"))
    except BrainSegError as error:
        events.put(Failed("error", str(error)))
    except BaseException as error:  # noqa: BLE001 (report anything, then let the process end)
        tail = "".join(traceback.format_exception(error))[-4000:]
        events.put(Failed("crash", f"{type(error).__name__}: {error}\n{tail}"))


class FinetuneJob:
    """One fine-tune running in a child process."""

    def __init__(self, process: Any, events: Any, cancel_flag: Any) -> None:
        self._process = process
        self._events = events
        self._cancel_flag = cancel_flag
        self._pending: list[Any] = []
        self.result: FinetuneResult | None = None
        self.failure: Failed | None = None

    @classmethod
    def start(cls, train_cases: Sequence[CaseInput], val_cases: Sequence[CaseInput], out_dir: Path, *,
              base_model: Path | None = None, settings: FinetuneSettings | None = None) -> FinetuneJob:
        """Spawn the child and return at once."""
        context = multiprocessing.get_context("spawn")
        events = context.Queue()
        cancel_flag = context.RawValue("b", 0)  # set to 1 by cancel(); read by the child's watcher
        process = context.Process(
            target=_child, name="brainseg-finetune", daemon=True,
            args=(events, cancel_flag, [_portable(i) for i in train_cases], [_portable(i) for i in val_cases],
                  Path(out_dir), Path(base_model) if base_model is not None else None, settings),
        )
        process.start()
        log.info("fine-tune started in process %s", process.pid)
        return cls(process, events, cancel_flag)

    @property
    def running(self) -> bool:
        return bool(self._process.is_alive())

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def _drain(self) -> list[Any]:
        out = []
        while True:
            try:
                event = self._events.get_nowait()
            except (queue_module.Empty, EOFError, OSError):
                break
            if isinstance(event, Finished):
                self.result = event.result
            elif isinstance(event, Failed):
                self.failure = event
            out.append(event)
        return out

    def poll(self) -> list[Any]:
        """The events that arrived since the last call (never blocks)."""
        events, self._pending = self._pending + self._drain(), []
        return events

    def cancel(self, grace_s: float = 10.0) -> None:
        """Ask the child to stop at its next step; terminate it if it is still running after `grace_s`."""
        self._cancel_flag.value = 1

        def enforce() -> None:
            if self._ended_within(grace_s):
                return
            log.warning("fine-tune process %s did not stop within %.0f s: terminating it", self._process.pid, grace_s)
            self._process.terminate()
            if not self._ended_within(5.0):
                self._process.kill()

        threading.Thread(target=enforce, daemon=True).start()

    def _ended_within(self, timeout_s: float) -> bool:
        """Whether the child ends within `timeout_s`, without reaping it.

        Only the owner's thread reaps (join/is_alive): a second thread reaping too could take the exit
        status while the owner's waitpid fails, and the owner would then see a dead child as running.
        """
        return bool(multiprocessing.connection.wait([self._process.sentinel], timeout_s))

    def wait(self, timeout: float | None = None) -> FinetuneResult | None:
        """Block until the child ends (or `timeout` s); the result, or None after a failure/timeout.

        Events seen while waiting are kept for the next `poll()`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.result is None and self.failure is None:
            self._pending += self._drain()
            if not self._process.is_alive():
                time.sleep(0.2)  # let the queue's feeder deliver the last events
                self._pending += self._drain()
                break
            if deadline is not None and time.monotonic() > deadline:
                return self.result
            time.sleep(0.1)
        # The last event is in: give the child the rest of the time to exit.
        self._process.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self.result
