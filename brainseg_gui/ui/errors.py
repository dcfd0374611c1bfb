"""The one route by which the GUI tells the user that something failed: a dialog that does not block.

Every controller and worker result reports here (never its own QMessageBox), so a failure always
looks the same, the app stays usable while the box is open, and tests read `last`.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QMessageBox, QWidget


class ErrorReporter(QObject):
    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.parent_widget = parent
        self.last: str | None = None  # the latest message (tests, and the window's `last_error`)

    def show(self, title: str, message: str) -> QMessageBox:
        """A window-modal box opened without blocking; it deletes itself when closed."""
        self.last = message
        box = QMessageBox(QMessageBox.Icon.Critical, title, message, QMessageBox.StandardButton.Ok,
                          self.parent_widget)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        return box
