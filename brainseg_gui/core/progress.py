"""Progress reporting and cooperative cancellation for long work (load, predict, train, mesh).

Long work is a plain function taking ``progress(fraction, message)`` and a ``CancelToken``; it
calls ``cancel.raise_if_cancelled()`` between steps. The GUI wraps such functions in workers.
"""

from __future__ import annotations

import threading
from typing import Protocol

from brainseg_gui.core.errors import Cancelled


class ProgressFn(Protocol):
    def __call__(self, fraction: float, message: str) -> None: ...


def no_progress(fraction: float, message: str) -> None:
    """Default progress callback: report nothing."""


class CancelToken:
    """A thread-safe flag that long work polls between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


def sub_progress(progress: ProgressFn, start: float, stop: float) -> ProgressFn:
    """Map a step's own 0..1 progress into the [start, stop] part of an outer progress bar."""

    def report(fraction: float, message: str) -> None:
        progress(start + (stop - start) * min(max(fraction, 0.0), 1.0), message)

    return report
