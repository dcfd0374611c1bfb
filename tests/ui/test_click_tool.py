"""The Click tool as a user drives it: a click where the mask misses the tumour adds it in 3D, a right
click removes a wrong blob, a drag re-segments a box from the model's probabilities; each is one
undoable, journaled step (a SIGKILL right after a click is restored), regions stay nested, and a
click made while a correction runs neither waits on the GUI thread nor corrupts the mask."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from scipy import ndimage

from brainseg_gui.core.journal import read_journal
from brainseg_gui.core.labels import LabelConvention, to_regions
from brainseg_gui.ml.prediction import Prediction
from brainseg_gui.ui import click_tool as click_module
from brainseg_gui.ui.viewer_state import Tool
from tests.ui.editing_support import (
    TIMEOUT_MS,
    FakePredictor,
    click,
    drag,
    kill_when_ready,
    make_window,
    open_and_segment,
)

CHILD = Path(__file__).with_name("click_child.py")
SHOTS = Path("/tmp/brainseg-shots/click")
MISSED_FROM_K = 12  # FakePredictor drops file slices k >= shape[2] // 2 + 2 of the toy's tumour


class ProbabilityPredictor(FakePredictor):
    """The fake model's mask (top of the tumour missed), with probabilities that know the whole tumour."""

    def __call__(self, study, *, progress, cancel, keep_probabilities: bool = False) -> Prediction:
        prediction = super().__call__(study, progress=progress, cancel=cancel)
        truth = to_regions(study.labels, study.label_convention)
        smooth = [ndimage.gaussian_filter(region.astype(np.float32), (1.0, 1.0, 0.5)) for region in truth]
        probabilities = np.clip(np.stack(smooth), 0, 1).astype(np.float16) if keep_probabilities else None
        return Prediction(study.case_id, study.grid, np.array(prediction.regions), probabilities,
                          self.model_version, "CPU", False)


@pytest.fixture
def window(qtbot, settings, monkeypatch):
    return make_window(qtbot, settings, monkeypatch)


def truth_regions(window) -> np.ndarray:
    study = window.volume.study
    return to_regions(study.labels, study.label_convention)


def ras_of(window, voxel: tuple[int, int, int]) -> tuple[int, int, int]:
    """The RAS (view) voxel of a file voxel."""
    box = window.editing.ras_box(tuple(slice(v, v + 1) for v in voxel))
    return box[0].start, box[1].start, box[2].start


def missed_centre(window) -> tuple[int, int, int]:
    """A file voxel in the middle of the tumour, on a slice the model missed."""
    k = MISSED_FROM_K + 1
    inside = np.argwhere(truth_regions(window)[0][:, :, k])
    i, j = np.rint(inside.mean(axis=0)).astype(int)
    return int(i), int(j), k


def choose_click_tool(window, target: str) -> None:
    window.state.set_tool(Tool.CLICK)
    window.state.set_click_target(target)


def wait_corrected(qtbot, window, gesture) -> object:
    """Do a gesture that starts a correction; wait for its result (the file box written, or None)."""
    with qtbot.waitSignal(window.click_tool.finished, timeout=TIMEOUT_MS) as blocker:
        gesture()
    return blocker.args[0]


def assert_nested(labels: np.ndarray) -> None:
    wt, tc, et = to_regions(labels, LabelConvention.BRATS)
    assert not (et & ~tc).any() and not (tc & ~wt).any()


def undo_action(window):
    return next(a for a in window.actions() if a.text() == "&Undo stroke")


def test_the_click_tool_is_in_the_edit_tab(qtbot, window, toy_case) -> None:
    open_and_segment(qtbot, window, toy_case)
    panel = window.edit_panel
    button = panel.tool_buttons[Tool.CLICK]
    assert button.text() == "Click (AI) (A)"
    tip = button.toolTip()
    assert "left click adds" in tip and "right click removes" in tip and "box" in tip
    assert not panel.click_target_box.isEnabled()
    window.activateWindow()
    qtbot.waitUntil(lambda: window.isActiveWindow(), timeout=2000)
    qtbot.keyClick(window.grid.views[0], Qt.Key.Key_A)
    assert window.state.tool is Tool.CLICK and button.isChecked()
    assert panel.click_target_box.isEnabled()
    panel.click_target_box.setCurrentIndex(panel.click_target_box.findData("TC"))
    assert window.state.click_target == "TC" and window.click_tool.target() == "TC"
    window.state.set_click_target("label")
    window.state.set_label("NCR")
    assert window.click_tool.target() == "NCR"
    rows = window.show_shortcuts().texts()
    assert any(keys == "A" and "Click correction" in does for _, keys, does in rows)
    assert any("Click tool: right click" in keys for _, keys, _ in rows)
    SHOTS.mkdir(parents=True, exist_ok=True)
    window.save_screenshot(SHOTS / "edit_tab_click_tool.png")

    # a left drag shows the box it spans on the slice, and re-segments it when released
    window.state.set_click_target("WT")
    axial = window.grid.view("axial")
    x, y, z = window.state.crosshair
    scene = [axial.mapToScene(axial.widget_pos_of(v)) for v in [(x - 6, y - 6, z), (x + 6, y + 4, z)]]
    axial.edit_at(scene[0], start=True)
    axial.edit_at(scene[1])
    assert axial.drag_box.isVisible()
    rect = axial.drag_box.rect()
    assert (rect.width(), rect.height()) == (13, 11)
    window.save_screenshot(SHOTS / "click_box_drag.png")
    wait_corrected(qtbot, window, axial.finish_edit)
    assert not axial.drag_box.isVisible()
    assert window.editing.session._undo[-1].name == "click WT box"


def test_a_click_where_the_mask_misses_adds_in_3d_and_undo_restores(qtbot, window, toy_case) -> None:
    open_and_segment(qtbot, window, toy_case)
    editing = window.editing
    assert window.click_tool.prior is None  # the fake model keeps no probabilities: sequences alone
    before = editing.session.labels.copy()
    target = missed_centre(window)
    assert before[target] == 0
    ras = ras_of(window, target)
    window.move_crosshair(ras)
    choose_click_tool(window, "WT")
    axial = window.grid.view("axial")
    window.state.set_shown("truth", False)  # the pictures show the edited mask alone
    SHOTS.mkdir(parents=True, exist_ok=True)
    axial.grab().save(str(SHOTS / "click_before_axial.png"))
    window.save_screenshot(SHOTS / "click_before.png")

    strokes: list[None] = []
    editing.stroke_finished.connect(lambda: strokes.append(None))  # what refreshes the 3D view
    box = wait_corrected(qtbot, window, lambda: click(axial, ras))
    assert len(strokes) == 1
    after = editing.session.labels.copy()
    added = (after > 0) & (before == 0)
    assert box is not None and added[target]
    assert len(np.unique(np.argwhere(added)[:, 2])) > 1, "a click corrects in 3D, not one slice"
    wt = truth_regions(window)[0]
    assert (added & wt).sum() > 0.8 * added.sum()  # what it adds is the missed tumour
    assert not ((after != before) & (before > 0)).any()  # a positive WT click only adds
    assert_nested(after)
    # the views show it, as after a brush stroke
    assert axial.layers["prediction"].item.image[ras[0], ras[1]] != 0
    np.testing.assert_array_equal(window.grid.prediction, editing.code_ras)
    assert "unsaved edits" in window.windowTitle()
    assert editing.session.undo_depth == 1 and editing.session._undo[-1].name == "click WT +"
    assert read_journal(editing.journal.path).strokes == 1  # journaled as it happened
    assert "voxels changed" in window.statusBar().currentMessage()
    axial.grab().save(str(SHOTS / "click_after_axial.png"))
    window.save_screenshot(SHOTS / "click_after.png")

    undo_action(window).trigger()  # Edit > Undo
    np.testing.assert_array_equal(editing.session.labels, before)
    assert axial.layers["prediction"].item.image[ras[0], ras[1]] == 0


def test_a_right_click_removes_a_wrong_blob(qtbot, window, toy_case) -> None:
    open_and_segment(qtbot, window, toy_case)
    editing, state = window.editing, window.state
    ai = editing.session.labels.copy()
    blob_file = (6, 30, 6)  # in the brain, far from the tumour
    ras = ras_of(window, blob_file)
    window.move_crosshair(ras)
    state.set_tool(Tool.BRUSH)
    state.set_label("ED")
    state.set_brush_3d(True)
    state.set_brush_mm(3.0)
    editing.press("axial", ras)
    editing.release()
    with_blob = editing.session.labels.copy()
    assert with_blob[blob_file] == 2 and (with_blob != ai).sum() > 10
    window_level = dict(state.windows)

    choose_click_tool(window, "WT")
    axial = window.grid.view("axial")
    wait_corrected(qtbot, window, lambda: QTest.mouseClick(
        axial.viewport(), Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier, axial.widget_pos_of(ras)))
    np.testing.assert_array_equal(editing.session.labels, ai)  # the blob is gone, nothing else changed
    assert state.windows == window_level  # a right click is not a window/level drag
    assert editing.session.undo_depth == 2 and editing.session._undo[-1].name == "click WT -"
    editing.undo()
    np.testing.assert_array_equal(editing.session.labels, with_blob)


def test_a_dragged_box_resegments_from_the_model_probabilities(qtbot, settings, monkeypatch, toy_case) -> None:
    monkeypatch.setenv("BRAINSEG_NO_3D", "1")
    from brainseg_gui.ui.main_window import MainWindow
    from tests.ui.editing_support import StubPrompter

    window = MainWindow(settings=settings, predictor_factory=ProbabilityPredictor)
    window.prompter = StubPrompter()
    qtbot.addWidget(window)
    window.resize(1400, 860)
    window.show()
    qtbot.waitExposed(window)
    open_and_segment(qtbot, window, toy_case)
    tool, editing = window.click_tool, window.editing
    assert tool.prior is not None and tool.prior.shape == (3, *window.volume.study.grid.shape)
    before = editing.session.labels.copy()
    centre = missed_centre(window)
    ras = ras_of(window, centre)
    window.move_crosshair(ras)
    choose_click_tool(window, "WT")
    axial = window.grid.view("axial")
    corners = [(ras[0] - 8, ras[1] - 8, ras[2]), (ras[0] + 8, ras[1] + 8, ras[2])]
    box = wait_corrected(qtbot, window, lambda: drag(axial, corners))
    assert box is not None and editing.session._undo[-1].name == "click WT box"
    after = editing.session.labels
    wt = truth_regions(window)[0]
    written = editing.session._undo[-1]
    assert written.size > 0
    region = tuple(slice(max(0, c - 8), c + 9) for c in centre[:2]) + (slice(centre[2] - 2, centre[2] + 2),)
    agree_before = ((before > 0) == wt)[region].mean()
    agree_after = ((after > 0) == wt)[region].mean()
    assert agree_after > agree_before + 0.1 and agree_after > 0.9
    changed_slices = np.unique(np.argwhere(after != before)[:, 2])
    assert len(changed_slices) > 1  # the box reaches through neighbouring slices
    assert_nested(after)
    editing.undo()
    np.testing.assert_array_equal(editing.session.labels, before)

    # the prior belongs to the shown study's last segmentation: gone once a study is opened
    editing.close_session(discard=True)
    open_and_segment(qtbot, window, toy_case, segment=False)
    assert tool.prior is None


def test_label_clicks_keep_the_regions_nested(qtbot, window, toy_case) -> None:
    open_and_segment(qtbot, window, toy_case)
    editing = window.editing
    centre = missed_centre(window)
    window.move_crosshair(ras_of(window, centre))
    choose_click_tool(window, "label")
    for label, positive in (("ET", True), ("NCR", True), ("ED", False)):
        window.state.set_label(label)
        wait_corrected(qtbot, window, lambda p=positive: window.click_tool.click(ras_of(window, centre), positive=p))
        assert_nested(editing.session.labels)
    names = [delta.name for delta in editing.session._undo]  # a click that changes nothing adds no step
    assert names[0] == "click ET +" and set(names) <= {"click ET +", "click NCR +", "click ED -"}
    assert editing.session.labels[centre] == 4


def test_clicks_while_a_correction_runs_are_ignored_and_a_stale_result_is_dropped(
        qtbot, window, toy_case, monkeypatch) -> None:
    open_and_segment(qtbot, window, toy_case)
    editing, tool, state = window.editing, window.click_tool, window.state
    gate = threading.Event()
    real = click_module.apply_click

    def held(*args, **kwargs):
        assert gate.wait(30), "the test never released the correction"
        return real(*args, **kwargs)

    monkeypatch.setattr(click_module, "apply_click", held)
    centre = missed_centre(window)
    ras = ras_of(window, centre)
    window.move_crosshair(ras)
    choose_click_tool(window, "WT")
    first = tool.click(ras)
    assert first is not None and tool.busy
    assert window.statusBar().currentMessage().startswith("Correcting")
    assert tool.click(ras) is None and tool.click(ras, positive=False) is None  # ignored, said so
    assert "ignored" in window.statusBar().currentMessage()
    # the GUI thread is free meanwhile: the user paints with the brush
    state.set_tool(Tool.BRUSH)
    state.set_label("ET")
    editing.press("axial", (2, 2, ras[2]))
    editing.release()
    painted = editing.session.labels.copy()
    with qtbot.waitSignal(tool.finished, timeout=TIMEOUT_MS) as blocker:
        gate.set()
    assert blocker.args[0] is None and not tool.busy
    np.testing.assert_array_equal(editing.session.labels, painted)  # the stale result was dropped
    assert editing.session.undo_depth == 1 and "dropped" in window.statusBar().currentMessage()
    # and the next click works, from the mask as it is now
    state.set_tool(Tool.CLICK)
    wait_corrected(qtbot, window, lambda: tool.click(ras))
    assert editing.session.undo_depth == 2 and editing.session.labels[centre] > 0
    assert (editing.session.labels[painted > 0] > 0).all()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_a_click_survives_a_kill(qtbot, settings, monkeypatch, toy_case, tmp_path, private_state) -> None:
    window = make_window(qtbot, settings, monkeypatch)
    open_and_segment(qtbot, window, toy_case, segment=False)
    centre = missed_centre(window)
    window.close()
    expected_file = tmp_path / "expected.npy"
    kill_when_ready(CHILD, [toy_case, expected_file, *centre], private_state)
    expected = np.load(expected_file)

    window = make_window(qtbot, settings, monkeypatch)
    open_and_segment(qtbot, window, toy_case, segment=False)
    assert window.prompter.asked and window.prompter.asked[0][0] == "restore"
    session = window.editing.session
    np.testing.assert_array_equal(session.labels, expected)
    assert expected[centre] > 0 and session.undo_depth == 1 and session._undo[-1].name == "click WT +"
    session_ai = session.ai.copy()
    window.editing.undo()
    np.testing.assert_array_equal(session.labels, session_ai)
