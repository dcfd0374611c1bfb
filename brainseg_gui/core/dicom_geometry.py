"""Geometry of a DICOM image stack: slice order, spacing, gaps, duplicates, and its voxel grid.

DICOM places each 2D image in the patient's LPS world: ImagePositionPatient (the centre of the
first pixel), ImageOrientationPatient (the unit directions of a row and of a column) and
PixelSpacing (between rows, between columns). A stack of parallel images is a volume only when
its positions line up along the slice normal at even steps. `check_stack` sorts the frames along
the normal and says, one sentence each, what is wrong (missing slices, uneven spacing, duplicate
positions, slices shifted sideways); nothing is resampled here. `stack_grid` gives the volume's
grid in the program's convention: array (i, j, k) = (column, row, slice), affine voxel -> RAS mm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from brainseg_gui.core.errors import StudyLoadError
from brainseg_gui.core.study import Grid

if TYPE_CHECKING:
    from brainseg_gui.core.dicom_headers import DicomFrame

#: Positions closer than this (mm) along the normal are the same slice.
DUPLICATE_MM = 0.01
#: Steps differing from the median by more than this share are uneven.
UNEVEN_SHARE = 0.05
#: A step this many times the median or more is a gap of missing slices.
GAP_FACTOR = 1.5
#: Sideways drift (mm) of slice positions beyond which slices do not stack (gantry tilt, shear).
DRIFT_MM = 0.05
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class StackGeometry:
    """What the slice positions of a stack say: median step, gaps, and problems in words."""

    spacing: float | None
    problems: tuple[str, ...] = ()
    missing: int = 0
    duplicates: int = 0
    uneven: bool = False
    #: The problems rebuilding the slices by interpolation mends (missing slices, uneven spacing).
    gaps: tuple[str, ...] = ()
    #: Why the stack is not one volume (several images at one position), or None.
    duplicate: str | None = None

    @property
    def regular(self) -> bool:
        return not self.problems


def plane_of(orientation: Sequence[float] | None) -> str:
    """'axial', 'coronal', 'sagittal' (normal within ~10 degrees of a world axis) or 'oblique'."""
    if orientation is None:
        return "unknown"
    normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
    axis = int(np.argmax(np.abs(normal)))
    if abs(normal[axis]) < 0.985:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def _normal(frame: DicomFrame) -> np.ndarray:
    assert frame.orientation is not None
    row, column = np.asarray(frame.orientation[:3]), np.asarray(frame.orientation[3:])
    normal = np.cross(row, column)
    return normal / (np.linalg.norm(normal) or 1.0)


def check_stack(frames: Sequence[DicomFrame]) -> tuple[tuple[DicomFrame, ...], StackGeometry]:
    """Frames sorted along the slice normal, and what their positions say."""
    placed = [f for f in frames if f.position is not None and f.orientation is not None]
    if len(placed) < len(frames) or not frames:
        unplaced = len(frames) - len(placed)
        ordered = tuple(sorted(frames, key=lambda f: (f.instance_number or 0, str(f.path), f.number or 0)))
        return ordered, StackGeometry(None, (f"{unplaced} image(s) without position or orientation",))
    normal = _normal(placed[0])
    depth = {id(f): float(np.dot(np.asarray(f.position), normal)) for f in placed}
    ordered = tuple(sorted(placed, key=lambda f: (depth[id(f)], f.instance_number or 0)))
    if len(ordered) < 2:
        return ordered, StackGeometry(ordered[0].slice_thickness)
    depths = np.array([depth[id(f)] for f in ordered])
    steps = np.diff(depths)
    duplicates = int((steps < DUPLICATE_MM).sum())
    distinct = steps[steps >= DUPLICATE_MM]
    duplicate = None
    if duplicates:
        duplicate = (f"duplicate positions: {duplicates + 1 if duplicates == 1 else duplicates} image(s) "
                     "share a slice position with another (several echoes, volumes or copies)")
    problems: list[str] = [duplicate] if duplicate else []
    if distinct.size == 0:
        return ordered, StackGeometry(None, tuple(problems), duplicates=duplicates, duplicate=duplicate)
    median = float(np.median(distinct))
    gaps = distinct[distinct >= GAP_FACTOR * median]
    missing = int(sum(round(step / median) - 1 for step in gaps))
    mendable: list[str] = []
    if gaps.size:
        where = [int(i) + 1 for i in np.flatnonzero(steps >= GAP_FACTOR * median)][:4]
        mendable.append(f"missing slices: {missing} slice(s) absent (gap of {float(gaps.max()):.3g} mm where the "
                        f"spacing is {median:.3g} mm, after slice {', '.join(map(str, where))})")
    regular = distinct[distinct < GAP_FACTOR * median]
    uneven = bool(regular.size and np.abs(regular - median).max() > UNEVEN_SHARE * median)
    if uneven:
        mendable.append(f"uneven slice spacing: {float(regular.min()):.3g} to {float(regular.max()):.3g} mm")
    problems += mendable
    first = np.asarray(ordered[0].position)
    drift = max(float(np.linalg.norm((np.asarray(f.position) - first) - np.dot(np.asarray(f.position) - first,
                                                                                 normal) * normal))
                for f in ordered)
    if drift > DRIFT_MM * len(ordered):
        problems.append(f"slices are shifted sideways along the stack by up to {drift:.2g} mm (gantry tilt or "
                        "shear); the grid follows the positions")
    return ordered, StackGeometry(median, tuple(problems), missing=missing, duplicates=duplicates, uneven=uneven,
                                  gaps=tuple(mendable), duplicate=duplicate)


def frame_axes(frame: DicomFrame) -> tuple[np.ndarray, np.ndarray]:
    """LPS step vectors (mm) of one column step (axis i) and one row step (axis j) of a frame."""
    if frame.orientation is None or frame.pixel_spacing is None:
        raise StudyLoadError(f"{frame.path}: the image has no orientation or pixel spacing")
    row_spacing, column_spacing = frame.pixel_spacing
    along_row, along_column = np.asarray(frame.orientation[:3]), np.asarray(frame.orientation[3:])
    return along_row * column_spacing, along_column * row_spacing


def stack_grid(frames: Sequence[DicomFrame], depth_positions: Sequence[np.ndarray] | None = None) -> Grid:
    """The voxel grid of sorted `frames` (or of regular `depth_positions` when slices are rebuilt).

    Axis i runs along a row (increasing column), j down a column (increasing row), k from the
    first to the last slice; the k step is the mean step between slice positions, so a single
    slice or an irregular stack still gets a usable grid (irregular stacks are refused before).
    """
    first = frames[0]
    step_i, step_j = frame_axes(first)
    positions = [np.asarray(p) for p in depth_positions] if depth_positions is not None else \
        [np.asarray(f.position, dtype=np.float64) for f in frames]
    if len(positions) > 1:
        step_k = (positions[-1] - positions[0]) / (len(positions) - 1)
    else:
        normal = np.cross(step_i, step_j)
        step_k = normal / np.linalg.norm(normal) * (first.slice_thickness or 1.0)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = step_i, step_j, step_k, positions[0]
    return Grid((first.columns, first.rows, len(positions)), LPS_TO_RAS @ lps)
