"""A radiologist's DICOM study in the viewer: index, choose the study, check the series, load, change
the assignment later, and send the result back as DICOM-SEG + SR.

The study is a real BraTS case written as a clinical MR study by `tests/core/dicom_study_builder.py`
(thin: 40 T1ce slices, short 2D series), so a whole open takes a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from brainseg_gui.core.dicom_volume import read_series_file
from brainseg_gui.ui.main_window import MainWindow
from brainseg_gui.ui.series_table import SeriesAssignmentDialog, thumbnails_shown
from tests.core.dicom_study_builder import BuiltStudy, build_study
from tests.ui.conftest import shown_window

TIMEOUT_MS = 120_000
SHOTS = Path("/tmp/brainseg-shots")


@pytest.fixture(scope="module")
def study(real_case: Path, tmp_path_factory) -> BuiltStudy:
    return build_study(real_case, tmp_path_factory.mktemp("dicom") / "study", thin=True)


@pytest.fixture(scope="module")
def gapped(real_case: Path, tmp_path_factory) -> BuiltStudy:
    return build_study(real_case, tmp_path_factory.mktemp("gapped") / "study", thin=True, drop_slices={"t2": [2]})


@pytest.fixture
def window(qtbot, settings, monkeypatch, tiny_model) -> MainWindow:
    window = shown_window(qtbot, settings, monkeypatch, size=(1500, 900), model_dir=tiny_model)
    yield window
    window.close()


def series_dialog(qtbot, window: MainWindow, path: Path) -> SeriesAssignmentDialog:
    with qtbot.waitSignal(window.dicom.dialog_shown, timeout=TIMEOUT_MS) as blocker:
        window.open_study(path)
    return blocker.args[0]


def accept_and_load(qtbot, window: MainWindow, dialog: SeriesAssignmentDialog) -> None:
    assert dialog.can_accept, dialog.blockers()
    with qtbot.waitSignal(window.study_opened, timeout=TIMEOUT_MS):
        dialog.accept()
    qtbot.waitUntil(lambda: not window.load_progress.isVisible() and not window.dicom.busy, timeout=TIMEOUT_MS)


def series_uid_of(window: MainWindow, sequence: str) -> str:
    return read_series_file(window.volume.study.sources[sequence])["series_uid"]


def menu_action(window: MainWindow, text: str):
    return next(action for action in window.actions() if action.text() == text)


def shot(qtbot, widget, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    qtbot.wait(200)
    path = SHOTS / name
    assert widget.grab().save(str(path))
    return path


def test_dialog_lists_every_series_and_loads_the_choice(qtbot, window, study) -> None:
    dialog = series_dialog(qtbot, window, study.root)
    assert dialog.table.rowCount() == len(study.series) == 7
    for built in study.series:
        assert dialog.use_as(built.series_uid) == built.true_class, built.key
    assert all(thumbnails_shown(dialog).values())
    for built in study.series:
        assert dialog.choice.thumbnails[built.series_uid].std() > 5, f"blank thumbnail for {built.key}"
    assert "T1ce</b>: series 7 t1_mprage_tra_p2_iso_KM (3D, 1 mm), confidence 0.95" in dialog.summary.text()
    assert dialog.can_accept and not dialog.missing_ok.isVisibleTo(dialog) and not dialog.gaps_ok.isVisibleTo(dialog)
    dialog.table.selectRow(6)
    assert "contrast" in dialog.details.text().lower()
    shot(qtbot, dialog, "series_dialog.png")

    accept_and_load(qtbot, window, dialog)
    assert window.dicom.current is not None and window.dicom.dialog is None
    for name in ("t1", "t1ce", "t2", "flair"):
        assert series_uid_of(window, name) == study.get(name).series_uid
    assert window.recent.paths() == [study.root.resolve()]  # the DICOM study, not the cache folder
    assert window.state.sequence == "t1ce"
    qtbot.wait(300)
    window.save_screenshot(SHOTS / "window_after_loading.png")


def test_changing_the_assignment_from_the_menu(qtbot, window, study) -> None:
    accept_and_load(qtbot, window, series_dialog(qtbot, window, study.root))
    with qtbot.waitSignal(window.dicom.dialog_shown) as blocker:
        menu_action(window, "Series and se&quences…").trigger()
    dialog: SeriesAssignmentDialog = blocker.args[0]
    t2 = study.get("t2").series_uid
    dialog.set_class(t2, "flair")
    assert dialog.use_as(study.get("flair").series_uid) == "other"  # one row per sequence
    assert dialog.missing == ["t2"]
    assert not dialog.can_accept and not dialog.ok_button.isEnabled()
    assert dialog.missing_ok.isVisibleTo(dialog) and "missing" in dialog.missing_label.text()
    assert "--" not in dialog.missing_label.text() + dialog.ok_button.toolTip()  # no command-line flags
    dialog.missing_ok.setChecked(True)
    assert dialog.ok_button.isEnabled()
    shot(qtbot, dialog, "series_dialog_flair_from_t2.png")
    accept_and_load(qtbot, window, dialog)
    assert series_uid_of(window, "flair") == t2
    assert "t2" not in window.volume.study.sources and "t2" in window.volume.study.missing
    assert not window.sequence_bar.buttons["t2"].isEnabled()
    assert window.dicom.segment_missing and window.recent.paths() == [study.root.resolve()]
    window.set_sequence("flair")
    assert "FLAIR" in window.windowTitle()


def test_missing_sequence_needs_the_choice(qtbot, window, study) -> None:
    dialog = series_dialog(qtbot, window, study.root)
    dialog.set_class(study.get("flair").series_uid, "other")
    assert dialog.missing == ["flair"] and "FLAIR is missing" in dialog.missing_label.text()
    assert not dialog.can_accept
    dialog.accept()  # refused while a sequence is missing and the box is unticked
    assert dialog.isVisible()
    dialog.missing_ok.setChecked(True)
    accept_and_load(qtbot, window, dialog)
    assert "flair" not in window.volume.study.sources


def test_dropped_slice_needs_the_rebuild_box(qtbot, window, gapped) -> None:
    dialog = series_dialog(qtbot, window, gapped.root)
    assert dialog.gaps_ok.isVisibleTo(dialog) and "missing slices" in dialog.gaps_label.text()
    assert "T2" in dialog.gaps_label.text() and not dialog.can_accept
    shot(qtbot, dialog, "series_dialog_gap.png")
    dialog.gaps_ok.setChecked(True)
    accept_and_load(qtbot, window, dialog)
    assert window.dicom.staged is not None and window.dicom.staged.accept_gaps
    assert read_series_file(window.volume.study.sources["t2"])["accept_gaps"]


def test_several_studies_show_the_chooser(qtbot, window, real_case, tmp_path) -> None:
    root = tmp_path / "cd"
    build_study(real_case, root / "a", thin=True, patient_id="PATIENT-A")
    second = build_study(real_case, root / "b", thin=True, patient_id="PATIENT-B")
    with qtbot.waitSignal(window.dicom.chooser_shown, timeout=TIMEOUT_MS) as blocker:
        window.open_study(root)
    chooser = blocker.args[0]
    assert chooser.table.rowCount() == 2
    texts = [chooser.table.item(row, 0).text() for row in range(2)]
    row = next(i for i, text in enumerate(texts) if "PATIENT-B" in text)
    chooser.select(row)
    assert chooser.chosen_uid == second.study_uid
    shot(qtbot, chooser, "study_chooser.png")
    with qtbot.waitSignal(window.dicom.dialog_shown, timeout=TIMEOUT_MS) as shown:
        chooser.accept()
    assert shown.args[0].auto.study.uid == second.study_uid


def test_export_writes_seg_and_sr(qtbot, window, study, tmp_path) -> None:
    accept_and_load(qtbot, window, series_dialog(qtbot, window, study.root))
    exporter = window.dicom_results
    assert not exporter.can_export  # no mask yet
    with qtbot.waitSignal(window.segmentation_done, timeout=TIMEOUT_MS):
        assert window.run_segmentation() is not None
    qtbot.waitUntil(lambda: window.editing.session is not None and exporter.can_export)
    # never into the DICOM study itself
    assert exporter.export(study.root / "results") is None
    assert window.last_error is not None and "inside the DICOM study" in window.last_error
    out = tmp_path / "results"
    exporter.ask_folder = lambda suggested: out
    with qtbot.waitSignal(exporter.written, timeout=TIMEOUT_MS) as blocker:
        assert exporter.ask_export() is not None
    result = blocker.args[0]
    seg, sr = pydicom.dcmread(result.seg), pydicom.dcmread(result.sr)
    assert seg.Modality == "SEG" and sr.Modality == "SR"
    assert seg.StudyInstanceUID == study.study_uid == sr.StudyInstanceUID
    assert result.seg.parent == out and set(result.volumes_ml) == {"WT", "TC", "ET"}
    referenced = {item.SeriesInstanceUID for item in seg.ReferencedSeriesSequence}
    assert referenced == {study.get("t1ce").series_uid}
    assert seg.Rows == 240 and np.isfinite(list(result.volumes_ml.values())).all()
    assert "Written into" in exporter.last_message and result.sr.name in exporter.last_message
    assert not window.editing.unsaved


def test_a_bad_dicom_path_is_one_dialog(qtbot, window, tmp_path) -> None:
    import zipfile

    bad = tmp_path / "export.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("README.txt", "no images here")
    window.open_study(bad)
    qtbot.waitUntil(lambda: window.last_error is not None and not window.dicom.busy, timeout=TIMEOUT_MS)
    assert "Traceback" not in window.last_error and window.volume is None and window.dicom.dialog is None


@pytest.mark.slow
def test_the_radiologists_path_prepare_segment_and_send_back(qtbot, window, study, tmp_path) -> None:
    """Series confirmed, prepared (brain mask checked), segmented, SEG + SR written on the T1ce series."""
    import dataclasses

    from brainseg_gui.core.dicom_results import read_study_seg
    from brainseg_gui.core.labels import LabelConvention, to_regions
    from brainseg_gui.ui.prepare_controller import Stage
    from tests.ui.test_prepare_step import FAST, AutoPrompter, prepare, wait_idle

    window.prepare.options = dataclasses.replace(FAST, resolution_mm=1.0)
    window.prepare.prompter = AutoPrompter(tmp_path / "prepared")
    dialog = series_dialog(qtbot, window, study.root)
    accept_and_load(qtbot, window, dialog)
    qtbot.waitUntil(lambda: window.prepare.stage not in (Stage.NONE, Stage.CHECKING), timeout=TIMEOUT_MS)
    assert window.prepare.stage is Stage.NOT_READY and window.volume.study.grid.same_as(study.get("t1ce").grid)
    prepare(qtbot, window)
    with qtbot.waitSignal(window.prepare.prepared_shown, timeout=TIMEOUT_MS):
        window.prepare.accept()
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: window.prepare.stage is Stage.READY, timeout=TIMEOUT_MS)
    with qtbot.waitSignal(window.segmentation_done, timeout=TIMEOUT_MS):
        assert window.run_segmentation() is not None
    exporter = window.dicom_results
    qtbot.waitUntil(lambda: window.editing.session is not None and exporter.can_export, timeout=TIMEOUT_MS)
    SHOTS.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(SHOTS / "prepared_segmented.png"))
    prepared_labels = window.editing.session.snapshot()
    out = tmp_path / "results"
    exporter.ask_folder = lambda suggested: out
    with qtbot.waitSignal(exporter.written, timeout=TIMEOUT_MS) as blocker:
        assert exporter.ask_export() is not None
    result = blocker.args[0]
    # the SEG lies on the T1ce series and holds the prepared mask mapped back
    record = window.prepare.record
    from brainseg_gui.core.prepared_space import map_to_original

    mapped, grid = map_to_original(prepared_labels.astype(np.uint8), record, "t1ce")
    assert grid.same_as(study.get("t1ce").grid)
    regions = read_study_seg(result.seg, grid, record.sequences["t1ce"].source)
    np.testing.assert_array_equal(regions, to_regions(mapped, LabelConvention.BRATS))
    assert pydicom.dcmread(result.sr).StudyInstanceUID == study.study_uid
