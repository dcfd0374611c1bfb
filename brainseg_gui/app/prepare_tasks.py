"""The plain functions the viewer's Prepare step runs in workers; none touches a widget.

A raw study is prepared (`core.prepare.prepare_study`: registration, 1 mm LPS resampling, brain
extraction) and shown UNMASKED with its brain mask for the user to check; the mask is edited as
BraTS label `BRAIN_LABEL` so the ordinary edit tools work on it. Accepting rewrites the prepared
case with the checked mask and opens it; a mask segmented there goes back onto an original
sequence's grid through the inverse of the recorded rigid transform (`core.prepared_space`).
Each function takes ``progress`` and ``cancel`` (see `core.progress`) and raises ``Cancelled``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brainseg_gui.app.display_volume import DisplayVolume
from brainseg_gui.core.brain_extraction import BrainExtractionParams, dilate_mask, erode_mask, extract_brain
from brainseg_gui.core.cases import CaseFiles
from brainseg_gui.core.edit_session import Box, EditSession, Limits
from brainseg_gui.core.errors import BrainSegError, StudyLoadError
from brainseg_gui.core.morphology import fill_holes
from brainseg_gui.core.prepare import BRAIN_SEQUENCES, PreparedStudy, apply_brain_mask, prepare_study
from brainseg_gui.core.prepared_space import PrepareRecord, map_to_original, resample_through
from brainseg_gui.core.progress import CancelToken, ProgressFn, sub_progress
from brainseg_gui.core.readiness import Readiness, assess_readiness, read_sequences
from brainseg_gui.core.registration import RegistrationSettings
from brainseg_gui.core.study import SEQUENCES, Grid, Study

log = logging.getLogger(__name__)

#: The brain mask is edited as this BraTS label (oedema: drawn green in both overlay modes).
BRAIN_LABEL = 2
#: Appended to the case id of the unmasked study shown for the check (keeps its journal apart).
REVIEW_SUFFIX = " brain mask"

PrepareFn = Callable[..., PreparedStudy]


@dataclass(frozen=True)
class PrepareOptions:
    """How the viewer prepares a study (the CLI's `brainseg prepare` options)."""

    resolution_mm: float = 1.0
    reference: str = "t1ce"
    skull_strip: bool = True
    brain: BrainExtractionParams = field(default_factory=BrainExtractionParams)
    registration: RegistrationSettings | None = None
    #: What a study's only sequence really is (a lone image file is read as flair; DICOM series are classed).
    single_as: str | None = None


@dataclass(frozen=True)
class MaskReview:
    """A prepared study waiting for the user's check: the unmasked images and the proposed mask.

    `volume` shows the prepared images without the mask (file order = the prepared LPS grid);
    `prepared.brain` is the mask the pipeline proposed (bool, same grid).
    """

    prepared: PreparedStudy
    volume: DisplayVolume
    options: PrepareOptions
    method: str

    @property
    def brain(self) -> np.ndarray:
        assert self.prepared.brain is not None
        return self.prepared.brain

    @property
    def grid(self) -> Grid:
        return self.prepared.grid


@dataclass(frozen=True)
class ScannerView:
    """A mask mapped back onto one original sequence's grid, with every sequence shown there."""

    volume: DisplayVolume
    labels: np.ndarray  # uint8 BraTS labels on the original grid (file order)
    ai: np.ndarray  # the model's own mask, mapped the same way
    sequence: str


@dataclass(frozen=True)
class PreparedMask:
    """The prepared study and its (corrected) mask, kept while the mask is shown in scanner space."""

    volume: DisplayVolume
    labels: np.ndarray  # uint8 BraTS labels on the prepared grid (file order)
    ai: np.ndarray  # the model's own mask
    model_version: str | None
    base: str


def readiness(study: Study, *, progress: ProgressFn, cancel: CancelToken) -> Readiness:
    """Is the study BraTS-ready? (grids, slices, voxels, orientation, skull; a second or two)."""
    progress(0.0, "Checking whether the study is BraTS-ready")
    result = assess_readiness(study)
    cancel.raise_if_cancelled()
    return result


def suggested_output(study: Study) -> Path:
    """Where a prepared study goes unless the user says otherwise: `<case>_prepared` next to the
    study's folder, or under ~/BrainSeg/prepared when that folder is not writable (a CD, a share)."""
    import os

    name = f"{study.case_id}_prepared"
    sources = [Path(path) for key, path in study.sources.items() if key != "seg"]
    if sources and sources[0].exists():
        folder = sources[0].parent if sources[0].is_file() else sources[0]
        if folder.parent.is_dir() and os.access(folder.parent, os.W_OK):
            return folder.parent / name
    return Path.home() / "BrainSeg" / "prepared" / name


def prepare_source(study: Study, single_as: str | None = None) -> tuple[Study | None, dict[str, Path] | None]:
    """What to prepare from: the original files when they are all on disk (their own grids, not the
    viewer's resampled copy), else the loaded study itself. Returns (study, None) or (None, files).

    `single_as` names the sequence of a study that has only one (e.g. "t1" for a DICOM MPRAGE)."""
    files = {name: Path(study.sources[name]) for name in study.images if name in study.sources}
    if len(files) == len(study.images) and all(path.exists() for path in files.values()):
        if single_as is not None and len(files) == 1:
            if single_as not in SEQUENCES:
                raise BrainSegError(f"unknown sequence {single_as!r}; expected one of {SEQUENCES}")
            files = {single_as: next(iter(files.values()))}
        return None, files
    return study, None


def prepare_for_review(study: Study, out_dir: Path, options: PrepareOptions, *,
                       prepare_fn: PrepareFn = prepare_study, progress: ProgressFn,
                       cancel: CancelToken) -> MaskReview:
    """Prepare `study` into `out_dir` and build the unmasked view its brain mask is checked on."""
    source, files = prepare_source(study, options.single_as)
    truth = study.sources.get("seg")  # the ground truth comes along, so the prepared case can be scored
    prepared = prepare_fn(source, out_dir, files=files, case_id=study.case_id, reference=options.reference,
                          truth_file=Path(truth) if truth is not None and Path(truth).is_file() else None,
                          resolution_mm=options.resolution_mm, skull_strip=options.skull_strip,
                          brain_params=options.brain, registration=options.registration, keep_images=True,
                          progress=sub_progress(progress, 0.0, 0.95), cancel=cancel)
    cancel.raise_if_cancelled()
    if prepared.brain is None or not prepared.images:
        raise BrainSegError(f"preparing {study.case_id} returned no images to check (keep_images was ignored)")
    progress(0.96, "Preparing the views")
    method = str(prepared.record.data.get("brain_extraction", {}).get("method", "brain extraction"))
    return MaskReview(prepared, review_volume(prepared), options, method)


def review_from_record(record: PrepareRecord, options: PrepareOptions, *, progress: ProgressFn,
                       cancel: CancelToken) -> MaskReview:
    """The check of an already prepared study's brain mask, from its folder: the unmasked images
    resampled again from the original sources, and the mask file."""
    from brainseg_gui.core.image_io import read_image
    from brainseg_gui.core.prepare import MASK_NAME, resample_prepared

    if record.path is None:
        raise BrainSegError(f"the prepare record of {record.case_id} has no folder")
    folder = record.path.parent
    names = dict(record.data.get("files", {}))
    if MASK_NAME not in names:
        raise StudyLoadError(f"{record.path}: the record names no brain mask file")
    images = resample_prepared(record, progress=sub_progress(progress, 0.0, 0.85), cancel=cancel)
    progress(0.9, "Reading the brain mask")
    mask, grid = read_image(folder / names[MASK_NAME])
    if not grid.same_as(record.grid):
        raise StudyLoadError(f"{folder / names[MASK_NAME]} is not on the prepared grid ({grid.describe()}, "
                             f"recorded {record.grid.describe()})")
    prepared = PreparedStudy(record.case_id, folder, {n: folder / f for n, f in names.items() if n in SEQUENCES},
                             folder / names[MASK_NAME], record.path, record, images, np.asarray(mask) != 0)
    method = str(record.data.get("brain_extraction", {}).get("method", "brain extraction"))
    cancel.raise_if_cancelled()
    return MaskReview(prepared, review_volume(prepared), options, method)


def review_volume(prepared: PreparedStudy) -> DisplayVolume:
    """The prepared images without the brain mask, as the viewer shows them for the check."""
    images = {name: np.asarray(prepared.images[name], dtype=np.float32)
              for name in SEQUENCES if name in prepared.images}
    study = Study(prepared.case_id + REVIEW_SUFFIX, prepared.grid, images,
                  sources={name: path for name, path in prepared.files.items() if name in images},
                  warnings=("unmasked prepared images, shown to check the brain mask",))
    return DisplayVolume.from_study(study)


def extract_again(review: MaskReview, params: BrainExtractionParams, skull_strip: bool, *,
                  progress: ProgressFn, cancel: CancelToken) -> np.ndarray:
    """A new brain mask from the prepared images with other settings (no registration again)."""

    images = review.prepared.images
    if not skull_strip:
        progress(0.2, "Brain mask = the non-zero region")
        nonzero = np.zeros(review.grid.shape, dtype=bool)
        for image in images.values():
            nonzero |= np.asarray(image) > 0
        return fill_holes(nonzero)
    sequence = next(name for name in BRAIN_SEQUENCES if name in images)
    progress(0.1, f"Extracting the brain from {sequence}")
    mask = extract_brain(images[sequence], review.grid, **params.as_dict())
    cancel.raise_if_cancelled()
    return mask


def grow_or_shrink(mask: np.ndarray, grid: Grid, radius_mm: float, *, progress: ProgressFn,
                   cancel: CancelToken) -> np.ndarray:
    """The mask dilated (radius > 0) or eroded (radius < 0) by |radius_mm|."""
    progress(0.1, ("Growing" if radius_mm > 0 else "Shrinking") + f" the brain mask by {abs(radius_mm):g} mm")
    result = dilate_mask(mask, grid, radius_mm) if radius_mm > 0 else erode_mask(mask, grid, -radius_mm)
    cancel.raise_if_cancelled()
    return result


def brain_of(labels: np.ndarray) -> np.ndarray:
    """The brain mask an edited label map stands for (any label counts)."""
    return np.asarray(labels) != 0


def replace_mask(session: EditSession, mask: np.ndarray) -> Box | None:
    """Make the session's mask `mask` (bool, file order) through its public painting, so the change
    is one undoable (and journaled) step: paint `BRAIN_LABEL` where it is added, 0 where removed.

    A ball over the changed box, limited by an indicator image (`Limits.intensity`), paints exactly
    the changed voxels."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != session.labels.shape:
        raise BrainSegError(f"the new brain mask has shape {mask.shape}, the grid is {session.labels.shape}")
    current = brain_of(session.labels)
    boxes = []
    for label, where in ((BRAIN_LABEL, mask & ~current), (0, current & ~mask)):
        hits = np.nonzero(where)
        if hits[0].size == 0:
            continue
        low = np.array([h.min() for h in hits])
        high = np.array([h.max() for h in hits])
        centre = (low + high) // 2
        spacing = np.array(session.grid.spacing)
        reach = np.maximum(centre - low, high - centre) + 1
        radius = float(math.sqrt(float(((reach * spacing) ** 2).sum())))
        limits = Limits(intensity=where.astype(np.float32), low=0.5, high=1.5)
        box = session.paint_sphere(tuple(int(c) for c in centre), radius, label, limits=limits)
        if box is not None:
            boxes.append(box)
    if not boxes:
        return None
    return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes))  # type: ignore[return-value]
                 for a in range(3))


def accept_mask(review: MaskReview, mask: np.ndarray, *, edited: str, progress: ProgressFn,
                cancel: CancelToken) -> DisplayVolume:
    """Write the prepared case with the checked mask (when it differs from the one written), then
    load it from disk: the BraTS-ready study segmentation runs on. `edited` says what the user did."""
    from brainseg_gui.core.io import load_study

    mask = np.asarray(mask, dtype=bool)
    folder = review.prepared.out_dir
    if not np.array_equal(mask, review.brain):
        params: dict[str, Any] = {"proposed_by": review.method, "edits": edited,
                                  "settings": review.options.brain.as_dict()}
        apply_brain_mask(review.prepared, mask, method="checked and edited by the user in the viewer",
                         params=params, progress=sub_progress(progress, 0.0, 0.7), cancel=cancel)
    cancel.raise_if_cancelled()
    progress(0.75, f"Opening the prepared study in {folder}")
    study = load_study(folder, progress=sub_progress(progress, 0.75, 0.95), cancel=cancel)
    cancel.raise_if_cancelled()
    return DisplayVolume.from_study(study)


def find_record(study: Study) -> PrepareRecord | None:
    """The prepare record next to a prepared study's files (None for any other study)."""
    folders = {Path(path).parent for name, path in study.sources.items() if name in SEQUENCES}
    for folder in folders:
        candidates = [folder / f"{study.case_id}_prepare.json"] + sorted(folder.glob("*_prepare.json"))
        for path in dict.fromkeys(candidates):
            if not path.is_file():
                continue
            try:
                record = PrepareRecord.load(path)
            except StudyLoadError as exc:
                log.warning("ignoring %s: %s", path, exc)
                continue
            if record.grid.same_as(study.grid):
                return record
    return None


def scanner_space(record: PrepareRecord, labels: np.ndarray, ai: np.ndarray, sequence: str, *,
                  progress: ProgressFn, cancel: CancelToken) -> ScannerView:
    """`labels` (and the AI's `ai`) of the prepared grid on `sequence`'s original grid, with every
    original sequence resampled there too, so the mask is reviewed over the images the scanner made."""
    if sequence not in record.sequences:
        raise BrainSegError(f"{record.case_id} has no {sequence} to map onto (it has {', '.join(record.sequences)})")
    progress(0.05, f"Mapping the mask onto the original {sequence} grid")
    mapped, grid = map_to_original(labels, record, sequence)
    mapped_ai, _ = map_to_original(ai, record, sequence)
    cancel.raise_if_cancelled()
    to_target = np.linalg.inv(record.sequences[sequence].matrix)
    images: dict[str, np.ndarray] = {}
    names = [name for name in SEQUENCES if name in record.sequences]
    for index, name in enumerate(names):
        progress(0.15 + 0.75 * index / len(names), f"Reading the original {name}")
        entry = record.sequences[name]
        case = CaseFiles(case_id=record.case_id, layout="files", files={name: entry.source})
        array, source_grid = read_sequences(case)[name]
        cancel.raise_if_cancelled()
        # a point of the target's world -> prepared space -> the same anatomy in this sequence's world
        images[name] = resample_through(np.asarray(array, dtype=np.float32), source_grid, grid,
                                        entry.matrix @ to_target)
    note = (f"the mask was mapped back from the prepared study onto the original {sequence} grid (nearest "
            "neighbour through the inverse registration); the other sequences are resampled onto that grid")
    study = Study(f"{record.case_id} in {sequence} scanner space", grid, images,
                  sources={name: record.sequences[name].source for name in names}, warnings=(note,))
    progress(0.95, "Preparing the views")
    return ScannerView(DisplayVolume.from_study(study), np.ascontiguousarray(mapped, dtype=np.uint8),
                       np.ascontiguousarray(mapped_ai, dtype=np.uint8), sequence)
