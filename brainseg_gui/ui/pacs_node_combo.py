"""The PACS node chooser of the Open-from-PACS and Send-to-PACS dialogs (one widget, not two copies)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QWidget

from brainseg_gui.core.pacs_nodes import PacsNode


class NodeCombo(QComboBox):
    """The nodes by name, each described in its tooltip; the chosen one stays chosen when reread."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.nodes: list[PacsNode] = []

    def fill(self, nodes: list[PacsNode]) -> None:
        """Show `nodes`, keeping the chosen name where it is still there (one change signal at most)."""
        chosen = self.currentText()
        self.nodes = list(nodes)
        self.blockSignals(True)
        self.clear()
        for node in self.nodes:
            self.addItem(node.name)
            self.setItemData(self.count() - 1, node.describe(), Qt.ItemDataRole.ToolTipRole)
        self.setCurrentIndex(max(self.findText(chosen), 0) if self.nodes else -1)
        self.blockSignals(False)

    @property
    def node(self) -> PacsNode | None:
        index = self.currentIndex()
        return self.nodes[index] if 0 <= index < len(self.nodes) else None

    def select(self, name: str) -> None:
        """Choose a node by name, as a click does (tests and scripts)."""
        index = self.findText(name)
        if index < 0:
            raise KeyError(f"no PACS node {name!r} in the dialog; it lists {[n.name for n in self.nodes]}")
        self.setCurrentIndex(index)
