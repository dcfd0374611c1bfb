"""File > Open from PACS… against a real Orthanc (DICOMweb and DIMSE): search, list the series,
retrieve into the cache and open the study in the window; a refusing node and a cancelled retrieve
leave the dialog usable.

The study is the phantom case written as a clinical MR study (tests/core/dicom_study_builder.py, thin),
uploaded once per module; each test has its own settings folder, secrets file and cache.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pydicom
import pytest
from PySide6.QtCore import Qt

from brainseg_gui.core.pacs_nodes import NodeStore, PacsNode
from brainseg_gui.ui.pacs_dialog import PacsDialog
from brainseg_gui.ui.pacs_tables import person_name
from brainseg_gui.ui.workers import JobRunner
from tests.core.dicom_study_builder import BuiltStudy, build_study
from tests.pacs_orthanc import AE_TITLE, Orthanc, free_port, orthanc_missing

pytestmark = pytest.mark.skipif(bool(orthanc_missing()), reason=orthanc_missing() or "Orthanc is installed")
TIMEOUT_MS = 120_000
PATIENT_ID = "PACS-UI-1"
SCREENSHOT = Path("/tmp/pacs_dialog.png")


@pytest.fixture(scope="module")
def study(orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory) -> BuiltStudy:
    """A multi-series tumour study (from the phantom case) on the PACS."""
    from brainseg_gui.core.phantom import write_phantom_case

    case = write_phantom_case(tmp_path_factory.mktemp("phantom"), seed=4, shape=(96, 112, 80))
    built = build_study(case, tmp_path_factory.mktemp("study") / "export", thin=True, patient_id=PATIENT_ID)
    orthanc.upload(_files(built.root))
    return built


@pytest.fixture
def dialog(qtbot, pacs_nodes: NodeStore) -> PacsDialog:
    runner = JobRunner()
    dialog = PacsDialog(runner)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    yield dialog
    dialog.cancel()
    runner.wait()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _sop_uids(files: list[Path]) -> set[str]:
    return {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in files}


def _idle(qtbot, dialog: PacsDialog) -> None:
    qtbot.waitUntil(lambda: not dialog.busy, timeout=TIMEOUT_MS)


def search(qtbot, dialog: PacsDialog, node: str, patient_id: str = PATIENT_ID) -> None:
    dialog.select_node(node)
    dialog.patient_id.setText(patient_id)
    assert dialog.search() is not None
    _idle(qtbot, dialog)


def list_series(qtbot, dialog: PacsDialog, node: str) -> None:
    """Search for the test patient on `node`, select the study found and wait for its series."""
    search(qtbot, dialog, node)
    assert len(dialog.studies) == 1, dialog.error
    dialog.select_study(0)
    _idle(qtbot, dialog)


def retrieved_folder(qtbot, dialog: PacsDialog) -> Path:
    with qtbot.waitSignal(dialog.study_retrieved, timeout=TIMEOUT_MS) as blocker:
        assert dialog.retrieve() is not None
    return blocker.args[0]


@pytest.mark.parametrize("node", ["web", "dimse"])
def test_search_lists_the_series_and_retrieves_the_study(qtbot, dialog: PacsDialog, study: BuiltStudy,
                                                         node: str) -> None:
    list_series(qtbot, dialog, node)
    found = dialog.studies[0]
    assert found.study_uid == study.study_uid and not dialog.error
    cells = [dialog.studies_table.item(0, column).text() for column in range(dialog.studies_table.columnCount())]
    assert cells[1] == person_name(found.patient_name) and cells[2] == PATIENT_ID
    assert cells[6] == str(len(study.series)) and "MR" in cells[5]
    assert {s.series_uid for s in dialog.series} == {s.series_uid for s in study.series}
    assert dialog.series_table.rowCount() == len(study.series)
    assert dialog.checked_series() == [s.series_uid for s in dialog.series]  # all ticked by default
    assert dialog.retrieve_button.isEnabled()
    if node == "web":
        qtbot.wait(100)
        assert dialog.grab().save(str(SCREENSHOT))

    folder = retrieved_folder(qtbot, dialog)
    assert _sop_uids([p for p in _files(folder) if p.suffix == ".dcm"]) == _sop_uids(_files(study.root))
    assert not dialog.isVisible()  # "Retrieve and open": the window takes over


def test_unticked_series_stay_on_the_pacs(qtbot, dialog: PacsDialog, study: BuiltStudy) -> None:
    list_series(qtbot, dialog, "web")
    for series in study.series:
        dialog.set_series_checked(series.series_uid, False)
    assert not dialog.retrieve_button.isEnabled() and dialog.retrieve() is None
    chosen = [study.get(name).series_uid for name in ("t1", "t1ce", "t2", "flair")]
    for uid in chosen:
        dialog.set_series_checked(uid, True)
    folder = retrieved_folder(qtbot, dialog)
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == sorted(chosen)


def test_a_refusing_node_shows_one_message_and_the_dialog_stays_usable(qtbot, dialog: PacsDialog, pacs_nodes: NodeStore,
                                                                       study: BuiltStudy) -> None:
    pacs_nodes.add(PacsNode("closed", "dimse", ae_title=AE_TITLE, host="127.0.0.1", port=free_port()))
    dialog.refresh_nodes()
    search(qtbot, dialog, "closed")
    assert dialog.error.startswith("refused:"), dialog.error
    assert dialog.message.isVisible() and "\n" not in dialog.error and not dialog.studies
    assert dialog.search_button.isEnabled() and dialog.node_combo.isEnabled()
    dialog.select_node("web")
    qtbot.keyClick(dialog.patient_id, Qt.Key.Key_Return)  # Enter in a field searches (the default button)
    assert dialog.busy
    _idle(qtbot, dialog)
    assert not dialog.error and not dialog.message.isVisible()
    assert [s.study_uid for s in dialog.studies] == [study.study_uid]


def test_a_bad_date_is_told_at_once(qtbot, dialog: PacsDialog) -> None:
    dialog.date_from.setText("2024-13-45")
    assert dialog.search() is None and not dialog.busy
    assert "not a date" in dialog.error


def test_cancel_during_a_retrieve_leaves_the_dialog_usable(qtbot, dialog: PacsDialog, study: BuiltStudy) -> None:
    list_series(qtbot, dialog, "web")
    arrived, clicked = threading.Event(), threading.Event()

    def hold_the_worker(fraction: float, _message: str) -> None:
        """On the worker's thread: once some images are in, wait for the GUI to click Cancel."""
        if fraction > 0.2 and not arrived.is_set():
            arrived.set()
            clicked.wait(30)

    retrieved: list[Path] = []
    dialog.study_retrieved.connect(retrieved.append)
    job = dialog.retrieve()
    job.signals.progress.connect(hold_the_worker, Qt.ConnectionType.DirectConnection)
    qtbot.waitUntil(arrived.is_set, timeout=TIMEOUT_MS)
    assert dialog.cancel_button.isVisible() and not dialog.search_button.isEnabled()
    dialog.cancel_button.click()
    clicked.set()
    _idle(qtbot, dialog)
    assert not retrieved and dialog.isVisible() and not dialog.error
    assert "stopped" in dialog.status.text().lower()
    assert dialog.search_button.isEnabled() and dialog.retrieve_button.isEnabled()
    assert not dialog.cancel_button.isVisible()

    folder = retrieved_folder(qtbot, dialog)  # again: only the rest is fetched
    assert _sop_uids([p for p in _files(folder) if p.suffix == ".dcm"]) == _sop_uids(_files(study.root))


def test_without_nodes_the_dialog_says_how_to_add_one(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRAINSEG_CONFIG_DIR", str(tmp_path / "empty"))
    dialog = PacsDialog(JobRunner())
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.no_nodes.isVisible() and "brainseg pacs nodes add" in dialog.no_nodes.text()
    assert not dialog.search_button.isEnabled() and dialog.search() is None


def test_the_file_menu_opens_the_dialog_and_the_study_opens_in_the_window(qtbot, settings, monkeypatch, tiny_model,
                                                                          pacs_nodes: NodeStore, study: BuiltStudy) -> None:
    from brainseg_gui.ui.main_window import MainWindow

    monkeypatch.setenv("BRAINSEG_NO_3D", "1")
    window = MainWindow(settings=settings, model_dir=tiny_model)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    try:
        next(a for a in window.actions() if a.text() == "Open from &PACS…").trigger()
        dialog = window.findChild(PacsDialog, "pacsDialog")
        assert dialog is not None and dialog.isVisible()
        assert dialog.windowModality() == Qt.WindowModality.WindowModal
        list_series(qtbot, dialog, "dimse")
        with qtbot.waitSignal(window.dicom.dialog_shown, timeout=TIMEOUT_MS) as blocker:
            assert dialog.retrieve() is not None
        series_dialog = blocker.args[0]
        assert series_dialog.can_accept, series_dialog.blockers()
        with qtbot.waitSignal(window.study_opened, timeout=TIMEOUT_MS):
            series_dialog.accept()
        qtbot.waitUntil(lambda: not window.load_progress.isVisible() and not window.dicom.busy, timeout=TIMEOUT_MS)
        assert window.dicom.current is not None
        assert window.dicom.current.source.name == study.study_uid  # the study's folder in the PACS cache
    finally:
        window.close()
