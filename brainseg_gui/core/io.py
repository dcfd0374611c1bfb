"""Loading studies: a case's sequences (and label map) read, checked and put on one grid.

This is the module the CLI, the GUI and the training code call. Single files are read by
`core/image_io.py` (the only place where SimpleITK's axis order and LPS geometry are converted);
finding which files make a case is `core/cases.py`. Both are re-exported here.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from brainseg_gui.core.cases import MSD_ORDER, CaseFiles, Layout, find_case, find_cases, find_cohort
from brainseg_gui.core.errors import GridMismatchError, LabelError, StudyLoadError
from brainseg_gui.core.image_io import (
    read_image,
    save_label_map,
    sidecar_path,
    strip_image_suffix,
    write_image,
)
from brainseg_gui.core.labels import (
    LabelConvention,
    check_values,
    guess_convention,
    parse_convention,
    present_values,
)
from brainseg_gui.core.progress import CancelToken, ProgressFn, no_progress
from brainseg_gui.core.resample import grids_overlap, resample_to_grid
from brainseg_gui.core.study import SEQUENCES, Grid, Study

log = logging.getLogger(__name__)

__all__ = [
    "CaseFiles", "Layout", "find_case", "find_cases", "find_cohort", "load_label_map", "load_study", "read_image",
    "save_label_map", "sidecar_path", "write_image",
]

#: Label convention implied by a layout; other layouts guess from the values present.
_LAYOUT_CONVENTION: dict[str, LabelConvention] = {
    "msd": LabelConvention.MSD,
    "brats23": LabelConvention.BRATS23,
}


def load_study(
    source: Path | CaseFiles | None = None,
    *,
    files: Mapping[str, Path] | None = None,
    seg: Path | None = None,
    label_convention: LabelConvention | str | None = None,
    allow_resample: bool = False,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> Study:
    """Read a case into a Study: float32 sequences on one grid, uint8 labels if any.

    `source` is a case folder, any file of a case, or a `CaseFiles`; `files` ({sequence: path})
    and `seg` add to or replace what was found (with `files` alone, `source` may be None).
    Sequences on different grids raise GridMismatchError unless `allow_resample` is set and they
    overlap in world space: then they are resampled onto the FLAIR grid (or the first present).
    Raises StudyLoadError / GridMismatchError / LabelError naming the file; Cancelled if cancelled.
    """
    case = _resolve(source, files, seg)
    reads = list(dict.fromkeys(case.files.values()))  # each file once (MSD: one 4D file)
    steps = len(reads) + (1 if case.seg is not None else 0) + 1
    warnings = list(case.warnings)
    images: dict[str, np.ndarray] = {}
    grids: dict[str, Grid] = {}
    for step, path in enumerate(reads):
        if cancel is not None:
            cancel.raise_if_cancelled()
        names = [name for name, p in case.files.items() if p == path]
        progress(step / steps, f"reading {', '.join(names)} ({path.name})")
        array, grid = read_image(path)
        if array.ndim == 4 and case.layout != "msd":
            raise StudyLoadError(f"{path} is a 4D (MSD-style) image, given as {', '.join(names)}: "
                                 "open it on its own to read its four channels")
        for name in names:
            images[name] = _sequence(name, path, array, warnings)
            grids[name] = grid
    if cancel is not None:
        cancel.raise_if_cancelled()
    grid = _common_grid(case, images, grids, allow_resample, warnings)

    labels, convention = None, None
    if case.seg is not None:
        progress(len(reads) / steps, f"reading labels ({case.seg.name})")
        labels, convention, _ = _read_labels(
            case.seg, label_convention or case.seg_convention, case.layout, grid, allow_resample, warnings
        )
    missing = [name for name in SEQUENCES if name not in images]
    if missing:
        warnings.append(f"missing sequences: {', '.join(missing)}")
    for warning in warnings[len(case.warnings):]:
        log.warning("%s: %s", case.case_id, warning)
    sources: dict[str, Path] = dict(case.files)
    if case.seg is not None:
        sources["seg"] = case.seg
    progress(1.0, f"loaded {case.case_id}")
    return Study(case_id=case.case_id, grid=grid, images=images, labels=labels,
                 label_convention=convention, sources=sources, warnings=tuple(warnings))


def load_label_map(
    path: Path,
    *,
    convention: LabelConvention | str | None = None,
    reference: Grid | None = None,
) -> tuple[np.ndarray, LabelConvention, Grid]:
    """Read a label map (e.g. a prediction for `brainseg evaluate`): uint8 array, convention, grid.

    The convention is checked if given, else guessed from the values; with `reference`, the map
    must lie on that grid (shape and affine) or GridMismatchError says how they differ.
    """
    path = Path(path)
    warnings: list[str] = []
    layout = "msd" if _looks_like_msd_label(path) and convention is None else "brats"
    result = _read_labels(path, convention, layout, reference, False, warnings)
    for warning in warnings:
        log.warning("%s", warning)
    return result


# -- steps ---------------------------------------------------------------------------------------


def _resolve(source: Path | CaseFiles | None, files: Mapping[str, Path] | None,
             seg: Path | None) -> CaseFiles:
    if source is None and not files:
        raise StudyLoadError("nothing to load: give a case folder or file, or the sequence files")
    if isinstance(source, CaseFiles):
        case = source
    elif source is not None:
        case = find_case(Path(source))
    else:
        first = Path(next(iter(files.values())))  # type: ignore[union-attr]
        case = CaseFiles(case_id=strip_image_suffix(first) if first.is_file() else first.name,
                         layout="files", files={})
    if files:
        unknown = sorted(set(files) - set(SEQUENCES))
        if unknown:
            raise StudyLoadError(f"unknown sequence names {unknown}; expected some of {SEQUENCES}")
        merged = {**case.files, **{name: Path(p) for name, p in files.items()}}
        case = dataclasses.replace(case, files=merged, warnings=())
    if seg is not None:
        case = dataclasses.replace(case, seg=Path(seg))
    if not case.files:
        raise StudyLoadError(f"case {case.case_id!r} has no image files")
    return case


def _sequence(name: str, path: Path, array: np.ndarray, warnings: list[str]) -> np.ndarray:
    """One sequence as float32 (int16/uint16 exactly); NaN/inf replaced by 0 with a warning."""
    if array.ndim == 4:
        if name not in MSD_ORDER:
            raise StudyLoadError(f"{path} is 4D; cannot tell which channel is {name}")
        array = array[..., MSD_ORDER.index(name)]
    elif array.ndim != 3:
        raise StudyLoadError(f"{path}: {name} must be a 3D volume, got shape {array.shape}")
    volume = np.array(array, dtype=np.float32, order="C", copy=True)
    if array.dtype.kind == "f":  # integers are always finite (and int16/uint16 exact in float32)
        bad = ~np.isfinite(volume)
        count = int(bad.sum())
        if count:
            volume[bad] = 0.0
            warnings.append(f"{name} ({path.name}): {count} NaN/infinite voxels replaced by 0")
    return volume


def _grid_text(grid: Grid) -> str:
    origin = ", ".join(f"{v:.4g}" for v in grid.affine[:3, 3])
    return f"{grid.describe()}, origin ({origin}) mm"


def _common_grid(case: CaseFiles, images: dict[str, np.ndarray], grids: dict[str, Grid],
                 allow_resample: bool, warnings: list[str]) -> Grid:
    """The grid every sequence ends up on: FLAIR's (else the first present); for a DICOM study the
    T1ce's, usually the thin 3D acquisition (a 5 mm FLAIR would show every other series blurred)."""
    dicom = case.layout == "dicom" or any(str(p).endswith(".dcmseries") for p in case.files.values())
    if dicom and "t1ce" in grids:
        reference_name = "t1ce"
    else:
        reference_name = "flair" if "flair" in grids else next(n for n in SEQUENCES if n in grids)
    reference = grids[reference_name]
    different = [name for name in SEQUENCES if name in grids and not grids[name].same_as(reference)]
    if not different:
        return reference
    listing = "; ".join(f"{name} {case.files[name].name}: {_grid_text(grids[name])}"
                        for name in SEQUENCES if name in grids)
    if not allow_resample:
        raise GridMismatchError(
            f"case {case.case_id!r}: the sequences are not on one voxel grid ({listing}). Register "
            f"them first, or use --allow-resample (allow_resample=True) to resample them onto the "
            f"{reference_name} grid if they are already aligned in world space"
        )
    for name in different:
        if not grids_overlap(grids[name], reference):
            raise GridMismatchError(
                f"case {case.case_id!r}: {name} ({case.files[name]}) does not overlap {reference_name} "
                f"in world space, so it cannot be resampled onto it ({listing})"
            )
    for name in different:
        images[name] = resample_to_grid(images[name], grids[name], reference)
        warnings.append(f"{name} ({case.files[name].name}) resampled (linear) from {_grid_text(grids[name])} "
                        f"onto the {reference_name} grid {_grid_text(reference)}")
    return reference


def _read_labels(path: Path, convention: LabelConvention | str | None, layout: Layout | str,
                 reference: Grid | None, allow_resample: bool,
                 warnings: list[str]) -> tuple[np.ndarray, LabelConvention, Grid]:
    array, grid = read_image(path)
    if array.ndim != 3:
        raise LabelError(f"{path}: a label map must be a 3D volume, got shape {array.shape}")
    labels = _label_values(path, array)
    if reference is not None and not grid.same_as(reference):
        message = (f"label map {path} is on another grid than the images: labels {_grid_text(grid)}; "
                   f"images {_grid_text(reference)}")
        if not allow_resample:
            raise GridMismatchError(message)
        if not grids_overlap(grid, reference):
            raise GridMismatchError(message + "; they do not overlap in world space")
        labels = resample_to_grid(labels, grid, reference, nearest=True)
        warnings.append(f"labels ({path.name}) resampled (nearest) from {_grid_text(grid)} onto the image grid")
        grid = reference
    present = np.array(sorted(present_values(labels)), dtype=np.uint8)  # ~7x faster than a bincount here
    if convention is None and layout not in _LAYOUT_CONVENTION:
        guessed = guess_convention(present, source=str(path))  # guessing checks the values
        if not (layout == "brats" and guessed is LabelConvention.BRATS):
            warnings.append(f"labels ({path.name}): convention guessed from the values "
                            f"{present.tolist()} as {guessed.description}; say which if that is wrong")
        return labels, guessed, grid
    chosen = parse_convention(convention) if convention is not None else _LAYOUT_CONVENTION[layout]
    check_values(present, chosen, source=str(path))
    return labels, chosen, grid


def _shown(values: np.ndarray) -> str:
    """The first eight offending values exactly as stored (4.0000001, not 4), then "..." if there are more."""
    return ", ".join(str(v) for v in values[:8]) + (", ..." if values.size > 8 else "")


def _label_values(path: Path, array: np.ndarray) -> np.ndarray:
    """Integer-valued labels (whatever the file dtype) as uint8; others raise LabelError naming them."""
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            raise LabelError(f"{path}: label map holds {int((~finite).sum())} NaN/infinite voxels")
        fractional = array != np.round(array)
        if fractional.any():
            values = np.unique(array[fractional])
            shown = _shown(values)
            raise LabelError(f"{path}: label values must be integers, found {shown} "
                             f"({int(fractional.sum())} voxels)")
    elif array.dtype.kind not in "biu":
        raise LabelError(f"{path}: label map of type {array.dtype} (need integers)")
    if array.size and (array.min() < 0 or array.max() > 255):
        values = np.unique(array[(array < 0) | (array > 255)])
        shown = _shown(values)
        raise LabelError(f"{path}: label values {shown} are outside 0..255 (no convention uses them)")
    return np.ascontiguousarray(array, dtype=np.uint8) if array.dtype != np.uint8 else np.ascontiguousarray(array)


def _looks_like_msd_label(path: Path) -> bool:
    return path.parent.name.lower().startswith("labels") and (
        path.parent.parent / ("images" + path.parent.name[len("labels"):]) / path.name
    ).is_file()
