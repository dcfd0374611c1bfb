"""Opening another study replaces the Document: nothing of the first can be seen, exported or heard.

One study is segmented, edited, measured and left with a message; then a second study opens and
every place the first could survive (overlays, the edit session, the results table, the messages,
the measurements, the Click tool's prior, the title) is checked. A Segment result is drawn once
in the slice views and once in the 3D view.
"""

from __future__ import annotations

import numpy as np
import pytest

from brainseg_gui.ui.viewer_state import Tool
from tests.ui.conftest import write_toy_case
from tests.ui.test_segmentation import make_window, open_toy, segment, tiny_model  # noqa: F401 - fixture


class CountingView3D:
    """Stands in for the 3D view: counts what the window hands it."""

    def __init__(self) -> None:
        self.volumes: list[object] = []
        self.predictions: list[np.ndarray | None] = []
        self.available = False

    def set_volume(self, volume) -> None:
        self.volumes.append(volume)

    def set_prediction(self, regions) -> None:
        self.predictions.append(regions)

    def isVisible(self) -> bool:
        return False

    def close(self) -> None:
        pass


def test_a_second_study_shows_nothing_of_the_first(qtbot, settings, monkeypatch, tmp_path, tiny_model,  # noqa: F811
                                                   screenshots) -> None:
    first_case, second_case = write_toy_case(tmp_path / "first"), write_toy_case(tmp_path / "second")
    window = make_window(qtbot, settings, monkeypatch, model_dir=tiny_model[0])
    view_3d = window.view_3d = CountingView3D()
    drawn: list[object] = []
    original = window.grid.set_prediction
    monkeypatch.setattr(window.grid, "set_prediction", lambda code: (drawn.append(code), original(code)))

    open_toy(qtbot, window, first_case)
    first = window.document
    segment(qtbot, window)
    # one pass each: the views get the worker's code once, the 3D view its regions once
    assert len(drawn) == 1 and drawn[0] is window.segmentation.code
    assert len(view_3d.predictions) == 1
    # edit, measure, leave a message and a prior for the Click tool
    window.state.set_tool(Tool.BRUSH)
    window.editing.press("axial", window.state.crosshair)
    window.editing.release()
    window.state.set_tool(Tool.NAVIGATE)
    assert window.editing.unsaved
    window.editing.close_session(discard=True)  # (the unsaved-edits question is tested elsewhere)
    window.editing.start(window.segmentation.labels)
    window.document.measurements.add_ruler((5.0, 5.0, 10.0), (30.0, 5.0, 10.0))
    window.measure_panel.measure_rano()
    assert window.measure_panel.table.rowCount() >= 1
    assert window.click_tool.prior is not None or window.segmentation.probabilities is None
    window.segment_panel.stopped("Done in 1 s: a line about the first study")
    window.save_screenshot(screenshots / "study_after_study_first.png")
    meshed = len(view_3d.predictions)

    open_toy(qtbot, window, second_case)
    qtbot.wait(800)  # past the 3D view's delayed update of the last stroke
    assert window.document is not first and first.closed
    assert window.volume.study.sources["t1ce"].parent == second_case
    assert window.segmentation is None
    assert window.editing.session is None and window.editing.code_ras is None
    assert window.grid.prediction is None and window.grid.original is None
    assert all(view.codes["prediction"] is None and view.codes["original"] is None for view in window.grid.views)
    assert window.segment_panel.message.text() == ""
    assert all(window.segment_panel.cell(row, 1) == "" for row in range(3))  # no predicted volumes
    assert window.measure_panel.table.rowCount() == 0 and window.document.measurements.empty
    assert window.measure_panel.measurements is window.document.measurements
    assert window.click_tool.prior is None
    assert "unsaved" not in window.windowTitle()
    assert view_3d.volumes[-1] is window.volume and len(view_3d.predictions) == meshed  # nothing of the first
    assert window.review_panel.differences == [] and window.review_panel.comparison is None
    window.save_screenshot(screenshots / "study_after_study_second.png")

    # and the first comes back with its own annotations (its measurements were saved with it)
    open_toy(qtbot, window, first_case)
    assert len(window.document.measurements.rulers) == 1
    assert window.document.measurements.rano is not None or window.measure_panel.rano_label.text()


@pytest.mark.parametrize("action", ["segment_then_open", "open_during_segment"])
def test_a_result_for_the_first_study_never_lands_on_the_second(qtbot, settings, monkeypatch, tmp_path,
                                                                  tiny_model, action) -> None:  # noqa: F811
    first_case, second_case = write_toy_case(tmp_path / "first"), write_toy_case(tmp_path / "second")
    window = make_window(qtbot, settings, monkeypatch, model_dir=tiny_model[0])
    open_toy(qtbot, window, first_case)
    if action == "open_during_segment":
        assert window.run_segmentation() is not None
        open_toy(qtbot, window, second_case)  # the segmentation of the first is dropped
        qtbot.waitUntil(lambda: window.runner.current("segment") is None and not window.runner.running,
                        timeout=60_000)
        qtbot.wait(100)
    else:
        segment(qtbot, window)
        open_toy(qtbot, window, second_case)
    assert window.segmentation is None and window.editing.session is None and window.grid.prediction is None
    assert window.segment_panel.segment_button.isEnabled()
