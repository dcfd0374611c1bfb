"""The viewer's link to the models: the fine-tune window, the Models dialog, the active model.

- Segmentation follows the active model of the per-user registry: after Keep, Set active or
  Rollback, the next segmentation loads the new active model.
- Each corrected mask exported as NIfTI is remembered (`corrected_cases`) for the fine-tune panel.
- The fine-tune window and the Models dialog are built on first use (they load torch).
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QApplication

from brainseg_gui.app import tasks
from brainseg_gui.app.corrected_cases import CorrectedCases
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.ui.context import ViewerContext

if TYPE_CHECKING:
    from brainseg_gui.ui.finetune_panel import FinetunePanel
    from brainseg_gui.ui.models_dialog import ModelsDialog

log = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: After the first study is drawn, wait this long before reading the active model (it imports torch).
ACTIVE_MODEL_DELAY_MS = 1000
#: What the fine-tune window and the Models dialog need (torch among them): imported off the GUI thread.
ML_MODULES = ("brainseg_gui.ml.model_registry", "brainseg_gui.ml.finetune", "brainseg_gui.ui.finetune_panel",
              "brainseg_gui.ui.models_dialog")


def active_predictor_factory() -> Any:
    """Builds a predictor for the registry's active model (read when it is built, in a worker)."""

    def build() -> Any:
        from brainseg_gui.ml.predictor import Predictor

        # None: the active model, or the shipped one (with `model_note` saying why) when it is broken
        return Predictor.from_model_dir(None, device="auto")

    return build


class ModelActions(QObject):
    """Holds the predictor that Segment uses (`predictors`); `follow_active` is off when the viewer
    was given its own model."""

    active_changed = Signal(object)  # the new active ModelEntry
    model_named = Signal(str, bool)  # text for the model line, whether it replaces one already shown

    def __init__(self, context: ViewerContext, predictors: tasks.PredictorSlot, *, follow_active: bool = True,
                 registry: Any = None, corrected: CorrectedCases | None = None) -> None:
        super().__init__(context.parent)
        self.context = context
        self.predictors = predictors
        self.follow_active = follow_active
        self._registry = registry
        self.corrected = corrected or CorrectedCases()
        self.panel: FinetunePanel | None = None
        self.dialog: ModelsDialog | None = None
        if follow_active:
            self.predictors = tasks.PredictorSlot(active_predictor_factory())
            # Name the active model before the first segmentation. Reading it loads torch, so it
            # waits until the first study is drawn: a worker importing torch slows the start.
            context.workspace.replaced.connect(self._read_active_soon)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    def _read_active_soon(self, *_: Any) -> None:
        self.context.workspace.replaced.disconnect(self._read_active_soon)
        QTimer.singleShot(ACTIVE_MODEL_DELAY_MS, self, lambda: self.context.runner.start(  # dropped with self
            "active model", lambda *, progress, cancel: self.registry.resolve_active(), on_result=self._name_active))

    def _name_active(self, resolved: Any) -> None:
        entry, problem = resolved  # problem: why the shipped model stands in for a broken active one
        try:
            # not over a name a segmentation has shown already
            self.model_named.emit(f"Model: {entry.name} ({entry.version}); loads at the first segmentation"
                                  + (f". {problem}" if problem else ""), False)
            if problem:
                self.context.status(problem, 15000)
        except RuntimeError:  # the window closed before the registry was read
            pass

    @property
    def registry(self) -> Any:
        if self._registry is None:
            from brainseg_gui.ml.model_registry import ModelRegistry

            self._registry = ModelRegistry()
        return self._registry

    def show_finetune(self) -> FinetunePanel | None:
        """The fine-tune window (a run goes on while it is hidden). None while torch is still loading
        in a worker: the window opens when it has (see `_when_loaded`)."""
        return self._when_loaded(self._show_finetune)

    def _show_finetune(self) -> FinetunePanel:
        if self.panel is None:
            from brainseg_gui.ui.finetune_panel import FinetunePanel

            self.panel = FinetunePanel(self.registry, self.corrected, self.context.parent, self.context.runner)
            self.panel.setWindowFlag(Qt.WindowType.Window, True)
            self.panel.models_changed.connect(self._changed)
            self.panel.open_models_requested.connect(self.show_models)
        self.panel.show()
        self.panel.raise_()
        return self.panel

    def show_models(self) -> ModelsDialog | None:
        """The Models dialog (None while torch is still loading; it opens when it has)."""
        return self._when_loaded(self._show_models)

    def _show_models(self) -> ModelsDialog:
        if self.dialog is None:
            from brainseg_gui.ui.models_dialog import ModelsDialog

            self.dialog = ModelsDialog(self.registry, self.context.parent)
            self.dialog.models_changed.connect(self._changed)
        self.dialog.refresh()
        self.dialog.show()
        self.dialog.raise_()
        return self.dialog

    def _when_loaded(self, show: Callable[[], Any]) -> Any:
        """Run `show` now if the ml modules are imported; else import them in a worker first, so the
        window does not freeze for the seconds torch takes to load."""
        if all(name in sys.modules for name in ML_MODULES):
            return show()
        self.context.status("Loading the model tools…", 0)

        def load(*, progress: Any, cancel: Any) -> None:
            for name in ML_MODULES:
                importlib.import_module(name)

        self.context.runner.start("Loading the model tools", load, on_result=lambda _: show(),
                                  failure="Could not load the model tools")
        return None

    def rollback(self) -> Any:
        """Make the shipped model active (the menu's one-click rollback); the new active entry, or
        None while the model tools load (it happens once they have)."""
        return self._when_loaded(self._rollback)

    def _rollback(self) -> Any:
        try:
            entry = self.registry.rollback_to_shipped()
        except (BrainSegError, OSError) as error:  # shown to the user
            self.context.show_error("Could not roll back", str(error))
            return None
        self._changed(entry)
        return entry

    def _changed(self, entry: Any) -> None:
        """The active model changed: the next segmentation loads it; the open windows show it."""
        if self.follow_active:
            self.predictors = tasks.PredictorSlot(active_predictor_factory())
            self.model_named.emit(f"Model: {entry.name} ({entry.version}); loads at the next segmentation", True)
        if self.panel is not None:
            self.panel.show_base()
        if self.dialog is not None:
            self.dialog.refresh()
        self.context.status(f"Active model: {entry.name} ({entry.version})", 8000)
        self.active_changed.emit(entry)

    def record_corrected(self, paths: list[Path]) -> None:
        """A corrected mask exported as NIfTI becomes a case the fine-tune panel offers."""
        context = self.context
        mask = context.editing.last_export
        if context.volume is None or mask is None or Path(mask) not in [Path(p) for p in paths]:
            return
        if not str(mask).lower().endswith(NIFTI_SUFFIXES):
            return
        try:
            self.corrected.record(context.volume.study, Path(mask), context.state.convention.value)
        except Exception:  # the export worked; only the list for fine-tuning missed it
            log.exception("could not remember %s as a corrected case", mask)

    def shutdown(self) -> None:
        if self.panel is not None:
            self.panel.shutdown()
