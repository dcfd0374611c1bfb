"""The 3D view renders real surfaces where OpenGL exists (OSMesa offscreen or Xvfb), and says why
not where it does not."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtGui import QImage

from brainseg_gui.ui.viewer_state import ViewerState
from brainseg_gui.ui.workers import JobRunner


@pytest.fixture
def view(qtbot, make_view_3d):
    widget, volume, _ = make_view_3d()
    assert widget.available, widget.problem
    widget.set_volume(volume)
    qtbot.waitUntil(lambda: "WT" in widget.actors, timeout=30_000)
    yield widget
    widget.close()


def test_surfaces_render_in_region_colours(view, screenshots) -> None:
    view.planes_check.setChecked(False)
    image = view.render_image()
    assert image.std() > 5
    r, g, b = (image[..., c].astype(int) for c in range(3))
    greenish = (g > r + 40) & (g > b + 20)  # WT surface
    assert greenish.sum() > 200
    assert "ground truth" in view.status.text()
    assert view.source.currentText() == "Ground truth"
    view.planes_check.setChecked(True)
    path = view.save_screenshot(screenshots / "toy_3d.png")
    saved = QImage(str(path))
    assert saved.width() > 100 and not saved.isNull()


def test_controls_change_the_picture(view) -> None:
    full = view.render_image()
    view.state.set_look(view.state.look.__class__(visible=frozenset({"TC", "ET"})))
    assert not view.actors["WT"].GetVisibility()
    without_wt = view.render_image()
    assert not np.array_equal(full, without_wt)
    view.planes_check.setChecked(False)
    assert not view.plane_actors["axial"].GetVisibility()
    view.state.set_crosshair((1, 1, 1))
    view.planes_check.setChecked(True)
    bounds = view.plane_actors["axial"].GetBounds()
    assert bounds[4] == pytest.approx(1.5 * 4.0)  # z of the axial plane at slice 1 (4 mm slices)


def test_no_gl_gives_a_message(qtbot, monkeypatch) -> None:
    from brainseg_gui.ui.view_3d import View3D

    monkeypatch.setenv("BRAINSEG_NO_3D", "1")
    widget = View3D(ViewerState(), JobRunner())
    qtbot.addWidget(widget)
    assert not widget.available
    assert "unavailable" in widget.message.text()


def test_main_window_3d_dock_on_a_real_case(qtbot, settings, real_case, screenshots) -> None:
    from brainseg_gui.ui.main_window import MainWindow
    from brainseg_gui.ui.view_3d import gl_problem
    from tests.ui.conftest import rgb

    problem = gl_problem()
    if problem is not None:
        pytest.skip(f"no OpenGL for VTK here: {problem}")
    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    window.resize(1500, 900)
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: window.view_3d is not None)  # built when its dock first shows
    with qtbot.waitSignal(window.study_opened, timeout=60_000):
        window.open_study(real_case)
    qtbot.waitUntil(lambda: "WT" in window.view_3d.actors and "brain" in window.view_3d.actors, timeout=60_000)
    path = window.save_screenshot(screenshots / "real_case_with_3d.png")
    pixels = rgb(QImage(str(path)))
    target = window.view_3d.vtk_widget
    corner = target.mapTo(window, target.rect().topLeft())
    panel = pixels[corner.y():corner.y() + target.height(), corner.x():corner.x() + target.width()]
    assert panel.std() > 5  # the 3D picture was painted into the screenshot
    window.close()
