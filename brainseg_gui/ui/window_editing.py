"""The main window's editing workflow (a mixin of `MainWindow`): the edit controller and the Click
tool wired to the views, the 3D view and the title; the Click tool's prior (the probabilities of
the last segmentation of the shown study); restoring a crashed session's edits; asking before unsaved edits
are lost; the shortcuts dialog.

It uses the window's `workspace` (whose relays carry the shown study's editing events), `editing`
(the shown Document's), `prompter`, `exporter`, `grid`, `state`, `settings`, `overlay_panel`,
`edit_dock`, `view_3d` and `runner`, which `MainWindow.__init__` creates; it adds `click_tool`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from PySide6.QtCore import Qt, QTimer

from brainseg_gui.app.region_codes import regions_of_code
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.labels import LabelConvention
from brainseg_gui.ui.click_tool import ClickTool
from brainseg_gui.ui.overlay import OverlayMode
from brainseg_gui.ui.prompts import Unsaved
from brainseg_gui.ui.viewer_state import Tool

#: The 3D surfaces follow the edits this long after the last stroke (meshing takes ~1 s).
MESH_DELAY_MS = 700


class WindowEditing:
    editing: Any
    prompter: Any
    exporter: Any
    grid: Any
    state: Any
    settings: Any
    overlay_panel: Any
    edit_dock: Any
    measure_dock: Any
    view_3d: Any
    volume: Any
    runner: Any
    workspace: Any

    def _connect_editing(self) -> None:
        events = self.workspace
        self.click_tool = ClickTool(self.state, events, self.runner, self)  # type: ignore[arg-type]
        self._connect_click_tool(self.click_tool)
        events.mask_changed.connect(self.grid.refresh_prediction)
        events.session_changed.connect(self._on_edit_session)
        events.history_changed.connect(self._update_title)  # type: ignore[attr-defined]
        events.message.connect(lambda text: self.statusBar().showMessage(text, 8000))  # type: ignore[attr-defined]
        events.stroke_finished.connect(self._schedule_3d_update)
        self._3d_timer = QTimer(self)  # type: ignore[arg-type]
        self._3d_timer.setSingleShot(True)
        self._3d_timer.setInterval(MESH_DELAY_MS)
        self._3d_timer.timeout.connect(self._update_3d_mask)
        try:
            self.state.set_convention(LabelConvention(str(self.settings.value("edit/convention", "brats"))))
        except ValueError:
            pass
        self.state.edit_changed.connect(self._on_edit_settings)

    def _connect_click_tool(self, tool: ClickTool) -> None:
        """The views' gestures to the tool; its prior follows the segmentations of the shown study."""
        self.grid.edit_pressed.connect(tool.press)
        self.grid.edit_moved.connect(tool.move)
        self.grid.edit_released.connect(tool.release)
        self.grid.edit_negative.connect(tool.negative)
        tool.status.connect(lambda text, ms: self.statusBar().showMessage(text, ms))  # type: ignore[attr-defined]
        tool.error.connect(self.show_error)  # type: ignore[attr-defined]
        self.workspace.replaced.connect(lambda _new, _old: tool.set_prior(None))  # a new study or a scanner view
        self.workspace.segmented.connect(lambda result: tool.set_prior(result.probabilities))

    def confirm_unsaved(self, action: str) -> bool:
        """Before unsaved edits would be lost: export them, drop them, or stay (False)."""
        if not self.editing.unsaved:
            return True
        choice = self.prompter.unsaved(action)
        if choice is Unsaved.CANCEL:
            return False
        if choice is Unsaved.DISCARD:
            self.editing.close_session(discard=True)
            return True
        path = self.exporter.ask_mask_path()  # asks before replacing an earlier export, as File > Export does
        return path is not None and self.exporter.export_mask(path, blocking=True) is not None

    def offer_restore(self) -> bool:
        """A journal of unsaved edits for this study (the app was killed): offer to restore it."""
        from brainseg_gui.core.journal import describe

        contents = self.editing.pending_journal()
        if contents is None:
            return False
        if not self.prompter.restore(describe(contents)):
            self.editing.discard_journal(contents)
            return False
        try:
            self.editing.restore(contents)
        except BrainSegError as error:
            self.show_error("Could not restore the edits", str(error))  # type: ignore[attr-defined]
            return False
        self.statusBar().showMessage("Restored the unsaved edits", 8000)  # type: ignore[attr-defined]
        return True

    def show_shortcuts(self) -> Any:
        """Help > Keyboard shortcuts (a non-modal dialog, returned for tests)."""
        from brainseg_gui.ui.shortcuts import ShortcutsDialog

        dialog = ShortcutsDialog(self.menuBar(), self)  # type: ignore[attr-defined]
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def _on_edit_settings(self) -> None:
        self.settings.setValue("edit/convention", self.state.convention.value)
        tool, before = self.state.tool, getattr(self, "_tool_before", Tool.NAVIGATE)
        self._tool_before = tool
        if tool is Tool.NAVIGATE:
            return
        if tool in (Tool.RULER, Tool.ROI):  # measuring, not editing: the measure panel, overlay as it is
            self.measure_dock.raise_()
            return
        self.edit_dock.raise_()  # the user is editing: show the edit controls
        if before is Tool.NAVIGATE and self.state.look.mode is OverlayMode.REGIONS:
            # edits paint classes: show classes, in the colours of the edit panel's swatches
            self.state.set_look(replace(self.state.look, mode=OverlayMode.TISSUES))
            self.statusBar().showMessage(  # type: ignore[attr-defined]
                "Editing: the overlay shows the labels NCR/ED/ET (choose Regions in the overlay panel "
                "to see WT/TC/ET)", 8000)

    def _on_edit_session(self) -> None:
        editing = self.editing
        if editing.code_ras is not None:
            self.grid.set_prediction(editing.code_ras)
            self.grid.set_original(editing.ai_code_ras)
            has_truth = self.volume is not None and self.volume.truth_code is not None
            self.overlay_panel.set_available(prediction=True, truth=has_truth)
        self._update_title()  # type: ignore[attr-defined]
        self._update_3d_mask()  # a whole new mask: at once, in one pass

    def _schedule_3d_update(self) -> None:
        if self.view_3d is not None:
            self._3d_timer.start()

    def _update_3d_mask(self) -> None:
        code = self.editing.code_ras
        if self.view_3d is not None and code is not None:
            self.view_3d.set_prediction(regions_of_code(code))
