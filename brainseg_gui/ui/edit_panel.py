"""Edit controls: tools (with the AI Click tool and what it acts on), the class painted (in the user's label convention), brush size and shape,
eraser and threshold options, interpolation, undo/redo, and what the session has changed so far.

The panel follows `ViewerState` (tool, brush, label, threshold, convention) and writes back to it;
the menus' shortcuts change the same state, so both always agree.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSlider,
    QToolButton,
    QVBoxLayout,
)

from brainseg_gui.app.document import Workspace
from brainseg_gui.app.editing import Editing
from brainseg_gui.core.labels import TISSUES, LabelConvention
from brainseg_gui.ui.click_tool import TOOLTIP as CLICK_TOOLTIP
from brainseg_gui.ui.overlay import Fill, label_colour
from brainseg_gui.ui.overlay_panel import swatch
from brainseg_gui.ui.viewer_state import BRUSH_MM_RANGE, CLICK_TARGETS, Tool, ViewerState

#: What each tissue class is called in each convention (the value is added from the convention).
CLASS_NAMES: dict[LabelConvention, dict[str, str]] = {
    LabelConvention.BRATS: {"NCR": "NCR necrotic / non-enhancing core", "ED": "ED oedema",
                            "ET": "ET enhancing tumour"},
    LabelConvention.BRATS23: {"NCR": "NETC non-enhancing core", "ED": "SNFH oedema (FLAIR hyperintensity)",
                              "ET": "ET enhancing tumour"},
    LabelConvention.MSD: {"NCR": "Non-enhancing tumour", "ED": "Edema", "ET": "Enhancing tumour"},
}
TOOL_TITLES = {Tool.NAVIGATE: ("Navigate", "C"), Tool.BRUSH: ("Brush", "B"), Tool.CLICK: ("Click (AI)", "A"),
               Tool.ERASER: ("Eraser", "E"), Tool.FILL: ("Fill", "F"), Tool.THRESHOLD: ("Threshold brush", "T")}
#: The Click tool's targets as the panel names them ("label": the class chosen below).
CLICK_TARGET_TITLES = {"label": "the class chosen below", "WT": "WT whole tumour", "TC": "TC tumour core",
                       "ET": "ET enhancing tumour"}


def class_title(tissue: str, convention: LabelConvention) -> str:
    """'ED oedema (2)': the class's name and its value in the convention."""
    return f"{CLASS_NAMES[convention][tissue]} ({convention.tissue_values[tissue]})"


class EditPanel(QGroupBox):
    @property
    def editing(self) -> Editing:
        """The shown study's editing (a new study, a new one)."""
        return self.workspace.document.editing

    def __init__(self, state: ViewerState, workspace: Workspace, parent=None) -> None:
        super().__init__("Edit the mask", parent)
        self.state = state
        self.workspace = workspace
        outer = QVBoxLayout(self)

        tools = QGridLayout()
        self.tool_group = QButtonGroup(self)
        self.tool_buttons: dict[Tool, QToolButton] = {}
        for index, (tool, (title, key)) in enumerate(TOOL_TITLES.items()):
            button = QToolButton()
            button.setText(f"{title} ({key})")
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            button.setCheckable(True)
            button.setToolTip(CLICK_TOOLTIP if tool is Tool.CLICK else f"{title} ({key})")
            button.clicked.connect(lambda _=False, t=tool: state.set_tool(t))
            self.tool_group.addButton(button)
            self.tool_buttons[tool] = button
            tools.addWidget(button, index // 3, index % 3)
        outer.addLayout(tools)

        click_row = QHBoxLayout()
        click_row.addWidget(QLabel("Click (AI) acts on"))
        self.click_target_box = QComboBox()
        for target in CLICK_TARGETS:
            self.click_target_box.addItem(CLICK_TARGET_TITLES[target], target)
        self.click_target_box.setToolTip("The region a click adds to, removes from or re-segments; "
                                         "regions stay nested (ET in TC in WT)")
        self.click_target_box.currentIndexChanged.connect(
            lambda index: state.set_click_target(self.click_target_box.itemData(index)))
        click_row.addWidget(self.click_target_box, 1)
        outer.addLayout(click_row)

        convention_row = QHBoxLayout()
        convention_row.addWidget(QLabel("Labels as"))
        self.convention_box = QComboBox()
        self.convention_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.convention_box.setMinimumContentsLength(14)
        for convention in LabelConvention:
            self.convention_box.addItem(convention.description, convention)
        self.convention_box.currentIndexChanged.connect(
            lambda index: state.set_convention(self.convention_box.itemData(index)))
        convention_row.addWidget(self.convention_box, 1)
        outer.addLayout(convention_row)

        self.label_group = QButtonGroup(self)
        self.label_buttons: dict[str, QRadioButton] = {}
        for number, tissue in enumerate(TISSUES, start=1):
            button = QRadioButton()
            button.setToolTip(f"Paint this class (Alt+{number})")
            button.toggled.connect(lambda on, t=tissue: on and state.set_label(t))
            self.label_group.addButton(button)
            self.label_buttons[tissue] = button
            outer.addWidget(button)

        brush = QGridLayout()
        self.brush_label = QLabel()
        self.brush_slider = QSlider(Qt.Orientation.Horizontal)
        low, high = BRUSH_MM_RANGE
        self.brush_slider.setRange(int(low * 2), int(high * 2))  # half-mm steps
        self.brush_slider.setToolTip("Brush radius ([ smaller, ] larger)")
        self.brush_slider.valueChanged.connect(lambda v: state.set_brush_mm(v / 2))
        brush.addWidget(self.brush_label, 0, 0)
        brush.addWidget(self.brush_slider, 0, 1)
        self.sphere_check = QCheckBox("3D sphere (S)")
        self.sphere_check.setToolTip("Paint a ball through neighbouring slices instead of a disc in one")
        self.sphere_check.toggled.connect(state.set_brush_3d)
        self.erase_only_check = QCheckBox("Eraser removes only the chosen class (Shift+E)")
        self.erase_only_check.toggled.connect(state.set_erase_only)
        brush.addWidget(self.sphere_check, 1, 0, 1, 2)
        brush.addWidget(self.erase_only_check, 2, 0, 1, 2)
        outer.addLayout(brush)

        threshold = QHBoxLayout()
        threshold.addWidget(QLabel("Range"))
        self.low_box, self.high_box = QDoubleSpinBox(), QDoubleSpinBox()
        for box in (self.low_box, self.high_box):
            box.setMaximumWidth(110)
            box.setRange(-1e7, 1e7)
            box.setDecimals(1)
            box.setKeyboardTracking(False)
            box.valueChanged.connect(self._threshold_edited)
            threshold.addWidget(box)
        self.window_button = QPushButton("From window")
        self.window_button.setToolTip("Take the range from the shown sequence's display window")
        self.window_button.clicked.connect(self.threshold_from_window)
        threshold.addWidget(self.window_button)
        outer.addLayout(threshold)

        commands = QHBoxLayout()
        self.interpolate_button = QPushButton("Interpolate (I)")
        self.interpolate_button.clicked.connect(lambda: self.editing.interpolate())
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("Ctrl+Z")
        self.undo_button.clicked.connect(lambda: self.editing.undo())
        self.redo_button = QPushButton("Redo")
        self.redo_button.setToolTip("Ctrl+Shift+Z")
        self.redo_button.clicked.connect(lambda: self.editing.redo())
        for button in (self.interpolate_button, self.undo_button, self.redo_button):
            commands.addWidget(button)
        outer.addLayout(commands)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        outer.addWidget(self.status)

        state.edit_changed.connect(self._sync)
        state.overlay_changed.connect(self._sync_colours)
        state.window_changed.connect(self._sync_range)
        state.sequence_changed.connect(self._sync_range)
        workspace.history_changed.connect(self._sync_history)
        workspace.session_changed.connect(self._sync_history)
        self._sync()
        self._sync_colours()
        self._sync_history()

    def threshold_from_window(self) -> None:
        low, high = self.state.windows.get(self.state.sequence, (0.0, 1.0))
        self.state.set_threshold(low, high)

    def _threshold_edited(self, _value: float) -> None:
        self.state.set_threshold(self.low_box.value(), self.high_box.value())

    def _sync_colours(self) -> None:
        """Each class's swatch in the colour the overlay draws it (regions mode: NCR as TC, ED as WT)."""
        for tissue, button in self.label_buttons.items():
            button.setIcon(swatch(label_colour(tissue, self.state.look), Fill.FILLED))

    def _sync(self) -> None:
        state = self.state
        button = self.tool_buttons.get(state.tool)
        if button is not None:
            button.setChecked(True)
        else:  # a measuring tool (ui/measure_panel.py): no edit tool is checked
            self.tool_group.setExclusive(False)
            for other in self.tool_buttons.values():
                other.setChecked(False)
            self.tool_group.setExclusive(True)
        self.click_target_box.blockSignals(True)
        self.click_target_box.setCurrentIndex(self.click_target_box.findData(state.click_target))
        self.click_target_box.blockSignals(False)
        self.click_target_box.setEnabled(state.tool is Tool.CLICK)
        index = self.convention_box.findData(state.convention)
        self.convention_box.blockSignals(True)
        self.convention_box.setCurrentIndex(index)
        self.convention_box.blockSignals(False)
        for tissue, button in self.label_buttons.items():
            button.blockSignals(True)
            button.setText(class_title(tissue, state.convention))
            button.setChecked(tissue == state.label)
            button.blockSignals(False)
        self.brush_slider.blockSignals(True)
        self.brush_slider.setValue(round(state.brush_mm * 2))
        self.brush_slider.blockSignals(False)
        self.brush_label.setText(f"Brush {state.brush_mm:g} mm")
        for check, value in ((self.sphere_check, state.brush_3d), (self.erase_only_check, state.erase_only)):
            check.blockSignals(True)
            check.setChecked(value)
            check.blockSignals(False)
        self._sync_range()
        threshold_on = state.tool is Tool.THRESHOLD
        for widget in (self.low_box, self.high_box, self.window_button):
            widget.setEnabled(threshold_on)
        self._sync_history()

    def _sync_range(self, *_: object) -> None:
        """Until a range is set, the threshold brush uses the shown sequence's window: show that."""
        shown_range = self.state.threshold or self.state.windows.get(self.state.sequence)
        if shown_range is not None:
            for box, value in zip((self.low_box, self.high_box), shown_range):
                box.blockSignals(True)
                box.setValue(value)
                box.blockSignals(False)

    def _sync_history(self) -> None:
        editing = self.editing
        session = editing.session
        self.undo_button.setEnabled(session is not None and session.can_undo)
        self.redo_button.setEnabled(session is not None and session.can_redo)
        chosen = editing.interpolation_slices()
        self.interpolate_button.setEnabled(chosen is not None)
        self.interpolate_button.setToolTip(
            f"Fill the chosen class between {chosen[0]} slices {chosen[1] + 1} and {chosen[2] + 1} (I)"
            if chosen else "Edit two slices of one plane first, then interpolate between them (I)")
        if session is None:
            self.status.setText("Choose a tool and paint on a slice: editing starts from the segmentation "
                                "(or the study's label map, or an empty mask).")
            return
        origin = f"model {editing.model_version}" if editing.model_version else editing.base
        state = "unsaved edits" if editing.unsaved else "all exported" if editing.last_export else "no edits"
        self.status.setText(f"Editing the mask from {origin}: {session.undo_depth} undoable stroke"
                            f"{'s' if session.undo_depth != 1 else ''}, {state}.")
