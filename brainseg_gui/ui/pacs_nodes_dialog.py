"""File > PACS nodes…: keep the PACS nodes in the viewer, as `brainseg pacs nodes add|remove|test|list` does.

The list shows each node in words (`PacsNode.describe`, never a secret); selecting one loads it into the
form to edit it, "New" empties the form to add one. DICOMweb nodes have a base URL, authentication
(none, basic user and password, bearer token) and a CA file; DIMSE nodes an AE title, host, port and our
AE title. The node validates itself (core/pacs_nodes.py), so a bad field is one message here and nothing
is saved. The password or token field starts empty: left empty while editing, the stored secret stays.
It is cleared once saved, so no secret is left in any widget; where secrets live is said in a line.

"Test connection" runs the node's echo in a worker (ui/workers.py); the dialog stays usable meanwhile.
Tests drive it through `select`, `new`, `save`, `ask_remove`, `test_connection`, `busy` and `error`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from brainseg_gui.app import pacs_tasks as work
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.pacs_nodes import AUTHS, NodeStore, PacsError, PacsNode
from brainseg_gui.core.pacs_secrets import describe_store
from brainseg_gui.ui.pacs_widgets import ERROR_COLOUR, describe_error, push_button
from brainseg_gui.ui.workers import Job, JobRunner

KIND_TITLES = {"dicomweb": "DICOMweb", "dimse": "DIMSE"}
DEFAULT_DIMSE_PORT = 104
OK_COLOUR = "#2a2"
#: The form of a new node: DICOMweb without authentication; a DIMSE node speaks as BRAINSEG.
BLANK: dict[str, Any] = {"name": "", "kind": "dicomweb", "url": "", "auth": "none", "username": "", "ca_bundle": "",
                         "ae_title": "", "host": "", "port": DEFAULT_DIMSE_PORT, "our_ae_title": "BRAINSEG"}


class PacsNodesDialog(QDialog):
    """The node list and a form to add, edit, remove or test one; `nodes_changed` after every change."""

    nodes_changed = Signal()

    def __init__(self, runner: JobRunner, parent: QWidget | None = None, store: NodeStore | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("pacsNodesDialog")
        self.setWindowTitle("PACS nodes")
        self.runner = runner
        self.store = store or NodeStore()
        self.nodes: list[PacsNode] = []
        self.editing: str | None = None  # the name of the stored node in the form (None: a new one)
        self._job: Job | None = None
        self.store_line = QLabel()
        self.store_line.setWordWrap(True)
        self.store_line.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.listing = QListWidget()
        self.listing.setMinimumWidth(340)
        self.listing.currentRowChanged.connect(self._row_changed)
        body = QHBoxLayout()
        body.addWidget(self.listing, 3)
        body.addLayout(self._build_form(), 2)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._is_error = False
        layout = QVBoxLayout(self)
        layout.addWidget(self.store_line)
        layout.addLayout(body, 1)
        layout.addWidget(self.message)
        layout.addLayout(self._build_buttons())
        self.resize(1000, 440)
        self.refresh()

    # ---- building --------------------------------------------------------------------------------
    def _build_form(self) -> QVBoxLayout:
        """One form (its labels aligned): name and kind, then the rows of that kind only (`_sync`)."""
        self.form = QFormLayout()
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("letters, digits, '.', '_' or '-'")
        self.kind_combo = QComboBox()
        for kind, title in KIND_TITLES.items():
            self.kind_combo.addItem(title, kind)
        self.kind_combo.currentIndexChanged.connect(lambda _index: self._sync())
        self.url_edit = QLineEdit()
        self.url_edit.setPlaceholderText("https://pacs.example.org/dicom-web")
        self.auth_combo = QComboBox()
        self.auth_combo.addItems(list(AUTHS))
        self.auth_combo.currentIndexChanged.connect(lambda _index: self._sync())
        self.user_edit = QLineEdit()
        self.secret_edit = QLineEdit()
        self.secret_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.secret_label = QLabel("Password")
        self.ca_edit = QLineEdit()
        self.ca_edit.setPlaceholderText("empty: the system's CAs")
        self.ca_row = QHBoxLayout()
        self.ca_row.addWidget(self.ca_edit, 1)
        self.ca_row.addWidget(push_button("Browse…", self._browse_ca))
        self.ae_edit = QLineEdit()
        self.ae_edit.setPlaceholderText("the PACS's AE title, e.g. ORTHANC")
        self.host_edit = QLineEdit()
        self.port_spin = QSpinBox()
        self.port_spin.setRange(1, 65535)
        self.port_spin.setValue(DEFAULT_DIMSE_PORT)
        self.our_ae_edit = QLineEdit("BRAINSEG")
        for label, field in (("Name", self.name_edit), ("Kind", self.kind_combo), ("URL", self.url_edit),
                             ("Authentication", self.auth_combo), ("User", self.user_edit),
                             (self.secret_label, self.secret_edit), ("CA file (PEM)", self.ca_row),
                             ("AE title", self.ae_edit), ("Host", self.host_edit), ("Port", self.port_spin),
                             ("Our AE title", self.our_ae_edit)):
            self.form.addRow(label, field)
        column = QVBoxLayout()
        column.addLayout(self.form)
        column.addStretch(1)
        return column

    def _build_buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.new_button = push_button("New", self.new)
        self.save_button = push_button("Save", self.save)
        self.remove_button = push_button("Remove…", self.ask_remove)
        self.test_button = push_button("Test connection", self.test_connection)
        close = push_button("Close", self.accept)
        for button in (self.new_button, self.save_button, self.remove_button, self.test_button):
            row.addWidget(button)
        row.addStretch(1)
        row.addWidget(close)
        return row

    def _browse_ca(self) -> None:
        chosen, _ = QFileDialog.getOpenFileName(self, "The CA certificate that signed the PACS's certificate",
                                                self.ca_edit.text(), "PEM certificates (*.pem *.crt);;All files (*)")
        if chosen:
            self.ca_edit.setText(chosen)

    # ---- the list --------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Reread the nodes (a terminal may have changed them) and where secrets are kept."""
        self.store_line.setText(f"Nodes file: {self.store.path}\nPasswords and tokens: {describe_store(self.store.root)}")
        try:
            self.nodes = self.store.nodes()
        except PacsError as error:
            self.nodes = []
            self._show(describe_error(error), error=True)
        self.listing.blockSignals(True)
        self.listing.clear()
        for node in self.nodes:  # in words, never with a secret; the tooltip for a line too long to show
            self.listing.addItem(node.describe())
            self.listing.item(self.listing.count() - 1).setToolTip(node.describe())
        names = [node.name for node in self.nodes]
        self.listing.setCurrentRow(names.index(self.editing) if self.editing in names else -1)
        self.listing.blockSignals(False)
        # the form shows the node as stored now (an empty secret field), or a new one when it is gone
        self._load(self.nodes[names.index(self.editing)] if self.editing in names else None)

    def select(self, name: str) -> None:
        """Load a stored node into the form, as a click on its line does."""
        names = [node.name for node in self.nodes]
        if name not in names:
            raise KeyError(f"no PACS node {name!r} in the dialog; it lists {names}")
        self.listing.setCurrentRow(names.index(name))

    def _row_changed(self, row: int) -> None:
        if 0 <= row < len(self.nodes):
            self._load(self.nodes[row])
        else:
            self.new()

    def new(self) -> None:
        """An empty form for a new node (DICOMweb, no authentication)."""
        self.listing.blockSignals(True)
        self.listing.setCurrentRow(-1)
        self.listing.blockSignals(False)
        self._load(None)

    def _load(self, node: PacsNode | None) -> None:
        """Fill the form from a stored `node` (None: blank, for a new one); the secret field starts empty."""
        values = {**BLANK, **(dataclasses.asdict(node) if node is not None else {})}
        self.editing = node.name if node is not None else None
        self.name_edit.setText(values["name"])
        self.name_edit.setReadOnly(node is not None)  # another name is another node: "New"
        self.kind_combo.setCurrentIndex(max(self.kind_combo.findData(values["kind"]), 0))
        self.url_edit.setText(values["url"])
        self.auth_combo.setCurrentText(values["auth"])
        self.user_edit.setText(values["username"])
        self.secret_edit.clear()
        self.ca_edit.setText(values["ca_bundle"])
        self.ae_edit.setText(values["ae_title"])
        self.host_edit.setText(values["host"])
        self.port_spin.setValue(values["port"] or DEFAULT_DIMSE_PORT)
        self.our_ae_edit.setText(values["our_ae_title"] or "BRAINSEG")
        self._sync()

    # ---- actions ---------------------------------------------------------------------------------
    def form_node(self) -> PacsNode:
        """The node the form describes; PacsError (from the node itself) when a field is wrong."""
        name, kind = self.name_edit.text().strip(), self.kind_combo.currentData()
        if kind == "dimse":
            return PacsNode(name, kind, ae_title=self.ae_edit.text().strip(), host=self.host_edit.text().strip(),
                            port=self.port_spin.value(), our_ae_title=self.our_ae_edit.text().strip())
        auth = self.auth_combo.currentText()
        ca = self.ca_edit.text().strip()
        return PacsNode(name, kind, url=self.url_edit.text().strip(), auth=auth,
                        username=self.user_edit.text().strip() if auth == "basic" else "",
                        ca_bundle=str(Path(ca).expanduser().resolve()) if ca else "")

    def _typed_secret(self, node: PacsNode) -> str | None:
        """The password or token typed (None: keep the stored one, allowed only while editing that node)."""
        typed = self.secret_edit.text() if node.needs_secret else ""
        if node.needs_secret and not typed and self.editing != node.name:
            raise PacsError(f"node {node.name} uses {node.auth} authentication: give its "
                            + ("password" if node.auth == "basic" else "token"))
        return typed or None

    def save(self) -> PacsNode | None:
        """Add the form's node, or replace the one being edited; a fault is shown and nothing is saved."""
        try:
            node = self.form_node()
            self.store.add(node, secret=self._typed_secret(node), replace=self.editing == node.name)
        except BrainSegError as error:
            self._show(describe_error(error), error=True)
            return None
        self.editing = node.name
        self.refresh()  # reloads the form from the store: the secret field is empty again
        self._show(f"Saved {node.describe()}")
        self.nodes_changed.emit()
        return node

    def ask_remove(self) -> QMessageBox | None:
        """Ask before removing the node being edited (with its secret); returns the question, shown
        window-modal without blocking (None: no stored node selected)."""
        name = self.editing
        if name is None:
            return None
        box = QMessageBox(QMessageBox.Icon.Question, "Remove the PACS node?",
                          f"Remove the PACS node {name} and its stored password or token?", parent=self)
        remove = box.addButton("Remove", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        remove.clicked.connect(lambda _checked=False: self.remove(name))
        box.open()
        return box

    def remove(self, name: str) -> None:
        """Remove node `name` and its secret at once (the question was asked by `ask_remove`)."""
        try:
            self.store.remove(name)
        except BrainSegError as error:
            self._show(describe_error(error), error=True)
            return
        self.editing = None
        self.refresh()
        self._show(f"Removed {name}.")
        self.nodes_changed.emit()

    def test_connection(self) -> Job | None:
        """Echo the form's node in a worker (None: a field is wrong, shown); "ok: ..." or the fault."""
        try:
            node = self.form_node()
            secret = self._typed_secret(node)
        except BrainSegError as error:
            self._show(describe_error(error), error=True)
            return None
        self.cancel()
        store = self.store
        self._show(f"Testing {node.name}…")
        job = self.runner.start(
            f"Testing PACS node {node.name}", lambda **kw: work.echo(store, node, secret, **kw),
            on_result=lambda text: self._show(text) if self._current(job) else None,
            on_error=lambda error: self._show(describe_error(error), error=True) if self._current(job) else None,
            on_finished=lambda: self._finished(job))
        self._job = job
        self._sync()
        return job

    def cancel(self) -> None:
        """Forget the running test (its answer is dropped; an echo is short and cannot be interrupted)."""
        if self._job is not None:
            self._job.cancel()
            self._job = None
            self._sync()

    def done(self, result: int) -> None:
        """Closing drops a running test and the last message: reopened, the dialog starts afresh."""
        self.cancel()
        self._show("")
        super().done(result)

    @property
    def busy(self) -> bool:
        """Whether a connection test is running."""
        return self._job is not None

    @property
    def error(self) -> str:
        """The fault shown ('' when none)."""
        return self.message.text() if self._is_error else ""

    # ---- plumbing --------------------------------------------------------------------------------
    def _current(self, job: Job) -> bool:
        return job is self._job and not job.token.cancelled

    def _finished(self, job: Job) -> None:
        if job is self._job:
            self._job = None
            self._sync()

    def _show(self, text: str, *, error: bool = False) -> None:
        """One line under the form: red for a fault, green for a passed test."""
        self._is_error = error
        self.message.setText(text)
        colour = ERROR_COLOUR if error else OK_COLOUR if text.startswith("ok:") else "palette(text)"
        self.message.setStyleSheet(f"color: {colour}")

    def _sync(self) -> None:
        """Show the fields of the chosen kind; user and secret only where the authentication needs them."""
        web = self.kind_combo.currentData() == "dicomweb"
        auth = self.auth_combo.currentText()
        for row, shown in ((self.url_edit, web), (self.auth_combo, web), (self.user_edit, web and auth == "basic"),
                           (self.secret_edit, web and auth != "none"), (self.ca_row, web), (self.ae_edit, not web),
                           (self.host_edit, not web), (self.port_spin, not web), (self.our_ae_edit, not web)):
            self.form.setRowVisible(row, shown)
        what = "Password" if auth == "basic" else "Token"
        self.secret_label.setText(what)
        self.secret_edit.setPlaceholderText(f"empty: keep the stored {what.lower()}" if self.editing else "")
        self.remove_button.setEnabled(self.editing is not None)
        self.test_button.setEnabled(not self.busy)
        self.test_button.setText("Testing…" if self.busy else "Test connection")


def show_pacs_nodes_dialog(parent: QWidget, runner: JobRunner, store: NodeStore | None = None,
                           on_change: Callable[[], Any] | None = None) -> PacsNodesDialog:
    """The node settings of `parent` (one per parent), reread and opened window-modal without blocking;
    `on_change` is called after every change of the list."""
    dialog = parent.findChild(PacsNodesDialog, "pacsNodesDialog", Qt.FindChildOption.FindDirectChildrenOnly)
    if dialog is None:
        dialog = PacsNodesDialog(runner, parent, store)
        if on_change is not None:
            dialog.nodes_changed.connect(on_change)
    dialog.refresh()
    dialog.open()
    return dialog
