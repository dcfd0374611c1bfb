"""Overlay controls and legend: sources (prediction, ground truth) and their styles, regions or
raw labels, per-class toggles with their colours, opacity."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QRadioButton,
    QSlider,
    QVBoxLayout,
)

from brainseg_gui.core.region_colours import LONG_NAMES
from brainseg_gui.ui.overlay import CLASSES, Fill, OverlayMode, colour_of
from brainseg_gui.ui.viewer_state import ViewerState

SOURCE_TITLES = {"prediction": "Prediction", "truth": "Ground truth"}


def swatch(rgb: tuple[int, int, int], fill: Fill, size: int = 14) -> QIcon:
    """A small square in a class colour, filled or outlined like the overlay."""
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    colour = QColor(*rgb)
    if fill is Fill.FILLED:
        painter.fillRect(1, 1, size - 2, size - 2, colour)
    else:
        painter.setPen(QPen(colour, 2))
        painter.drawRect(2, 2, size - 4, size - 4)
    painter.end()
    return QIcon(pixmap)


class OverlayPanel(QGroupBox):
    def __init__(self, state: ViewerState, parent=None) -> None:
        super().__init__("Overlays", parent)
        self.state = state
        outer = QVBoxLayout(self)

        sources = QFormLayout()
        self.source_checks: dict[str, QCheckBox] = {}
        self.fill_boxes: dict[str, QComboBox] = {}
        for name in ("prediction", "truth"):
            check = QCheckBox(SOURCE_TITLES[name])
            check.setChecked(state.shown[name])
            check.toggled.connect(lambda on, n=name: state.set_shown(n, on))
            fill = QComboBox()
            fill.addItems([f.value for f in Fill])
            fill.setCurrentText(state.fills[name].value)
            fill.currentTextChanged.connect(lambda text, n=name: state.set_fill(n, Fill(text)))
            self.source_checks[name], self.fill_boxes[name] = check, fill
            sources.addRow(check, fill)
        outer.addLayout(sources)

        modes = QHBoxLayout()
        self.mode_group = QButtonGroup(self)
        self.mode_buttons: dict[OverlayMode, QRadioButton] = {}
        for mode, text in ((OverlayMode.REGIONS, "Regions WT/TC/ET"), (OverlayMode.TISSUES, "Labels NCR/ED/ET")):
            button = QRadioButton(text)
            button.setChecked(state.look.mode is mode)
            button.toggled.connect(lambda on, m=mode: on and state.set_look(replace(state.look, mode=m)))
            self.mode_group.addButton(button)
            self.mode_buttons[mode] = button
            modes.addWidget(button)
        outer.addLayout(modes)

        self.class_checks: list[QCheckBox] = []
        for _ in range(3):
            check = QCheckBox()
            check.toggled.connect(self._on_class_toggled)
            self.class_checks.append(check)
            outer.addWidget(check)

        opacity = QHBoxLayout()
        opacity.addWidget(QLabel("Opacity"))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(round(state.look.opacity * 100))
        self.opacity.valueChanged.connect(lambda v: state.set_look(replace(state.look, opacity=v / 100.0)))
        opacity.addWidget(self.opacity)
        outer.addLayout(opacity)

        self.legend = QLabel()
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        outer.addWidget(self.legend)
        state.overlay_changed.connect(self._sync)
        self.set_available(prediction=False, truth=False)
        self._sync()

    def set_available(self, *, prediction: bool, truth: bool) -> None:
        """Grey out sources the study does not have (no ground truth, not yet segmented)."""
        for name, present in (("prediction", prediction), ("truth", truth)):
            self.source_checks[name].setEnabled(present)
            self.fill_boxes[name].setEnabled(present)
            self.source_checks[name].setToolTip("" if present else
                                                "Run Segment first" if name == "prediction"
                                                else "This study has no ground truth")
        self._sync()

    def set_class_visible(self, name: str, visible: bool) -> None:
        """Toggle one region or tissue class (by name, e.g. 'ET'), as its checkbox does."""
        visible_set = set(self.state.look.visible)
        (visible_set.add if visible else visible_set.discard)(name)
        self.state.set_look(replace(self.state.look, visible=frozenset(visible_set)))

    def _on_class_toggled(self, _on: bool) -> None:
        mode = self.state.look.mode
        visible = set(self.state.look.visible) - set(CLASSES[mode])
        for check, name in zip(self.class_checks, CLASSES[mode]):
            if check.isChecked():
                visible.add(name)
        self.state.set_look(replace(self.state.look, visible=frozenset(visible)))

    def _sync(self) -> None:
        """Follow the state: labels, colours and checks of the current mode; the legend."""
        look = self.state.look
        self.mode_buttons[look.mode].setChecked(True)
        fill = self.state.fills["prediction"]
        for check, name in zip(self.class_checks, CLASSES[look.mode]):
            check.blockSignals(True)
            check.setText(f"{name}  {LONG_NAMES[name]}")
            check.setIcon(swatch(colour_of(name, look.mode), fill))
            check.setChecked(name in look.visible)
            check.blockSignals(False)
        self.opacity.blockSignals(True)
        self.opacity.setValue(round(look.opacity * 100))
        self.opacity.blockSignals(False)
        for name in ("prediction", "truth"):
            self.fill_boxes[name].blockSignals(True)
            self.fill_boxes[name].setCurrentText(self.state.fills[name].value)
            self.fill_boxes[name].blockSignals(False)
            self.source_checks[name].blockSignals(True)  # review mode hides the truth through the state
            self.source_checks[name].setChecked(self.state.shown[name])
            self.source_checks[name].blockSignals(False)
        self.legend.setText(self._legend_html())

    def _legend_html(self) -> str:
        look = self.state.look
        rows = []
        for name in CLASSES[look.mode]:
            r, g, b = colour_of(name, look.mode)
            shown = name in look.visible
            rows.append(f"<span style='color: rgb({r},{g},{b}); font-size: 14pt'>&#9632;</span> "
                        f"{name}{'' if shown else ' (hidden)'}")
        styles = [f"{SOURCE_TITLES[source]}: {self.state.fills[source].value}"
                  for source in ("prediction", "truth") if self.source_checks[source].isEnabled()]
        return "&nbsp;&nbsp;".join(rows) + ("<br>" + " · ".join(styles) if styles else "")
