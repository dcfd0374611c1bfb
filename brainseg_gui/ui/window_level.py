"""Window width and level of the shown sequence, typed as numbers (two spin boxes, W and L).

Radiologists read and set contrast as W/L: width = high - low, level = the window's centre. The
boxes follow `ViewerState.windows[state.sequence]` (a right drag in a view, a preset, a sequence
switch update them) and write back through `set_window`, so the views change as a value is entered.
"""

from __future__ import annotations

import math

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QWidget

from brainseg_gui.ui.viewer_state import ViewerState

#: The largest intensity magnitude the boxes accept (MRI values are arbitrary scanner units).
LIMIT = 1e7


def window_of(width: float, level: float) -> tuple[float, float]:
    """(low, high) of a window given as width and level (centre)."""
    return level - width / 2, level + width / 2


def width_level(low: float, high: float) -> tuple[float, float]:
    """(width, level) of a (low, high) window."""
    return high - low, (high + low) / 2


def decimals_for(width: float) -> int:
    """Enough decimals to step a window of this width in ~1% steps: 0 for scanner units, 3 for 0-1 data."""
    if width <= 0:
        return 2
    return min(max(2 - math.floor(math.log10(width)), 0), 4)


class WindowLevelBox(QWidget):
    """'W [width] L [level]' for the active sequence; Enter (or leaving a box) applies a typed value."""

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        self.width_box, self.level_box = QDoubleSpinBox(), QDoubleSpinBox()
        for title, box, tip in (("W", self.width_box, "Window width: the intensity range shown from black to white"),
                                ("L", self.level_box, "Window level: the intensity shown mid-grey")):
            label = QLabel(title)
            label.setToolTip(tip)
            box.setToolTip(f"{tip} (type a value and press Enter; right-drag in a view adjusts it too)")
            box.setKeyboardTracking(False)  # one change per typed value, not one per digit
            # focus only when clicked: at start or by Tab the arrows and Page keys must keep stepping
            # slices in the views, not step the window
            box.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
            box.setMinimumWidth(90)
            box.setAccelerated(True)
            layout.addWidget(label)
            layout.addWidget(box)
        self.width_box.setRange(1e-4, 2 * LIMIT)
        self.level_box.setRange(-LIMIT, LIMIT)
        self.width_box.valueChanged.connect(lambda width: self._edited(width=width))
        self.level_box.valueChanged.connect(lambda level: self._edited(level=level))
        state.sequence_changed.connect(self._follow)
        state.window_changed.connect(self._on_window)
        self._follow()

    def set_width_level(self, width: float, level: float) -> None:
        """Set the active sequence's window by width and level (what typing in the boxes does)."""
        low, high = window_of(max(width, 1e-4), level)
        self.state.set_window(self.state.sequence, low, high)

    def _edited(self, width: float | None = None, level: float | None = None) -> None:
        """One box changed: the other value stays exactly the state's (the box shows it rounded)."""
        window = self.state.windows.get(self.state.sequence)
        if window is not None:
            old_width, old_level = width_level(*window)
            self.set_width_level(old_width if width is None else width, old_level if level is None else level)

    def _on_window(self, name: str) -> None:
        if name == self.state.sequence:
            self._follow()

    def _follow(self, *_: object) -> None:
        window = self.state.windows.get(self.state.sequence)
        self.setEnabled(window is not None)
        if window is None:
            return
        width, level = width_level(*window)
        decimals = decimals_for(width)
        step = 10.0 ** -decimals if decimals else max(1.0, 10 ** math.floor(math.log10(width)) / 100)
        for box, value in ((self.width_box, width), (self.level_box, level)):
            box.blockSignals(True)
            box.setDecimals(decimals)
            box.setSingleStep(step)
            box.setValue(value)
            box.blockSignals(False)
