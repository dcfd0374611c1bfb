"""The open study and everything the user made of it, announced as plain-Python events.

One `Document` per study shown: its volume (images, ground truth, geometry), the AI's segmentation,
the mask being corrected (`Editing`, with its journal) and the measurements. Opening another study
(or a prepared / scanner-space view of it) builds a new Document and `Workspace.replace` closes the
old one: its events are disconnected, so nothing of the previous study (masks, messages, plots,
brain-mask check) can reach a view afterwards. Views subscribe to the Workspace's relays and read
the current Document; controllers change it. No Qt here (psygnal, as napari's evented models), so
the whole study model is tested without a display.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from psygnal import Signal

from brainseg_gui.app.display_volume import DisplayVolume
from brainseg_gui.app.edit_settings import EditSettings
from brainseg_gui.app.editing import Editing
from brainseg_gui.app.measurements import Measurements
from brainseg_gui.app.tasks import Segmentation
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.journal import state_dir, study_key


class Role(str, Enum):
    """What the shown volume is, in the Prepare workflow (see ui/prepare_controller.py)."""

    STUDY = "study"  # a study as the user opened it
    REVIEW = "review"  # a prepared study's proposed brain mask, being checked
    PREPARED = "prepared"  # the accepted prepared study (BraTS-ready)
    SCANNER = "scanner"  # a segmentation mapped back onto an original sequence's grid


class Document:
    """One shown study. `volume` is None only for the empty document before any study is opened."""

    segmented = Signal(object)  # Segmentation: the AI's result for this study
    message = Signal(str)  # one line about this study for the user (status bar)
    measurements_changed = Signal()

    def __init__(self, volume: DisplayVolume | None, settings: EditSettings, *, name: str = "",
                 source: Path | None = None, role: Role = Role.STUDY, journal_folder: Path | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        self.volume = volume
        self.name = name or (volume.study.case_id if volume is not None else "")
        self.source = source  # the path the user opened (Open recent), None for the demo or a built view
        self.role = role
        self.extra = dict(extra or {})  # what the workflow that built it hands over (a MaskReview...)
        self.segmentation: Segmentation | None = None
        self.editing = Editing(settings, journal_folder)
        self.editing.set_volume(volume)
        self.closed = False
        self.restore_problem: str | None = None  # why saved annotations could not be read back
        # Rulers, ROIs and the RANO measurement are the study's annotations, kept like its edits:
        # saved at each change beside the journals and read again when the study is opened.
        self.measurements = Measurements((1, 1, 1), np.eye(4)) if volume is None else Measurements.for_volume(volume)
        self.measurements_file = (None if volume is None or role is Role.REVIEW
                                  else measurements_path(volume, journal_folder))
        self._restore_measurements()
        self.measurements.changed.connect(self._save_measurements)
        if role is not Role.REVIEW:  # (the brain mask being checked is not a tumour)
            self.editing.session_changed.connect(self.update_rano)
            self.editing.stroke_finished.connect(self.update_rano)

    def update_rano(self) -> None:
        """Measure the enhancing tumour of the mask being corrected (RANO), automatically after each
        change, unless the user adjusted the measurement by hand (then it is theirs to redo)."""
        code, current = self.editing.code_ras, self.measurements.rano
        if code is not None and (current is None or not current.adjusted):
            self.measurements.measure_rano(code)

    def _restore_measurements(self) -> None:
        path = self.measurements_file
        if path is None or not path.exists():
            return
        try:
            self.measurements.load(path)
        except BrainSegError as error:  # kept aside, never deleted: the user may want it back
            path.replace(path.with_suffix(".unreadable"))
            self.restore_problem = f"Measurements not restored: {error}"

    def _save_measurements(self) -> None:
        path = self.measurements_file
        try:
            if path is not None and self.measurements.empty:
                path.unlink(missing_ok=True)
            elif path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.measurements.save(path)
        except OSError as error:
            self.message.emit(f"Could not save the measurements ({error.strerror or error}); export the report.")
        self.measurements_changed.emit()

    @property
    def empty(self) -> bool:
        return self.volume is None

    def set_segmentation(self, result: Segmentation) -> None:
        """The AI's result for this study (the edit session starts from it; see the window)."""
        self.segmentation = result
        self.segmented.emit(result)

    def truth_volumes_ml(self) -> dict[str, float] | None:
        """Region volumes of the study's own labels (mL), None without ground truth (counted once, by
        the loading worker: the panel asks when the study opens and again with each segmentation)."""
        volume = self.volume
        if volume is None or volume.truth_voxels is None:
            return None
        voxel_ml = volume.study.grid.voxel_volume_ml
        return {region: count * voxel_ml for region, count in volume.truth_voxels.items()}

    def close(self, *, discard_edits: bool = False) -> None:
        """The study is no longer shown: end its edit session (the journal keeps unsaved edits
        unless `discard_edits`) and cut every event, so no late worker result can reach a view."""
        if self.closed:
            return
        self.closed = True
        self.editing.close_session(discard=discard_edits)
        for signal in (self.segmented, self.message, self.measurements_changed, self.measurements.changed,
                       *self.editing.signals()):
            signal.disconnect()


class Workspace:
    """Holds the current Document and relays its events, so subscribers connect once.

    A relay fires only for the current Document: `replace` disconnects the old one before the new
    one is announced (`replaced(new, old)`).
    """

    replaced = Signal(object, object)  # new Document, old Document
    segmented = Signal(object)
    message = Signal(str)
    mask_changed = Signal(object)  # RAS box (tuple of 3 slices), or None for everything
    history_changed = Signal()
    session_changed = Signal()
    stroke_finished = Signal()
    measurements_changed = Signal()

    def __init__(self, settings: EditSettings, journal_folder: Path | None = None) -> None:
        self.settings = settings
        self.journal_folder = journal_folder
        self.document = Document(None, settings, journal_folder=journal_folder)

    def new_document(self, volume: DisplayVolume, **kw: Any) -> Document:
        """A Document for `volume` with this workspace's settings and journal folder (not shown yet)."""
        return Document(volume, self.settings, journal_folder=self.journal_folder, **kw)

    def replace(self, document: Document) -> Document:
        """Show `document`; the previous one is closed (its unsaved edits stay in its journal)."""
        old = self.document
        old.close()
        self.document = document
        editing = document.editing
        document.segmented.connect(self.segmented)
        document.message.connect(self.message)
        document.measurements_changed.connect(self.measurements_changed)
        editing.mask_changed.connect(self.mask_changed)
        editing.history_changed.connect(self.history_changed)
        editing.session_changed.connect(self.session_changed)
        editing.stroke_finished.connect(self.stroke_finished)
        editing.message.connect(self.message)
        self.replaced.emit(document, old)
        return document


def measurements_path(volume: DisplayVolume, folder: Path | None = None) -> Path:
    """Where a study's measurements are kept: beside the edit journals, under the study's key."""
    return (folder or state_dir()) / "measurements" / (study_key(volume.study) + ".json")
