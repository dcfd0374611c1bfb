"""Segment from the GUI with a tiny randomly initialised model: overlays, table, cancel, failure."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from brainseg_gui.ml.checkpoint import ModelCard, save_model
from brainseg_gui.ml.networks import build_generator
from brainseg_gui.ml.predictor import Predictor
from brainseg_gui.ui.main_window import MainWindow
from brainseg_gui.ui.overlay import COLOURS, Fill, OverlayLook
from tests.ui.conftest import colour_mask, rgb, shown_window

TINY = {"in_channels": 4, "out_channels": 3, "widths": [4, 8], "convs_per_level": 1, "down": "pool",
        "deep_supervision": False}
TIMEOUT_MS = 60_000


@pytest.fixture
def tiny_model(tmp_path: Path) -> tuple[Path, str]:
    torch.manual_seed(0)
    card = save_model(tmp_path / "model", build_generator("generator3d", TINY),
                      ModelCard(architecture="generator3d", config=TINY, resolution_mm=2.0))
    return tmp_path / "model", card.version


class GatedPredictor:
    """The real predictor, except that while `hold` is set a call waits until it is cancelled."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.hold = False
        self.model_version = predictor.model_version
        self.device_description = predictor.device_description

    def __call__(self, study, *, progress, cancel):
        deadline = time.monotonic() + 20
        while self.hold and time.monotonic() < deadline:
            progress(0.1, "waiting")
            cancel.raise_if_cancelled()
            time.sleep(0.01)
        if self.hold:
            raise AssertionError("the test never cancelled")
        return self.predictor(study, progress=progress, cancel=cancel)


def make_window(qtbot, settings, monkeypatch, **kwargs) -> MainWindow:
    return shown_window(qtbot, settings, monkeypatch, **kwargs)


def open_toy(qtbot, window: MainWindow, folder: Path) -> None:
    with qtbot.waitSignal(window.study_opened, timeout=TIMEOUT_MS):
        window.open_study(folder)


def segment(qtbot, window: MainWindow):
    with qtbot.waitSignal(window.segmentation_done, timeout=TIMEOUT_MS) as blocker:
        assert window.run_segmentation() is not None
    qtbot.waitUntil(lambda: window.segment_panel.segment_button.isEnabled())
    return blocker.args[0]


def test_segment_shows_overlay_table_and_model(qtbot, settings, monkeypatch, toy_case, tiny_model,
                                               screenshots) -> None:
    model_dir, version = tiny_model
    window = make_window(qtbot, settings, monkeypatch, model_dir=model_dir)
    open_toy(qtbot, window, toy_case)
    window.state.set_look(OverlayLook(opacity=1.0))
    window.state.set_shown("truth", False)
    view = window.grid.views[0]
    before = colour_mask(rgb(view.grab()), COLOURS["ET"]).sum()

    result = segment(qtbot, window)
    assert result.code.shape == window.volume.shape
    assert result.model_version == version
    # the real predictor keeps its probabilities: the Click tool's prior, on the study's own grid
    assert result.probabilities is not None and window.click_tool.prior is result.probabilities
    assert result.probabilities.shape == (3, *window.volume.study.grid.shape)
    assert version in window.segment_panel.model_label.text()
    assert "CPU" in window.segment_panel.device_label.text()
    for row, region in enumerate(("WT", "TC", "ET")):
        assert float(window.segment_panel.cell(row, 1)) == pytest.approx(result.volumes_ml[region], abs=0.01)
        dice = float(window.segment_panel.cell(row, 3))
        assert dice == pytest.approx(result.metrics[region].dice, abs=1e-3)
        assert 0.0 <= dice <= 1.0
        assert float(window.segment_panel.cell(row, 4)) >= 0.0
    # the prediction layer holds the predicted slice and the picture shows its colour
    z = window.state.crosshair[2]
    shown = view.layers["prediction"].item.image
    np.testing.assert_array_equal(shown, result.code[:, :, z])
    assert window.overlay_panel.source_checks["prediction"].isEnabled()
    after = rgb(view.grab())
    predicted_et = (result.code[:, :, z] & 4).sum()
    if predicted_et:
        assert colour_mask(after, COLOURS["ET"]).sum() > before
    window.state.set_fill("truth", Fill.OUTLINE)
    window.state.set_shown("truth", True)
    window.state.set_look(OverlayLook(opacity=0.45))
    window.save_screenshot(screenshots / "toy_segmented.png")
    assert "predicted" in window.position_label.text()


def test_cancel_keeps_what_was_shown(qtbot, settings, monkeypatch, toy_case, tiny_model) -> None:
    model_dir, _ = tiny_model
    gated = GatedPredictor(Predictor.from_model_dir(model_dir, device="cpu"))
    window = make_window(qtbot, settings, monkeypatch, predictor_factory=lambda: gated)
    open_toy(qtbot, window, toy_case)
    first = segment(qtbot, window)
    table = [window.segment_panel.cell(r, 1) for r in range(3)]

    gated.hold = True
    job = window.run_segmentation()
    assert window.segment_panel.cancel_button.isEnabled()
    assert not window.segment_panel.segment_button.isEnabled()
    assert window.run_segmentation() is None  # one run at a time
    with qtbot.waitSignal(job.signals.cancelled, timeout=TIMEOUT_MS):
        window.segment_panel.cancel_button.click()
    qtbot.waitUntil(lambda: window.segment_panel.segment_button.isEnabled())
    assert window.segmentation is first
    # the views show the (editable) mask made from the first result, untouched
    assert window.grid.prediction is window.editing.code_ras
    np.testing.assert_array_equal(window.grid.prediction, first.code)
    assert [window.segment_panel.cell(r, 1) for r in range(3)] == table
    assert "Cancelled" in window.segment_panel.message.text()
    assert not window.segment_panel.progress.isVisible()


def test_failure_shows_the_error_and_keeps_the_views(qtbot, settings, monkeypatch, toy_case, tmp_path) -> None:
    empty = tmp_path / "no-model-here"
    empty.mkdir()
    window = make_window(qtbot, settings, monkeypatch, model_dir=empty)
    open_toy(qtbot, window, toy_case)
    job = window.run_segmentation()
    qtbot.waitUntil(lambda: job.done and window.last_error is not None, timeout=TIMEOUT_MS)
    assert "no-model-here" in window.last_error
    assert window.segmentation is None and window.grid.prediction is None
    assert "Failed" in window.segment_panel.message.text()
    # the error is reported before the job's finished signal re-enables the button: wait for that one
    qtbot.waitUntil(window.segment_panel.segment_button.isEnabled, timeout=TIMEOUT_MS)


def test_a_study_missing_a_sequence_is_segmented_and_flagged(qtbot, settings, monkeypatch, toy_case, tiny_model,
                                                            tmp_path) -> None:
    """The viewer segments with what is there and says so; it never points to a command-line flag."""
    import shutil

    case = tmp_path / "without_flair" / toy_case.name
    shutil.copytree(toy_case, case)
    for flair in case.glob("*_flair.nii*"):
        flair.unlink()
    model_dir, _ = tiny_model
    window = make_window(qtbot, settings, monkeypatch, model_dir=model_dir)
    open_toy(qtbot, window, case)
    assert "flair" in window.volume.study.missing
    result = segment(qtbot, window)
    assert "without flair" in result.flag
    message = window.segment_panel.message.text()
    assert "Flagged: predicted without flair" in message and "--" not in message
