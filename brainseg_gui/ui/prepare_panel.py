"""The Prepare step's controls: the readiness banner, Prepare / Cancel with progress, the brain-mask
check (tools, erode / dilate, redo with other settings, accept) and the scanner-space view.

The panel only shows the `PrepareController`'s state and calls its methods; the menus call the
same methods, so both always agree.
"""

from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from brainseg_gui.core.brain_extraction import BrainExtractionParams
from brainseg_gui.core.prepare import MIN_BRAIN_ML
from brainseg_gui.core.readiness import MAX_BRAIN_ML, PREPARE_HINT
from brainseg_gui.core.study import SEQUENCES
from brainseg_gui.ui.prepare_controller import PrepareController, Stage
from brainseg_gui.ui.slice_view import SEQUENCE_TITLES
from brainseg_gui.ui.viewer_state import BRUSH_MM_RANGE, Tool, ViewerState

#: Banner colours (background, text) per stage; readable on the dark theme and the plain one.
BANNER_STYLE = {
    Stage.NOT_READY: ("#5c3b00", "#ffe3ad"),
    Stage.READY: ("#173d25", "#b9f0c8"),
    Stage.REVIEW: ("#16324f", "#cfe5ff"),
    Stage.SCANNER: ("#16324f", "#cfe5ff"),
    Stage.CHECKING: ("#2a2e36", "#d8dadf"),
    Stage.UNKNOWN: ("#2a2e36", "#d8dadf"),
}
ADJUST_MM = (0.5, 10.0)


class PreparePanel(QGroupBox):
    attention_wanted = Signal()  # keep this panel in sight (the window raises its dock)

    def __init__(self, controller: PrepareController, state: ViewerState, parent=None) -> None:
        super().__init__("Raw studies: prepare for the model", parent)
        self.controller = controller
        self.state = state
        layout = QVBoxLayout(self)

        self.banner = QLabel("")
        self.banner.setObjectName("readinessBanner")
        self.banner.setWordWrap(True)
        self.banner.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.banner)

        self.single_row = QWidget()
        single = QHBoxLayout(self.single_row)
        single.setContentsMargins(0, 0, 0, 0)
        single.addWidget(QLabel("Its only series is"))
        self.single_box = QComboBox()
        for name in SEQUENCES:
            self.single_box.addItem(SEQUENCE_TITLES[name], name)
        self.single_box.setToolTip("A lone image file is read as FLAIR (its name says nothing more): say what it is "
                                   "before preparing. A DICOM study's series are classed from their headers.")
        self.single_box.activated.connect(lambda index: controller.set_single_sequence(self.single_box.itemData(index)))
        single.addWidget(self.single_box, 1)
        layout.addWidget(self.single_row)

        buttons = QHBoxLayout()
        self.prepare_button = QPushButton("Prepare study…")
        self.prepare_button.setToolTip("Co-register the sequences to T1ce, resample to 1 mm, extract the brain "
                                       "(Ctrl+Shift+P)")
        self.prepare_button.clicked.connect(controller.ask_prepare)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(controller.cancel)
        self.recheck_button = QPushButton("Check the brain mask again…")
        self.recheck_button.setToolTip("Show this prepared study's brain mask over the unmasked images to adjust it")
        self.recheck_button.clicked.connect(controller.recheck)
        buttons.addWidget(self.prepare_button)
        buttons.addWidget(self.recheck_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        layout.addWidget(self.progress)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)

        self.review_box = self._review_controls()
        layout.addWidget(self.review_box)
        self.scanner_box = self._scanner_controls()
        layout.addWidget(self.scanner_box)

        controller.changed.connect(self.sync)
        controller.progress.connect(self._progressed)
        controller.message.connect(self.message.setText)
        state.edit_changed.connect(self._sync_tools)
        controller.context.workspace.history_changed.connect(self._sync_volumes)
        self.sync()

    # ---- building ----------------------------------------------------------------------------
    def _review_controls(self) -> QWidget:
        box = QWidget()
        column = QVBoxLayout(box)
        column.setContentsMargins(0, 0, 0, 0)
        decide = QHBoxLayout()
        self.accept_button = QPushButton("Accept the brain mask")
        self.accept_button.setToolTip("Write the prepared study with this mask and open it for segmentation")
        self.accept_button.setDefault(True)
        self.accept_button.clicked.connect(self.controller.accept)
        self.back_button = QPushButton("Back to the original")
        self.back_button.clicked.connect(self.controller.back_to_original)
        decide.addWidget(self.accept_button)
        decide.addWidget(self.back_button)
        column.addLayout(decide)
        hint = QLabel("Green is the brain. Paint what is missing, erase what is not brain (skull, scalp, "
                      "eyes, neck); Ctrl+Z undoes. More tools under Edit and review.")
        hint.setWordWrap(True)
        column.addWidget(hint)
        tools = QHBoxLayout()
        self.tool_buttons: dict[Tool, QPushButton] = {}
        for tool, title in ((Tool.NAVIGATE, "Navigate (C)"), (Tool.BRUSH, "Brush (B)"), (Tool.ERASER, "Eraser (E)")):
            button = QPushButton(title)
            button.setCheckable(True)
            button.clicked.connect(lambda _=False, t=tool: self._choose_tool(t))
            self.tool_buttons[tool] = button
            tools.addWidget(button)
        column.addLayout(tools)
        brush = QHBoxLayout()
        brush.addWidget(QLabel("Brush radius"))
        self.brush_box = QDoubleSpinBox()
        self.brush_box.setRange(*BRUSH_MM_RANGE)
        self.brush_box.setSingleStep(0.5)
        self.brush_box.setSuffix(" mm")
        self.brush_box.setToolTip("[ smaller, ] larger")
        self.brush_box.valueChanged.connect(self.state.set_brush_mm)
        brush.addWidget(self.brush_box, 1)
        self.sphere_check = QCheckBox("3D ball")
        self.sphere_check.setToolTip("Paint through neighbouring slices too (S)")
        self.sphere_check.toggled.connect(self.state.set_brush_3d)
        brush.addWidget(self.sphere_check)
        column.addLayout(brush)

        grow = QHBoxLayout()
        self.adjust_box = QDoubleSpinBox()
        self.erode_button = QPushButton("Erode")
        self.erode_button.setToolTip("Shrink the whole mask by the distance (one undoable step)")
        self.erode_button.clicked.connect(lambda: self.controller.adjust(-self.adjust_box.value()))
        self.dilate_button = QPushButton("Dilate")
        self.dilate_button.setToolTip("Grow the whole mask by the distance (one undoable step)")
        self.dilate_button.clicked.connect(lambda: self.controller.adjust(self.adjust_box.value()))
        self.adjust_box.setRange(*ADJUST_MM)
        self.adjust_box.setSingleStep(0.5)
        self.adjust_box.setValue(1.0)
        self.adjust_box.setSuffix(" mm")
        for widget in (self.erode_button, self.dilate_button, self.adjust_box):
            grow.addWidget(widget)
        column.addLayout(grow)

        redo = QGroupBox("Extract again with other settings")
        form = QFormLayout(redo)
        defaults = BrainExtractionParams()
        self.threshold_box = QDoubleSpinBox()
        self.threshold_box.setRange(0.05, 0.95)
        self.threshold_box.setSingleStep(0.05)
        self.threshold_box.setValue(defaults.fractional_threshold)
        self.threshold_box.setToolTip("Where the brain surface stops: smaller keeps more (a larger brain)")
        form.addRow("Boundary threshold", self.threshold_box)
        self.tissue_box = QDoubleSpinBox()
        self.tissue_box.setRange(0.05, 0.95)
        self.tissue_box.setSingleStep(0.05)
        self.tissue_box.setValue(defaults.tissue_threshold)
        self.tissue_box.setToolTip("Darkest tissue kept inside the surface (0 background, 1 brain level)")
        form.addRow("Tissue threshold", self.tissue_box)
        self.grow_box = QDoubleSpinBox()
        self.grow_box.setRange(-10.0, 10.0)
        self.grow_box.setSingleStep(0.5)
        self.grow_box.setSuffix(" mm")
        self.grow_box.setValue(defaults.adjust_mm)
        self.grow_box.setToolTip("Grow (+) or shrink (−) the extracted mask")
        form.addRow("Grow / shrink", self.grow_box)
        self.stripped_check = QCheckBox("Already skull-stripped (mask = non-zero region)")
        form.addRow(self.stripped_check)
        self.redo_button = QPushButton("Extract again")
        self.redo_button.clicked.connect(self.redo)
        form.addRow(self.redo_button)
        column.addWidget(redo)

        return box

    def _scanner_controls(self) -> QWidget:
        box = QWidget()
        column = QVBoxLayout(box)
        column.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Scanner space:"))
        self.sequence_box = QComboBox()
        for name in SEQUENCES:
            self.sequence_box.addItem(SEQUENCE_TITLES[name], name)
        self.sequence_box.setCurrentIndex(SEQUENCES.index("t1ce"))
        row.addWidget(self.sequence_box, 1)
        self.map_button = QPushButton("Show the mask there")
        self.map_button.setToolTip("Map the mask onto this sequence's original grid (inverse registration); "
                                   "exports then write on that grid")
        self.map_button.clicked.connect(lambda: self.controller.map_back(self.sequence_box.currentData()))
        row.addWidget(self.map_button)
        column.addLayout(row)
        self.return_button = QPushButton("Back to the prepared study")
        self.return_button.clicked.connect(self.controller.back_to_prepared)
        column.addWidget(self.return_button)
        self.volumes = QLabel("")
        self.volumes.setWordWrap(True)
        column.addWidget(self.volumes)
        return box

    # ---- actions -----------------------------------------------------------------------------
    def _choose_tool(self, tool: Tool) -> None:
        self.state.set_tool(tool)
        self.attention_wanted.emit()  # choosing a tool raises the edit dock: keep Accept in sight

    def redo(self) -> None:
        params = BrainExtractionParams(**{**self.controller.options.brain.as_dict(),
                                          "centre_ras": self.controller.options.brain.centre_ras,
                                          "fractional_threshold": self.threshold_box.value(),
                                          "tissue_threshold": self.tissue_box.value(),
                                          "adjust_mm": self.grow_box.value()})
        self.controller.redo(params, skull_strip=not self.stripped_check.isChecked())

    # ---- following the controller ------------------------------------------------------------
    def sync(self) -> None:
        c = self.controller
        stage, busy = c.stage, c.busy is not None
        self.setVisible(stage is not Stage.NONE or busy)
        self._show_banner()
        self.prepare_button.setVisible(c.record is None and stage in (Stage.NOT_READY, Stage.UNKNOWN, Stage.READY))
        self.prepare_button.setEnabled(c.can_prepare)
        self.prepare_button.setText("Prepare study…" if stage is not Stage.READY else "Prepare anyway…")
        self.recheck_button.setVisible(c.record is not None and stage in (Stage.NOT_READY, Stage.READY,
                                                                         Stage.UNKNOWN))
        self.recheck_button.setEnabled(c.can_recheck)
        single = c.single_sequence
        self.single_row.setVisible(single is not None and c.can_prepare)
        if single is not None:
            self.single_box.setCurrentIndex(self.single_box.findData(single))
        self.cancel_button.setVisible(busy)
        self.cancel_button.setEnabled(busy)
        self.progress.setVisible(busy)
        if busy:
            self.message.setText(c.busy or "")
        self.review_box.setVisible(stage is Stage.REVIEW)
        for widget in (self.erode_button, self.dilate_button, self.redo_button, self.accept_button,
                       self.back_button):
            widget.setEnabled(stage is Stage.REVIEW and not busy)
        self.scanner_box.setVisible(c.record is not None)
        self.map_button.setEnabled(c.can_map_back)
        self.sequence_box.setEnabled(c.can_map_back)
        if c.record is not None:
            present = [name for name in SEQUENCES if name in c.record.sequences]
            for index in range(self.sequence_box.count()):
                item = self.sequence_box.model().item(index)  # type: ignore[attr-defined]
                item.setEnabled(self.sequence_box.itemData(index) in present)
            if c.scanner is not None:  # the grid shown
                self.sequence_box.setCurrentIndex(self.sequence_box.findData(c.scanner.sequence))
            elif present and self.sequence_box.currentData() not in present:
                self.sequence_box.setCurrentIndex(self.sequence_box.findData(present[0]))
        self.return_button.setVisible(stage is Stage.SCANNER)
        self.return_button.setEnabled(stage is Stage.SCANNER and not busy)
        self._sync_tools()
        self._sync_volumes()

    def _show_banner(self) -> None:
        c = self.controller
        stage = c.stage
        if stage is Stage.NOT_READY and c.readiness is not None and c.record is not None:
            items = "".join(f"<br>• {escape(problem)}" for problem in c.readiness.problems)
            text = (f"<b>Prepared, but not BraTS-ready</b>:{items}<br>If the brain mask kept skull or scalp, "
                    "check it again.")
        elif stage is Stage.NOT_READY and c.readiness is not None:
            problems = c.readiness.problems
            if c.busy is not None:  # keep the progress in sight: the list is long
                text = f"<b>Not BraTS-ready</b> ({len(problems)} problem{'s' if len(problems) != 1 else ''})."
            else:
                items = "".join(f"<br>• {escape(problem)}" for problem in problems)
                text = ("<b>Not BraTS-ready</b>: the model was trained on co-registered, 1 mm, skull-stripped "
                        f"studies.{items}<br>Prepare it before segmenting.")
        elif stage is Stage.READY:
            text = ("<b>Prepared and BraTS-ready.</b> Segment it (Ctrl+R); then the mask can be shown in "
                    "scanner space." if c.record is not None else "<b>BraTS-ready</b>: segment it as it is.")
            if c.record is not None and c.record.missing:
                names = ", ".join(SEQUENCE_TITLES[name] for name in c.record.missing)
                text += f"<br>• Missing {escape(names)}: the model needs all four sequences."
        elif stage is Stage.CHECKING:
            text = "Checking whether the study is BraTS-ready…"
        elif stage is Stage.UNKNOWN:
            text = f"Could not check whether the study is BraTS-ready. If it is raw: {escape(PREPARE_HINT)}."
        elif stage is Stage.REVIEW and c.review is not None:
            volume = c.brain_ml()
            text = (f"<b>Check the brain mask</b> of {escape(c.review.prepared.case_id)}: "
                    f"{volume:.0f} mL, {escape(c.review.grid.describe())}. Accept, adjust or extract again "
                    "before segmentation.")
            if not MIN_BRAIN_ML <= volume <= MAX_BRAIN_ML:  # follows the edits
                larger = volume > MAX_BRAIN_ML
                advice = ("erase skull, scalp or neck, or extract again with a higher" if larger
                          else "paint what is missing, or extract again with a lower")
                text += (f"<br>• {'More' if larger else 'Less'} than a brain ({MIN_BRAIN_ML:.0f}-{MAX_BRAIN_ML:.0f} "
                         f"mL): {advice} boundary threshold.")
            notes = [w for w in c.review.prepared.record.data.get("warnings", []) if "extracted brain is" not in w]
            text += "".join(f"<br>• {escape(str(note))}" for note in notes)
        elif stage is Stage.SCANNER and c.scanner is not None:
            text = (f"<b>Scanner space</b>: the mask on the original {SEQUENCE_TITLES[c.scanner.sequence]} grid "
                    f"({escape(c.scanner.volume.study.grid.describe())}). File › Export writes on this grid.")
        else:
            text = ""
        background, colour = BANNER_STYLE.get(stage, ("transparent", "palette(text)"))
        self.banner.setStyleSheet(f"QLabel#readinessBanner {{ background: {background}; color: {colour}; "
                                  "border-radius: 4px; padding: 6px; }")
        self.banner.setText(text)
        self.banner.setVisible(bool(text))

    def _progressed(self, fraction: float, text: str) -> None:
        self.progress.setValue(round(1000 * min(max(fraction, 0.0), 1.0)))
        self.message.setText(text)

    def _sync_tools(self) -> None:
        for tool, button in self.tool_buttons.items():
            button.setChecked(self.state.tool is tool)
        self.brush_box.blockSignals(True)
        self.brush_box.setValue(self.state.brush_mm)
        self.brush_box.blockSignals(False)
        self.sphere_check.blockSignals(True)
        self.sphere_check.setChecked(self.state.brush_3d)
        self.sphere_check.blockSignals(False)

    def _sync_volumes(self) -> None:
        c = self.controller
        if c.stage is Stage.REVIEW:
            self._show_banner()
            return
        volumes = c.volumes_ml() if c.record is not None else None
        self.volumes.setVisible(volumes is not None)
        if volumes is None:
            return
        where = (f"original {SEQUENCE_TITLES[c.scanner.sequence]} grid" if c.stage is Stage.SCANNER
                 and c.scanner is not None else "prepared grid")
        self.volumes.setText(f"On the {where}: " + ", ".join(f"{name} {ml:.1f} mL" for name, ml in volumes.items()))


def add_prepare_actions(window, menu, action) -> None:
    """The Prepare step's menu entries (Segmentation menu); `action` is menus' action factory.

    They follow the controller: each is enabled only when it can act."""
    controller: PrepareController = window.prepare
    menu.addSeparator()
    prepare = action(window, menu, "&Prepare study (co-register, 1 mm, brain mask)…", controller.ask_prepare,
                     "Ctrl+Shift+P")
    recheck = action(window, menu, "Check the brain mask &again…", controller.recheck)
    accept = action(window, menu, "&Accept the brain mask", controller.accept)
    scanner = action(window, menu, "Show the mask in scanner space (T1ce grid)",
                     lambda: controller.map_back("t1ce"))
    back = action(window, menu, "Back to the prepared study", controller.back_to_prepared)

    def sync() -> None:
        prepare.setEnabled(controller.can_prepare)
        recheck.setEnabled(controller.can_recheck)
        accept.setEnabled(controller.stage is Stage.REVIEW and controller.busy is None)
        scanner.setEnabled(controller.can_map_back and controller.record is not None
                           and "t1ce" in controller.record.sequences)
        back.setEnabled(controller.stage is Stage.SCANNER and controller.busy is None)

    controller.changed.connect(sync)
    sync()
