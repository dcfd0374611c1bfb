"""The fine-tune window: adapt the active model to this site's cases with the same adversarial training.

Choose training and validation cases, adjust the settings, Start: training runs in a separate
process (see `finetune_worker`) with live plots, progress, time left and the device. When it ends,
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

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from brainseg_gui.app.corrected_cases import CorrectedCases
from brainseg_gui.ui.finetune_cases import TRAIN, VAL, CasesBox
from brainseg_gui.ui.finetune_plots import FinetunePlots
from brainseg_gui.ui.finetune_result import ResultBox, duration
from brainseg_gui.ui.finetune_worker import FinetuneWorker
from brainseg_gui.ui.workers import JobRunner

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
WARNING_STYLE = "color: #e0a040"
ERROR_STYLE = "color: #ff6b6b"


class FinetunePanel(QWidget):
    """The whole fine-tune window. `models_changed` fires after Keep (the active model changed)."""

    models_changed = Signal(object)  # the new active ModelEntry
    open_models_requested = Signal()

    def __init__(self, registry: Any = None, corrected: CorrectedCases | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from brainseg_gui.ml.finetune import SETTING_HELP, FinetuneSettings
        from brainseg_gui.ml.model_registry import ModelRegistry

        self.setWindowTitle("Fine-tune the model — BrainSeg (research use only)")
        self.registry = registry if registry is not None else ModelRegistry()
        self.settings_type, self.help = FinetuneSettings, SETTING_HELP
        self.runner = JobRunner(self)
        self.worker = FinetuneWorker(self)
        self.result: Any = None  # a finished run waiting for Keep or Discard
        self.state = "idle"  # idle | running | cancelling | finished
        self.notices: list[tuple[str, str]] = []
        self.last_message = ""
        self._started_at = 0.0
        self._staging: Path | None = None

        self.base_label = QLabel("")
        self.base_label.setWordWrap(True)
        self.cases = CasesBox(self.runner, corrected or CorrectedCases())
        self.cases.changed.connect(self._update_buttons)
        left = QVBoxLayout()
        left.addWidget(self.base_label)
        left.addWidget(self.cases, 1)
        left.addWidget(self._settings_box())
        left.addWidget(self._run_box())

        self.plots = FinetunePlots()
        self.notice_label = QLabel("")
        self.notice_label.setWordWrap(True)
        self.notice_label.setStyleSheet(WARNING_STYLE)
        right = QVBoxLayout()
        right.addWidget(self.plots, 1)
        right.addWidget(self.notice_label)
        self.result_box = ResultBox()
        self.result_box.keep_button.clicked.connect(self.keep)
        self.result_box.discard_button.clicked.connect(self.discard)
        right.addWidget(self.result_box)

        columns = QHBoxLayout(self)
        columns.addLayout(left, 4)
        columns.addLayout(right, 6)
        self.worker.started.connect(self._on_started)
        self.worker.progress.connect(self._on_progress)
        self.worker.epoch_done.connect(self._on_epoch)
        self.worker.evaluated.connect(self._on_evaluated)
        self.worker.notice.connect(self._on_notice)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.cancelled.connect(self._on_cancelled)
        self.resize(1280, 780)
        self.show_base()
        self._update_buttons()

    # ---- building -----------------------------------------------------------------------------
    def _settings_box(self) -> QGroupBox:
        defaults = self.settings_type()
        box = QGroupBox("Settings")
        form = QFormLayout(box)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 500)
        self.epochs.setValue(defaults.epochs)
        self.learning_rate = QDoubleSpinBox()
        self.learning_rate.setDecimals(6)
        self.learning_rate.setRange(1e-6, 1e-2)
        self.learning_rate.setSingleStep(1e-5)
        self.learning_rate.setValue(defaults.lr)
        self.lambda_rec = QDoubleSpinBox()
        self.lambda_rec.setRange(0.0, 1000.0)
        self.lambda_rec.setValue(defaults.lambda_rec)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 128)
        self.batch_size.setValue(defaults.batch_size)
        self.augment = QCheckBox("random rotations, flips, intensity")
        self.augment.setChecked(defaults.augment)
        self.adversarial = QCheckBox("train against the discriminator")
        self.adversarial.setChecked(defaults.adversarial)
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.device.setCurrentText(defaults.device)
        rows = (("Epochs (at most)", self.epochs, "epochs"), ("Learning rate", self.learning_rate, "lr"),
                ("Lambda (reconstruction weight)", self.lambda_rec, "lambda_rec"),
                ("Batch size", self.batch_size, "batch_size"), ("Augmentation", self.augment, "augment"),
                ("Adversarial term", self.adversarial, "adversarial"), ("Device", self.device, "device"))
        for title, widget, name in rows:
            tip = self.help.get(name, "")
            widget.setToolTip(tip)
            form.addRow(title, widget)
            form.labelForField(widget).setToolTip(tip)
        self.settings_widgets = [widget for _, widget, _ in rows]
        self.extra: dict[str, Any] = {}  # settings not shown (tests: tiny patches, few steps)
        return box

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
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        layout.addWidget(self.progress)
        self.message = QLabel("Choose cases, then Start.")
        self.message.setWordWrap(True)
        self.message.setMinimumHeight(2 * self.message.fontMetrics().lineSpacing() + 4)
        self.time_label = QLabel("")
        self.device_label = QLabel("Device: chosen when training starts")
        self.device_label.setWordWrap(True)
        for label in (self.message, self.time_label, self.device_label):
            layout.addWidget(label)
        return box

    # ---- settings -----------------------------------------------------------------------------
    def current_settings(self) -> Any:
        """The ml FinetuneSettings from the widgets (plus `extra`)."""
        return self.settings_type(
            epochs=self.epochs.value(), lr=self.learning_rate.value(), lambda_rec=self.lambda_rec.value(),
            batch_size=self.batch_size.value(), augment=self.augment.isChecked(),
            adversarial=self.adversarial.isChecked(), device=self.device.currentText(), **self.extra)

    def set_settings(self, **values: Any) -> None:
        """Set shown settings by their FinetuneSettings name; any other name goes to `extra`."""
        widgets = {"epochs": self.epochs, "lr": self.learning_rate, "lambda_rec": self.lambda_rec,
                   "batch_size": self.batch_size}
        for name, value in values.items():
            if name in widgets:
                widgets[name].setValue(value)
            elif name in ("augment", "adversarial"):
                getattr(self, name).setChecked(bool(value))
            elif name == "device":
                self.device.setCurrentText(str(value))
            else:
                self.extra[name] = value

    def show_base(self) -> None:
        active = self.registry.active()
        kind = "the shipped model" if active.shipped else f"kept model {active.name}"
        self.base_label.setText(f"Starts from the active model: <b>{kind}</b> (version {active.version}). "
                                "The shipped model is never changed.")

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
        self.notices = []
        self.notice_label.setText("")
        self.plots.clear_run()
        self.result_box.show_result(None)
        self.progress.setValue(0)
        self.message.setStyleSheet("")
        self.message.setText(f"Starting from {base.name} ({base.version})…")
        self.time_label.setText("Time left: estimating…")
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
        if self.state == "running":  # the time left has its own line
            self.message.setText(message.split(" — about ")[0])
        elapsed = time.monotonic() - self._started_at
        if fraction > 0.02:
            self.time_label.setText(f"Time left: about {duration(elapsed * (1 - fraction) / fraction)} "
                                    f"(running for {duration(elapsed)})")

    def _on_epoch(self, event: Any) -> None:
        self.plots.add_epoch(event.epoch, event.g_loss, event.d_loss if self.adversarial.isChecked() else None,
                             event.val_dice)
        eta = getattr(event, "eta_seconds", None)
        if eta is not None and math.isfinite(eta):
            self.time_label.setText(f"Time left: about {duration(eta)} "
                                    f"(running for {duration(time.monotonic() - self._started_at)})")

    def _on_evaluated(self, stage: str, metrics: Any) -> None:
        if stage == "before":
            self.result_box.show_metrics(metrics, None)

    def _on_notice(self, kind: str, text: str) -> None:
        """Collapse and early-stop notices from the ml side, shown as they come and kept until the next run."""
        from html import escape

        if kind == "few_cases":  # the case lists say so already
            return
        self.notices.append((kind, text))
        prefix = {"collapse": "⚠ Collapse: ", "early_stop": "■ Early stop: "}
        self.notice_label.setText("<br>".join(prefix.get(k, "") + escape(t) for k, t in self.notices))

    def _on_finished(self, result: Any) -> None:
        self.state = "finished"
        self.result = result
        self.progress.setValue(1000)
        self.result_box.show_result(result)
        for warning in result.warnings:  # those not shown already (by a notice or the case lists)
            if warning not in self.cases.warnings and all(warning != text for _, text in self.notices):
                self._on_notice("info", warning)
        self.message.setText("Finished: keep the new model or discard it.")
        self.time_label.setText(f"Took {duration(result.seconds)}")
        self._update_buttons()

    def _on_failed(self, kind: str, message: str) -> None:
        self.state = "idle"
        self._drop_staging()
        self.message.setStyleSheet(ERROR_STYLE)
        self.message.setText(f"Fine-tuning failed ({kind}): {message} The active model is unchanged.")
        self.time_label.setText("")
        self._update_buttons()

    def _on_cancelled(self) -> None:
        self.state = "idle"
        self._drop_staging()
        self.message.setText("Cancelled; the active model is unchanged.")
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
