"""Resampling a volume from one voxel grid onto another (for sequences acquired on different grids).

Done in voxel space with scipy: target voxel -> world (target affine) -> source voxel (inverse
source affine). No SimpleITK and no LPS/RAS step is involved, so the mapping is exact.
"""

from __future__ import annotations

import numpy as np

from brainseg_gui.core.study import Grid


def grids_overlap(a: Grid, b: Grid) -> bool:
    """Whether the world boxes of two grids (voxel centres, grown by half a voxel) intersect."""
    low_a, high_a = _box(a)
    low_b, high_b = _box(b)
    return bool(np.all(np.maximum(low_a, low_b) <= np.minimum(high_a, high_b)))


def _box(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    low, high = grid.world_bounds()
    half = 0.5 * max(grid.spacing)
    return low - half, high + half


def resample_to_grid(array: np.ndarray, source: Grid, target: Grid, *, nearest: bool = False) -> np.ndarray:
    """`array` (on `source`, shape source.shape) resampled onto `target`; zero outside the source.

    Linear interpolation for images (float32 out), nearest neighbour for labels (dtype kept).
    """
    if array.shape != source.shape:
        raise ValueError(f"array shape {array.shape} is not the source grid's {source.shape}")
    if source.same_as(target, tolerance=1e-9):
        return array.copy()
    from scipy import ndimage  # imported here: half a second the CLI need not pay at start

    voxel_to_voxel = np.linalg.inv(source.affine) @ target.affine
    data = array if nearest else np.asarray(array, dtype=np.float32)
    return ndimage.affine_transform(
        data,
        voxel_to_voxel[:3, :3],
        offset=voxel_to_voxel[:3, 3],
        output_shape=target.shape,
        order=0 if nearest else 1,
        mode="constant",
        cval=0,
        output=array.dtype if nearest else np.float32,
    )
