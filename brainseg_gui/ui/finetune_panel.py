"""The fine-tune window: adapt the active model to this site's cases with the same adversarial training.

Choose training and validation cases, adjust the settings, Start: training runs in a separate
process (see `finetune_worker`) with live plots, progress, time left and the device. The plots and
the time left move at every training step (an epoch takes minutes on a small CPU) and the clock
ticks every second on its own. A validation case the active model was trained on is flagged before
Start (its Dice before is inflated) and starred in the result. The window fits a 1366x768 screen:
both columns scroll when the screen is smaller than they want. When it ends,
a before/after table of Dice and HD95 per region on the validation cases; Keep copies the new model
into the per-user registry and makes it active, Discard deletes it. Until Keep nothing changes the
active model, so Cancel, a crash or closing the app leave it as it was.

Every action is a method tests can call: start, cancel, keep, discard (and `cases`, `set_settings`).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QShowEvent
from PySide6.QtWidgets import (
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from brainseg_gui.app.corrected_cases import CorrectedCases
from brainseg_gui.ui.finetune_cases import TRAIN, VAL, CasesBox
from brainseg_gui.ui.finetune_plots import FinetunePlots
from brainseg_gui.ui.finetune_result import ResultBox, clock, duration
from brainseg_gui.ui.finetune_settings import SettingsBox
from brainseg_gui.ui.finetune_worker import FinetuneWorker
from brainseg_gui.ui.workers import JobRunner

log = logging.getLogger(__name__)

WARNING_STYLE = "color: #e0a040"
ERROR_STYLE = "color: #ff6b6b"
#: The size the window asks for, shrunk to the screen it opens on (less MARGIN for frame and task bar).
PREFERRED_SIZE = QSize(1280, 780)
MARGIN = QSize(24, 64)
#: How often the running clock and the time left are redrawn (ms), events or not.
CLOCK_MS = 1000
#: How ml/training.py's progress messages start ("epoch 3/20 step 5/16"); once steps arrive, the
#: panel's own step line replaces them, so the two formats do not take turns on the message line.
TRAINING_MESSAGE = "epoch "


class FinetunePanel(QWidget):
    """The whole fine-tune window. `models_changed` fires after Keep (the active model changed)."""

    models_changed = Signal(object)  # the new active ModelEntry
    open_models_requested = Signal()

    def __init__(self, registry: Any = None, corrected: CorrectedCases | None = None,
                 parent: QWidget | None = None, runner: JobRunner | None = None) -> None:
        super().__init__(parent)
        from brainseg_gui.ml.model_registry import ModelRegistry

        self.setWindowTitle("Fine-tune the model — BrainSeg (research use only)")
        self.registry = registry if registry is not None else ModelRegistry()
        self.runner = runner or JobRunner(self)  # the viewer's one runner when the window opens it
        self.worker = FinetuneWorker(self, self.runner)
        self.result: Any = None  # a finished run waiting for Keep or Discard
        self.state = "idle"  # idle | running | cancelling | finished
        self.notices: list[tuple[str, str]] = []
        self.last_message = ""
        self._started_at = 0.0
        self._eta: tuple[float, float] | None = None  # (seconds left, time.monotonic() when told)
        self._stepping = False  # StepDone events have arrived in this run
        self._staging: Path | None = None
        self._fitted = False
        self.clock = QTimer(self)
        self.clock.setInterval(CLOCK_MS)
        self.clock.timeout.connect(self._tick)

        self.base_label = QLabel("")
        self.base_label.setWordWrap(True)
        self.cases = CasesBox(self.runner, corrected or CorrectedCases())
        self.cases.changed.connect(self._update_buttons)
        self.settings_box = SettingsBox()
        self.settings_widgets = self.settings_box.widgets
        self.adversarial = self.settings_box.adversarial
        left_column = QWidget()
        left = QVBoxLayout(left_column)
        left.setContentsMargins(0, 0, 4, 0)
        left.addWidget(self.base_label)
        left.addWidget(self.cases, 1)
        left.addWidget(self.settings_box)

        self.plots = FinetunePlots()
        self.notice_label = QLabel("")
        self.notice_label.setWordWrap(True)
        self.notice_label.setStyleSheet(WARNING_STYLE)
        right_column = QWidget()
        right = QVBoxLayout(right_column)
        right.setContentsMargins(4, 0, 0, 0)
        right.addWidget(self.plots, 1)
        right.addWidget(self.notice_label)
        self.result_box = ResultBox()
        self.result_box.keep_button.clicked.connect(self.keep)
        self.result_box.discard_button.clicked.connect(self.discard)
        right.addWidget(self.result_box)

        # A splitter of two scroll areas: on a small screen each column scrolls instead of pushing the
        # window past the screen's edge, and the user can give the plots more room. The run box (Start,
        # progress, clock) stays in view below both, whatever is scrolled.
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setChildrenCollapsible(False)
        for column in (left_column, right_column):
            self.splitter.addWidget(_scrolling(column))
        self.splitter.setStretchFactor(1, 1)
        left_width = left_column.sizeHint().width() + self.splitter.widget(0).verticalScrollBar().sizeHint().width()
        self.splitter.setSizes([left_width, PREFERRED_SIZE.width() - left_width])
        outer = QVBoxLayout(self)
        outer.addWidget(self.splitter, 1)
        outer.addWidget(self._run_box())
        self.worker.started.connect(self._on_started)
        self.worker.progress.connect(self._on_progress)
        self.worker.step_done.connect(self._on_step)
        self.worker.epoch_done.connect(self._on_epoch)
        self.worker.evaluated.connect(self._on_evaluated)
        self.worker.notice.connect(self._on_notice)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.cancelled.connect(self._on_cancelled)
        self.resize(PREFERRED_SIZE)
        self.show_base()
        self._update_buttons()

    # ---- building -----------------------------------------------------------------------------
    def _run_box(self) -> QGroupBox:
        box = QGroupBox("Run")
        layout = QVBoxLayout(box)
        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start fine-tuning")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop now; the active model stays as it is")
        self.cancel_button.clicked.connect(self.cancel)
        self.models_button = QPushButton("Models…")
        self.models_button.setToolTip("Kept models, the active one, rollback to the shipped model")
        self.models_button.clicked.connect(self.open_models_requested)
        for button in (self.start_button, self.cancel_button, self.models_button):
            buttons.addWidget(button)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        buttons.addWidget(self.progress, 1)
        layout.addLayout(buttons)
        self.message = QLabel("Choose cases, then Start.")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        self.time_label = QLabel("")
        self.device_label = QLabel("Device: chosen when training starts")
        self.device_label.setWordWrap(True)
        facts = QHBoxLayout()
        facts.addWidget(self.time_label, 1)
        facts.addWidget(self.device_label, 1)
        layout.addLayout(facts)
        return box

    # ---- settings -----------------------------------------------------------------------------
    def current_settings(self) -> Any:
        """The ml FinetuneSettings from the widgets (plus the settings not shown)."""
        return self.settings_box.current()

    def set_settings(self, **values: Any) -> None:
        """Set shown settings by their FinetuneSettings name; any other is kept for the run unseen."""
        self.settings_box.set(**values)

    def show_base(self) -> None:
        """Name the active model (the base of the next run) and flag the validation cases it was trained on."""
        from brainseg_gui.ml.finetune_cases import trained_cases

        active = self.registry.active()
        kind = "the shipped model" if active.shipped else f"kept model {active.name}"
        trained = trained_cases(active.directory)
        self.base_label.setText(f"Starts from the active model: <b>{kind}</b> (version {active.version}"
                                f"{f', trained on {len(trained)} cases' if trained else ''}). "
                                "The shipped model is never changed.")
        self.cases.set_trained(trained)

    # ---- fitting the screen -------------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        """The first time it is shown, shrink the window to the screen it opens on."""
        if not self._fitted:
            self._fitted = True
            self.fit_to_screen()
        super().showEvent(event)

    def fit_to_screen(self, free: QRect | None = None) -> None:
        """At most PREFERRED_SIZE, never larger than `free` (default: the screen's free area) less MARGIN."""
        if free is None:
            screen = self.screen() or QGuiApplication.primaryScreen()
            if screen is None:
                return
            free = screen.availableGeometry()
        room = free.size() - MARGIN
        self.resize(PREFERRED_SIZE.boundedTo(room).expandedTo(self.minimumSizeHint().boundedTo(room)))

    # ---- running ------------------------------------------------------------------------------
    def start(self) -> bool:
        """Start a run with the chosen cases and settings; False (and why, in the panel) if it cannot."""
        if self.state in ("running", "cancelling"):
            return False
        if self.result is not None:
            self.message.setText("Keep or discard the finished run first.")
            return False
        self.cases.refresh()
        if self.cases.errors:
            self.message.setText("Cannot start: " + " ".join(self.cases.errors))
            return False
        try:
            settings = self.current_settings()
            base = self.registry.active()
            self._staging = self.registry.new_staging_dir()
            self.worker.start(self.cases.cases[TRAIN], self.cases.cases[VAL], self._staging,
                              base_model=base.directory, settings=settings)
        except Exception as error:  # bad settings or no process: say so, stay idle
            log.exception("could not start fine-tuning")
            self._drop_staging()
            self.message.setText(f"Could not start: {error}")
            self.message.setStyleSheet(ERROR_STYLE)
            return False
        self.state = "running"
        self._started_at = time.monotonic()
        self._eta = None
        self._stepping = False
        self.clock.start()
        self.notices = []
        self.notice_label.setText("")
        self.plots.clear_run()
        self.result_box.show_result(None)
        self.result_box.set_inflated(self.cases.inflated)
        self.progress.setValue(0)
        self.message.setStyleSheet("")
        self.message.setText(f"Starting from {base.name} ({base.version})…")
        self._tick()
        self._update_buttons()
        return True

    def cancel(self) -> None:
        if self.state == "running":
            self.state = "cancelling"
            self.message.setText("Cancelling… (the active model stays as it is)")
            self.worker.cancel()
            self._update_buttons()

    def _on_started(self, event: Any) -> None:
        self.device_label.setText(f"Device: {event.device}")
        self.message.setText(f"Training on {len(event.train_cases)} cases, validating on "
                             f"{len(event.val_cases)}; {event.epochs} epochs of {event.steps_per_epoch} steps at most.")
        if getattr(event, "base_val_dice", None):
            self.plots.add_baseline(event.base_val_dice)

    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(round(1000 * min(max(fraction, 0.0), 1.0)))
        self.last_message = message
        if self.state == "running" and not (self._stepping and message.startswith(TRAINING_MESSAGE)):
            self.message.setText(message.split(" — about ")[0])  # the time left has its own line (_tick)

    def _on_step(self, event: Any) -> None:
        """A training step: a loss point (x in epochs, e.g. 1.25), where the run is, the step-rate time left."""
        self._stepping = True
        self.plots.add_step(event.position, event.loss_g, event.loss_d)
        self.progress.setValue(max(self.progress.value(), round(1000 * min(max(event.fraction, 0.0), 1.0))))
        if self.state == "running":
            self.message.setText(f"Training: epoch {event.epoch} of {event.epochs} (at most), "
                                 f"step {event.step} of {event.steps_per_epoch}")
        if math.isfinite(event.eta_seconds):
            self._eta = (float(event.eta_seconds), time.monotonic())
        self._tick()

    def _tick(self) -> None:
        """The running clock and the time left, counted down from the last estimate between events."""
        if self.state not in ("running", "cancelling"):
            self.clock.stop()
            return
        now = time.monotonic()
        text = f"Running for {clock(now - self._started_at)}"
        if self._eta is None:
            text += " — time left: estimating…"
        else:
            left = self._eta[0] - (now - self._eta[1])
            text += (f" — about {duration(left)} left" if left >= 1 else " — finishing…")
            if self.settings_box.patience() and left >= 1:
                text += " (less if it stops early)"
        self.time_label.setText(text)

    def _on_epoch(self, event: Any) -> None:
        self.plots.add_epoch(event.epoch, event.g_loss, event.d_loss if self.adversarial.isChecked() else None,
                             event.val_dice)

    def _on_evaluated(self, stage: str, metrics: Any) -> None:
        if stage == "before":
            self.result_box.show_metrics(metrics, None)

    def _on_notice(self, kind: str, text: str) -> None:
        """Collapse and early-stop notices from the ml side, shown as they come and kept until the next run."""
        from html import escape

        if kind in ("few_cases", "inflated"):  # the case lists say so already
            return
        self.notices.append((kind, text))
        prefix = {"collapse": "⚠ Collapse: ", "early_stop": "■ Early stop: "}
        self.notice_label.setText("<br>".join(prefix.get(k, "") + escape(t) for k, t in self.notices))

    def _on_finished(self, result: Any) -> None:
        self.state = "finished"
        self.result = result
        self.progress.setValue(1000)
        self.result_box.show_result(result)
        shown = [*self.cases.warnings, self.cases.inflated_text]
        for warning in result.warnings:  # those not shown already (by a notice or the case lists)
            if warning not in shown and all(warning != text for _, text in self.notices):
                self._on_notice("info", warning)
        self.message.setText("Finished: keep the new model or discard it.")
        self.clock.stop()
        self.time_label.setText(f"Took {duration(result.seconds)}")
        self._update_buttons()

    def _on_failed(self, kind: str, message: str) -> None:
        self.state = "idle"
        self._drop_staging()
        self.message.setStyleSheet(ERROR_STYLE)
        self.message.setText(f"Fine-tuning failed ({kind}): {message} The active model is unchanged.")
        self.clock.stop()
        self.time_label.setText("")
        self._update_buttons()

    def _on_cancelled(self) -> None:
        self.state = "idle"
        self._drop_staging()
        self.message.setText("Cancelled; the active model is unchanged.")
        self.clock.stop()
        self.time_label.setText("")
        self._update_buttons()

    # ---- keep or discard ----------------------------------------------------------------------
    def keep(self) -> Any:
        """Copy the finished run into the registry as a new version and make it active."""
        if self.result is None:
            return None
        try:
            entry = self.registry.keep(self.result.model_dir, note=self._note(), activate=True)
        except Exception as error:  # the run stays staged: the user may try again
            log.exception("keeping the fine-tuned model failed")
            self.message.setStyleSheet(ERROR_STYLE)
            self.message.setText(f"Could not keep the model: {error}")
            return None
        self.result = None
        self._drop_staging()
        self.state = "idle"
        self.message.setText(f"Kept as {entry.name}; it is now the active model.")
        self.show_base()
        self._update_buttons()
        self.models_changed.emit(entry)
        return entry

    def discard(self) -> None:
        if self.result is None:
            return
        self.result = None
        self._drop_staging()
        self.state = "idle"
        self.message.setText("Discarded; the active model is unchanged.")
        self._update_buttons()

    def _note(self) -> str:
        train = [c.case_id for c in self.cases.cases[TRAIN]]
        return f"fine-tuned in the app on {len(train)} cases"

    def _drop_staging(self) -> None:
        if self._staging is not None:
            try:
                self.registry.discard(self._staging)
            except Exception:  # leftovers in staging are harmless
                log.exception("could not delete the staged run %s", self._staging)
            self._staging = None

    # ---- display ------------------------------------------------------------------------------
    def cell(self, row: int, column: int) -> str:
        return self.result_box.cell(row, column)

    def _update_buttons(self) -> None:
        idle = self.state in ("idle", "finished")
        self.start_button.setEnabled(self.state == "idle" and not self.cases.errors)
        self.start_button.setToolTip(" ".join(self.cases.errors) or "Train in a separate process")
        self.cancel_button.setEnabled(self.state == "running")
        self.result_box.keep_button.setEnabled(self.result is not None)
        self.result_box.discard_button.setEnabled(self.result is not None)
        self.cases.setEnabled(idle)
        for widget in self.settings_widgets:
            widget.setEnabled(idle)

    def shutdown(self) -> None:
        """The app is quitting: stop a run and delete what it staged."""
        if self.worker.running:
            self.worker.shutdown()
        self._drop_staging()


def _scrolling(column: QWidget) -> QScrollArea:
    """`column` in a frameless scroll area that grows it to the available room and scrolls below its minimum."""
    area = QScrollArea()
    area.setWidget(column)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    return area
