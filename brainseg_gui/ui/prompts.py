"""The questions the editor asks: restore a crashed session's edits, keep or drop unsaved edits,
overwrite an earlier export. Each box is built by a function tests can inspect; `Prompter` shows
them modally and returns the answer (tests swap in one that answers by itself)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from PySide6.QtWidgets import QMessageBox, QWidget


class Unsaved(str, Enum):
    EXPORT = "export"  # export first, then go on
    DISCARD = "discard"  # go on and drop the edits
    CANCEL = "cancel"  # stay


def restore_box(parent: QWidget | None, description: str) -> QMessageBox:
    box = QMessageBox(QMessageBox.Icon.Question, "Restore unsaved edits?",
                      "BrainSeg stopped while the mask of this study was being edited.", parent=parent)
    box.setInformativeText(f"Found {description}. Restore them?")
    box.addButton("Restore", QMessageBox.ButtonRole.AcceptRole)
    box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole)
    box.setDefaultButton(box.buttons()[0])
    return box


def unsaved_box(parent: QWidget | None, action: str) -> QMessageBox:
    box = QMessageBox(QMessageBox.Icon.Warning, "Unsaved edits",
                      "The corrected mask has edits that were not exported.", parent=parent)
    box.setInformativeText(f"Export the mask before you {action}?")
    box.addButton("Export…", QMessageBox.ButtonRole.AcceptRole)
    box.addButton("Discard edits", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(box.buttons()[0])
    return box


def overwrite_box(parent: QWidget | None, path: Path) -> QMessageBox:
    box = QMessageBox(QMessageBox.Icon.Warning, "Overwrite the export?",
                      f"{path.name} exists already in {path.parent}.", parent=parent)
    box.setInformativeText("Replace it (and its provenance sidecar)?")
    box.addButton("Replace", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    return box


class Prompter:
    """Asks the user (modal dialogs). Every method returns the answer as a plain value."""

    def __init__(self, parent: QWidget | None = None) -> None:
        self.parent = parent

    def restore(self, description: str) -> bool:
        box = restore_box(self.parent, description)
        box.exec()
        return box.buttonRole(box.clickedButton()) == QMessageBox.ButtonRole.AcceptRole

    def unsaved(self, action: str) -> Unsaved:
        box = unsaved_box(self.parent, action)
        box.exec()
        clicked = box.clickedButton()
        role = box.buttonRole(clicked) if clicked is not None else QMessageBox.ButtonRole.RejectRole
        if role == QMessageBox.ButtonRole.AcceptRole:
            return Unsaved.EXPORT
        if role == QMessageBox.ButtonRole.DestructiveRole:
            return Unsaved.DISCARD
        return Unsaved.CANCEL

    def overwrite(self, path: Path) -> bool:
        box = overwrite_box(self.parent, path)
        box.exec()
        clicked = box.clickedButton()
        return clicked is not None and box.buttonRole(clicked) == QMessageBox.ButtonRole.DestructiveRole
