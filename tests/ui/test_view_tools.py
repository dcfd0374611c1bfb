"""Viewing tools a radiologist expects: W/L typed as numbers, zoom and pan linked across views, the
brain filling each view by default, an orientation cube in 3D, region outlines, one set of colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QAction, QKeySequence, QWheelEvent
from PySide6.QtWidgets import QApplication, QDockWidget, QLabel, QMainWindow

from brainseg_gui.app.display_volume import DisplayVolume, brain_box_mm
from brainseg_gui.ui.overlay import (
    COLOURS,
    TISSUE_ET_COLOUR,
    Fill,
    OverlayLook,
    OverlayMode,
    label_colour,
    outline,
    region_outline,
)
from brainseg_gui.ui.sequence_bar import SequenceBar
from brainseg_gui.ui.view_grid import ViewGrid
from brainseg_gui.ui.view_link import mm_per_pixel, view_centre_mm
from brainseg_gui.ui.viewer_state import Layout, Tool, ViewerState
from tests.ui.conftest import colour_mask, rgb


def start_state(volume: DisplayVolume, state: ViewerState | None = None) -> ViewerState:
    state = state or ViewerState()
    state.reset(volume.shape, volume.centre(), {n: volume.window(n) for n in volume.sequences}, "t1ce")
    return state


class Viewer(QMainWindow):
    """The viewer's central area as the main window lays it out: sequence bar on top, the views,
    a 440 px side panel (the main window itself is being redesigned; these tools live in its parts)."""

    def __init__(self, state: ViewerState) -> None:
        super().__init__()
        self.state = state
        self.bar = SequenceBar(state)
        self.addToolBar("Sequences").addWidget(self.bar)
        self.grid = ViewGrid(state)
        self.setCentralWidget(self.grid)
        side = QDockWidget("Panels")
        side.setWidget(QLabel("side panels"))
        side.setMinimumWidth(440)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, side)

    def open(self, volume: DisplayVolume) -> None:
        """What the main window does with a loaded study."""
        self.grid.set_volume(volume)
        start_state(volume, self.state)
        self.bar.set_volume(volume)


def shown_viewer(qtbot, volume: DisplayVolume, width: int, height: int) -> Viewer:
    """A Viewer of `volume`, shown at width x height and drawn."""
    window = Viewer(ViewerState())
    qtbot.addWidget(window)
    window.resize(width, height)
    window.show()
    qtbot.waitExposed(window)
    window.open(volume)
    QApplication.processEvents()
    return window


@pytest.fixture
def viewer(qtbot, toy_study):
    volume = DisplayVolume.from_study(toy_study)
    return shown_viewer(qtbot, volume, 1200, 600), volume


def brain_fill(view, volume: DisplayVolume) -> tuple[float, float]:
    """Share of the view's width and height the (unpadded) brain box covers."""
    box = brain_box_mm(volume, margin=0.0)
    h, v = view.in_plane_axes
    scale = mm_per_pixel(view)
    return ((box[h][1] - box[h][0]) / scale / view.box.width(),
            (box[v][1] - box[v][0]) / scale / view.box.height())


def brain_inside(view, volume: DisplayVolume) -> bool:
    box = brain_box_mm(volume, margin=0.0)
    h, v = view.in_plane_axes
    (x0, x1), (y0, y1) = view.box.viewRange()
    return x0 <= -box[h][1] and -box[h][0] <= x1 and y0 <= box[v][0] and box[v][1] <= y1


def ctrl_wheel(view, steps: int) -> None:
    """Ctrl+wheel over the view's centre, as a mouse sends it (zooms in for steps > 0)."""
    centre = QPointF(view.viewport().width() / 2, view.viewport().height() / 2)
    event = QWheelEvent(centre, QPointF(view.viewport().mapToGlobal(centre.toPoint())), QPoint(0, 0),
                        QPoint(0, 120 * steps), Qt.MouseButton.NoButton, Qt.KeyboardModifier.ControlModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view.viewport(), event)


def middle_drag_pan(view, dx_px: float) -> None:
    """What a middle drag does in the ViewBox: translate, then announce a manual change."""
    scale = mm_per_pixel(view)
    view.box.translateBy(x=-dx_px * scale)
    view.box.sigRangeChangedManually.emit([True, True])


# ---- window and level typed as numbers --------------------------------------------------------
def test_typing_width_and_level_changes_the_window_and_the_image(qtbot, viewer, screenshots) -> None:
    window, _volume = viewer
    state, box = window.state, window.bar.window_level
    axial = window.grid.view("axial")
    low, high = state.windows["t1ce"]
    assert box.width_box.value() == pytest.approx(high - low, abs=1)
    assert box.level_box.value() == pytest.approx((high + low) / 2, abs=1)
    before = rgb(axial.grab())

    box.width_box.lineEdit().selectAll()
    qtbot.keyClicks(box.width_box.lineEdit(), "100")
    qtbot.keyClick(box.width_box.lineEdit(), Qt.Key.Key_Return)
    box.level_box.lineEdit().selectAll()
    qtbot.keyClicks(box.level_box.lineEdit(), "150")
    qtbot.keyClick(box.level_box.lineEdit(), Qt.Key.Key_Return)
    assert state.windows["t1ce"] == pytest.approx((100.0, 200.0))
    assert tuple(axial.image.levels) == pytest.approx((100.0, 200.0))
    assert not np.array_equal(before, rgb(axial.grab())), "a typed window must change the picture"
    window.grab().save(str(screenshots / "window_level.png"))

    # the other way: a right drag and a preset change the numbers
    axial.drag_window((100.0, 200.0), 200.0, 0.0)  # wider by e
    low, high = state.windows["t1ce"]
    assert box.width_box.value() == pytest.approx(high - low, abs=0.6)
    window.bar.apply_preset("Full range")
    low, high = state.windows["t1ce"]
    assert box.width_box.value() == pytest.approx(high - low, abs=0.6)
    assert box.level_box.value() == pytest.approx((high + low) / 2, abs=0.6)
    # another sequence shows its own window
    state.set_sequence("flair")
    low, high = state.windows["flair"]
    assert box.level_box.value() == pytest.approx((high + low) / 2, abs=0.6)


def test_typed_digits_stay_in_the_box(qtbot, viewer) -> None:
    """Keys 1-4 switch sequences and arrows step slices elsewhere; typed into a box they are numbers."""
    window, _volume = viewer
    for number, name in enumerate(("t1", "t1ce", "t2", "flair"), start=1):  # as the View menu binds them
        action = QAction(name, window)
        action.setShortcut(QKeySequence(str(number)))
        action.triggered.connect(lambda _=False, n=name: window.state.set_sequence(n))
        window.addAction(action)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window.bar, Qt.Key.Key_3)
    assert window.state.sequence == "t2", "the shortcuts work outside the box"
    window.state.set_sequence("t1ce")
    box = window.bar.window_level.level_box
    box.setFocus()
    crosshair = window.state.crosshair
    box.lineEdit().selectAll()
    qtbot.keyClicks(box.lineEdit(), "123")
    qtbot.keyClick(box.lineEdit(), Qt.Key.Key_Return)
    assert window.state.sequence == "t1ce"
    assert window.state.crosshair == crosshair
    assert sum(window.state.windows["t1ce"]) / 2 == pytest.approx(123.0)


# ---- zoom and pan linked across views ---------------------------------------------------------
def test_linked_zoom_gives_every_view_the_same_mm_per_pixel(viewer) -> None:
    window, _volume = viewer
    views = {plane: window.grid.view(plane) for plane in ("axial", "coronal", "sagittal")}
    assert window.state.link_views
    scales = [mm_per_pixel(view) for view in views.values()]
    assert scales == pytest.approx([scales[0]] * 3), "linked views fit at one scale"
    ctrl_wheel(views["axial"], 3)
    zoomed = mm_per_pixel(views["axial"])
    assert zoomed < scales[0] * 0.95
    for plane in ("coronal", "sagittal"):
        assert mm_per_pixel(views[plane]) == pytest.approx(zoomed)
    # the other planes centre on the crosshair along the axis the axial view does not show (z)
    crosshair_z = (window.state.crosshair[2] + 0.5) * 4.0
    assert view_centre_mm(views["coronal"])[1] == pytest.approx(crosshair_z)
    # a pan moves the others by the same millimetres along the axis they share (x with coronal)
    coronal_x = view_centre_mm(views["coronal"])[0]
    sagittal_centre = view_centre_mm(views["sagittal"])
    axial_x = view_centre_mm(views["axial"])[0]
    middle_drag_pan(views["axial"], 30)
    moved = view_centre_mm(views["axial"])[0] - axial_x
    assert abs(moved) > 1
    assert view_centre_mm(views["coronal"])[0] - coronal_x == pytest.approx(moved)
    assert view_centre_mm(views["sagittal"]) == pytest.approx(sagittal_centre)


def test_unlinked_views_zoom_alone(viewer) -> None:
    window, _volume = viewer
    window.state.set_link_views(False)
    axial, coronal = window.grid.view("axial"), window.grid.view("coronal")
    before = mm_per_pixel(coronal)
    ctrl_wheel(axial, 3)
    assert mm_per_pixel(axial) < before * 0.95
    assert mm_per_pixel(coronal) == pytest.approx(before)
    # linking again: every view takes the scale of the one zoomed last
    window.state.set_link_views(True)
    assert mm_per_pixel(coronal) == pytest.approx(mm_per_pixel(axial))


def test_views_of_one_plane_show_the_same_area(viewer) -> None:
    window, _volume = viewer
    window.state.set_layout(Layout.GRID, "coronal")
    QApplication.processEvents()
    views = window.grid.views
    assert len(views) == 4
    ctrl_wheel(views[0], 2)
    middle_drag_pan(views[0], 25)
    for view in views[1:]:  # same centre and scale (views may differ by a pixel in size)
        assert view_centre_mm(view) == pytest.approx(view_centre_mm(views[0]))
        assert mm_per_pixel(view) == pytest.approx(mm_per_pixel(views[0]))


def test_the_link_action_follows_the_state(qtbot) -> None:
    from brainseg_gui.ui.view_link import link_views_action

    state = ViewerState()
    holder = QLabel()
    qtbot.addWidget(holder)
    action = link_views_action(state, holder)
    assert action.isCheckable() and action.isChecked()
    action.trigger()
    assert not state.link_views
    state.set_link_views(True)
    assert action.isChecked()


# ---- the default framing: the brain fills the view ----------------------------------------------
def test_the_brain_fills_every_view_at_the_true_aspect(viewer, qtbot) -> None:
    window, volume = viewer
    fills = []
    for view in window.grid.views:
        assert brain_inside(view, volume), view.plane
        fills.append(max(brain_fill(view, volume)))
        # the true aspect: one pixel is as many mm across as down (4 mm slices stay 4 mm tall)
        (x0, x1), (y0, y1) = view.box.viewRange()
        assert (x1 - x0) / view.box.width() == pytest.approx((y1 - y0) / view.box.height(), rel=1e-3)
    assert max(fills) > 0.85, fills  # linked: one common scale, set by the view the brain fills most
    assert min(fills) > 0.6, fills
    window.state.set_link_views(False)
    for view in window.grid.views:
        view.reset_zoom()
        assert brain_inside(view, volume)
        assert max(brain_fill(view, volume)) > 0.85, view.plane
    # a resize keeps the brain fitted
    window.resize(900, 700)
    QApplication.processEvents()
    for view in window.grid.views:
        assert brain_inside(view, volume)


def test_a_real_case_fills_the_views_at_1600x900(qtbot, real_case: Path, screenshots) -> None:
    from brainseg_gui.core.io import load_study
    from brainseg_gui.ui.overlay import Fill

    volume = DisplayVolume.from_study(load_study(real_case))
    window = shown_viewer(qtbot, volume, 1600, 900)
    window.state.set_fill("truth", Fill.OUTLINE)
    QApplication.processEvents()
    box = brain_box_mm(volume, margin=0.0)
    for view in window.grid.views:
        assert brain_inside(view, volume), view.plane
        h, _v = view.in_plane_axes
        width_px = (box[h][1] - box[h][0]) / mm_per_pixel(view)
        assert width_px > 250, (view.plane, width_px)  # was ~160 px when the whole grid was fitted
    axial = window.grid.view("axial")
    pixels = rgb(axial.grab())
    columns = np.flatnonzero((pixels.max(axis=-1) > 30).sum(axis=0) > 20)  # columns with tissue in them
    assert columns[-1] - columns[0] > 220, "the brain in the picture, not only in the numbers"
    window.grab().save(str(screenshots / "view_fit.png"))


# ---- 3D orientation marker --------------------------------------------------------------------
def test_the_3d_view_has_an_orientation_cube(qtbot, make_view_3d, screenshots) -> None:
    view, volume, _state = make_view_3d()
    assert view.available, view.problem
    view.set_volume(volume)
    qtbot.waitUntil(lambda: "WT" in view.actors, timeout=30_000)
    assert view.orientation_marker.GetEnabled()
    image = view.render_image()
    height, width, _ = image.shape
    corner = image[int(0.8 * height):, : int(0.2 * width)].astype(int)
    background = np.array([0.06, 0.06, 0.08]) * 255
    drawn = np.abs(corner - background).sum(axis=-1) > 60
    assert drawn.mean() > 0.1, "the cube is drawn in the lower-left corner"
    # the cube faces have their own colours: reddish R/L, greenish A/P, bluish S/I faces visible
    r, g = corner[..., 0], corner[..., 1]
    assert ((r > g + 40) & drawn).sum() > 20 or ((g > r + 40) & drawn).sum() > 20
    camera = view.renderer.GetActiveCamera()  # turned: the cube turns with the scene, three faces show
    camera.Azimuth(-40)
    camera.Elevation(25)
    camera.OrthogonalizeViewUp()
    assert not np.array_equal(view.render_image()[int(0.8 * height):, : int(0.2 * width)], corner.astype(np.uint8))
    view.save_screenshot(screenshots / "view_3d_marker.png")
    view.close()


# ---- outlines are region borders; paint colours are overlay colours ----------------------------
def ring_code() -> np.ndarray:
    """A BraTS-like slice: oedema around an enhancing ring around necrosis (nested region codes)."""
    code = np.zeros((21, 21), dtype=np.uint8)
    code[2:19, 2:19] = 1  # ED: WT only
    code[5:16, 5:16] = 7  # ET ring: WT|TC|ET
    code[8:13, 8:13] = 3  # NCR: WT|TC
    return code


def test_tc_outline_is_the_border_of_ncr_and_et() -> None:
    code = ring_code()
    drawn = region_outline(code, frozenset({"WT", "TC", "ET"}))
    tc_border = outline(((code & 2) != 0).astype(np.uint8))
    assert (drawn[tc_border] == 3).all(), "TC's border (the ring's outside) is drawn in TC's colour"
    wt_border = outline(((code & 1) != 0).astype(np.uint8))
    assert (drawn[wt_border] == 1).all()
    ncr = code == 3
    et_inner = outline(((code & 4) != 0).astype(np.uint8)) & ~tc_border
    assert et_inner.any() and (drawn[et_inner] == 7).all(), "ET's inner border, next to necrosis"
    assert not drawn[ncr].any(), "necrosis itself has no border of its own in regions mode"
    assert not drawn[(code == 1) & ~wt_border].any(), "no line inside the oedema next to the ring"
    # TC hidden: the ring's outside shows ET's border instead
    drawn = region_outline(code, frozenset({"WT", "ET"}))
    assert (drawn[tc_border] == 7).all()


def test_outline_mode_draws_tc_around_the_whole_core_in_a_view(qtbot, toy_study) -> None:
    from brainseg_gui.ui.slice_view import SliceView

    volume = DisplayVolume.from_study(toy_study)
    state = ViewerState()
    view = SliceView(state, "axial")
    qtbot.addWidget(view)
    view.resize(400, 400)
    view.set_volume(volume)
    view.show()
    qtbot.waitExposed(view)
    start_state(volume, state)
    state.set_look(OverlayLook(opacity=1.0, visible=frozenset({"TC"})))
    state.set_fill("truth", Fill.OUTLINE)
    view.reset_zoom()
    code = view.layers["truth"].item.image
    core = (view._slice(volume.truth_code) & 2) != 0
    assert core.any()
    assert (code[outline(core.astype(np.uint8))] != 0).all()
    pixels = rgb(view.grab())
    assert colour_mask(pixels, COLOURS["TC"]).sum() > 20


def test_paint_colours_are_the_overlay_colours(qtbot, toy_study) -> None:
    from brainseg_gui.ui.slice_view import SliceView

    regions = OverlayLook()
    assert label_colour("NCR", regions) == COLOURS["TC"]
    assert label_colour("ED", regions) == COLOURS["WT"]
    assert label_colour("ET", regions) == COLOURS["ET"]
    tissues = OverlayLook(mode=OverlayMode.TISSUES)
    assert label_colour("NCR", tissues) == COLOURS["NCR"]
    assert label_colour("ET", tissues) == TISSUE_ET_COLOUR
    assert label_colour("NCR", OverlayLook(visible=frozenset({"WT"}))) == COLOURS["WT"]  # TC hidden

    state = ViewerState()
    view = SliceView(state, "axial")
    qtbot.addWidget(view)
    view.set_volume(DisplayVolume.from_study(toy_study))
    state.set_tool(Tool.BRUSH)
    state.set_label("NCR")
    assert view.brush.pen().color().getRgb()[:3] == COLOURS["TC"]
    state.set_look(OverlayLook(mode=OverlayMode.TISSUES))
    assert view.brush.pen().color().getRgb()[:3] == COLOURS["NCR"]


def test_edit_panel_swatches_follow_the_overlay_colours(qtbot, tmp_path) -> None:
    from brainseg_gui.app.document import Workspace
    from brainseg_gui.ui.edit_panel import EditPanel

    state = ViewerState()
    panel = EditPanel(state, Workspace(state, tmp_path / "journal"))
    qtbot.addWidget(panel)

    def swatch_rgb(tissue: str) -> tuple[int, int, int]:
        image = panel.label_buttons[tissue].icon().pixmap(14, 14).toImage()
        return image.pixelColor(7, 7).getRgb()[:3]

    for look in (OverlayLook(), OverlayLook(mode=OverlayMode.TISSUES)):
        state.set_look(look)
        for tissue in ("NCR", "ED", "ET"):
            assert swatch_rgb(tissue) == label_colour(tissue, look), (look.mode, tissue)
