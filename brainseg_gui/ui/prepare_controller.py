"""The viewer's Prepare step: readiness banner -> prepare in a worker -> the user checks the brain
mask (accept, adjust, redo) -> the prepared study is segmented -> the mask goes back to scanner space.

Every study the user opens is checked (`core.readiness`) in a worker. A study that is not
BraTS-ready can be prepared (`prepare_tasks.prepare_for_review`, cancellable, the app stays
usable); the unmasked prepared images are then shown with the proposed brain mask as an editable
mask (the ordinary brush and eraser work on it), plus erode/dilate and a redo with other
settings. Accepting writes the case with the checked mask and opens it; after segmentation the
mask can be shown on any original sequence's grid, where the exports write in scanner space.

Each user action is a method tests call without a display; questions go through `prompter`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QWidget

from brainseg_gui.app import prepare_tasks as work
from brainseg_gui.app.display_volume import DisplayVolume
from brainseg_gui.app.document import Document, Role
from brainseg_gui.app.prepare_tasks import MaskReview, PreparedMask, PrepareOptions, ScannerView
from brainseg_gui.core.brain_extraction import BrainExtractionParams
from brainseg_gui.core.labels import REGIONS, LabelConvention, to_regions
from brainseg_gui.core.prepare import prepare_study
from brainseg_gui.core.prepared_space import PrepareRecord
from brainseg_gui.core.readiness import Readiness
from brainseg_gui.ui.context import ViewerContext
from brainseg_gui.ui.slice_view import SEQUENCE_TITLES
from brainseg_gui.ui.step_runner import StepRunner
from brainseg_gui.ui.viewer_state import Tool
from brainseg_gui.ui.workers import Job

if TYPE_CHECKING:
    from brainseg_gui.ui.study_loader import StudyLoader

log = logging.getLogger(__name__)

#: The runner's slot of the readiness check (a new study's check replaces the old one's).
CHECK_SLOT = "readiness"


class Stage(str, Enum):
    NONE = "none"  # no study shown
    CHECKING = "checking"  # the readiness check is running
    READY = "ready"
    NOT_READY = "not ready"
    UNKNOWN = "unknown"  # the check itself failed
    REVIEW = "review"  # the user checks the brain mask of a prepared study
    SCANNER = "scanner"  # a mask mapped back onto an original sequence's grid


class PreparePrompter:
    """The questions of the Prepare step (modal); tests swap in one that answers by itself."""

    def __init__(self, parent: QWidget | None = None) -> None:
        self.parent = parent

    def output_folder(self, suggested: Path) -> Path | None:
        """Where to write the prepared study: a chosen folder + the suggested folder name."""
        start = suggested.parent if suggested.parent.is_dir() else Path.home()
        chosen = QFileDialog.getExistingDirectory(
            self.parent, f"Write the prepared study ({suggested.name}) into which folder?", str(start))
        return Path(chosen) / suggested.name if chosen else None


class PrepareController(QObject):
    changed = Signal()  # stage, busy state or what is available changed
    progress = Signal(float, str)
    message = Signal(str)  # one line for the user (also shown in the status bar)
    review_shown = Signal(object)  # MaskReview
    prepared_shown = Signal(object)  # DisplayVolume of the accepted, prepared study
    scanner_shown = Signal(object)  # ScannerView
    attention_wanted = Signal()  # this step's banner and buttons should be in sight

    def __init__(self, context: ViewerContext, loader: StudyLoader, options: PrepareOptions | None = None,
                 prepare_fn: Callable[..., Any] = prepare_study) -> None:
        super().__init__(context.parent)
        self.context = context
        self.loader = loader
        self.options = options or PrepareOptions()
        self.prepare_fn = prepare_fn
        self.prompter = PreparePrompter(context.parent)
        self.stage = Stage.NONE
        self.readiness: Readiness | None = None
        self.original: DisplayVolume | None = None  # the study the user opened (raw), to go back to
        self.review: MaskReview | None = None
        self.record: PrepareRecord | None = None  # set while a prepared study (or its scanner view) is shown
        self.scanner: ScannerView | None = None
        self.edits: list[str] = []  # what the user did to the proposed brain mask
        self.steps = StepRunner(context.runner, context.show_error, self)  # one long step at a time
        self._showing = False  # we asked the loader to show a volume we built
        self._prepared_mask: PreparedMask | None = None  # to come back from the scanner view
        self._label_before: str | None = None
        workspace = context.workspace
        workspace.replaced.connect(self._on_document)
        workspace.history_changed.connect(self._keep_mask_edits_saved)
        workspace.segmented.connect(lambda _result: self.changed.emit())
        workspace.session_changed.connect(lambda: self.changed.emit())
        self.steps.changed.connect(self.changed)
        self.steps.progress.connect(self.progress)
        self.steps.message.connect(self.message)
        self.message.connect(lambda text: context.status(text, 10000))

    @property
    def busy(self) -> str | None:
        """What the running step does (None when idle), for the panel."""
        return self.steps.busy

    # ---- what the panel and the menus ask --------------------------------------------------
    @property
    def segmentable(self) -> bool:
        """Whether Segment applies: not while the brain mask is checked or in the scanner-space view."""
        return self.stage not in (Stage.REVIEW, Stage.SCANNER)

    @property
    def can_prepare(self) -> bool:
        return (self.context.volume is not None and not self.steps.running and self.record is None
                and self.stage in (Stage.NOT_READY, Stage.READY, Stage.UNKNOWN, Stage.CHECKING))

    @property
    def can_recheck(self) -> bool:
        return self.record is not None and not self.steps.running and self.stage is not Stage.SCANNER

    @property
    def can_map_back(self) -> bool:
        return (self.record is not None and self.stage is not Stage.SCANNER and not self.steps.running
                and self.context.editing.session is not None)

    def allow_segmentation(self) -> bool:
        """Called before segmenting: refuses during the mask check and in the scanner view; for a
        study that is not BraTS-ready it goes on, and says (status bar) that the result is unreliable."""
        if self.stage is Stage.REVIEW:
            self.message.emit("Accept the brain mask first (or go back to the original study).")
            return False
        if self.stage is Stage.SCANNER:
            self.message.emit("This is the scanner-space view: go back to the prepared study to segment.")
            return False
        if self.stage is Stage.NOT_READY:
            self.message.emit("Segmenting a study that is not BraTS-ready: the result is unreliable. "
                              "Prepare it first (Ctrl+Shift+P).")
        return True

    # ---- readiness ---------------------------------------------------------------------------
    def check(self) -> Job | None:
        """Check the shown study in a worker; the banner follows."""
        document = self.context.document
        if document.volume is None:
            return None
        self.readiness = None
        self._set_stage(Stage.CHECKING)
        study = document.volume.study
        return self.context.runner.start(
            "Checking readiness", lambda **kw: work.readiness(study, **kw), slot=CHECK_SLOT,
            on_result=lambda result: self._checked(document, result),
            on_error=lambda error: self._check_failed(document, error))

    def _checked(self, document: Document, result: Readiness) -> None:
        if document is not self.context.document:
            return
        self.readiness = result
        self._set_stage(Stage.READY if result.ready else Stage.NOT_READY)
        if not result.ready:
            case_id = document.volume.study.case_id if document.volume is not None else ""
            count = f"{len(result.problems)} problem{'s' if len(result.problems) != 1 else ''}"
            self.message.emit(f"{case_id} is prepared but not BraTS-ready ({count}): check its brain "
                              "mask again." if self.record is not None else
                              f"{case_id} is not BraTS-ready ({count}): prepare it before segmenting.")

    def _check_failed(self, document: Document, error: BaseException) -> None:
        if document is self.context.document:
            log.warning("readiness check failed: %s", error)
            self.readiness = None
            self._set_stage(Stage.UNKNOWN)
            self.message.emit(f"Could not check whether the study is BraTS-ready: {error}")

    # ---- preparing ---------------------------------------------------------------------------
    def suggested_folder(self) -> Path:
        volume = self.context.volume or self.original
        assert volume is not None
        return work.suggested_output(volume.study)

    def ask_prepare(self) -> Job | None:
        """Prepare study…: ask where to write it, then prepare."""
        if not self.can_prepare:
            self.message.emit("Open a study first." if self.context.volume is None else
                              "Wait for the running step to finish." if self.steps.running else
                              "This study is prepared already: check its brain mask again instead."
                              if self.record is not None else
                              "This study cannot be prepared now (its brain mask is being checked).")
            return None
        out_dir = self.prompter.output_folder(self.suggested_folder())
        return self.prepare(out_dir) if out_dir is not None else None

    def prepare(self, out_dir: Path | str | None = None) -> Job | None:
        """Register, resample and skull-strip the shown study into `out_dir` (default: suggested)."""
        volume = self.context.volume
        if volume is None or not self.can_prepare:
            return None
        if not self.context.confirm_unsaved("prepare the study (the mask edits stay with the original)"):
            return None
        out = Path(out_dir) if out_dir is not None else self.suggested_folder()
        study, options, prepare_fn = volume.study, self.options, self.prepare_fn
        self.original = volume
        return self.steps.run(f"Preparing {study.case_id} into {out}",
                              lambda **kw: work.prepare_for_review(study, out, options, prepare_fn=prepare_fn, **kw),
                              self._prepared, failure="Could not prepare the study",
                              cancelled="Preparation cancelled; the study is as it was.")

    def set_single_sequence(self, name: str | None) -> None:
        """Say what the study's only sequence is (it was read as flair); used when it is prepared."""
        self.options = dataclasses.replace(self.options, single_as=name)
        self.changed.emit()

    @property
    def single_sequence(self) -> str | None:
        """The name of the shown study's only sequence, if it has just one (None otherwise)."""
        volume = self.context.volume
        if volume is None or len(volume.study.images) != 1 or self.record is not None:
            return None
        return self.options.single_as or next(iter(volume.study.images))

    def recheck(self) -> Job | None:
        """Check the brain mask of the prepared study shown (e.g. one opened from its folder) again."""
        record, volume = self.record, self.context.volume
        if record is None or volume is None or self.steps.running or self.stage is Stage.SCANNER:
            return None
        if not self.context.confirm_unsaved("check the brain mask again"):
            return None
        self.original, options = volume, self.options
        return self.steps.run(f"Resampling {record.case_id} to check its brain mask",
                              lambda **kw: work.review_from_record(record, options, **kw), self._prepared,
                              failure="Could not open the brain mask")

    def cancel(self) -> None:
        self.steps.cancel()

    def _prepared(self, review: MaskReview) -> None:
        self.edits = []
        self._show(Role.REVIEW, review.volume, f"{review.prepared.case_id} — check the brain mask", review=review)

    # ---- checking the brain mask -------------------------------------------------------------
    def adjust(self, radius_mm: float) -> Job | None:
        """Grow (> 0) or shrink (< 0) the brain mask by |radius_mm| (one undoable step)."""
        session = self.context.editing.session
        if not self._reviewing or self.review is None or session is None or radius_mm == 0:
            return None
        mask, grid = work.brain_of(session.labels), self.review.grid
        verb = "dilate" if radius_mm > 0 else "erode"
        return self.steps.run(f"{verb.capitalize()} the brain mask by {abs(radius_mm):g} mm",
                              lambda **kw: work.grow_or_shrink(mask, grid, radius_mm, **kw),
                              lambda new: self._replace(new, f"{verb} {abs(radius_mm):g} mm"),
                              failure=f"Could not {verb} the brain mask")

    def redo(self, params: BrainExtractionParams | None = None, skull_strip: bool = True) -> Job | None:
        """Extract the brain again with other settings (no registration again; one undoable step)."""
        review = self.review
        if not self._reviewing or review is None:
            return None
        params = params or self.options.brain
        self.options = dataclasses.replace(self.options, skull_strip=skull_strip, brain=params)
        what = (f"extraction again (fractional threshold {params.fractional_threshold:g}, "
                f"adjust {params.adjust_mm:g} mm)" if skull_strip else "the non-zero region")
        return self.steps.run(f"Brain mask: {what}",
                              lambda **kw: work.extract_again(review, params, skull_strip, **kw),
                              lambda new: self._replace(new, f"redo: {what}"),
                              failure="Could not extract the brain again")

    def _replace(self, mask: np.ndarray, what: str) -> None:
        if self.stage is Stage.REVIEW and self.context.editing.session is not None:
            self.context.editing.apply(what, lambda session: work.replace_mask(session, mask))
            self.edits.append(what)
            self.message.emit(f"Brain mask: {what} ({self.brain_ml():.0f} mL).")

    @property
    def _reviewing(self) -> bool:
        """The brain mask is shown for the check and nothing runs."""
        return self.stage is Stage.REVIEW and not self.steps.running

    def brain_ml(self) -> float:
        """Volume of the brain mask being checked (mL)."""
        session = self.context.editing.session
        if self.review is None or session is None:
            return 0.0
        return float(work.brain_of(session.labels).sum()) * self.review.grid.voxel_volume_ml

    def accept(self) -> Job | None:
        """The mask is right: write the prepared case with it and open that study (ready to segment)."""
        review, session = self.review, self.context.editing.session
        if not self._reviewing or review is None or session is None:
            return None
        mask = work.brain_of(session.snapshot())
        added, removed = int((mask & ~review.brain).sum()), int((review.brain & ~mask).sum())
        edited = (f"{added} voxels added, {removed} removed in the viewer"
                  + (f" (steps: {'; '.join(self.edits)}, brush and eraser)" if self.edits else ""))
        return self.steps.run(f"Writing {review.prepared.case_id} with the checked brain mask",
                              lambda **kw: work.accept_mask(review, mask, edited=edited, **kw),
                              lambda volume: self._show(Role.PREPARED, volume, f"{review.prepared.case_id} (prepared)"),
                              failure="Could not write the prepared study")

    def back_to_original(self) -> Job | None:
        """Drop the check and show the study as it was opened."""
        if self.original is None or self.steps.running or self.stage is not Stage.REVIEW:
            return None
        original = self.original
        self.context.editing.close_session(discard=True)
        return self._show(Role.STUDY, original, original.study.case_id)

    # ---- scanner space -----------------------------------------------------------------------
    def map_back(self, sequence: str = "t1ce") -> Job | None:
        """Show the segmentation on `sequence`'s original grid (the exports then write there)."""
        record, editing, volume = self.record, self.context.editing, self.context.volume
        if not self.can_map_back or record is None or editing.session is None or volume is None:
            self.message.emit("Segment the prepared study first; then its mask can go back to scanner space.")
            return None
        session = editing.session
        labels, ai = session.snapshot(), np.array(session.ai)
        self._prepared_mask = PreparedMask(volume, labels, ai, editing.model_version, editing.base)
        version = editing.model_version
        if not self.context.confirm_unsaved(f"show the mask on the original {sequence} grid"):
            return None
        return self.steps.run(f"Mapping the mask onto the original {sequence} grid",
                              lambda **kw: work.scanner_space(record, labels, ai, sequence, **kw),
                              lambda view: self._show(Role.SCANNER, view.volume,
                                                      f"{record.case_id} — {SEQUENCE_TITLES[sequence]} scanner space",
                                                      scanner=view, version=version),
                              failure="Could not map the mask back")

    def back_to_prepared(self) -> Job | None:
        """From the scanner view back to the prepared study and its mask as it was."""
        if self.stage is not Stage.SCANNER or self._prepared_mask is None or self.steps.running:
            return None
        if not self.context.confirm_unsaved("go back to the prepared study"):
            return None
        volume = self._prepared_mask.volume
        return self._show(Role.PREPARED, volume, f"{volume.study.case_id} (prepared)", kept=self._prepared_mask)

    def volumes_ml(self) -> dict[str, float] | None:
        """Region volumes of the edited mask on the shown grid (mL), or None without a mask."""
        editing, volume = self.context.editing, self.context.volume
        if editing.session is None or volume is None:
            return None
        regions = to_regions(editing.session.labels, LabelConvention.BRATS)
        voxel = volume.study.grid.voxel_volume_ml
        return {name: float(regions[index].sum()) * voxel for index, name in enumerate(REGIONS)}

    # ---- plumbing ----------------------------------------------------------------------------
    def _show(self, role: Role, volume: DisplayVolume, name: str, **extra: Any) -> Job:
        """Show a volume we built as a new Document of `role` (`extra` travels with it, for
        `_on_document`). Busy until it is shown (the load only hands the ready volume over)."""
        self.steps.set_busy(f"Showing {name}")
        self._showing = True
        return self.loader.load(f"Showing {name}", lambda **_kw: volume, name=name, role=role, extra=extra)

    def _on_document(self, document: Document, _old: Document) -> None:
        """A new Document is shown: one the user opened (the workflow starts again) or one we built."""
        volume = document.volume
        assert volume is not None
        ours, self._showing = self._showing, False
        if not self.steps.running:
            self.steps.set_busy(None)
        role = document.role if ours else Role.STUDY
        if role is Role.STUDY:
            self._leave_review()
            self.steps.cancel()  # the user opened another study: what ran was for the old one
            self.scanner = None
            self.readiness = None
            self._prepared_mask = None
            self.options = dataclasses.replace(self.options, single_as=None)  # the user says, per study
            self.original = volume
            self.record = work.find_record(volume.study)
            self.check()
        elif role is Role.REVIEW:
            self._enter_review(document.extra["review"])
        elif role is Role.PREPARED:
            self._leave_review()
            self.scanner = None
            self.record = work.find_record(volume.study)
            kept = document.extra.get("kept")
            if kept is None:
                self.message.emit(f"Prepared {volume.study.case_id}: BraTS-ready, segment it now (Ctrl+R).")
                self.prepared_shown.emit(volume)
            else:
                self.context.editing.start(kept.labels, ai=kept.ai, model_version=kept.model_version, base=kept.base)
            self.check()
        elif role is Role.SCANNER:
            view: ScannerView = document.extra["scanner"]
            self.scanner = view
            base = self._prepared_mask.base if self._prepared_mask is not None else ""
            self.context.editing.start(view.labels, ai=view.ai, model_version=document.extra.get("version"),
                                       base=f"{base}, mapped to the original {view.sequence} grid".lstrip(", "))
            self.context.state.set_sequence(view.sequence)  # the images this grid belongs to
            self._set_stage(Stage.SCANNER)
            self.message.emit(f"The mask is shown on the original {view.sequence} grid "
                              f"({view.volume.study.grid.describe()}); exports write on this grid.")
            self.scanner_shown.emit(view)
        if role is not Role.STUDY:
            self.attention_wanted.emit()  # this step's banner and buttons in sight
        self.changed.emit()

    def _enter_review(self, review: MaskReview) -> None:
        state = self.context.state
        self.review = review
        self.scanner = None
        self.record = None
        self.readiness = None
        if self._label_before is None:
            self._label_before = state.label
        state.set_label("ED")  # the brain mask is label BRAIN_LABEL (2 = ED): paint the same
        self.context.editing.start(review.brain.astype(np.uint8) * np.uint8(work.BRAIN_LABEL),
                             base=f"brain mask ({review.method})")
        self._set_stage(Stage.REVIEW)
        self.message.emit(f"Check the brain mask (green, {self.brain_ml():.0f} mL): accept it, adjust it or "
                          "extract it again.")
        self.review_shown.emit(review)

    def _leave_review(self) -> None:
        if self.review is not None:
            self.context.state.set_tool(Tool.NAVIGATE)  # the mask tools were for the brain mask
        self.review = None
        self.edits = []
        if self._label_before is not None:
            self.context.state.set_label(self._label_before)
            self._label_before = None

    def _keep_mask_edits_saved(self) -> None:
        """Brain-mask edits are kept until Accept, never offered for export as a tumour mask."""
        session = self.context.editing.session
        if self.stage is Stage.REVIEW and session is not None:
            self.context.editing.saved_revision = session.revision

    def _set_stage(self, stage: Stage) -> None:
        self.stage = stage
        self.changed.emit()
