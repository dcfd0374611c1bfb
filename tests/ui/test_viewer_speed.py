"""What keeps the viewer fast (issue 4's benchmark, bench/ui.py) and the bugs found measuring it:
views re-slice only when their own slice changes, images reach Qt in its fast format, the truth's
region code and the label values come from cheap array passes, the 3D view renders once per change
and waits for the opening study, and a smaller study can follow a larger one."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtGui import QImage

from brainseg_gui.app.display_volume import DisplayVolume
from brainseg_gui.app.region_codes import label_code, region_code
from brainseg_gui.core.labels import LabelConvention, to_regions
from brainseg_gui.ui.overlay import COLOURS, Fill, OverlayLook, SliceImageItem, code_lut
from brainseg_gui.ui.slice_view import SliceView
from brainseg_gui.ui.viewer_state import ViewerState


@pytest.fixture
def views(qtbot, toy_study):
    volume = DisplayVolume.from_study(toy_study)
    state = ViewerState()
    shown = {}
    for plane in ("axial", "coronal", "sagittal"):
        view = SliceView(state, plane)
        qtbot.addWidget(view)
        view.resize(300, 300)
        view.set_volume(volume, prediction=volume.truth_code)
        view.show()
        shown[plane] = view
    state.reset(volume.shape, volume.centre(), {n: volume.window(n) for n in volume.sequences}, "t1ce")
    return volume, state, shown


def test_a_step_re_slices_only_the_view_whose_slice_changed(views) -> None:
    volume, state, shown = views
    before = {plane: (view.image.image, view.layers["prediction"].item.image, view.h_line.value(),
                      view.v_line.value(), view.title.textItem.toPlainText()) for plane, view in shown.items()}
    state.step_slice("axial", 1)
    axial = shown["axial"]
    assert axial.image.image is not before["axial"][0]
    assert axial.layers["prediction"].item.image is not before["axial"][1]
    assert np.array_equal(axial.image.image, volume.images["t1ce"][:, :, state.crosshair[2]])
    assert f"{state.crosshair[2] + 1}/{volume.shape[2]}" in axial.title.textItem.toPlainText()
    for plane in ("coronal", "sagittal"):
        view = shown[plane]
        image, overlay, h_line, v_line, title = before[plane]
        assert view.image.image is image and view.layers["prediction"].item.image is overlay
        assert view.title.textItem.toPlainText() == title
        assert view.h_line.value() == pytest.approx(h_line + volume.spacing[2])  # one 4 mm slice up
        assert view.v_line.value() == pytest.approx(v_line)
    state.step_slice("coronal", -1)  # and the other way round
    assert shown["coronal"].image.image is not before["coronal"][0]
    assert np.array_equal(shown["coronal"].image.image, volume.images["t1ce"][:, state.crosshair[1], :])


def test_slice_image_item_gives_qt_premultiplied_argb_in_the_lut_colours(qtbot) -> None:
    item = SliceImageItem(axisOrder="col-major")
    item.setLookupTable(code_lut(OverlayLook(opacity=1.0), Fill.FILLED))
    code = np.zeros((6, 4), dtype=np.uint8)
    code[1, 2] = 7  # ET (innermost) at column 1, row 2
    code[4, 0] = 1  # WT only
    item.setImage(code, autoLevels=False)
    item.render()
    assert item.qimage.format() == QImage.Format.Format_ARGB32_Premultiplied
    et, wt, empty = item.qimage.pixelColor(1, 2), item.qimage.pixelColor(4, 0), item.qimage.pixelColor(0, 0)
    assert (et.red(), et.green(), et.blue(), et.alpha()) == (*COLOURS["ET"], 255)
    assert (wt.red(), wt.green(), wt.blue()) == COLOURS["WT"]
    assert empty.alpha() == 0
    item.setLookupTable(code_lut(OverlayLook(opacity=1.0, visible=frozenset({"WT"})), Fill.FILLED))
    item.render()  # a new table re-renders: ET voxels now show their outermost visible region
    et = item.qimage.pixelColor(1, 2)
    assert (et.red(), et.green(), et.blue()) == COLOURS["WT"]


@pytest.mark.parametrize("convention", list(LabelConvention))
def test_label_code_is_the_region_code_of_the_regions(convention) -> None:
    rng = np.random.default_rng(4)
    values = np.array(sorted(convention.allowed_values), dtype=np.uint8)
    labels = rng.choice(values, size=(17, 12, 9))
    for view in (labels, labels[::-1, ::2], np.asfortranarray(labels)):
        assert np.array_equal(label_code(view, convention), region_code(to_regions(view, convention)))


def test_window_presets_of_a_full_size_case_match_all_voxels() -> None:
    """Large volumes are sampled on every 2nd voxel per axis: the windows stay within 1% of exact."""
    from brainseg_gui.core.study import Grid, Study

    rng = np.random.default_rng(0)
    shape = (200, 200, 170)  # above the size where the subgrid sampling starts
    image = np.zeros(shape, dtype=np.float32)
    image[20:180, 30:170, 10:160] = rng.gamma(4.0, 100.0, size=(160, 140, 150)).astype(np.float32)
    volume = DisplayVolume.from_study(Study("big", Grid(shape, np.eye(4)), {"t1": image}))
    values = image[image != 0]
    for preset, (low_pct, high_pct) in (("Auto (1-99%)", (1, 99)), ("Soft (2-98%)", (2, 98))):
        low, high = volume.window("t1", preset)
        exact = np.percentile(values, [low_pct, high_pct])
        assert low == pytest.approx(exact[0], rel=0.01) and high == pytest.approx(exact[1], rel=0.01)


def test_a_smaller_study_can_follow_a_larger_one(qtbot, settings, toy_case, monkeypatch) -> None:
    """The views were set up with the previous study's crosshair, beyond the new grid (IndexError)."""
    from brainseg_gui.ui.main_window import MainWindow

    monkeypatch.setenv("BRAINSEG_NO_3D", "1")
    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignal(window.study_opened, timeout=60_000):
        window.open_demo()  # 160x192x144
    window.move_crosshair((150, 180, 140))
    with qtbot.waitSignal(window.study_opened, timeout=60_000):
        window.open_study(toy_case)  # 40x48x20
    assert window.volume.shape == (40, 48, 20) and window.last_error is None
    assert all(c < n for c, n in zip(window.state.crosshair, window.volume.shape))
    axial = window.grid.view("axial")
    assert f"/{window.volume.shape[2]}" in axial.title.textItem.toPlainText()
    window.close()


def test_the_3d_view_waits_for_the_opening_study(qtbot, settings, toy_case, monkeypatch) -> None:
    """Cold start: the study is drawn first, then VTK loads (in a worker) and the 3D view is built."""
    from brainseg_gui.ui.main_window import MainWindow

    monkeypatch.setenv("BRAINSEG_NO_3D", "1")  # the panel then says so; the order is what counts
    window = MainWindow(settings=settings)
    qtbot.addWidget(window)
    window.show()
    built_when_opened = []
    window.study_opened.connect(lambda _volume: built_when_opened.append(window.view_3d is not None))
    with qtbot.waitSignal(window.study_opened, timeout=60_000):
        window.open_study(toy_case)
    assert built_when_opened == [False]
    qtbot.waitUntil(lambda: window.view_3d is not None, timeout=30_000)
    assert not window.view_3d.available and "BRAINSEG_NO_3D" in window.view_3d.problem
    window.close()


def test_the_3d_view_renders_once_the_crosshair_stops(qtbot, make_view_3d) -> None:
    from brainseg_gui.ui.view_3d import PLANE_RENDER_DELAY_MS

    view, volume, state = make_view_3d((300, 300), exposed=False)
    view.set_volume(volume)
    qtbot.waitUntil(lambda: "WT" in view.actors, timeout=30_000)
    renders = []
    view.vtk_widget.GetRenderWindow().AddObserver("StartEvent", lambda *_: renders.append(1))
    for step in range(5):  # scrolling through slices
        state.step_slice("axial", 1)
    assert renders == []  # no render per step
    top = view.plane_actors["axial"].GetBounds()[4]
    assert top == pytest.approx((state.crosshair[2] + 0.5) * volume.spacing[2])
    qtbot.wait(PLANE_RENDER_DELAY_MS + 300)
    assert len(renders) == 1  # one render after the last step
    renders.clear()
    view.opacity.setValue(50)  # other changes render at once
    assert len(renders) == 1
    view.close()


def test_the_tissue_mask_of_raw_data_leaves_out_the_background_noise() -> None:
    """A DICOM head is non-zero almost everywhere (noise): its 3D context surface took 7 s."""
    from brainseg_gui.core.study import Grid, Study

    rng = np.random.default_rng(2)
    shape = (40, 40, 30)
    x, y, z = np.meshgrid(*[np.arange(n) - n / 2 for n in shape], indexing="ij")
    head = x**2 + y**2 + z**2 < 12**2
    raw = rng.integers(1, 12, size=shape).astype(np.float32)  # scanner noise, never 0
    raw[head] = rng.normal(400.0, 30.0, size=int(head.sum())).astype(np.float32)
    volume = DisplayVolume.from_study(Study("raw", Grid(shape, np.eye(4)), {"flair": raw}))
    assert np.array_equal(volume.brain, head)
    stripped = np.where(head, raw, 0).astype(np.float32)  # a skull-stripped study: the non-zero voxels
    stripped[head & (x > 8)] = 3.0  # dark but non-zero tissue stays in
    volume = DisplayVolume.from_study(Study("stripped", Grid(shape, np.eye(4)), {"flair": stripped}))
    assert np.array_equal(volume.brain, head)


def test_a_new_study_clears_the_previous_surfaces_at_once(qtbot, make_view_3d, toy_study) -> None:
    view, volume, _ = make_view_3d(None, exposed=False)
    view.set_volume(volume)
    qtbot.waitUntil(lambda: "WT" in view.actors, timeout=30_000)
    view.set_volume(DisplayVolume.from_study(toy_study))
    assert view.actors == {} and view.status.text() == "Building surfaces…"
    qtbot.waitUntil(lambda: "WT" in view.actors, timeout=30_000)
    view.close()
