"""Slice views on the toy study: orientation, aspect, overlays in real pixels, mouse and keys."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from brainseg_gui.app.display_volume import DisplayVolume
from brainseg_gui.ui.overlay import COLOURS, Fill, OverlayLook
from brainseg_gui.ui.slice_view import SliceView
from brainseg_gui.ui.viewer_state import ViewerState
from tests.ui.conftest import colour_mask, rgb

SIZE = 400


@pytest.fixture
def setup(qtbot, toy_study):
    volume = DisplayVolume.from_study(toy_study)
    state = ViewerState()
    views = {}
    for plane in ("axial", "coronal", "sagittal"):
        view = SliceView(state, plane)
        qtbot.addWidget(view)
        view.resize(SIZE, SIZE)
        view.set_volume(volume)
        view.show()
        views[plane] = view
    state.reset(volume.shape, volume.centre(), {n: volume.window(n) for n in volume.sequences}, "t1ce")
    state.set_look(OverlayLook(opacity=1.0))
    state.set_fill("truth", Fill.FILLED)
    state.set_shown("truth", True)
    for view in views.values():
        qtbot.waitExposed(view)
        view.reset_zoom()
    return volume, state, views


def picture(view: SliceView) -> np.ndarray:
    view.repaint()
    return rgb(view.grab())


def centroid(mask: np.ndarray) -> tuple[float, float]:
    rows, columns = np.nonzero(mask)
    return float(rows.mean()), float(columns.mean())


def test_axial_is_radiological_with_anterior_up(setup) -> None:
    volume, state, views = setup
    state.set_crosshair((volume.shape[0] // 2, volume.shape[1] // 2, volume.shape[2] // 2 + 1))
    pixels = picture(views["axial"])
    marker = (pixels.min(axis=-1) > 235)  # the 600 marker, clipped white; labels are smaller
    marker[:40] = marker[-40:] = False
    marker[:, :40] = marker[:, -40:] = False
    row, column = centroid(marker)
    assert column < SIZE / 2, "the patient's right must be on the screen's left"
    assert row < SIZE / 2, "anterior must be at the top"
    tumour = colour_mask(pixels, COLOURS["WT"])
    row, column = centroid(tumour)
    assert column < SIZE / 2 and row < SIZE / 2


def test_coronal_and_sagittal_orientation(setup) -> None:
    _volume, _state, views = setup
    for plane, horizontal_is_left in (("coronal", True), ("sagittal", True)):
        pixels = picture(views[plane])
        tumour = colour_mask(pixels, COLOURS["ET"]) | colour_mask(pixels, COLOURS["WT"]) \
            | colour_mask(pixels, COLOURS["TC"])
        assert tumour.sum() > 50, plane
        row, column = centroid(tumour)
        # tumour is right (coronal: screen left), anterior (sagittal: screen left) and superior (up)
        assert (column < SIZE / 2) == horizontal_is_left, plane
        assert row < SIZE / 2, plane


def test_anisotropic_voxels_keep_their_aspect(setup) -> None:
    """The tumour is a sphere in mm: in the coronal view (x by 4 mm z) it must look round."""
    _volume, _state, views = setup
    pixels = picture(views["coronal"])
    tumour = colour_mask(pixels, COLOURS["WT"]) | colour_mask(pixels, COLOURS["TC"]) \
        | colour_mask(pixels, COLOURS["ET"])
    rows, columns = np.nonzero(tumour)
    height, width = np.ptp(rows) + 1, np.ptp(columns) + 1
    assert 0.75 < height / width < 1.33, (height, width)


def test_overlay_pixels_follow_toggles_and_fill(setup) -> None:
    _volume, state, views = setup
    view = views["axial"]
    et_filled = colour_mask(picture(view), COLOURS["ET"]).sum()
    assert et_filled > 20
    state.set_look(OverlayLook(visible=frozenset({"WT", "TC"}), opacity=1.0))
    hidden = picture(view)
    assert colour_mask(hidden, COLOURS["ET"]).sum() == 0
    assert colour_mask(hidden, COLOURS["TC"]).sum() > et_filled  # TC now covers the ET voxels
    state.set_look(OverlayLook(opacity=1.0))
    state.set_fill("truth", Fill.OUTLINE)
    outlined = colour_mask(picture(view), COLOURS["WT"]).sum()
    state.set_fill("truth", Fill.FILLED)
    filled = colour_mask(picture(view), COLOURS["WT"]).sum()
    assert 0 < outlined < filled
    state.set_shown("truth", False)
    assert colour_mask(picture(view), COLOURS["WT"]).sum() == 0


def test_prediction_and_truth_drawn_together(setup) -> None:
    volume, state, views = setup
    prediction = np.zeros(volume.shape, dtype=np.uint8)
    _x, _y, z = state.crosshair
    prediction[2:8, 2:8, z] = 1  # a WT-only square far from the tumour, at the screen's top right
    state.set_fill("truth", Fill.OUTLINE)
    views["axial"].set_prediction(prediction)
    pixels = picture(views["axial"])
    wt = colour_mask(pixels, COLOURS["WT"])
    assert wt[:, SIZE // 2:].sum() > 100  # the filled prediction square
    assert wt[:, : SIZE // 2].sum() > 20  # the truth outline


def test_click_wheel_and_keys_move_the_crosshair(qtbot, setup) -> None:
    _volume, state, views = setup
    view = views["axial"]
    target = (10, 30, state.crosshair[2])
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.widget_pos_of(target))
    assert state.crosshair == target
    before = picture(views["coronal"])
    assert views["coronal"].state.crosshair[1] == 30
    qtbot.keyClick(view, Qt.Key.Key_PageUp)
    assert state.crosshair[2] == target[2] + 1
    qtbot.keyClick(view, Qt.Key.Key_PageDown)
    qtbot.keyClick(view, Qt.Key.Key_PageDown)
    assert state.crosshair[2] == target[2] - 1
    view.box.wheelEvent(_Wheel(120))
    assert state.crosshair[2] == target[2]
    # the coronal view moved its vertical line with the click: its picture changed
    state.set_crosshair((20, 30, target[2]))
    assert not np.array_equal(before, picture(views["coronal"]))


def test_right_drag_changes_the_window(setup) -> None:
    _volume, state, views = setup
    view = views["axial"]
    start = state.windows["t1ce"]
    view.drag_window(start, dx=100, dy=0)
    low, high = state.windows["t1ce"]
    assert high - low > (start[1] - start[0]) * 1.5
    assert view.image.levels[0] == pytest.approx(low)


def test_sequence_switch_changes_the_image(setup) -> None:
    volume, state, views = setup
    view = views["axial"]
    z = state.crosshair[2]
    state.set_sequence("flair")
    np.testing.assert_array_equal(view.image.image, volume.images["flair"][:, :, z])
    assert "FLAIR" in view.title.textItem.toPlainText()


class _Wheel:
    """The two things the view box reads from pyqtgraph's wheel event."""

    def __init__(self, delta: int) -> None:
        self._delta = delta

    def delta(self) -> int:
        return self._delta

    def modifiers(self):
        return Qt.KeyboardModifier.NoModifier

    def accept(self) -> None:
        pass


