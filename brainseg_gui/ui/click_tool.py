"""The Click tool: correct the mask by clicking on a slice (the GUI side of `core.click_refine`).

Left click adds the chosen region where the mask misses it, right click removes a wrong part of
it, a left drag draws a box inside which it is re-segmented; the region is WT, TC or ET, or the
tissue class the brush paints (the edit panel's "Click acts on"). Each click runs `apply_click`
(a random walker over a box around the click, 0.05-0.5 s) in a worker, so the viewer stays
responsive; its result is written on the GUI thread through the edit controller as one undoable,
journaled step, exactly like a brush stroke. One correction runs at a time and clicks made
meanwhile are ignored (with a word in the status bar): each click must start from the mask the
previous one left, and a result computed from a mask that changed meanwhile is dropped.

The slice views report RAS voxels; the click goes to `click_refine` in the file's (i, j, k) through
`DisplayVolume.file_index`, as the brush's does. The model's probabilities of the last
segmentation of the shown study are the prior (`set_prior`); without them (a loaded mask, a new
study) the sequences alone guide the correction.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, Signal

from brainseg_gui.app.document import Workspace
from brainseg_gui.app.editing import Editing
from brainseg_gui.core.click_refine import Box, Click, RefineContext, apply_click
from brainseg_gui.core.edit_session import EditSession
from brainseg_gui.core.progress import CancelToken, ProgressFn
from brainseg_gui.core.study import Study
from brainseg_gui.ui.viewer_state import AXIS_OF_PLANE, Tool, ViewerState
from brainseg_gui.ui.workers import Job, JobRunner

Voxel = tuple[int, int, int]
#: A left drag spanning fewer voxels than this (in the plane) is a click, not a box.
MIN_BOX_VOXELS = 2
#: A box drawn on one slice reaches this far through the neighbouring slices, each way (mm).
BOX_DEPTH_MM = 10.0
#: Tooltip of the tool button (also the gesture summary for Help).
TOOLTIP = ("Click (AI), key A: left click adds where the mask misses, right click removes a wrong region, "
           "drag a box to re-segment inside it. Acts on the region chosen under 'Click acts on'.")


def click_name(click: Click) -> str:
    """The undo step's name: 'click WT +', 'click ED -', 'click TC box'."""
    kind = "box" if click.corner is not None else "+" if click.positive else "-"
    return f"click {click.label} {kind}"


@dataclass(frozen=True)
class _Request:
    """What a running correction started from, to check on its return that it still applies."""

    click: Click
    session: EditSession
    revision: int
    labels: np.ndarray  # the session's labels when the click was made (a copy)
    study: Study
    prior: np.ndarray | None


@dataclass(frozen=True)
class _Result:
    labels: np.ndarray
    box: Box
    context: RefineContext
    seconds: float


def _correct(request: _Request, context: RefineContext | None, *, progress: ProgressFn,
             cancel: CancelToken) -> _Result:
    """The worker's part: the refine context (built once per study and prior), then the click."""
    started = time.perf_counter()
    if context is None:
        progress(0.1, "Preparing the images for click correction")
        study = request.study
        context = RefineContext.build(study.images, study.grid.spacing, request.prior)
    cancel.raise_if_cancelled()
    labels, box = apply_click(request.labels, request.click, context)
    return _Result(labels, box, context, time.perf_counter() - started)


class ClickTool(QObject):
    """Turns the slice views' gestures into click corrections, run one at a time in a worker."""

    status = Signal(str, int)  # text for the status bar, milliseconds to show it (0: until replaced)
    error = Signal(str, str)  # title, message: a correction that failed
    finished = Signal(object)  # the file box written, or None (nothing changed, dropped or failed)

    def __init__(self, state: ViewerState, workspace: Workspace, runner: JobRunner,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.workspace = workspace
        self.runner = runner
        self.prior: np.ndarray | None = None
        self._context: RefineContext | None = None
        self._context_for: tuple[Study, np.ndarray | None] | None = None
        self._job: Job | None = None
        self._press: tuple[str, Voxel] | None = None
        self._drag_end: Voxel | None = None

    @property
    def editing(self) -> Editing:
        """The shown study's editing."""
        return self.workspace.document.editing

    # ---- state ------------------------------------------------------------------------------
    def set_prior(self, probabilities: np.ndarray | None) -> None:
        """The model's (3, i, j, k) WT/TC/ET probabilities on the shown study's grid, or None (a new
        study, a scanner-space view, a mask without a prediction)."""
        self.prior = probabilities
        self._context = self._context_for = None

    @property
    def busy(self) -> bool:
        return self._job is not None

    def target(self) -> str:
        """What the next click names: WT, TC or ET, or the brush's class (NCR, ED, ET)."""
        target = self.state.click_target
        return self.state.label if target == "label" else target

    # ---- gestures from the slice views (RAS voxels) ------------------------------------------
    def press(self, plane: str, voxel: Voxel) -> None:
        if self.state.tool is Tool.CLICK:
            self._press, self._drag_end = (plane, voxel), voxel

    def move(self, voxel: Voxel) -> None:
        if self._press is not None:
            self._drag_end = voxel

    def release(self) -> None:
        """A left click (positive) or, when the drag spans a few voxels, a box on that slice."""
        if self._press is None or self._drag_end is None:
            return
        (plane, start), end = self._press, self._drag_end
        self._press = self._drag_end = None
        axis = AXIS_OF_PLANE[plane]
        if max(abs(start[a] - end[a]) for a in range(3) if a != axis) >= MIN_BOX_VOXELS:
            self.box(plane, start, end)
        else:
            self.click(start, positive=True)

    def negative(self, plane: str, voxel: Voxel) -> None:
        """The right click: remove a wrong region under it."""
        if self.state.tool is Tool.CLICK:
            self.click(voxel, positive=False)

    # ---- actions (tests call them directly) --------------------------------------------------
    def click(self, voxel: Voxel, *, positive: bool = True) -> Job | None:
        """A click at a RAS voxel on the chosen target; None when it cannot start now."""
        volume = self.editing.volume
        if volume is None:
            return None
        return self.submit(Click(volume.file_index(voxel), self.target(), positive))

    def box(self, plane: str, corner: Voxel, opposite: Voxel) -> Job | None:
        """Re-segment the box spanned by two RAS voxels of a plane's slice, `BOX_DEPTH_MM` deep each way."""
        volume = self.editing.volume
        if volume is None:
            return None
        file_axis = self.editing.file_axis(plane)
        first, last = list(volume.file_index(corner)), list(volume.file_index(opposite))
        depth = math.ceil(BOX_DEPTH_MM / volume.study.grid.spacing[file_axis])
        first[file_axis] = max(0, first[file_axis] - depth)
        last[file_axis] = min(volume.study.grid.shape[file_axis] - 1, last[file_axis] + depth)
        return self.submit(Click((first[0], first[1], first[2]), self.target(), True,
                                 corner=(last[0], last[1], last[2])))

    def submit(self, click: Click) -> Job | None:
        """Run one correction (file voxels) in a worker; ignored while another one runs."""
        volume = self.editing.volume
        if volume is None:
            return None
        if self._job is not None:
            self.status.emit("Still correcting the last click: this one was ignored.", 4000)
            return None
        if self.editing.session is None:
            self.editing.start_default()
        session = self.editing.session
        assert session is not None
        request = _Request(click, session, session.revision, session.snapshot(), volume.study, self.prior)
        context = self._context if self._cached_for(volume.study, self.prior) else None
        self.status.emit("Correcting…" if context is not None else
                         "Correcting… (the first click prepares the images)", 0)
        job = self.runner.start(
            f"Correcting ({click_name(click)})", lambda **kw: _correct(request, context, **kw),
            on_result=lambda result: self._done(request, result),
            on_error=lambda error: self._failed(error),
            on_finished=lambda: self._finished(job))
        self._job = job
        return job

    # ---- results, on the GUI thread ----------------------------------------------------------
    def _cached_for(self, study: Study, prior: np.ndarray | None) -> bool:
        return self._context_for is not None and self._context_for[0] is study and self._context_for[1] is prior

    def _done(self, request: _Request, result: _Result) -> None:
        self._job = None  # before `finished`: whoever listens may click again at once
        volume = self.editing.volume
        if volume is not None and volume.study is request.study and self.prior is request.prior:
            self._context, self._context_for = result.context, (request.study, request.prior)
        session = self.editing.session
        if session is not request.session or session.revision != request.revision:
            self.status.emit("The mask changed while correcting: the click was dropped, click again.", 6000)
            self.finished.emit(None)
            return
        box = result.box
        name = click_name(request.click)
        count = int((result.labels[box] != request.labels[box]).sum())
        changed = self.editing.replace_box(box, result.labels[box], name) if count else None
        title = name[0].upper() + name[1:]
        self.status.emit(f"{title}: {count} voxel{'s' if count != 1 else ''} changed ({result.seconds:.1f} s)."
                         if count else f"{title}: nothing to change here.", 6000)
        self.finished.emit(changed)

    def _failed(self, error: BaseException) -> None:
        self._job = None
        self.status.emit("The click correction failed.", 6000)
        self.error.emit("Click correction failed", str(error))
        self.finished.emit(None)

    def _finished(self, job: Job) -> None:
        if job is self._job:
            self._job = None
