"""The main window's menus and keyboard shortcuts (File, Edit, View, Study, Segmentation, Help).

Every shortcut is an action in a menu, so Help > Keyboard shortcuts can list them all.
"""

from __future__ import annotations

from typing import Any, Protocol

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QDockWidget, QMenu, QMenuBar

from brainseg_gui.core.labels import TISSUES
from brainseg_gui.core.study import SEQUENCES
from brainseg_gui.ui.edit_panel import class_title
from brainseg_gui.ui.pacs_dialog import show_pacs_dialog
from brainseg_gui.ui.pacs_nodes_dialog import show_pacs_nodes_dialog
from brainseg_gui.ui.prepare_controller import Stage
from brainseg_gui.ui.prepare_panel import add_prepare_actions
from brainseg_gui.ui.slice_view import SEQUENCE_TITLES
from brainseg_gui.ui.view_link import link_views_action
from brainseg_gui.ui.viewer_state import PLANES, Layout, Tool


class MenuHost(Protocol):
    """What the menus act on: the window's parts and its user actions (no import of the window)."""

    state: Any
    workspace: Any
    runner: Any
    dicom: Any
    dicom_results: Any
    exporter: Any
    prepare: Any
    models: Any
    review_panel: Any
    grid: Any
    controls_dock: QDockWidget
    edit_dock: QDockWidget
    dock_3d: QDockWidget
    measure_dock: QDockWidget

    @property
    def editing(self) -> Any: ...
    def menuBar(self) -> QMenuBar: ...
    def addAction(self, action: QAction) -> None: ...
    def close(self) -> bool: ...
    def ask_open_file(self) -> None: ...
    def ask_open_folder(self) -> None: ...
    def open_demo(self) -> Any: ...
    def ask_screenshot(self) -> None: ...
    def set_sequence(self, name: str) -> None: ...
    def set_layout(self, layout: Any, plane: str | None = None) -> None: ...
    def run_segmentation(self) -> Any: ...
    def cancel_segmentation(self) -> None: ...
    def show_shortcuts(self) -> Any: ...
    @property
    def can_segment(self) -> bool: ...
    @property
    def segmenting(self) -> bool: ...
    @property
    def segmenting_changed(self) -> Any: ...

LAYOUT_TITLES = {Layout.ROW: "1×3: axial, coronal, sagittal", Layout.GRID: "2×2: one view per sequence",
                 Layout.SINGLE: "Single view"}
LAYOUT_KEYS = {Layout.ROW: "F2", Layout.GRID: "F3", Layout.SINGLE: "F4"}


def _action(window: MenuHost, menu: QMenu, text: str, slot, shortcut: str | QKeySequence | None = None,
            checkable: bool = False) -> QAction:
    action = QAction(text, window)
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    action.setCheckable(checkable)
    action.triggered.connect(slot)
    menu.addAction(action)
    window.addAction(action)  # shortcuts work wherever the focus is in the window
    return action


def build_menus(window: MenuHost) -> tuple[QMenu, dict[str, QAction]]:
    """Fill the menu bar; returns the Recent submenu and the sequence actions (keys 1-4)."""
    bar = window.menuBar()
    file_menu = bar.addMenu("&File")
    _action(window, file_menu, "&Open file…", window.ask_open_file, QKeySequence.StandardKey.Open)
    _action(window, file_menu, "Open &folder…", window.ask_open_folder, "Ctrl+Shift+O")
    # a retrieved study opens as a DICOM folder does: study chooser, series assignment, load
    _action(window, file_menu, "Open from &PACS…",
            lambda: show_pacs_dialog(window, window.runner, window.dicom.open))
    _action(window, file_menu, "PACS &nodes…", lambda: show_pacs_nodes_dialog(window, window.runner))
    recent = file_menu.addMenu("Open &recent")
    _action(window, file_menu, "Open the &demo study (synthetic)", window.open_demo)
    file_menu.addSeparator()
    needs_study: list[QAction] = []  # enabled only with a study shown
    needs_mask: list[QAction] = []  # only with a tumour mask to export or review
    needs_mask += [_action(window, file_menu, "&Export corrected mask (NIfTI)…", window.exporter.ask_export_mask,
                           "Ctrl+E"),
                   _action(window, file_menu, "Export &DICOM-SEG…", window.exporter.ask_export_dicom_seg)]
    study_results = _action(window, file_menu, "Export DICOM-SEG and SR for this s&tudy…",
                            window.dicom_results.ask_export)
    send_results = _action(window, file_menu, "Send to P&ACS…", window.dicom_results.ask_send)
    needs_mask += [_action(window, file_menu, "Export region &meshes (STL/OBJ)…", window.exporter.ask_export_meshes),
                   _action(window, file_menu, "Export &report (HTML)…", window.exporter.ask_export_report,
                           "Ctrl+Shift+E")]
    needs_study.append(_action(window, file_menu, "Save &screenshot…", window.ask_screenshot, "Ctrl+Shift+S"))
    file_menu.addSeparator()
    _action(window, file_menu, "&Quit", window.close, QKeySequence.StandardKey.Quit)

    needs_study += _build_edit_menu(window, bar.addMenu("&Edit"))

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
    needs_study.append(_action(window, view_menu, "Reset &zoom (fit the brain)",
                               lambda: [v.reset_zoom() for v in window.grid.views], "Home"))
    link = link_views_action(window.state, window.menuBar())
    view_menu.addAction(link)
    view_menu.addSeparator()
    review = _action(window, view_menu, "&Review: AI vs corrected", window.review_panel.set_active, "V",
                     checkable=True)
    window.review_panel.toggle.toggled.connect(review.setChecked)
    needs_mask += [review, _action(window, view_menu, "&Next difference", lambda: window.review_panel.step(1), "N"),
                   _action(window, view_menu, "&Previous difference", lambda: window.review_panel.step(-1), "Shift+N")]
    view_menu.addSeparator()
    view_menu.addAction(window.controls_dock.toggleViewAction())
    view_menu.addAction(window.edit_dock.toggleViewAction())
    view_menu.addAction(window.dock_3d.toggleViewAction())
    view_menu.addAction(window.measure_dock.toggleViewAction())

    study_menu = bar.addMenu("S&tudy")
    series = _action(window, study_menu, "Series and se&quences…", lambda: window.dicom.show_dialog())

    def sync_dicom() -> None:
        """The DICOM entries follow the study shown: from a DICOM study, with a mask to export."""
        series.setEnabled(window.dicom.current is not None and not window.dicom.busy)
        study_results.setEnabled(window.dicom_results.can_export)
        send_results.setEnabled(window.dicom_results.can_export)

    for signal in (window.dicom.changed, window.workspace.session_changed, window.prepare.changed,
                   window.workspace.replaced, window.dicom_results.written):
        signal.connect(lambda *_: sync_dicom())
    sync_dicom()

    seg_menu = bar.addMenu("&Segmentation")
    segment = _action(window, seg_menu, "&Segment this study", window.run_segmentation, "Ctrl+R")
    cancel = _action(window, seg_menu, "&Cancel", window.cancel_segmentation, "Esc")
    add_prepare_actions(window, seg_menu, _action)
    seg_menu.addSeparator()
    _action(window, seg_menu, "&Fine-tune the model on annotated cases…", lambda: window.models.show_finetune())
    _action(window, seg_menu, "&Models (kept versions, active model)…", lambda: window.models.show_models())
    _action(window, seg_menu, "Roll &back to the shipped model", lambda: window.models.rollback())

    help_menu = bar.addMenu("&Help")
    _action(window, help_menu, "&Keyboard shortcuts", window.show_shortcuts, "F1")

    def sync_availability() -> None:
        """Menu items that do not apply to what is shown are disabled (their shortcuts too)."""
        document = window.workspace.document
        volume, session = document.volume, document.editing.session
        checking = window.prepare.stage is Stage.REVIEW  # the mask is the brain mask, not a tumour mask
        for action in needs_study:
            action.setEnabled(volume is not None)
        for action in needs_mask:
            action.setEnabled(session is not None and not checking)
        for name, action in sequences.items():
            action.setEnabled(volume is not None and name in volume.images)
        segment.setEnabled(window.can_segment)
        cancel.setEnabled(window.segmenting)

    for signal in (window.workspace.replaced, window.workspace.session_changed, window.prepare.changed,
                   window.segmenting_changed):
        signal.connect(lambda *_: sync_availability())
    sync_availability()
    return recent, sequences


TOOL_KEYS = {Tool.NAVIGATE: ("&Navigate (move the crosshair)", "C"), Tool.BRUSH: ("&Brush", "B"),
             Tool.CLICK: ("Cl&ick correction (AI: click adds, right click removes, drag a box)", "A"),
             Tool.ERASER: ("&Eraser", "E"), Tool.FILL: ("&Fill (connected region in the slice)", "F"),
             Tool.THRESHOLD: ("&Threshold brush (intensity range)", "T"),
             Tool.RULER: ("&Ruler (distance in mm)", "M"), Tool.ROI: ("Ellipse R&OI (statistics)", "O")}


def _build_edit_menu(window: MenuHost, menu: QMenu) -> list[QAction]:
    """Undo/redo, the tools, brush size and shape, the class painted, interpolation; returns the
    actions that need a study."""
    state = window.state  # the mask is the shown study's: looked up when used
    undo = _action(window, menu, "&Undo stroke", lambda: window.editing.undo(), QKeySequence.StandardKey.Undo)
    redo = _action(window, menu, "&Redo stroke", lambda: window.editing.redo(), "Ctrl+Shift+Z")
    redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])

    def sync_history() -> None:
        session = window.editing.session
        undo.setEnabled(session is not None and session.can_undo)
        redo.setEnabled(session is not None and session.can_redo)

    window.workspace.history_changed.connect(sync_history)
    sync_history()
    menu.addSeparator()
    tools = QActionGroup(window)
    tool_actions: dict[Tool, QAction] = {}
    for tool, (text, key) in TOOL_KEYS.items():
        action = _action(window, menu, text, lambda _=False, t=tool: state.set_tool(t), key, checkable=True)
        tools.addAction(action)
        tool_actions[tool] = action
    menu.addSeparator()
    smaller = _action(window, menu, "Smaller brush", lambda: state.step_brush(larger=False), "[")
    larger = _action(window, menu, "Larger brush", lambda: state.step_brush(larger=True), "]")
    sphere = _action(window, menu, "3D &sphere brush", lambda on: state.set_brush_3d(on), "S", checkable=True)
    erase_only = _action(window, menu, "Eraser removes only the chosen class",
                         lambda on: state.set_erase_only(on), "Shift+E", checkable=True)
    menu.addSeparator()
    labels = QActionGroup(window)
    label_actions: dict[str, QAction] = {}
    for number, tissue in enumerate(TISSUES, start=1):
        action = _action(window, menu, f"Paint {tissue}", lambda _=False, t=tissue: state.set_label(t),
                         f"Alt+{number}", checkable=True)
        labels.addAction(action)
        label_actions[tissue] = action
    menu.addSeparator()
    interpolate = _action(window, menu, "&Interpolate between the last two edited slices",
                          lambda: window.editing.interpolate(), "I")

    def sync_interpolate() -> None:
        interpolate.setEnabled(window.editing.interpolation_slices() is not None)

    window.workspace.history_changed.connect(sync_interpolate)
    window.workspace.replaced.connect(lambda *_: sync_interpolate())
    sync_interpolate()

    def sync_tools() -> None:
        tool_actions[state.tool].setChecked(True)
        label_actions[state.label].setChecked(True)
        for tissue, action in label_actions.items():  # the class names of the user's convention
            action.setText(f"Paint {class_title(tissue, state.convention)}")
        sphere.setChecked(state.brush_3d)
        erase_only.setChecked(state.erase_only)

    state.edit_changed.connect(sync_tools)
    sync_tools()
    return [*tool_actions.values(), smaller, larger, sphere, erase_only, *label_actions.values()]
