"""The GUI in a process of its own: open a case, segment it (fake model), edit, then wait to be
killed with SIGKILL (for test_editing_recovery). Usage: editing_child.py CASE_DIR EXPECTED.npy"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["BRAINSEG_NO_3D"] = "1"

import numpy as np
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication


def wait(app: QApplication, condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the GUI did not get there in time")
        app.processEvents()
        time.sleep(0.005)


def open_segmented(app: QApplication, case: Path, expected: Path):
    """A window showing `case` segmented by the fake model, its settings beside `expected`."""
    from brainseg_gui.ui.main_window import MainWindow
    from tests.ui.editing_support import FakePredictor

    settings = QSettings(str(expected.with_suffix(".ini")), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings, predictor_factory=FakePredictor)
    window.show()
    window.open_study(case)
    wait(app, lambda: window.volume is not None)
    window.run_segmentation()
    wait(app, lambda: window.editing.session is not None)
    return window


def main(case: Path, expected: Path) -> None:
    app = QApplication([])
    from brainseg_gui.ui.viewer_state import Tool

    window = open_segmented(app, case, expected)
    editing, state = window.editing, window.state
    x, y, z = state.crosshair
    state.set_tool(Tool.BRUSH)
    state.set_label("ET")
    state.set_brush_mm(3.0)
    editing.press("axial", (x - 6, y, z))
    editing.move((x + 6, y, z))
    editing.release()
    state.set_tool(Tool.ERASER)
    editing.press("coronal", (x, y, z - 2))
    editing.release()
    editing.undo()
    editing.redo()
    state.set_tool(Tool.BRUSH)
    state.set_label("NCR")
    editing.press("axial", (5, 5, 3))  # a long stroke, still held when the app dies
    editing.move((15, 5, 3))
    editing.checkpoint()  # the timer's periodic write
    np.save(expected, editing.session.labels)
    print("READY", flush=True)
    time.sleep(120)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
