"""The study named on the command line, read in a plain thread from the start of `brainseg STUDY`.

Why: at a cold start the GUI thread spends ~0.8 s importing Qt and pyqtgraph and building the main
window before it can ask for the study, and reading a BraTS case then takes another ~0.3-0.6 s. Most
of that reading is zlib decompression and numpy's float conversion, which release the GIL, so started
first it runs beside the imports on the second core instead of after them (`bench/ui.py`: the cold
start falls from ~1.4 to ~1.1 s). The viewer takes the result through `take`, once, for the same
path; a DICOM study (indexed and classed first, with a dialog) is not read here. Errors reach the
viewer exactly as a load of its own would raise them; a wait the user cancels stops the read too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress

#: How often a viewer's worker waiting for the preload looks at its cancel token (seconds).
_POLL_S = 0.05


class StudyPreload:
    """One study being read (`open_study` of app/tasks) in a daemon thread; `take` hands it over once.

    Nothing is kept after it is handed over or abandoned: a later study does not share memory with it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._cancel = CancelToken()
        self._volume: Any = None
        self._error: Exception | None = None
        self._taken = False
        threading.Thread(target=self._read, name="brainseg-preload", daemon=True).start()

    def _read(self) -> None:
        volume, error = None, None
        try:
            from brainseg_gui.app import tasks  # here, not at the top: the import itself runs beside Qt's
            from brainseg_gui.core.cases import is_dicom_study

            if not is_dicom_study(self.path):
                volume = tasks.open_study(self.path, progress=no_progress, cancel=self._cancel)
        except Exception as exc:  # noqa: BLE001 - handed to the viewer's worker, which reports it as its own
            error = exc
        finally:  # whatever happened, the viewer's wait ends
            with self._lock:
                if not self._cancel.cancelled:
                    self._volume, self._error = volume, error
            self._done.set()

    def take(self, path: Path) -> Callable[..., Any] | None:
        """A worker function (progress=, cancel=) giving the preloaded volume of `path`, or None
        (another path, or already taken): then the viewer reads it itself."""
        if self._taken or Path(path) != self.path:
            return None
        self._taken = True
        return self._wait

    def _wait(self, *, progress: ProgressFn, cancel: CancelToken) -> Any:
        progress(0.0, f"reading {self.path.name}")
        while not self._done.wait(_POLL_S):
            if cancel.cancelled:
                self._abandon()
                cancel.raise_if_cancelled()
        with self._lock:
            volume, error, self._volume, self._error = self._volume, self._error, None, None
        if error is not None:
            raise error
        if volume is None:  # a DICOM study after all: read the usual way
            from brainseg_gui.app import tasks

            return tasks.open_study(self.path, progress=progress, cancel=cancel)
        return volume

    def _abandon(self) -> None:
        with self._lock:
            self._cancel.cancel()
            self._volume, self._error = None, None
