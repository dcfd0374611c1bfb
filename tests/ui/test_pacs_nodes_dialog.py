"""File > PACS nodes… (ui/pacs_nodes_dialog.py) driven through its form: add DICOMweb and DIMSE nodes,
refuse bad input with the node's own message, test connections against a real Orthanc, edit a node
keeping its password, remove one; and reach it from the Open from PACS dialog and the File menu.

A secret typed into the form must end in the 0600 secrets file only: never in pacs_nodes.json, a
widget's text or tooltip, or a log record. Each test has its own settings folder and secrets file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton, QComboBox, QLabel, QLineEdit, QListWidget, QMessageBox, QWidget

from brainseg_gui.core.pacs_nodes import NodeStore, PacsError, PacsNode
from brainseg_gui.core.pacs_secrets import SECRETS_FILE
from brainseg_gui.ui.pacs_dialog import PacsDialog
from brainseg_gui.ui.pacs_nodes_dialog import PacsNodesDialog
from brainseg_gui.ui.workers import JobRunner
from tests.pacs_orthanc import AE_TITLE, PASSWORD, USER, Orthanc, free_port

TIMEOUT_MS = 60_000
SECRET = "s3cret-Typed-1n-The-Form"
SCREENSHOT = Path("/tmp/pacs_nodes_dialog.png")


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, empty settings folder with secrets in its 0600 file (no system keyring)."""
    folder = tmp_path / "config"
    monkeypatch.setenv("BRAINSEG_CONFIG_DIR", str(folder))
    monkeypatch.setenv("BRAINSEG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BRAINSEG_SECRETS", "file")
    return folder


def open_dialog(qtbot) -> PacsNodesDialog:
    runner = JobRunner()
    dialog = PacsNodesDialog(runner)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


@pytest.fixture
def dialog(qtbot, config: Path) -> PacsNodesDialog:
    dialog = open_dialog(qtbot)
    yield dialog
    dialog.runner.wait()


def fill_dicomweb(dialog: PacsNodesDialog, name: str, url: str, auth: str = "none", user: str = "",
                  secret: str = "") -> None:
    dialog.new_button.click()
    dialog.name_edit.setText(name)
    dialog.kind_combo.setCurrentIndex(dialog.kind_combo.findData("dicomweb"))
    dialog.url_edit.setText(url)
    dialog.auth_combo.setCurrentText(auth)
    dialog.user_edit.setText(user)
    dialog.secret_edit.setText(secret)


def fill_dimse(dialog: PacsNodesDialog, name: str, ae_title: str, host: str, port: int) -> None:
    dialog.new_button.click()
    dialog.name_edit.setText(name)
    dialog.kind_combo.setCurrentIndex(dialog.kind_combo.findData("dimse"))
    dialog.ae_edit.setText(ae_title)
    dialog.host_edit.setText(host)
    dialog.port_spin.setValue(port)


def save(qtbot, dialog: PacsNodesDialog) -> None:
    with qtbot.waitSignal(dialog.nodes_changed, timeout=1000):
        qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    assert not dialog.error


def try_connection(qtbot, dialog: PacsNodesDialog) -> str:
    """Click Test connection; the dialog stays usable while the worker runs; returns what it says."""
    dialog.test_button.click()
    assert dialog.busy and not dialog.test_button.isEnabled()
    assert all(w.isEnabled() for w in (dialog.listing, dialog.save_button, dialog.new_button, dialog.name_edit))
    qtbot.waitUntil(lambda: not dialog.busy, timeout=TIMEOUT_MS)
    assert dialog.test_button.isEnabled()
    return dialog.message.text()


def widget_texts(dialog: QWidget) -> list[str]:
    """Every text the dialog and its children show or hold: labels, fields, buttons, list and combo
    entries, tooltips, placeholders, titles."""
    texts = [dialog.windowTitle(), dialog.toolTip()]
    for widget in dialog.findChildren(QWidget):
        texts += [widget.toolTip(), widget.statusTip(), widget.whatsThis(), widget.accessibleName()]
        if isinstance(widget, (QLabel, QLineEdit, QAbstractButton)):
            texts.append(widget.text())
        if isinstance(widget, QLineEdit):
            texts.append(widget.placeholderText())
        if isinstance(widget, QListWidget):
            for row in range(widget.count()):
                texts += [widget.item(row).text(), widget.item(row).toolTip()]
        if isinstance(widget, QComboBox):
            texts += [widget.itemText(i) for i in range(widget.count())]
            texts += [str(widget.itemData(i, Qt.ItemDataRole.ToolTipRole)) for i in range(widget.count())]
    return texts


def test_a_dicomweb_node_with_basic_auth_keeps_its_password_apart(qtbot, dialog: PacsNodesDialog, config: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert "pacs_secrets.json (readable by you only)" in dialog.store_line.text()
    fill_dicomweb(dialog, "hospital", "https://pacs.example.org/dicom-web", "basic", "doctor", SECRET)
    assert dialog.secret_edit.echoMode() == QLineEdit.EchoMode.Password
    assert dialog.user_edit.isVisible() and dialog.secret_edit.isVisible() and dialog.secret_label.text() == "Password"
    assert not dialog.ae_edit.isVisible() and not dialog.port_spin.isVisible()
    save(qtbot, dialog)

    node = NodeStore().get("hospital")
    assert (node.kind, node.url, node.auth, node.username) == ("dicomweb", "https://pacs.example.org/dicom-web",
                                                               "basic", "doctor")
    assert NodeStore().secret(node) == SECRET
    secrets = config / SECRETS_FILE
    assert secrets.stat().st_mode & 0o777 == 0o600 and json.loads(secrets.read_text()) == {"hospital": SECRET}
    assert SECRET not in (config / "pacs_nodes.json").read_text()
    assert dialog.listing.count() == 1 and dialog.listing.item(0).text() == node.describe()
    assert dialog.editing == "hospital" and dialog.secret_edit.text() == ""  # cleared once saved
    assert "Saved hospital" in dialog.message.text()
    assert not [text for text in widget_texts(dialog) if SECRET in text]
    assert SECRET not in caplog.text


def test_a_dimse_node_is_added_with_the_dimse_fields(qtbot, dialog: PacsNodesDialog) -> None:
    dialog.new_button.click()
    assert dialog.our_ae_edit.text() == "BRAINSEG"
    assert (dialog.port_spin.minimum(), dialog.port_spin.maximum()) == (1, 65535)
    fill_dimse(dialog, "archive", "ARCHIVE", "pacs.example.org", 11112)
    assert dialog.ae_edit.isVisible() and dialog.host_edit.isVisible() and dialog.port_spin.isVisible()
    assert not dialog.url_edit.isVisible() and not dialog.secret_edit.isVisible()
    save(qtbot, dialog)
    assert NodeStore().nodes() == [PacsNode("archive", "dimse", ae_title="ARCHIVE", host="pacs.example.org",
                                            port=11112, our_ae_title="BRAINSEG")]
    assert dialog.listing.item(0).text() == "archive: DIMSE ARCHIVE@pacs.example.org:11112 (we are BRAINSEG)"


@pytest.mark.parametrize("form, node", [
    (lambda d: fill_dicomweb(d, "ftp", "ftp://x"), lambda: PacsNode("ftp", "dicomweb", url="ftp://x")),
    (lambda d: fill_dimse(d, "long", "A" * 17, "pacs", 104),
     lambda: PacsNode("long", "dimse", ae_title="A" * 17, host="pacs", port=104)),
], ids=["bad-url", "long-ae-title"])
def test_a_bad_field_shows_the_nodes_own_message_and_saves_nothing(qtbot, dialog: PacsNodesDialog, config: Path,
                                                                   form, node) -> None:
    with pytest.raises(PacsError) as expected:
        node()
    changed: list[bool] = []
    dialog.nodes_changed.connect(lambda: changed.append(True))
    form(dialog)
    dialog.save_button.click()
    assert dialog.error == str(expected.value) and dialog.message.isVisible()
    assert not changed and dialog.listing.count() == 0 and not (config / "pacs_nodes.json").exists()
    assert dialog.test_connection() is None and dialog.error == str(expected.value)  # not tested either


def test_basic_auth_without_a_password_saves_nothing(qtbot, dialog: PacsNodesDialog, config: Path) -> None:
    fill_dicomweb(dialog, "nopass", "http://pacs.example.org/dicom-web", "basic", "doctor")
    assert dialog.save() is None
    assert dialog.error == "node nopass uses basic authentication: give its password"
    assert NodeStore().nodes() == [] and not (config / SECRETS_FILE).exists()
    fill_dicomweb(dialog, "nouser", "http://pacs.example.org/dicom-web", "basic", "", SECRET)
    assert dialog.save() is None and "needs a user name" in dialog.error and NodeStore().nodes() == []
    assert not (config / SECRETS_FILE).exists()


def test_test_connection_says_ok_on_the_orthanc_nodes(qtbot, pacs_nodes: NodeStore) -> None:
    dialog = open_dialog(qtbot)
    assert [dialog.listing.item(row).text() for row in range(dialog.listing.count())] == [
        node.describe() for node in pacs_nodes.nodes()]
    for name, says in (("dimse", "ORTHANC@127.0.0.1"), ("web", "web answers QIDO-RS")):
        dialog.select(name)
        answer = try_connection(qtbot, dialog)
        assert answer.startswith(f"ok: {says}") and not dialog.error, answer
    assert dialog.secret_edit.isVisible() and dialog.secret_edit.text() == ""  # the stored one was used
    qtbot.wait(50)
    assert dialog.grab().save(str(SCREENSHOT))
    dialog.runner.wait()


@pytest.mark.parametrize("kind", ["dicomweb", "dimse"])
def test_test_connection_at_a_closed_port_says_refused(qtbot, dialog: PacsNodesDialog, kind: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    if kind == "dicomweb":
        fill_dicomweb(dialog, "closed", f"http://127.0.0.1:{port}/dicom-web", "basic", "doctor", SECRET)
    else:
        fill_dimse(dialog, "closed", AE_TITLE, "127.0.0.1", port)
    answer = try_connection(qtbot, dialog)
    assert answer.startswith("refused:") and dialog.error == answer and "\n" not in answer, answer
    assert NodeStore().nodes() == []  # testing saves nothing
    assert SECRET not in caplog.text
    typed_into = [dialog.secret_edit] if kind == "dicomweb" else []  # the password field only, as typed
    assert [w for w in dialog.findChildren(QLineEdit) if SECRET in w.text()] == typed_into


def test_editing_a_node_keeps_its_password_when_left_empty(qtbot, dialog: PacsNodesDialog, orthanc: Orthanc) -> None:
    fill_dicomweb(dialog, "typo", orthanc.dicomweb_url, "basic", "nobody", PASSWORD)
    assert try_connection(qtbot, dialog).startswith("auth:")  # the typed password, the wrong user
    save(qtbot, dialog)
    dialog.new_button.click()
    dialog.select("typo")
    assert dialog.editing == "typo" and dialog.name_edit.isReadOnly()
    assert dialog.user_edit.text() == "nobody" and dialog.secret_edit.text() == ""
    assert "keep the stored password" in dialog.secret_edit.placeholderText()
    dialog.user_edit.setText(USER)
    save(qtbot, dialog)
    store = NodeStore()
    node = store.get("typo")
    assert node.username == USER and store.secret(node) == PASSWORD and len(store.nodes()) == 1
    assert try_connection(qtbot, dialog).startswith("ok: ")  # the stored password, now the right user


def test_remove_asks_first(qtbot, dialog: PacsNodesDialog, config: Path) -> None:
    for name in ("first", "second"):
        fill_dicomweb(dialog, name, "https://pacs.example.org/dicom-web", "bearer", secret=SECRET + name)
        save(qtbot, dialog)
    dialog.select("first")
    box = dialog.ask_remove()
    assert box.isVisible() and box.windowModality() == Qt.WindowModality.WindowModal and "first" in box.text()
    box.button(QMessageBox.StandardButton.Cancel).click()
    assert [node.name for node in NodeStore().nodes()] == ["first", "second"]

    box = dialog.ask_remove()
    remove = next(b for b in box.buttons() if box.buttonRole(b) == QMessageBox.ButtonRole.DestructiveRole)
    with qtbot.waitSignal(dialog.nodes_changed, timeout=1000):
        remove.click()
    assert [node.name for node in NodeStore().nodes()] == ["second"]
    assert json.loads((config / SECRETS_FILE).read_text()) == {"second": SECRET + "second"}
    assert dialog.listing.count() == 1 and dialog.editing is None and not dialog.remove_button.isEnabled()
    assert dialog.ask_remove() is None  # nothing selected: nothing to ask about


def test_the_pacs_dialog_nodes_button_opens_it_and_its_combo_follows(qtbot, pacs_nodes: NodeStore,
                                                                    orthanc: Orthanc) -> None:
    runner = JobRunner()
    pacs = PacsDialog(runner)
    qtbot.addWidget(pacs)
    pacs.show()
    qtbot.waitExposed(pacs)
    assert [pacs.node_combo.itemText(i) for i in range(pacs.node_combo.count())] == ["web", "dimse"]
    qtbot.mouseClick(pacs.nodes_button, Qt.MouseButton.LeftButton)
    nodes = pacs.findChild(PacsNodesDialog, "pacsNodesDialog")
    assert nodes is not None and nodes.isVisible() and nodes.windowModality() == Qt.WindowModality.WindowModal
    fill_dimse(nodes, "second-dimse", AE_TITLE, "127.0.0.1", orthanc.dicom_port)
    save(qtbot, nodes)
    assert pacs.node_combo.findText("second-dimse") >= 0
    pacs.select_node("second-dimse")
    assert "second-dimse: DIMSE" in pacs.node_info.text()
    nodes.accept()
    pacs.nodes_button.click()
    found = pacs.findChildren(PacsNodesDialog)
    assert len(found) == 1 and found[0] is nodes and nodes.isVisible()  # one per dialog, reopened
    nodes.accept()
    runner.wait()


def test_the_file_menu_opens_it_right_after_open_from_pacs(qtbot, settings, config: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from brainseg_gui.ui.main_window import MainWindow

    monkeypatch.setenv("BRAINSEG_NO_3D", "1")
    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    try:
        file_menu = window.menuBar().actions()[0].menu()
        texts = [action.text() for action in file_menu.actions()]
        assert texts[texts.index("Open from &PACS…") + 1] == "PACS &nodes…"
        file_menu.actions()[texts.index("PACS &nodes…")].trigger()
        dialog = window.findChild(PacsNodesDialog, "pacsNodesDialog")
        assert dialog is not None and dialog.isVisible()
        assert dialog.windowModality() == Qt.WindowModality.WindowModal
        dialog.accept()
    finally:
        window.close()
