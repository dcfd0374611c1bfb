"""What the viewer remembers between studies and between runs: layout, main plane, linked zoom,
the sequence shown and the window preset (QSettings).

The window's absolute width and level are not carried over: MR intensities have no fixed scale,
so the preset (a percentile rule) is what a new study starts from.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings

from brainseg_gui.app.display_volume import WINDOW_PRESETS
from brainseg_gui.core.study import SEQUENCES
from brainseg_gui.ui.sequence_bar import SequenceBar
from brainseg_gui.ui.viewer_state import PLANES, Layout, ViewerState

KEYS = {"layout": "view/layout", "plane": "view/main_plane", "link": "view/link_views",
        "sequence": "view/sequence", "preset": "view/window_preset"}


def remember_view(state: ViewerState, sequence_bar: SequenceBar, settings: QSettings) -> None:
    """Restore the saved view settings (values that are not valid any more are ignored) and save
    each one when the user changes it."""
    layout, plane = str(settings.value(KEYS["layout"], state.layout.value)), str(settings.value(KEYS["plane"], ""))
    if layout in {item.value for item in Layout}:
        state.set_layout(Layout(layout), plane if plane in PLANES else None)
    state.set_link_views(settings.value(KEYS["link"], state.link_views, type=bool))
    sequence = str(settings.value(KEYS["sequence"], state.sequence))
    if sequence in SEQUENCES:
        state.sequence = sequence  # no study yet: the first one opened shows it if it has it
    preset = str(settings.value(KEYS["preset"], sequence_bar.preset))
    if preset in WINDOW_PRESETS:
        sequence_bar.preset = preset
        sequence_bar.presets.setCurrentText(preset)

    def save(key: str, value: object) -> None:
        settings.setValue(KEYS[key], value)

    state.layout_changed.connect(lambda: (save("layout", state.layout.value), save("plane", state.main_plane)))
    state.link_views_changed.connect(lambda on: save("link", bool(on)))
    state.sequence_changed.connect(lambda name: save("sequence", name))
    sequence_bar.preset_chosen.connect(lambda name: save("preset", name))
