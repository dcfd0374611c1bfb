"""The GUI in a process of its own: open a case, segment it (fake model), correct it with one click of
the Click tool, then wait to be killed with SIGKILL (for test_click_tool).
Usage: click_child.py CASE_DIR EXPECTED.npy FILE_I FILE_J FILE_K"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["BRAINSEG_NO_3D"] = "1"

import numpy as np
from PySide6.QtWidgets import QApplication


def main(case: Path, expected: Path, voxel: tuple[int, int, int]) -> None:
    app = QApplication([])
    from brainseg_gui.core.click_refine import Click
    from brainseg_gui.ui.viewer_state import Tool
    from tests.ui.editing_child import open_segmented, wait

    window = open_segmented(app, case, expected)
    window.state.set_tool(Tool.CLICK)
    session = window.editing.session
    assert window.click_tool.submit(Click(voxel, "WT", True)) is not None
    wait(app, lambda: session.undo_depth == 1 and not window.click_tool.busy)
    np.save(expected, session.labels)
    print("READY", flush=True)
    time.sleep(120)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), (int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])))
