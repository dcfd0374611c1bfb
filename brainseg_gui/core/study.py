"""A Study: four co-registered MRI sequences on one voxel grid, an optional label map, provenance.

Axis order, everywhere in the program: arrays are indexed (i, j, k) as nibabel stores them, and
`Grid.affine` maps voxel indices to world millimetres in RAS+ (nibabel's convention). Conversions
from SimpleITK's (z, y, x) / LPS happen in `core/io.py` and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

from brainseg_gui.core.errors import GridMismatchError, StudyLoadError
from brainseg_gui.core.labels import LabelConvention, check_values
from brainseg_gui.core.nib import nib

#: The four sequences, in the channel order the networks use.
SEQUENCES: tuple[str, str, str, str] = ("t1", "t1ce", "t2", "flair")
#: How each sequence is named to the user (view titles, status bar, reports).
SEQUENCE_TITLES = {"t1": "T1", "t1ce": "T1ce", "t2": "T2", "flair": "FLAIR"}

#: Affines that differ by less than this (mm, or unitless for the rotation part) are the same grid.
AFFINE_TOLERANCE = 1e-4


def affine_voxel_ml(affine: np.ndarray) -> float:
    """Volume of one voxel in mL under a voxel -> mm affine."""
    return float(abs(np.linalg.det(np.asarray(affine, dtype=float)[:3, :3]))) / 1000.0


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class Grid:
    """A voxel grid: array shape and the voxel -> RAS+ millimetre affine (4x4)."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise StudyLoadError(f"a grid needs three positive sizes, got {self.shape}")
        affine = np.array(self.affine, dtype=np.float64)
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise StudyLoadError(f"a grid needs a finite 4x4 affine, got {self.affine!r}")
        if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise StudyLoadError("the affine is singular (zero voxel size or collinear axes)")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "affine", _read_only(affine))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k."""
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))  # type: ignore[return-value]

    @property
    def axcodes(self) -> tuple[str, str, str]:
        """Anatomical direction each array axis points to, e.g. ('L', 'P', 'S')."""
        return tuple(nib.aff2axcodes(self.affine))  # type: ignore[return-value]

    @property
    def voxel_volume_ml(self) -> float:
        return affine_voxel_ml(self.affine)

    def same_as(self, other: Grid, tolerance: float = AFFINE_TOLERANCE) -> bool:
        return self.shape == other.shape and bool(
            np.allclose(self.affine, other.affine, atol=tolerance, rtol=0)
        )

    def world_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned world box (min, max corners in mm) covering the grid's voxel centres."""
        corners = np.array(
            [[i, j, k, 1.0] for i in (0, self.shape[0] - 1) for j in (0, self.shape[1] - 1)
             for k in (0, self.shape[2] - 1)]
        )
        world = (self.affine @ corners.T).T[:, :3]
        return world.min(axis=0), world.max(axis=0)

    def describe(self) -> str:
        sx, sy, sz = self.spacing
        return (f"{'x'.join(map(str, self.shape))} voxels, {sx:.3g}x{sy:.3g}x{sz:.3g} mm, "
                f"{''.join(self.axcodes)}")


@dataclass(frozen=True)
class Study:
    """Four co-registered sequences on one grid (some may be missing), optional labels, provenance.

    `images` maps sequence name (see SEQUENCES) to a read-only float32 array of `grid.shape`.
    `labels` is a read-only uint8 label map in `label_convention`, or None.
    `sources` maps 't1', 't1ce', 't2', 'flair' and 'seg' to the file or folder each came from.
    """

    case_id: str
    grid: Grid
    images: Mapping[str, np.ndarray]
    labels: np.ndarray | None = None
    label_convention: LabelConvention | None = None
    sources: Mapping[str, Path] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.images) - set(SEQUENCES))
        if unknown:
            raise StudyLoadError(f"unknown sequence names {unknown}; expected some of {SEQUENCES}")
        if not self.images:
            raise StudyLoadError(f"study {self.case_id!r} has none of the sequences {SEQUENCES}")
        images: dict[str, np.ndarray] = {}
        for name in SEQUENCES:
            if name not in self.images:
                continue
            array = self.images[name]
            if array.shape != self.grid.shape:
                raise GridMismatchError(
                    f"{name} of {self.case_id!r} has shape {array.shape}, the grid is {self.grid.shape}"
                )
            if array.dtype != np.float32:
                raise StudyLoadError(f"{name} must be float32, got {array.dtype}")
            images[name] = _read_only(array)
        object.__setattr__(self, "images", MappingProxyType(images))
        if self.labels is not None:
            if self.labels.shape != self.grid.shape:
                raise GridMismatchError(
                    f"labels of {self.case_id!r} have shape {self.labels.shape}, "
                    f"the images {self.grid.shape}"
                )
            if self.label_convention is None:
                raise StudyLoadError("a study with labels needs their label convention")
            check_values(self.labels, self.label_convention, source=str(self.sources.get("seg", "")))
            object.__setattr__(self, "labels", _read_only(self.labels.astype(np.uint8, copy=False)))
        object.__setattr__(self, "sources", MappingProxyType({k: Path(v) for k, v in self.sources.items()}))
        object.__setattr__(self, "warnings", tuple(self.warnings))

    @property
    def missing(self) -> tuple[str, ...]:
        """Sequences this study lacks, in SEQUENCES order."""
        return tuple(name for name in SEQUENCES if name not in self.images)

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    def stacked(self) -> np.ndarray:
        """(4, i, j, k) float32 in SEQUENCES order; a missing sequence is all zeros."""
        out = np.zeros((len(SEQUENCES), *self.grid.shape), dtype=np.float32)
        for channel, name in enumerate(SEQUENCES):
            if name in self.images:
                out[channel] = self.images[name]
        return out
