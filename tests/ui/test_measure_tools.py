"""Measure tools on the toy study (1.5 x 1.5 x 4 mm LPS voxels): rulers, ellipse ROIs, RANO, the panel.

Drawn with real mouse events on real views; lengths are checked in mm against the anisotropic grid,
and screenshots are saved (screenshots/measure_*.png) to be looked at.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QHBoxLayout, QWidget

from brainseg_gui.app.display_volume import DisplayVolume
from brainseg_gui.app.measurements import Measurements
from brainseg_gui.app.region_codes import region_mask
from brainseg_gui.core.measurements import distance_mm
from brainseg_gui.ui.measure_panel import MeasurePanel, attach_measurements
from brainseg_gui.ui.slice_view import SliceView
from brainseg_gui.ui.view_grid import ViewGrid
from brainseg_gui.ui.viewer_state import Layout, Tool, ViewerState
from tests.ui.conftest import TOY_SPACING, rgb


def build(qtbot, study):
    """Views (1x3) and the Measure panel side by side on a study, shown; no main window."""
    volume = DisplayVolume.from_study(study)
    state = ViewerState()
    grid = ViewGrid(state)
    grid.set_volume(volume)
    state.reset(volume.shape, volume.centre(), {n: volume.window(n) for n in volume.sequences}, "t1ce")
    measurements = Measurements.for_volume(volume)
    errors: list[tuple[str, str]] = []
    panel = attach_measurements(grid, state, measurements, report_error=lambda *e: errors.append(e))
    host = QWidget()
    layout = QHBoxLayout(host)
    layout.addWidget(grid, 3)
    layout.addWidget(panel, 1)
    qtbot.addWidget(host)
    host.resize(1500, 560)
    host.show()
    qtbot.waitExposed(host)
    for view in grid.views:
        view.reset_zoom()
    return volume, state, grid, panel, measurements, host, errors


@pytest.fixture
def setup(qtbot, toy_study):
    volume, *rest = build(qtbot, toy_study)
    assert volume.spacing == TOY_SPACING  # x, y 1.5 mm, z 4 mm: anisotropic
    return (volume, *rest)


def widget_pos(view: SliceView, point) -> QPointF:
    """Where a float RAS voxel is in the view's viewport."""
    h, v = view.in_plane_axes
    view.box.prepareForPaint()
    scene = view.image.mapToScene(QPointF(point[h] + 0.5, point[v] + 0.5))
    return QPointF(view.mapFromScene(scene))


def drag(view: SliceView, start: QPointF, end: QPointF, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    """A real left drag: hover, press, several moves with the button held, release."""
    viewport = view.viewport()
    _move(viewport, start, Qt.MouseButton.NoButton, modifier)
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, modifier, start.toPoint())
    for t in np.linspace(0.1, 1.0, 8):
        position = QPointF(start.x() + (end.x() - start.x()) * t, start.y() + (end.y() - start.y()) * t)
        time.sleep(0.01)
        _move(viewport, position, Qt.MouseButton.LeftButton, modifier)
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, modifier, end.toPoint())


def _move(viewport, position: QPointF, buttons, modifier) -> None:
    event = QMouseEvent(QEvent.Type.MouseMove, position, viewport.mapToGlobal(position),
                        Qt.MouseButton.NoButton, buttons, modifier)
    QApplication.sendEvent(viewport, event)


def shot(host: QWidget, path) -> np.ndarray:
    host.repaint()
    pixmap = host.grab()
    pixmap.save(str(path))
    return rgb(pixmap)


def test_ruler_measures_mm_on_an_anisotropic_grid_and_its_end_can_be_dragged(setup, screenshots) -> None:
    _volume, state, grid, panel, measurements, host, _errors = setup
    view = grid.view("coronal")  # x by z: 1.5 mm by 4 mm pixels
    state.set_tool(Tool.RULER)
    y = state.crosshair[1]
    a, b = (8.0, y, 4.0), (28.0, y, 14.0)  # 20 voxels x 10 slices: 30 mm by 40 mm -> 50 mm
    drag(view, widget_pos(view, a), widget_pos(view, b))
    assert len(measurements.rulers) == 1
    ruler_id, ruler = next(iter(measurements.rulers.items()))
    assert ruler.a[1] == ruler.b[1] == y  # drawn in the coronal slice
    assert np.allclose(ruler.a, a, atol=0.2) and np.allclose(ruler.b, b, atol=0.2)
    by_hand = math.hypot((ruler.b[0] - ruler.a[0]) * 1.5, (ruler.b[2] - ruler.a[2]) * 4.0)
    assert measurements.length_mm(ruler_id) == pytest.approx(by_hand)
    assert measurements.length_mm(ruler_id) == pytest.approx(50.0, abs=0.6)  # isotropic voxels would say 22.4
    assert panel.table.item(0, 2).text() == f"{measurements.length_mm(ruler_id):.1f} mm"
    item = panel.overlay.layer(view).rulers[ruler_id]
    assert item.segment.label.textItem.toPlainText() == f"{measurements.length_mm(ruler_id):.1f} mm"
    assert not panel.overlay.layer(grid.view("axial")).rulers  # not in the axial plane

    # drag the end b up by 5 slices (20 mm): the length follows
    new_b = (28.0, y, 19.0)
    drag(view, widget_pos(view, b), widget_pos(view, new_b))
    moved = measurements.rulers[ruler_id]
    assert np.allclose(moved.a, ruler.a) and np.allclose(moved.b, new_b, atol=0.2)
    assert measurements.length_mm(ruler_id) == pytest.approx(math.hypot(30.0, 60.0), abs=0.8)
    assert panel.table.item(0, 2).text() == f"{measurements.length_mm(ruler_id):.1f} mm"
    pixels = shot(host, screenshots / "measure_ruler.png")
    assert _colour_pixels(pixels, (0, 229, 255)) > 100  # the cyan ruler is drawn


def test_ruler_tool_leaves_the_crosshair_and_ctrl_drag_still_moves_it(setup) -> None:
    _volume, state, grid, _panel, measurements, _host, _errors = setup
    view = grid.view("axial")
    before = state.crosshair
    state.set_tool(Tool.RULER)
    z = before[2]
    drag(view, widget_pos(view, (5.0, 5.0, z)), widget_pos(view, (15.0, 5.0, z)))
    assert state.crosshair == before and len(measurements.rulers) == 1
    drag(view, widget_pos(view, (5.0, 30.0, z)), widget_pos(view, (12.0, 30.0, z)), Qt.KeyboardModifier.ControlModifier)
    assert state.crosshair[:2] == (12, 30) and len(measurements.rulers) == 1
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=widget_pos(view, (20.0, 20.0, z)).toPoint())
    assert len(measurements.rulers) == 1  # a click draws nothing


def test_paint_tools_cannot_grab_a_ruler(setup) -> None:
    _volume, state, grid, panel, measurements, _host, _errors = setup
    z = state.crosshair[2]
    ruler_id = measurements.add_ruler((5.0, 10.0, z), (20.0, 10.0, z))
    item = panel.overlay.layer(grid.view("axial")).rulers[ruler_id]
    assert all(h.isVisible() for h in item.segment.roi.getHandles())
    state.set_tool(Tool.BRUSH)
    assert not any(h.isVisible() for h in item.segment.roi.getHandles())
    assert not item.segment.roi.translatable
    state.set_tool(Tool.NAVIGATE)
    assert all(h.isVisible() for h in item.segment.roi.getHandles())


def test_ellipse_roi_statistics_in_the_panel(setup, screenshots) -> None:
    volume, state, grid, panel, measurements, host, _errors = setup
    view = grid.view("axial")
    state.set_tool(Tool.ROI)
    z = state.crosshair[2]
    drag(view, widget_pos(view, (16.0, 24.0, z)), widget_pos(view, (36.0, 40.0, z)))  # over the tumour's edge
    assert len(measurements.ellipses) == 1
    roi_id, roi = next(iter(measurements.ellipses.items()))
    assert roi.axis == 2 and roi.index == z
    assert roi.centre == pytest.approx((26.0, 32.0), abs=0.2) and roi.radii == pytest.approx((10.0, 8.0), abs=0.2)
    assert panel.selected_id() == roi_id  # the panel selects what was drawn, and shows its statistics
    mask = roi.mask(volume.shape)
    assert mask.sum() > 50 and (volume.truth_code[mask] > 0).any() and (volume.truth_code[mask] == 0).any()
    assert panel.stats_table.rowCount() == len(volume.sequences)
    for row, name in enumerate(volume.sequences):
        values = volume.images[name][mask].astype(np.float64)
        shown = [float(panel.stats_table.item(row, c).text()) for c in range(4)]
        assert shown == pytest.approx([values.mean(), values.std(), values.min(), values.max()], abs=0.051)
    assert panel.stats_label.text().startswith(f"{int(mask.sum())} voxels")
    assert f"{mask.sum() * 1.5 * 1.5 * 4 / 1000:.2f} ml" in panel.stats_label.text()
    shot(host, screenshots / "measure_roi.png")


def test_label_region_statistics(setup) -> None:
    volume, _state, _grid, panel, _measurements, _host, _errors = setup
    panel.mask_box.setCurrentIndex(panel.mask_box.findData("truth"))
    panel.region_box.setCurrentIndex(panel.region_box.findData("ED"))
    ed = region_mask(volume.truth_code, "ED")
    assert panel.statistics().voxels == int(ed.sum()) > 0
    flair = volume.images["flair"][ed].astype(np.float64)
    row = volume.sequences.index("flair")
    assert float(panel.stats_table.item(row, 0).text()) == pytest.approx(flair.mean(), abs=0.051)
    panel.mask_box.setCurrentIndex(panel.mask_box.findData("prediction"))
    assert panel.statistics() is None and "segmentation" in panel.stats_label.text().lower()


def test_rano_drawn_in_the_axial_view_and_adjusted_by_dragging_an_end(setup, screenshots) -> None:
    volume, state, grid, panel, measurements, host, _errors = setup
    panel.mask_box.setCurrentIndex(panel.mask_box.findData("truth"))
    panel.measure_rano()
    rano = measurements.rano
    assert rano is not None and not rano.adjusted
    assert state.crosshair[2] == rano.slice_z  # shown: the axial views moved to its slice
    assert (volume.truth_code[:, :, rano.slice_z] & 4).any()
    assert 80 <= rano.angle_deg <= 90 and rano.long_mm >= rano.short_mm > 0
    assert rano.long_mm == pytest.approx(10.0, abs=2.5)  # the toy ET is a 5 mm-radius sphere
    assert f"{rano.long_mm:.1f} mm" in panel.rano_label.text()
    view = grid.view("axial")
    item = panel.overlay.layer(view).rano
    assert item is not None
    assert item.long.label.textItem.toPlainText() == f"{rano.long_mm:.1f} mm"
    shot(host, screenshots / "measure_rano.png")

    # drag one end of the long axis 4 voxels (6 mm) further out: the numbers follow
    p, q = rano.long_axis
    direction = np.subtract(q, p) / np.linalg.norm(np.subtract(q, p))
    target = tuple(np.add(q, 4 * direction))
    drag(view, widget_pos(view, q), widget_pos(view, target))
    adjusted = measurements.rano
    assert adjusted is not None and adjusted.adjusted
    assert adjusted.long_mm == pytest.approx(distance_mm(volume.ras_affine, *adjusted.long_axis))
    assert adjusted.long_mm == pytest.approx(rano.long_mm + 6.0, abs=0.6)
    assert adjusted.product_mm2 == pytest.approx(adjusted.long_mm * adjusted.short_mm)
    assert "adjusted by hand" in panel.rano_label.text() and f"{adjusted.long_mm:.1f} mm" in panel.rano_label.text()
    assert item.long.label.textItem.toPlainText() == f"{adjusted.long_mm:.1f} mm"
    shot(host, screenshots / "measure_rano_adjusted.png")


def test_rano_without_enhancing_tumour_says_so(setup) -> None:
    volume, _state, grid, panel, measurements, _host, _errors = setup
    code = volume.truth_code.copy()
    code[code & 4 != 0] = 3  # the ET becomes NCR
    grid.set_prediction(code)
    panel.measure_rano()
    assert measurements.rano is None
    assert "No enhancing tumour" in panel.rano_label.text()


def test_a_new_layout_draws_the_measurements_again(setup) -> None:
    _volume, state, grid, panel, measurements, _host, _errors = setup
    z = state.crosshair[2]
    ruler_id = measurements.add_ruler((5.0, 10.0, z), (20.0, 10.0, z))
    state.set_layout(Layout.GRID, "axial")
    assert len(grid.views) == 4
    for view in grid.views:
        assert ruler_id in panel.overlay.layer(view).rulers
    state.step_slice("axial", 1)
    assert all(not panel.overlay.layer(view).rulers for view in grid.views)


def test_panel_delete_clear_save_and_load(setup, tmp_path) -> None:
    _volume, state, _grid, panel, measurements, _host, errors = setup
    z = state.crosshair[2]
    first = measurements.add_ruler((5.0, 10.0, z), (20.0, 10.0, z))
    measurements.add_ruler((5.0, 12.0, z), (9.0, 12.0, z))
    assert panel.table.rowCount() == 2
    panel.select(first)
    panel.delete_selected()
    assert list(measurements.rulers) != [first] and panel.table.rowCount() == 1
    path = tmp_path / "m.json"
    assert panel.save_to(path)
    panel.clear_all()
    assert measurements.empty and panel.table.rowCount() == 0
    assert panel.load_from(path) and panel.table.rowCount() == 1
    path.write_text("{not json")
    assert not panel.load_from(path)
    assert len(errors) == 1 and str(path) in errors[0][1] and "\n" not in errors[0][1]
    assert panel.table.rowCount() == 1  # a bad file changes nothing


def test_another_study_model_replaces_the_drawn_items(setup) -> None:
    volume, state, grid, panel, measurements, _host, _errors = setup
    z = state.crosshair[2]
    ruler_id = measurements.add_ruler((5.0, 10.0, z), (20.0, 10.0, z))
    panel.set_measurements(Measurements.for_volume(volume))
    assert not panel.overlay.layer(grid.view("axial")).rulers and panel.table.rowCount() == 0
    measurements.add_ruler((1.0, 1.0, z), (3.0, 1.0, z))  # the old study's model no longer draws
    assert not panel.overlay.layer(grid.view("axial")).rulers
    assert ruler_id in measurements.rulers
    assert isinstance(panel, MeasurePanel)


@pytest.mark.slow
def test_rano_on_a_real_case(qtbot, real_case, screenshots) -> None:
    from brainseg_gui.core.io import load_study

    volume, state, grid, panel, measurements, host, _errors = build(qtbot, load_study(real_case))
    panel.mask_box.setCurrentIndex(panel.mask_box.findData("truth"))
    panel.measure_rano()
    rano = measurements.rano
    assert rano is not None and rano.long_mm >= rano.short_mm > 10
    assert state.crosshair[2] == rano.slice_z and abs(rano.angle_deg - 90) <= 5
    assert panel.overlay.layer(grid.view("axial")).rano is not None
    panel.region_box.setCurrentIndex(panel.region_box.findData("ET"))
    assert panel.statistics().voxels == int(((volume.truth_code & 4) != 0).sum())
    pixels = shot(host, screenshots / "measure_rano_real.png")
    assert _colour_pixels(pixels, (255, 120, 220)) > 20  # the perpendicular axis is drawn


def _colour_pixels(pixels: np.ndarray, colour: tuple[int, int, int], tolerance: int = 60) -> int:
    return int((np.abs(pixels.astype(int) - np.array(colour)).sum(axis=-1) < tolerance).sum())



def test_a_deleted_panel_and_grid_no_longer_follow_the_model(qtbot, toy_study) -> None:
    """The Document keeps the model after the window's widgets are gone: its events must not reach them."""
    _volume, state, _grid, _panel, measurements, host, _errors = build(qtbot, toy_study)
    assert len(measurements.changed) == 2  # the panel and the overlay
    host.deleteLater()
    qtbot.waitUntil(lambda: len(measurements.changed) == 0)
    z = state.crosshair[2]
    measurements.add_ruler((5.0, 10.0, z), (20.0, 10.0, z))  # would raise on a deleted widget
