"""The fine-tune's settings box: the knobs a user may turn, each with its tooltip from ml `SETTING_HELP`.

Settings not shown (patch size, steps per epoch, patience...) live in `extra`, so tests and the
walkthrough can make a run take seconds; `current()` builds the ml `FinetuneSettings` from both.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QSpinBox, QWidget

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "off")


class SettingsBox(QGroupBox):
    """Epochs, learning rate, lambda, batch size, augmentation, adversarial term, device, precision."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Settings", parent)
        from brainseg_gui.ml.finetune import SETTING_HELP, FinetuneSettings

        self.settings_type = FinetuneSettings
        defaults = FinetuneSettings()
        form = QFormLayout(self)
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
        self.precision = QComboBox()
        self.precision.addItems(PRECISIONS)
        self.precision.setCurrentText(defaults.amp)
        rows = (("Epochs (at most)", self.epochs, "epochs"), ("Learning rate", self.learning_rate, "lr"),
                ("Lambda (reconstruction weight)", self.lambda_rec, "lambda_rec"),
                ("Batch size", self.batch_size, "batch_size"), ("Augmentation", self.augment, "augment"),
                ("Adversarial term", self.adversarial, "adversarial"), ("Device", self.device, "device"),
                ("Precision", self.precision, "amp"))
        for title, widget, name in rows:
            tip = SETTING_HELP.get(name, "")
            widget.setToolTip(tip)
            form.addRow(title, widget)
            form.labelForField(widget).setToolTip(tip)
        self.widgets: list[QWidget] = [widget for _, widget, _ in rows]
        self.extra: dict[str, Any] = {}  # settings not shown (tests: tiny patches, few steps)

    def current(self) -> Any:
        """The ml FinetuneSettings from the widgets (plus `extra`)."""
        return self.settings_type(
            epochs=self.epochs.value(), lr=self.learning_rate.value(), lambda_rec=self.lambda_rec.value(),
            batch_size=self.batch_size.value(), augment=self.augment.isChecked(),
            adversarial=self.adversarial.isChecked(), device=self.device.currentText(),
            amp=self.precision.currentText(), **self.extra)

    def set(self, **values: Any) -> None:
        """Set shown settings by their FinetuneSettings name; any other name goes to `extra`."""
        spins = {"epochs": self.epochs, "lr": self.learning_rate, "lambda_rec": self.lambda_rec,
                 "batch_size": self.batch_size}
        for name, value in values.items():
            if name in spins:
                spins[name].setValue(value)
            elif name in ("augment", "adversarial"):
                getattr(self, name).setChecked(bool(value))
            elif name == "device":
                self.device.setCurrentText(str(value))
            elif name == "amp":
                self.precision.setCurrentText(str(value))
            else:
                self.extra[name] = value

    def patience(self) -> int:
        """Early stopping's patience for the next run (0: it runs every epoch)."""
        return int(self.extra.get("patience", self.settings_type().patience))
