"""Help > Keyboard shortcuts: every menu action that has a shortcut (read from the menus themselves,
so the list cannot go stale) and the mouse gestures of the slice views."""

from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QHeaderView,
    QMenu,
    QMenuBar,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

MOUSE = (
    ("Slice views", "Left click / drag", "Move the crosshair (Navigate tool), or edit with the chosen tool"),
    ("Slice views", "Ctrl + left click", "Move the crosshair while an edit tool is chosen"),
    ("Slice views", "Click tool: left click", "Add the chosen region where the mask misses it (AI)"),
    ("Slice views", "Click tool: right click", "Remove a wrong region of the chosen kind (AI)"),
    ("Slice views", "Click tool: left drag", "Re-segment the chosen region inside the box (AI)"),
    ("Slice views", "Wheel, Page Up/Down, arrows", "Step through slices"),
    ("Slice views", "Right drag", "Window / level"),
    ("Slice views", "Middle drag", "Pan"),
    ("Slice views", "Ctrl + wheel", "Zoom"),
)


def shortcut_rows(bar: QMenuBar) -> list[tuple[str, str, str]]:
    """(menu, shortcut, action) for every action with a shortcut, in menu order."""
    rows: list[tuple[str, str, str]] = []

    def visit(menu: QMenu, path: str) -> None:
        for action in menu.actions():
            if action.menu() is not None:
                visit(action.menu(), f"{path} > {action.menu().title().replace('&', '')}")
            elif not action.isSeparator():
                keys = [k.toString(QKeySequence.SequenceFormat.NativeText) for k in action.shortcuts()]
                if keys:
                    rows.append((path, ", ".join(keys), action.text().replace("&", "").rstrip("…")))

    for action in bar.actions():
        if isinstance(action, QAction) and action.menu() is not None:
            visit(action.menu(), action.menu().title().replace("&", ""))
    return rows


class ShortcutsDialog(QDialog):
    def __init__(self, bar: QMenuBar, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        rows = shortcut_rows(bar) + list(MOUSE)
        self.table = QTableWidget(len(rows), 3)
        self.table.setHorizontalHeaderLabels(["Where", "Keys", "Does"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for row, values in enumerate(rows):
            for column, text in enumerate(values):
                self.table.setItem(row, column, QTableWidgetItem(text))
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        self.resize(620, 640)

    def texts(self) -> list[tuple[str, str, str]]:
        return [tuple(self.table.item(r, c).text() for c in range(3))  # type: ignore[misc]
                for r in range(self.table.rowCount())]
