"""Filling the holes of a 3D mask, exactly as scipy's binary_fill_holes does, several times faster.

scipy fills holes by dilating the border's background inwards until nothing changes: one pass over
the volume per voxel of depth (~50 ms for a 120x120x78 mask, ~0.3 s for a 240x240x155 one). The
same answer comes from one labelling of the background: a hole is a background component (6-
connected, scipy's default structure) that touches no face of the array. Written here because
scipy has no faster variant and this is six lines; tests compare it with scipy on real masks.
"""

from __future__ import annotations

import numpy as np


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """`mask` (bool, any number of dimensions) with every enclosed background region set."""
    from scipy import ndimage  # here: the viewer imports this module at start-up, scipy.ndimage costs ~0.25 s

    mask = np.asarray(mask, dtype=bool)
    background, count = ndimage.label(~mask)
    if count == 0:
        return mask.copy()
    touching = np.zeros(count + 1, dtype=bool)
    for axis in range(mask.ndim):
        touching[np.take(background, 0, axis=axis)] = True
        touching[np.take(background, -1, axis=axis)] = True
    touching[0] = True  # label 0 is the mask itself
    return mask | ~touching[background]
