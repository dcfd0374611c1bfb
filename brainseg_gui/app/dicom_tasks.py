"""The plain functions the viewer runs in workers for a radiologist's DICOM study.

Index a study path, class the series of one study (with a thumbnail of each series' middle slice,
so the assignment dialog never reads pixels on the GUI thread), stage the user's choice as a case
folder, and the per-series facts the dialog shows. Each long function takes ``progress`` and
``cancel`` and raises ``Cancelled``; none touches a widget.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainseg_gui.core.cases import CaseFiles, is_dicom_study
from brainseg_gui.core.dicom_classify import Assignment, classify_study, reassign
from brainseg_gui.core.dicom_index import DicomIndex, DicomSeries, index_dicom
from brainseg_gui.core.errors import BrainSegError, StudyLoadError
from brainseg_gui.core.progress import CancelToken, ProgressFn

THUMBNAIL_SIZE = 96

__all__ = ["SeriesChoice", "StagedStudy", "classify", "gap_problems_of", "index_study", "is_dicom_study", "stage",
           "thumbnail", "why_unusable"]


@dataclass(frozen=True)
class SeriesChoice:
    """One study of a DICOM path, its series classed, and what the assignment dialog shows of them.

    thumbnails: SeriesInstanceUID -> (rows, columns) uint8 middle slice, or None when unreadable.
    """

    source: Path
    index: DicomIndex
    assignment: Assignment
    thumbnails: Mapping[str, np.ndarray | None]


def index_study(path: Path, *, progress: ProgressFn, cancel: CancelToken) -> DicomIndex:
    """Every study under `path` (headers only); StudyLoadError when it holds none."""
    index = index_dicom(Path(path), progress=progress, cancel=cancel)
    if not index.studies:
        skipped = f" ({len(index.skipped)} files skipped, e.g. {index.skipped[0][1]})" if index.skipped else ""
        raise StudyLoadError(f"{path} holds no DICOM images{skipped}")
    return index


def classify(index: DicomIndex, study_uid: str, *, progress: ProgressFn, cancel: CancelToken) -> SeriesChoice:
    """Class the series of one study of `index` and read a thumbnail of each."""
    study = next(s for s in index.studies if s.uid == study_uid)
    progress(0.1, f"Classing the {len(study.series)} series of {study.label}")
    assignment = classify_study(study)
    thumbnails: dict[str, np.ndarray | None] = {}
    for number, series in enumerate(study.series):
        cancel.raise_if_cancelled()
        progress(0.2 + 0.8 * number / max(len(study.series), 1), f"Reading a slice of series {series.label}")
        thumbnails[series.uid] = thumbnail(series)
    return SeriesChoice(Path(index.root), index, assignment, thumbnails)


def thumbnail(series: DicomSeries) -> np.ndarray | None:
    """The middle slice of the series' main stack as uint8 (rows = j), windowed 1-99 %; None if unreadable.

    At most THUMBNAIL_SIZE pixels a side (every n-th pixel: it is a picture to recognise, not to read).
    """
    from brainseg_gui.core.dicom_volume import read_frames

    stack = series.main_stack
    if stack is None or not stack.frames:
        return None
    try:
        pixels, _grid, _warnings = read_frames([stack.frames[len(stack.frames) // 2]], label=series.label)
    except (BrainSegError, OSError, ValueError):
        return None
    image = np.asarray(pixels[:, :, 0], dtype=np.float32).T  # rows = j
    step = max(1, int(np.ceil(max(image.shape) / THUMBNAIL_SIZE)))
    image = image[::step, ::step]
    low, high = np.percentile(image, [1, 99]) if image.size else (0.0, 0.0)
    if high <= low:
        high = low + 1.0
    return np.ascontiguousarray(np.clip((image - low) / (high - low) * 255, 0, 255).astype(np.uint8))


def gap_problems_of(series: DicomSeries) -> list[str]:
    """Missing slices or uneven spacing of the series' main stack (mended by interpolation when accepted)."""
    stack = series.main_stack
    return [] if stack is None else list(stack.geometry.gaps)


def why_unusable(assignment: Assignment, series: DicomSeries) -> str | None:
    """Why the series cannot be segmented at all (duplicate positions, not an image volume), else None."""
    stack = series.main_stack
    if stack is not None and stack.geometry.duplicate:
        return f"{stack.geometry.duplicate}: it is not one volume"
    found = assignment.classes[series.uid]
    if not found.usable:
        return found.reason or "not an image volume"
    if stack is None:
        return "it holds no images"
    return None


@dataclass(frozen=True)
class StagedStudy:
    """The user's choice written as a case folder (in the cache), ready to load."""

    folder: Path
    case: CaseFiles
    assignment: Assignment
    accept_gaps: bool


def stage(choice: SeriesChoice, overrides: Mapping[str, str | None], accept_gaps: bool, *,
          progress: ProgressFn, cancel: CancelToken) -> StagedStudy:
    """Apply the user's series choices ({sequence: UID or None}) and write the case folder."""
    from brainseg_gui.core.dicom_study import default_stage_folder, stage_case

    progress(0.1, "Writing the chosen series")
    assignment = reassign(choice.assignment, dict(overrides))
    cancel.raise_if_cancelled()
    folder = default_stage_folder(assignment, accept_gaps=accept_gaps)
    case = stage_case(choice.index, assignment, folder, accept_gaps=accept_gaps)
    return StagedStudy(folder, case, assignment, accept_gaps)
