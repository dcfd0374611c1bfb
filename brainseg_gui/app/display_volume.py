"""A study put in the viewer's frame: RAS-ordered arrays, display windows, overlay codes.

The slice views index every array as (x, y, z) with x pointing to the patient's Right, y Anterior
and z Superior, whatever the file's own axis order; `core.orientation.Reorientation` does the
flips and permutation (no interpolation). Built once per study, off the GUI thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

import numpy as np

from brainseg_gui.app.region_codes import label_code, region_mask
from brainseg_gui.core.labels import REGIONS
from brainseg_gui.core.orientation import Reorientation
from brainseg_gui.core.study import SEQUENCES, Study

#: Window presets: name -> (low, high) percentiles of the non-zero voxels of one sequence.
WINDOW_PRESETS: Mapping[str, tuple[float, float]] = MappingProxyType({
    "Auto (0.5-99.5%)": (0.5, 99.5),
    "Auto (1-99%)": (1.0, 99.0),
    "Soft (2-98%)": (2.0, 98.0),
    "Bright (5-99.9%)": (5.0, 99.9),
    "Full range": (0.0, 100.0),
})
DEFAULT_PRESET = "Auto (0.5-99.5%)"

@dataclass(frozen=True)
class DisplayVolume:
    """A study in RAS voxel order, with what the views need precomputed.

    images: sequence -> float32 (x, y, z) RAS views of the study's arrays.
    ras_affine: RAS voxel index -> world RAS mm. to_file: RAS voxel index -> the file's voxel index.
    truth_code: uint8 region code of the ground truth (None without labels).
    brain: bool mask of the imaged tissue (the 3D view's context surface, the first crosshair): the
    non-zero voxels of a skull-stripped study; on raw scanner data, whose background noise is
    non-zero almost everywhere, the voxels standing out of that noise (see `_tissue`).
    percentiles: sequence -> sorted sample of brain intensities, for window presets.
    """

    study: Study
    images: Mapping[str, np.ndarray]
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]
    ras_affine: np.ndarray
    to_file: np.ndarray
    truth_code: np.ndarray | None
    brain: np.ndarray
    _samples: Mapping[str, np.ndarray] = field(repr=False, default_factory=dict)
    #: (sequence, preset) -> window, filled for the default preset while the study loads (in the worker:
    #: four percentiles of 400k samples are ~40 ms the GUI thread would otherwise spend on the first draw).
    _windows: dict[tuple[str, str], tuple[float, float]] = field(repr=False, default_factory=dict)
    #: voxels of WT, TC, ET in the ground truth, counted by the loading worker (None without labels):
    #: three full-grid masks cost the GUI thread 40-170 ms when a study opens.
    truth_voxels: Mapping[str, int] | None = None

    @classmethod
    def from_study(cls, study: Study) -> DisplayVolume:
        """Reorient a study to RAS and sample intensities for window presets (a second or less)."""
        reorient = Reorientation(study.grid)
        images = {name: reorient.apply(array) for name, array in study.images.items()}
        to_file = reorient.to_grid
        truth = None
        if study.labels is not None and study.label_convention is not None:
            truth = reorient.apply(label_code(study.labels, study.label_convention))
        brain = np.zeros(reorient.shape, dtype=bool)
        for array in images.values():
            brain |= array != 0
        samples = {name: _intensity_sample(array) for name, array in images.items()}
        if _noisy_background(brain):
            brain = _tissue(images, samples)
        volume = cls(
            study=study,
            images=MappingProxyType(images),
            spacing=reorient.spacing,
            shape=reorient.shape,
            ras_affine=reorient.affine,
            to_file=to_file,
            truth_code=truth,
            brain=brain,
            _samples=MappingProxyType(samples),
            truth_voxels=None if truth is None else MappingProxyType(
                {region: int(np.count_nonzero(region_mask(truth, region))) for region in REGIONS}),
        )
        for name in images:
            volume.window(name)
        return volume

    @property
    def sequences(self) -> tuple[str, ...]:
        return tuple(name for name in SEQUENCES if name in self.images)

    def window(self, sequence: str, preset: str = DEFAULT_PRESET) -> tuple[float, float]:
        """(low, high) display window of a sequence for a preset, from its brain intensities."""
        known = self._windows.get((sequence, preset))
        if known is not None:
            return known
        low_pct, high_pct = WINDOW_PRESETS[preset]
        sample = self._samples[sequence]
        if sample.size == 0:
            return 0.0, 1.0
        low, high = (float(v) for v in np.percentile(sample, [low_pct, high_pct]))
        if high <= low:
            high = low + 1.0
        self._windows[(sequence, preset)] = (low, high)
        return low, high

    def file_index(self, voxel: tuple[int, int, int]) -> tuple[int, int, int]:
        """RAS voxel index -> the same voxel's index in the file's own (i, j, k) order."""
        i, j, k = (int(v) for v in np.rint(self.to_file @ np.array([*voxel, 1.0]))[:3])
        return i, j, k

    def world_mm(self, voxel: tuple[int, int, int]) -> tuple[float, float, float]:
        """RAS voxel index -> world RAS millimetres of the voxel centre."""
        x, y, z = (self.ras_affine @ np.array([*voxel, 1.0], dtype=float))[:3]
        return float(x), float(y), float(z)

    def contains(self, voxel: tuple[int, int, int]) -> bool:
        return all(0 <= v < n for v, n in zip(voxel, self.shape))

    @cached_property
    def brain_bounds_mm(self) -> Box3:
        """The brain's bounding box in RAS mm (voxel edges), computed once (~6 ms a full case; every
        view of the study asks)."""
        mask = self.brain
        any_tissue = bool(mask.any())
        bounds = []
        for axis in range(3):
            others = tuple(a for a in range(3) if a != axis)
            present = np.flatnonzero(mask.any(axis=others)) if any_tissue else np.array([0, self.shape[axis] - 1])
            spacing = self.spacing[axis]
            bounds.append((float(present[0]) * spacing, float(present[-1] + 1) * spacing))
        return bounds[0], bounds[1], bounds[2]

    def centre(self) -> tuple[int, int, int]:
        """A good first crosshair: the tumour's centre if labelled, else the brain's, else the grid's."""
        mask = self.truth_code if self.truth_code is not None and self.truth_code.any() else self.brain
        if mask is None or not mask.any():
            return (self.shape[0] // 2, self.shape[1] // 2, self.shape[2] // 2)
        x, y, z = (int(np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis))).mean())
                   for axis in range(3))
        return x, y, z

    def truth_label(self, voxel: tuple[int, int, int]) -> str | None:
        """Tissue name and file label value of the ground truth at a RAS voxel, e.g. 'ET (4)'."""
        study = self.study
        if study.labels is None or study.label_convention is None:
            return None
        value = int(study.labels[self.file_index(voxel)])
        names = {v: k for k, v in study.label_convention.tissue_values.items()}
        return f"{names.get(value, 'background')} ({value})"


#: A background counts as noisy when this share of the grid's outer faces is non-zero (BraTS: ~0).
NOISY_BORDER_FRACTION = 0.05
#: Tissue on raw data: above this fraction of a sequence's 99th intensity percentile.
TISSUE_FRACTION_OF_P99 = 0.1


def _noisy_background(mask: np.ndarray) -> bool:
    """Whether the non-zero mask reaches the grid's faces: background noise, not a stripped brain."""
    faces = [mask[0], mask[-1], mask[:, 0], mask[:, -1], mask[:, :, 0], mask[:, :, -1]]
    total = sum(face.size for face in faces)
    return total > 0 and sum(int(face.sum()) for face in faces) > NOISY_BORDER_FRACTION * total


def _tissue(images: Mapping[str, np.ndarray], samples: Mapping[str, np.ndarray]) -> np.ndarray:
    """Voxels above a tenth of a bright intensity of any sequence: the head without the noise around
    it (its surface took 7 s and 700k points from the raw non-zero mask of a DICOM head, 1 s here)."""
    tissue: np.ndarray | None = None
    for name, array in images.items():
        if samples[name].size == 0:
            continue
        above = array > TISSUE_FRACTION_OF_P99 * float(np.percentile(samples[name], 99))
        tissue = above if tissue is None else tissue | above
    return tissue if tissue is not None else np.zeros(next(iter(images.values())).shape, dtype=bool)


def _intensity_sample(array: np.ndarray, max_count: int = 400_000) -> np.ndarray:
    """A strided sample of the non-zero voxels: percentiles within ~0.1% at a fraction of the cost."""
    if array.size > 16 * max_count:  # a full case: every 2nd voxel along each axis is plenty
        array = array[::2, ::2, ::2]
    values = array[array != 0]
    step = max(1, values.size // max_count)
    return np.ascontiguousarray(values[::step])


#: Margin around the brain in the default view, a fraction of its extent on each side.
FIT_MARGIN = 0.04

Box3 = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]


def brain_box_mm(volume: DisplayVolume, margin: float = FIT_MARGIN) -> Box3:
    """(low, high) RAS mm of the brain's bounding box along x, y, z, widened by `margin` of its extent
    (what the slice views fit by default). From `volume.brain` (the non-zero voxels of a skull-stripped
    study, the tissue of a raw one); the whole grid when the mask is empty."""
    padded = []
    for low, high in volume.brain_bounds_mm:
        pad = (high - low) * margin
        padded.append((low - pad, high + pad))
    return padded[0], padded[1], padded[2]
