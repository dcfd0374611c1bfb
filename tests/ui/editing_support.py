"""Helpers for the editing tests: a fake model, a prompter that answers by itself, real mouse drags."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from brainseg_gui.core.labels import to_regions
from brainseg_gui.ml.prediction import Prediction
from brainseg_gui.ui.main_window import MainWindow
from brainseg_gui.ui.prompts import Unsaved
from tests.ui.conftest import shown_window

TIMEOUT_MS = 60_000
REPO = Path(__file__).resolve().parents[2]
#: pyqtgraph drops mouse moves closer together than its rate limit (100 Hz).
MOVE_INTERVAL_S = 0.012


class FakePredictor:
    """'Segments' a study by returning its own ground truth, minus one slab (so there is work to do)."""

    model_version = "fake-1"
    device_description = "CPU (fake)"

    def __call__(self, study, *, progress, cancel) -> Prediction:
        regions = to_regions(study.labels, study.label_convention).copy()
        regions[:, :, :, study.grid.shape[2] // 2 + 2:] = False  # the model 'misses' the top of the tumour
        progress(1.0, "done")
        return Prediction(study.case_id, study.grid, regions, None, self.model_version, "CPU", False)


class StubPrompter:
    """Answers the window's questions as told, and records them."""

    def __init__(self, restore: bool = True, unsaved: Unsaved = Unsaved.DISCARD, overwrite: bool = True) -> None:
        self.answers = {"restore": restore, "unsaved": unsaved, "overwrite": overwrite}
        self.asked: list[tuple[str, str]] = []

    def restore(self, description: str) -> bool:
        self.asked.append(("restore", description))
        return self.answers["restore"]

    def unsaved(self, action: str) -> Unsaved:
        self.asked.append(("unsaved", action))
        return self.answers["unsaved"]

    def overwrite(self, path: Path) -> bool:
        self.asked.append(("overwrite", str(path)))
        return self.answers["overwrite"]


def make_window(qtbot, settings, monkeypatch, **kwargs) -> MainWindow:
    window = shown_window(qtbot, settings, monkeypatch, size=(1400, 860), predictor_factory=FakePredictor, **kwargs)
    window.prompter = StubPrompter()
    return window


def open_and_segment(qtbot, window: MainWindow, path: Path, segment: bool = True) -> None:
    with qtbot.waitSignal(window.study_opened, timeout=TIMEOUT_MS):
        assert window.open_study(path) is not None
    if segment:
        with qtbot.waitSignal(window.segmentation_done, timeout=TIMEOUT_MS):
            assert window.run_segmentation() is not None
        qtbot.waitUntil(lambda: window.segment_panel.segment_button.isEnabled())


def drag(view, voxels: list[tuple[int, int, int]], modifier=Qt.KeyboardModifier.NoModifier) -> None:
    """Press on the first RAS voxel, move through the others, release on the last (real events)."""
    viewport = view.viewport()
    points = [view.widget_pos_of(v) for v in voxels]
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, modifier, points[0])
    for first, second in itertools.pairwise(points):
        for t in np.linspace(0.25, 1.0, 4):  # a few events per segment, as a real mouse sends
            position = QPointF(first.x() + (second.x() - first.x()) * t, first.y() + (second.y() - first.y()) * t)
            time.sleep(MOVE_INTERVAL_S)
            event = QMouseEvent(QEvent.Type.MouseMove, position, viewport.mapToGlobal(position),
                                Qt.MouseButton.NoButton, Qt.MouseButton.LeftButton, modifier)
            QApplication.sendEvent(viewport, event)
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, modifier, points[-1])


def click(view, voxel: tuple[int, int, int], modifier=Qt.KeyboardModifier.NoModifier) -> None:
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, modifier, view.widget_pos_of(voxel))


def file_value(window: MainWindow, voxel: tuple[int, int, int]) -> int:
    """The edited label at a RAS voxel (read from the file-order session mask)."""
    return int(window.editing.session.labels[window.volume.file_index(voxel)])


def kill_when_ready(child: Path, args: list[object], state_dir: Path) -> subprocess.Popen:
    """Run the GUI script `child` in a process of its own; when it prints READY, SIGKILL it (the crash
    the journal must survive). Returns the finished process."""
    env = {**os.environ, "BRAINSEG_STATE_DIR": str(state_dir), "QT_QPA_PLATFORM": "offscreen",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, str(child), *map(str, args)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        assert line.strip() == "READY", process.stderr.read()  # type: ignore[union-attr]
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    return process
