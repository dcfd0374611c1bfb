"""Reorienting voxel arrays between a grid's own axis order and a target one (e.g. RAS), and the
viewing planes of RAS arrays.

Only flips and axis permutations: no interpolation, so a round trip is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from brainseg_gui.core.nib import nib
from brainseg_gui.core.study import Grid

ornt = nib.orientations

#: Array axis each orthogonal view holds fixed (RAS order: 0 = x, 1 = y, 2 = z).
AXIS_OF_PLANE = {"axial": 2, "coronal": 1, "sagittal": 0}
PLANES = ("axial", "coronal", "sagittal")
PLANE_OF_AXIS = {axis: plane for plane, axis in AXIS_OF_PLANE.items()}


@dataclass(frozen=True)
class Reorientation:
    """The flips and permutation that bring arrays on `grid` to `target` axis codes, and back.

    Arrays may carry leading channel axes; the last three axes are the spatial ones.
    """

    grid: Grid
    target: tuple[str, str, str] = ("R", "A", "S")

    @cached_property
    def _forward(self) -> np.ndarray:
        # cached: nibabel's io_orientation costs ~1 ms, and the editor reorients a small box per brush dab
        return ornt.ornt_transform(ornt.io_orientation(self.grid.affine), ornt.axcodes2ornt(self.target))

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Grid order -> target order (a view where possible)."""
        return _apply_spatial(array, self._forward)

    def undo(self, array: np.ndarray) -> np.ndarray:
        """Target order -> the grid's own order."""
        inverse = ornt.ornt_transform(ornt.axcodes2ornt(self.target), ornt.io_orientation(self.grid.affine))
        return _apply_spatial(array, inverse)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel spacing along the target axes."""
        permutation = self._forward[:, 0].astype(int)
        source = self.grid.spacing
        out = [0.0, 0.0, 0.0]
        for source_axis, target_axis in enumerate(permutation):
            out[target_axis] = source[source_axis]
        return (out[0], out[1], out[2])

    @property
    def to_grid(self) -> np.ndarray:
        """4x4: voxel index of the reoriented array -> the same voxel's index on the grid."""
        return ornt.inv_ornt_aff(self._forward, self.grid.shape)

    @property
    def affine(self) -> np.ndarray:
        """Voxel index of the reoriented array -> world mm (to RAS: the viewer's `ras_affine`, the grid
        measurements are made on, the frame of the meshes' world matrix)."""
        return self.grid.affine @ self.to_grid

    @property
    def shape(self) -> tuple[int, int, int]:
        permutation = self._forward[:, 0].astype(int)
        out = [0, 0, 0]
        for source_axis, target_axis in enumerate(permutation):
            out[target_axis] = self.grid.shape[source_axis]
        return (out[0], out[1], out[2])


def _apply_spatial(array: np.ndarray, transform: np.ndarray) -> np.ndarray:
    lead = array.ndim - 3
    if lead == 0:
        return ornt.apply_orientation(array, transform)
    flat = array.reshape(-1, *array.shape[lead:])
    out = np.stack([ornt.apply_orientation(channel, transform) for channel in flat])
    return out.reshape(*array.shape[:lead], *out.shape[1:])
