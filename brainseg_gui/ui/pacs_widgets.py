"""What the PACS dialogs share (Open from PACS, Send to PACS, PACS nodes): the node chooser, their
buttons, and how a fault is shown (one red line, the dialog staying usable)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QLabel, QPushButton, QWidget

from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.pacs_nodes import NodeStore, PacsError, PacsNode

#: The colour of a fault's line.
ERROR_COLOUR = "#d33"


def describe_error(error: BaseException) -> str:
    """One line for a fault: a BrainSeg error says what failed itself; anything else is named."""
    return str(error) if isinstance(error, BrainSegError) else f"unexpected error ({type(error).__name__}): {error}"


def push_button(text: str, slot: Callable[[], Any]) -> QPushButton:
    """A button that is never the dialog's default: Enter in a field never sends, retrieves or closes."""
    button = QPushButton(text)
    button.setAutoDefault(False)
    button.clicked.connect(lambda _checked=False: slot())
    return button


def show_fault(message: QLabel, status: QLabel, error: BaseException | None) -> None:
    """The fault in `message` (None: clear it), and the progress line `status` emptied beside it."""
    text = "" if error is None else describe_error(error)
    message.setText(text)
    message.setVisible(bool(text))
    if text:
        status.setText("")


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


class NodeChoice:
    """The node part of a dialog that works on one chosen node (Open from PACS, Send to PACS): the
    list reread from the store, the 'no node yet' line, the chosen node. The dialog provides
    `store`, `node_combo`, `no_nodes`, `_show_error(error)` and `_node_changed()`."""

    store: NodeStore
    node_combo: NodeCombo
    no_nodes: QLabel
    _show_error: Callable[[BaseException | None], None]
    _node_changed: Callable[[], None]

    def refresh_nodes(self) -> None:
        """Reread the node list (a node added meanwhile, even in a terminal, appears), keeping the
        chosen one."""
        try:
            nodes = self.store.nodes()
        except PacsError as error:
            nodes = []
            self._show_error(error)
        self.node_combo.fill(nodes)
        self.no_nodes.setVisible(not self.nodes)
        self._node_changed()

    @property
    def nodes(self) -> list[PacsNode]:
        return self.node_combo.nodes

    @property
    def node(self) -> PacsNode | None:
        """The chosen node (None when the user has none)."""
        return self.node_combo.node

    def select_node(self, name: str) -> None:
        """Choose a node by name, as the combo does (tests and scripts)."""
        self.node_combo.select(name)
