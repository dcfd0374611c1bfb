"""What a controller of the viewer may use: the open study, the view state, one job runner, one error
route, the status line and the questions to the user. Never the main window.

The window builds one `ViewerContext` and hands it to every controller (prepare, DICOM, exports,
models, menus), so a controller can be built and tested with a context of its own and the
window is not a bag of attributes that everything reaches into.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QWidget

from brainseg_gui.app.display_volume import DisplayVolume
from brainseg_gui.app.document import Document, Workspace
from brainseg_gui.app.editing import Editing
from brainseg_gui.ui.activity import ActivityBar
from brainseg_gui.ui.errors import ErrorReporter
from brainseg_gui.ui.prompts import Prompter
from brainseg_gui.ui.viewer_state import ViewerState
from brainseg_gui.ui.workers import JobRunner


@dataclass
class ViewerContext:
    workspace: Workspace  # the open Document, and its events
    state: ViewerState  # what the views show: crosshair, sequence, windows, tool
    runner: JobRunner  # the one mechanism for long work
    errors: ErrorReporter  # the one route for failures
    activity: ActivityBar  # progress and Cancel of the running step, in the status bar
    status: Callable[[str, int], None]  # a line in the status bar for `ms` milliseconds (0: until replaced)
    prompter: Prompter  # modal questions; tests swap in one that answers by itself
    settings: QSettings
    parent: QWidget  # the owner of dialogs
    confirm_unsaved: Callable[[str], bool]  # before unsaved edits would be lost: export, drop or stay

    @property
    def document(self) -> Document:
        return self.workspace.document

    @property
    def volume(self) -> DisplayVolume | None:
        return self.workspace.document.volume

    @property
    def editing(self) -> Editing:
        return self.workspace.document.editing

    def show_error(self, title: str, message: str) -> None:
        self.errors.show(title, message)
