"""Opening a study: build its volume in a worker, then make it the workspace's Document.

Every way a study reaches the views goes through `load`: a file or folder, the demo, a staged
DICOM study, or a volume another workflow built (a prepared study, its brain-mask check, a
scanner-space view; `role` and `extra` say which, and travel with the Document). One load at a
time (the "open" slot): a newer one cancels the older, whose result is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from brainseg_gui.app import tasks
from brainseg_gui.app.display_volume import DisplayVolume
from brainseg_gui.app.document import Role
from brainseg_gui.app.preload import StudyPreload
from brainseg_gui.ui.context import ViewerContext
from brainseg_gui.ui.recent_studies import RecentStudies
from brainseg_gui.ui.workers import Job

SLOT = "open"


class StudyLoader(QObject):
    finished = Signal()  # a load ended (shown, failed or cancelled)

    def __init__(self, context: ViewerContext, recent: RecentStudies) -> None:
        super().__init__(context.parent)
        self.context = context
        self.recent = recent

    @property
    def busy(self) -> bool:
        return self.context.runner.current(SLOT) is not None

    def open_path(self, path: Path, *, preload: StudyPreload | None = None) -> Job:
        """`path` read in a worker, or, when `preload` is reading the same path, its result awaited there."""
        read = preload.take(path) if preload is not None else None
        return self.load(f"Opening {path}", read or (lambda **kw: tasks.open_study(path, **kw)), source=path)

    def open_staged(self, folder: Path, source: Path) -> Job:
        """A DICOM study staged in `folder` (the cache); Open recent keeps `source`, the DICOM path."""
        return self.load(f"Opening {source}", lambda **kw: tasks.open_study(folder, **kw), source=source)

    def open_demo(self) -> Job:
        return self.load("Opening the demo study", tasks.open_demo, name=tasks.DEMO_NAME)

    def load(self, message: str, fn: Callable[..., DisplayVolume], *, source: Path | None = None,
             name: str | None = None, role: Role = Role.STUDY, extra: dict[str, Any] | None = None) -> Job:
        """Build a volume with `fn(progress=, cancel=)` in a worker and show it as a new Document.

        `source` goes to Open recent; a volume without one (the demo, a built view) does not."""
        context = self.context
        context.status(message, 0)
        job = context.runner.start(
            message, fn, slot=SLOT,
            on_progress=lambda _fraction, text: context.status(text, 0),
            on_result=lambda volume: self._loaded(volume, source, name, role, extra),
            on_error=lambda error: self._failed(error, source, name),
            on_finished=self.finished.emit)
        context.activity.track(job, "Stop opening the study")
        return job

    def _loaded(self, volume: DisplayVolume, source: Path | None, name: str | None, role: Role,
                extra: dict[str, Any] | None) -> None:
        if source is not None:
            self.recent.add(source)  # before the views hear of it: the welcome's list shows it
        workspace = self.context.workspace
        workspace.replace(workspace.new_document(volume, name=name or volume.study.case_id, source=source,
                                                 role=role, extra=extra))
        self.context.status(f"Opened {volume.study.case_id}", 5000)

    def _failed(self, error: BaseException, source: Path | None, name: str | None) -> None:
        self.context.status(f"Could not open {source or name or 'the demo'}", 10000)
        self.context.show_error("Could not open the study", str(error))
