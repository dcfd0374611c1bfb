"""Sequence buttons (T1, T1ce, T2, FLAIR; keys 1-4), the window presets of the active one and its
window width / level typed as numbers (`window_level.WindowLevelBox`): the contrast controls in one row."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QButtonGroup, QComboBox, QHBoxLayout, QLabel, QPushButton, QWidget

from brainseg_gui.app.display_volume import DEFAULT_PRESET, WINDOW_PRESETS, DisplayVolume
from brainseg_gui.core.study import SEQUENCES
from brainseg_gui.ui.slice_view import SEQUENCE_TITLES
from brainseg_gui.ui.viewer_state import ViewerState
from brainseg_gui.ui.window_level import WindowLevelBox


class SequenceBar(QWidget):
    preset_chosen = Signal(str)  # the user chose a window preset (the window remembers it)

    def __init__(self, state: ViewerState, parent=None) -> None:
        super().__init__(parent)
        self.state = state
        self.volume: DisplayVolume | None = None
        self.preset = DEFAULT_PRESET  # the preset a new study's windows start from
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        self.buttons: dict[str, QPushButton] = {}
        for number, name in enumerate(SEQUENCES, start=1):
            button = QPushButton(SEQUENCE_TITLES[name])
            button.setCheckable(True)
            button.setToolTip(f"Show {SEQUENCE_TITLES[name]} (key {number})")
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.clicked.connect(lambda _=False, n=name: state.set_sequence(n))
            self.group.addButton(button)
            self.buttons[name] = button
            layout.addWidget(button)
        layout.addSpacing(12)
        layout.addWidget(QLabel("Window:"))
        self.presets = QComboBox()
        self.presets.addItems(list(WINDOW_PRESETS))
        self.presets.setToolTip("Window/level from the percentiles of this sequence's brain voxels "
                                "(right-drag in a view to adjust by hand)")
        self.presets.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.presets.activated.connect(lambda _index: self.choose_preset(self.presets.currentText()))
        layout.addWidget(self.presets)
        layout.addSpacing(6)
        self.window_level = WindowLevelBox(state)
        layout.addWidget(self.window_level)
        layout.addStretch(1)
        state.sequence_changed.connect(self._on_sequence)
        self.set_volume(None)

    def set_volume(self, volume: DisplayVolume | None) -> None:
        self.volume = volume
        for name, button in self.buttons.items():
            button.setEnabled(volume is not None and name in volume.images)
        self.presets.setEnabled(volume is not None)
        self.presets.setCurrentText(self.preset)
        self._on_sequence(self.state.sequence)

    def choose_preset(self, preset: str) -> None:
        """The user's preset: applied now, and every study opened later starts from it."""
        if preset in WINDOW_PRESETS:
            self.preset = preset
            self.apply_preset(preset)
            self.preset_chosen.emit(preset)

    def apply_preset(self, preset: str) -> None:
        """Set the active sequence's window from a percentile preset."""
        if self.volume is None or self.state.sequence not in self.volume.images:
            return
        low, high = self.volume.window(self.state.sequence, preset)
        self.state.set_window(self.state.sequence, low, high)

    def _on_sequence(self, name: str) -> None:
        button = self.buttons.get(name)
        if button is not None:
            button.setChecked(True)
