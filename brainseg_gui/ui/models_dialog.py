"""The Models dialog: the shipped model and the kept fine-tuned versions, each with its card.

Set active, roll back to the shipped model in one click, remove an unused version. The registry
(`ml.model_registry`) does the work and refuses what must not happen (removing the shipped or the
active model); the dialog shows its refusal and stays open.
"""

from __future__ import annotations

import json
import logging
from html import escape
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.labels import REGIONS

log = logging.getLogger(__name__)


def card_html(entry: Any) -> str:
    """The model card as a short HTML page: what it is, what it learnt from, how it measured."""
    card = entry.card
    training = dict(card.training or {})
    tuned = dict(training.get("finetune") or {})
    rows = [("Name", entry.name + (" (active)" if entry.active else "")), ("Version", card.version),
            ("Created", card.created or entry.kept_at), ("Architecture", card.architecture),
            ("Resolution", f"{card.resolution_mm} mm")]
    if entry.shipped:
        rows.append(("Origin", "shipped with BrainSeg (never changed)"))
    else:
        base = tuned.get("base_version") or training.get("base_model") or "?"
        rows += [("Base model", str(base)), ("Kept", entry.kept_at), ("Note", entry.note)]
    cases = training.get("cases") or []
    val = training.get("validation_cases") or []
    rows += [("Training cases", f"{len(cases)}: {', '.join(map(str, cases))}"),
             ("Validation cases", f"{len(val)}: {', '.join(map(str, val))}")]
    if training.get("device"):
        epochs = training.get("epochs_done", "?")
        rows.append(("Trained on", f"{training['device']}, {epochs} epoch{'' if epochs == 1 else 's'}"))
    settings = tuned.get("settings") or training.get("recipe")
    if settings:
        shown = {k: v for k, v in dict(settings).items()
                 if k in ("epochs", "lr", "lambda_rec", "batch_size", "augment", "adversarial", "patch_size")}
        rows.append(("Settings", json.dumps(shown)))
    html = "<table cellspacing='4'>" + "".join(
        f"<tr><td valign='top'><b>{escape(k)}</b></td><td>{escape(str(v))}</td></tr>" for k, v in rows) + "</table>"
    html += _metrics_html(tuned, card.validation)
    if card.description:
        html += f"<p style='color:#9aa0aa'>{escape(card.description)}</p>"
    return html


def _metrics_html(tuned: dict, validation: Any) -> str:
    before, after = tuned.get("before"), tuned.get("after")
    if isinstance(after, dict) and isinstance(after.get("mean"), dict):
        head = "<tr><th>Region</th><th>Dice before</th><th>Dice after</th><th>HD95 before</th><th>HD95 after</th></tr>"
        body = ""
        for region in REGIONS:
            b = (before or {}).get("mean", {}).get(region, {}) if isinstance(before, dict) else {}
            a = after["mean"].get(region, {})
            body += (f"<tr><td>{region}</td><td>{_num(b.get('dice'), 3)}</td><td>{_num(a.get('dice'), 3)}</td>"
                     f"<td>{_num(b.get('hd95'), 1)}</td><td>{_num(a.get('hd95'), 1)}</td></tr>")
        return f"<p><b>Validation, before / after fine-tuning</b></p><table cellspacing='6'>{head}{body}</table>"
    dice = dict(validation or {}).get("dice")
    if isinstance(dice, dict):
        text = ", ".join(f"{r} {_num(dice.get(r), 3)}" for r in REGIONS)
        return f"<p><b>Validation Dice</b> (model resolution): {escape(text)}</p>"
    return ""


def _num(value: Any, digits: int) -> str:
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return "–"


class ModelsDialog(QDialog):
    """Lists the models; `models_changed` fires with the new active entry after a change."""

    models_changed = Signal(object)

    def __init__(self, registry: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from brainseg_gui.ml.model_registry import ModelRegistry

        self.setWindowTitle("Models — BrainSeg")
        self.registry = registry if registry is not None else ModelRegistry()
        self.entries: list[Any] = []
        layout = QVBoxLayout(self)
        self.active_label = QLabel("")
        self.active_label.setWordWrap(True)
        layout.addWidget(self.active_label)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        self.listing = QListWidget()
        self.listing.setWordWrap(True)
        self.listing.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.listing.currentRowChanged.connect(self._show_card)
        self.card = QTextBrowser()
        splitter.addWidget(self.listing)
        splitter.addWidget(self.card)
        splitter.setSizes([380, 520])
        layout.addWidget(splitter, 1)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        buttons = QHBoxLayout()
        self.activate_button = QPushButton("Set active")
        self.activate_button.setToolTip("Segmentations (and the next fine-tune) use the active model")
        self.activate_button.clicked.connect(self.activate_selected)
        self.rollback_button = QPushButton("Roll back to the shipped model")
        self.rollback_button.setToolTip("Make the shipped model active again; kept versions stay in the list")
        self.rollback_button.clicked.connect(self.rollback)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Delete a kept version (not the shipped one, not the active one)")
        self.remove_button.clicked.connect(self.remove_selected)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        for button in (self.activate_button, self.rollback_button, self.remove_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout.addLayout(buttons)
        self.resize(940, 520)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the registry (another window may have kept or switched a model)."""
        row = max(self.listing.currentRow(), 0)
        try:
            self.entries = self.registry.entries()
        except Exception as error:  # e.g. an unreadable shipped card: say so
            log.exception("reading the models failed")
            self.entries = []
            self.message.setText(f"Could not read the models: {error}")
        self.listing.blockSignals(True)
        self.listing.clear()
        for entry in self.entries:
            item = QListWidgetItem(("● " if entry.active else "   ") + entry.describe())
            item.setToolTip(str(entry.directory))
            self.listing.addItem(item)
        self.listing.blockSignals(False)
        active = next((e for e in self.entries if e.active), None)
        if active is not None:
            self.active_label.setText(f"Active model: <b>{escape(active.name)}</b> (version {active.version})")
        if self.entries:
            self.listing.setCurrentRow(min(row, len(self.entries) - 1))
            self._show_card(self.listing.currentRow())
        self.rollback_button.setEnabled(active is not None and not active.shipped)

    def select(self, name: str) -> None:
        for row, entry in enumerate(self.entries):
            if entry.name == name:
                self.listing.setCurrentRow(row)

    @property
    def selected(self) -> Any:
        row = self.listing.currentRow()
        return self.entries[row] if 0 <= row < len(self.entries) else None

    def activate_selected(self) -> Any:
        entry = self.selected
        return None if entry is None else self._change(lambda: self.registry.activate(entry.name),
                                                      f"{entry.name} is now the active model.")

    def rollback(self) -> Any:
        return self._change(self.registry.rollback_to_shipped, "The shipped model is active again.")

    def remove_selected(self) -> None:
        entry = self.selected
        if entry is None:
            return
        try:
            self.registry.remove(entry.name)
        except (BrainSegError, OSError) as error:  # the registry says why it refused
            self.message.setText(str(error))
            return
        self.message.setText(f"Removed {entry.name}.")
        self.refresh()

    def _change(self, action: Any, done: str) -> Any:
        try:
            entry = action()
        except Exception as error:  # shown; the active model is whatever it was
            log.exception("changing the active model failed")
            self.message.setText(f"Not changed: {error}")
            return None
        self.message.setText(done)
        self.refresh()
        self.models_changed.emit(entry)
        return entry

    def _show_card(self, row: int) -> None:
        entry = self.entries[row] if 0 <= row < len(self.entries) else None
        self.card.setHtml(card_html(entry) if entry is not None else "")
        self.activate_button.setEnabled(entry is not None and not entry.active)
        self.remove_button.setEnabled(entry is not None and not entry.active and not entry.shipped)
