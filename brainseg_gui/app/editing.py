"""The mask being corrected in one open study: gestures -> `core.edit_session` operations -> events.

A `Document` owns one `Editing`: the session (the mask on the study's own grid), its journal and
the RAS region-code volume the slice views draw; a new study gets a new one, so nothing of the
previous study's mask can be drawn or exported afterwards. Views report RAS voxels; they are
mapped to the file's voxels through `DisplayVolume.file_index` (the study's `Reorientation`),
never guessed. After each operation only the changed box of the code volume is recomputed and the
event carries that box, so only the views whose slice crosses it redraw (a brush stroke stays
smooth on a full case). No Qt: events are psygnal signals; the GUI calls `checkpoint()` on a timer.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from psygnal import Signal

from brainseg_gui.app.display_volume import DisplayVolume
from brainseg_gui.app.edit_settings import AXIS_OF_PLANE, EditSettings, Tool
from brainseg_gui.app.region_codes import BRATS_LABEL_CODE
from brainseg_gui.core.edit_session import Box, EditError, EditSession, Limits
from brainseg_gui.core.errors import BrainSegError
from brainseg_gui.core.journal import (
    Journal,
    JournalContents,
    journal_path,
    read_or_set_aside,
    recover_or_set_aside,
)
from brainseg_gui.core.labels import LabelConvention
from brainseg_gui.core.orientation import Reorientation

log = logging.getLogger(__name__)

#: How often the GUI should call `checkpoint()` while the mouse is held (an open stroke to disk).
JOURNAL_INTERVAL_MS = 3000


class Editing:
    mask_changed = Signal(object)  # RAS box that changed (tuple of 3 slices), or None for everything
    history_changed = Signal()  # undo/redo availability, unsaved state, counts
    session_changed = Signal()  # a session started or ended
    stroke_finished = Signal()
    message = Signal(str)  # something the user should read (e.g. why interpolation failed)

    def __init__(self, state: EditSettings, journal_folder: Path | None = None) -> None:
        self.state = state
        self.journal_folder = journal_folder
        self.volume: DisplayVolume | None = None
        self.session: EditSession | None = None
        self.journal: Journal | None = None
        self.code_ras: np.ndarray | None = None
        self.ai_code_ras: np.ndarray | None = None
        self.model_version: str | None = None
        self.base = ""
        self.saved_revision = 0
        self.last_export: Path | None = None
        self._reorient: Reorientation | None = None
        self._from_file: np.ndarray | None = None
        self._stroke_plane: str | None = None
        self._stroke_voxel: tuple[int, int, int] | None = None
        #: plane -> RAS slice indices of the 2D strokes, latest last (for interpolation)
        self.edited_slices: dict[str, list[int]] = {}
        self._last_plane: str | None = None

    def signals(self) -> tuple[Any, ...]:
        """Its events (the Document disconnects them when the study is closed)."""
        return (self.mask_changed, self.history_changed, self.session_changed, self.stroke_finished,
                self.message)

    # ---- sessions ---------------------------------------------------------------------------
    def set_volume(self, volume: DisplayVolume | None) -> None:
        """A new study: the old session ends (the caller asked the user first), nothing is edited yet."""
        self.close_session(discard=False)
        self.volume = volume
        if volume is not None:
            self._reorient = Reorientation(volume.study.grid)
            self._from_file = np.linalg.inv(volume.to_file)

    @property
    def active(self) -> bool:
        return self.session is not None

    @property
    def unsaved(self) -> bool:
        """Edits made since the session started or was last exported."""
        return self.session is not None and self.session.revision != self.saved_revision

    def journal_file(self) -> Path | None:
        if self.volume is None:
            return None
        return journal_path(self.volume.study, self.journal_folder)

    def start(self, initial: np.ndarray, *, ai: np.ndarray | None = None, model_version: str | None = None,
              base: str = "", code_ras: np.ndarray | None = None) -> EditSession:
        """Begin editing `initial` (BraTS labels on the study's grid); journal from the first stroke on.

        `code_ras`: the RAS region code of `initial` when a worker made it already (a segmentation),
        so the GUI thread does not re-orient the mask a second time."""
        if self.volume is None:
            raise BrainSegError("open a study before editing")
        self.close_session(discard=True)
        session = EditSession(initial, self.volume.study.grid, ai=ai)
        path = self.journal_file()
        assert path is not None
        try:
            self.journal = Journal.create(path, session, {
                "case_id": self.volume.study.case_id, "model_version": model_version, "base": base,
                "sources": {k: str(v) for k, v in self.volume.study.sources.items()}})
            session.recorder = self.journal
        except OSError as exc:
            self.journal = None
            self.message.emit(f"Edits cannot be journaled ({exc}); export often.")
        self._begin(session, model_version, base, saved=True, code_ras=code_ras)
        return session

    def start_default(self) -> EditSession:
        """Edit without a segmentation: the study's own label map if it has one, else an empty mask."""
        assert self.volume is not None
        study = self.volume.study
        if study.labels is not None and study.label_convention is not None:
            from brainseg_gui.core.labels import convert

            labels = convert(study.labels, study.label_convention, LabelConvention.BRATS)
            return self.start(labels, base=f"label file {study.sources.get('seg', '')}")
        return self.start(np.zeros(study.grid.shape, np.uint8), base="empty mask")

    def pending_journal(self) -> JournalContents | None:
        """The journal a crashed session left for this study (None if there is none worth restoring)."""
        path = self.journal_file()
        if path is None or not path.exists() or (self.journal is not None and self.journal.path == path):
            return None
        try:
            contents = read_or_set_aside(path)  # an unrestorable journal is kept aside, never deleted
        except BrainSegError as exc:
            log.warning("%s", exc)
            self.message.emit(str(exc))
            return None
        if contents.strokes == 0:
            path.unlink(missing_ok=True)  # a session that never changed anything
            return None
        return contents

    def restore(self, contents: JournalContents) -> EditSession:
        """Replay a crashed session's journal and keep journaling into it."""
        assert self.volume is not None
        self.close_session(discard=True)
        session, contents = recover_or_set_aside(contents.path, self.volume.study.grid)
        self.journal = Journal.resume(contents)
        session.recorder = self.journal
        meta = contents.meta
        self._begin(session, meta.get("model_version"), meta.get("base", ""), saved=not contents.unsaved)
        return session

    def discard_journal(self, contents: JournalContents) -> None:
        contents.path.unlink(missing_ok=True)

    def close_session(self, *, discard: bool) -> None:
        """End the session; its journal is deleted unless it holds edits the user did not give up."""
        if self.session is not None and self.session.in_stroke:
            self.session.end_stroke()
        if self.journal is not None:
            if discard or not self.unsaved:
                self.journal.discard()
            else:
                self.journal.close()
        had = self.session is not None
        self.session, self.journal = None, None
        self.code_ras = self.ai_code_ras = None
        self.edited_slices = {}
        self._last_plane = None
        if had:
            self.session_changed.emit()
            self.history_changed.emit()

    def mark_saved(self, path: Path) -> None:
        """The current mask was exported: no unsaved edits, and the journal says where it went."""
        if self.session is None:
            return
        self.saved_revision = self.session.revision
        self.last_export = Path(path)
        if self.journal is not None:
            self.journal.record_saved({"path": str(path), "revision": self.session.revision})
        self.history_changed.emit()

    def _begin(self, session: EditSession, model_version: str | None, base: str, *, saved: bool,
               code_ras: np.ndarray | None = None) -> None:
        assert self._reorient is not None
        self.session = session
        self.model_version = model_version
        self.base = base
        self.saved_revision = session.revision if saved else -1
        if code_ras is None:
            code_ras = np.ascontiguousarray(self._reorient.apply(BRATS_LABEL_CODE[session.labels]))
        self.code_ras = code_ras
        if session.ai is session.labels or np.array_equal(session.ai, session.labels):
            self.ai_code_ras = code_ras.copy()  # a fresh segmentation: the AI's mask is the one shown
        else:
            self.ai_code_ras = np.ascontiguousarray(self._reorient.apply(BRATS_LABEL_CODE[session.ai]))
        preload_scipy_ndimage()
        self.session_changed.emit()
        self.history_changed.emit()
        self.mask_changed.emit(None)

    # ---- gestures from the slice views ------------------------------------------------------
    def press(self, plane: str, voxel: tuple[int, int, int]) -> None:
        """Start a stroke (or, for fill, do the whole edit) at a RAS voxel of a plane's view."""
        if self.volume is None or not self.state.tool.edits_mask:  # CLICK: see ui/click_tool
            return
        if self.session is None:
            self.start_default()
        assert self.session is not None
        tool = self.state.tool
        if tool is Tool.FILL:
            with self.session.stroke("fill"):
                self._changed(self.session.fill(self.file_axis(plane), self.volume.file_index(voxel),
                                                 self._label_value(), limits=self._limits()))
            self._finish(plane, voxel)
            return
        self.session.begin_stroke(tool.value)
        self._stroke_plane, self._stroke_voxel = plane, voxel
        self._dab(voxel, voxel)

    def move(self, voxel: tuple[int, int, int]) -> None:
        """Continue the stroke to a RAS voxel (the swept path is painted, no gaps)."""
        if self._stroke_voxel is None or self.session is None:
            return
        if self._stroke_plane is not None and not self.state.brush_3d:
            axis = AXIS_OF_PLANE[self._stroke_plane]
            voxel = tuple(self._stroke_voxel[a] if a == axis else voxel[a] for a in range(3))  # type: ignore[assignment]
        self._dab(self._stroke_voxel, voxel)
        self._stroke_voxel = voxel

    def release(self) -> None:
        if self._stroke_voxel is None or self.session is None:
            return
        plane, voxel = self._stroke_plane, self._stroke_voxel
        self._stroke_plane = self._stroke_voxel = None
        self.session.end_stroke()
        assert plane is not None
        self._finish(plane, voxel)

    def _dab(self, start: tuple[int, int, int], end: tuple[int, int, int]) -> None:
        assert self.session is not None and self.volume is not None and self._stroke_plane is not None
        tool = self.state.tool
        label = 0 if tool is Tool.ERASER else self._label_value()
        limits = self._limits()
        a, b = self.volume.file_index(start), self.volume.file_index(end)
        if self.state.brush_3d:
            box = self.session.paint_sphere(a, self.state.brush_mm, label, to=b, limits=limits)
        else:
            box = self.session.paint_disc(self.file_axis(self._stroke_plane), a, self.state.brush_mm, label,
                                          to=b, limits=limits)
        self._changed(box)

    def _finish(self, plane: str, voxel: tuple[int, int, int]) -> None:
        if not (self.state.brush_3d and self.state.tool.paints):
            slices = self.edited_slices.setdefault(plane, [])
            index = voxel[AXIS_OF_PLANE[plane]]
            if index in slices:
                slices.remove(index)
            slices.append(index)
            self._last_plane = plane
        self.history_changed.emit()
        self.stroke_finished.emit()

    # ---- commands ---------------------------------------------------------------------------
    def undo(self) -> None:
        if self.session is not None:
            self._changed(self.session.undo())
            self.history_changed.emit()
            self.stroke_finished.emit()

    def redo(self) -> None:
        if self.session is not None:
            self._changed(self.session.redo())
            self.history_changed.emit()
            self.stroke_finished.emit()

    def interpolation_slices(self) -> tuple[str, int, int] | None:
        """(plane, first, last) RAS slices the next interpolation would use, or None."""
        plane = self._last_plane
        if plane is None:
            return None
        slices = self.edited_slices.get(plane, [])
        if len(slices) < 2:
            return None
        first, last = sorted(slices[-2:])
        return plane, first, last

    def interpolate(self) -> bool:
        """Fill the chosen class between the last two slices edited in one plane (shape-based)."""
        if self.session is None or self.volume is None:
            self.message.emit("Nothing to interpolate: edit two slices of one plane first.")
            return False
        chosen = self.interpolation_slices()
        if chosen is None:
            self.message.emit("Interpolation needs two edited slices in the same plane.")
            return False
        plane, first, last = chosen
        axis = AXIS_OF_PLANE[plane]
        voxel = list(self.state.crosshair)
        voxel[axis] = first
        file_first = self.volume.file_index((voxel[0], voxel[1], voxel[2]))
        voxel[axis] = last
        file_last = self.volume.file_index((voxel[0], voxel[1], voxel[2]))
        file_axis = self.file_axis(plane)
        try:
            with self.session.stroke("interpolate"):
                box = self.session.interpolate(file_axis, file_first[file_axis], file_last[file_axis],
                                               self._label_value())
        except EditError as exc:
            self.message.emit(f"Cannot interpolate: {exc}")
            return False
        self._changed(box)
        self.history_changed.emit()
        self.stroke_finished.emit()
        self.message.emit(f"Interpolated {self.state.label} between {plane} slices {first + 1} and {last + 1}.")
        return True

    def apply(self, name: str, operation: Callable[[EditSession], Box | None]) -> Box | None:
        """Run `operation` on the session as one undoable stroke and redraw what it changed.

        For edits that are not gestures (e.g. eroding or growing a whole brain mask)."""
        if self.session is None:
            return None
        with self.session.stroke(name):
            box = operation(self.session)
        self._changed(box)
        self.history_changed.emit()
        self.stroke_finished.emit()
        return box

    def replace_box(self, box: Box, labels: np.ndarray, name: str) -> Box | None:
        """Write labels computed elsewhere (a click correction) over a file box as one undoable,
        journaled step, and redraw what changed as a brush stroke does."""
        if self.session is None:
            return None
        changed = self.session.replace_box(box, labels, name=name)
        self._changed(changed)
        self.history_changed.emit()
        self.stroke_finished.emit()
        return changed

    def checkpoint(self) -> None:
        """Every few seconds: put a long, still open stroke on disk."""
        if self.journal is not None and self.session is not None and self.session.in_stroke:
            try:
                self.journal.checkpoint(self.session)
            except BrainSegError as exc:
                self.message.emit(str(exc))

    # ---- helpers ----------------------------------------------------------------------------
    def label_value(self, convention: LabelConvention | None = None) -> int:
        """The chosen class's value in a convention (the session itself is BraTS)."""
        return (convention or LabelConvention.BRATS).tissue_values[self.state.label]

    def _label_value(self) -> int:
        return self.label_value()

    def _limits(self) -> Limits:
        tool = self.state.tool
        if tool is Tool.ERASER:
            return Limits(only=frozenset({self._label_value()})) if self.state.erase_only else Limits()
        if tool is Tool.THRESHOLD and self.volume is not None:
            image = self.volume.study.images.get(self.state.sequence)
            low, high = self.state.threshold or self.state.windows.get(self.state.sequence, (-np.inf, np.inf))
            if image is not None:
                return Limits(intensity=image, low=low, high=high)
        return Limits()

    def file_axis(self, plane: str) -> int:
        """The file axis that the plane's fixed RAS axis is."""
        assert self.volume is not None
        return int(np.argmax(np.abs(self.volume.to_file[:3, AXIS_OF_PLANE[plane]])))

    def _changed(self, box: Box | None) -> None:
        """Recompute the code volume in a changed file box and tell the views (RAS box)."""
        if box is None or self.session is None or self.code_ras is None:
            return
        assert self._reorient is not None and self._from_file is not None
        ras_box = self.ras_box(box)
        self.code_ras[ras_box] = self._reorient.apply(BRATS_LABEL_CODE[self.session.labels[box]])
        self.mask_changed.emit(ras_box)

    def ras_box(self, box: Box) -> tuple[slice, slice, slice]:
        """A file-order voxel box as the same box in RAS order."""
        assert self._from_file is not None
        corners = np.array([[box[0].start, box[1].start, box[2].start, 1.0],
                            [box[0].stop - 1, box[1].stop - 1, box[2].stop - 1, 1.0]])
        ras = np.rint(corners @ self._from_file.T)[:, :3].astype(int)
        low, high = ras.min(axis=0), ras.max(axis=0)
        return slice(low[0], high[0] + 1), slice(low[1], high[1] + 1), slice(low[2], high[2] + 1)


def preload_scipy_ndimage() -> None:
    """Import scipy.ndimage (fill, interpolation) in the background when editing starts.

    edit_session imports it only when first used, to keep the viewer's start fast; but the import
    takes 1-2 s here, which would freeze the first Fill click or interpolation.
    """
    if "scipy.ndimage" not in sys.modules:
        threading.Thread(target=importlib.import_module, args=("scipy.ndimage",), daemon=True,
                         name="preload-scipy-ndimage").start()
