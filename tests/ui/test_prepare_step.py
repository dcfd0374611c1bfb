"""The viewer's Prepare step on a small synthetic raw study: flagged as not BraTS-ready, prepared in
a worker, its brain mask checked (dilate / undo / redo) and accepted, segmented, mapped back onto an
original grid; cancel and failure leave the study as it was.

The raw study is a real BraTS case downsampled to 2 mm and made raw by `tests/core/raw_builders.py`
(skull, noise, known rigid motions, a 5 mm FLAIR, a RAS T2); registration and brain extraction run
with light settings so a whole preparation takes seconds.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from brainseg_gui.app.prepare_tasks import BRAIN_LABEL, PrepareOptions
from brainseg_gui.core.brain_extraction import BrainExtractionParams
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.prepared_space import PrepareRecord
from brainseg_gui.core.registration import RegistrationSettings
from brainseg_gui.ui.main_window import MainWindow
from brainseg_gui.ui.overlay import COLOURS
from brainseg_gui.ui.prepare_controller import Stage
from brainseg_gui.ui.viewer_state import Tool
from tests.core.raw_builders import RawCase, make_raw_case
from tests.ui.conftest import REPO, colour_mask, rgb

TIMEOUT_MS = 120_000
SHOTS = REPO / "screenshots" / "issue8"
#: Light settings: the GUI flow is under test here, the pipeline's accuracy in tests/core.
FAST = PrepareOptions(
    resolution_mm=2.0,
    registration=RegistrationSettings(working_mm=4.0, shrink_factors=(2, 1), smoothing_sigmas_mm=(2.0, 0.0),
                                      sampling_percentages=(0.2, 0.1), iterations=40),
    brain=BrainExtractionParams(iterations=150),
)


class AutoPrompter:
    """Answers the Prepare step's questions: the output folder is fixed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.asked: list[Path] = []

    def output_folder(self, suggested: Path) -> Path:
        self.asked.append(suggested)
        return self.folder


def downsampled_case(case_dir: Path, out: Path, factor: int = 2) -> Path:
    """A BraTS case folder at `factor` times its voxel size (every factor-th voxel)."""
    folder = out / case_dir.name
    folder.mkdir(parents=True)
    for path in case_dir.glob("*.nii.gz"):
        image = nib.load(path)
        array = np.asarray(image.dataobj)[::factor, ::factor, ::factor]
        nib.save(nib.Nifti1Image(array, image.affine @ np.diag([factor, factor, factor, 1.0])), folder / path.name)
    return folder


@pytest.fixture(scope="module")
def raw(real_case: Path, tmp_path_factory) -> RawCase:
    root = tmp_path_factory.mktemp("raw8")
    return make_raw_case(downsampled_case(real_case, root / "small"), root / "raw", crop_margin_mm=16.0)


@pytest.fixture
def window(qtbot, settings, monkeypatch, tmp_path) -> MainWindow:
    monkeypatch.setenv("BRAINSEG_NO_3D", "1")
    window = MainWindow(settings=settings, predictor_factory=_no_model)
    window.prepare.options = FAST
    window.prepare.prompter = AutoPrompter(tmp_path / "prepared")
    qtbot.addWidget(window)
    window.resize(1500, 900)
    window.show()
    qtbot.waitExposed(window)
    return window


def _no_model():
    raise AssertionError("these tests do not segment with a model")


def open_and_check(qtbot, window: MainWindow, path: Path) -> None:
    with qtbot.waitSignal(window.study_opened, timeout=TIMEOUT_MS):
        window.open_study(path)
    qtbot.waitUntil(lambda: window.prepare.stage not in (Stage.NONE, Stage.CHECKING), timeout=TIMEOUT_MS)


def prepare(qtbot, window: MainWindow):
    with qtbot.waitSignal(window.prepare.review_shown, timeout=TIMEOUT_MS) as blocker:
        assert window.prepare.ask_prepare() is not None
    qtbot.waitUntil(lambda: window.prepare.busy is None, timeout=TIMEOUT_MS)
    return blocker.args[0]


def wait_idle(qtbot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: window.prepare.busy is None and not window.prepare.steps.running, timeout=TIMEOUT_MS)


def shot(qtbot, window: MainWindow, name: str) -> None:
    qtbot.wait(300)  # let the rebuilt views and the panel lay out and paint
    window.save_screenshot(SHOTS / name)


def test_raw_study_is_flagged_and_offered_preparation(qtbot, window, raw) -> None:
    open_and_check(qtbot, window, raw.files["t1ce"].parent)
    controller, panel = window.prepare, window.prepare_panel
    assert controller.stage is Stage.NOT_READY
    problems = " ".join(controller.readiness.problems)
    assert "different grid" in problems and "skull" in problems and "5 mm" in problems
    assert panel.banner.isVisible() and "Not BraTS-ready" in panel.banner.text()
    assert panel.prepare_button.isVisible() and panel.prepare_button.isEnabled()
    assert not panel.review_box.isVisible()
    # the viewer shows it anyway (resampled onto one grid for display, and says so)
    assert window.volume is not None and any("resampled" in w for w in window.volume.study.warnings)
    # segmenting it as it is goes on, with a warning in the status bar
    assert controller.allow_segmentation()
    assert "not BraTS-ready" in window.statusBar().currentMessage()
    shot(qtbot, window, "1_not_ready.png")


@pytest.mark.slow
def test_prepare_check_accept_segment_and_map_back(qtbot, window, raw, tmp_path) -> None:
    open_and_check(qtbot, window, raw.files["t1ce"].parent)
    controller, panel = window.prepare, window.prepare_panel  # the mask: window.editing, the shown study's
    controller.options = dataclasses.replace(FAST, brain=BrainExtractionParams())  # a mask worth looking at
    raw_volume = window.volume
    window.state.set_label("ET")

    review = prepare(qtbot, window)
    assert window.state.label == "ED"  # the brain mask is painted as label 2
    out = tmp_path / "prepared"
    assert controller.prompter.asked and controller.prompter.asked[0].name == f"{raw.case_id}_prepared"
    assert controller.stage is Stage.REVIEW and window.volume is review.volume
    assert (out / f"{raw.case_id}_prepare.json").is_file()
    # the unmasked prepared images with the proposed mask as the editable mask, drawn green
    session = window.editing.session
    assert session is not None
    np.testing.assert_array_equal(session.labels != 0, review.brain)
    assert set(np.unique(session.labels)) == {0, BRAIN_LABEL}
    assert review.volume.study.grid.same_as(review.prepared.grid)
    assert float(np.asarray(review.volume.study.images["t1"])[~review.brain].max()) > 0  # skull still shown
    dice = 2 * (review.brain & raw.brain).sum() / (review.brain.sum() + raw.brain.sum())
    assert dice > 0.8, f"brain mask Dice {dice:.3f} against the known brain"
    assert panel.review_box.isVisible() and panel.accept_button.isEnabled()
    assert "Check the brain mask" in panel.banner.text()
    assert window.run_segmentation() is None  # not before the mask is accepted
    inside = tuple(int(v) for v in np.argwhere(np.asarray(window.editing.code_ras) != 0)[0])  # a RAS voxel of the mask
    window.state.set_crosshair(inside)
    readout = window.position_label.text()
    assert "brain mask" in readout and "predicted" not in readout, readout  # never "predicted ED" over the brain
    view = window.grid.views[0]
    assert colour_mask(rgb(view.grab()), COLOURS["WT"], tolerance=120).sum() > 100
    shot(qtbot, window, "2_brain_mask_check.png")

    # dilate, then undo it; erode; redo with another threshold and undo that too
    before = controller.brain_ml()
    proposed = review.brain.copy()
    controller.adjust(2.0)
    wait_idle(qtbot, window)
    assert controller.brain_ml() > before + 20
    assert (session.labels != 0)[proposed].all()
    window.editing.undo()
    np.testing.assert_array_equal(session.labels != 0, proposed)
    controller.adjust(-2.0)
    wait_idle(qtbot, window)
    assert controller.brain_ml() < before - 20
    window.editing.undo()
    panel.threshold_box.setValue(0.3)
    panel.redo()
    wait_idle(qtbot, window)
    redone = session.labels != 0
    assert not np.array_equal(redone, proposed)
    assert controller.options.brain.fractional_threshold == pytest.approx(0.3)
    window.editing.undo()
    np.testing.assert_array_equal(session.labels != 0, proposed)

    # the ordinary tools on the mask: brush just outside it, eraser inside it (RAS voxels of the axial view)
    z = window.state.crosshair[2]
    inside = (window.editing.code_ras[:, :, z] != 0)
    ring = ndimage.binary_dilation(inside, iterations=3) & ~inside
    outside_voxel = (*(int(c) for c in np.argwhere(ring)[len(np.argwhere(ring)) // 2]), z)
    inside_voxel = (*(int(c) for c in np.argwhere(ndimage.binary_erosion(inside, iterations=6))[0]), z)
    panel.brush_box.setValue(4.0)
    assert window.state.brush_mm == 4.0
    for tool, voxel in ((Tool.BRUSH, outside_voxel), (Tool.ERASER, inside_voxel)):
        panel.tool_buttons[tool].click()
        assert window.state.tool is tool and panel.accept_button.isVisible()  # Accept stays in sight
        window.editing.press("axial", voxel)
        window.editing.release()
    edited = session.labels != 0
    assert edited[window.volume.file_index(outside_voxel)] and not edited[window.volume.file_index(inside_voxel)]
    assert panel.tool_buttons[Tool.ERASER].isChecked()
    assert not window.editing.unsaved  # brain-mask edits are never offered for export as a tumour mask
    shot(qtbot, window, "3_brain_mask_edited.png")
    with qtbot.waitSignal(controller.prepared_shown, timeout=TIMEOUT_MS):
        controller.accept()
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: controller.stage is Stage.READY, timeout=TIMEOUT_MS)
    assert window.volume is not review.volume and window.volume is not raw_volume
    written = np.asarray(nib.load(out / f"{raw.case_id}_brainmask.nii.gz").dataobj) != 0
    np.testing.assert_array_equal(written, edited)
    study = window.volume.study
    assert study.grid.same_as(review.prepared.grid)
    assert float(np.abs(study.images["t1ce"][~edited]).max()) == 0.0  # skull-stripped with the checked mask
    assert controller.record is not None and controller.readiness.ready
    assert "user" in str(controller.record.data["brain_extraction"]["method"])
    assert window.editing.session is None and window.state.label == "ET"  # the class painted before is back
    assert window.state.tool is Tool.NAVIGATE
    assert panel.scanner_box.isVisible() and not panel.map_button.isEnabled()  # nothing segmented yet
    shot(qtbot, window, "4_prepared_ready.png")

    # "segmented": the true labels (they live on the t1ce grid, which is the prepared grid here)
    assert window.prepare.allow_segmentation()
    window.editing.start(raw.labels, model_version="truth", base="known labels")
    assert panel.map_button.isEnabled()
    with qtbot.waitSignal(controller.scanner_shown, timeout=TIMEOUT_MS) as blocker:
        controller.map_back("t2")
    wait_idle(qtbot, window)
    view_t2 = blocker.args[0]
    assert controller.stage is Stage.SCANNER
    assert window.volume.study.grid.same_as(raw.grids["t2"])
    mapped = window.editing.session.labels
    truth = raw.labels_on("t2")
    overlap = 2 * ((mapped > 0) & (truth > 0)).sum() / ((mapped > 0).sum() + (truth > 0).sum())
    assert overlap > 0.8, f"whole tumour mapped onto the original T2 grid: Dice {overlap:.3f}"
    np.testing.assert_array_equal(view_t2.labels, mapped)
    assert window.run_segmentation() is None
    assert panel.return_button.isVisible()
    assert "Scanner space" in panel.banner.text() and panel.sequence_box.currentData() == "t2"
    assert window.state.sequence == "t2"
    window.move_crosshair(tuple(int(c) for c in np.argwhere(window.editing.code_ras != 0).mean(axis=0)))
    shot(qtbot, window, "5_scanner_space_t2.png")

    with qtbot.waitSignal(window.study_opened, timeout=TIMEOUT_MS):
        controller.back_to_prepared()
    qtbot.waitUntil(lambda: controller.stage is Stage.READY, timeout=TIMEOUT_MS)
    np.testing.assert_array_equal(window.editing.session.labels, raw.labels)
    assert isinstance(controller.record, PrepareRecord)

    # a prepared study's mask can be checked again, from its folder (images resampled from the sources)
    assert panel.recheck_button.isVisible() and not panel.prepare_button.isVisible()
    window.editing.close_session(discard=True)
    with qtbot.waitSignal(controller.review_shown, timeout=TIMEOUT_MS) as blocker:
        controller.recheck()
    wait_idle(qtbot, window)
    again = blocker.args[0]
    np.testing.assert_array_equal(again.brain, edited)
    np.testing.assert_allclose(again.prepared.images["t1ce"], review.prepared.images["t1ce"], atol=1e-3)
    with qtbot.waitSignal(window.study_opened, timeout=TIMEOUT_MS):
        controller.back_to_original()
    qtbot.waitUntil(lambda: controller.stage is Stage.READY, timeout=TIMEOUT_MS)
    assert controller.record is not None and controller.review is None


def test_cancel_leaves_the_study_as_it_was(qtbot, window, raw, tmp_path) -> None:
    open_and_check(qtbot, window, raw.files["t1ce"].parent)
    controller, panel = window.prepare, window.prepare_panel
    shown = window.volume
    reported: list[str] = []
    controller.progress.connect(lambda _f, text: reported.append(text))
    job = controller.ask_prepare()
    assert job is not None and controller.busy is not None
    assert panel.cancel_button.isVisible() and not panel.prepare_button.isEnabled()
    assert controller.ask_prepare() is None  # one run at a time
    qtbot.waitUntil(lambda: any("register" in text for text in reported), timeout=TIMEOUT_MS)
    shot(qtbot, window, "0_preparing.png")
    window.set_sequence("flair")  # the viewer stays usable meanwhile
    assert window.state.sequence == "flair"
    with qtbot.waitSignal(job.signals.cancelled, timeout=TIMEOUT_MS):
        panel.cancel_button.click()
    wait_idle(qtbot, window)
    assert window.volume is shown and controller.stage is Stage.NOT_READY and controller.review is None
    assert not (tmp_path / "prepared" / f"{raw.case_id}_prepare.json").exists()
    assert "cancelled" in panel.message.text().lower()
    assert not panel.cancel_button.isVisible() and panel.prepare_button.isEnabled()
    assert window.last_error is None


def test_failure_shows_one_dialog_and_keeps_the_study(qtbot, window, toy_case) -> None:
    def broken(*_args, **_kwargs):
        time.sleep(0.05)
        raise BrainSegError("brain extraction found no brain; try a lower fractional_threshold")

    window.prepare.prepare_fn = broken
    open_and_check(qtbot, window, toy_case)
    controller = window.prepare
    assert controller.stage is Stage.NOT_READY  # 4 mm slices
    assert any("slice thickness 4 mm" in p for p in controller.readiness.problems)
    shown = window.volume
    controller.prepare()
    wait_idle(qtbot, window)
    assert "found no brain" in (window.last_error or "")
    assert window.volume is shown and controller.stage is Stage.NOT_READY
    assert window.prepare_panel.prepare_button.isEnabled()


def test_ready_study_says_so(qtbot, window) -> None:
    with qtbot.waitSignal(window.study_opened, timeout=TIMEOUT_MS):
        window.open_demo()
    qtbot.waitUntil(lambda: window.prepare.stage is Stage.READY, timeout=TIMEOUT_MS)
    panel = window.prepare_panel
    assert "BraTS-ready" in panel.banner.text() and "Not" not in panel.banner.text()
    assert not panel.review_box.isVisible() and not panel.scanner_box.isVisible()


def test_replace_mask_is_one_undoable_step() -> None:
    from brainseg_gui.app.prepare_tasks import replace_mask
    from brainseg_gui.core.edit_session import EditSession
    from brainseg_gui.core.study import Grid

    grid = Grid((24, 20, 12), np.diag([1.0, 1.2, 2.5, 1.0]))
    i, j, k = np.meshgrid(*(np.arange(n) for n in grid.shape), indexing="ij")
    start = ((i - 10) ** 2 + (j - 9) ** 2 + 4 * (k - 6) ** 2) < 30
    moved = ((i - 13) ** 2 + (j - 9) ** 2 + 4 * (k - 5) ** 2) < 40
    session = EditSession(start.astype(np.uint8) * BRAIN_LABEL, grid)
    with session.stroke("replace"):
        box = replace_mask(session, moved)
    np.testing.assert_array_equal(session.labels != 0, moved)
    assert set(np.unique(session.labels)) == {0, BRAIN_LABEL}
    changed = np.argwhere(start != moved)
    assert all(box[a].start <= changed[:, a].min() and changed[:, a].max() < box[a].stop for a in range(3))
    assert session.undo_depth == 1
    session.undo()
    np.testing.assert_array_equal(session.labels != 0, start)
    with session.stroke("same"):
        assert replace_mask(session, start) is None


def test_a_lone_series_is_named_before_it_is_prepared(qtbot, window, tmp_path) -> None:
    from tests.ui.conftest import toy_arrays

    images, _, affine = toy_arrays()
    scan = tmp_path / "single" / "scan.nii.gz"
    scan.parent.mkdir()
    nib.save(nib.Nifti1Image(images["t1"].astype(np.int16), affine), scan)
    asked: dict = {}

    def recorder(source, out_dir, **kwargs):
        asked.update(kwargs, source=source)
        raise BrainSegError("stopped by the test")

    window.prepare.prepare_fn = recorder
    open_and_check(qtbot, window, scan)
    controller, panel = window.prepare, window.prepare_panel
    assert controller.single_sequence == "flair"  # what a lone file is read as
    assert panel.single_row.isVisible() and panel.single_box.currentData() == "flair"
    panel.single_box.setCurrentIndex(panel.single_box.findData("t1"))
    panel.single_box.activated.emit(panel.single_box.currentIndex())
    assert controller.single_sequence == "t1"
    controller.prepare(tmp_path / "out")
    wait_idle(qtbot, window)
    assert asked["source"] is None and asked["files"] == {"t1": scan}
    assert "stopped by the test" in window.last_error
