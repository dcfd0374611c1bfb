"""Correcting a mask in the window as a user does: segment, paint, erase, undo/redo with the keys,
export the NIfTI and read it back; each tool lands on the right file voxels of an LPS study."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PySide6.QtCore import Qt

from brainseg_gui.core.labels import LabelConvention, convert
from brainseg_gui.core.review import compare
from brainseg_gui.ui.overlay import Fill, OverlayLook, OverlayMode
from brainseg_gui.ui.viewer_state import Tool
from tests.ui.conftest import colour_mask, rgb
from tests.ui.editing_support import (
    TIMEOUT_MS,
    click,
    drag,
    file_value,
    make_window,
    open_and_segment,
)


@pytest.fixture
def window(qtbot, settings, monkeypatch):
    return make_window(qtbot, settings, monkeypatch)


def key(qtbot, window, sequence: str) -> None:
    """Press a shortcut as the user would (the window must be active for shortcuts)."""
    window.activateWindow()
    qtbot.waitUntil(lambda: window.isActiveWindow(), timeout=2000)
    from PySide6.QtGui import QKeySequence

    combination = QKeySequence(sequence)[0]
    qtbot.keyClick(window.grid.views[0], combination.key(), combination.keyboardModifiers())


def test_paint_erase_undo_redo_export_and_reload(qtbot, window, toy_case, tmp_path, screenshots) -> None:
    open_and_segment(qtbot, window, toy_case)
    editing = window.editing
    assert editing.active and editing.model_version == "fake-1" and not editing.unsaved
    ai = editing.session.labels.copy()
    axial = window.grid.views[0]
    z = window.state.crosshair[2]
    window.state.set_look(OverlayLook(opacity=0.8))

    key(qtbot, window, "B")
    assert window.state.tool is Tool.BRUSH
    assert window.state.look.mode is OverlayMode.TISSUES  # editing paints classes: the overlay shows them
    assert window.overlay_panel.mode_buttons[OverlayMode.TISSUES].isChecked()
    window.state.set_look(OverlayLook(opacity=0.8))  # the user may go back to regions; tools do not undo it
    key(qtbot, window, "E")
    assert window.state.look.mode is OverlayMode.REGIONS
    key(qtbot, window, "B")
    key(qtbot, window, "Alt+3")
    assert window.state.label == "ET"
    for _ in range(3):
        key(qtbot, window, "]")
    assert window.state.brush_mm == pytest.approx(6.0)  # 3 -> 4 -> 5 -> 6: a ratio of 1.25 a press
    path = [(4, 6, z), (12, 6, z), (12, 14, z)]
    drag(axial, path)
    assert editing.session.undo_depth == 1
    for voxel in [(4, 6, z), (8, 6, z), (12, 6, z), (12, 10, z), (12, 14, z)]:
        assert file_value(window, voxel) == 4, voxel  # the path of the stroke is ET in the file
    assert file_value(window, (30, 40, z)) == ai[window.volume.file_index((30, 40, z))]
    changed = np.argwhere(editing.session.labels != ai)
    assert set(changed[:, 2]) == {window.volume.file_index((0, 0, z))[2]}, "a 2D brush paints one slice"
    # the overlay the user sees holds the new ET code at the painted voxels
    shown = axial.layers["prediction"].item.image
    assert shown[8, 6] == 7 and shown[12, 12] == 7
    assert "unsaved edits" in window.windowTitle()
    window.save_screenshot(screenshots / "editing_brush.png")

    key(qtbot, window, "E")
    assert window.state.tool is Tool.ERASER
    drag(axial, [(8, 4, z), (8, 9, z)])
    assert file_value(window, (8, 6, z)) == 0
    painted = editing.session.labels.copy()
    key(qtbot, window, "Ctrl+Z")
    assert file_value(window, (8, 6, z)) == 4 and editing.session.undo_depth == 1
    key(qtbot, window, "Ctrl+Shift+Z")
    np.testing.assert_array_equal(editing.session.labels, painted)
    key(qtbot, window, "Ctrl+Z")
    key(qtbot, window, "Ctrl+Z")
    np.testing.assert_array_equal(editing.session.labels, ai)
    key(qtbot, window, "Ctrl+Y")
    key(qtbot, window, "Ctrl+Y")
    np.testing.assert_array_equal(editing.session.labels, painted)
    assert axial.layers["prediction"].item.image[8, 6] == 0

    out = tmp_path / "exports" / "toy_corrected.nii.gz"
    out.parent.mkdir()
    job = window.exporter.export_mask(out, LabelConvention.BRATS23)
    qtbot.waitUntil(lambda: job.done, timeout=TIMEOUT_MS)
    qtbot.waitUntil(lambda: not editing.unsaved)
    assert "unsaved" not in window.windowTitle()
    image = nib.load(out)
    source = nib.load(toy_case / "toy_seg.nii.gz")
    assert np.array_equal(image.affine, source.affine)
    assert image.shape == source.shape
    written = np.asarray(image.dataobj)
    np.testing.assert_array_equal(written, convert(painted, LabelConvention.BRATS, LabelConvention.BRATS23))
    assert set(np.unique(written)) <= {0, 1, 2, 3}
    sidecar = (out.parent / "toy_corrected.json").read_text()
    assert '"model_version": "fake-1"' in sidecar and '"edited": true' in sidecar
    window.save_screenshot(screenshots / "editing_exported.png")


def test_each_tool_lands_on_the_right_file_voxels(qtbot, window, toy_case) -> None:
    open_and_segment(qtbot, window, toy_case)
    editing, state, volume = window.editing, window.state, window.volume
    session = editing.session
    x, y, z = state.crosshair

    # fill: a hole punched in the ED of this slice is filled back, and nothing else
    state.set_tool(Tool.ERASER)
    state.set_brush_mm(0.5)
    editing.press("axial", (x, y, z))
    editing.release()
    assert file_value(window, (x, y, z)) == 0
    state.set_tool(Tool.FILL)
    state.set_label("NCR")
    editing.press("axial", (x, y, z))
    assert file_value(window, (x, y, z)) == 1
    assert (session.labels != session.ai).sum() == 1  # the one-voxel hole, nothing around it

    # threshold brush: paints only voxels whose T1ce lies in the range
    state.set_sequence("t1ce")
    state.set_tool(Tool.THRESHOLD)
    panel = window.edit_panel
    window_low, window_high = state.windows["t1ce"]  # no range yet: the panel shows the window it uses
    assert (panel.low_box.value(), panel.high_box.value()) == pytest.approx((window_low, window_high), abs=0.05)
    state.set_label("ED")
    state.set_brush_mm(20.0)
    t1ce = volume.images["t1ce"]
    state.set_threshold(550, 650)
    assert (panel.low_box.value(), panel.high_box.value()) == (550, 650)  # the bright marker only (600)
    before = session.labels.copy()
    editing.press("coronal", (x, 40, z))
    editing.release()
    changed = np.argwhere(session.labels != before)
    assert len(changed) > 0
    file_t1ce = volume.study.images["t1ce"]
    assert all(file_t1ce[tuple(v)] == 600 for v in changed)
    assert np.count_nonzero(t1ce == 600) > 0

    # 3D sphere: several slices at once, centred where clicked
    state.set_tool(Tool.BRUSH)
    state.set_brush_3d(True)
    state.set_brush_mm(4.0)
    state.set_label("ET")
    editing.press("sagittal", (5, 5, 5))
    editing.move((5, 5, 5))
    editing.release()
    assert file_value(window, (5, 5, 5)) == 4
    assert file_value(window, (5, 5, 6)) == 4 and file_value(window, (5, 5, 4)) == 4  # 4 mm slices: +-1
    assert file_value(window, (5, 5, 7)) != 4  # 4 mm brush, 4 mm slices: one slice each way
    assert file_value(window, (7, 5, 5)) == 4 and file_value(window, (8, 5, 5)) != 4  # 1.5 mm in x

    # interpolation between two painted axial slices
    state.set_brush_3d(False)
    state.set_label("NCR")
    state.set_brush_mm(3.0)
    low, high = 2, 8
    for slice_z in (low, high):
        state.set_crosshair((30, 30, slice_z))
        editing.press("axial", (30, 30, slice_z))
        editing.release()
    assert editing.interpolation_slices() == ("axial", low, high)
    assert window.edit_panel.interpolate_button.isEnabled()
    before = session.labels.copy()
    assert editing.interpolate()
    for slice_z in range(low, high + 1):
        assert file_value(window, (30, 30, slice_z)) == 1, slice_z
    window.edit_panel.undo_button.click()
    np.testing.assert_array_equal(session.labels, before)

    # shapes that do not overlap: said, and nothing changes
    state.set_crosshair((8, 8, 4))
    editing.press("axial", (8, 8, 4))
    editing.release()
    assert editing.interpolation_slices() == ("axial", 4, high)
    said: list[str] = []
    editing.message.connect(said.append)
    unchanged, depth = session.labels.copy(), session.undo_depth
    assert not editing.interpolate()
    assert said and "do not overlap" in said[-1]
    np.testing.assert_array_equal(session.labels, unchanged)
    assert session.undo_depth == depth


def test_ctrl_click_moves_the_crosshair_while_a_tool_is_chosen(qtbot, window, toy_case) -> None:
    open_and_segment(qtbot, window, toy_case)
    window.state.set_tool(Tool.BRUSH)
    axial = window.grid.views[0]
    z = window.state.crosshair[2]
    click(axial, (6, 7, z), Qt.KeyboardModifier.ControlModifier)
    assert window.state.crosshair == (6, 7, z)
    assert window.editing.session.undo_depth == 0
    click(axial, (20, 20, z))
    assert window.editing.session.undo_depth == 1
    assert window.state.crosshair == (6, 7, z)


def test_editing_without_a_segmentation_starts_from_the_label_file(qtbot, window, toy_case) -> None:
    open_and_segment(qtbot, window, toy_case, segment=False)
    assert not window.editing.active
    window.state.set_tool(Tool.BRUSH)
    z = window.state.crosshair[2]
    click(window.grid.views[0], (2, 2, z))
    editing = window.editing
    assert editing.active and editing.model_version is None and "label file" in editing.base
    truth = window.volume.study.labels
    assert (editing.session.labels != truth).sum() > 0
    assert window.overlay_panel.source_checks["prediction"].isEnabled()


def test_review_mode_shows_dice_and_steps_to_the_differences(qtbot, window, toy_case, screenshots) -> None:
    open_and_segment(qtbot, window, toy_case)
    editing, state, review = window.editing, window.state, window.review_panel
    x, y, z = state.crosshair
    state.set_tool(Tool.BRUSH)
    state.set_label("ET")
    state.set_brush_mm(6.0)
    editing.press("axial", (x, y, z + 2))  # the slab the fake model missed: big difference there
    editing.release()
    state.set_brush_mm(1.5)
    editing.press("axial", (3, 3, 1))
    editing.release()
    window.set_layout("single", "axial")
    qtbot.waitExposed(window.grid.views[0])
    qtbot.wait(50)  # the new view takes its place before the picture
    assert state.shown["truth"]
    review.set_active(True)
    assert state.shown["original"] and not state.shown["truth"]  # two outlines in one colour: truth hidden
    assert not window.overlay_panel.source_checks["truth"].isChecked()
    qtbot.wait(20)
    assert window.edit_dock.isVisible()  # the panel is on screen, down to its buttons
    assert not review.table.visibleRegion().isEmpty() and not review.next_button.visibleRegion().isEmpty()
    expected = compare(editing.session.ai, editing.session.labels)
    for row, region in enumerate(("WT", "TC", "ET")):
        assert float(review.cell(row, 3)) == pytest.approx(expected.dice[region], abs=1e-3)
    index, count = review.step(1)
    assert index == z + 2 and state.crosshair[2] == z + 2 and count > 10
    assert review.step(1)[0] == 1
    assert review.step(-1)[0] == z + 2
    view = window.grid.views[0]
    assert view.layers["original"].item.isVisible()
    window.state.set_fill("prediction", Fill.FILLED)
    window.state.set_look(OverlayLook(opacity=1.0))
    window.save_screenshot(screenshots / "editing_review.png")
    pixels = rgb(view.grab())
    assert colour_mask(pixels, (255, 61, 61), 90).sum() > 10
    review.set_active(False)
    assert not state.shown["original"] and state.shown["truth"]


def test_shortcuts_dialog_lists_every_tool(qtbot, window) -> None:
    dialog = window.show_shortcuts()
    qtbot.addWidget(dialog)
    rows = dialog.texts()
    keys = {keys for _, keys, _ in rows}
    for expected in ("B", "E", "F", "T", "C", "I", "S", "[", "]", "V", "N", "Shift+N", "Alt+1", "Alt+2",
                     "Alt+3", "Ctrl+E", "F1"):
        assert any(expected in k.split(", ") for k in keys), expected
    assert any("Ctrl+Z" in k for k in keys) and any("Ctrl+Shift+Z" in k for k in keys)
    assert any("Right drag" in k for _, k, _ in rows)
    # the classes are named as in the user's label convention, in the menu and so in Help
    window.state.set_convention(LabelConvention.BRATS23)
    does = {text for _, _, text in window.show_shortcuts().texts()}
    assert "Paint NETC non-enhancing core (1)" in does and "Paint ET enhancing tumour (3)" in does


def test_brush_keys_step_by_a_ratio_on_the_half_millimetre_grid(qtbot) -> None:
    from brainseg_gui.ui.viewer_state import BRUSH_MM_RANGE, ViewerState

    state = ViewerState()
    state.set_brush_mm(3.0)
    sizes = []
    for _ in range(10):
        state.step_brush(larger=True)
        sizes.append(state.brush_mm)
    assert sizes == [4.0, 5.0, 6.0, 7.5, 9.5, 12.0, 15.0, 19.0, 24.0, 30.0]
    for _ in range(30):
        state.step_brush(larger=False)
    assert state.brush_mm == BRUSH_MM_RANGE[0]  # small brushes still move by half a millimetre
    state.step_brush(larger=True)
    assert state.brush_mm == 1.0
    for _ in range(30):
        state.step_brush(larger=True)
    assert state.brush_mm == BRUSH_MM_RANGE[1]
