"""File > Send to PACS… against a real Orthanc: the SEG and SR (and the report PDF) of the shown mask
join the DICOM study on the node, over DICOMweb and DIMSE; what went is logged with its UIDs; a node
that refuses is one message in the dialog, which stays usable; nothing is left in a temporary folder
or written near the study's own files.

The study is a real BraTS case written as a clinical MR study (tests/core/dicom_study_builder.py, thin),
segmented with the tiny model, as in test_dicom_study_window.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from brainseg_gui.core.pacs_nodes import NodeStore, PacsNode
from brainseg_gui.ui.main_window import MainWindow
from brainseg_gui.ui.pacs_send_dialog import PacsSendDialog
from tests.core.dicom_study_builder import BuiltStudy, build_study
from tests.pacs_orthanc import AE_TITLE, Orthanc, free_port
from tests.ui.conftest import shown_window
from tests.ui.test_dicom_study_window import TIMEOUT_MS, accept_and_load, menu_action, series_dialog

SEND = "Send to P&ACS…"
SCREENSHOT = Path("/tmp/pacs_send.png")


@pytest.fixture(scope="module")
def study(real_case: Path, tmp_path_factory: pytest.TempPathFactory) -> BuiltStudy:
    return build_study(real_case, tmp_path_factory.mktemp("dicom") / "study", thin=True, patient_id="SEND-TEST-1")


@pytest.fixture
def window(qtbot, settings, monkeypatch, tiny_model) -> MainWindow:
    window = shown_window(qtbot, settings, monkeypatch, size=(1500, 900), model_dir=tiny_model)
    yield window
    window.close()


def segmented(qtbot, window: MainWindow, study: BuiltStudy) -> None:
    """The DICOM study open and segmented, ready to send."""
    accept_and_load(qtbot, window, series_dialog(qtbot, window, study.root))
    assert not menu_action(window, SEND).isEnabled()  # no mask yet
    with qtbot.waitSignal(window.segmentation_done, timeout=TIMEOUT_MS):
        assert window.run_segmentation() is not None
    qtbot.waitUntil(lambda: window.editing.session is not None and window.dicom_results.can_export,
                    timeout=TIMEOUT_MS)
    assert menu_action(window, SEND).isEnabled()


def open_dialog(qtbot, window: MainWindow, temp_root: Path) -> PacsSendDialog:
    menu_action(window, SEND).trigger()
    dialog = window.dicom_results.send_dialog
    assert dialog is not None
    qtbot.waitUntil(dialog.isVisible)
    assert dialog.isModal() and dialog.windowModality() == Qt.WindowModality.WindowModal
    dialog.temp_root = temp_root
    return dialog


def send(qtbot, window: MainWindow, dialog: PacsSendDialog, node: str):
    """Send to `node` and wait for what it took (the dialog closes)."""
    dialog.select_node(node)
    with qtbot.waitSignal(window.dicom_results.sent, timeout=TIMEOUT_MS) as blocker:
        assert dialog.send() is not None
        assert not dialog.send_button.isEnabled()  # one send at a time
    qtbot.waitUntil(lambda: not dialog.isVisible() and not dialog.busy, timeout=TIMEOUT_MS)
    return blocker.args[0]


def pacs_series(orthanc: Orthanc, study_uid: str) -> dict[str, set[str]]:
    """Modality -> the Orthanc ids of the instances of the study's series of that modality."""
    found = orthanc.rest("POST", "/tools/find", json.dumps(
        {"Level": "Series", "Expand": True, "Query": {"StudyInstanceUID": study_uid}}).encode())
    series: dict[str, set[str]] = {}
    for row in found:
        series.setdefault(row["MainDicomTags"]["Modality"], set()).update(row["Instances"])
    return series


def orthanc_id(orthanc: Orthanc, sop_uid: str) -> str:
    [hit] = orthanc.rest("POST", "/tools/lookup", sop_uid.encode())
    return hit["ID"]


def files_of(root: Path) -> dict[Path, float]:
    return {p: p.stat().st_mtime for p in root.rglob("*")}


def sent_log() -> list[dict]:
    path = Path(os.environ["BRAINSEG_CONFIG_DIR"]) / "pacs_sent.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_send_to_pacs_over_dicomweb_and_dimse(qtbot, window, study, orthanc, pacs_nodes: NodeStore,
                                              tmp_path) -> None:
    before = files_of(study.root)
    temp_root = tmp_path / "temp"
    temp_root.mkdir()
    pacs_nodes.add(PacsNode("closed", "dimse", ae_title=AE_TITLE, host="127.0.0.1", port=free_port()))
    segmented(qtbot, window, study)

    dialog = open_dialog(qtbot, window, temp_root)
    assert [dialog.node_combo.itemText(i) for i in range(dialog.node_combo.count())] == ["web", "dimse", "closed"]
    assert not dialog.no_nodes.isVisibleTo(dialog)
    summary = dialog.summary_text
    assert "(ID SEND-TEST-1)" in summary and f"Study UID: {study.study_uid}" in summary
    assert "On series: 7 " in summary  # the T1ce series the SEG references
    assert all(f"{region} " in summary for region in ("WT", "TC", "ET")) and "mL" in summary
    assert "report" not in dialog.facts["Files"].text()
    dialog.report_box.setChecked(True)
    assert "report (Encapsulated PDF)" in dialog.facts["Files"].text()
    dialog.report_box.setChecked(False)
    qtbot.wait(200)
    assert dialog.grab().save(str(SCREENSHOT))

    # a node nobody answers for: one message, nothing sent or logged, the dialog still usable
    dialog.select_node("closed")
    assert dialog.send() is not None
    qtbot.waitUntil(lambda: not dialog.busy, timeout=TIMEOUT_MS)
    assert dialog.error.startswith("refused:") and "closed" in dialog.error, dialog.error
    assert dialog.isVisible() and dialog.send_button.isEnabled() and dialog.node_combo.isEnabled()
    assert window.last_error is None  # in the dialog, not a second dialog
    assert sent_log() == [] and list(temp_root.iterdir()) == []
    dialog.grab().save("/tmp/pacs_send_refused.png")

    # Cancel before the files go: nothing sent, the dialog stays
    dialog.select_node("web")
    assert dialog.send() is not None
    dialog.cancel()
    qtbot.waitUntil(lambda: not dialog.busy, timeout=TIMEOUT_MS)
    assert dialog.isVisible() and "nothing was sent" in dialog.status.text() and dialog.send_button.isEnabled()
    assert sent_log() == [] and list(temp_root.iterdir()) == [] and "SEG" not in pacs_series(orthanc, study.study_uid)

    # over DICOMweb, from the same dialog: SEG and SR join the study
    web = send(qtbot, window, dialog, "web")
    assert dialog.error == ""
    assert [kind for kind, _uid in web.instances] == ["SEG", "SR"]
    in_pacs = pacs_series(orthanc, study.study_uid)
    assert orthanc_id(orthanc, web.sop_instance_uids[0]) in in_pacs["SEG"]
    assert orthanc_id(orthanc, web.sop_instance_uids[1]) in in_pacs["SR"]
    assert "DOC" not in in_pacs
    status = window.statusBar().currentMessage()
    assert status.startswith("Sent to web:") and all(uid in status for uid in web.sop_instance_uids), status
    [line] = sent_log()
    assert line["node"] == "web" and line["sop_instance_uids"] == web.sop_instance_uids
    assert line["study_uids"] == [study.study_uid] and len(line["files"]) == 2
    assert list(temp_root.iterdir()) == []

    # over DIMSE, with the report: a DOC too
    dialog = open_dialog(qtbot, window, temp_root)
    assert dialog.error == "" and dialog.node_combo.currentText() == "web"  # the last node chosen
    dialog.report_box.setChecked(True)
    dimse = send(qtbot, window, dialog, "dimse")
    assert [kind for kind, _uid in dimse.instances] == ["SEG", "SR", "DOC"]
    in_pacs = pacs_series(orthanc, study.study_uid)
    for (kind, uid) in dimse.instances:
        assert orthanc_id(orthanc, uid) in in_pacs[kind], kind
    assert len(in_pacs["SEG"]) == 2 and len(in_pacs["SR"]) == 2 and len(in_pacs["DOC"]) == 1
    log = sent_log()
    assert len(log) == 2 and log[-1]["node"] == "dimse" and log[-1]["sop_instance_uids"] == dimse.sop_instance_uids
    assert [Path(f).name for f in log[-1]["files"]][-1].endswith("_report.dcm")

    assert list(temp_root.iterdir()) == []
    assert files_of(study.root) == before  # nothing written into the study's folders


def test_without_nodes_the_dialog_says_where_to_add_one(qtbot, window, study, tmp_path) -> None:
    segmented(qtbot, window, study)
    dialog = PacsSendDialog(window.runner, window, store=NodeStore(tmp_path / "no-config"))
    dialog.set_request(window.dicom_results.request())
    dialog.open()
    qtbot.waitUntil(dialog.isVisible)
    assert dialog.no_nodes.isVisible() and "File &gt; PACS nodes…" in dialog.no_nodes.text()
    assert not dialog.send_button.isEnabled() and dialog.send() is None
    assert "(ID SEND-TEST-1)" in dialog.summary_text  # what would go is shown all the same
    dialog.grab().save("/tmp/pacs_send_no_nodes.png")
    dialog.cancel()
    assert not dialog.isVisible()
