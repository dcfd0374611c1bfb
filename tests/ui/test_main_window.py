"""The main window driven as a user would: open studies (path, drop, recent, demo, a bad one),
switch sequences with keys 1-4 and layouts, read the status bar, save screenshots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from brainseg_gui.core.errors import StudyLoadError
from brainseg_gui.ui.main_window import MainWindow
from brainseg_gui.ui.overlay import COLOURS
from brainseg_gui.ui.viewer_state import Layout
from tests.ui.conftest import colour_mask, rgb, shown_window

LOAD_TIMEOUT_MS = 60_000


@pytest.fixture
def window(qtbot, settings, monkeypatch):
    win = shown_window(qtbot, settings, monkeypatch)
    yield win
    win.close()


def open_and_wait(qtbot, window: MainWindow, path: Path | None):
    with qtbot.waitSignal(window.study_opened, timeout=LOAD_TIMEOUT_MS):
        window.open_study(path) if path is not None else window.open_demo()
    qtbot.waitUntil(lambda: not window.load_progress.isVisible())
    return window.volume


def test_open_toy_case_shows_three_oriented_views(qtbot, window, toy_case, screenshots) -> None:
    volume = open_and_wait(qtbot, window, toy_case)
    assert volume.study.case_id == "toy"
    assert [view.plane for view in window.grid.views] == ["axial", "coronal", "sagittal"]
    assert "toy" in window.windowTitle() and "research" in window.windowTitle()
    assert window.recent.paths() == [toy_case.resolve()]
    assert window.welcome.recent.count() == 1
    # the ground truth is drawn: its colours are in the picture
    pixels = rgb(window.grid.views[0].grab())
    assert colour_mask(pixels, COLOURS["WT"], 60).sum() > 10
    text = window.position_label.text()
    assert "voxel" in text and "mm" in text and "T1ce" in text and "label" in text
    window.save_screenshot(screenshots / "toy_1x3.png")


def test_the_sequence_of_the_file_opened_is_the_one_shown(qtbot, window, toy_case) -> None:
    open_and_wait(qtbot, window, toy_case / "toy_flair.nii.gz")
    assert window.state.sequence == "flair"
    open_and_wait(qtbot, window, toy_case / "toy_t2.nii.gz")
    assert window.state.sequence == "t2"
    open_and_wait(qtbot, window, toy_case)  # a folder: the sequence shown stays
    assert window.state.sequence == "t2"


def test_a_study_read_since_the_command_started_is_shown_without_reading_it_again(
        qtbot, window, toy_case, monkeypatch) -> None:
    from brainseg_gui.app import tasks
    from brainseg_gui.app.preload import StudyPreload

    preload = StudyPreload(toy_case)
    assert preload._done.wait(30)
    reads: list[Path] = []

    def read_again(path: Path, **kwargs: object) -> None:
        reads.append(path)
        raise StudyLoadError("read again")

    monkeypatch.setattr(tasks, "open_study", read_again)
    with qtbot.waitSignal(window.study_opened, timeout=LOAD_TIMEOUT_MS):
        window.open_study(toy_case, preload=preload)
    assert window.volume.study.case_id == "toy" and reads == []
    assert window.recent.paths() == [toy_case.resolve()]
    window.open_study(toy_case, preload=preload)  # again: read afresh (the file may have changed)
    qtbot.waitUntil(lambda: window.last_error is not None, timeout=LOAD_TIMEOUT_MS)
    assert reads == [toy_case] and "read again" in window.last_error


def test_keys_switch_sequences_and_layouts(qtbot, window, toy_case, screenshots) -> None:
    volume = open_and_wait(qtbot, window, toy_case)
    window.activateWindow()
    view = window.grid.views[0]
    view.setFocus()
    for key, name in ((Qt.Key.Key_1, "t1"), (Qt.Key.Key_4, "flair"), (Qt.Key.Key_3, "t2"), (Qt.Key.Key_2, "t1ce")):
        qtbot.keyClick(view, key)
        assert window.state.sequence == name
        assert window.sequence_bar.buttons[name].isChecked()
        z = window.state.crosshair[2]
        np.testing.assert_array_equal(window.grid.views[0].image.image, volume.images[name][:, :, z])
    window.sequence_bar.buttons["t2"].click()
    assert window.state.sequence == "t2"
    window.set_layout(Layout.GRID)
    assert sorted(v.sequence for v in window.grid.views) == ["flair", "t1", "t1ce", "t2"]
    assert {v.plane for v in window.grid.views} == {"axial"}
    qtbot.wait(100)  # let the new views take their places before the picture
    window.save_screenshot(screenshots / "toy_2x2.png")
    window.set_layout(Layout.SINGLE, "coronal")
    assert [(v.plane, v.sequence) for v in window.grid.views] == [("coronal", "t2")]
    # the crosshair survives the layout changes and clicking still moves it
    view = window.grid.views[0]
    qtbot.waitExposed(view)
    target = (5, window.state.crosshair[1], 3)
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.widget_pos_of(target))
    assert window.state.crosshair == target


def test_failed_load_shows_the_error_and_keeps_the_study(qtbot, window, toy_case, tmp_path) -> None:
    open_and_wait(qtbot, window, toy_case)
    shown = window.volume
    (tmp_path / "broken").mkdir()  # a folder of its own: tmp_path holds the settings the window writes
    bad = tmp_path / "broken" / "broken_t1.nii.gz"
    bad.write_bytes(b"not a nifti file")
    job = window.open_study(bad)
    qtbot.waitUntil(lambda: job.done, timeout=LOAD_TIMEOUT_MS)
    qtbot.waitUntil(lambda: window.last_error is not None)
    assert "broken_t1" in window.last_error
    assert window.volume is shown
    assert window.grid.views and window.segment_panel.segment_button.isEnabled()
    window.move_crosshair((1, 2, 3))
    assert window.state.crosshair == (1, 2, 3)


def test_drop_and_recent_open_studies(qtbot, window, toy_case) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(toy_case))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.study_opened, timeout=LOAD_TIMEOUT_MS):
        window.dropEvent(event)
    assert window.volume.study.case_id == "toy"
    assert window.recent_menu.actions()[0].text() == str(toy_case.resolve())
    first = window.document
    with qtbot.waitSignal(window.study_opened, timeout=LOAD_TIMEOUT_MS):
        window.recent_menu.actions()[0].trigger()
    assert window.volume.study.case_id == "toy"
    assert window.document is not first and first.closed  # the study opened again is a new Document


@pytest.mark.slow
def test_demo_study_opens(qtbot, window, screenshots) -> None:
    volume = open_and_wait(qtbot, window, None)
    assert "synthetic" in window.windowTitle()
    assert "synthetic" in window.study_label.text()
    assert volume.truth_code is not None and volume.truth_code.any()
    pixels = rgb(window.grid.views[0].grab())
    assert pixels.std() > 10
    window.save_screenshot(screenshots / "demo.png")


def test_real_case(qtbot, window, real_case, screenshots) -> None:
    volume = open_and_wait(qtbot, window, real_case)
    assert volume.study.case_id == "BraTS2021_00003"
    axial = rgb(window.grid.views[0].grab())
    assert axial.std() > 20
    assert colour_mask(axial, COLOURS["ET"], 60).sum() > 10  # enhancing rim outline at the centre
    truth_wt = float(window.segment_panel.cell(0, 2))
    assert truth_wt == pytest.approx((17214 + 57773 + 24252) / 1000, abs=0.01)
    window.save_screenshot(screenshots / "real_case_1x3.png")
