"""The window as a new user meets it: menu items that do not apply are disabled, the keyboard goes
back to the views after a dialog, and the layout, sequence and window preset are remembered."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from brainseg_gui.ui.viewer_state import Layout
from tests.ui.test_segmentation import make_window, open_toy, segment, tiny_model  # noqa: F401 - fixture


def actions(window) -> dict[str, object]:
    """Menu actions by their text without the & marks."""
    found = {}
    for menu_action in window.menuBar().actions():
        menu = menu_action.menu()
        for action in menu.actions() if menu is not None else []:
            found[action.text().replace("&", "")] = action
    return found


def test_menu_items_that_do_not_apply_are_disabled(qtbot, settings, monkeypatch, toy_case, tiny_model) -> None:  # noqa: F811
    window = make_window(qtbot, settings, monkeypatch, model_dir=tiny_model[0])
    menu = actions(window)
    exports = ["Export corrected mask (NIfTI)…", "Export DICOM-SEG…", "Export region meshes (STL/OBJ)…",
               "Export report (HTML)…", "Review: AI vs corrected"]
    study_only = ["Save screenshot…", "Brush", "Reset zoom (fit the brain)", "Show T1ce"]
    assert not any(menu[name].isEnabled() for name in exports + study_only + ["Segment this study", "Cancel"])
    assert menu["Open file…"].isEnabled() and menu["Open the demo study (synthetic)"].isEnabled()

    open_toy(qtbot, window, toy_case)
    assert all(menu[name].isEnabled() for name in study_only + ["Segment this study"])
    assert not any(menu[name].isEnabled() for name in exports + ["Cancel"])  # nothing to export yet
    assert not menu["Interpolate between the last two edited slices"].isEnabled()

    segment(qtbot, window)
    assert all(menu[name].isEnabled() for name in exports + ["Segment this study"])
    assert not menu["Cancel"].isEnabled()


def test_the_keyboard_goes_back_to_the_views_after_a_dialog(qtbot, settings, monkeypatch, toy_case) -> None:
    window = make_window(qtbot, settings, monkeypatch)
    open_toy(qtbot, window, toy_case)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    window.controls_dock.raise_()
    window.segment_panel.segment_button.setFocus()  # somewhere that is not a view
    qtbot.waitUntil(lambda: QApplication.focusWidget() is window.segment_panel.segment_button)
    box = window.show_error("Something failed", "one line")
    qtbot.waitUntil(box.isVisible)
    box.button(QMessageBox.StandardButton.Ok).click()
    window.activateWindow()
    # (the window calls focus_views itself when it is active again: ActivationChange)
    qtbot.waitUntil(lambda: QApplication.focusWidget() in window.grid.views)
    z = window.state.crosshair[2]
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_PageUp)  # the key moves the slice again
    qtbot.waitUntil(lambda: window.state.crosshair[2] != z)


def test_layout_sequence_and_window_preset_are_remembered(qtbot, settings, monkeypatch, toy_case) -> None:
    window = make_window(qtbot, settings, monkeypatch)
    open_toy(qtbot, window, toy_case)
    window.set_layout(Layout.GRID, "coronal")
    window.set_sequence("flair")
    window.sequence_bar.choose_preset("Auto (1-99%)")
    window.state.set_link_views(False)
    window.close()

    again = make_window(qtbot, settings, monkeypatch)
    assert again.state.layout is Layout.GRID and again.state.main_plane == "coronal"
    assert again.state.link_views is False
    open_toy(qtbot, again, toy_case)
    assert again.state.sequence == "flair"
    assert again.sequence_bar.presets.currentText() == "Auto (1-99%)"
    assert again.state.windows["t1"] == again.volume.window("t1", "Auto (1-99%)")
