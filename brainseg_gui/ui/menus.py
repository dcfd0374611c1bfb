"""The main window's menus and keyboard shortcuts (File, View, Segmentation)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMenu

from brainseg_gui.core.study import SEQUENCES
from brainseg_gui.ui.slice_view import SEQUENCE_TITLES
from brainseg_gui.ui.viewer_state import PLANES, Layout

if TYPE_CHECKING:
    from brainseg_gui.ui.main_window import MainWindow

LAYOUT_TITLES = {Layout.ROW: "1×3: axial, coronal, sagittal", Layout.GRID: "2×2: one view per sequence",
                 Layout.SINGLE: "Single view"}
LAYOUT_KEYS = {Layout.ROW: "F2", Layout.GRID: "F3", Layout.SINGLE: "F4"}


def _action(window: MainWindow, menu: QMenu, text: str, slot, shortcut: str | QKeySequence | None = None,
            checkable: bool = False) -> QAction:
    action = QAction(text, window)
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    action.setCheckable(checkable)
    action.triggered.connect(slot)
    menu.addAction(action)
    window.addAction(action)  # shortcuts work wherever the focus is in the window
    return action


def build_menus(window: MainWindow) -> tuple[QMenu, dict[str, QAction]]:
    """Fill the menu bar; returns the Recent submenu and the sequence actions (keys 1-4)."""
    bar = window.menuBar()
    file_menu = bar.addMenu("&File")
    _action(window, file_menu, "&Open file…", window.ask_open_file, QKeySequence.StandardKey.Open)
    _action(window, file_menu, "Open &folder…", window.ask_open_folder, "Ctrl+Shift+O")
    recent = file_menu.addMenu("Open &recent")
    _action(window, file_menu, "Open the &demo study (synthetic)", window.open_demo)
    file_menu.addSeparator()
    _action(window, file_menu, "Save &screenshot…", window.ask_screenshot, "Ctrl+Shift+S")
    file_menu.addSeparator()
    _action(window, file_menu, "&Quit", window.close, QKeySequence.StandardKey.Quit)

    view_menu = bar.addMenu("&View")
    sequences: dict[str, QAction] = {}
    group = QActionGroup(window)
    for number, name in enumerate(SEQUENCES, start=1):
        action = _action(window, view_menu, f"Show {SEQUENCE_TITLES[name]}",
                         lambda _=False, n=name: window.set_sequence(n), str(number), checkable=True)
        group.addAction(action)
        sequences[name] = action
    window.state.sequence_changed.connect(lambda n: sequences[n].setChecked(True) if n in sequences else None)
    view_menu.addSeparator()
    layouts = QActionGroup(window)
    for layout in Layout:
        action = _action(window, view_menu, LAYOUT_TITLES[layout],
                         lambda _=False, lay=layout: window.set_layout(lay), LAYOUT_KEYS[layout], checkable=True)
        action.setChecked(window.state.layout is layout)
        layouts.addAction(action)
    planes_menu = view_menu.addMenu("Main plane (2×2 and single)")
    planes = QActionGroup(window)
    for plane in PLANES:
        action = _action(window, planes_menu, plane.capitalize(),
                         lambda _=False, p=plane: window.set_layout(window.state.layout, p), checkable=True)
        action.setChecked(window.state.main_plane == plane)
        planes.addAction(action)
    view_menu.addSeparator()
    _action(window, view_menu, "Reset &zoom", lambda: [v.reset_zoom() for v in window.grid.views], "Home")
    view_menu.addAction(window.controls_dock.toggleViewAction())
    view_menu.addAction(window.dock_3d.toggleViewAction())

    seg_menu = bar.addMenu("&Segmentation")
    _action(window, seg_menu, "&Segment this study", window.run_segmentation, "Ctrl+R")
    _action(window, seg_menu, "&Cancel", window.cancel_segmentation, "Esc")
    return recent, sequences
